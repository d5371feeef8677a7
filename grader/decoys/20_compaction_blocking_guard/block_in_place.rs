//! Decoy for kata 20: runs the merge with `block_in_place`, so the caller cannot be dropped mid-merge.
//!
//! An embedded key-value store keeps its data in immutable segment files. Compaction merges small
//! segments into big ones: CPU-heavy work full of synchronous disk I/O, so it runs on tokio's
//! blocking pool with `spawn_blocking`. Two merges must never run at once: both would rewrite the
//! same segments and delete each other's output. A `tokio::sync::Mutex` guards that rule.
//!
//! `compact` has two callers. The maintenance task compacts every hour, and it is aborted
//! (`JoinHandle::abort`) when the configuration is reloaded. The admin endpoint runs
//! `timeout(30s, store.compact())`. Either way the `compact` future can be dropped while it waits
//! for the merge. A blocking task cannot be cancelled, so the merge keeps running. Read
//! `README.md` for the whole story.

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
    /// Not cancel safe. If this future is dropped while it waits for the lock, it loses its
    /// place in the queue, which is harmless. If it is dropped while the merge runs, the merge
    /// carries on (a blocking task cannot be cancelled), but the compaction lock is released at
    /// once. A second compaction can then start while the first merge is still rewriting the
    /// same segments.
    pub async fn compact(&self) -> MergeStats {
        let _compacting = self.compaction.lock().await;
        // Merge right here, on this worker: the future cannot be dropped halfway through a
        // synchronous call, so the guard lives exactly as long as the merge.
        tokio::task::block_in_place(|| self.merger.merge())
    }
}
