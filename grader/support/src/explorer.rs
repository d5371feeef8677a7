//! The cancellation explorer: cancel a future at every point it can be cancelled, and check the
//! invariant after each cut.
//!
//! A future can only be cancelled between polls, so "every `.await`" means "after every `Pending`".
//! The explorer first runs the operation to completion on fresh state to learn how many polls a full
//! run takes (and to check the undisturbed outcome), then, for every `k` below that, builds fresh
//! state, polls a fresh future `k` times, drops it and runs the invariant check.
//!
//! Between polls the explorer does not spin: it waits until the future's waker fires. Under a paused
//! clock the runtime auto-advances to the next timer while it waits, so timers, spawned helpers and
//! gates all make progress exactly as they would in production, and a future that is never woken
//! is reported as stalled instead of hanging the test.
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicI64, Ordering};
//! use std::time::Duration;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap()
//! #     .block_on(async {
//! // Two accounts that must always hold 100 between them.
//! let report = kata_support::explore(
//!     || Arc::new([AtomicI64::new(100), AtomicI64::new(0)]),
//!     |accounts| async move {
//!         accounts[0].fetch_sub(10, Ordering::SeqCst);
//!         // A cancel-unsafe transfer: the money is in flight across this await.
//!         tokio::time::sleep(Duration::from_millis(5)).await;
//!         accounts[1].fetch_add(10, Ordering::SeqCst);
//!     },
//!     |accounts, _outcome| async move {
//!         let total = accounts[0].load(Ordering::SeqCst) + accounts[1].load(Ordering::SeqCst);
//!         if total == 100 { Ok(()) } else { Err(format!("the accounts hold {total}, expected 100")) }
//!     },
//! )
//! .await;
//! let failure = report.unwrap_err();
//! assert_eq!(failure.cancelled_after, Some(1));
//! assert_eq!(failure.to_string(),
//!     "cancelled after poll 1 of 2: the accounts hold 90, expected 100");
//! # });
//! ```

use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use tokio::sync::Notify;

/// How long (on the paused clock) the explorer waits for a wakeup before calling the future stalled.
pub const STALL_AFTER: Duration = Duration::from_secs(3600);

/// The most polls a full run may take; more means the future is spinning.
pub const MAX_POLLS: usize = 10_000;

/// How an explored run ended, handed to the invariant check.
#[derive(Debug)]
pub enum Outcome<T> {
    /// The future was dropped after this many polls (0: dropped before its first poll).
    Cancelled { polls: usize },
    /// The future ran to completion.
    Completed(T),
}

impl<T> Outcome<T> {
    /// The output, if the run completed.
    pub fn completed(self) -> Option<T> {
        match self {
            Outcome::Completed(value) => Some(value),
            Outcome::Cancelled { .. } => None,
        }
    }

    /// True when the run was cut short.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Outcome::Cancelled { .. })
    }
}

/// What a successful exploration covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exploration {
    /// Polls an undisturbed run takes.
    pub full_run_polls: usize,
    /// Distinct cancellation points checked (dropped after 0, 1, .. `full_run_polls - 1` polls).
    pub cuts_checked: usize,
}

/// Why an exploration failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelFailure {
    /// Polls before the drop that broke the invariant, or `None` when an undisturbed run failed.
    pub cancelled_after: Option<usize>,
    /// Polls an undisturbed run takes, when known.
    pub polls: usize,
    /// What the invariant check saw.
    pub seen: String,
}

impl fmt::Display for CancelFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.cancelled_after {
            None => write!(f, "without any cancellation ({} polls): {}", self.polls, self.seen),
            Some(0) => write!(f, "dropped before its first poll: {}", self.seen),
            Some(k) => write!(f, "cancelled after poll {k} of {}: {}", self.polls, self.seen),
        }
    }
}

impl std::error::Error for CancelFailure {}

/// Cancels the operation at every point it can be cancelled and checks the invariant after each cut.
///
/// `fresh` builds new state for each run; `op` starts the operation on it; `check` inspects the
/// state after the future was dropped (or completed) and returns what it saw when the invariant is
/// broken. The undisturbed run is checked first, so an operation that is simply wrong fails with
/// "without any cancellation".
pub async fn explore<S, T, Op, OpFut, Check, CheckFut>(
    mut fresh: impl FnMut() -> S,
    mut op: Op,
    mut check: Check,
) -> Result<Exploration, CancelFailure>
where
    S: Clone,
    Op: FnMut(S) -> OpFut,
    OpFut: Future<Output = T>,
    Check: FnMut(S, Outcome<T>) -> CheckFut,
    CheckFut: Future<Output = Result<(), String>>,
{
    let state = fresh();
    let (polls, ended) = drive(op(state.clone()), None).await;
    let outcome = match ended {
        Ended::Completed(value) => Outcome::Completed(value),
        Ended::Stalled => {
            let seen = format!("the operation stalled: never woken after poll {polls}");
            return Err(CancelFailure { cancelled_after: None, polls, seen });
        }
        Ended::Spun | Ended::Cut => {
            let seen = format!("the operation did not finish within {MAX_POLLS} polls");
            return Err(CancelFailure { cancelled_after: None, polls, seen });
        }
    };
    settle().await;
    if let Err(seen) = check(state, outcome).await {
        return Err(CancelFailure { cancelled_after: None, polls, seen });
    }

    for k in 0..polls {
        let state = fresh();
        let (ran, ended) = drive(op(state.clone()), Some(k)).await;
        // A run can finish in fewer polls than the baseline (a timer already fired, say); it is
        // then an undisturbed run and is checked as one.
        let outcome = match ended {
            Ended::Completed(value) => Outcome::Completed(value),
            Ended::Cut | Ended::Stalled | Ended::Spun => Outcome::Cancelled { polls: ran },
        };
        settle().await;
        if let Err(seen) = check(state, outcome).await {
            return Err(CancelFailure { cancelled_after: Some(ran), polls, seen });
        }
    }
    Ok(Exploration { full_run_polls: polls, cuts_checked: polls })
}

/// Like [`explore`], but panics with the failure, worded for a learner.
pub async fn assert_cancel_safe<S, T, Op, OpFut, Check, CheckFut>(
    fresh: impl FnMut() -> S,
    op: Op,
    check: Check,
) -> Exploration
where
    S: Clone,
    Op: FnMut(S) -> OpFut,
    OpFut: Future<Output = T>,
    Check: FnMut(S, Outcome<T>) -> CheckFut,
    CheckFut: Future<Output = Result<(), String>>,
{
    match explore(fresh, op, check).await {
        Ok(report) => report,
        Err(failure) => panic!("{failure}"),
    }
}

/// Lets spawned tasks react to a drop before the invariant is checked.
pub async fn settle() {
    for _ in 0..16 {
        tokio::task::yield_now().await;
    }
}

enum Ended<T> {
    Completed(T),
    Cut,
    Stalled,
    Spun,
}

/// Polls `fut` until it completes or has been polled `limit` times, waiting for its waker between
/// polls. Returns the polls made and how the run ended; the future is dropped on return.
async fn drive<F: Future>(fut: F, limit: Option<usize>) -> (usize, Ended<F::Output>) {
    let signal = Arc::new(WakeSignal::default());
    let waker = Waker::from(signal.clone());
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    let mut polls = 0;
    loop {
        if limit == Some(polls) {
            return (polls, Ended::Cut);
        }
        if polls >= MAX_POLLS {
            return (polls, Ended::Spun);
        }
        signal.woken.store(false, Ordering::SeqCst);
        polls += 1;
        if let Poll::Ready(value) = fut.as_mut().poll(&mut cx) {
            return (polls, Ended::Completed(value));
        }
        // The flag is the truth; a stored `Notify` permit from an earlier wake only re-checks it.
        while !signal.woken.load(Ordering::SeqCst) {
            let wait = tokio::time::timeout(STALL_AFTER, signal.notify.notified());
            if wait.await.is_err() {
                return (polls, Ended::Stalled);
            }
        }
    }
}

#[derive(Default)]
struct WakeSignal {
    woken: AtomicBool,
    notify: Notify,
}

impl Wake for WakeSignal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        self.notify.notify_one();
    }
}
