//! A cancel-safety tester for tokio code: cancel a future at every point it can be cancelled, and
//! check an invariant after each cut.
//!
//! A future can only be cancelled between polls, at an `.await` where it returned `Pending`: a
//! `select!` whose other branch won, a `timeout` that ran out, a client that went away, a runtime
//! shutting down. Code that is right when it runs to completion can lose a message, leak a count
//! or leave a transaction open at one of those cut points. This crate finds them the way a
//! property test finds a bad input:
//!
//! - [`explorer`]: run the operation undisturbed to learn how many polls it takes, then for every
//!   `k`, build fresh state, poll a fresh future `k` times, drop it, and run your check
//!   ([`explore`], [`assert_cancel_safe`]); both moments of each wait (still waiting, and woken);
//!   runtime shutdown and drops outside any runtime ([`explore_at_shutdown`]); tasks the operation
//!   spawned and left running ([`Options::forbid_leftover_tasks`]); cuts by the clock
//!   ([`Options::cut_every`]).
//! - [`runtime`]: paused, seeded runtimes, so timers fire in virtual time and `select!` picks its
//!   branches in the same order on every run ([`runtime::SEEDS`]); [`on_async_thread`] tells
//!   blocking work that ran on an async worker.
//! - [`property`]: a property over timings, sizes and cut points with a fixed seed and shrinking
//!   ([`check_property`]).
//! - [`trace`]: the `.await` a dropped future was parked at, for code built with its awaits marked.
//!
//! Everything runs on the paused clock: no wall clock, no real socket, no scheduling luck, so the
//! same code gets the same result on every run.
//!
//! # Requirements
//!
//! tokio's seeded `select!` (`Builder::rng_seed`) and task hooks are unstable APIs: build with
//! `--cfg tokio_unstable`, for example in `.cargo/config.toml`:
//!
//! ```toml
//! [build]
//! rustflags = ["--cfg", "tokio_unstable"]
//! ```
//!
//! # Example
//!
//! A counter of requests in flight, raised before an `.await` and lowered after it, leaks when the
//! request is cancelled at that `.await`; the explorer finds the cut and says what it saw:
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::time::Duration;
//!
//! async fn handle(in_flight: Arc<AtomicUsize>) {
//!     in_flight.fetch_add(1, Ordering::SeqCst);
//!     tokio::time::sleep(Duration::from_millis(10)).await; // the backend call
//!     in_flight.fetch_sub(1, Ordering::SeqCst);
//! }
//!
//! cancel_explorer::runtime::current_thread(1).block_on(async {
//!     let failure = cancel_explorer::explore(
//!         || Arc::new(AtomicUsize::new(0)),
//!         |in_flight| handle(in_flight),
//!         |in_flight, _outcome| async move {
//!             match in_flight.load(Ordering::SeqCst) {
//!                 0 => Ok(()),
//!                 n => Err(format!("{n} request(s) still counted in flight")),
//!             }
//!         },
//!     )
//!     .await
//!     .unwrap_err();
//!     assert_eq!(
//!         failure.to_string(),
//!         "cancelled after poll 1 of 2, while still waiting: 1 request(s) still counted in flight"
//!     );
//! });
//! ```

pub mod explorer;
pub mod property;
pub mod runtime;
pub mod trace;

pub use explorer::{
    CancelFailure, Exploration, Moment, Options, Outcome, assert_cancel_safe,
    assert_cancel_safe_at_shutdown, assert_cancel_safe_with, explore, explore_at_shutdown,
    explore_with, settle,
};
pub use property::check_property;
pub use runtime::on_async_thread;
