//! The cancellation explorer: cancel a future at every point it can be cancelled, and check the
//! invariant after each cut.
//!
//! A future can only be cancelled between polls, so "every `.await`" means "after every `Pending`".
//! The explorer first runs the operation to completion on fresh state to learn how many polls a full
//! run takes (and to check the undisturbed outcome), then, for every `k` below that, builds fresh
//! state, polls a fresh future `k` times, drops it and runs the invariant check. Each `k` is cut at
//! two moments ([`Moment`]): right after poll `k` returned `Pending`, while the future still waits
//! for its event (a client that leaves, a timeout that fires first), and once its waker fired, just
//! before the poll that would have seen the event. Real cancellations happen at both. Each poll
//! `k` is also made with the task's cooperative budget nearly spent ([`Moment::BudgetSpent`]): with
//! none of it left, then one unit, two, .. as long as the poll runs out of it, and the future is
//! dropped when it returns `Pending` then. On a busy task, every tokio resource (a channel, a lock,
//! a timer, `consume_budget`) answers "not ready" once the task has spent its budget (tokio's
//! `task::coop` docs), even when it would be ready, so an `.await` that is always ready on an idle
//! test can still be where a real cancellation lands, after any number of the poll's earlier
//! steps.
//!
//! [`explore_at_shutdown`] cuts at two more places, where no runtime is running to help: the runtime
//! shuts down with the future parked in a task, or the future is dropped after the runtime is gone.
//! A `Drop` that spawns its cleanup works inside a running runtime and fails at both.
//!
//! [`Options::forbid_leftover_tasks`] adds a check after every cut: no task that the operation
//! spawned (or that such a task spawned) may still be running once the cut has settled. It needs a
//! current-thread runtime, where settling is deterministic.
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
//! # cancel_explorer::runtime::current_thread(1).block_on(async {
//! // Two accounts that must always hold 100 between them.
//! let report = cancel_explorer::explore(
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
//!     "cancelled after poll 1 of 2, while still waiting: the accounts hold 90, expected 100");
//! # });
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, Location};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use tokio::sync::Notify;

use crate::runtime::{self, Watch};
use crate::trace::{self, Point, Trailer};

/// How long (on the paused clock) the explorer waits for a wakeup before calling the future stalled.
pub const STALL_AFTER: Duration = Duration::from_secs(3600);

/// Virtual time an undisturbed run of [`explore_at_shutdown`] gets for the work it spawned before
/// its runtime shuts down.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(60);

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

/// When, and where, a future was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    /// Before its first poll.
    BeforeFirstPoll,
    /// Right after a poll returned `Pending`: the future still waits for its event.
    Waiting,
    /// After its waker fired, before the poll that would have seen the event.
    Woken,
    /// Right after a poll made with only `left` units of the task's cooperative budget returned
    /// `Pending` having spent them: every tokio resource the future awaited past those said "not
    /// ready", as on a busy task.
    BudgetSpent {
        /// Units of budget the poll started with.
        left: usize,
    },
    /// Parked in a task when the runtime shut down.
    Shutdown,
    /// After the runtime was gone, outside any runtime.
    OutsideRuntime,
    /// This long (virtual time) after the run started, whatever the future was doing: see
    /// [`Options::cut_every`].
    Elapsed(Duration),
}

/// What a successful exploration covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exploration {
    /// Polls an undisturbed run takes.
    pub full_run_polls: usize,
    /// Cuts checked: the drop before the first poll, two moments after each later poll, and for
    /// each poll one or more made with the budget nearly spent ([`Moment::BudgetSpent`]).
    pub cuts_checked: usize,
}

/// Why an exploration failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelFailure {
    /// Polls before the drop that broke the invariant, or `None` when an undisturbed run failed.
    pub cancelled_after: Option<usize>,
    /// When the future was dropped; `None` when an undisturbed run failed.
    pub moment: Option<Moment>,
    /// Polls an undisturbed run takes, when known.
    pub polls: usize,
    /// What the invariant check saw.
    pub seen: String,
    /// The awaits the future was parked at when it was dropped (or when it stalled), outermost
    /// first; empty unless the code under test was built with its awaits marked
    /// ([`crate::trace`]).
    pub parked: Vec<Point>,
}

impl CancelFailure {
    fn undisturbed(polls: usize, seen: String) -> Self {
        CancelFailure { cancelled_after: None, moment: None, polls, seen, parked: Vec::new() }
    }

    fn cut(after: usize, moment: Moment, polls: usize, seen: String, parked: Vec<Point>) -> Self {
        CancelFailure { cancelled_after: Some(after), moment: Some(moment), polls, seen, parked }
    }
}

impl fmt::Display for CancelFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (n, seen) = (self.polls, &self.seen);
        let trailer = Trailer(self.parked.clone());
        match (self.cancelled_after, self.moment) {
            (None, _) | (_, None) => write!(f, "without any cancellation ({n} polls): {seen}"),
            (Some(0), Some(Moment::Shutdown)) => {
                write!(f, "dropped before its first poll, at runtime shutdown: {seen}")
            }
            (Some(0), Some(Moment::OutsideRuntime)) => {
                write!(f, "dropped before its first poll, outside any runtime: {seen}")
            }
            (Some(0), Some(_)) => write!(f, "dropped before its first poll: {seen}"),
            (Some(k), Some(Moment::Waiting | Moment::BeforeFirstPoll)) => {
                write!(f, "cancelled after poll {k} of {n}, while still waiting: {seen}")
            }
            (Some(k), Some(Moment::Woken)) => {
                write!(f, "cancelled after poll {k} of {n}, once woken: {seen}")
            }
            (Some(k), Some(Moment::BudgetSpent { left: 0 })) => write!(
                f,
                "cancelled after poll {k} of {n}, made when its task had used up its budget (a \
                 busy task: every tokio resource it awaited then said \"not ready\"): {seen}"
            ),
            (Some(k), Some(Moment::BudgetSpent { left })) => write!(
                f,
                "cancelled after poll {k} of {n}, made when its task had {left} unit(s) of its \
                 budget left (a busy task: the tokio resources it awaited once they were spent \
                 said \"not ready\"): {seen}"
            ),
            (Some(k), Some(Moment::Shutdown)) => {
                write!(f, "cancelled after poll {k} of {n} by runtime shutdown: {seen}")
            }
            (Some(k), Some(Moment::OutsideRuntime)) => {
                write!(f, "dropped outside any runtime after poll {k} of {n}: {seen}")
            }
            (Some(k), Some(Moment::Elapsed(t))) => {
                write!(f, "cancelled {t:?} into the run (after poll {k} of {n}): {seen}")
            }
        }?;
        write!(f, "{trailer}")
    }
}

impl std::error::Error for CancelFailure {}

/// Extra checks an exploration makes after every cut, beyond the invariant check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    forbid_leftover_tasks: bool,
    cut_every: Option<Duration>,
}

/// The most time-based cuts one exploration makes; a longer run is cut at evenly spaced instants.
pub const MAX_TIME_CUTS: u32 = 1000;

/// The most budgets one poll is made with ([`Moment::BudgetSpent`]): none left, one unit, .. up to
/// one less than this. A poll that spends more of its budget is cut only within its first steps.
pub const MAX_BUDGET_CUTS: usize = 32;

impl Options {
    /// Also cuts the run by the clock: at `step`, `2 * step`, .. (virtual time since it started)
    /// up to the length of an undisturbed run, dropping the future wherever it is then. Poll-based
    /// cuts only see the moments the future itself is polled; a future that waits on work it
    /// handed to a task (a "shield") is polled only when that work is done, and the work can be
    /// cut in the middle only by the clock. At most [`MAX_TIME_CUTS`] such cuts.
    ///
    /// # Panics
    ///
    /// If `step` is zero.
    pub fn cut_every(mut self, step: Duration) -> Self {
        assert!(!step.is_zero(), "`cut_every` needs a step above zero");
        self.cut_every = Some(step);
        self
    }

    /// After every cut has settled (and after a completed run), fails if a task that the operation
    /// spawned (while it was polled, or as it was dropped), or that one of its tasks spawned, is
    /// still running: work detached into a task whose handle was dropped outlives the cancelled
    /// operation. Tasks spawned before the operation started (by `fresh`, or by the state's own
    /// constructor) are not the operation's, and are not counted.
    ///
    /// Needs a current-thread runtime built by [`crate::runtime`] ([`runtime::current_thread`] or
    /// [`runtime::local`]): settling runs the tasks that are ready on the one thread, so an
    /// aborted task is gone by the time the check runs. On a multi-thread runtime another worker
    /// may drop it later, and [`explore_with`] panics rather than guess.
    ///
    /// With the crate's `hide-source-locations` feature the failure does not say where the task
    /// was spawned (a grader that runs a test against versions of code the test must not read
    /// turns it on).
    pub fn forbid_leftover_tasks(mut self) -> Self {
        self.forbid_leftover_tasks = true;
        self
    }
}

/// Cancels the operation at every point it can be cancelled and checks the invariant after each cut.
///
/// `fresh` builds new state for each run; `op` starts the operation on it; `check` inspects the
/// state after the future was dropped (or completed) and returns what it saw when the invariant is
/// broken. The undisturbed run is checked first, so an operation that is simply wrong fails with
/// "without any cancellation".
///
/// # Errors
///
/// The first cut whose check failed, in the order the cuts happen in time.
pub async fn explore<S, T, Op, OpFut, Check, CheckFut>(
    fresh: impl FnMut() -> S,
    op: Op,
    check: Check,
) -> Result<Exploration, CancelFailure>
where
    S: Clone,
    Op: FnMut(S) -> OpFut,
    OpFut: Future<Output = T>,
    Check: FnMut(S, Outcome<T>) -> CheckFut,
    CheckFut: Future<Output = Result<(), String>>,
{
    explore_with(Options::default(), fresh, op, check).await
}

/// [`explore`] with extra checks.
///
/// # Errors
///
/// As [`explore`]; a leftover task is reported as what the check saw.
///
/// # Panics
///
/// When `options` asks for task tracking ([`Options::forbid_leftover_tasks`]) on a runtime that
/// was not built by [`crate::runtime`], or on a multi-thread one.
pub async fn explore_with<S, T, Op, OpFut, Check, CheckFut>(
    options: Options,
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
    let watch = match (options.forbid_leftover_tasks, runtime::watch()) {
        (false, _) => None,
        (true, _) if !runtime::on_current_thread_runtime() => panic!(
            "`forbid_leftover_tasks` needs a current-thread runtime (`cancel_explorer::runtime::\
             current_thread` or `local`; `hidden_test!`'s plain `async fn`): on a multi-thread \
             runtime another worker may drop an aborted task after the cut has settled, so a task \
             on its way out could not be told from one left running"
        ),
        (true, Some(watch)) => Some(watch),
        (true, None) => panic!(
            "`forbid_leftover_tasks` needs a runtime built by `cancel_explorer::runtime` \
             (`current_thread` or `local`)"
        ),
    };
    let state = fresh();
    let started = tokio::time::Instant::now();
    let (polls, ended, parked) = run_once(op(state.clone()), Stop::Never, watch.as_ref()).await;
    let length = started.elapsed();
    let outcome = match ended {
        Ended::Completed(value) => Outcome::Completed(value),
        Ended::Stalled => {
            let seen = format!("the operation stalled: never woken after poll {polls}");
            return Err(CancelFailure { parked, ..CancelFailure::undisturbed(polls, seen) });
        }
        Ended::Spun | Ended::Cut | Ended::Starved => {
            let seen = format!("the operation did not finish within {MAX_POLLS} polls");
            return Err(CancelFailure::undisturbed(polls, seen));
        }
    };
    settle().await;
    let seen = match leftovers(watch.as_ref(), "it completed") {
        Some(seen) => Err(seen),
        None => check(state, outcome).await,
    };
    seen.map_err(|seen| CancelFailure::undisturbed(polls, seen))?;

    let mut cuts = 0;
    let full = fresh_budget().await;
    let by_clock = options.cut_every.into_iter().flat_map(|step| instants(step, length));
    let mut stops: VecDeque<Stop> = cuts_of(polls, full).chain(by_clock.map(Stop::After)).collect();
    while let Some(stop) = stops.pop_front() {
        let state = fresh();
        let (ran, ended, parked) = run_once(op(state.clone()), stop, watch.as_ref()).await;
        if let (Stop::BudgetSpent { poll, left, full }, Ended::Starved) = (stop, &ended) {
            // The poll ran out of budget: one more unit may take it one step further.
            if left + 1 < MAX_BUDGET_CUTS.min(full) {
                stops.push_front(Stop::BudgetSpent { poll, left: left + 1, full });
            }
        }
        // A run can finish in fewer polls than the baseline (a timer already fired, say); it is
        // then an undisturbed run and is checked as one.
        let outcome = match ended {
            Ended::Completed(value) => Outcome::Completed(value),
            Ended::Cut | Ended::Starved | Ended::Stalled | Ended::Spun => {
                Outcome::Cancelled { polls: ran }
            }
        };
        settle().await;
        let seen = match leftovers(watch.as_ref(), "the cut") {
            Some(seen) => Err(seen),
            None => check(state, outcome).await,
        };
        let moment = match stop {
            Stop::Woken(0) => Moment::BeforeFirstPoll,
            Stop::Waiting(_) => Moment::Waiting,
            Stop::BudgetSpent { left, .. } => Moment::BudgetSpent { left },
            Stop::After(t) => Moment::Elapsed(t),
            Stop::Woken(_) | Stop::Never => Moment::Woken,
        };
        seen.map_err(|seen| CancelFailure::cut(ran, moment, polls, seen, parked))?;
        cuts += 1;
    }
    Ok(Exploration { full_run_polls: polls, cuts_checked: cuts })
}

/// Like [`explore`], but panics with the failure, worded for the reader of a test's output.
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
    assert_cancel_safe_with(Options::default(), fresh, op, check).await
}

/// Like [`explore_with`], but panics with the failure, worded for the reader of a test's output.
pub async fn assert_cancel_safe_with<S, T, Op, OpFut, Check, CheckFut>(
    options: Options,
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
    match explore_with(options, fresh, op, check).await {
        Ok(report) => report,
        Err(failure) => panic!("{failure}"),
    }
}

/// Cancels the operation where no running runtime helps it: for every `k` below the polls of a full
/// run, the runtime shuts down with the future parked in a task after `k` polls
/// ([`Moment::Shutdown`]), and, on a second run, the runtime is dropped first and the future after
/// it, outside any runtime ([`Moment::OutsideRuntime`]); a panic in that drop is a failure. Each run
/// gets a fresh seeded, paused runtime from [`crate::runtime`]; `fresh` and the creation of the
/// future run inside it, and `check` runs after the runtime is gone, so it is synchronous.
///
/// Call it from a plain test (`fn`, not `async fn`): it builds its own runtimes.
///
/// # Errors
///
/// The first failing cut, as for [`explore`].
///
/// # Panics
///
/// When called from inside a runtime.
pub fn explore_at_shutdown<S, T, Op, OpFut, Check>(
    mut fresh: impl FnMut() -> S,
    mut op: Op,
    mut check: Check,
) -> Result<Exploration, CancelFailure>
where
    S: Clone,
    T: 'static,
    Op: FnMut(S) -> OpFut,
    OpFut: Future<Output = T> + 'static,
    Check: FnMut(S, Outcome<T>) -> Result<(), String>,
{
    let rt = runtime::local(runtime::SEEDS[0]);
    let state = rt.block_on(async { fresh() });
    let mut fut = {
        let _in = rt.handle().enter();
        Box::pin(op(state.clone()))
    };
    let (polls, ended) = rt.block_on(drive(fut.as_mut(), Stop::Never, None, trace::new_scope()));
    drop(fut);
    // Undisturbed, the operation's spawned work gets to finish before the runtime goes.
    rt.block_on(async {
        settle().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    });
    drop(rt);
    let outcome = match ended {
        Ended::Completed(value) => Outcome::Completed(value),
        Ended::Stalled | Ended::Spun | Ended::Cut | Ended::Starved => {
            let seen = format!("the operation did not finish (polled {polls} times)");
            return Err(CancelFailure::undisturbed(polls, seen));
        }
    };
    check(state, outcome).map_err(|seen| CancelFailure::undisturbed(polls, seen))?;

    let mut cuts = 0;
    for k in 0..polls {
        for moment in [Moment::Shutdown, Moment::OutsideRuntime] {
            let rt = runtime::local(runtime::SEEDS[0]);
            let state = rt.block_on(async { fresh() });
            let mut fut = {
                let _in = rt.handle().enter();
                Box::pin(op(state.clone()))
            };
            let scope = trace::new_scope();
            let (ran, ended) = rt.block_on(drive(fut.as_mut(), Stop::Woken(k), None, scope));
            let parked = trace::parked(scope);
            let outcome = match ended {
                Ended::Completed(value) => {
                    drop(fut);
                    drop(rt);
                    Outcome::Completed(value)
                }
                Ended::Cut | Ended::Starved | Ended::Stalled | Ended::Spun => {
                    let dropped = match moment {
                        Moment::Shutdown => {
                            // The task holds the future; shutting the runtime down drops the task.
                            rt.spawn_local(async move {
                                let _parked = fut;
                                std::future::pending::<()>().await;
                            });
                            rt.block_on(tokio::task::yield_now());
                            quietly(move || drop(rt))
                        }
                        _ => {
                            drop(rt);
                            quietly(move || drop(fut))
                        }
                    };
                    if let Err(panic) = dropped {
                        let seen = format!("dropping the future panicked: {panic}");
                        return Err(CancelFailure::cut(ran, moment, polls, seen, parked));
                    }
                    Outcome::Cancelled { polls: ran }
                }
            };
            check(state, outcome)
                .map_err(|seen| CancelFailure::cut(ran, moment, polls, seen, parked))?;
            cuts += 1;
        }
    }
    Ok(Exploration { full_run_polls: polls, cuts_checked: cuts })
}

/// Like [`explore_at_shutdown`], but panics with the failure, worded for the reader of a test's output.
pub fn assert_cancel_safe_at_shutdown<S, T, Op, OpFut, Check>(
    fresh: impl FnMut() -> S,
    op: Op,
    check: Check,
) -> Exploration
where
    S: Clone,
    T: 'static,
    Op: FnMut(S) -> OpFut,
    OpFut: Future<Output = T> + 'static,
    Check: FnMut(S, Outcome<T>) -> Result<(), String>,
{
    match explore_at_shutdown(fresh, op, check) {
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

/// Every cut after a full run of `polls` polls, in the order they happen in time: before the first
/// poll, then for each poll `k` right after it returned `Pending`, after it was made with no budget
/// left instead (the explorer adds the runs with more budget left while the poll runs out of it),
/// and once woken; last, the final poll made with no budget left. `full` is the budget a task
/// poll starts with (0: none to spend, and no such cuts).
fn cuts_of(polls: usize, full: usize) -> impl Iterator<Item = Stop> {
    let starved = move |poll| (full > 0).then_some(Stop::BudgetSpent { poll, left: 0, full });
    let later = (1..polls).flat_map(move |k| {
        [Some(Stop::Waiting(k)), starved(k), Some(Stop::Woken(k))].into_iter().flatten()
    });
    let first = (polls > 0).then_some(Stop::Woken(0));
    let last = if polls > 0 { starved(polls) } else { None };
    first.into_iter().chain(later).chain(last)
}

/// The cooperative budget a task poll of this runtime starts with (tokio's is 128 units), found
/// by spending all of it in a fresh poll of this task: 0 where tasks are not budgeted (under
/// `tokio::task::coop::unconstrained`).
async fn fresh_budget() -> usize {
    tokio::task::yield_now().await;
    let units = spend_budget(usize::MAX);
    if units >= BUDGET_BOUND { 0 } else { units }
}

/// More units than any budget holds: a budget this large is taken for none at all.
const BUDGET_BOUND: usize = 4096;

/// Spends up to `units` of the current task's cooperative budget (all of it, for a large
/// `units`), so that the tokio resources polled next in this task poll answer `Pending` once it
/// is gone; returns the units spent.
fn spend_budget(units: usize) -> usize {
    let mut cx = Context::from_waker(Waker::noop());
    let mut spent = 0;
    while spent < units.min(BUDGET_BOUND) && tokio::task::coop::has_budget_remaining() {
        let mut unit = std::pin::pin!(tokio::task::consume_budget());
        if unit.as_mut().poll(&mut cx).is_pending() {
            break;
        }
        spent += 1;
    }
    spent
}

/// `step`, `2 * step`, .. below `length`, at most [`MAX_TIME_CUTS`] of them, evenly spaced.
fn instants(step: Duration, length: Duration) -> impl Iterator<Item = Duration> {
    let wanted = (length.as_nanos() / step.as_nanos()).min(u128::from(MAX_TIME_CUTS)) as u32;
    let step = if wanted == MAX_TIME_CUTS { length / (MAX_TIME_CUTS + 1) } else { step };
    (1..=wanted).map(move |i| step * i).filter(move |t| *t < length)
}

/// Runs `f` with the panic hook silenced, so an expected panic does not print as the test's own;
/// returns the panic's message.
fn quietly(f: impl FnOnce()) -> Result<(), String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    result.map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned())
    })
}

/// What the check sees when tasks of the operation still run: how many, and where the first was
/// spawned unless the `hide-source-locations` feature is on.
fn leftovers(watch: Option<&Watch>, after: &str) -> Option<String> {
    let tasks = watch?.leftover_tasks();
    let first: &Location<'_> = tasks.first()?;
    let spawned_at = if cfg!(feature = "hide-source-locations") {
        String::new()
    } else {
        format!(" (the first spawned at {}:{})", first.file(), first.line())
    };
    Some(format!(
        "{} task(s) it spawned still run after {after}{spawned_at}: work detached into a task \
         outlives the operation",
        tasks.len(),
    ))
}

#[derive(Debug, Clone, Copy)]
enum Stop {
    Never,
    /// Right after poll `k` returned `Pending`.
    Waiting(usize),
    /// Once woken after poll `k` (0: before the first poll).
    Woken(usize),
    /// Right after `poll`, made in a fresh task poll with only `left` of the `full` units of budget
    /// such a poll starts with, returned `Pending`.
    BudgetSpent {
        poll: usize,
        left: usize,
        full: usize,
    },
    /// This long after the run started.
    After(Duration),
}

enum Ended<T> {
    Completed(T),
    Cut,
    /// Cut after a poll made with little budget ([`Stop::BudgetSpent`]) that spent all of it.
    Starved,
    Stalled,
    Spun,
}

/// Drives a fresh future to `stop` and drops it; also returns the awaits it was parked at when it
/// was dropped ([`trace::parked`]).
async fn run_once<F: Future>(
    fut: F,
    stop: Stop,
    watch: Option<&Watch>,
) -> (usize, Ended<F::Output>, Vec<Point>) {
    if let Some(watch) = watch {
        watch.reset();
    }
    let mut fut = Box::pin(fut);
    let scope = trace::new_scope();
    let (polls, ended) = drive(fut.as_mut(), stop, watch, scope).await;
    let parked = trace::parked(scope);
    // A task the future's destructor spawns (a guard handing its work to a task) is the
    // operation's too.
    match watch {
        Some(watch) => watch.polling(move || drop(fut)),
        None => drop(fut),
    }
    (polls, ended, parked)
}

/// Polls `fut` until it completes or reaches `stop`, waiting for its waker between polls. Returns
/// the polls made and how the run ended; the caller decides when the future is dropped. Every
/// poll runs in `scope` ([`trace::polling`]).
async fn drive<F: Future>(
    mut fut: Pin<&mut F>,
    stop: Stop,
    watch: Option<&Watch>,
    scope: u64,
) -> (usize, Ended<F::Output>) {
    let signal = Arc::new(WakeSignal::default());
    let waker = Waker::from(signal.clone());
    let mut cx = Context::from_waker(&waker);
    let mut polls = 0;
    let deadline = match stop {
        Stop::After(t) => Some(tokio::time::Instant::now() + t),
        _ => None,
    };
    loop {
        if matches!(stop, Stop::Woken(k) if k == polls) {
            return (polls, Ended::Cut);
        }
        if polls >= MAX_POLLS {
            return (polls, Ended::Spun);
        }
        signal.woken.store(false, Ordering::SeqCst);
        polls += 1;
        let starved = match stop {
            Stop::BudgetSpent { poll, left, full } if poll == polls => {
                // A fresh task poll starts with the full budget; leave `left` of it.
                tokio::task::yield_now().await;
                spend_budget(full - left);
                true
            }
            _ => false,
        };
        let poll = trace::polling(scope, || match watch {
            Some(watch) => watch.polling(|| fut.as_mut().poll(&mut cx)),
            None => fut.as_mut().poll(&mut cx),
        });
        if let Poll::Ready(value) = poll {
            return (polls, Ended::Completed(value));
        }
        if starved {
            let ran_out = !tokio::task::coop::has_budget_remaining();
            return (polls, if ran_out { Ended::Starved } else { Ended::Cut });
        }
        if matches!(stop, Stop::Waiting(k) if k == polls) {
            return (polls, Ended::Cut);
        }
        // The flag is the truth; a stored `Notify` permit from an earlier wake only re-checks it.
        while !signal.woken.load(Ordering::SeqCst) {
            let limit = deadline.unwrap_or_else(|| tokio::time::Instant::now() + STALL_AFTER);
            if tokio::time::timeout_at(limit, signal.notify.notified()).await.is_err() {
                let ended = if deadline.is_some() { Ended::Cut } else { Ended::Stalled };
                return (polls, ended);
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
