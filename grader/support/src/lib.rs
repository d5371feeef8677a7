//! Test support for the hidden kata tests.
//!
//! Hidden tests live with the grader, never in a learner's crate, and must be deterministic: a
//! paused clock, scripted peers and manual polling, never a wall-clock sleep or a real socket. This
//! crate is the toolbox they share:
//!
//! - [`explorer`]: cancel a future after every possible poll, at both moments of each wait, and
//!   check an invariant after each cut ([`explore`], [`assert_cancel_safe`]); cut at runtime
//!   shutdown and outside any runtime ([`explore_at_shutdown`]); catch tasks left running
//!   ([`Options::forbid_leftover_tasks`]). Most katas' central test is one call.
//! - [`property`]: a property over the timings, sizes and cut points a README promises, with a
//!   fixed seed and shrinking ([`check_property`]).
//! - [`runtime`]: seeded, paused, watched runtimes, so `select!` order is the same on every run;
//!   [`on_async_thread`] tells blocking work that ran on an async worker.
//! - [`io`]: a [`TrickleReader`] and a [`RecordingWriter`] that yield between chunks, so every chunk
//!   boundary is a cancellation point and the test can see what reached the wire.
//! - [`probe`]: [`DropFlag`] (was this future dropped?) and [`Gate`] (hold the code under test at
//!   an await until the test lets it go).
//! - [`trace`]: the awaits a dropped future was parked at, in the grader's explanation build of the
//!   learner's source.
//! - [`harness`]: the [`hidden_test!`] macro, which gives each test its runtime and proves to the
//!   grader that the test body ran to completion.
//!
//! Failure messages are written for learners: they name the cancellation point, what was lost or
//! left behind, and what was expected.

pub mod explorer;
pub mod harness;
pub mod io;
pub mod probe;
pub mod property;
pub mod runtime;
pub mod trace;

pub use explorer::{
    CancelFailure, Exploration, Moment, Options, Outcome, assert_cancel_safe,
    assert_cancel_safe_at_shutdown, assert_cancel_safe_with, explore, explore_at_shutdown,
    explore_with, settle,
};
pub use io::{RecordingWriter, TrickleReader, Wire};
pub use probe::{DropFlag, DropProbe, Gate};
pub use property::check_property;
pub use runtime::on_async_thread;
