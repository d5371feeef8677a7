//! Test support for the hidden kata tests.
//!
//! Hidden tests live with the grader, never in a learner's crate, and must be deterministic: a
//! paused clock, scripted peers and manual polling, never a wall-clock sleep or a real socket. This
//! crate is the toolbox they share:
//!
//! - [`explorer`], [`property`], [`runtime`], [`trace`]: the `cancel-explorer` crate
//!   (`grader/explorer`), re-exported under the same paths: cancel a future after every possible
//!   poll and check an invariant after each cut ([`explore`], [`assert_cancel_safe`]), at runtime
//!   shutdown ([`explore_at_shutdown`]), with leftover tasks caught
//!   ([`Options::forbid_leftover_tasks`]); properties with a fixed seed and shrinking
//!   ([`check_property`]); seeded, paused, watched runtimes; the awaits a dropped future was
//!   parked at, in the grader's explanation build of the learner's source. Most katas' central
//!   test is one call.
//! - [`io`]: a [`TrickleReader`] and a [`RecordingWriter`] that yield between chunks, so every chunk
//!   boundary is a cancellation point and the test can see what reached the wire.
//! - [`probe`]: [`DropFlag`] (was this future dropped?) and [`Gate`] (hold the code under test at
//!   an await until the test lets it go).
//! - [`harness`]: the [`hidden_test!`] macro, which gives each test its runtime and proves to the
//!   grader that the test body ran to completion.
//!
//! Failure messages are written for learners: they name the cancellation point, what was lost or
//! left behind, and what was expected.

pub mod harness;
pub mod io;
pub mod probe;
pub mod time;

pub use cancel_explorer::{explorer, property, runtime, trace};

pub use cancel_explorer::{
    CancelFailure, Exploration, Moment, Options, Outcome, assert_cancel_safe,
    assert_cancel_safe_at_shutdown, assert_cancel_safe_with, explore, explore_at_shutdown,
    explore_with, settle,
};
pub use cancel_explorer::{check_property, on_async_thread};
pub use io::{FailsAtTheEnd, RecordingWriter, ScriptedReader, Step, TrickleReader, Wire};
pub use probe::{DropFlag, DropProbe, Gate};
