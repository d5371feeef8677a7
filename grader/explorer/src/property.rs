//! Properties over the scenarios a piece of async code promises to handle: timings, sizes, number
//! of callers, cut points. A hand-picked script proves one case; a property tried over a hundred generated cases,
//! with a fixed seed so every run tries the same ones, and shrunk to the smallest failing case,
//! proves much more and explains its failure with the simplest scenario that breaks.
//!
//! Built on `proptest`'s `TestRunner`, with every setting fixed here (none read from `PROPTEST_*`
//! variables) and its deterministic ChaCha RNG.
//!
//! ```
//! use proptest::prelude::*;
//!
//! cancel_explorer::check_property(64, (1usize..8, 0u64..500), |(lines, gap_ms)| async move {
//!     let start = tokio::time::Instant::now();
//!     for _ in 0..lines {
//!         tokio::time::sleep(std::time::Duration::from_millis(gap_ms)).await;
//!     }
//!     let waited = start.elapsed().as_millis() as u64;
//!     if waited == lines as u64 * gap_ms { Ok(()) } else { Err(format!("waited {waited} ms")) }
//! });
//! ```

use std::cell::RefCell;
use std::fmt::Debug;
use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};

use crate::explorer::STALL_AFTER;
use crate::runtime;
use crate::trace::{self, LastCut};

/// Tries `test` on `cases` scenarios drawn from `strategy`, each on a fresh seeded, paused,
/// current-thread runtime from [`crate::runtime`], and panics with the smallest failing scenario.
///
/// `test` returns `Err(what it saw)` when the promise is broken; a panic inside it (an `unwrap` in
/// the code under test, an `assert!`) counts as a failure too, and so does a scenario that never
/// finishes (no wakeup within [`STALL_AFTER`] of virtual time). The `select!` seed of each case is
/// derived from the scenario, so the same scenario always runs the same way.
///
/// Call it from a plain test (`fn`, not `async fn`): it builds its own runtimes.
///
/// # Panics
///
/// With `the smallest failing scenario: <scenario>: <what was seen>` when a case fails.
pub fn check_property<S, F, Fut>(cases: u32, strategy: S, test: F)
where
    S: Strategy,
    S::Value: Debug,
    F: Fn(S::Value) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let config = Config {
        cases,
        max_local_rejects: 1024,
        max_global_rejects: 1024,
        failure_persistence: None,
        max_shrink_time: 0,
        max_shrink_iters: 512,
        verbose: 0,
        rng_algorithm: RngAlgorithm::ChaCha,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    // Shrinking re-runs failing cases; their panics would each print as if they were the test's.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    // Where the code under test was last cut in the latest failing scenario (the smallest, once
    // shrinking is done), in a build with its awaits marked (`trace`).
    let failing_cut = RefCell::new(Vec::new());
    let result = runner.run(&strategy, |scenario| {
        let seed = seed_of(&scenario);
        let rt = runtime::current_thread(seed);
        let scope = trace::new_scope();
        let seen = catch_unwind(AssertUnwindSafe(|| {
            rt.block_on(trace::scoped(scope, async {
                match tokio::time::timeout(STALL_AFTER, test(scenario)).await {
                    Ok(seen) => seen,
                    Err(_) => {
                        Err(format!("the scenario stalled: nothing woke it for {STALL_AFTER:?}"))
                    }
                }
            }))
        }));
        drop(rt);
        if !matches!(seen, Ok(Ok(()))) {
            *failing_cut.borrow_mut() = trace::last_cut(scope);
        }
        match seen {
            Ok(seen) => seen.map_err(TestCaseError::fail),
            Err(panic) => resume_unwind(panic),
        }
    });
    std::panic::set_hook(hook);
    match result {
        Ok(()) => {}
        Err(TestError::Fail(why, scenario)) => {
            let cut = LastCut(failing_cut.take());
            panic!("the smallest failing scenario: {scenario:?}: {}{cut}", why.message())
        }
        Err(TestError::Abort(why)) => panic!("the property could not run: {}", why.message()),
    }
}

/// A `select!` seed fixed by the scenario's value.
fn seed_of(scenario: &impl Debug) -> u64 {
    let mut hasher = DefaultHasher::new();
    format!("{scenario:?}").hash(&mut hasher);
    hasher.finish()
}
