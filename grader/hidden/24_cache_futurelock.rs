//! Hidden tests for kata 24: a refresh that has to wait for the lock must still finish (no
//! futurelock), swap in the catalog and count itself as slow; a refresh that is dropped before it
//! has the lock must leave the old catalog in place, now and later.

use std::time::Duration;

use cache_futurelock::{Catalog, CatalogCache, SLOW_LOCK};
use kata_support::{Options, Outcome, assert_cancel_safe_with, hidden_test};
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
    /// report lets go, with the new catalog in place as soon as it returns, and the slow refresh
    /// counted.
    async fn a_slow_refresh_finishes_and_is_counted() {
        let cache = CatalogCache::new(catalog(1));
        let report = hold_lock_for(&cache, Duration::from_secs(1)).await;
        let start = Instant::now();
        let refreshed = tokio::time::timeout(HANG, cache.refresh(catalog(2))).await;
        assert!(
            refreshed.is_ok(),
            "futurelock: refresh() had not finished {} s after it started, although the report \
             let go of the lock after 1 s and nothing else wanted it. The task is asleep, waiting \
             for a lock that one of its own futures now holds or is queued for (a guard still \
             alive, or a lock future kept but no longer polled), so nothing will ever wake it",
            HANG.as_secs()
        );
        let took = start.elapsed();
        // The refresher looks the catalog up as soon as its refresh has returned.
        let seen = cache.lock().await.catalog.version;
        assert_eq!(
            seen, 2,
            "refresh(v2) returned after {took:?}, while the report held the lock for 1 s, and a \
             lookup made right after it returned saw catalog v{seen}: a refresh that has returned \
             must have put its catalog in place, not left the swap to work that goes on without it"
        );
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
             slow_refreshes reads {}: a slow refresh must be counted exactly once",
            state.slow_refreshes
        );
    }

    /// The refresher gives up on a refresh (its own timeout fires, it shuts down) at any moment
    /// while the report holds the lock for a second. A refresh dropped before it has the lock
    /// must leave the old catalog in place, also after the report lets go, and must not overwrite
    /// the catalog of the refresh that comes next. A slow refresh may or may not have been
    /// counted, but never twice.
    async fn a_refresh_dropped_while_waiting_leaves_the_old_catalog() {
        assert_cancel_safe_with(
            Options::default().cut_every(Duration::from_millis(50)),
            || CatalogCache::new(catalog(1)),
            |cache: CatalogCache| async move {
                let report = hold_lock_for(&cache, Duration::from_secs(1)).await;
                cache.refresh(catalog(2)).await;
                report
            },
            |cache, outcome: Outcome<_>| async move {
                let cancelled = outcome.is_cancelled();
                if let Some(report) = outcome.completed() {
                    report.await.map_err(|e| format!("the report task failed: {e}"))?;
                }
                // Long after the report let go of the lock.
                tokio::time::sleep(Duration::from_secs(5)).await;
                let (version, slow) = {
                    let state = cache.lock().await;
                    (state.catalog.version, state.slow_refreshes)
                };
                if slow > 1 {
                    return Err(format!("one refresh was counted {slow} times in slow_refreshes"));
                }
                match (cancelled, version) {
                    (true, 1) | (false, 2) => {}
                    (true, v) => {
                        return Err(format!(
                            "the refresh was dropped before it had the lock, but 5 s after the \
                             report let go the cache holds catalog v{v}, not the old v1: work \
                             of the dropped refresh went on without it and swapped the catalog \
                             in later"
                        ));
                    }
                    (false, v) => {
                        return Err(format!("the refresh finished, but the cache holds v{v}, not v2"));
                    }
                }
                // The refresher moves on to a newer catalog; nothing may overwrite it afterwards.
                let next = tokio::time::timeout(HANG, cache.refresh(catalog(3))).await;
                if next.is_err() {
                    return Err("the next refresh, with the lock free, never finished".to_owned());
                }
                tokio::time::sleep(Duration::from_secs(5)).await;
                let version = cache.lock().await.catalog.version;
                if version != 3 {
                    return Err(format!(
                        "the next refresh installed v3, but 5 s later the cache holds v{version}: \
                         an earlier refresh overwrote it"
                    ));
                }
                Ok(())
            },
        )
        .await;
    }
}
