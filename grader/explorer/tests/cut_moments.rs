//! The explorer's newer walls, each against a known-bad and a known-good future: cuts while a
//! future still waits, cuts at runtime shutdown and outside any runtime, tasks left running,
//! seeded `select!` order, properties that shrink, and blocking work on an async worker.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use cancel_explorer::runtime::{self, SEEDS};
use cancel_explorer::{Moment, Options, Outcome, explore, explore_at_shutdown, explore_with};

/// A signal with a waiter queue, in the shape of tokio#4618: a waiter that is dropped while still
/// queued must leave the queue, or the next `notify` is handed to a dead waiter and lost.
#[derive(Default)]
struct Signal {
    state: Mutex<SignalState>,
    next: AtomicUsize,
    unregister_on_drop: bool,
}

#[derive(Default)]
struct SignalState {
    permit: bool,
    waiters: VecDeque<(usize, Waker)>,
    chosen: HashSet<usize>,
}

impl Signal {
    fn notify(&self) {
        let mut state = self.state.lock().unwrap();
        match state.waiters.pop_front() {
            Some((id, waker)) => {
                state.chosen.insert(id);
                waker.wake();
            }
            None => state.permit = true,
        }
    }

    fn wait(self: &Arc<Self>) -> Wait {
        Wait { signal: self.clone(), id: self.next.fetch_add(1, Ordering::SeqCst) }
    }
}

struct Wait {
    signal: Arc<Signal>,
    id: usize,
}

impl Future for Wait {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.signal.state.lock().unwrap();
        if state.chosen.remove(&self.id) || std::mem::take(&mut state.permit) {
            return Poll::Ready(());
        }
        if !state.waiters.iter().any(|(id, _)| *id == self.id) {
            state.waiters.push_back((self.id, cx.waker().clone()));
        }
        Poll::Pending
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        let mut state = self.signal.state.lock().unwrap();
        if self.signal.unregister_on_drop {
            state.waiters.retain(|(id, _)| *id != self.id);
        }
        // Chosen but never polled again: hand the wakeup on (both variants do this much).
        if state.chosen.remove(&self.id) {
            drop(state);
            self.signal.notify();
        }
    }
}

fn signal_with_producer(unregister_on_drop: bool) -> Arc<Signal> {
    let signal = Arc::new(Signal { unregister_on_drop, ..Signal::default() });
    let producer = signal.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
        producer.notify();
    });
    signal
}

async fn next_waiter_is_woken(signal: Arc<Signal>, outcome: Outcome<()>) -> Result<(), String> {
    if !outcome.is_cancelled() {
        return Ok(());
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    match tokio::time::timeout(Duration::from_secs(60), signal.wait()).await {
        Ok(()) => Ok(()),
        Err(_) => Err("the wakeup went to the dropped waiter; the next one hangs".into()),
    }
}

#[tokio::test(start_paused = true)]
async fn flags_a_waiter_dropped_while_still_waiting() {
    let failure = explore(
        || signal_with_producer(false),
        |s: Arc<Signal>| async move { s.wait().await },
        next_waiter_is_woken,
    )
    .await
    .unwrap_err();
    assert_eq!(failure.moment, Some(Moment::Waiting), "{failure}");
    assert_eq!(failure.cancelled_after, Some(1));
    assert!(failure.to_string().starts_with("cancelled after poll 1 of 2, while still waiting"));
}

#[tokio::test(start_paused = true)]
async fn passes_a_waiter_that_leaves_the_queue_when_dropped() {
    let report = explore(
        || signal_with_producer(true),
        |s: Arc<Signal>| async move { s.wait().await },
        next_waiter_is_woken,
    )
    .await
    .unwrap();
    assert_eq!(
        report.cuts_checked, 6,
        "before poll 1; after poll 1 at two moments, and made with no budget left and with one \
         unit (which it does not spend); poll 2 with no budget left (it needs none)"
    );
}

/// A job taken off a queue, then counted as done after an `.await` that is always ready on an idle
/// task (`consume_budget`, as a long loop yields to its runtime): only a poll made with the task's
/// budget used up waits there, and a cut then loses the job.
#[tokio::test(start_paused = true)]
async fn flags_a_job_lost_where_only_a_spent_budget_makes_the_future_wait() {
    let failure = explore(
        || Arc::new([AtomicUsize::new(1), AtomicUsize::new(0)]),
        |jobs: Arc<[AtomicUsize; 2]>| async move {
            jobs[0].fetch_sub(1, Ordering::SeqCst);
            tokio::task::consume_budget().await;
            jobs[1].fetch_add(1, Ordering::SeqCst);
        },
        |jobs, _| async move {
            let total = jobs[0].load(Ordering::SeqCst) + jobs[1].load(Ordering::SeqCst);
            if total == 1 { Ok(()) } else { Err(format!("{total} of 1 job accounted for")) }
        },
    )
    .await
    .unwrap_err();
    assert_eq!(failure.moment, Some(Moment::BudgetSpent { left: 0 }), "{failure}");
    assert_eq!(
        failure.to_string(),
        "cancelled after poll 1 of 1, made when its task had used up its budget (a busy task: \
         every tokio resource it awaited then said \"not ready\"): 0 of 1 job accounted for"
    );
}

/// Leases released remotely: the buggy `Drop` spawns the release, the right one hands it to a
/// worker synchronously (here: counts the request, which a worker would serve).
#[derive(Clone, Default)]
struct Leases {
    held: Arc<AtomicUsize>,
    release_requested: Arc<AtomicUsize>,
}

struct Lease {
    leases: Leases,
    spawn_release: bool,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.spawn_release {
            let leases = self.leases.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                leases.held.fetch_sub(1, Ordering::SeqCst);
            });
        } else {
            self.leases.release_requested.fetch_add(1, Ordering::SeqCst);
        }
    }
}

async fn use_a_lease(leases: Leases, spawn_release: bool) {
    tokio::time::sleep(Duration::from_millis(5)).await;
    leases.held.fetch_add(1, Ordering::SeqCst);
    let lease = Lease { leases, spawn_release };
    tokio::time::sleep(Duration::from_millis(20)).await;
    drop(lease);
}

fn none_leaked(leases: &Leases) -> Result<(), String> {
    let held = leases.held.load(Ordering::SeqCst);
    let requested = leases.release_requested.load(Ordering::SeqCst);
    match held - requested {
        0 => Ok(()),
        n => Err(format!("{n} lease(s) never released")),
    }
}

#[tokio::test(start_paused = true)]
async fn a_running_runtime_hides_a_drop_that_spawns_its_cleanup() {
    let report = explore(
        Leases::default,
        |l| use_a_lease(l, true),
        |l, _| async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            none_leaked(&l)
        },
    )
    .await;
    assert!(report.is_ok(), "{report:?}");
}

#[test]
fn flags_a_drop_that_spawns_its_cleanup_at_runtime_shutdown() {
    let failure =
        explore_at_shutdown(Leases::default, |l| use_a_lease(l, true), |l, _| none_leaked(&l))
            .unwrap_err();
    assert_eq!(failure.moment, Some(Moment::Shutdown), "{failure}");
    assert_eq!(
        failure.to_string(),
        "cancelled after poll 2 of 3 by runtime shutdown: 1 lease(s) never released"
    );
}

#[test]
fn flags_a_drop_that_panics_outside_a_runtime() {
    let failure =
        explore_at_shutdown(Leases::default, |l| use_a_lease(l, true), |_, _| Ok(())).unwrap_err();
    assert_eq!(failure.moment, Some(Moment::OutsideRuntime), "{failure}");
    assert!(
        failure.to_string().starts_with(
            "dropped outside any runtime after poll 2 of 3: dropping the future panicked"
        ),
        "{failure}"
    );
}

#[test]
fn passes_a_drop_that_hands_its_cleanup_over_synchronously() {
    let report =
        explore_at_shutdown(Leases::default, |l| use_a_lease(l, false), |l, _| none_leaked(&l))
            .unwrap();
    assert_eq!(report.cuts_checked, 6, "two moments after each of 0, 1 and 2 polls");
}

/// Forwards `n` items through a spawned task; `abort_on_drop` ties the task to the future.
async fn forward(count: Arc<AtomicUsize>, abort_on_drop: bool) {
    let task = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(10)).await;
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    let _guard = abort_on_drop.then(|| task.abort_handle()).map(AbortOnDrop);
    tokio::time::sleep(Duration::from_millis(35)).await;
    if abort_on_drop {
        return;
    }
    std::mem::forget(_guard);
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn explore_forwarder(abort_on_drop: bool) -> Result<cancel_explorer::Exploration, String> {
    runtime::current_thread(SEEDS[0]).block_on(async {
        explore_with(
            Options::default().forbid_leftover_tasks(),
            || Arc::new(AtomicUsize::new(0)),
            |count| forward(count, abort_on_drop),
            |_, _| async { Ok(()) },
        )
        .await
        .map_err(|failure| failure.to_string())
    })
}

#[test]
fn flags_a_task_left_running_after_the_cut() {
    let seen = explore_forwarder(false).unwrap_err();
    assert!(seen.contains("1 task(s) it spawned still run after it completed"), "{seen}");
    assert!(seen.contains("cut_moments.rs"), "names where the task was spawned: {seen}");
}

#[test]
fn passes_a_task_aborted_with_its_operation() {
    explore_forwarder(true).unwrap();
}

/// Hands its work to a task from its destructor when dropped before it finishes.
struct SpawnOnDrop(Arc<AtomicUsize>);

impl Drop for SpawnOnDrop {
    fn drop(&mut self) {
        let count = Arc::clone(&self.0);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            count.fetch_add(1, Ordering::SeqCst);
        });
    }
}

#[test]
fn flags_a_task_spawned_by_the_destructor_of_a_cut_future() {
    let seen = runtime::current_thread(SEEDS[0]).block_on(async {
        explore_with(
            Options::default().forbid_leftover_tasks(),
            || Arc::new(AtomicUsize::new(0)),
            |count| async move {
                let guard = SpawnOnDrop(count);
                tokio::time::sleep(Duration::from_millis(10)).await;
                std::mem::forget(guard);
            },
            |_, _| async { Ok(()) },
        )
        .await
        .unwrap_err()
        .to_string()
    });
    assert!(
        seen.starts_with("cancelled after poll 1 of 2, while still waiting: 1 task(s)"),
        "{seen}"
    );
}

#[test]
#[should_panic(expected = "needs a current-thread runtime")]
fn refuses_to_look_for_leftover_tasks_on_a_multi_thread_runtime() {
    runtime::multi_thread(2, SEEDS[0]).block_on(async {
        let _ = explore_with(
            Options::default().forbid_leftover_tasks(),
            || (),
            |()| async {},
            |(), _| async { Ok(()) },
        )
        .await;
    });
}

/// Which of two ready branches `select!` takes, ten times in a row, on a runtime seeded `seed`.
fn select_choices(seed: u64) -> Vec<u8> {
    runtime::current_thread(seed).block_on(async {
        let mut picks = Vec::new();
        for _ in 0..10 {
            let pick = tokio::select! {
                () = std::future::ready(()) => 0,
                () = std::future::ready(()) => 1,
            };
            picks.push(pick);
        }
        picks
    })
}

#[test]
fn select_order_is_fixed_by_the_seed_and_varies_across_seeds() {
    for seed in SEEDS {
        assert_eq!(select_choices(seed), select_choices(seed), "seed {seed} must repeat");
    }
    let firsts: Vec<u8> = SEEDS.iter().map(|&s| select_choices(s)[0]).collect();
    assert!(firsts.contains(&0) && firsts.contains(&1), "the seeds cover both orders: {firsts:?}");
}

#[test]
fn a_property_shrinks_to_the_smallest_failing_scenario() {
    let panic = std::panic::catch_unwind(|| {
        cancel_explorer::check_property(64, 0usize..1000, |n| async move {
            tokio::time::sleep(Duration::from_millis(n as u64)).await;
            if n < 300 { Ok(()) } else { Err(format!("{n} is too many")) }
        });
    })
    .unwrap_err();
    let message = panic.downcast_ref::<String>().unwrap();
    assert_eq!(message, "the smallest failing scenario: 300: 300 is too many");
}

#[test]
fn tells_an_async_worker_from_the_blocking_pool() {
    assert!(!cancel_explorer::on_async_thread(), "outside any runtime");
    runtime::current_thread(SEEDS[0]).block_on(async {
        assert!(cancel_explorer::on_async_thread(), "in block_on");
        assert!(tokio::spawn(async { cancel_explorer::on_async_thread() }).await.unwrap());
        let blocking = tokio::task::spawn_blocking(cancel_explorer::on_async_thread).await.unwrap();
        assert!(!blocking, "on the blocking pool");
    });
}

/// Saves through a task that writes a temporary file, works, then renames it; the caller awaits the
/// task, and the task is aborted when the caller is dropped (a "shield" that is not one).
async fn save_in_a_task(files: Arc<Mutex<Vec<&'static str>>>) {
    let task = tokio::spawn(async move {
        files.lock().unwrap().push("doc.tmp");
        tokio::time::sleep(Duration::from_millis(10)).await;
        let mut files = files.lock().unwrap();
        files.retain(|f| *f != "doc.tmp");
        files.push("doc");
    });
    let guard = AbortOnDrop(task.abort_handle());
    let _ = task.await;
    drop(guard);
}

async fn no_temporary_left(
    files: Arc<Mutex<Vec<&'static str>>>,
    _: Outcome<()>,
) -> Result<(), String> {
    let files = files.lock().unwrap();
    if files.contains(&"doc.tmp") { Err(format!("left behind: {files:?}")) } else { Ok(()) }
}

#[tokio::test(start_paused = true)]
async fn only_the_clock_can_cut_work_shielded_in_a_task() {
    let fresh = || Arc::new(Mutex::new(Vec::new()));
    explore(fresh, save_in_a_task, no_temporary_left).await.unwrap();
    let failure = explore_with(
        Options::default().cut_every(Duration::from_millis(1)),
        fresh,
        save_in_a_task,
        no_temporary_left,
    )
    .await
    .unwrap_err();
    assert_eq!(failure.moment, Some(Moment::Elapsed(Duration::from_millis(1))));
    assert_eq!(
        failure.to_string(),
        "cancelled 1ms into the run (after poll 1 of 2): left behind: [\"doc.tmp\"]"
    );
}
