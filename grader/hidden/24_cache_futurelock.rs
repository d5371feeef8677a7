//! Hidden tests for kata 24: a refresh that has to wait for the lock must still finish (no
//! futurelock), swap in the catalog and count itself as slow.

use std::time::Duration;

use cache_futurelock::{Catalog, CatalogCache, SLOW_LOCK};
use kata_support::hidden_test;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Far longer than any refresh should take; a refresh still pending after this never finishes.
const HANG: Duration = Duration::from_secs(60);

fn catalog(version: u64) -> Catalog {
    Catalog {
        version,
        products: vec![
            ("espresso beans, 1 kg".to_owned(), 2400 + version as u32),
            ("grinder".to_owned(), 8900),
        ],
    }
}

/// Starts a task that holds the cache's lock for `hold` (the nightly report), and returns once
/// it has the lock.
async fn hold_lock_for(cache: &CatalogCache, hold: Duration) -> tokio::task::JoinHandle<()> {
    let (locked_tx, locked) = oneshot::channel();
    let cache = cache.clone();
    let holder = tokio::spawn(async move {
        let _report = cache.lock().await;
        let _ = locked_tx.send(());
        tokio::time::sleep(hold).await;
    });
    locked.await.expect("the report task took the lock");
    holder
}

hidden_test! {
    /// Nothing in the way: the catalog is swapped and nothing is counted as slow.
    async fn an_uncontended_refresh_swaps_the_catalog() {
        let cache = CatalogCache::new(catalog(1));
        cache.refresh(catalog(2)).await;
        let state = cache.lock().await;
        assert_eq!(state.catalog, catalog(2), "refresh must swap in the new catalog");
        assert_eq!(state.slow_refreshes, 0, "an uncontended refresh is not slow");
    }

    /// The report holds the lock for 50 ms, less than `SLOW_LOCK`: the refresh waits, swaps the
    /// catalog, and is not counted as slow.
    async fn a_short_wait_is_not_counted_as_slow() {
        let cache = CatalogCache::new(catalog(1));
        let report = hold_lock_for(&cache, SLOW_LOCK / 2).await;
        let refreshed = tokio::time::timeout(HANG, cache.refresh(catalog(2))).await;
        assert!(refreshed.is_ok(), "refresh() never finished after a 50 ms wait for the lock");
        report.await.expect("the report task failed");
        let state = cache.lock().await;
        assert_eq!(state.catalog, catalog(2));
        assert_eq!(state.slow_refreshes, 0, "a 50 ms wait is below SLOW_LOCK");
    }

    /// The report holds the lock for a whole second. The refresh must finish soon after the
    /// report lets go, with the new catalog in place and the slow refresh counted.
    async fn a_slow_refresh_finishes_and_is_counted() {
        let cache = CatalogCache::new(catalog(1));
        let report = hold_lock_for(&cache, Duration::from_secs(1)).await;
        let start = Instant::now();
        let refreshed = tokio::time::timeout(HANG, cache.refresh(catalog(2))).await;
        assert!(
            refreshed.is_ok(),
            "futurelock: refresh() had not finished {} s after it started, although the report \
             released the lock after 1 s. \
             Its first `lock()` future was still queued for the mutex (pinned and raced by \
             reference, so not dropped) but was no longer polled. When the report let go, the \
             fair mutex handed itself to that future, and the second `lock()` in the slow branch \
             waits for a guard that nobody will ever take or release. Make sure the first \
             waiter is dropped before the task waits for the same lock again",
            HANG.as_secs()
        );
        let took = start.elapsed();
        report.await.expect("the report task failed");
        let state = cache.lock().await;
        assert_eq!(
            state.catalog,
            catalog(2),
            "the refresh finished but the old catalog is still in place"
        );
        assert_eq!(
            state.slow_refreshes, 1,
            "the refresh waited {took:?} for the lock (SLOW_LOCK is {SLOW_LOCK:?}), but \
             slow_refreshes reads {}: a slow refresh must be counted exactly once, so the \
             counter has to be updated under the lock, not skipped when the lock is busy",
            state.slow_refreshes
        );
    }
}
