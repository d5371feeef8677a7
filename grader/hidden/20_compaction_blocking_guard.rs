//! Hidden tests for kata 20: the compaction lock must be held for as long as the merge runs, even
//! when the caller of `compact` is aborted or times out while it waits for the merge; the merge
//! must run on the blocking pool; a caller dropped while it still waits for the lock must never
//! merge, not even when cut in the instant the lock is handed to it, and while it waits it must
//! neither wait on the blocking pool nor retry the lock over and over; compactions that wait get
//! the lock in the order they asked; a merge's own panic reaches the caller; and whenever a merge runs, at whatever poll its caller was cut, it holds the lock.
//! The lock comes free as the merge's blocking task ends, even while no task on the runtime runs
//! (no task that must be polled again holds it, or keeps a place in its queue for a caller that
//! is gone).
//!
//! Every test runs on the paused current-thread runtime of `hidden_test!`. The test's merger is the
//! blocking stand-in: it records where it runs ([`Place`]: the blocking pool, an async worker, or a
//! thread outside the runtime) and, on the blocking pool, parks on a std gate that the test opens
//! from outside, so "the merge is still running" is a state the test holds, not a race. Anywhere
//! else it must not park (on an async worker that would freeze the runtime's only thread, the
//! test's own), so it records the mistake and returns. A merge on a thread outside the runtime
//! may report before or after the test's clock runs out; both are told the same way, so the
//! verdict does not depend on that thread.
//!
//! Nothing waits on the wall clock. Two facts of tokio's paused clock do the timing: while a
//! `spawn_blocking` task exists (queued or running), the clock does not auto-advance (documented on
//! `tokio::time::pause`), so a long virtual sleep ends only once every blocking task is over
//! ([`all_blocking_work_done`]); and when nothing can wake the test, the clock jumps to its next
//! timer, so a compaction that would never finish fails after an hour of virtual time instead of
//! hanging.
//!
//! No verdict may depend on how fast a blocking-pool thread runs. Every step waits for a state it
//! can name: a merge reports through a channel that it started, `settle` lets the runtime's own
//! tasks run until each waits, and what lives on the blocking pool is read from the runtime's
//! counters ([`blocking_work`]), which count a blocking task from the moment it is spawned,
//! whether a thread has picked it up yet or not.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use compaction_blocking_guard::{MergeStats, SegmentMerger, Store};
use kata_support::{Outcome, assert_cancel_safe_at_shutdown, hidden_test};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const STATS: MergeStats = MergeStats { segments_in: 8, segments_out: 1 };

/// Virtual time after which a compaction that has not finished is reported as stuck.
const STUCK: Duration = Duration::from_secs(3600);

/// The admin endpoint's timeout around `compact`.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// What the test's merger shares with the test.
struct Shared {
    /// Each merge reports, as it starts, where it runs.
    started: mpsc::UnboundedSender<Place>,
    /// Closed until the test opens it; merges on the blocking pool park here.
    gate: Mutex<bool>,
    opened: Condvar,
    active: AtomicUsize,
    most_at_once: AtomicUsize,
    merges: AtomicUsize,
    on_async_worker: AtomicUsize,
    /// Merges that found the compaction lock free when they started or when they ended.
    unlocked: AtomicUsize,
    /// The store the merger belongs to, to look at its lock from inside a merge. Cleared when the
    /// test's [`Control`] is dropped, which breaks the store-merger cycle.
    store: Mutex<Option<Store>>,
    /// Each merge returns its place in the order the merges started (1 for the first) as its
    /// `segments_in`, instead of [`STATS`], so that each caller can tell which merge was its own.
    numbered: bool,
}

impl Shared {
    /// Counts the merge as unlocked when the store's compaction lock is free right now.
    fn note_lock(&self) {
        let store = self.store.lock().expect("store slot").clone();
        if store.is_some_and(|store| !store.is_compacting()) {
            self.unlocked.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Where a merge runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    BlockingPool,
    AsyncWorker,
    /// A thread outside the runtime (`std::thread::spawn`): not on the blocking pool.
    OwnThread,
}

impl Place {
    fn here() -> Place {
        if tokio::runtime::Handle::try_current().is_err() {
            Place::OwnThread
        } else if kata_support::on_async_thread() {
            Place::AsyncWorker
        } else {
            Place::BlockingPool
        }
    }
}

/// Why a merge on an async worker is wrong.
const ON_AN_ASYNC_WORKER: &str = "the merge ran on an async worker (in a `tokio::spawn`ed task or \
     on the runtime's own thread), not on the blocking pool. `SegmentMerger::merge` blocks for the \
     whole merge (CPU work and synchronous disk I/O): while it runs, that worker runs no other \
     task, and on a current-thread runtime the whole service stops until the merge is over. The \
     merge must run on the blocking pool (`spawn_blocking`), whoever holds the lock";

/// Why a test saw no merge on the blocking pool when one was due. One message for both ways it is
/// seen (a merge that reported from another thread, or none that started before the clock ran
/// out), since which comes first depends on how fast that other thread runs.
const NOT_ON_THE_POOL: &str = "compact() was called with the lock free, but its merge did not run \
     on tokio's blocking pool: it ran on a thread of its own, or none started within an hour of \
     virtual time while the blocking pool had no work at all. A thread of its own \
     (`std::thread::spawn`) is not the blocking pool: the runtime does not wait for it when it \
     shuts down, so `main` returning mid-compaction kills the merge halfway through rewriting \
     segments. The merge must run on the blocking pool (`spawn_blocking`)";

/// A merger that runs straight through and counts its merges.
#[derive(Default)]
struct QuickMerger(Arc<AtomicUsize>);

impl SegmentMerger for QuickMerger {
    fn merge(&self) -> MergeStats {
        self.0.fetch_add(1, Ordering::SeqCst);
        STATS
    }
}

/// The most compactions that wait for the lock at once, as the README states:
/// `every_compaction_of_a_crowd_waiting_for_the_lock_runs_its_own_merge` queues this many.
const MAX_WAITING: usize = 64;

/// A merger that runs straight through and records the thread each merge ran on.
struct ThreadMerger(Arc<Mutex<Vec<std::thread::ThreadId>>>);

impl SegmentMerger for ThreadMerger {
    fn merge(&self) -> MergeStats {
        self.0.lock().expect("thread list").push(std::thread::current().id());
        STATS
    }
}

/// A future that records the thread of each of its polls.
struct PollThreads<F> {
    inner: Pin<Box<F>>,
    threads: Arc<Mutex<Vec<std::thread::ThreadId>>>,
}

impl<F: Future> Future for PollThreads<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.threads.lock().expect("thread list").push(std::thread::current().id());
        self.inner.as_mut().poll(cx)
    }
}

/// A merger that blocks (on the test's gate) the way a real merge blocks on disk and CPU.
struct GatedMerger(Arc<Shared>);

impl SegmentMerger for GatedMerger {
    fn merge(&self) -> MergeStats {
        let shared = &self.0;
        let place = Place::here();
        let on_worker = place == Place::AsyncWorker;
        let now = shared.active.fetch_add(1, Ordering::SeqCst) + 1;
        shared.most_at_once.fetch_max(now, Ordering::SeqCst);
        let number = shared.merges.fetch_add(1, Ordering::SeqCst) + 1;
        if on_worker {
            shared.on_async_worker.fetch_add(1, Ordering::SeqCst);
        }
        shared.note_lock();
        let _ = shared.started.send(place);
        // Only a merge on the blocking pool parks: anywhere else it would stall the runtime's
        // only thread, or hold up the test process after a failure.
        if place == Place::BlockingPool {
            let mut open = shared.gate.lock().expect("gate lock");
            while !*open {
                open = shared.opened.wait(open).expect("gate lock");
            }
        }
        shared.note_lock();
        shared.active.fetch_sub(1, Ordering::SeqCst);
        if shared.numbered { MergeStats { segments_in: number, ..STATS } } else { STATS }
    }
}

/// The test's side of a [`GatedMerger`]. Dropping it opens the gate, so that a failing test never
/// leaves a merge parked (the runtime waits for its blocking threads when it is dropped).
struct Control {
    shared: Arc<Shared>,
    started: mpsc::UnboundedReceiver<Place>,
}

impl Control {
    /// Waits until a merge has started; fails if it started on an async worker, or if none starts
    /// (then `caller`, the task that called `compact`, says why when it panicked).
    async fn wait_for_merge(&mut self, caller: &mut JoinHandle<impl Send + 'static>) {
        match tokio::time::timeout(STUCK, self.started.recv()).await {
            Ok(Some(Place::BlockingPool)) => {}
            Ok(Some(Place::AsyncWorker)) => self.fail_on_async_worker(),
            Ok(Some(Place::OwnThread)) => panic!("{NOT_ON_THE_POOL}"),
            Ok(None) => unreachable!("the merger keeps its sender"),
            Err(_) => {
                let (why, panicked) = if caller.is_finished() {
                    match caller.await {
                        Err(e) if e.is_panic() => {
                            (format!("compact() panicked: {}", panic_message(e.into_panic())), true)
                        }
                        Err(e) => (format!("the compaction task ended with: {e}"), false),
                        Ok(_) => ("compact() returned without merging".to_owned(), false),
                    }
                } else {
                    ("compact() is still waiting".to_owned(), false)
                };
                if !panicked && blocking_work() == 0 {
                    panic!("{NOT_ON_THE_POOL}");
                }
                panic!(
                    "compact() was called with the lock free, but within an hour of virtual time \
                     no merge started on the blocking pool: {why}"
                );
            }
        }
    }

    fn fail_on_async_worker(&self) -> ! {
        self.open();
        panic!("{ON_AN_ASYNC_WORKER}");
    }

    /// Fails if any merge so far ran on an async worker.
    fn check_every_merge_on_blocking_pool(&self) {
        if self.shared.on_async_worker.load(Ordering::SeqCst) > 0 {
            self.fail_on_async_worker();
        }
    }

    /// Lets every parked merge, and every later one, run to the end.
    fn open(&self) {
        *self.shared.gate.lock().expect("gate lock") = true;
        self.shared.opened.notify_all();
    }

    fn merges(&self) -> usize {
        self.shared.merges.load(Ordering::SeqCst)
    }

    /// Fails if any merge so far found the compaction lock free while it ran.
    fn check_every_merge_held_the_lock(&self) {
        let unlocked = self.shared.unlocked.load(Ordering::SeqCst);
        assert!(unlocked == 0, "{}", unlocked_message(unlocked));
    }

    fn most_at_once(&self) -> usize {
        self.shared.most_at_once.load(Ordering::SeqCst)
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.open();
        if let Ok(mut store) = self.shared.store.lock() {
            store.take();
        }
    }
}

fn unlocked_message(unlocked: usize) -> String {
    format!(
        "{unlocked} time(s) a merge asked `Store::is_compacting()` while it ran (as it started or \
         as it ended) and was told `false`: either the merge ran with no lock held, so a second \
         compaction could have started alongside it, or `is_compacting` does not look at the lock \
         the merge holds (the metrics endpoint would report no compaction while one runs). \
         Whoever ends the caller, and at whichever `.await`, the lock must already belong to the \
         merge when the merge starts and stay with it until the merge returns, and \
         `is_compacting` must report that lock"
    )
}

/// A store whose merges block on the test's gate and report what they see.
fn gated_store() -> (Store, Control) {
    store_with(gated_merger(false))
}

/// A [`gated_store`] whose merges return their place in the order the merges started.
fn numbered_gated_store() -> (Store, Control) {
    store_with(gated_merger(true))
}

fn store_with((merger, control): (GatedMerger, Control)) -> (Store, Control) {
    let store = Store::new(merger);
    *control.shared.store.lock().expect("store slot") = Some(store.clone());
    (store, control)
}

/// How busy the blocking pool is right now: threads not idle plus tasks queued for a thread. tokio
/// counts a blocking task from the moment `spawn_blocking` returns (it is queued, and a thread is
/// marked busy for it), so a new blocking task raises this at once and keeps it raised until it
/// ends, however far its thread has got (briefly by two, while a new thread is still starting).
/// Nothing else changes it while every merge is parked on the gate.
fn blocking_work() -> usize {
    let metrics = tokio::runtime::Handle::current().metrics();
    metrics.num_blocking_threads().saturating_sub(metrics.num_idle_blocking_threads())
        + metrics.blocking_queue_depth()
}

fn gated_merger(numbered: bool) -> (GatedMerger, Control) {
    let (started_tx, started) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        started: started_tx,
        gate: Mutex::new(false),
        opened: Condvar::new(),
        active: AtomicUsize::new(0),
        most_at_once: AtomicUsize::new(0),
        merges: AtomicUsize::new(0),
        on_async_worker: AtomicUsize::new(0),
        unlocked: AtomicUsize::new(0),
        store: Mutex::new(None),
        numbered,
    });
    (GatedMerger(shared.clone()), Control { shared, started })
}

/// A future that counts how often it is polled.
struct CountPolls<F> {
    inner: F,
    polls: Arc<AtomicUsize>,
}

impl<F: Future + Unpin> Future for CountPolls<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        Pin::new(&mut self.inner).poll(cx)
    }
}

fn spawn_compaction(store: &Store) -> JoinHandle<MergeStats> {
    let store = store.clone();
    tokio::spawn(async move { store.compact().await })
}

/// Awaits a compaction, failing (after an hour of virtual time) instead of hanging when it never
/// gets the lock.
async fn finish<T>(compaction: impl Future<Output = T>, what: &str) -> T {
    match tokio::time::timeout(STUCK, compaction).await {
        Ok(value) => value,
        Err(_) => panic!(
            "{what} was still waiting an hour after every merge had ended: the compaction lock \
             was never given back"
        ),
    }
}

/// The steps by which the test moves the paused clock while a merge is held: 1 ms, doubling to
/// about 795 days (over four years in all, far beyond any period a waiter would set: 90 days, a
/// year). A waiter that wakes up after a pause of any length up to the last step, fixed or growing,
/// wakes up during at least one step, and one that wakes up after a year does so at least twice.
/// Each step is one jump of the paused clock: 37 of them cost the same however long they are.
const WAIT_STEPS: [Duration; 37] = {
    let mut steps = [Duration::ZERO; 37];
    let mut i = 0;
    while i < steps.len() {
        steps[i] = Duration::from_millis(1 << i);
        i += 1;
    }
    steps
};

/// The far end of the paused clock: 2^62 ms, some 146 million years, reached in one jump after
/// [`WAIT_STEPS`]. A waiter that leaves the queue after any pause it could set (5 years, 200) does
/// so during the jump (a single `sleep` that long would end at 30 years: tokio caps it, so the far
/// end is reached with `advance`, at no cost).
const FAR_END: Duration = kata_support::time::FAR_END;

/// How many times `settle` lets the other tasks run.
const SETTLE_TURNS: usize = 16;

/// Lets the spawned tasks run until each waits for something.
async fn settle() {
    for _ in 0..SETTLE_TURNS {
        tokio::task::yield_now().await;
    }
}

/// Returns once every `spawn_blocking` task of the runtime has ended, including merges that nobody
/// waits for: the paused clock cannot auto-advance past this sleep while one exists.
async fn all_blocking_work_done() {
    tokio::time::sleep(Duration::from_secs(1)).await;
}

fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    match panic.downcast::<String>() {
        Ok(text) => *text,
        Err(panic) => panic.downcast_ref::<&str>().map_or("(no message)", |text| text).to_owned(),
    }
}

/// What the test's merge panics with: a payload of a type of its own, so that the caller of
/// `compact` can tell whether it caught the merge's panic or another one.
#[derive(Debug, PartialEq, Eq)]
struct CorruptSegment(u32);

/// What a caught panic was, for a failure message.
fn describe_panic(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<String>() {
        format!("a panic with the message {text:?}")
    } else if let Some(text) = panic.downcast_ref::<&str>() {
        format!("a panic with the message {text:?}")
    } else {
        "a panic with a payload of another type".to_owned()
    }
}

/// What [`PanicsOnce`]'s merge panics with.
#[derive(Default, Clone, Copy, Debug)]
enum Payload {
    /// A `CorruptSegment(7)`, a type of its own.
    #[default]
    Own,
    /// A `&'static str`, as `panic!("...")` with no arguments raises.
    Str,
    /// A `String`, as `panic!` with arguments and `expect` raise.
    String,
}

/// A merger that panics on its first merge (a corrupt segment) and merges normally after that.
#[derive(Default)]
struct PanicsOnce {
    payload: Payload,
    merges: Arc<AtomicUsize>,
    /// Merges that ran on an async worker, and on a thread outside the runtime.
    on_async_worker: Arc<AtomicUsize>,
    on_own_thread: Arc<AtomicUsize>,
}

impl SegmentMerger for PanicsOnce {
    fn merge(&self) -> MergeStats {
        match Place::here() {
            Place::BlockingPool => {}
            Place::AsyncWorker => _ = self.on_async_worker.fetch_add(1, Ordering::SeqCst),
            Place::OwnThread => _ = self.on_own_thread.fetch_add(1, Ordering::SeqCst),
        }
        if self.merges.fetch_add(1, Ordering::SeqCst) == 0 {
            // The test's merge panics on purpose, with a payload of its own type, or with the
            // message of a `panic!` or an `expect`.
            match self.payload {
                Payload::Own => std::panic::panic_any(CorruptSegment(7)),
                Payload::Str => std::panic::panic_any("segment 7 is unreadable"),
                Payload::String => std::panic::panic_any(format!("segment {} is unreadable", 7)),
            }
        }
        STATS
    }
}

/// Blocks the runtime's thread (the test's own) until the blocking pool has no work left: every
/// blocking task has returned, and whatever it dropped as it ended (a guard, handing the lock to
/// the next waiter) has been dropped. Nothing on the runtime runs meanwhile, so a task that the
/// hand-over woke has not run yet. A thread of the pool marks itself idle only after its task has
/// run to the end, so this waits for a state, not for time; the bound only keeps a fix whose
/// blocking task waits on the runtime from hanging the test.
fn wait_until_the_blocking_pool_is_idle() {
    for _ in 0..50_000_000 {
        if blocking_work() == 0 {
            return;
        }
        std::thread::yield_now();
    }
}

const LOCK_RELEASED: &str = "the compaction lock was released with it. `spawn_blocking` work cannot \
     be cancelled: the merge is still rewriting segments, yet a second compaction could start now \
     and merge the same segments at the same time. The lock must be held by the merge, not by the \
     future that waits for it";

/// A future that the test can hold back: while it is held, it is not polled, even when woken, as a
/// task that waits for its turn on a busy runtime is not. Releasing it wakes it.
struct HeldBack<F> {
    inner: Pin<Box<F>>,
    gate: Arc<Mutex<HoldBack>>,
}

#[derive(Default)]
struct HoldBack {
    held: bool,
    woken: Option<std::task::Waker>,
}

impl<F: Future> Future for HeldBack<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        {
            let mut gate = self.gate.lock().expect("hold-back lock");
            if gate.held {
                gate.woken = Some(cx.waker().clone());
                return Poll::Pending;
            }
        }
        self.inner.as_mut().poll(cx)
    }
}

/// Polls `future` once, from the test's own task, and says whether it finished.
async fn poll_once<F: Future>(mut future: Pin<&mut F>) -> Option<F::Output> {
    std::future::poll_fn(|cx| match future.as_mut().poll(cx) {
        Poll::Ready(output) => Poll::Ready(Some(output)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

/// Finishes a compaction that [`poll_once`] started: its stats, if that one poll finished it.
async fn finish_polled<F: Future<Output = MergeStats>>(
    at_once: Option<MergeStats>,
    future: Pin<&mut F>,
    what: &str,
) -> MergeStats {
    match at_once {
        Some(stats) => stats,
        None => finish(future, what).await,
    }
}

/// Holds back (`true`) or releases (`false`) a [`HeldBack`] future; releasing wakes it.
fn hold_back(gate: &Mutex<HoldBack>, held: bool) {
    let mut gate = gate.lock().expect("hold-back lock");
    gate.held = held;
    if !held && let Some(waker) = gate.woken.take() {
        waker.wake();
    }
}

hidden_test! {
    /// A deploy shuts the runtime down with the admin request's `compact` parked in a task, after
    /// every possible poll; or the `compact` future outlives its runtime and is dropped after it,
    /// outside any runtime (the runtime waits for its blocking pool, so the merge is over by
    /// then). Dropping it is safe wherever that happens, like the abort and the timeout: it must
    /// not panic, and the lock is free once the runtime is gone.
    fn a_compaction_dropped_at_runtime_shutdown_or_after_it_is_safe() {
        assert_cancel_safe_at_shutdown(
            || {
                let merges = Arc::new(AtomicUsize::new(0));
                (Arc::new(Store::new(QuickMerger(merges.clone()))), merges)
            },
            |(store, _): (Arc<Store>, Arc<AtomicUsize>)| async move { store.compact().await },
            |(store, merges), outcome| {
                let merges = merges.load(Ordering::SeqCst);
                if store.is_compacting() {
                    return Err(format!(
                        "the runtime is gone and {merges} merge(s) ran, yet the compaction lock \
                         is still held: expected it free"
                    ));
                }
                match outcome {
                    Outcome::Completed(stats) if stats != STATS || merges != 1 => Err(format!(
                        "a compaction nobody cut returned {stats:?} after {merges} merge(s); \
                         expected {STATS:?} after one"
                    )),
                    _ if merges > 1 => Err(format!("one call of `compact` ran {merges} merges")),
                    _ => Ok(()),
                }
            },
        );
    }

    /// The service runs on a multi-thread runtime. There too, each merge runs on the blocking
    /// pool: not on the async worker whose poll of `compact` started it (that poll could not end
    /// before the merge did, so an abort or a timeout of the caller could not take effect). No
    /// clock and no race decide it: an uncontended `compact` starts its merge in its first poll,
    /// and the test compares the thread of that poll with the merge's.
    fn on_a_multi_thread_runtime_the_merge_runs_on_the_blocking_pool() {
        let runtime = kata_support::runtime::multi_thread(2, kata_support::runtime::SEEDS[0]);
        let merged_on = Arc::new(Mutex::new(Vec::new()));
        let store = Store::new(ThreadMerger(merged_on.clone()));
        for round in 1..=4 {
            let polled_on = Arc::new(Mutex::new(Vec::new()));
            let store = store.clone();
            let compaction = async move { store.compact().await };
            let compaction = PollThreads { inner: Box::pin(compaction), threads: polled_on.clone() };
            let stats = runtime.block_on(runtime.spawn(compaction)).expect("the compaction task failed");
            assert_eq!(stats, STATS, "compact() returned {stats:?} instead of its merge's stats");
            let merged_on = merged_on.lock().expect("thread list").clone();
            assert_eq!(merged_on.len(), round, "{round} compactions ran {} merges", merged_on.len());
            assert!(
                !polled_on.lock().expect("thread list").contains(&merged_on[round - 1]),
                "on a multi-thread runtime, compaction {round} (with the lock free) ran its merge \
                 on an async worker thread that was polling compact(), not on the blocking pool. \
                 That poll cannot end before the merge does: the worker runs no other task for \
                 minutes, and an abort or a timeout of the caller cannot take effect until the \
                 merge is over. The merge must run on the blocking pool, on every runtime"
            );
        }
    }

    /// Admin requests pile up behind a long merge: `MAX_WAITING` compactions (the most the README
    /// lets wait at once) queue for the lock while it runs, then every third of them is cut while
    /// it waits. Each one left must run a merge of its own, in the order it called `compact`, and
    /// return that merge's stats (however many were waiting when it asked); none that was cut
    /// merges.
    async fn every_compaction_of_a_crowd_waiting_for_the_lock_runs_its_own_merge() {
        let (store, mut control) = numbered_gated_store();
        let mut first = spawn_compaction(&store);
        control.wait_for_merge(&mut first).await;
        let mut waiting: Vec<_> = (0..MAX_WAITING).map(|_| spawn_compaction(&store)).collect();
        settle().await;
        let cut = |n: usize| n % 3 == 2;
        for (n, waiter) in waiting.iter().enumerate() {
            if cut(n) {
                waiter.abort();
            }
        }
        settle().await;
        control.open();
        finish(&mut first, "the first compact()").await.expect("the first compaction failed");
        let mut expected_merge = 1;
        for (n, waiter) in waiting.iter_mut().enumerate() {
            let what = format!("compaction {} of the {MAX_WAITING} that waited", n + 1);
            let ended = finish(waiter, &what).await;
            if cut(n) {
                continue;
            }
            let stats = ended.expect("a compaction task that was not cut failed");
            expected_merge += 1;
            assert!(
                stats.segments_in == expected_merge && stats.segments_out == STATS.segments_out,
                "{MAX_WAITING} compactions called compact() one after the other while a merge ran \
                 (every third of them then cut while it waited); {what}, not cut, returned \
                 {stats:?}, expected the stats of a merge of its own, the {expected_merge}th to \
                 start ({:?}). Every compaction that waits runs its own merge once its turn \
                 comes, in the order they called compact(), however many wait with it",
                MergeStats { segments_in: expected_merge, ..STATS }
            );
        }
        all_blocking_work_done().await;
        let merges = control.merges();
        assert_eq!(
            merges, expected_merge,
            "{} compactions were not cut, but {merges} merges ran: a compaction that was cut while \
             it waited for the lock merged",
            expected_merge
        );
        assert_eq!(control.most_at_once(), 1, "merges ran at once: a compaction did not wait for the lock");
        control.check_every_merge_on_blocking_pool();
        control.check_every_merge_held_the_lock();
    }

    /// Nothing cancelled: the merge runs on the blocking pool, the lock is held while it runs and
    /// released when it returns, and `compact` returns the merge's stats.
    async fn compacts_and_holds_the_lock_while_merging() {
        let (store, mut control) = gated_store();
        let mut caller = spawn_compaction(&store);
        control.wait_for_merge(&mut caller).await;
        assert!(
            store.is_compacting(),
            "a merge is running, but `Store::is_compacting()` says `false`: either the merge holds \
             no lock, or `is_compacting` does not look at the lock the merge holds"
        );
        control.open();
        let stats = finish(caller, "compact()").await.expect("the compaction task failed");
        assert_eq!(stats, STATS, "compact() returned {stats:?} instead of its merge's stats");
        // Whatever the blocking task still does after the merge returned (handing the lock back,
        // reporting) happens on a real thread: look at the lock once it is over.
        all_blocking_work_done().await;
        assert!(!store.is_compacting(), "the compaction finished, but the lock is still held");
        control.check_every_merge_on_blocking_pool();
        control.check_every_merge_held_the_lock();
    }

    /// The maintenance task is aborted while its merge runs. The merge cannot be stopped, so the
    /// lock must stay held until it ends, and a second compaction must wait for it, then run alone.
    async fn an_aborted_caller_keeps_the_lock_until_its_merge_ends() {
        let (store, mut control) = gated_store();
        let mut caller = spawn_compaction(&store);
        control.wait_for_merge(&mut caller).await;

        // A config reload aborts the maintenance task while it waits for the merge.
        caller.abort();
        match caller.await {
            Err(e) if e.is_cancelled() => {}
            Err(e) => panic!("the compaction task failed instead of being cancelled: {e}"),
            Ok(_) => panic!("compact() returned although its merge is still running"),
        }
        assert!(
            store.is_compacting(),
            "the caller of compact() was aborted while its merge was still running on a blocking \
             thread, and {LOCK_RELEASED}"
        );

        // The new maintenance task compacts while the orphaned merge still runs.
        let second = spawn_compaction(&store);
        settle().await;
        control.open();
        let stats = finish(second, "a second compact() after an aborted one")
            .await
            .expect("the second compaction task failed");
        assert_eq!(
            stats, STATS,
            "a second compact() after an aborted one returned {stats:?} instead of its merge's \
             stats: it must wait for the first merge to end and then run its own merge, not skip it"
        );
        all_blocking_work_done().await;
        let (merges, most) = (control.merges(), control.most_at_once());
        assert_eq!(merges, 2, "expected 2 merges, the aborted caller's and the second one's, saw {merges}");
        assert_eq!(
            most, 1,
            "{most} merges ran at once: the second compaction did not wait for the aborted \
             caller's merge"
        );
        assert!(!store.is_compacting(), "both merges are over, but the lock is still held");
        control.check_every_merge_on_blocking_pool();
        control.check_every_merge_held_the_lock();
    }

    /// The admin endpoint's `timeout(30s, compact())` fires while the merge runs: the lock stays
    /// held, and it is given back once the orphaned merge ends, so a queued compaction runs.
    async fn a_timed_out_caller_keeps_the_lock_and_the_merge_gives_it_back() {
        let (store, mut control) = gated_store();
        let endpoint = store.clone();
        let mut caller = tokio::spawn(async move {
            tokio::time::timeout(ADMIN_TIMEOUT, endpoint.compact()).await
        });
        control.wait_for_merge(&mut caller).await;

        // The merge blocks, so the clock is moved by hand past the endpoint's timeout.
        tokio::time::advance(ADMIN_TIMEOUT + Duration::from_secs(1)).await;
        match finish(caller, "the admin endpoint's compact()").await {
            Ok(Err(_elapsed)) => {}
            Ok(Ok(_)) => panic!("compact() returned although its merge is still running"),
            Err(e) => panic!("the admin endpoint's task failed: {e}"),
        }
        assert!(
            store.is_compacting(),
            "the admin endpoint's timeout fired while its merge was still running on a blocking \
             thread, and {LOCK_RELEASED}"
        );

        // Queue a compaction behind the orphaned merge, then let both merges run.
        let queued = spawn_compaction(&store);
        settle().await;
        control.open();
        let stats = finish(queued, "a compaction queued behind an orphaned merge")
            .await
            .expect("the queued compaction task failed");
        assert_eq!(
            stats, STATS,
            "a compaction queued behind an orphaned merge returned {stats:?} instead of its \
             merge's stats: it must wait for the lock and then run its own merge, not skip it"
        );
        all_blocking_work_done().await;
        let most = control.most_at_once();
        assert_eq!(most, 1, "{most} merges ran at once: the queued compaction did not wait");
        assert!(
            !store.is_compacting(),
            "every merge is over, but the compaction lock is still held: the orphaned merge \
             never gave it back"
        );
        control.check_every_merge_on_blocking_pool();
        control.check_every_merge_held_the_lock();
    }

    /// A second compaction is already waiting for the lock when the first caller is cut (aborted,
    /// or its `timeout` fires) while its merge runs. The lock must not pass to the waiting one
    /// then: it waits for the orphaned merge, never merges alongside it, and then runs its own.
    async fn a_compaction_already_queued_when_the_caller_is_cut_still_waits() {
        for timed_out in [false, true] {
            let (store, mut control) = gated_store();
            let endpoint = store.clone();
            let mut caller = tokio::spawn(async move {
                if timed_out {
                    tokio::time::timeout(ADMIN_TIMEOUT, endpoint.compact()).await.ok()
                } else {
                    Some(endpoint.compact().await)
                }
            });
            control.wait_for_merge(&mut caller).await;
            let before = blocking_work();
            let queued = spawn_compaction(&store);
            settle().await;

            let cut = if timed_out {
                // The merge blocks, so the clock is moved by hand past the endpoint's timeout.
                tokio::time::advance(ADMIN_TIMEOUT + Duration::from_secs(1)).await;
                "the admin endpoint's timeout fired"
            } else {
                caller.abort();
                "its caller was aborted"
            };
            match finish(caller, "the first compact()").await {
                Ok(None) if timed_out => {}
                Err(e) if e.is_cancelled() && !timed_out => {}
                Err(e) => panic!("the first compaction task failed: {e}"),
                Ok(_) => panic!("compact() returned although its merge is still running"),
            }
            settle().await;
            let setting = format!(
                "a second compaction was already waiting for the lock when {cut} while the first \
                 merge still ran"
            );
            assert!(
                blocking_work() <= before,
                "{setting}, and the waiting compaction went to the blocking pool at once (its \
                 merge started there, or was queued for a thread), while the first merge was \
                 still rewriting segments: the lock passed to it when the first caller was cut. \
                 The lock must stay with the orphaned merge until that merge returns"
            );
            assert!(store.is_compacting(), "{setting}, and {LOCK_RELEASED}");

            control.open();
            let stats = finish(queued, "a compaction queued before the first caller was cut")
                .await
                .expect("the queued compaction task failed");
            assert_eq!(
                stats, STATS,
                "{setting}; the queued compaction returned {stats:?} instead of its merge's stats"
            );
            all_blocking_work_done().await;
            let (merges, most) = (control.merges(), control.most_at_once());
            assert_eq!(merges, 2, "{setting}; expected 2 merges, saw {merges}");
            assert_eq!(most, 1, "{setting}; {most} merges ran at once");
            assert!(!store.is_compacting(), "{setting}; both merges are over, but the lock is still held");
            control.check_every_merge_on_blocking_pool();
            control.check_every_merge_held_the_lock();
        }
    }

    /// A caller aborted while it still waits for the lock has started nothing: it must never
    /// merge, not even later, once the lock is free.
    async fn a_caller_aborted_while_waiting_for_the_lock_never_merges() {
        let (store, mut control) = gated_store();
        let mut first = spawn_compaction(&store);
        control.wait_for_merge(&mut first).await;

        // A second compaction queues behind the running merge, and its caller is aborted there.
        // Before the abort, nothing of it may wait on the blocking pool: work there cannot be
        // cancelled, so whatever waits there for the lock would outlive the abort.
        let before = blocking_work();
        let polls = Arc::new(AtomicUsize::new(0));
        let waiting = tokio::spawn({
            let store = store.clone();
            CountPolls { inner: Box::pin(async move { store.compact().await }), polls: polls.clone() }
        });
        settle().await;
        let polled = polls.load(Ordering::SeqCst);
        assert!(
            polled <= 2,
            "a second compact(), queued behind a running merge, was polled {polled} times in \
             {SETTLE_TURNS} turns of the runtime: it waits by trying again and again, keeping an \
             async worker busy for as long as the merge runs (minutes), instead of sleeping until \
             the lock is handed to it"
        );
        // The merge is held on the test's gate, so the paused clock stays put unless the test moves
        // it. Move it forward step by step, each step twice the last, while the merge runs on: a
        // waiter that tries again after a pause (fixed, or growing up to any cap below the last
        // step) wakes up at least once per step, a waiter that sleeps until the lock is handed to
        // it is never woken.
        let mut held_for = Duration::ZERO;
        for step in WAIT_STEPS {
            tokio::time::advance(step).await;
            held_for += step;
            settle().await;
        }
        let polled = polls.load(Ordering::SeqCst);
        assert!(
            polled <= 2,
            "a second compact(), queued behind a running merge, was polled {polled} times while \
             that merge ran on for {} days of virtual time (the test held the merge and moved the \
             clock forward step by step, 1 ms first, each step twice the last): it keeps waking \
             up to try the lock again (or to queue for it again), with or without a pause \
             between tries, keeping an async worker busy for as long as the merge runs. It must \
             sleep until the lock is handed to it (`lock_owned().await`)",
            held_for.as_secs() / 86_400
        );
        // Then on to the far end of the clock in one jump: a waiter that wakes up after any pause
        // longer than the steps (five years, two hundred) does so during the jump, and one that
        // sleeps until the lock is handed to it is not polled at all.
        let before_the_jump = polled;
        tokio::time::advance(FAR_END).await;
        settle().await;
        let polled = polls.load(Ordering::SeqCst);
        assert!(
            polled == before_the_jump,
            "a second compact(), queued behind a running merge, was polled {before_the_jump} \
             times while that merge ran on for {} days of virtual time, and {} more times while \
             it ran on for some 146 million years more (the clock moved on in one jump): it wakes \
             up after a pause, however long, to look at the lock again (or to say it is still \
             waiting), for as long as the merge runs. It must sleep until the lock is handed to \
             it (`lock_owned().await`)",
            held_for.as_secs() / 86_400,
            polled - before_the_jump
        );
        assert!(
            blocking_work() <= before,
            "a second compact(), queued behind a running merge, had work on the blocking pool (a \
             task running there or queued for a thread) while it still waited for the lock. \
             Blocking-pool work cannot be cancelled: when this caller is aborted, that work stays \
             behind, pins a blocking thread until the lock comes free, and can then merge for a \
             caller that is gone. Wait for the lock on the async side (`lock_owned().await` in \
             `compact`) and go to the blocking pool only with the lock in hand"
        );
        waiting.abort();
        match waiting.await {
            Err(e) if e.is_cancelled() => {}
            Err(e) => panic!("the waiting compaction task failed instead of being cancelled: {e}"),
            Ok(_) => panic!("a second compact() returned while the first merge still ran"),
        }

        control.open();
        let stats = finish(first, "the first compact()").await.expect("the first compaction failed");
        assert_eq!(stats, STATS, "the first compact() returned {stats:?} instead of its merge's stats");
        all_blocking_work_done().await;
        let merges = control.merges();
        assert_eq!(
            merges, 1,
            "a compact() aborted while it still waited for the lock went on to merge anyway, once \
             the lock came free: {merges} merges ran for 1 compaction that was not cancelled. A \
             caller dropped before it holds the lock must leave nothing behind that merges later \
             for nobody"
        );

        // The store still compacts normally afterwards.
        let stats = finish(store.compact(), "a compact() after the aborted wait").await;
        assert_eq!(stats, STATS, "a compact() after the aborted wait returned {stats:?}");
        all_blocking_work_done().await;
        assert!(!store.is_compacting(), "every merge is over, but the lock is still held");
        control.check_every_merge_on_blocking_pool();
        control.check_every_merge_held_the_lock();
    }

    /// A merge that panics is over as surely as one that returns: the lock comes free with it, its
    /// panic reaches the caller with the merge's own payload, and the next compaction runs.
    async fn a_merge_that_panics_gives_the_lock_back() {
        let merger = PanicsOnce::default();
        let merges = merger.merges.clone();
        let (on_async_worker, on_own_thread) =
            (merger.on_async_worker.clone(), merger.on_own_thread.clone());
        let store = Store::new(merger);
        let first = spawn_compaction(&store);
        all_blocking_work_done().await;
        settle().await;
        // A merge somewhere else may or may not have started by now; either way it is not on the
        // pool, and says so the same way.
        if merges.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(STUCK).await;
        }
        let started = merges.load(Ordering::SeqCst);
        if on_async_worker.load(Ordering::SeqCst) > 0 {
            panic!("{ON_AN_ASYNC_WORKER}");
        }
        if on_own_thread.load(Ordering::SeqCst) > 0 || started == 0 {
            panic!("{NOT_ON_THE_POOL}");
        }
        assert_eq!(started, 1, "one compact() was called, but {started} merges ran");
        if store.is_compacting() {
            // Say what was seen: whether a later compaction can still get the lock, or only
            // `is_compacting` is wrong.
            let later = tokio::time::timeout(STUCK, store.compact()).await;
            all_blocking_work_done().await;
            match later {
                Err(_) => panic!(
                    "the first compaction's merge panicked and is over, but                      `Store::is_compacting()` still said `true`, and a compact() called then was                      still waiting for the lock an hour (virtual) later: the compaction lock was                      never given back, so every later compaction would wait forever. The lock                      must be released however the merge ends, by returning or by panicking (a                      guard that the merge owns is dropped as the panic unwinds; a release written                      after the call to `merge` is skipped)"
                ),
                Ok(_) => panic!(
                    "the first compaction's merge panicked and is over, and a compact() called                      then got the lock and merged, but `Store::is_compacting()` still said `true`                      before it (and says {} now): what `is_compacting` reads was left set by the                      panicking merge, so the metrics endpoint reports a compaction that is not                      running. `is_compacting` must say `false` once every merge is over, however                      it ended: let it look at the lock itself, or clear what it reads in a guard                      that is dropped as the panic unwinds",
                    store.is_compacting()
                ),
            }
        }
        assert!(
            first.is_finished(),
            "the first compaction's merge panicked and is over, but its compact() had not ended"
        );
        match first.await {
            Err(e) if e.is_panic() => {
                let panic = e.into_panic();
                assert!(
                    panic.downcast_ref::<CorruptSegment>() == Some(&CorruptSegment(7)),
                    "the first compaction's merge panicked with its own payload (a \
                     `CorruptSegment(7)`, raised with `std::panic::panic_any`), but the caller \
                     of compact() caught {} instead. The caller (a supervisor that logs what \
                     went wrong, or a test) must get the merge's own panic, unchanged, as \
                     `std::panic::resume_unwind` passes it on; a new panic raised in its place \
                     hides what the merge panicked with",
                    describe_panic(&*panic)
                );
            }
            Err(e) => panic!("the first compaction task ended with: {e}"),
            Ok(stats) => panic!(
                "the first compaction's merge panicked (a corrupt segment), yet compact() returned \
                 {stats:?} as if it had merged: the caller (the admin endpoint) would report a \
                 compaction that never happened. A merge's panic must reach the caller of \
                 compact()"
            ),
        }
        let stats = finish(store.compact(), "a compact() after a merge that panicked").await;
        assert_eq!(stats, STATS, "a compact() after a merge that panicked returned {stats:?}");
        all_blocking_work_done().await;
        assert!(!store.is_compacting(), "every merge is over, but the lock is still held");
    }

    /// A merge that panics with a message (a `&str`, as `panic!("...")` raises, or a `String`,
    /// as `panic!` with arguments and `expect` do) is like one that panics with a payload of its
    /// own: the caller of `compact` catches that very panic, of the same type and with the same
    /// text, not another panic that says it in other words; and the lock is free afterwards.
    async fn a_merge_panic_reaches_the_caller_whatever_its_payload() {
        for (payload, expected) in [
            (Payload::Str, "a panic with the message \"segment 7 is unreadable\" (a `&str`)"),
            (Payload::String, "a panic with the message \"segment 7 is unreadable\" (a `String`)"),
        ] {
            let store = Store::new(PanicsOnce { payload, ..PanicsOnce::default() });
            let first = spawn_compaction(&store);
            all_blocking_work_done().await;
            let caught = match finish(first, "a compact() whose merge panicked").await {
                Err(e) if e.is_panic() => {
                    let panic = e.into_panic();
                    if let Some(text) = panic.downcast_ref::<&str>() {
                        format!("a panic with the message {text:?} (a `&str`)")
                    } else if let Some(text) = panic.downcast_ref::<String>() {
                        format!("a panic with the message {text:?} (a `String`)")
                    } else {
                        "a panic with a payload of another type".to_owned()
                    }
                }
                Err(e) => format!("the compaction task ending with: {e}"),
                Ok(stats) => format!("compact() returning {stats:?}"),
            };
            assert!(
                caught == expected,
                "the merge panicked with {expected}, but the caller of compact() saw {caught}. \
                 The merge's own panic reaches the caller with its payload unchanged, as \
                 `std::panic::resume_unwind` passes it on, whatever that payload is"
            );
            let stats = finish(store.compact(), "a compact() after a merge that panicked").await;
            assert_eq!(stats, STATS, "a compact() after a merge that panicked returned {stats:?}");
            all_blocking_work_done().await;
            assert!(!store.is_compacting(), "every merge is over, but the lock is still held");
        }
    }

    /// A second compaction waits for the lock behind a running merge. The merge ends, and its
    /// guard hands the lock to the waiter; in that same instant, before the waiter runs again,
    /// its caller is aborted (or its future dropped). It never got to use the lock, so it must
    /// not merge: it only loses its place, and the lock comes free.
    async fn a_caller_cut_as_the_lock_is_handed_to_it_never_merges() {
        for dropped in [false, true] {
            let (store, mut control) = gated_store();
            let mut first = spawn_compaction(&store);
            control.wait_for_merge(&mut first).await;

            // The second caller: a spawned task (aborted), or a future the test polls itself
            // (dropped). Either way it is queued behind the running merge.
            let waker = std::task::Waker::noop();
            let mut polled = Box::pin({
                let store = store.clone();
                async move { store.compact().await }
            });
            let waiting = if dropped {
                assert!(
                    polled.as_mut().poll(&mut Context::from_waker(waker)).is_pending(),
                    "a second compact() returned while the first merge still ran"
                );
                None
            } else {
                Some(spawn_compaction(&store))
            };
            settle().await;
            let cut = if dropped { "its future was dropped" } else { "its caller was aborted" };

            // The merge returns; its lock passes to the waiter, which is woken but has not run.
            control.open();
            wait_until_the_blocking_pool_is_idle();
            match &waiting {
                Some(waiting) => waiting.abort(),
                None => drop(polled),
            }

            let stats =
                finish(first, "the first compact()").await.expect("the first compaction failed");
            assert_eq!(stats, STATS, "the first compact() returned {stats:?} instead of its stats");
            if let Some(waiting) = waiting {
                match waiting.await {
                    Err(e) if e.is_cancelled() => {}
                    Err(e) => {
                        panic!("the waiting compaction task failed instead of being cancelled: {e}")
                    }
                    Ok(_) => panic!(
                        "a second compact() returned although it was aborted before it ran again"
                    ),
                }
            }
            settle().await;
            all_blocking_work_done().await;
            let merges = control.merges();
            assert_eq!(
                merges, 1,
                "a second compact() waited for the lock behind a running merge; the merge ended, \
                 and in that instant, before the waiting compaction ran again, {cut}. It merged \
                 anyway: {merges} merges ran for 1 compaction that was not cancelled. A caller \
                 cut before it could use the lock only loses its place in the queue, even when \
                 the lock was just handed to it: whatever waits for the lock on its behalf must \
                 see that its caller is gone before it merges"
            );
            assert!(
                !store.is_compacting(),
                "a compaction cut as the lock was handed to it left the compaction lock held: no \
                 later compaction could run"
            );
            let stats = finish(store.compact(), "a compact() after the cut one").await;
            assert_eq!(stats, STATS, "a compact() after the cut one returned {stats:?}");
            all_blocking_work_done().await;
            control.check_every_merge_on_blocking_pool();
            control.check_every_merge_held_the_lock();
        }
    }
    /// The merge returns while the caller of `compact` is waiting for its turn to run (a busy
    /// runtime, or a caller that polls it only now and then): the lock must come free when the
    /// merge returns, not when the caller next runs. The test holds the caller back from before
    /// the merge ends until after its blocking task is over, and looks at the lock meanwhile; a
    /// second compaction started then must not wait for the first caller either.
    async fn the_lock_comes_free_when_the_merge_returns_not_when_the_caller_runs_again() {
        for second_waits in [false, true] {
            let (store, mut control) = gated_store();
            let gate = Arc::new(Mutex::new(HoldBack::default()));
            let mut caller = {
                let store = store.clone();
                let gate = gate.clone();
                tokio::spawn(async move {
                    HeldBack { inner: Box::pin(async move { store.compact().await }), gate }.await
                })
            };
            control.wait_for_merge(&mut caller).await;
            let second = second_waits.then(|| spawn_compaction(&store));
            settle().await;
            hold_back(&gate, true);
            control.open();
            all_blocking_work_done().await;
            settle().await;
            let (merges, compacting) = (control.merges(), store.is_compacting());
            let expected = if second_waits { 2 } else { 1 };
            let second_seen = if second_waits {
                format!(
                    " A second compact() that was waiting for the lock had run {} merge(s) by \
                     then.",
                    merges - 1
                )
            } else {
                String::new()
            };
            assert!(
                merges == expected && !compacting,
                "the first merge returned and its blocking task ended while the caller of \
                 compact() waited for its turn to run again (its task was not polled), and then \
                 `Store::is_compacting()` said `{compacting}`.{second_seen} The lock was still \
                 held after the merge was over, until that caller would run again: on a busy \
                 runtime, or with a caller that polls compact() only now and then, every other \
                 compaction waits for that caller and not for the merge. The lock must be given \
                 back by the merge's own work on the blocking pool as the merge returns, not \
                 handed back to compact()"
            );
            hold_back(&gate, false);
            let stats = finish(caller, "compact()").await.expect("the compaction task failed");
            assert_eq!(stats, STATS, "compact() returned {stats:?} instead of its merge's stats");
            if let Some(second) = second {
                let stats = finish(second, "a second compact()").await.expect("the second task failed");
                assert_eq!(stats, STATS, "a second compact() returned {stats:?}");
            }
            all_blocking_work_done().await;
            assert!(!store.is_compacting(), "every merge is over, but the lock is still held");
            control.check_every_merge_on_blocking_pool();
            control.check_every_merge_held_the_lock();
        }
    }

    /// The merge returns on a runtime so busy that no task runs for a while. The lock must be free
    /// as soon as the merge's blocking task is over, before any task runs again: it must not wait
    /// for the first caller (still waiting, aborted, or timed out), nor for anything that holds
    /// it, or keeps a place in its queue, for a compaction whose caller is gone. The test cuts a
    /// second compaction while it waits behind the merge (or queues none), lets every task settle,
    /// then holds the runtime's only thread from the moment it opens the merge's gate until the
    /// blocking pool is idle, and looks at the lock then.
    async fn the_lock_comes_free_when_the_merge_returns_even_if_no_task_runs_again() {
        let firsts = ["kept waiting", "was aborted", "timed out"];
        let seconds = [
            "no other compaction was queued",
            "a second compaction queued behind the merge and was aborted there",
            "a second compaction queued behind the merge and its `timeout` fired there",
            "a second compaction queued behind the merge and its future was dropped there",
        ];
        for (first_cut, first_says) in firsts.into_iter().enumerate() {
            for (second_cut, second_says) in seconds.into_iter().enumerate() {
                let (store, mut control) = gated_store();
                let endpoint = store.clone();
                let mut first = tokio::spawn(async move {
                    if first_cut == 2 {
                        tokio::time::timeout(ADMIN_TIMEOUT, endpoint.compact()).await.ok()
                    } else {
                        Some(endpoint.compact().await)
                    }
                });
                control.wait_for_merge(&mut first).await;

                let queued = store.clone();
                let second = matches!(second_cut, 1 | 2).then(|| {
                    tokio::spawn(async move {
                        if second_cut == 2 {
                            tokio::time::timeout(ADMIN_TIMEOUT, queued.compact()).await.ok()
                        } else {
                            Some(queued.compact().await)
                        }
                    })
                });
                let mut by_hand = (second_cut == 3).then(|| {
                    let store = store.clone();
                    Box::pin(async move { store.compact().await })
                });
                if let Some(polled) = &mut by_hand {
                    let waker = std::task::Waker::noop();
                    assert!(
                        polled.as_mut().poll(&mut Context::from_waker(waker)).is_pending(),
                        "a second compact() returned while the first merge still ran"
                    );
                }
                settle().await;

                // The cuts, all while the first merge runs; then every task settles.
                if first_cut == 1 {
                    first.abort();
                }
                if first_cut == 2 || second_cut == 2 {
                    // The merge blocks, so the clock is moved by hand past the timeouts.
                    tokio::time::advance(ADMIN_TIMEOUT + Duration::from_secs(1)).await;
                }
                if second_cut == 1 {
                    second.as_ref().expect("the second compaction task").abort();
                }
                drop(by_hand);
                settle().await;
                let setting = format!(
                    "the first compact()'s caller {first_says} while its merge ran, and \
                     {second_says}"
                );
                if let Some(second) = second {
                    match finish(second, "the second compact()").await {
                        Ok(None) if second_cut == 2 => {}
                        Err(e) if e.is_cancelled() && second_cut == 1 => {}
                        Err(e) => panic!("{setting}; the second compaction task failed: {e}"),
                        Ok(_) => panic!(
                            "{setting}; the second compact() returned while the first merge \
                             still ran"
                        ),
                    }
                }

                // The merge returns. The test's thread waits until its blocking task is over
                // without letting any task run, as a busy runtime would.
                control.open();
                wait_until_the_blocking_pool_is_idle();
                let compacting = store.is_compacting();
                assert!(
                    !compacting,
                    "{setting}. Then the merge returned and its blocking task ended while no task \
                     on the runtime ran (a busy runtime: the test held the runtime's only thread \
                     until the blocking pool was idle), and `Store::is_compacting()` said `true`: \
                     no merge was running and no compaction that anyone still waited for was \
                     queued, yet the lock was still held, to be freed only once the runtime ran \
                     some task again. On a busy runtime every later compaction waits for that \
                     turn, not for the merge. The lock must be given back by the merge's own work \
                     on the blocking pool as the merge returns, and a compaction cut while it \
                     waits must only lose its place in the queue, not keep one for a caller that \
                     is gone"
                );

                settle().await;
                match finish(first, "the first compact()").await {
                    Ok(Some(stats)) if first_cut == 0 => assert_eq!(
                        stats, STATS,
                        "{setting}; the first compact() returned {stats:?} instead of its \
                         merge's stats"
                    ),
                    Ok(None) if first_cut == 2 => {}
                    Err(e) if e.is_cancelled() && first_cut == 1 => {}
                    Err(e) => panic!("{setting}; the first compaction task failed: {e}"),
                    Ok(_) => panic!(
                        "{setting}; the first compact() returned although its caller was cut while \
                         its merge still ran"
                    ),
                }
                all_blocking_work_done().await;
                let merges = control.merges();
                assert_eq!(
                    merges, 1,
                    "{setting}; {merges} merges ran where only the first compaction's should: a \
                     compaction cut while it waits for the lock must never merge"
                );
                let stats = finish(store.compact(), "a compact() after the first merge").await;
                assert_eq!(stats, STATS, "{setting}; a later compact() returned {stats:?}");
                all_blocking_work_done().await;
                assert!(
                    !store.is_compacting(),
                    "{setting}; every merge is over, but the lock is still held"
                );
                control.check_every_merge_on_blocking_pool();
                control.check_every_merge_held_the_lock();
            }
        }
    }

    /// Compactions that wait for the lock get it in the order they asked for it. B queues behind a
    /// running merge, then C; the merge runs on for years, and on to the far end of the paused
    /// clock (146 million years, past any period a waiter could set before it queues again); as
    /// it ends and hands the lock on, before anything else runs, D calls `compact`. The merges
    /// must run B, C, D: a waiter keeps its place for as long as it waits, and a newcomer never
    /// takes the lock ahead of one.
    async fn waiting_compactions_get_the_lock_in_the_order_they_asked() {
        let (store, mut control) = numbered_gated_store();
        let mut first = spawn_compaction(&store);
        control.wait_for_merge(&mut first).await;
        let before = blocking_work();

        // B is a task of its own. C and D are futures the test polls once itself, to put them in
        // the queue, and then not again until the end.
        let second = spawn_compaction(&store);
        settle().await;
        let compaction = || {
            let store = store.clone();
            Box::pin(async move { store.compact().await })
        };
        let mut third = compaction();
        let third_at_once = poll_once(third.as_mut()).await;
        settle().await;
        // Waiters on the blocking pool would race each other for the lock there, in an order no
        // test can fix; and that is wrong in itself.
        assert!(
            blocking_work() <= before,
            "two compactions queued behind a running merge had work on the blocking pool (a task \
             running there or queued for a thread) while they still waited for the lock. \
             Blocking-pool work cannot be cancelled: when a waiting caller is aborted, that work \
             stays behind, pins a blocking thread until the lock comes free, and can then merge \
             for a caller that is gone. Wait for the lock on the async side (`lock_owned().await` \
             in `compact`) and go to the blocking pool only with the lock in hand"
        );
        // The merge is held on the test's gate; the clock moves only when the test moves it: in
        // doubling steps over four years, then in one jump to the far end.
        let mut held_for = Duration::ZERO;
        for step in WAIT_STEPS.into_iter().chain([FAR_END]) {
            tokio::time::advance(step).await;
            held_for += step;
            settle().await;
        }

        // The merge returns and its lock is handed on. The test's thread waits for that without
        // letting any task run, so whoever was handed the lock has not run yet when D arrives.
        control.open();
        wait_until_the_blocking_pool_is_idle();
        let mut fourth = compaction();
        let fourth_at_once = poll_once(fourth.as_mut()).await;

        let (_, b, c, d) = tokio::join!(
            finish(first, "the first compact()"),
            finish(second, "the compaction that queued first (B)"),
            finish_polled(third_at_once, third.as_mut(), "the compaction that queued second (C)"),
            finish_polled(fourth_at_once, fourth.as_mut(), "the compaction that arrived last (D)"),
        );
        let b = b.expect("the compaction task B failed");
        all_blocking_work_done().await;
        let most = control.most_at_once();
        assert_eq!(most, 1, "{most} merges ran at once: a compaction did not wait for the lock");
        control.check_every_merge_on_blocking_pool();
        control.check_every_merge_held_the_lock();

        let mut order = vec![("A", 1), ("B", b.segments_in), ("C", c.segments_in), ("D", d.segments_in)];
        order.sort_by_key(|(_, started)| *started);
        let order: Vec<&str> = order.iter().map(|(who, _)| *who).collect();
        let expected = ["A", "B", "C", "D"];
        let overtaken = expected.iter().zip(&order).find(|(want, saw)| want != saw);
        assert!(
            overtaken.is_none(),
            "while merge A ran, compaction B asked for the lock, then C; A ran on for some {} \
             million years of virtual time (the test held it and moved the clock forward, in \
             steps over four years, then in one jump), then ended and handed \
             the lock on, and in that instant, before anything else ran, D called compact(). \
             Expected the merges in the order their compactions asked for the lock, A, B, C, D, \
             but they started in the order {}: {} took the lock ahead of {}, which had asked for \
             it first. A compaction that waits for the lock must keep its \
             place in the queue for as long as it waits (not leave it and queue again, after a \
             timeout say) and be handed the lock when its turn comes (not be woken to try for a \
             free lock that a newcomer can take first): otherwise a steady stream of compactions \
             can keep one waiting for ever",
            held_for.as_secs() / (365 * 86_400) / 1_000_000,
            order.join(", "),
            overtaken.map_or("", |(_, saw)| *saw),
            overtaken.map_or("", |(want, _)| *want),
        );
    }
}
