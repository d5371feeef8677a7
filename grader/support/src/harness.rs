//! How a hidden test runs, and how it proves to the grader that it ran to the end.
//!
//! Every hidden test is declared with [`hidden_test!`](crate::hidden_test). An `async` test runs on
//! a fresh current-thread runtime with the clock paused, so timers fire in virtual time and in a
//! fixed order, once for each `select!` seed in [`SEEDS`](crate::runtime::SEEDS): the same branch
//! orders on every run, and more than one of them. A `multi_thread` test gets a two-worker runtime
//! for katas about real parallelism.
//!
//! The proof: when the grader starts a test process it sets [`PROOF_ENV`] and writes a fresh nonce
//! to the process's standard input. The harness reads it before any kata code runs and prints it
//! back (as a [`PROOF_PREFIX`] line) only after the test body returned and its runtime was dropped.
//! Kata code that exits the process early, aborts, or prints a fake success line never produces the
//! nonce, so the grader never counts it as a pass.

use std::future::Future;
use std::io::{BufRead, Write};

/// Set by the grader, to `stdin`, when a nonce is waiting on standard input.
pub const PROOF_ENV: &str = "KATA_PROOF";

/// The line a completed test prints, followed by the nonce.
pub const PROOF_PREFIX: &str = "kata-proof:";

/// Runs an async test body on a paused current-thread runtime, once per `select!` seed in
/// [`SEEDS`](crate::runtime::SEEDS), each time on a fresh runtime.
pub fn run_async<F: Future<Output = ()>>(body: impl Fn() -> F) {
    let nonce = take_nonce();
    for seed in crate::runtime::SEEDS {
        let runtime = crate::runtime::current_thread(seed);
        runtime.block_on(body());
        drop(runtime);
    }
    prove(nonce);
}

/// Runs an async test body on a two-worker runtime with the real clock (real parallelism only).
pub fn run_multi_thread<F: Future<Output = ()>>(body: F) {
    let nonce = take_nonce();
    let runtime = crate::runtime::multi_thread(2, crate::runtime::SEEDS[0]);
    runtime.block_on(body);
    drop(runtime);
    prove(nonce);
}

/// Runs a synchronous test body (one that builds and drops its own runtime).
pub fn run_sync(body: impl FnOnce()) {
    let nonce = take_nonce();
    body();
    prove(nonce);
}

fn take_nonce() -> Option<String> {
    if std::env::var_os(PROOF_ENV).is_none_or(|v| v != "stdin") {
        return None;
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .expect("failed to read the grader's nonce from standard input");
    Some(line.trim().to_owned())
}

fn prove(nonce: Option<String>) {
    let Some(nonce) = nonce else { return };
    let mut out = std::io::stdout().lock();
    // A leading newline keeps the proof on its own line after partial output.
    let _ = writeln!(out, "\n{PROOF_PREFIX}{nonce}");
    let _ = out.flush();
}

/// Declares hidden tests.
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
    ($(#[$meta:meta])* async fn $name:ident() $body:block $($rest:tt)*) => {
        $(#[$meta])*
        #[test]
        fn $name() {
            $crate::harness::run_async(|| async move $body)
        }
        $crate::hidden_test! { $($rest)* }
    };
    ($(#[$meta:meta])* multi_thread async fn $name:ident() $body:block $($rest:tt)*) => {
        $(#[$meta])*
        #[test]
        fn $name() {
            $crate::harness::run_multi_thread(async move $body)
        }
        $crate::hidden_test! { $($rest)* }
    };
    ($(#[$meta:meta])* fn $name:ident() $body:block $($rest:tt)*) => {
        $(#[$meta])*
        #[test]
        fn $name() {
            $crate::harness::run_sync(|| $body)
        }
        $crate::hidden_test! { $($rest)* }
    };
    () => {};
}
