//! Hidden tests for kata 20: the compaction lock must be held for as long as the merge runs, even
//! when the caller of `compact` is aborted or times out while it waits for the merge; the merge
//! must run on the blocking pool; and a caller dropped while it still waits for the lock must never
//! merge.
//!
//! Every test runs on the paused current-thread runtime of `hidden_test!`. The test's merger is the
//! blocking stand-in: it records where it runs (`kata_support::on_async_thread`) and, on the
//! blocking pool, parks on a std gate that the test opens from outside, so "the merge is still
//! running" is a state the test holds, not a race. On an async worker it must not park (that would
//! freeze the runtime's only thread, the test's own), so it records the mistake and returns.
//!
//! Nothing waits on the wall clock. Two facts of tokio's paused clock do the timing: while a
//! `spawn_blocking` task exists (queued or running), the clock does not auto-advance (documented on
//! `tokio::time::pause`), so a long virtual sleep ends only once every blocking task is over
//! ([`all_blocking_work_done`]); and when nothing can wake the test, the clock jumps to its next
//! timer, so a compaction that would never finish fails after an hour of virtual time instead of
//! hanging.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use compaction_blocking_guard::{MergeStats, SegmentMerger, Store};
use kata_support::hidden_test;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const STATS: MergeStats = MergeStats { segments_in: 8, segments_out: 1 };

/// Virtual time after which a compaction that has not finished is reported as stuck.
const STUCK: Duration = Duration::from_secs(3600);

/// The admin endpoint's timeout around `compact`.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// What the test's merger shares with the test.
struct Shared {
    /// Each merge reports, as it starts, whether it runs on an async worker.
    started: mpsc::UnboundedSender<bool>,
    /// Closed until the test opens it; merges on the blocking pool park here.
    gate: Mutex<bool>,
    opened: Condvar,
    active: AtomicUsize,
    most_at_once: AtomicUsize,
    merges: AtomicUsize,
    on_async_worker: AtomicUsize,
}

/// A merger that blocks (on the test's gate) the way a real merge blocks on disk and CPU.
struct GatedMerger(Arc<Shared>);

impl SegmentMerger for GatedMerger {
    fn merge(&self) -> MergeStats {
        let shared = &self.0;
        let on_worker = kata_support::on_async_thread();
        let now = shared.active.fetch_add(1, Ordering::SeqCst) + 1;
        shared.most_at_once.fetch_max(now, Ordering::SeqCst);
        shared.merges.fetch_add(1, Ordering::SeqCst);
        if on_worker {
            shared.on_async_worker.fetch_add(1, Ordering::SeqCst);
        }
        let _ = shared.started.send(on_worker);
        if !on_worker {
            let mut open = shared.gate.lock().expect("gate lock");
            while !*open {
                open = shared.opened.wait(open).expect("gate lock");
            }
        }
        shared.active.fetch_sub(1, Ordering::SeqCst);
        STATS
    }
}

/// The test's side of a [`GatedMerger`]. Dropping it opens the gate, so that a failing test never
/// leaves a merge parked (the runtime waits for its blocking threads when it is dropped).
struct Control {
    shared: Arc<Shared>,
    started: mpsc::UnboundedReceiver<bool>,
}

impl Control {
    /// Waits until a merge has started; fails if it started on an async worker, or if none starts
    /// (then `caller`, the task that called `compact`, says why when it panicked).
    async fn wait_for_merge(&mut self, caller: &mut JoinHandle<impl Send + 'static>) {
        match tokio::time::timeout(STUCK, self.started.recv()).await {
            Ok(Some(false)) => {}
            Ok(Some(true)) => self.fail_on_async_worker(),
            Ok(None) => unreachable!("the merger keeps its sender"),
            Err(_) => {
                let why = if caller.is_finished() {
                    match caller.await {
                        Err(e) if e.is_panic() => {
                            format!("compact() panicked: {}", panic_message(e.into_panic()))
                        }
                        Err(e) => format!("the compaction task ended with: {e}"),
                        Ok(_) => "compact() returned without merging".to_owned(),
                    }
                } else {
                    "compact() is still waiting".to_owned()
                };
                panic!(
                    "compact() was called with the lock free, but no merge started on the \
                     blocking pool within an hour: {why}"
                );
            }
        }
    }

    fn fail_on_async_worker(&self) -> ! {
        self.open();
        panic!(
            "the merge ran on an async worker (in a `tokio::spawn`ed task or on the runtime's own \
             thread), not on the blocking pool. `SegmentMerger::merge` blocks for the whole merge \
             (CPU work and synchronous disk I/O): while it runs, that worker runs no other task, \
             and on a current-thread runtime the whole service stops until the merge is over. \
             The merge must run on the blocking pool (`spawn_blocking`), whoever holds the lock"
        );
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

    fn most_at_once(&self) -> usize {
        self.shared.most_at_once.load(Ordering::SeqCst)
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.open();
    }
}

fn gated_merger() -> (GatedMerger, Control) {
    let (started_tx, started) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        started: started_tx,
        gate: Mutex::new(false),
        opened: Condvar::new(),
        active: AtomicUsize::new(0),
        most_at_once: AtomicUsize::new(0),
        merges: AtomicUsize::new(0),
        on_async_worker: AtomicUsize::new(0),
    });
    (GatedMerger(shared.clone()), Control { shared, started })
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

/// Lets the spawned tasks run until each waits for something.
async fn settle() {
    for _ in 0..16 {
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

const LOCK_RELEASED: &str = "the compaction lock was released with it. `spawn_blocking` work cannot \
     be cancelled: the merge is still rewriting segments, yet a second compaction could start now \
     and merge the same segments at the same time. The lock must be held by the merge, not by the \
     future that waits for it";

hidden_test! {
    /// Nothing cancelled: the merge runs on the blocking pool, the lock is held while it runs and
    /// released when it returns, and `compact` returns the merge's stats.
    async fn compacts_and_holds_the_lock_while_merging() {
        let (merger, mut control) = gated_merger();
        let store = Store::new(merger);
        let mut caller = spawn_compaction(&store);
        control.wait_for_merge(&mut caller).await;
        assert!(store.is_compacting(), "a merge is running, but the compaction lock is free");
        control.open();
        let stats = finish(caller, "compact()").await.expect("the compaction task failed");
        assert_eq!(stats, STATS, "compact() returned {stats:?} instead of its merge's stats");
        assert!(!store.is_compacting(), "the compaction finished, but the lock is still held");
        control.check_every_merge_on_blocking_pool();
    }

    /// The maintenance task is aborted while its merge runs. The merge cannot be stopped, so the
    /// lock must stay held until it ends, and a second compaction must wait for it, then run alone.
    async fn an_aborted_caller_keeps_the_lock_until_its_merge_ends() {
        let (merger, mut control) = gated_merger();
        let store = Store::new(merger);
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
    }

    /// The admin endpoint's `timeout(30s, compact())` fires while the merge runs: the lock stays
    /// held, and it is given back once the orphaned merge ends, so a queued compaction runs.
    async fn a_timed_out_caller_keeps_the_lock_and_the_merge_gives_it_back() {
        let (merger, mut control) = gated_merger();
        let store = Store::new(merger);
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
    }

    /// A caller aborted while it still waits for the lock has started nothing: it must never
    /// merge, not even later, once the lock is free.
    async fn a_caller_aborted_while_waiting_for_the_lock_never_merges() {
        let (merger, mut control) = gated_merger();
        let store = Store::new(merger);
        let mut first = spawn_compaction(&store);
        control.wait_for_merge(&mut first).await;

        // A second compaction queues behind the running merge, and its caller is aborted there.
        let waiting = spawn_compaction(&store);
        settle().await;
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
        assert!(!store.is_compacting(), "every merge is over, but the lock is still held");
        control.check_every_merge_on_blocking_pool();
    }
}
