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
//!
//! So that `cargo test` and `cargo nextest run` can run the same executables (`scripts/bench`
//! compares the grader with them), `main` also speaks enough of libtest's command line: a test name
//! in argv (nextest: `--exact <name> --nocapture`), or no name and no protocol line (`cargo test`
//! with standard input empty or a terminal), runs the matching tests in this process and prints no
//! proof. The grader never passes a name in argv, so the argv a kata sees under the grader is the
//! same as under `cargo test`; and no proof means no pass for the grader.

use std::future::Future;
use std::io::{BufRead, IsTerminal, Write};
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::trace;

/// The line a completed test prints, followed by the nonce.
pub const PROOF_PREFIX: &str = "kata-proof:";

/// A hidden test as `hidden_test!` registers it.
pub type Test = (&'static str, fn());

/// The test executable's `main`: `--list` lists the tests; otherwise it reads `<name> <nonce>` from
/// standard input, runs that test, and proves it ran to the end (or runs libtest-style, see above).
pub fn main(tests: &[Test]) -> ExitCode {
    let args = Libtest::parse(std::env::args().skip(1));
    if args.list {
        // `--ignored` asks for the ignored tests (nextest does): there are none.
        if !args.ignored {
            let mut out = std::io::stdout().lock();
            for (name, _) in tests {
                let _ = writeln!(out, "{name}: test");
            }
        }
        return ExitCode::SUCCESS;
    }
    if !args.filters.is_empty() {
        return args.run(tests);
    }
    let mut line = String::new();
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return args.run(tests);
    }
    if stdin.lock().read_line(&mut line).is_err() {
        eprintln!("expected `<test> <nonce>` on standard input");
        return ExitCode::from(2);
    }
    if line.trim().is_empty() {
        return args.run(tests);
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
    report_last_cut();
    if let Err(code) = run_one(*test) {
        return code;
    }
    let mut out = std::io::stdout().lock();
    // A leading newline keeps the proof on its own line after partial output.
    let _ = writeln!(out, "\n{PROOF_PREFIX}{nonce}");
    let _ = out.flush();
    ExitCode::SUCCESS
}

/// Runs one test body; a panic (its message printed by the hook) is exit code 101.
fn run_one(test: fn()) -> Result<(), ExitCode> {
    // On a thread of its own, as libtest runs tests: a stack overflow hits a guard page and is
    // reported as one. The thread is not named after the test.
    let thread = std::thread::Builder::new().name("main".into()).spawn(test);
    match thread.map(|thread| thread.join()) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(ExitCode::from(101)),
        Err(err) => {
            eprintln!("failed to start the test thread: {err}");
            Err(ExitCode::from(2))
        }
    }
}

/// The part of libtest's command line that `cargo test` and `cargo nextest` use.
#[derive(Debug, Default, PartialEq)]
struct Libtest {
    list: bool,
    ignored: bool,
    exact: bool,
    filters: Vec<String>,
    skip: Vec<String>,
}

impl Libtest {
    fn parse(args: impl IntoIterator<Item = String>) -> Libtest {
        let mut parsed = Libtest::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--list" => parsed.list = true,
                "--ignored" => parsed.ignored = true,
                "--exact" => parsed.exact = true,
                "--skip" => parsed.skip.extend(args.next()),
                // Options with a value, ignored.
                "--format" | "--color" | "--test-threads" | "--logfile" | "--shuffle-seed"
                | "-Z" => {
                    args.next();
                }
                flag if flag.starts_with('-') => {}
                _ => parsed.filters.push(arg),
            }
        }
        parsed
    }

    fn selects(&self, name: &str) -> bool {
        let matches = |filter: &String| {
            if self.exact { name == filter } else { name.contains(filter.as_str()) }
        };
        !self.ignored
            && (self.filters.is_empty() || self.filters.iter().any(matches))
            && !self.skip.iter().any(|skip| name.contains(skip.as_str()))
    }

    /// Runs the selected tests one after another in this process, as libtest reports them.
    fn run(&self, tests: &[Test]) -> ExitCode {
        let selected: Vec<&Test> = tests.iter().filter(|(name, _)| self.selects(name)).collect();
        println!("\nrunning {} tests", selected.len());
        let mut failed = Vec::new();
        for (name, test) in &selected {
            let ok = run_one(*test).is_ok();
            println!("test {name} ... {}", if ok { "ok" } else { "FAILED" });
            if !ok {
                failed.push(*name);
            }
        }
        let verdict = if failed.is_empty() { "ok" } else { "FAILED" };
        println!(
            "\ntest result: {verdict}. {} passed; {} failed\n",
            selected.len() - failed.len(),
            failed.len()
        );
        if failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(101) }
    }
}

/// The scope ([`crate::trace`]) the running async test body is polled in; 0 between bodies.
static BODY_SCOPE: AtomicU64 = AtomicU64::new(0);

/// Runs an async test body on a paused current-thread runtime, once per `select!` seed in
/// [`SEEDS`](crate::runtime::SEEDS), each time on a fresh runtime, polled in a scope of its own.
pub fn run_async<F: Future<Output = ()> + 'static>(body: impl Fn() -> F) {
    run_async_boxed(&|| Box::pin(body()))
}

/// [`run_async`] past its one generic step: the body's futures arrive boxed, so the runtime's
/// `block_on` and the scope are compiled once in this crate, not once per hidden test.
fn run_async_boxed(body: &dyn Fn() -> Pin<Box<dyn Future<Output = ()>>>) {
    for seed in crate::runtime::SEEDS {
        let runtime = crate::runtime::current_thread(seed);
        let scope = trace::new_scope();
        BODY_SCOPE.store(scope, Ordering::SeqCst);
        trace::set_task_scope(scope);
        runtime.block_on(trace::scoped(scope, body()));
        trace::set_task_scope(0);
        drop(runtime);
    }
}

/// Runs an async test body on a two-worker runtime with the real clock (real parallelism only).
pub fn run_multi_thread<F: Future<Output = ()> + 'static>(body: F) {
    run_multi_thread_boxed(Box::pin(body))
}

/// [`run_multi_thread`] past its one generic step (see [`run_async_boxed`]).
fn run_multi_thread_boxed(body: Pin<Box<dyn Future<Output = ()>>>) {
    let runtime = crate::runtime::multi_thread(2, crate::runtime::SEEDS[0]);
    let scope = trace::new_scope();
    BODY_SCOPE.store(scope, Ordering::SeqCst);
    trace::set_task_scope(scope);
    runtime.block_on(trace::scoped(scope, body));
    trace::set_task_scope(0);
    drop(runtime);
}

/// After a test's panic message, the `.await`s where the test body last cut the code under test
/// (`[last cut at: ..]` on a line of its own), when the code was built with its awaits marked
/// ([`crate::trace`]) and the message does not already say where (the explorer's does).
fn report_last_cut() {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        hook(info);
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or(payload.downcast_ref::<String>().map(|s| s.as_str()));
        if message
            .is_some_and(|m| m.contains(trace::TRAILER_OPEN) || m.contains(trace::LAST_CUT_OPEN))
        {
            return;
        }
        let scope = BODY_SCOPE.load(Ordering::SeqCst);
        let cut = trace::LastCut(if scope == 0 { Vec::new() } else { trace::last_cut(scope) });
        if !cut.0.is_empty() {
            eprintln!("{}", cut.to_string().trim_start());
        }
    }));
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
///
/// Opened as `hidden_test! { focus NAME; ... }`, the executable holds the test `NAME` alone: the
/// others are type-checked but never compiled to code (they are marked `allow(dead_code)` for
/// this). `grader verify` builds a decoy this way with the test that rejected it last time
/// (`grader/decoys/rejected-by.toml`), for about a third of the build.
#[macro_export]
macro_rules! hidden_test {
    // Each test becomes a plain function; the names are collected for the generated `main`. With
    // `focus NAME;` first (how `grader verify` builds a decoy's one rejecting test), `main` holds
    // that test alone, so the others are checked but never compiled to code.
    (@tests {$focus:ident} [$($done:ident)*]) => {
        fn main() -> ::std::process::ExitCode {
            $crate::harness::main(&[(stringify!($focus), $focus as fn())])
        }
    };
    (@tests {} [$($done:ident)*]) => {
        fn main() -> ::std::process::ExitCode {
            $crate::harness::main(&[$((stringify!($done), $done as fn())),*])
        }
    };
    (@tests {$($focus:ident)?} [$($done:ident)*] $(#[$meta:meta])* async fn $name:ident() $body:block $($rest:tt)*) => {
        $(#[$meta])*
        #[allow(dead_code)]
        fn $name() {
            $crate::harness::run_async(|| async move $body)
        }
        $crate::hidden_test! { @tests {$($focus)?} [$($done)* $name] $($rest)* }
    };
    (@tests {$($focus:ident)?} [$($done:ident)*] $(#[$meta:meta])* multi_thread async fn $name:ident() $body:block $($rest:tt)*) => {
        $(#[$meta])*
        #[allow(dead_code)]
        fn $name() {
            $crate::harness::run_multi_thread(async move $body)
        }
        $crate::hidden_test! { @tests {$($focus)?} [$($done)* $name] $($rest)* }
    };
    (@tests {$($focus:ident)?} [$($done:ident)*] $(#[$meta:meta])* fn $name:ident() $body:block $($rest:tt)*) => {
        $(#[$meta])*
        #[allow(dead_code)]
        fn $name() {
            $crate::harness::run_sync(|| $body)
        }
        $crate::hidden_test! { @tests {$($focus)?} [$($done)* $name] $($rest)* }
    };
    (focus $focus:ident; $($items:tt)*) => {
        $crate::hidden_test! { @tests {$focus} [] $($items)* }
    };
    ($($items:tt)*) => {
        $crate::hidden_test! { @tests {} [] $($items)* }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Libtest {
        Libtest::parse(args.iter().map(|a| a.to_string()))
    }

    #[test]
    fn nextest_runs_one_test_by_its_exact_name() {
        let args = parse(&["--exact", "a_test", "--nocapture"]);
        assert!(args.selects("a_test"));
        assert!(!args.selects("a_test_too"));
        let args = parse(&["a_test", "--nocapture", "--exact"]);
        assert!(args.selects("a_test") && !args.selects("a_test_too"));
    }

    #[test]
    fn nextest_finds_no_ignored_tests() {
        let args = parse(&["--list", "--format", "terse", "--ignored"]);
        assert!(args.list && args.ignored && args.filters.is_empty());
        assert!(!args.selects("a_test"));
    }

    #[test]
    fn cargo_test_filters_by_substring_and_skips() {
        let args = parse(&["--test-threads", "1", "drop", "--skip", "slow"]);
        assert_eq!(args.filters, ["drop"]);
        assert!(args.selects("a_drop_at_any_point"));
        assert!(!args.selects("a_slow_drop"));
        assert!(!args.selects("other"));
    }
}
