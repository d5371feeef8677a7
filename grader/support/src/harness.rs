//! How a hidden test runs, and how it proves to the grader that it ran to the end.
//!
//! Every hidden test is declared with [`hidden_test!`](crate::hidden_test). An `async` test runs on
//! a fresh current-thread runtime with the clock paused, so timers fire in virtual time and in a
//! fixed order, once for each `select!` seed in [`SEEDS`](crate::runtime::SEEDS): the same branch
//! orders on every run, and more than one of them. A `multi_thread` test gets a two-worker runtime
//! for katas about real parallelism.
//!
//! The test executable has no libtest: `hidden_test!` writes its `main` ([`main`]). Nothing in the
//! environment or the command line says which test runs, or that a grader is watching: the grader
//! writes one line, `<test name> <nonce>`, to standard input, and `main` reads it before any kata
//! code runs. The harness prints the nonce back (as a [`PROOF_PREFIX`] line) only after the test
//! body returned and its runtime was dropped. Kata code that exits the process early, aborts, or
//! prints a fake success line never produces the nonce, so the grader never counts it as a pass.
//! `--list` prints the tests in libtest's terse format (`name: test`) and reads nothing.

use std::future::Future;
use std::io::{BufRead, Write};
use std::process::ExitCode;

/// The line a completed test prints, followed by the nonce.
pub const PROOF_PREFIX: &str = "kata-proof:";

/// A hidden test as `hidden_test!` registers it.
pub type Test = (&'static str, fn());

/// The test executable's `main`: `--list` lists the tests; otherwise it reads `<name> <nonce>` from
/// standard input, runs that test, and proves it ran to the end.
pub fn main(tests: &[Test]) -> ExitCode {
    if std::env::args().skip(1).any(|arg| arg == "--list") {
        let mut out = std::io::stdout().lock();
        for (name, _) in tests {
            let _ = writeln!(out, "{name}: test");
        }
        return ExitCode::SUCCESS;
    }
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() {
        eprintln!("expected `<test> <nonce>` on standard input");
        return ExitCode::from(2);
    }
    let mut words = line.split_whitespace();
    let (Some(name), Some(nonce)) = (words.next(), words.next()) else {
        eprintln!("expected `<test> <nonce>` on standard input; run the tests with `grader check`");
        return ExitCode::from(2);
    };
    let Some((_, test)) = tests.iter().find(|(n, _)| *n == name) else {
        eprintln!("no test named `{name}`");
        return ExitCode::from(2);
    };
    let nonce = nonce.to_owned();
    drop(line);
    // On a thread of its own, as libtest runs tests: a stack overflow hits a guard page and is
    // reported as one. The thread is not named after the test.
    let thread = std::thread::Builder::new().name("main".into()).spawn(*test);
    match thread.map(|thread| thread.join()) {
        Ok(Ok(())) => {}
        // The panic hook has printed the message.
        Ok(Err(_)) => return ExitCode::from(101),
        Err(err) => {
            eprintln!("failed to start the test thread: {err}");
            return ExitCode::from(2);
        }
    }
    let mut out = std::io::stdout().lock();
    // A leading newline keeps the proof on its own line after partial output.
    let _ = writeln!(out, "\n{PROOF_PREFIX}{nonce}");
    let _ = out.flush();
    ExitCode::SUCCESS
}

/// Runs an async test body on a paused current-thread runtime, once per `select!` seed in
/// [`SEEDS`](crate::runtime::SEEDS), each time on a fresh runtime.
pub fn run_async<F: Future<Output = ()>>(body: impl Fn() -> F) {
    for seed in crate::runtime::SEEDS {
        let runtime = crate::runtime::current_thread(seed);
        runtime.block_on(body());
        drop(runtime);
    }
}

/// Runs an async test body on a two-worker runtime with the real clock (real parallelism only).
pub fn run_multi_thread<F: Future<Output = ()>>(body: F) {
    let runtime = crate::runtime::multi_thread(2, crate::runtime::SEEDS[0]);
    runtime.block_on(body);
    drop(runtime);
}

/// Runs a synchronous test body (one that builds and drops its own runtime).
pub fn run_sync(body: impl FnOnce()) {
    body();
}

/// Declares hidden tests, and writes the test executable's `main` (the hidden-test target is built
/// with `harness = false`), so it must be invoked once per file.
///
/// ```
/// kata_support::hidden_test! {
///     /// Runs on a paused current-thread runtime, once per `select!` seed.
///     async fn timers_fire_in_virtual_time() {
///         let start = tokio::time::Instant::now();
///         tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
///         assert!(start.elapsed() >= std::time::Duration::from_secs(3600));
///     }
///
///     /// Runs as it is: build a runtime yourself when the test needs to drop one.
///     fn plain() {
///         assert_eq!(1 + 1, 2);
///     }
/// }
/// ```
#[macro_export]
macro_rules! hidden_test {
    // Each test becomes a plain function; the names are collected for the generated `main`.
    (@tests [$($done:ident)*]) => {
        fn main() -> ::std::process::ExitCode {
            $crate::harness::main(&[$((stringify!($done), $done as fn())),*])
        }
    };
    (@tests [$($done:ident)*] $(#[$meta:meta])* async fn $name:ident() $body:block $($rest:tt)*) => {
        $(#[$meta])*
        fn $name() {
            $crate::harness::run_async(|| async move $body)
        }
        $crate::hidden_test! { @tests [$($done)* $name] $($rest)* }
    };
    (@tests [$($done:ident)*] $(#[$meta:meta])* multi_thread async fn $name:ident() $body:block $($rest:tt)*) => {
        $(#[$meta])*
        fn $name() {
            $crate::harness::run_multi_thread(async move $body)
        }
        $crate::hidden_test! { @tests [$($done)* $name] $($rest)* }
    };
    (@tests [$($done:ident)*] $(#[$meta:meta])* fn $name:ident() $body:block $($rest:tt)*) => {
        $(#[$meta])*
        fn $name() {
            $crate::harness::run_sync(|| $body)
        }
        $crate::hidden_test! { @tests [$($done)* $name] $($rest)* }
    };
    ($($items:tt)*) => {
        $crate::hidden_test! { @tests [] $($items)* }
    };
}
