//! Decoy for kata 24: runs the whole refresh in a spawned task and awaits its `JoinHandle`, so no
//! timeout can cut it short. A `refresh` dropped before it has the lock detaches the task, which
//! still swaps its catalog in later: the old catalog does not stay, as the doc promises.
//!
//! # Kata 24: the cache refresh that locks itself out
//!
//! An online shop keeps its product catalog in memory, in a [`CatalogCache`] behind a
//! `tokio::sync::Mutex`. A refresher task swaps in a new catalog every minute. Sometimes the lock
//! is slow to come: the nightly price report holds it for a second or more. The dashboards want
//! to know when that happens, so `refresh` counts every refresh that waited longer than
//! [`SLOW_LOCK`].
//!
//! `refresh` races its `lock()` future against a timer, *by reference*, so that it keeps its
//! place in the lock's queue when the timer wins. That future is not dropped, so it stays in the
//! queue; and it is not polled while the slow branch runs. Read `README.md` for the whole story.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, MutexGuard};
use tokio::time;

/// A refresh that waits longer than this for the lock is counted as slow.
pub const SLOW_LOCK: Duration = Duration::from_millis(100);

/// One version of the product catalog.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Catalog {
    pub version: u64,
    pub products: Vec<(String, u32)>,
}

/// What the lock protects: the catalog and the cache's own statistics.
#[derive(Debug, Default)]
pub struct CacheState {
    pub catalog: Catalog,
    /// Refreshes that waited longer than [`SLOW_LOCK`] for the lock.
    pub slow_refreshes: u64,
}

/// The in-memory catalog. Clones share one cache.
#[derive(Debug, Clone, Default)]
pub struct CatalogCache {
    state: Arc<Mutex<CacheState>>,
}

impl CatalogCache {
    /// A cache holding `catalog`.
    pub fn new(catalog: Catalog) -> Self {
        CatalogCache { state: Arc::new(Mutex::new(CacheState { catalog, slow_refreshes: 0 })) }
    }

    /// Locks the cache, for price lookups and for the nightly report.
    ///
    /// # Cancel safety
    ///
    /// Like `Mutex::lock`: a dropped call takes nothing, but gives up its place in the queue.
    pub async fn lock(&self) -> MutexGuard<'_, CacheState> {
        self.state.lock().await
    }

    /// Swaps in a new catalog. If the lock takes longer than [`SLOW_LOCK`] to come, the refresh
    /// is counted in `slow_refreshes`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if dropped before it has the lock, the old catalog stays. The catalog is
    /// swapped in one synchronous step once the lock is held.
    pub async fn refresh(&self, catalog: Catalog) {
        // Shielded: the refresh runs on a task of its own, so it always completes.
        let cache = self.clone();
        let shielded = tokio::spawn(async move {
            let mut state = match time::timeout(SLOW_LOCK, cache.state.lock()).await {
                Ok(state) => state,
                Err(_) => {
                    cache.note_slow_refresh().await;
                    cache.state.lock().await
                }
            };
            state.catalog = catalog;
        });
        if let Err(failed) = shielded.await {
            std::panic::resume_unwind(failed.into_panic());
        }
    }

    /// Counts one slow refresh for the dashboards.
    async fn note_slow_refresh(&self) {
        self.state.lock().await.slow_refreshes += 1;
    }
}
