//! # Kata 24 solution: never leave a lock future queued and unpolled
//!
//! A future that is queued for a lock, and then neither polled nor dropped, is a trap. A fair
//! mutex hands itself to the first waiter in line, whether or not anybody is polling that waiter.
//! If the same task then waits for the same lock by another path, it waits for itself: a
//! *futurelock*. The fix is to make sure the first waiter is gone (dropped) before the task
//! waits for the lock again. `time::timeout` does exactly that when it fires.

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
    /// Cancel safe: if dropped before it has the lock, the old catalog stays (and a slow refresh
    /// may or may not have been counted). The catalog is swapped in one synchronous step once
    /// the lock is held.
    pub async fn refresh(&self, catalog: Catalog) {
        let mut state = match time::timeout(SLOW_LOCK, self.state.lock()).await {
            Ok(state) => state,
            Err(_elapsed) => {
                // `timeout` has dropped its `lock()` future, so nothing of ours is queued for
                // the mutex any more. We give up our place in the queue, which is the price of
                // waiting for the lock twice, and cannot end up waiting behind ourselves.
                self.note_slow_refresh().await;
                self.state.lock().await
            }
        };
        state.catalog = catalog;
    }

    /// Counts one slow refresh for the dashboards.
    async fn note_slow_refresh(&self) {
        self.state.lock().await.slow_refreshes += 1;
    }
}
