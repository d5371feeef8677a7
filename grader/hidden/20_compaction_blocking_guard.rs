//! Hidden tests for kata 20: the compaction lock must be held for as long as the merge runs, even
//! when the caller of `compact` is aborted while it waits for the merge.
//!
//! These tests use real threads (the merge runs on tokio's blocking pool), so they never use the
//! clock. The test's merger parks on a std channel until the test releases it, and the tests
//! probe the lock with `try_lock` (`is_compacting`), which gives the same answer on every run.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use compaction_blocking_guard::{MergeStats, SegmentMerger, Store};
use kata_support::hidden_test;

const STATS: MergeStats = MergeStats { segments_in: 8, segments_out: 1 };

/// What the test's merger shares with the test.
struct Shared {
    /// Each merge sends the id of the tokio task it runs in, then parks.
    started: Mutex<mpsc::Sender<Option<tokio::task::Id>>>,
    /// Each merge parks until it receives one release (or the test is gone).
    release: Mutex<mpsc::Receiver<()>>,
    active: AtomicUsize,
    most_at_once: AtomicUsize,
    merges: AtomicUsize,
}

/// A merger that parks on a std channel until the test lets it finish.
struct ParkedMerger(Arc<Shared>);

impl SegmentMerger for ParkedMerger {
    fn merge(&self) -> MergeStats {
        let shared = &self.0;
        let now = shared.active.fetch_add(1, Ordering::SeqCst) + 1;
        shared.most_at_once.fetch_max(now, Ordering::SeqCst);
        shared.merges.fetch_add(1, Ordering::SeqCst);
        let task = tokio::task::try_id();
        let _ = shared.started.lock().expect("started lock").send(task);
        // An error means the test has ended: stop parking so the runtime can shut down.
        let _ = shared.release.lock().expect("release lock").recv();
        shared.active.fetch_sub(1, Ordering::SeqCst);
        STATS
    }
}

/// The test's side of a [`ParkedMerger`].
struct Control {
    shared: Arc<Shared>,
    started: mpsc::Receiver<Option<tokio::task::Id>>,
    release: mpsc::Sender<()>,
}

impl Control {
    /// Blocks until a merge has started, and returns the task it runs in.
    fn wait_for_merge(&self) -> Option<tokio::task::Id> {
        self.started.recv().expect("the merger is gone before a merge started")
    }

    /// Lets one parked (or future) merge finish.
    fn release_one(&self) {
        let _ = self.release.send(());
    }
}

fn parked_merger() -> (ParkedMerger, Control) {
    let (started_tx, started) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    let shared = Arc::new(Shared {
        started: Mutex::new(started_tx),
        release: Mutex::new(release_rx),
        active: AtomicUsize::new(0),
        most_at_once: AtomicUsize::new(0),
        merges: AtomicUsize::new(0),
    });
    (ParkedMerger(shared.clone()), Control { shared, started, release })
}

fn spawn_compaction(store: &Store) -> tokio::task::JoinHandle<MergeStats> {
    let store = store.clone();
    tokio::spawn(async move { store.compact().await })
}

/// Fails with a teaching message when the merge ran inside the caller's task instead of on the
/// blocking pool; returns after releasing the merge so that nothing hangs.
async fn reject_inline_merge(
    merge_task: Option<tokio::task::Id>,
    caller: tokio::task::JoinHandle<MergeStats>,
    control: &Control,
) -> tokio::task::JoinHandle<MergeStats> {
    if merge_task.is_some() && merge_task == Some(caller.id()) {
        control.release_one();
        let _ = caller.await;
        panic!(
            "the merge ran inside the caller's own task (`block_in_place`?), not on the blocking \
             pool. While it runs, the caller is stuck inside a single poll: an abort or a timeout \
             cannot take effect until the merge returns, and the runtime worker is blocked. Run \
             the merge with `spawn_blocking` and keep the lock held by the merge itself"
        );
    }
    caller
}

hidden_test! {
    /// Nothing cancelled: the lock is held while the merge runs and released when it returns.
    multi_thread async fn compacts_and_holds_the_lock_while_merging() {
        let (merger, control) = parked_merger();
        let store = Store::new(merger);
        let caller = spawn_compaction(&store);
        let merge_task = control.wait_for_merge();
        let caller = reject_inline_merge(merge_task, caller, &control).await;
        assert!(
            store.is_compacting(),
            "a merge is running, but the compaction lock is free"
        );
        control.release_one();
        let stats = caller.await.expect("the compaction task failed");
        assert_eq!(stats, STATS, "compact() must return the merge's stats");
        assert!(
            !store.is_compacting(),
            "the compaction finished, but the lock is still held"
        );
    }

    /// The caller is aborted while its merge runs. The merge cannot be stopped, so the lock must
    /// stay held until the merge ends, and a second compaction must wait for it.
    multi_thread async fn an_aborted_caller_keeps_the_lock_until_its_merge_ends() {
        let (merger, control) = parked_merger();
        let store = Store::new(merger);
        let caller = spawn_compaction(&store);
        let merge_task = control.wait_for_merge();
        let caller = reject_inline_merge(merge_task, caller, &control).await;

        // The maintenance task is aborted (a config reload) while it waits for the merge.
        caller.abort();
        match caller.await {
            Err(e) if e.is_cancelled() => {}
            Err(e) => panic!("the compaction task failed instead of being cancelled: {e}"),
            Ok(_) => panic!("compact() returned although its merge is still parked"),
        }
        assert!(
            store.is_compacting(),
            "the caller of compact() was aborted while its merge was still running on a blocking \
             thread, and the compaction lock was released with it. `spawn_blocking` work cannot \
             be cancelled: the merge is still rewriting segments, yet a second compaction could \
             start now and merge the same segments at the same time. The lock must be held by \
             the merge, not by the future that waits for it"
        );

        // One release for the parked merge and one for the next: the second compaction must
        // wait for the first merge to end, then run alone.
        control.release_one();
        control.release_one();
        let stats = store.compact().await;
        assert_eq!(
            stats, STATS,
            "a second compact() after an aborted one returned {stats:?} instead of its merge's \
             stats: it must wait for the first merge to end and then run its own merge, not skip it"
        );
        let merges = control.shared.merges.load(Ordering::SeqCst);
        let most = control.shared.most_at_once.load(Ordering::SeqCst);
        assert_eq!(merges, 2, "expected 2 merges, the aborted one and the second");
        assert_eq!(
            most, 1,
            "{most} merges ran at once: the second compaction did not wait for the aborted \
             caller's merge"
        );
        assert!(!store.is_compacting(), "both merges are over, but the lock is still held");
    }

    /// A caller aborted while its merge runs must not stop a queued compaction from running
    /// once the merge is over.
    multi_thread async fn the_lock_is_released_when_an_orphaned_merge_ends() {
        let (merger, control) = parked_merger();
        let store = Store::new(merger);
        let caller = spawn_compaction(&store);
        let merge_task = control.wait_for_merge();
        let caller = reject_inline_merge(merge_task, caller, &control).await;
        caller.abort();
        let _ = caller.await;

        // Queue a compaction behind the orphaned merge, then let both merges finish.
        let queued = spawn_compaction(&store);
        control.release_one();
        control.wait_for_merge();
        control.release_one();
        let stats = queued.await.expect("the queued compaction failed");
        assert_eq!(
            stats, STATS,
            "a compaction queued behind an orphaned merge returned {stats:?} instead of its \
             merge's stats: it must wait for the lock and then run its own merge, not skip it"
        );
        assert!(
            !store.is_compacting(),
            "every merge is over, but the compaction lock is still held: the orphaned merge \
             never gave it back"
        );
    }
}
