//! # Kata 20 solution: the guard travels with the merge
//!
//! A guard borrowed from a `Mutex` belongs to the future that locked it, and it is dropped when
//! that future is dropped. The merge, though, runs on the blocking pool and cannot be cancelled.
//! So the lock must belong to the *merge*. `Mutex::lock_owned` gives an `OwnedMutexGuard` that is
//! `'static` and `Send`. It is moved into the blocking closure, and the lock is released only when
//! the merge itself is over, however the caller ends.

use std::sync::Arc;

use tokio::sync::Mutex;

/// What one merge did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MergeStats {
    /// Segments read.
    pub segments_in: usize,
    /// Segments written.
    pub segments_out: usize,
}

/// The storage engine's segment merge. It blocks (CPU work and synchronous disk I/O), so it must
/// run on a blocking thread, never on an async worker.
pub trait SegmentMerger: Send + Sync + 'static {
    /// Merges the store's small segments into bigger ones.
    fn merge(&self) -> MergeStats;
}

/// A store whose segments can be compacted. Clones share the segments and the compaction lock.
#[derive(Clone)]
pub struct Store {
    merger: Arc<dyn SegmentMerger>,
    /// Held for the whole of a merge. It guards no data in memory: it guards the segment files.
    compaction: Arc<Mutex<()>>,
}

impl Store {
    /// A store whose segments are merged by `merger`.
    pub fn new(merger: impl SegmentMerger) -> Self {
        Store { merger: Arc::new(merger), compaction: Arc::new(Mutex::new(())) }
    }

    /// True while a merge holds the compaction lock (the metrics endpoint reports it).
    pub fn is_compacting(&self) -> bool {
        self.compaction.try_lock().is_err()
    }

    /// Compacts the store. If a compaction is already running, waits for it to finish first.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe. If this future is dropped while it waits for the lock, it only loses its
    /// place in the queue, and nothing is merged. If it is dropped while the merge runs, the
    /// merge finishes on its blocking thread and keeps the compaction lock until it is done. Only
    /// its `MergeStats` are lost.
    pub async fn compact(&self) -> MergeStats {
        // An owned guard holds its own `Arc` of the mutex instead of borrowing it, so it can
        // leave this future and move to the thread that does the work.
        let compacting = self.compaction.clone().lock_owned().await;
        let merger = self.merger.clone();
        let merge = tokio::task::spawn_blocking(move || {
            // The lock now lives exactly as long as the merge. If the caller is aborted or times
            // out, this closure still runs to the end and unlocks when it returns (or panics).
            let _compacting = compacting;
            merger.merge()
        });
        match merge.await {
            Ok(stats) => stats,
            Err(failed) => std::panic::resume_unwind(failed.into_panic()),
        }
    }
}
