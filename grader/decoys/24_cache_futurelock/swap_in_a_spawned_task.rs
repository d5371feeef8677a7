//! Decoy for kata 24: moves the lock-and-swap into a spawned task and races its `JoinHandle`
//! against the timer. No futurelock, but a `refresh` dropped before it has the lock detaches the
//! task, which still swaps its catalog in when the report lets go (and can overwrite a newer one).

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
        let state = self.state.clone();
        let mut swap = tokio::spawn(async move {
            state.lock().await.catalog = catalog;
        });
        tokio::select! {
            res = &mut swap => res.expect("catalog swap task"),
            _ = time::sleep(SLOW_LOCK) => {
                self.note_slow_refresh().await;
                swap.await.expect("catalog swap task");
            }
        }
    }

    /// Counts one slow refresh for the dashboards.
    #[allow(dead_code)]
    async fn note_slow_refresh(&self) {
        self.state.lock().await.slow_refreshes += 1;
    }
}
