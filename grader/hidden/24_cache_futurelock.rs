//! Hidden tests for kata 24: a refresh that has to wait for the lock must still finish (no
//! futurelock), swap in the catalog and count itself as slow; a refresh that is dropped before it
//! has the lock must leave the old catalog in place, now and later.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use cache_futurelock::{Catalog, CatalogCache, SLOW_LOCK};
use kata_support::runtime::{self, SEEDS};
use kata_support::{Options, Outcome, assert_cancel_safe_with, check_property, hidden_test};
use proptest::prelude::*;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

/// Far longer than any refresh should take; a refresh still pending after this never finishes.
const HANG: Duration = Duration::from_secs(60);

/// tokio's timers tick in whole milliseconds and round a deadline up to the next tick, so a timer
/// set for `SLOW_LOCK` at a first poll that falls between two ticks fires up to a tick late. The
/// README leaves that open: a wait from `SLOW_LOCK` to less than a `TICK` past it may be counted
/// either way.
const TICK: Duration = Duration::from_millis(1);

/// Whether a refresh that waited `wait` must be counted as slow (`Some(1)`), must not be
/// (`Some(0)`), or may go either way (`None`: from `SLOW_LOCK` to less than a [`TICK`] past it).
fn slow_verdict(wait: Duration) -> Option<u64> {
    if wait < SLOW_LOCK {
        Some(0)
    } else if wait >= SLOW_LOCK + TICK {
        Some(1)
    } else {
        None
    }
}

/// How far [`a_refresh_finishes_however_long_the_report_holds_the_lock`] moves the paused clock
/// in its last jump: 2^62 ms, some 146 million years, beyond any cap a refresh could sensibly
/// set on its wait (a century, `Duration::MAX` clamped by tokio to some 30 years).
const FAR_END: Duration = kata_support::time::FAR_END;

/// A wait as a test message says it: `1.5s`, `365 day(s)`, or `146 million years`.
fn spoken(wait: Duration) -> String {
    const DAY: f64 = 24.0 * 3600.0;
    const YEAR: f64 = 365.0 * DAY;
    match wait.as_secs_f64() {
        secs if secs >= 1e6 * YEAR => format!("{:.0} million years", secs / YEAR / 1e6),
        secs if secs >= DAY => format!("{:.0} day(s)", secs / DAY),
        _ => format!("{wait:?}"),
    }
}

/// Catalog `version` re-published with corrected prices under the same version (a hotfix that
/// forgot to bump it): a different catalog with the version of [`catalog`]`(version)`.
fn republished(version: u64) -> Catalog {
    let mut corrected = catalog(version);
    for (_name, price) in &mut corrected.products {
        *price -= 100;
    }
    corrected
}

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

/// Starts a request handler that looks prices up `after` from now: it queues for the lock and
/// holds it for 10 ms.
fn look_up_after(cache: &CatalogCache, after: Duration) -> tokio::task::JoinHandle<()> {
    let cache = cache.clone();
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        let _lookup = cache.lock().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    })
}

/// When a request handler last got the lock (on tokio's clock), shared with the handlers.
type LastLookup = Arc<Mutex<Option<Instant>>>;

/// Starts `handlers` request handlers that look prices up back to back: each holds the lock for
/// 5 ms and asks for it again at once, so the lock goes from one waiter to the next and is never
/// free. Each notes in `last` when it got the lock. Abort them when done.
fn busy_lookups(
    cache: &CatalogCache,
    handlers: usize,
    last: &LastLookup,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..handlers)
        .map(|_| {
            let (cache, last) = (cache.clone(), last.clone());
            tokio::spawn(async move {
                loop {
                    let _lookup = cache.lock().await;
                    *last.lock().expect("last lookup") = Some(Instant::now());
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
        .collect()
}

/// A night with more than one long holder: the report holds the lock from the start for
/// `report_ms`, and other holders (request handlers, a second report) each ask for it at
/// `ask_ms` and hold it for `hold_ms` once they have it, some before the refresh's `SLOW_LOCK`
/// timer fires, some after.
#[derive(Debug, Clone)]
struct Night {
    report_ms: u64,
    /// `(ask_ms, hold_ms)` of each other holder.
    holders: Vec<(u64, u64)>,
}

fn nights() -> impl Strategy<Value = Night> {
    // The report alone makes the refresh wait at least 150 ms, well past SLOW_LOCK, so every
    // right refresh is slow, whatever queue position it ends up with.
    let holder = (1u64..=1500, 1u64..=500);
    (150u64..=1500, prop::collection::vec(holder, 1..=4))
        .prop_map(|(report_ms, holders)| Night { report_ms, holders })
}

/// The version of the catalog in place right now, if the lock is free: one poll of `lock()`,
/// which takes the guard only if nobody holds it or waits for it, and gives it back at once.
fn version_if_free(cache: &CatalogCache) -> Option<u64> {
    let mut lock = std::pin::pin!(cache.lock());
    match lock.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(state) => Some(state.catalog.version),
        Poll::Pending => None,
    }
}

/// Two refreshes that overlap while the report holds the lock for half a second: the one the
/// explorer cuts, and the other one, which runs in a task of its own to the end. Both catalogs
/// are older than the one in place (a rollback), and the one that starts later is the older.
#[derive(Clone)]
struct Overlap {
    cache: CatalogCache,
    /// Turns true once the report holds the lock.
    report_locked: watch::Receiver<bool>,
    /// The versions of the refreshes that returned, in the order they returned.
    returned: Arc<Mutex<Vec<u64>>>,
    /// What a lookup made right after the other refresh returned saw.
    seen_after_other: Arc<Mutex<Option<u64>>>,
}

/// How long the report holds the lock while two refreshes overlap.
const OVERLAP_REPORT: Duration = Duration::from_millis(500);

/// The catalog in place before the two overlapping refreshes.
const IN_PLACE: u64 = 5;
/// The catalog of the overlapping refresh that starts first, and of the one that starts
/// `SLOW_LOCK * 3 / 2` later.
const FIRST: u64 = 4;
const LATER: u64 = 3;

impl Overlap {
    /// Starts the report and the refresh that is not cut (`other`, which starts `other_after`
    /// the report has the lock).
    fn start(other: u64, other_after: Duration) -> Self {
        let cache = CatalogCache::new(catalog(IN_PLACE));
        let (locked_tx, report_locked) = watch::channel(false);
        let report_cache = cache.clone();
        tokio::spawn(async move {
            let _report = report_cache.lock().await;
            let _ = locked_tx.send(true);
            tokio::time::sleep(OVERLAP_REPORT).await;
        });
        let overlap = Overlap {
            cache,
            report_locked,
            returned: Arc::default(),
            seen_after_other: Arc::default(),
        };
        let o = overlap.clone();
        // A local task, so that the test asks nothing of `refresh` but to run (whether its future
        // is `Send` is a test of its own).
        tokio::task::spawn_local(async move {
            o.after_the_report_locked(other_after).await;
            o.cache.refresh(catalog(other)).await;
            o.returned.lock().expect("returned").push(other);
            let seen = o.cache.lock().await.catalog.version;
            *o.seen_after_other.lock().expect("seen") = Some(seen);
        });
        overlap
    }

    async fn after_the_report_locked(&self, after: Duration) {
        let mut locked = self.report_locked.clone();
        locked.wait_for(|locked| *locked).await.expect("the report task took the lock");
        tokio::time::sleep(after).await;
    }
}

/// Polls `refresh(v2)` while the report holds the lock: now, then once the clock has jumped by
/// `wait` (which fires any timer due by then), each time also while the tasks the refresh may have
/// spawned run (8 turns). It must not return meanwhile.
async fn poll_while_the_report_holds<F: Future>(
    refresh: &mut tokio_test::task::Spawn<F>,
    wait: Duration,
) {
    for jump in [Duration::ZERO, wait] {
        if !jump.is_zero() {
            tokio::time::advance(jump).await;
        }
        for _ in 0..8 {
            assert!(
                refresh.poll().is_pending(),
                "refresh(v2) returned while the report held the lock"
            );
            tokio::task::yield_now().await;
        }
    }
}

/// Cuts one of two overlapping refreshes after every poll while the other runs to the end: the
/// one that starts first (`cut_first`) or the one that starts later.
async fn cut_one_of_two_overlapping_refreshes(cut_first: bool) {
    let later_after = SLOW_LOCK * 3 / 2;
    let ((cut, cut_after), (other, other_after)) = if cut_first {
        ((FIRST, Duration::ZERO), (LATER, later_after))
    } else {
        ((LATER, later_after), (FIRST, Duration::ZERO))
    };
    let during = format!(
        "while the report held the lock for {OVERLAP_REPORT:?}, with catalog v{IN_PLACE} in \
         place, refresh(v{FIRST}) started, and refresh(v{LATER}) {later_after:?} later (both \
         roll the catalog back)"
    );
    assert_cancel_safe_with(
        Options::default(),
        || Overlap::start(other, other_after),
        |o: Overlap| async move {
            o.after_the_report_locked(cut_after).await;
            o.cache.refresh(catalog(cut)).await;
            o.returned.lock().expect("returned").push(cut);
        },
        |o, outcome: Outcome<()>| {
            let during = during.clone();
            async move {
                let cancelled = outcome.is_cancelled();
                // Long after the report let go of the lock.
                tokio::time::sleep(HANG).await;
                let returned = o.returned.lock().expect("returned").clone();
                let version = o.cache.lock().await.catalog.version;
                if !returned.contains(&other) {
                    return Err(format!(
                        "{during}. refresh(v{other}), which nobody dropped, had not finished {} s \
                         after the report let go",
                        HANG.as_secs()
                    ));
                }
                if !cancelled {
                    let last = returned[returned.len() - 1];
                    if version != last {
                        return Err(format!(
                            "{during}. Both returned, in the order {returned:?}, yet afterwards \
                             the cache holds v{version}: each refresh must have put its own \
                             catalog in place when it returns, whatever its version, so the \
                             cache ends with the catalog of the one that returned last"
                        ));
                    }
                    return Ok(());
                }
                let seen = o.seen_after_other.lock().expect("seen").unwrap_or(version);
                if seen != other || version != other {
                    return Err(format!(
                        "{during}. refresh(v{cut}) was dropped before it returned, and \
                         refresh(v{other}) ran to the end, but a lookup made right after \
                         refresh(v{other}) returned saw catalog v{seen}, and {} s after the \
                         report let go the cache holds v{version}: a refresh that has returned \
                         must have put its own catalog in place (whatever other refreshes were \
                         started, and whatever its version), and one dropped before it returns \
                         must have had no effect",
                        HANG.as_secs()
                    ));
                }
                Ok(())
            }
        },
    )
    .await;
}

/// When the refresh under test started waiting for the lock (on tokio's clock), if it did.
type RefreshStart = Arc<Mutex<Option<Instant>>>;

/// Starts a task that asks for the cache's lock `after` from now and holds it for `hold`.
fn hold_lock_later(
    cache: &CatalogCache,
    after: Duration,
    hold: Duration,
) -> tokio::task::JoinHandle<()> {
    let cache = cache.clone();
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        let _holder = cache.lock().await;
        tokio::time::sleep(hold).await;
    })
}

/// A night on which refreshes of one cache wait behind several things in turn: the report, which
/// holds the lock from the start for `report_ms`, refreshes of the cache that started before them
/// (`refresh_starts_ms`), and lookups that each ask for the lock at `ask_ms` and hold it for
/// `hold_ms` once they have it.
#[derive(Debug, Clone)]
struct SplitNight {
    report_ms: u64,
    refresh_starts_ms: Vec<u64>,
    /// `(ask_ms, hold_ms)` of each lookup.
    lookups: Vec<(u64, u64)>,
}

fn split_nights() -> impl Strategy<Value = SplitNight> {
    (
        50u64..=300,
        prop::collection::vec(0u64..=250, 2..=4),
        prop::collection::vec((0u64..=300, 1u64..=120), 0..=3),
    )
        .prop_map(|(report_ms, refresh_starts_ms, lookups)| SplitNight {
            report_ms,
            refresh_starts_ms,
            lookups,
        })
}

/// Runs a [`SplitNight`] and measures each refresh's wait, from its call (its first poll, in the
/// same instant) to its return: `slow_refreshes` must count exactly the refreshes that waited
/// longer than `SLOW_LOCK` (a wait from `SLOW_LOCK` to less than a [`TICK`] past it may go either
/// way).
async fn split_night(night: SplitNight) -> Result<(), String> {
    let cache = CatalogCache::new(catalog(1));
    let report = cache.lock().await;
    let start = Instant::now();
    let lookups: Vec<_> = night
        .lookups
        .iter()
        .map(|&(ask_ms, hold_ms)| {
            hold_lock_later(&cache, Duration::from_millis(ask_ms), Duration::from_millis(hold_ms))
        })
        .collect();
    let local = tokio::task::LocalSet::new();
    let waits = local
        .run_until(async {
            let refreshes: Vec<_> = night
                .refresh_starts_ms
                .iter()
                .enumerate()
                .map(|(i, &start_ms)| {
                    let cache = cache.clone();
                    tokio::task::spawn_local(async move {
                        tokio::time::sleep_until(start + Duration::from_millis(start_ms)).await;
                        let called = Instant::now();
                        cache.refresh(catalog(2 + i as u64)).await;
                        called.elapsed()
                    })
                })
                .collect();
            tokio::time::sleep_until(start + Duration::from_millis(night.report_ms)).await;
            drop(report);
            let mut waits = Vec::new();
            for (i, refresh) in refreshes.into_iter().enumerate() {
                match tokio::time::timeout(HANG, refresh).await {
                    Ok(Ok(waited)) => waits.push(waited),
                    Ok(Err(e)) => return Err(format!("refresh task {i} failed: {e}")),
                    Err(_) => {
                        return Err(format!(
                            "{night:?}: refresh {i} had not returned {} s after the report let go",
                            HANG.as_secs()
                        ));
                    }
                }
            }
            Ok(waits)
        })
        .await?;
    for lookup in lookups {
        lookup.await.map_err(|e| format!("a lookup task failed: {e}"))?;
    }
    let counted = cache.lock().await.slow_refreshes;
    let longer = waits.iter().filter(|&&w| slow_verdict(w) == Some(1)).count() as u64;
    let at_least = waits.iter().filter(|&&w| w >= SLOW_LOCK).count() as u64;
    if counted < longer || counted > at_least {
        let waits_ms: Vec<String> = waits.iter().map(|w| format!("{w:?}")).collect();
        return Err(format!(
            "the report held the lock for {} ms; refreshes of the cache started at {:?} ms and \
             lookups asked for the lock at (ms, holding it for ms) {:?}. Each refresh waited, \
             from its call to its return, {}: {longer} of them a millisecond or more longer than \
             SLOW_LOCK ({SLOW_LOCK:?}) and {at_least} of them at least SLOW_LOCK, yet \
             slow_refreshes reads {counted}. A refresh's wait is the whole \
             of it, from its first poll until it has the lock, whatever it waited behind in \
             turn (the report, another refresh, a lookup), however long each part",
            night.report_ms,
            night.refresh_starts_ms,
            night.lookups,
            waits_ms.join(", ")
        ));
    }
    Ok(())
}

/// Waits just past the points where a wait kept as a whole number of seconds, milliseconds,
/// microseconds or nanoseconds in a 15-, 16-, 31-, 32-, 63- or 64-bit integer would come round
/// again (71.6 minutes in 32-bit microseconds, 49.7 days in 32-bit milliseconds, 584.5 years in
/// 64-bit nanoseconds, 584.9 million years in 64-bit milliseconds, ...): each is `2^n` of the unit
/// plus 50 ms, so that such a count reads 50 ms or less. Only points at or past `SLOW_LOCK` are
/// kept (a wait past them is slow), and seconds stop at 2^32: 2^63 s lies beyond what `Instant`
/// can hold, so no clock, paused or not, reaches it.
fn waits_past_round_numbers() -> Vec<(Duration, String)> {
    const NANOS_PER_SEC: u128 = 1_000_000_000;
    let units: [(u128, &str, &[u32]); 4] = [
        (1, "ns", &[15, 16, 31, 32, 63, 64]),
        (1_000, "µs", &[15, 16, 31, 32, 63, 64]),
        (1_000_000, "ms", &[15, 16, 31, 32, 63, 64]),
        (NANOS_PER_SEC, "s", &[15, 16, 31, 32]),
    ];
    let mut waits = Vec::new();
    for (unit_nanos, unit, powers) in units {
        for &power in powers {
            let round = unit_nanos << power;
            if round < SLOW_LOCK.as_nanos() {
                continue;
            }
            let secs = u64::try_from(round / NANOS_PER_SEC).expect("within Duration");
            let nanos = u32::try_from(round % NANOS_PER_SEC).expect("below a second");
            let wait = Duration::new(secs, nanos) + Duration::from_millis(50);
            waits.push((wait, format!("2^{power} {unit} + 50 ms, {}", spoken(wait))));
        }
    }
    waits.sort();
    waits
}

/// The report holds the lock from the start and lets go `release` later, while the refresh
/// runs as a task of its own (so that it is polled whenever its timers fire, as in production).
/// Right then, after the refresh's task has had its turn but before any time passes, a lookup
/// asks for the lock: it must find the refresh's catalog in place, since the refresh, queued
/// for the lock, gets it as soon as the report lets go. The refresh is counted slow exactly when
/// `release` is a [`TICK`] or more past `SLOW_LOCK`, and not when it is short of it.
///
/// With `lookup_task`, the lookup is a task of its own, spawned the moment the report lets go,
/// so that the refresh has one turn (the one the report's release wakes it for) before the lookup
/// asks: a refresh that is queued for the lock, or asks again at once, has the lock by then.
async fn a_lookup_right_after_the_report_lets_go(
    release: Duration,
    lookup_task: bool,
) -> Result<(), String> {
    // Start on a whole millisecond of the clock, where tokio's timers tick, so that a timer set
    // for `SLOW_LOCK` fires exactly `SLOW_LOCK` after the refresh's first poll.
    let origin = Instant::now();
    let past_tick = (Instant::now() - origin).subsec_nanos() % 1_000_000;
    if past_tick != 0 {
        tokio::time::advance(Duration::from_nanos(u64::from(1_000_000 - past_tick))).await;
    }
    let cache = CatalogCache::new(catalog(1));
    let report = cache.lock().await;
    let returned = Arc::new(Mutex::new(None));
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let start = Instant::now();
            let refresh = {
                let (cache, returned) = (cache.clone(), returned.clone());
                tokio::task::spawn_local(async move {
                    cache.refresh(catalog(2)).await;
                    *returned.lock().expect("returned") = Some(Instant::now());
                })
            };
            let whole_ms = Duration::from_millis(
                u64::try_from(release.as_millis()).expect("a release within the night"),
            );
            tokio::time::sleep_until(start + whole_ms).await;
            for _ in 0..8 {
                tokio::task::yield_now().await;
            }
            if release > whole_ms {
                tokio::time::advance(release - whole_ms).await;
                for _ in 0..8 {
                    tokio::task::yield_now().await;
                }
            }
            if returned.lock().expect("returned").is_some() {
                return Err(format!(
                    "refresh(v2) returned {release:?} into its wait, while the report still held \
                     the lock"
                ));
            }
            drop(report);
            let looked_up = if lookup_task {
                // A request arrives right then: its task is spawned after the report's release
                // woke the refresh's task.
                let cache = cache.clone();
                tokio::task::spawn_local(async move {
                    tokio::time::timeout(HANG, cache.lock())
                        .await
                        .map(|state| state.catalog.version)
                })
                .await
                .map_err(|e| format!("the lookup task failed: {e}"))?
            } else {
                // The refresh's task has its turn; no time passes.
                for _ in 0..16 {
                    tokio::task::yield_now().await;
                }
                tokio::time::timeout(HANG, cache.lock()).await.map(|state| state.catalog.version)
            };
            let seen = match looked_up {
                Ok(version) => version,
                Err(_) => {
                    return Err(format!(
                        "futurelock: the report let go of the lock {release:?} after refresh(v2) \
                         started waiting for it, and a lookup that asked for the lock right then \
                         had not got it {} s later, although nobody but the refresh wanted it \
                         (refresh(v2) {})",
                        HANG.as_secs(),
                        if returned.lock().expect("returned").is_some() {
                            "had returned"
                        } else {
                            "had not returned"
                        }
                    ));
                }
            };
            if seen != 2 {
                let refresh_state = if returned.lock().expect("returned").is_some() {
                    "had returned"
                } else {
                    "had not returned yet"
                };
                return Err(format!(
                    "the report let go of the lock {release:?} after refresh(v2) started waiting \
                     for it, and a lookup that asked for the lock right then (no time later{}) \
                     got it and saw the old catalog v{seen}, while refresh(v2) {refresh_state}: a \
                     refresh waiting for the lock must be queued for it at every moment (if it \
                     leaves the queue, it asks again at once), so that it gets the lock as soon as \
                     the report lets go, before anyone who asks after that",
                    if lookup_task {
                        ", a request task spawned the moment the report let go"
                    } else {
                        ""
                    }
                ));
            }
            match tokio::time::timeout(HANG, refresh).await {
                Ok(joined) => joined.map_err(|e| format!("the refresh task failed: {e}"))?,
                Err(_) => return Err("refresh(v2) never returned".to_owned()),
            }
            let slow = cache.lock().await.slow_refreshes;
            let expected = slow_verdict(release);
            if expected.map_or(slow > 1, |expected| slow != expected) {
                let (relation, expected) = match expected {
                    Some(1) => ("a millisecond or more longer than", "1".to_owned()),
                    Some(_) => ("less than", "0".to_owned()),
                    None => ("within a millisecond past", "0 or 1".to_owned()),
                };
                return Err(format!(
                    "the report let go of the lock {release:?} after refresh(v2) started waiting \
                     for it, so the refresh waited {relation} SLOW_LOCK ({SLOW_LOCK:?}): \
                     slow_refreshes reads {slow}, expected {expected}"
                ));
            }
            Ok(())
        })
        .await
}

/// A night on which the refresh is polled once while the report holds the lock, and then not
/// again for a while (its task is busy elsewhere: a `select!` loop that raced it by reference runs
/// another branch, a worker runs other tasks first), while lookups ask for the lock, the first
/// ones right after that first poll, in the same instant. All moments count from the refresh's
/// first poll, which falls `off_tick` past a whole millisecond of the clock.
#[derive(Debug, Clone)]
struct FirstPollNight {
    off_tick: Duration,
    /// When the refresh is polled again (zero: in the same instant, after the lookups that ask
    /// right then); from then on it is polled whenever it is woken, as a task is.
    second_poll: Duration,
    /// When each lookup asks for the lock (zero: right after the refresh's first poll, before its
    /// second).
    lookups: Vec<Duration>,
    /// When the report lets go.
    release: Duration,
}

fn first_poll_nights() -> impl Strategy<Value = FirstPollNight> {
    let slow_ns = u64::try_from(SLOW_LOCK.as_nanos()).expect("SLOW_LOCK in ns");
    let off_tick = prop_oneof![Just(0u64), 1u64..1_000_000];
    let second_poll = prop_oneof![Just(0u64), 1..slow_ns];
    // Before the refresh has waited `SLOW_LOCK`, and up to two and a half times it.
    let release = prop_oneof![1..slow_ns, slow_ns + 1..=slow_ns * 5 / 2];
    // Each lookup asks right after the first poll, or at a moment up to the release (in
    // thousandths of it).
    let lookup = proptest::option::weighted(0.5, 0u64..=1000);
    (off_tick, second_poll, prop::collection::vec(lookup, 0..=3), release).prop_map(
        |(off_tick, second_poll, lookups, release)| FirstPollNight {
            off_tick: Duration::from_nanos(off_tick),
            second_poll: Duration::from_nanos(second_poll),
            lookups: lookups
                .into_iter()
                .map(|at| {
                    Duration::from_nanos(at.map_or(0, |per_mille| release * per_mille / 1000))
                })
                .collect(),
            release: Duration::from_nanos(release),
        },
    )
}

/// Runs a [`FirstPollNight`], polling the refresh and the lookups by hand and moving the paused
/// clock one millisecond at a time (so that a timer is seen the moment it fires). The refresh's
/// wait starts at its first poll, and from then on it is queued for the lock: when the report lets
/// go before `SLOW_LOCK`, every lookup (each asked after that poll) gets the lock after the
/// refresh and sees the new catalog; a lookup that sees it sees the refresh counted; and
/// `slow_refreshes` counts the refresh when the report let go a millisecond or more past
/// `SLOW_LOCK` after the first poll, and not when it let go before.
async fn first_poll_night(night: FirstPollNight) -> Result<(), String> {
    let origin = Instant::now();
    let past_tick = (Instant::now() - origin).subsec_nanos() % 1_000_000;
    if past_tick != 0 {
        tokio::time::advance(Duration::from_nanos(u64::from(1_000_000 - past_tick))).await;
    }
    if !night.off_tick.is_zero() {
        tokio::time::advance(night.off_tick).await;
    }
    let cache = CatalogCache::new(catalog(1));
    let mut report = Some(cache.lock().await);
    let start = Instant::now();
    let scene = || {
        let lookups: Vec<String> = night.lookups.iter().map(|at| format!("{at:?}")).collect();
        let second = if night.second_poll.is_zero() {
            "again in the same instant, after the lookups that asked then".to_owned()
        } else {
            format!("again {:?} later (its task busy elsewhere meanwhile)", night.second_poll)
        };
        format!(
            "refresh(v2) was first polled {:?} past a millisecond tick while the report held the \
             lock, and polled {second}, then whenever woken; lookups asked for the lock at [{}] \
             after that first poll (0ns: right after it, in the same instant); the report let go \
             {:?} after it",
            night.off_tick,
            lookups.join(", "),
            night.release
        )
    };
    let mut refresh = tokio_test::task::spawn(cache.refresh(catalog(2)));
    if refresh.poll().is_ready() {
        return Err(format!("{}: refresh(v2) returned at its first poll", scene()));
    }
    let mut returned: Option<Duration> = None;
    // Each lookup: its lock future once it has asked, and what it saw once it had the lock.
    let mut lookups: Vec<_> = night.lookups.iter().map(|&at| (at, None, None)).collect();
    // Every whole millisecond of the clock up to past the release (and the refresh's return),
    // and every moment of the night.
    let mut moments: Vec<Duration> = night.lookups.clone();
    moments.extend([Duration::ZERO, night.second_poll, night.release]);
    let first_tick = Duration::from_nanos(1_000_000) - night.off_tick;
    let last = night.release.max(night.second_poll) + SLOW_LOCK + TICK;
    let mut tick = if night.off_tick.is_zero() { TICK } else { first_tick };
    while tick <= last {
        moments.push(tick);
        tick += TICK;
    }
    moments.sort();
    moments.dedup();
    for at in moments {
        let now = Instant::now() - start;
        if at > now {
            tokio::time::advance(at - now).await;
        }
        // A lookup asks for the lock with the first poll of its `lock()`.
        for (ask, lock, seen) in &mut lookups {
            if *ask == at && lock.is_none() {
                let mut asked = tokio_test::task::spawn(cache.lock());
                if let Poll::Ready(state) = asked.poll() {
                    *seen = Some((state.catalog.version, state.slow_refreshes, returned.is_some()));
                }
                *lock = Some(asked);
            }
        }
        if at == night.release {
            drop(report.take());
        }
        for round in 0..4 {
            if returned.is_none() && at >= night.second_poll {
                let due = (at == night.second_poll && round == 0) || refresh.is_woken();
                if due && refresh.poll().is_ready() {
                    if report.is_some() {
                        return Err(format!(
                            "{}: refresh(v2) returned {at:?} after its first poll, while the \
                             report still held the lock",
                            scene()
                        ));
                    }
                    returned = Some(at);
                }
            }
            for (_, lock, seen) in &mut lookups {
                if let Some(waiting) = lock
                    && seen.is_none()
                    && let Poll::Ready(state) = waiting.poll()
                {
                    *seen = Some((state.catalog.version, state.slow_refreshes, returned.is_some()));
                }
            }
            tokio::task::yield_now().await;
        }
        if returned.is_some()
            && lookups.iter().all(|(_, lock, seen)| lock.is_some() == seen.is_some())
        {
            break;
        }
    }
    let Some(returned) = returned else {
        return Err(format!(
            "{}: refresh(v2) had not returned SLOW_LOCK ({SLOW_LOCK:?}) after the report let go, \
             although nothing but lookups that let go at once wanted the lock",
            scene()
        ));
    };
    drop(refresh);
    let (version, slow) = {
        let state = cache.lock().await;
        (state.catalog.version, state.slow_refreshes)
    };
    if version != 2 {
        return Err(format!(
            "{}: refresh(v2) returned {returned:?} after its first poll, yet the cache holds \
             v{version}",
            scene()
        ));
    }
    for (ask, _, seen) in &lookups {
        let Some((seen_version, seen_slow, after_return)) = *seen else {
            return Err(format!(
                "{}: the lookup that asked {ask:?} after the refresh's first poll never got the \
                 lock",
                scene()
            ));
        };
        if seen_version == 1 && (night.release < SLOW_LOCK || after_return) {
            return Err(format!(
                "{}: the lookup that asked for the lock {ask:?} after the refresh's first poll got \
                 it before the refresh and saw the old catalog v1, although the report let go \
                 before SLOW_LOCK ({SLOW_LOCK:?}): from its first poll a refresh is queued for \
                 the lock (its wait has begun), ahead of anyone who asks after that poll, however \
                 late its next poll comes",
                scene()
            ));
        }
        if seen_version == 2 && seen_slow != slow {
            return Err(format!(
                "{}: the lookup that asked {ask:?} after the refresh's first poll saw the new \
                 catalog with slow_refreshes at {seen_slow}, and it reads {slow} afterwards: a \
                 slow refresh is counted by the time its catalog is in place",
                scene()
            ));
        }
    }
    let expected = slow_verdict(night.release);
    if expected.map_or(slow > 1, |expected| slow != expected) {
        return Err(format!(
            "{}: so the refresh waited {:?} from its first poll ({SLOW_LOCK:?} is SLOW_LOCK), \
             and slow_refreshes reads {slow}, expected {}: a refresh's wait starts at its first \
             poll, not at a later one, however long its task is busy in between",
            scene(),
            night.release.max(night.second_poll),
            expected.map_or("0 or 1".to_owned(), |e| e.to_string())
        ));
    }
    Ok(())
}

/// A large catalog (a shop's full range): `products` products, each priced by the version, so
/// that a lookup can tell a whole catalog from a mix of two.
fn large_catalog(version: u64, products: usize) -> Catalog {
    let price = 100 + u32::try_from(version).expect("a small version");
    Catalog { version, products: (0..products).map(|i| (format!("sku-{i:05}"), price)).collect() }
}

/// What is wrong with a catalog a lookup found, if it is not one whole [`large_catalog`].
fn not_whole(seen: &Catalog, products: usize) -> Option<String> {
    if *seen == large_catalog(seen.version, products) {
        return None;
    }
    let price = 100 + u32::try_from(seen.version).expect("a small version");
    let others = seen.products.iter().filter(|(_, p)| *p != price).count();
    Some(format!(
        "catalog v{} with {} products, {others} of them priced as another version's (expected \
         v{} whole, {products} products)",
        seen.version,
        seen.products.len(),
        seen.version
    ))
}

/// One refresh of several that overlap while the report holds the lock: it starts `start_ms`
/// after the report has the lock, with catalog `version`, and its caller drops it at `cut_ms`
/// (before the report lets go) if that is set.
#[derive(Debug, Clone, Copy)]
struct Overlapping {
    start_ms: u64,
    version: u64,
    cut_ms: Option<u64>,
}

/// Runs `refreshes` of one cache (catalog v1 of `products` products in place) while the report
/// holds the lock for `report`: none may return while the report holds the lock, every one that
/// is not dropped must return once it lets go, and the cache must end with the catalog of the one
/// that returned last, whole.
async fn overlapping_refreshes(
    refreshes: &[Overlapping],
    report: Duration,
    products: usize,
) -> Result<(), String> {
    let started = refreshes.iter().map(|r| (r.start_ms, r.version, r.cut_ms));
    let during = if refreshes.len() <= 8 {
        format!(
            "while the report held the lock for {}, with v1 ({products} products) in place, \
             refreshes started at (ms, version, dropped at ms) {:?}",
            spoken(report),
            started.collect::<Vec<_>>()
        )
    } else {
        format!(
            "while the report held the lock for {}, with v1 ({products} products) in place, \
             {} refreshes of the cache started (the first few at (ms, version, dropped at ms) \
             {:?}, ..), {} of them dropped by their callers before the report let go",
            spoken(report),
            refreshes.len(),
            started.take(4).collect::<Vec<_>>(),
            refreshes.iter().filter(|r| r.cut_ms.is_some()).count()
        )
    };
    let cache = CatalogCache::new(large_catalog(1, products));
    let held = cache.lock().await;
    let start = Instant::now();
    let returned: Arc<Mutex<Vec<(usize, u64)>>> = Arc::default();
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let tasks: Vec<_> = refreshes
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let (cache, returned, r) = (cache.clone(), returned.clone(), *r);
                    tokio::task::spawn_local(async move {
                        tokio::time::sleep_until(start + Duration::from_millis(r.start_ms)).await;
                        cache.refresh(large_catalog(r.version, products)).await;
                        returned.lock().expect("returned").push((i, r.version));
                    })
                })
                .collect();
            let mut cuts: Vec<(u64, usize)> =
                refreshes.iter().enumerate().filter_map(|(i, r)| Some((r.cut_ms?, i))).collect();
            cuts.sort();
            for (cut_ms, i) in cuts {
                tokio::time::sleep_until(start + Duration::from_millis(cut_ms)).await;
                tasks[i].abort();
            }
            tokio::time::sleep_until(start + report).await;
            for _ in 0..8 {
                tokio::task::yield_now().await;
            }
            let early = returned.lock().expect("returned").clone();
            if !early.is_empty() {
                let (count, early) = (early.len(), &early[..early.len().min(8)]);
                return Err(format!(
                    "{during}: {count} refresh(es) (index, version) {early:?}{} returned while the report \
                     still held the lock, so with v1 still in place: a refresh must return only \
                     once its own catalog is in place, whatever other refreshes of the same cache \
                     wait (and whatever their catalogs: the one on its way may yet be dropped)",
                    if count > early.len() { ", .." } else { "" }
                ));
            }
            drop(held);
            for (i, task) in tasks.into_iter().enumerate() {
                let cut = refreshes[i].cut_ms.is_some();
                match tokio::time::timeout(HANG, task).await {
                    Ok(Ok(())) | Ok(Err(_)) if cut => {}
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(format!("refresh task {i} failed: {e}")),
                    Err(_) => {
                        return Err(format!(
                            "{during}: refresh {i} (v{}), which nobody dropped, had not returned \
                             {} s after the report let go",
                            refreshes[i].version,
                            HANG.as_secs()
                        ));
                    }
                }
            }
            Ok(())
        })
        .await?;
    let returned = returned.lock().expect("returned").clone();
    let state = cache.lock().await;
    if let Some(why) = not_whole(&state.catalog, products) {
        return Err(format!("{during}: afterwards the cache holds {why}"));
    }
    let Some(&(last, version)) = returned.last() else {
        return Err(format!("{during}: no refresh returned"));
    };
    if state.catalog.version != version {
        return Err(format!(
            "{during}: they returned in the order (index, version) {returned:?}, yet afterwards \
             the cache holds v{}: each refresh must have put its own catalog in place when it \
             returns, so the cache ends with the catalog of the one that returned last (refresh \
             {last}, v{version}), and a dropped one must have had no effect",
            state.catalog.version
        ));
    }
    let kept = refreshes.iter().filter(|r| r.cut_ms.is_none()).count() as u64;
    let slow = state.slow_refreshes;
    if slow < kept || slow > refreshes.len() as u64 {
        return Err(format!(
            "{during}: each refresh waited longer than SLOW_LOCK; {kept} ran to the end and {} \
             were dropped, yet slow_refreshes reads {slow} (expected {kept} to {})",
            refreshes.len() as u64 - kept,
            refreshes.len()
        ));
    }
    Ok(())
}

/// A pile-up of `count` refreshes of one cache while the report holds the lock for 200 ms (past
/// `SLOW_LOCK`, so that each refresh is slow, and short, so that a fix that wakes every
/// millisecond stays cheap with thousands waiting): they start in three waves 10 ms apart, every
/// seventh re-sends the catalog of the one before it, and every fifth is dropped by its caller
/// before the report lets go. Checked by [`overlapping_refreshes`].
async fn pile_up(count: u64) {
    let refreshes: Vec<Overlapping> = (0..count)
        .map(|i| Overlapping {
            start_ms: i % 3 * 10,
            version: 2 + i - u64::from(i % 7 == 6),
            cut_ms: (i % 5 == 3).then_some(150 + i % 3 * 10),
        })
        .collect();
    if let Err(why) = overlapping_refreshes(&refreshes, SLOW_LOCK * 2, 2).await {
        panic!("{why}");
    }
}

/// The failure of [`a_refresh_finishes_however_long_the_report_holds_the_lock`]: the refresh
/// returned (at poll `polls`) while the report, holding the lock for `held`, still held it.
fn returned_while_the_report_held_the_lock(held: Duration, polls: usize) -> ! {
    panic!(
        "the report has held the lock for {} and still holds it, yet refresh(v2) returned (poll \
         {polls}): it cannot have put its catalog in place, since that needs the lock. A refresh \
         must wait for the lock however long the report keeps it, and return only with its \
         catalog in place: a cap on the wait (a minute, an hour, a century, or a count of hourly \
         looks) gives up on the refresh, and no cap is long enough",
        spoken(held)
    );
}

hidden_test! {
    /// A refresh waits behind several things in turn: the report, another refresh of the cache
    /// that got ahead of it, a lookup that asked while it waited. Each part is shorter than
    /// `SLOW_LOCK`, the whole is longer (by a few milliseconds to a few tens): the refresh is
    /// slow, however its wait is split. Scripted nights (a refresh that starts while another
    /// waits, and a lookup that asks while both wait), one that stays short of `SLOW_LOCK`, then
    /// many nights from a fixed seed.
    fn every_refresh_that_waited_longer_than_slow_lock_is_counted_however_its_wait_is_split() {
        // (report_ms, [refresh starts, ms], [(lookup asks, holds), ms]).
        let scripted: [(u64, &[u64], &[(u64, u64)]); 6] = [
            (150, &[0, 80], &[(120, 60)]),
            (150, &[0, 140], &[(120, 95)]),
            (200, &[0, 105], &[(150, 10)]),
            (200, &[0, 150], &[(160, 60)]),
            (200, &[0, 160], &[(170, 50)]),
            (250, &[0, 90, 180], &[(120, 40), (200, 45)]),
        ];
        for seed in SEEDS {
            for (report_ms, starts, lookups) in scripted {
                let night = SplitNight {
                    report_ms,
                    refresh_starts_ms: starts.to_vec(),
                    lookups: lookups.to_vec(),
                };
                if let Err(why) = runtime::current_thread(seed).block_on(split_night(night)) {
                    panic!("{why}");
                }
            }
        }
        check_property(64, split_nights(), split_night);
    }

    /// The refresher is a task of its own (`tokio::spawn`) on the shop's multi-thread runtime,
    /// so `refresh`'s future must stay `Send`, as it is now.
    async fn refresh_can_run_in_the_refresher_task() {
        let cache = CatalogCache::new(catalog(1));
        let refresh = cache.refresh(catalog(2));
        assert!(
            kata_support::is_send!(refresh),
            "the future returned by `refresh` is not `Send`, so the refresher can no longer run \
             as a spawned task: it holds something that is not `Send` (a `Cell`, a `RefCell`, an \
             `Rc`, a `std` lock guard) across an `.await`"
        );
        refresh.await;
        assert_eq!(cache.lock().await.catalog, catalog(2), "refresh must swap in the new catalog");
    }

    /// Nothing in the way: the catalog is swapped and nothing is counted as slow. Versions go
    /// down as well as up (an operator rolls a bad catalog back to an older one), and a catalog
    /// may be re-published with other prices under the version already in place: each refresh
    /// puts its own catalog in place, whatever its version or contents (even an empty one).
    async fn an_uncontended_refresh_swaps_the_catalog() {
        let cache = CatalogCache::new(catalog(5));
        let mut before = catalog(5);
        // An empty catalog (a region closed for the night), and the far ends of the version.
        let empty = |version| Catalog { version, products: Vec::new() };
        let refreshes = [
            catalog(8),
            catalog(3),
            republished(3),
            empty(3),
            catalog(9),
            Catalog::default(),
            catalog(2),
            republished(2),
            empty(u64::MAX),
            catalog(0),
            Catalog { version: u64::MAX, products: vec![(String::new(), 0)] },
            catalog(4),
        ];
        for new in refreshes {
            let version = new.version;
            cache.refresh(new.clone()).await;
            let seen = cache.lock().await.catalog.clone();
            assert!(
                seen == new,
                "with catalog v{} in place (prices {:?}) and the lock free, refresh(v{version}, \
                 prices {:?}) returned, but a lookup made right after it saw catalog v{} with \
                 prices {:?}: a refresh must put its own catalog in place whatever its version \
                 or contents (rolling back to an older catalog, re-publishing corrected prices \
                 under the same version, or an empty catalog, is a refresh like any other)",
                before.version,
                before.products,
                new.products,
                seen.version,
                seen.products,
            );
            before = new;
        }
        let state = cache.lock().await;
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

    /// The report lets go a nanosecond before the refresh has waited `SLOW_LOCK`, and on another
    /// night a millisecond after: the first refresh is not slow, the second is, and is counted
    /// once. The refresh is first polled on a whole millisecond of the clock, where tokio's timers
    /// tick, and on nights a nanosecond, half a millisecond and a nanosecond short of a
    /// millisecond past one. A timer rounds its deadline up to the next tick, so only a wait from
    /// `SLOW_LOCK` to less than a millisecond past it is left open; no slack beyond that, either
    /// way, for a refresh that races a timer as for one that measures its wait on tokio's clock.
    async fn a_wait_just_short_of_slow_lock_is_not_slow_and_a_millisecond_past_it_is() {
        let nanosecond = Duration::from_nanos(1);
        let origin = Instant::now();
        let offsets = [0, 1, 500_000, 999_999].map(Duration::from_nanos);
        let nights = [(SLOW_LOCK - nanosecond, 0), (SLOW_LOCK + TICK, 1)];
        for (offset, (wait, slow)) in
            offsets.into_iter().flat_map(|offset| nights.map(|night| (offset, night)))
        {
            // Move to a whole millisecond of the clock, then `offset` past it.
            let past_tick = (Instant::now() - origin).subsec_nanos() % 1_000_000;
            if past_tick != 0 {
                tokio::time::advance(Duration::from_nanos(u64::from(1_000_000 - past_tick))).await;
            }
            if !offset.is_zero() {
                tokio::time::advance(offset).await;
            }
            let cache = CatalogCache::new(catalog(1));
            // The test body is the report: it holds the lock until it lets go below.
            let report = cache.lock().await;
            let start = Instant::now();
            let mut refresh = tokio_test::task::spawn(cache.refresh(catalog(2)));
            // The report lets go only after `wait`.
            poll_while_the_report_holds(&mut refresh, wait).await;
            drop(report);
            let refreshed = tokio::time::timeout(HANG, refresh).await;
            let waited = start.elapsed();
            assert!(
                refreshed.is_ok(),
                "refresh() had not finished {} s after the report, which held the lock for \
                 {wait:?}, let go of it",
                HANG.as_secs()
            );
            let (version, counted) = {
                let state = cache.lock().await;
                (state.catalog.version, state.slow_refreshes)
            };
            assert_eq!(version, 2, "refresh(v2) returned, but the cache holds v{version}");
            let (relation, verdict) = if slow == 1 {
                ("longer than SLOW_LOCK by a millisecond", "it was slow, so it must be counted, once")
            } else {
                ("less than SLOW_LOCK by a nanosecond", "it was not slow, so it must not be counted")
            };
            assert!(
                counted == slow,
                "the refresh was first polled {offset:?} past a millisecond tick of the clock, the \
                 report held the lock for {wait:?} and the refresh returned {waited:?} after it \
                 started, so it waited {relation} ({SLOW_LOCK:?}): {verdict}. slow_refreshes \
                 reads {counted}, expected {slow}: a refresh is slow when it waited longer than \
                 SLOW_LOCK (only a wait from SLOW_LOCK to less than a millisecond past it, \
                 tokio's timer rounding, may be counted either way)"
            );
        }
    }

    /// A refresh future built now and first polled later (the refresher builds it, then awaits
    /// something else first; another refresh of the cache may run meanwhile): it waits for the
    /// lock from its first poll, not from the call, since a future that has not been polled is
    /// not queued for the lock. Built 1 ms to a week before it is polled, it is slow when the
    /// report lets go a millisecond past `SLOW_LOCK` after that first poll, and not when it lets
    /// go before `SLOW_LOCK`.
    async fn a_refresh_waits_from_its_first_poll_not_from_its_call() {
        const WEEK: Duration = Duration::from_secs(7 * 24 * 60 * 60);
        let nanosecond = Duration::from_nanos(1);
        let delays = [
            Duration::from_millis(1),
            SLOW_LOCK * 3 / 5,
            SLOW_LOCK - nanosecond,
            SLOW_LOCK + nanosecond,
            Duration::from_millis(1500),
            WEEK,
        ];
        let waits = [nanosecond, SLOW_LOCK / 2, SLOW_LOCK - nanosecond, SLOW_LOCK + TICK];
        let origin = Instant::now();
        for (i, delay) in delays.into_iter().enumerate() {
            for wait in waits {
                let cache = CatalogCache::new(catalog(1));
                let mut refresh = tokio_test::task::spawn(cache.refresh(catalog(2)));
                tokio::time::advance(delay).await;
                let other_first = i % 2 == 1;
                if other_first {
                    cache.refresh(catalog(3)).await;
                }
                // Poll it first on a whole millisecond of the clock, where tokio's timers tick,
                // so that a timer set at that poll fires exactly `SLOW_LOCK` after it.
                let past_tick = (Instant::now() - origin).subsec_nanos() % 1_000_000;
                if past_tick != 0 {
                    tokio::time::advance(Duration::from_nanos(u64::from(1_000_000 - past_tick)))
                        .await;
                }
                let report = cache.lock().await;
                poll_while_the_report_holds(&mut refresh, wait).await;
                drop(report);
                let refreshed = tokio::time::timeout(HANG, refresh).await;
                assert!(
                    refreshed.is_ok(),
                    "refresh() had not finished {} s after the report let go of the lock",
                    HANG.as_secs()
                );
                let (version, counted) = {
                    let state = cache.lock().await;
                    (state.catalog.version, state.slow_refreshes)
                };
                let slow = u64::from(wait > SLOW_LOCK);
                assert!(
                    (version, counted) == (2, slow),
                    "refresh(v2) was built {} before it was first polled{}, and the report let go \
                     of the lock {wait:?} after that first poll, so the refresh waited {} \
                     SLOW_LOCK ({SLOW_LOCK:?}){}; then the cache held v{version} with \
                     slow_refreshes at {counted}, expected v2 and {slow}: a refresh waits from \
                     its first poll (a future not yet polled is not queued for the lock), not \
                     from the call that built it",
                    spoken(delay),
                    if other_first { " (a refresh of v3 ran in between)" } else { "" },
                    if slow == 1 { "longer than" } else { "less than" },
                    if slow == 1 { " by a millisecond" } else { "" }
                );
            }
        }
    }

    /// The report holds the lock for a whole second, on another night for fifty seconds, and on
    /// a bad night (a report stuck on a slow disk) for five minutes. The refresh must finish as
    /// soon as the report lets go (within `SLOW_LOCK`), with the new catalog in place as soon as
    /// it returns, and the slow refresh counted.
    async fn a_slow_refresh_finishes_and_is_counted() {
        // Five minutes, past a two-minute cap, and cheap enough for a fix that polls every 10 ms.
        const FIVE_MINUTES: u64 = 5 * 60;
        for report_secs in [1, 50, FIVE_MINUTES] {
            let cache = CatalogCache::new(catalog(1));
            let report = hold_lock_for(&cache, Duration::from_secs(report_secs)).await;
            let start = Instant::now();
            let within = Duration::from_secs(report_secs) + HANG;
            let refreshed = tokio::time::timeout(within, cache.refresh(catalog(2))).await;
            assert!(
                refreshed.is_ok(),
                "futurelock: refresh() had not finished {} s after the report let go of the \
                 lock (it held the lock for {report_secs} s), although nothing else wanted it. \
                 The task is asleep, waiting for a lock that one of its own futures now holds \
                 or is queued for (a guard still alive, or a lock future kept but no longer \
                 polled), so nothing will ever wake it",
                HANG.as_secs()
            );
            let took = start.elapsed();
            let report_held = Duration::from_secs(report_secs);
            assert!(
                took <= report_held + SLOW_LOCK,
                "the report held the lock for {report_secs} s and nothing else wanted it, yet \
                 refresh(v2) returned only {:?} after the report let go (expected within \
                 SLOW_LOCK, {SLOW_LOCK:?}): all that time the lock was free and lookups saw the \
                 old catalog. A refresh must stay in the lock's queue while it waits (if it \
                 leaves it, it asks again at once), not leave it and come back later",
                took.saturating_sub(report_held)
            );
            // The refresher looks the catalog up as soon as its refresh has returned.
            let seen = cache.lock().await.catalog.version;
            assert_eq!(
                seen, 2,
                "refresh(v2) returned after {took:?}, while the report held the lock for \
                 {report_secs} s, and a lookup made right after it returned saw catalog v{seen}: \
                 a refresh that has returned must have put its catalog in place, not given up \
                 (however long it waited) or left the swap to work that goes on without it"
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
    }

    /// A report stuck for a year (a hung disk, nobody on call), and then for 146 million years,
    /// each reached in one jump of the paused clock: however long the report holds the lock, the
    /// refresh waits in the lock's queue, and returns only with its catalog in place, counted
    /// once, as soon as the report lets go. A refresh that gives up after a cap of its own (a
    /// minute, an hour, two years, a century) returns with the old catalog in place, and no cap is
    /// long enough.
    async fn a_refresh_finishes_however_long_the_report_holds_the_lock() {
        const YEAR: Duration = Duration::from_secs(365 * 24 * 60 * 60);
        let cache = CatalogCache::new(catalog(1));
        // The test body is the report: it holds the lock until it lets go below.
        let report = cache.lock().await;
        let start = Instant::now();
        let mut refresh = tokio_test::task::spawn(cache.refresh(catalog(2)));
        // Polled while the stuck report holds the lock: first now, then after a year gone by in
        // one jump, then after the far end (one jump: it costs the timer nothing), and again
        // while the tasks the refresh may have spawned run.
        let mut polls = 0;
        let zero = Duration::ZERO;
        for jump in [zero, YEAR, zero, FAR_END, zero, SLOW_LOCK, SLOW_LOCK] {
            if !jump.is_zero() {
                tokio::time::advance(jump).await;
            }
            for _ in 0..8 {
                polls += 1;
                if refresh.poll().is_ready() {
                    returned_while_the_report_held_the_lock(start.elapsed(), polls);
                }
                tokio::task::yield_now().await;
            }
        }
        let held = start.elapsed();
        drop(report);
        let refreshed = tokio::time::timeout(HANG, refresh).await;
        assert!(
            refreshed.is_ok(),
            "futurelock: refresh() had not finished {} s after the report let go of the lock (it \
             held the lock for {}), although nothing else wanted it",
            HANG.as_secs(),
            spoken(held)
        );
        let took = start.elapsed();
        assert!(
            took <= held + SLOW_LOCK,
            "the report held the lock for {} and nothing else wanted it, yet refresh(v2) \
             returned only {:?} after the report let go (expected within SLOW_LOCK, \
             {SLOW_LOCK:?}): a refresh must stay in the lock's queue while it waits",
            spoken(held),
            took - held
        );
        let state = cache.lock().await;
        assert_eq!(
            (state.catalog.version, state.slow_refreshes),
            (2, 1),
            "the report held the lock for {}, and refresh(v2) returned: expected catalog v2 in \
             place and slow_refreshes at 1 (catalog version, slow_refreshes), seen otherwise",
            spoken(held)
        );
    }

    /// The report is stuck for good: the clock jumps to the far end, then moves on for as long
    /// as the refresh (or a task it spawned) still wakes up when it moves, polling it each time,
    /// so that a cap counted in looks (ten years of hourly ones) runs out too, whatever the count
    /// up to 131,072. The steps start at some 35 years (more than any wait a `Duration` of up to
    /// 30 years sets) and double each time nothing woke, until the clock has moved on by 2^58 ms
    /// more. One seed: a right refresh that looks again every `SLOW_LOCK` for ever wakes at every
    /// step, and the steps are the dear part.
    fn a_refresh_outlasts_any_count_of_looks() {
        runtime::current_thread(SEEDS[0]).block_on(async {
            let cache = CatalogCache::new(catalog(1));
            let report = cache.lock().await;
            let start = Instant::now();
            let mut refresh = tokio_test::task::spawn(cache.refresh(catalog(2)));
            let mut polls = 1;
            if refresh.poll().is_ready() {
                returned_while_the_report_held_the_lock(start.elapsed(), polls);
            }
            // A turn for a task the refresh spawned, as a runtime gives it at once, so that a timer
            // it sets is set now, not just after the jump: tokio's timer wheel takes seconds to
            // catch up a jump of 2^62 ms past a timer set just before it had seen the jump.
            tokio::task::yield_now().await;
            tokio::task::yield_now().await;
            tokio::time::advance(FAR_END).await;
            let task_polls = || tokio::runtime::Handle::current().metrics().worker_poll_count(0);
            let mut left = FAR_END / 16;
            let mut step = Duration::from_millis(1 << 40);
            let mut woke = true;
            for _ in 0..1u32 << 17 {
                if woke {
                    polls += 1;
                    if refresh.poll().is_ready() {
                        returned_while_the_report_held_the_lock(start.elapsed(), polls);
                    }
                } else {
                    step *= 2;
                }
                if step > left {
                    break;
                }
                let before = task_polls();
                tokio::time::advance(step).await;
                // A turn for a task the refresh spawned, if its timer fired.
                tokio::task::yield_now().await;
                tokio::task::yield_now().await;
                left -= step;
                woke = refresh.is_woken() || task_polls() != before;
            }
            let held = start.elapsed();
            drop(report);
            let refreshed = tokio::time::timeout(HANG, refresh).await;
            assert!(
                refreshed.is_ok(),
                "futurelock: refresh() had not finished {} s after the report let go of the lock \
                 (it held the lock for {}), although nothing else wanted it",
                HANG.as_secs(),
                spoken(held)
            );
            let state = cache.lock().await;
            assert_eq!(
                (state.catalog.version, state.slow_refreshes),
                (2, 1),
                "the report held the lock for {}, and refresh(v2) returned: expected catalog v2 \
                 in place and slow_refreshes at 1 (catalog version, slow_refreshes), seen \
                 otherwise",
                spoken(held)
            );
        });
    }

    /// The report holds the lock for a second; lookups queue for it while the refresh waits, one
    /// in the tick the refresh starts, one before its `SLOW_LOCK` timer fires and one after, and
    /// each reads the catalog and the
    /// counter under the lock. A lookup that finds the refresh's catalog in place must find the
    /// slow refresh counted, as the dashboard would.
    async fn a_lookup_that_sees_the_new_catalog_sees_the_slow_refresh_counted() {
        let cache = CatalogCache::new(catalog(1));
        let report = hold_lock_for(&cache, Duration::from_secs(1)).await;
        // The first lookup is a request handler's task that is already scheduled when the
        // refresh starts: it asks for the lock in the very tick of the refresh's first poll.
        let lookups: Vec<_> = [Duration::ZERO, SLOW_LOCK / 2, SLOW_LOCK * 3 / 2]
            .into_iter()
            .map(|after| {
                let cache = cache.clone();
                tokio::spawn(async move {
                    if !after.is_zero() {
                        tokio::time::sleep(after).await;
                    }
                    let state = cache.lock().await;
                    let seen = (state.catalog.version, state.slow_refreshes);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    (after, seen)
                })
            })
            .collect();
        let refreshed = tokio::time::timeout(HANG, cache.refresh(catalog(2))).await;
        assert!(
            refreshed.is_ok(),
            "futurelock: refresh() had not finished {} s after it started, although the report \
             let go of the lock after 1 s and three lookups held it for 10 ms each",
            HANG.as_secs()
        );
        report.await.expect("the report task failed");
        for lookup in lookups {
            let (after, (version, slow)) = lookup.await.expect("a lookup task failed");
            assert!(
                version != 2 || slow == 1,
                "a lookup that asked for the lock {after:?} into the refresh (which waited a \
                 second behind the report) found the new catalog v2 in place, but \
                 slow_refreshes read {slow}: whenever the refresh's catalog is in place, its \
                 slow wait must already be counted, not counted a moment later"
            );
        }
    }

    /// The refresher gives up on a refresh (its own timeout fires, it shuts down) at any moment
    /// while the report holds the lock for a second. A refresh dropped before it has the lock
    /// must leave the old catalog in place, also after the report lets go, and must not overwrite
    /// the catalog of the refresh that comes next. A slow refresh may or may not have been
    /// counted, but never twice.
    async fn a_refresh_dropped_while_waiting_leaves_the_old_catalog() {
        assert_cancel_safe_with(
            Options::default().cut_every(Duration::from_millis(50)),
            || (CatalogCache::new(catalog(1)), RefreshStart::default()),
            |(cache, started): (CatalogCache, RefreshStart)| async move {
                let report = hold_lock_for(&cache, Duration::from_secs(1)).await;
                *started.lock().expect("refresh start") = Some(Instant::now());
                cache.refresh(catalog(2)).await;
                report
            },
            |(cache, started), outcome: Outcome<_>| async move {
                let cancelled = outcome.is_cancelled();
                // How long the refresh had waited when it was dropped (none: it never started).
                let waited = started.lock().expect("refresh start").map(|at| at.elapsed());
                let dropped_before_slow = cancelled && waited.is_none_or(|w| w < SLOW_LOCK);
                // What the cache held right after the drop (at the same instant), if the lock was free.
                let at_the_drop = version_if_free(&cache);
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
                let waited_text = match waited {
                    Some(w) => format!("{w:?} into its wait for the lock"),
                    None => "before it started".to_owned(),
                };
                if dropped_before_slow && slow != 0 {
                    return Err(format!(
                        "the refresh was dropped {waited_text}, before it had waited SLOW_LOCK \
                         ({SLOW_LOCK:?}), yet 5 s after the report let go slow_refreshes reads \
                         {slow}: no refresh waited longer than SLOW_LOCK"
                    ));
                }
                match (cancelled, version) {
                    (true, 1) | (false, 2) => {}
                    (true, v) => {
                        let when = match at_the_drop {
                            Some(at) if at == v => format!(
                                "its catalog v{v} was in place right after it was dropped, and \
                                 still is 5 s after the report let go"
                            ),
                            Some(at) => format!(
                                "the cache held v{at} right after it was dropped, and 5 s after \
                                 the report let go it holds v{v}"
                            ),
                            None => format!(
                                "5 s after the report let go the cache holds v{v} (right after \
                                 it was dropped, the lock was held)"
                            ),
                        };
                        return Err(format!(
                            "the refresh was dropped {waited_text}, before it returned, yet \
                             {when}, not the old v1: a refresh dropped before it returns must \
                             have had no effect, so the old catalog must stay"
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
                let (version, slow_after) = {
                    let state = cache.lock().await;
                    (state.catalog.version, state.slow_refreshes)
                };
                if version != 3 {
                    return Err(format!(
                        "the next refresh installed v3, but 5 s later the cache holds v{version}: \
                         an earlier refresh overwrote it"
                    ));
                }
                if dropped_before_slow && slow_after != 0 {
                    return Err(format!(
                        "the refresh was dropped {waited_text}, before it had waited SLOW_LOCK \
                         ({SLOW_LOCK:?}); 5 s later the next refresh found the lock free and did \
                         not wait at all, yet afterwards slow_refreshes reads {slow_after}: \
                         neither refresh waited longer than SLOW_LOCK, so neither may be counted \
                         (what the dropped refresh had started must not count the next one as \
                         slow)"
                    ));
                }
                Ok(())
            },
        )
        .await;
    }

    /// Two request handlers look prices up back to back while the refresh waits, with and
    /// without the report holding the lock for a second: the lock is never free for an instant,
    /// but every waiter gets its turn, and so must the refresh.
    async fn a_refresh_gets_its_turn_while_lookups_keep_the_lock_busy() {
        for report_hold in [None, Some(Duration::from_secs(1))] {
            let cache = CatalogCache::new(catalog(1));
            let report = match report_hold {
                Some(hold) => Some(hold_lock_for(&cache, hold).await),
                None => None,
            };
            let last_lookup = LastLookup::default();
            let lookups = busy_lookups(&cache, 2, &last_lookup);
            // The handlers are under way: one holds the lock, the other waits for it.
            tokio::time::sleep(Duration::from_millis(1)).await;
            let start = Instant::now();
            let refreshed = tokio::time::timeout(HANG, cache.refresh(catalog(2))).await;
            let took = start.elapsed();
            let during = match report_hold {
                Some(_) => "while the report held the lock for 1 s and two request handlers",
                None => "while two request handlers",
            };
            if refreshed.is_err() {
                // Read before the handlers run again: dropping the refresh freed the lock.
                let last = last_lookup.lock().expect("last lookup").map(|at| at - start);
                let handlers = match last {
                    Some(last) if last + Duration::from_secs(1) < took => format!(
                        "The handlers got the lock for the last time {last:?} after the refresh \
                         started, and from then on nobody got it: the lock was handed to a \
                         future of the refresh's own task that nobody polled while the task \
                         waited for the lock through another (a futurelock)"
                    ),
                    _ => "The handlers kept getting the lock, in turn, to the end. The lock was \
                          never free for an instant: it goes straight from one waiter to the \
                          next, so a refresh gets it only by waiting its turn in the lock's \
                          queue, as the handlers do"
                        .to_owned(),
                };
                panic!(
                    "refresh() had not finished {} s after it started, {during} looked prices \
                     up back to back (each holding the lock 5 ms, then asking for it again at \
                     once). {handlers}",
                    HANG.as_secs()
                );
            }
            let version = {
                let state = cache.lock().await;
                state.catalog.version
            };
            for lookup in lookups {
                lookup.abort();
            }
            if let Some(report) = report {
                report.await.expect("the report task failed");
            }
            assert_eq!(
                version, 2,
                "refresh(v2) returned after {took:?} {during} looked prices up, but the cache \
                 holds catalog v{version}"
            );
        }
    }

    /// Cut the refresh at every poll and every 50 ms while the report holds the lock for a
    /// second, with two lookups queued while it waits (one before its `SLOW_LOCK` timer, one
    /// after). Whenever the new catalog is in place, the refresh waited a second for the lock,
    /// so it must be counted once; and a refresh dropped before it returned has had no effect.
    async fn a_slow_refresh_whose_catalog_is_in_place_is_counted() {
        assert_cancel_safe_with(
            Options::default().cut_every(Duration::from_millis(50)),
            || CatalogCache::new(catalog(1)),
            |cache: CatalogCache| async move {
                let report = hold_lock_for(&cache, Duration::from_secs(1)).await;
                let before_the_timer = look_up_after(&cache, SLOW_LOCK / 2);
                let after_the_timer = look_up_after(&cache, SLOW_LOCK * 3 / 2);
                let lookups = [before_the_timer, after_the_timer];
                cache.refresh(catalog(2)).await;
                (report, lookups)
            },
            |cache, outcome: Outcome<_>| async move {
                let cancelled = outcome.is_cancelled();
                if let Some((report, lookups)) = outcome.completed() {
                    report.await.map_err(|e| format!("the report task failed: {e}"))?;
                    for lookup in lookups {
                        lookup.await.map_err(|e| format!("a lookup task failed: {e}"))?;
                    }
                }
                // Long after the report and the lookups let go of the lock.
                tokio::time::sleep(Duration::from_secs(5)).await;
                let (version, slow) = {
                    let state = cache.lock().await;
                    (state.catalog.version, state.slow_refreshes)
                };
                if slow > 1 {
                    return Err(format!("one refresh was counted {slow} times in slow_refreshes"));
                }
                if !cancelled && version != 2 {
                    return Err(format!(
                        "the refresh finished, but the cache holds v{version}, not v2"
                    ));
                }
                if cancelled && version == 2 {
                    return Err(format!(
                        "the refresh was dropped before it returned, yet 5 s after the report \
                         let go the cache holds its catalog v2 (and slow_refreshes reads \
                         {slow}): a refresh dropped before it returns must have had no effect, \
                         so the old catalog v1 must stay"
                    ));
                }
                if version == 2 && slow == 0 {
                    return Err(
                        "5 s after the report let go, the cache holds the refresh's catalog v2, \
                         which it got after waiting about 1 s for the lock (lookups were queued \
                         for the lock too). It finished, and slow_refreshes reads 0: a refresh \
                         whose catalog is in place has happened, and it was slow, so it must be \
                         counted"
                            .to_owned(),
                    );
                }
                Ok(())
            },
        )
        .await;
    }

    /// Two refreshes overlap while the report holds the lock (the refresher's, and an operator's
    /// "refresh now" that starts a little later). Each returns only once its catalog is in place,
    /// so neither returns while the report still holds the lock, and the cache ends with the
    /// catalog of the one that returned last. Both waited longer than `SLOW_LOCK`: two slow
    /// refreshes.
    ///
    /// Also with a report that lets go 120 ms (or 180 ms) in, while the later refresh, started
    /// 50 ms (or 90 ms) after the first, has waited less than `SLOW_LOCK`: its first place in the
    /// lock's queue is then ahead of the first refresh's second one, so the later refresh gets
    /// the lock first and the first refresh returns last. Only the first one was slow.
    async fn two_overlapping_slow_refreshes_each_finish_and_are_counted() {
        let ms = Duration::from_millis;
        let cases = [
            (ms(1_000), SLOW_LOCK * 3 / 2),
            (ms(1_000), SLOW_LOCK * 5),
            (ms(5_000), SLOW_LOCK * 3 / 2),
            (ms(5_000), SLOW_LOCK * 5),
            (ms(120), ms(50)),
            (ms(180), ms(90)),
        ];
        for (report_hold, second_after) in cases {
            // A refresh is slow when the report still held the lock `SLOW_LOCK` after it
            // started (no case is near the boundary).
            let slow = [Duration::ZERO, second_after]
                .iter()
                .filter(|&&start| report_hold > start + SLOW_LOCK)
                .count() as u64;
            let cache = CatalogCache::new(catalog(1));
            let report = hold_lock_for(&cache, report_hold).await;
            let released = Instant::now() + report_hold;
            // Which refresh returned, and when, in the order they returned.
            let returned: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::default();
            // Both in this task (`join!`), so the test asks nothing of `refresh` but to run.
            let refresh = |version: u64, after: Duration| {
                let (cache, returned) = (cache.clone(), returned.clone());
                async move {
                    tokio::time::sleep(after).await;
                    let within = report_hold + HANG;
                    let refreshed =
                        tokio::time::timeout(within, cache.refresh(catalog(version))).await;
                    if refreshed.is_ok() {
                        returned.lock().expect("returned").push((version, Instant::now()));
                    }
                }
            };
            tokio::join!(refresh(2, Duration::ZERO), refresh(3, second_after));
            report.await.expect("the report task failed");
            let during = format!(
                "while the report held the lock for {report_hold:?}, refresh(v2) started, \
                 and refresh(v3) started {second_after:?} later"
            );
            let returned = returned.lock().expect("returned").clone();
            let versions: Vec<u64> = returned.iter().map(|(v, _)| *v).collect();
            for version in [2, 3] {
                assert!(
                    versions.contains(&version),
                    "{during}: refresh(v{version}) had not finished {} s after the report let \
                     go",
                    HANG.as_secs()
                );
            }
            for &(version, at) in &returned {
                assert!(
                    at >= released,
                    "{during}: refresh(v{version}) returned {:?} before the report let go of \
                     the lock, so its catalog could not be in place. A refresh that has \
                     returned must have put its own catalog in place, not left it to another \
                     refresh",
                    released - at
                );
            }
            let last = versions[versions.len() - 1];
            let state = cache.lock().await;
            assert_eq!(
                state.catalog.version,
                last,
                "{during}. They returned in the order {versions:?}, yet afterwards the cache \
                 holds v{}: each refresh must have put its own catalog in place when it \
                 returns, so the cache ends with the catalog of the one that returned last",
                state.catalog.version
            );
            let which = if slow == 2 { "Both" } else { "Only refresh(v2)" };
            assert_eq!(
                state.slow_refreshes, slow,
                "{during}. {which} waited longer than SLOW_LOCK ({SLOW_LOCK:?}), yet \
                 slow_refreshes reads {}: each slow refresh is counted once, its own",
                state.slow_refreshes
            );
        }
    }

    /// Two refreshes overlap while the report holds the lock; the explorer cuts the one that
    /// starts later (its caller gives up) after every poll, while the first runs to the end. The first must return with its own catalog in place, and keep it there, also
    /// when a later refresh was started, and when its catalog is older than the one in place.
    /// Once per `select!` seed, on a runtime that can run the first refresh as a local task.
    fn the_first_of_two_refreshes_stays_when_the_later_one_is_dropped() {
        for seed in SEEDS {
            runtime::local(seed).block_on(cut_one_of_two_overlapping_refreshes(false));
        }
    }

    /// The same, with the first refresh cut while the later one runs to the end.
    fn the_later_of_two_refreshes_stays_when_the_first_one_is_dropped() {
        for seed in SEEDS {
            runtime::local(seed).block_on(cut_one_of_two_overlapping_refreshes(true));
        }
    }

    /// The report holds the lock for 150 ms to 1.5 s, and up to four other holders (lookups, a
    /// second report) ask for it while the refresh waits and hold it for up to half a second.
    /// However often the refresh is passed over, it is one refresh that waited longer than
    /// `SLOW_LOCK`: it finishes with its catalog in place and is counted exactly once.
    fn a_slow_refresh_is_counted_once_however_many_holders_go_first() {
        check_property(64, nights(), |night| async move {
            let cache = CatalogCache::new(catalog(1));
            let report = hold_lock_for(&cache, Duration::from_millis(night.report_ms)).await;
            let holders: Vec<_> = night
                .holders
                .iter()
                .map(|&(ask_ms, hold_ms)| {
                    hold_lock_later(
                        &cache,
                        Duration::from_millis(ask_ms),
                        Duration::from_millis(hold_ms),
                    )
                })
                .collect();
            let start = Instant::now();
            if tokio::time::timeout(HANG, cache.refresh(catalog(2))).await.is_err() {
                return Err(format!(
                    "refresh() had not finished {} s after it started, although every holder \
                     let go of the lock within a few seconds",
                    HANG.as_secs()
                ));
            }
            let took = start.elapsed();
            report.await.map_err(|e| format!("the report task failed: {e}"))?;
            for holder in holders {
                holder.await.map_err(|e| format!("a holder task failed: {e}"))?;
            }
            // Long after every holder let go of the lock.
            tokio::time::sleep(Duration::from_secs(5)).await;
            let state = cache.lock().await;
            if state.catalog != catalog(2) {
                return Err(format!(
                    "refresh(v2) finished, but the cache holds catalog v{}",
                    state.catalog.version
                ));
            }
            if state.slow_refreshes != 1 {
                return Err(format!(
                    "one refresh, which returned {took:?} after it started (the report alone \
                     held the lock for {} ms, SLOW_LOCK is {SLOW_LOCK:?}), left slow_refreshes \
                     at {}: a slow refresh is counted exactly once, however many holders got \
                     the lock before it",
                    night.report_ms, state.slow_refreshes
                ));
            }
            Ok(())
        });
    }

    /// A deploy shuts the runtime down right after a slow refresh returned (the report held the
    /// lock for a second; on another night lookups were queued for it too). The refresh has
    /// happened, so its catalog is in place, and it waited longer than `SLOW_LOCK`, so its count
    /// must already be in `slow_refreshes` when it returns: work left to run after `refresh`
    /// returned dies with the runtime. Once per `select!` seed.
    fn a_slow_refresh_is_counted_by_the_time_it_returns() {
        for seed in SEEDS {
            for with_lookups in [false, true] {
                let cache = CatalogCache::new(catalog(1));
                let runtime = runtime::current_thread(seed);
                runtime.block_on(async {
                    let _report = hold_lock_for(&cache, Duration::from_secs(1)).await;
                    let _lookups = with_lookups.then(|| {
                        let before_the_timer = look_up_after(&cache, SLOW_LOCK / 2);
                        [before_the_timer, look_up_after(&cache, SLOW_LOCK * 3 / 2)]
                    });
                    let refreshed = tokio::time::timeout(HANG, cache.refresh(catalog(2))).await;
                    assert!(
                        refreshed.is_ok(),
                        "futurelock: refresh() had not finished {} s after the report let go",
                        HANG.as_secs()
                    );
                });
                // The refresh has returned: the deploy shuts the runtime down right now.
                drop(runtime);
                let (version, slow) = runtime::current_thread(seed).block_on(async {
                    let state = cache.lock().await;
                    (state.catalog.version, state.slow_refreshes)
                });
                let lookups = if with_lookups { ", with two lookups queued for it," } else { "" };
                assert!(
                    version == 2 && slow == 1,
                    "the report held the lock for 1 s{lookups} and refresh(v2) returned; the \
                     runtime was shut down right after it (a deploy). Then the cache held \
                     catalog v{version} with slow_refreshes at {slow}, expected v2 and 1: a \
                     refresh that has returned has put its catalog in place, and a slow one has \
                     been counted, by the time it returns (work left to run after it, in a task \
                     of its own, dies with the runtime)"
                );
            }
        }
    }

    /// A deploy shuts the runtime down while a refresh waits for the report (before and after
    /// its `SLOW_LOCK`), and the refresher's state, which holds the parked refresh, is dropped
    /// only afterwards, outside any runtime. Dropping the refresh there must work like any other
    /// drop: no panic, the old catalog in place, and the refresh counted at most once.
    fn a_refresh_dropped_after_its_runtime_is_gone_leaves_the_old_catalog() {
        for seed in SEEDS {
            for parked_at in [SLOW_LOCK / 2, SLOW_LOCK * 3 / 2, SLOW_LOCK * 5 / 2] {
                let cache = CatalogCache::new(catalog(1));
                let runtime = runtime::current_thread(seed);
                let (refresh, report) = runtime.block_on(async {
                    let report = cache.lock().await;
                    let mut refresh = Box::pin(cache.refresh(catalog(2)));
                    let mut cx = Context::from_waker(Waker::noop());
                    for jump in [Duration::ZERO, parked_at] {
                        tokio::time::advance(jump).await;
                        for _ in 0..8 {
                            assert!(
                                refresh.as_mut().poll(&mut cx).is_pending(),
                                "refresh(v2) returned while the report held the lock"
                            );
                            tokio::task::yield_now().await;
                        }
                    }
                    (refresh, report)
                });
                drop(runtime);
                let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    drop(refresh);
                }));
                drop(report);
                let (version, slow) = runtime::current_thread(seed).block_on(async {
                    let state = cache.lock().await;
                    (state.catalog.version, state.slow_refreshes)
                });
                assert!(
                    dropped.is_ok() && version == 1 && slow <= 1,
                    "the report held the lock and refresh(v2) had waited {parked_at:?} for it \
                     when the runtime shut down (a deploy); the refresh was dropped afterwards, \
                     outside any runtime. {}; then the cache held v{version} with \
                     slow_refreshes at {slow}, expected v1 (a dropped refresh has no effect) and \
                     at most 1: a refresh must be safe to drop wherever its owner is dropped, \
                     also once its runtime is gone",
                    if dropped.is_ok() { "The drop went through" } else { "The drop panicked" }
                );
            }
        }
    }

    /// Two caches in one process (two shops, each with its own catalog): the report holds the
    /// first cache's lock for a second while a refresh of it waits. Refreshes of the second
    /// cache, whose lock is free, made before, while and after the first refresh's `SLOW_LOCK`
    /// timer fires, must each return at once with their catalog in place and not counted as
    /// slow; the waiting refresh is counted on its own cache only. Each cache is its own.
    async fn refreshes_of_two_caches_do_not_wait_for_each_other() {
        let busy = CatalogCache::new(catalog(1));
        let free = CatalogCache::new(catalog(10));
        let report = hold_lock_for(&busy, Duration::from_secs(1)).await;
        // Both refreshes run in this task (`join!`), so a refresh that is not `Send` is tested too.
        let waiting = tokio::time::timeout(HANG, busy.refresh(catalog(2)));
        let refresh_the_free_cache = async {
            let start = Instant::now();
            let moments = [Duration::ZERO, SLOW_LOCK / 2, SLOW_LOCK * 3 / 2];
            for (version, after) in (11..).zip(moments) {
                tokio::time::sleep_until(start + after).await;
                let asked = Instant::now();
                let refreshed = tokio::time::timeout(HANG, free.refresh(catalog(version))).await;
                let took = asked.elapsed();
                assert!(
                    refreshed.is_ok() && took < SLOW_LOCK,
                    "cache B's lock was free, yet refresh(v{version}) of cache B, started \
                     {after:?} into a refresh of cache A that waits a second for A's report, \
                     {}: a refresh must not wait for another cache's lock or refresh (each \
                     cache is its own)",
                    if refreshed.is_ok() {
                        format!("took {took:?} to return (expected at once, within SLOW_LOCK)")
                    } else {
                        format!("had not returned {} s later", HANG.as_secs())
                    }
                );
                let (seen, slow) = {
                    let state = free.lock().await;
                    (state.catalog.version, state.slow_refreshes)
                };
                assert!(
                    seen == version && slow == 0,
                    "refresh(v{version}) of cache B, whose lock was free, returned {after:?} \
                     into a slow refresh of cache A; then cache B held v{seen} with \
                     slow_refreshes at {slow}, expected v{version} and 0: another cache's wait \
                     is not this cache's"
                );
            }
        };
        let (waited, ()) = tokio::join!(waiting, refresh_the_free_cache);
        assert!(
            waited.is_ok(),
            "the refresh of cache A had not finished {} s after its report let go",
            HANG.as_secs()
        );
        report.await.expect("the report task failed");
        let (busy_state, free_slow) = {
            let state = busy.lock().await;
            ((state.catalog.version, state.slow_refreshes), free.lock().await.slow_refreshes)
        };
        assert!(
            busy_state == (2, 1) && free_slow == 0,
            "cache A's refresh waited a second for A's report, cache B's refreshes waited for \
             nothing; then cache A held (version, slow_refreshes) = {busy_state:?}, expected \
             (2, 1), and cache B's slow_refreshes read {free_slow}, expected 0"
        );
    }

    /// A report stuck just past the moments where a wait kept as a whole number of some unit in
    /// some integer would come round (71.6 minutes, 49.7 days, 584.5 years, 584.9 million years,
    /// ...), each reached in one jump of the paused clock. However long the refresh waited, it
    /// waited longer than `SLOW_LOCK`: once the report lets go it finishes, with its catalog in
    /// place, counted once. On a runtime of its own per wait, so that each wait starts near the
    /// clock's origin (tokio's timers stop at 2^64 ms past it, the farthest wait here).
    fn a_slow_refresh_is_counted_however_long_it_waited() {
        for (wait, spoken_wait) in waits_past_round_numbers() {
            for seed in SEEDS {
                let seen = runtime::current_thread(seed).block_on(async {
                    let cache = CatalogCache::new(catalog(1));
                    // The test body is the report: it holds the lock until it lets go below.
                    let report = cache.lock().await;
                    let mut refresh = tokio_test::task::spawn(cache.refresh(catalog(2)));
                    for jump in [Duration::ZERO, wait] {
                        if !jump.is_zero() {
                            tokio::time::advance(jump).await;
                        }
                        for _ in 0..8 {
                            assert!(
                                refresh.poll().is_pending(),
                                "refresh(v2) returned while the report held the lock ({} into \
                                 its wait)",
                                spoken(jump)
                            );
                            tokio::task::yield_now().await;
                        }
                    }
                    drop(report);
                    // Polled as the report lets go, and while the tasks it may have spawned run;
                    // then once more `SLOW_LOCK` later.
                    let mut finished = false;
                    for jump in [Duration::ZERO, SLOW_LOCK] {
                        if !jump.is_zero() {
                            tokio::time::advance(jump).await;
                        }
                        for _ in 0..8 {
                            if refresh.poll().is_ready() {
                                finished = true;
                                break;
                            }
                            tokio::task::yield_now().await;
                        }
                        if finished {
                            break;
                        }
                    }
                    assert!(
                        finished,
                        "the report held the lock for {spoken_wait}, then let go, and refresh(v2) \
                         had not finished SLOW_LOCK ({SLOW_LOCK:?}) later"
                    );
                    let state = cache.lock().await;
                    (state.catalog.version, state.slow_refreshes)
                });
                assert!(
                    seen == (2, 1),
                    "the report held the lock for {spoken_wait} ({wait:?}), then let go, and \
                     refresh(v2) returned: expected catalog v2 in place and slow_refreshes at 1 \
                     (catalog version, slow_refreshes), seen {seen:?}. The refresh waited longer \
                     than SLOW_LOCK ({SLOW_LOCK:?}), so it is slow, however long it waited"
                );
            }
        }
    }

    /// The report lets go at any moment, to the nanosecond, before, just after and long after
    /// the refresh has waited `SLOW_LOCK` (a table, then many moments generated from a fixed
    /// seed). Whenever it lets go, the refresh is queued for the lock and gets it first: a lookup
    /// that asks for the lock right then, with no time gone by, finds the new catalog; and the
    /// refresh is counted slow when the report let go a millisecond or more past `SLOW_LOCK`, and
    /// not when it let go before (in between, tokio's timer rounding, it may go either way).
    fn a_refresh_is_queued_for_the_lock_whenever_the_report_lets_go() {
        let ms = Duration::from_millis;
        let ns = Duration::from_nanos;
        let table = [
            ns(1),
            ms(5),
            SLOW_LOCK - ns(1),
            SLOW_LOCK + ns(1),
            SLOW_LOCK + Duration::from_micros(1),
            SLOW_LOCK + ms(1) - ns(1),
            SLOW_LOCK + ms(1),
            SLOW_LOCK + ms(1) + ns(1),
            SLOW_LOCK + ms(5),
            SLOW_LOCK + ms(10),
            SLOW_LOCK * 3 / 2,
            SLOW_LOCK * 2 + ns(1),
            SLOW_LOCK * 2 + ms(1) + ns(1),
            SLOW_LOCK * 2 + ms(10) + ns(1),
            SLOW_LOCK * 2 + ms(20) + ns(1),
            ms(1_000) + ns(1),
        ];
        for release in table {
            for seed in SEEDS {
                for lookup_task in [false, true] {
                    let seen = runtime::current_thread(seed)
                        .block_on(a_lookup_right_after_the_report_lets_go(release, lookup_task));
                    if let Err(why) = seen {
                        panic!("{why}");
                    }
                }
            }
        }
        let slow_ns = u64::try_from(SLOW_LOCK.as_nanos()).expect("SLOW_LOCK in ns");
        let releases = prop_oneof![1..=slow_ns * 3, 1..=1_500_000_000u64]
            .prop_filter("a wait of exactly SLOW_LOCK is left open", move |&n| n != slow_ns)
            .prop_map(Duration::from_nanos);
        // Half the nights (by the parity of the release's nanosecond) the lookup is a task
        // spawned right then.
        check_property(64, releases, |release| {
            a_lookup_right_after_the_report_lets_go(release, release.subsec_nanos() % 2 == 1)
        });
    }

    /// A refresh polled once while the report holds the lock, then not again for a while (its
    /// task busy elsewhere, as a `select!` loop that raced it by reference runs another branch),
    /// while lookups ask for the lock right after that first poll, in the same instant, and at
    /// other moments of the wait, and the report lets go at any moment (scripted nights, then many
    /// generated from a fixed seed). From its first poll the refresh is queued for the lock: when
    /// the report lets go before `SLOW_LOCK`, a lookup that asked after that poll gets the lock
    /// after the refresh and sees the new catalog. And its wait runs from that first poll: it is
    /// counted slow when the report let go a millisecond or more past `SLOW_LOCK` after it, and
    /// not when it let go before.
    fn a_refresh_is_queued_and_waiting_from_its_first_poll_however_late_its_next_poll() {
        let ms = Duration::from_millis;
        let zero = Duration::ZERO;
        // (second poll, lookups, release), each from the first poll.
        let scripted: [(Duration, &[Duration], Duration); 7] = [
            (zero, &[zero], ms(50)),
            (zero, &[zero], SLOW_LOCK - Duration::from_nanos(1)),
            (ms(30), &[zero, ms(10)], ms(20)),
            (ms(60), &[], SLOW_LOCK + TICK),
            (ms(60), &[zero], ms(150)),
            (SLOW_LOCK - Duration::from_nanos(1), &[zero, ms(99)], SLOW_LOCK + TICK),
            (ms(1), &[ms(1)], ms(200)),
        ];
        for (i, (second_poll, lookups, release)) in scripted.into_iter().enumerate() {
            for off_tick in [zero, Duration::from_micros(500)] {
                let night =
                    FirstPollNight { off_tick, second_poll, lookups: lookups.to_vec(), release };
                let seed = SEEDS[i % SEEDS.len()];
                if let Err(why) = runtime::current_thread(seed).block_on(first_poll_night(night)) {
                    panic!("{why}");
                }
            }
        }
        check_property(64, first_poll_nights(), first_poll_night);
    }

    /// Several refreshes of one cache at once during the report (the refresher's, an operator's
    /// "refresh now", a retry that re-sends a catalog already on its way), some dropped by their
    /// callers before the report lets go, with catalogs of a few thousand products: none may
    /// return while the report holds the lock, each that is not dropped returns with its own
    /// catalog in place, and the cache ends with the catalog of the one that returned last.
    async fn several_refreshes_of_one_cache_each_return_with_their_own_catalog_in_place() {
        let r = |start_ms, version, cut_ms| Overlapping { start_ms, version, cut_ms };
        let second = Duration::from_secs(1);
        let nights: [(Vec<Overlapping>, Duration); 6] = [
            (vec![r(0, 2, None), r(0, 3, None), r(0, 4, None)], second),
            (vec![r(0, 2, None), r(10, 2, None)], second),
            (vec![r(0, 2, Some(500)), r(10, 2, None)], second),
            (vec![r(0, 2, None), r(150, 2, Some(500))], second),
            (
                vec![
                    r(0, 2, Some(600)),
                    r(0, 3, Some(600)),
                    r(20, 4, None),
                    r(150, 3, None),
                    r(150, 5, None),
                ],
                second,
            ),
            (vec![r(0, 3, None), r(0, 2, None), r(90, 4, None), r(90, 3, None)], second * 50),
        ];
        for (refreshes, report) in nights {
            if let Err(why) = overlapping_refreshes(&refreshes, report, 3000).await {
                panic!("{why}");
            }
        }
    }

    /// A pile-up of refreshes of one cache on a bad night (a refresher that starts one per tick
    /// of its own clock, operators' "refresh now", retries that re-send a catalog on its way):
    /// from a few to a few hundred wait at once, some dropped by their callers. However many
    /// wait, none may return while the report holds the lock, each that is not dropped returns
    /// with its own catalog in place, and the cache ends with the catalog of the one that returned
    /// last.
    async fn a_pile_up_of_refreshes_of_one_cache_each_return_with_their_own_catalog_in_place() {
        for count in [9, 17, 65, 257] {
            pile_up(count).await;
        }
    }

    /// The same with a thousand and with over four thousand refreshes waiting at once, past any
    /// "only when the pile-up is large" a fix might set (1,000, 1,024, 4,096).
    fn a_pile_up_of_thousands_of_refreshes_each_return_with_their_own_catalog_in_place() {
        // One `select!` seed: the pile-up races nothing itself, and it is the kata's largest (the
        // smaller pile-ups run once per seed).
        runtime::current_thread(SEEDS[0]).block_on(async {
            for count in [1025, 4100] {
                pile_up(count).await;
            }
        });
    }

    /// A catalog of a few thousand products, while the report holds the lock for a second and
    /// lookups queue for it before, during and after the refresh's wait: every lookup sees one
    /// whole catalog, never part of one, and a lookup made as soon as the refresh has returned
    /// sees the new catalog whole.
    async fn a_large_catalog_goes_in_whole() {
        for products in [3000, 20_000] {
            let cache = CatalogCache::new(large_catalog(1, products));
            let report = cache.lock().await;
            let start = Instant::now();
            let local = tokio::task::LocalSet::new();
            let faults = local
                .run_until(async {
                    let refresh = {
                        let cache = cache.clone();
                        tokio::task::spawn_local(async move {
                            cache.refresh(large_catalog(2, products)).await;
                            let seen = cache.lock().await;
                            match not_whole(&seen.catalog, products) {
                                Some(why) => Some(why),
                                None if seen.catalog.version != 2 => {
                                    Some(format!("catalog v{}", seen.catalog.version))
                                }
                                None => None,
                            }
                            .map(|why| {
                                format!("a lookup made as soon as refresh(v2) returned saw {why}")
                            })
                        })
                    };
                    let lookup = |after: Duration| {
                        let cache = cache.clone();
                        tokio::task::spawn_local(async move {
                            tokio::time::sleep_until(start + after).await;
                            let seen = cache.lock().await;
                            not_whole(&seen.catalog, products).map(|why| {
                                format!("a lookup that asked {after:?} into the wait saw {why}")
                            })
                        })
                    };
                    let lookups = [Duration::from_millis(10), SLOW_LOCK * 3 / 2]
                        .map(lookup);
                    tokio::time::sleep_until(start + Duration::from_secs(1)).await;
                    drop(report);
                    let at_release = lookup(Duration::from_secs(1));
                    let mut faults = Vec::new();
                    for task in [refresh].into_iter().chain(lookups).chain([at_release]) {
                        match tokio::time::timeout(HANG, task).await {
                            Ok(Ok(fault)) => faults.extend(fault),
                            Ok(Err(e)) => faults.push(format!("a task failed: {e}")),
                            Err(_) => faults.push("a refresh or lookup never finished".into()),
                        }
                    }
                    faults
                })
                .await;
            assert!(
                faults.is_empty(),
                "while the report held the lock for a second, refresh(v2) of {products} products \
                 over v1 waited, with lookups queued: {}; a lookup must see one whole catalog \
                 (swap it in one step, under one guard)",
                faults.join("; ")
            );
        }
    }

    /// The cuts of [`a_refresh_dropped_while_waiting_leaves_the_old_catalog`] with a catalog of
    /// a few thousand products and two lookups queued: a refresh dropped before it returned has
    /// left the old catalog in place, whole.
    async fn a_large_refresh_dropped_before_it_returns_leaves_the_old_catalog_whole() {
        const PRODUCTS: usize = 3000;
        assert_cancel_safe_with(
            Options::default(),
            || CatalogCache::new(large_catalog(1, PRODUCTS)),
            |cache: CatalogCache| async move {
                let report = hold_lock_for(&cache, SLOW_LOCK * 5 / 2).await;
                let lookups =
                    [look_up_after(&cache, SLOW_LOCK / 2), look_up_after(&cache, SLOW_LOCK * 3 / 2)];
                cache.refresh(large_catalog(2, PRODUCTS)).await;
                (report, lookups)
            },
            |cache, outcome: Outcome<_>| async move {
                let cancelled = outcome.is_cancelled();
                tokio::time::sleep(Duration::from_secs(5)).await;
                let state = cache.lock().await;
                let expected = if cancelled { 1 } else { 2 };
                match not_whole(&state.catalog, PRODUCTS) {
                    None if state.catalog.version == expected => Ok(()),
                    fault => Err(format!(
                        "while the report held the lock for {:?}, with lookups queued, \
                         refresh(v2) of {PRODUCTS} products over v1 {}; 5 s after the report \
                         let go the cache holds {}, expected v{expected} whole",
                        SLOW_LOCK * 5 / 2,
                        if cancelled { "was dropped before it returned" } else { "returned" },
                        fault.unwrap_or_else(|| format!("v{}", state.catalog.version))
                    )),
                }
            },
        )
        .await;
    }

    /// A busy night in a process with many caches (a shop per region): the reports hold the
    /// locks of two thousand caches for 200 ms, and a refresh of each waits. A refresh of one
    /// more cache, whose lock is free, made before, while and after the waiting refreshes'
    /// `SLOW_LOCK` timers fire, must return at once, with its catalog in place and not counted
    /// as slow; once the reports let go, each waiting refresh finishes, counted on its own cache.
    async fn refreshes_of_many_caches_do_not_wait_for_each_other() {
        const BUSY: usize = 2100;
        // Past SLOW_LOCK, so that each waiting refresh is slow, and short, so that a fix that
        // wakes every millisecond does not make the test slow.
        const BUSY_REPORT: Duration = Duration::from_millis(200);
        let busy: Vec<CatalogCache> = (0..BUSY).map(|_| CatalogCache::new(catalog(1))).collect();
        let mut reports = Vec::new();
        for cache in &busy {
            reports.push(hold_lock_for(cache, BUSY_REPORT).await);
        }
        let free = CatalogCache::new(catalog(10));
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let waiting: Vec<_> = busy
                    .iter()
                    .map(|cache| {
                        let cache = cache.clone();
                        tokio::task::spawn_local(async move {
                            tokio::time::timeout(HANG, cache.refresh(catalog(2))).await.is_ok()
                        })
                    })
                    .collect();
                let start = Instant::now();
                let moments = [Duration::ZERO, SLOW_LOCK / 2, SLOW_LOCK * 3 / 2];
                for (version, after) in (11..).zip(moments) {
                    tokio::time::sleep_until(start + after).await;
                    for _ in 0..8 {
                        tokio::task::yield_now().await;
                    }
                    let asked = Instant::now();
                    let refreshed =
                        tokio::time::timeout(HANG, free.refresh(catalog(version))).await;
                    let took = asked.elapsed();
                    assert!(
                        refreshed.is_ok() && took < SLOW_LOCK,
                        "while the reports of {BUSY} other caches held their locks for {BUSY_REPORT:?} \
                         and a refresh of each waited, refresh(v{version}) of a cache whose lock \
                         was free, started {after:?} into their wait, {}: a refresh must not wait \
                         for another cache's lock or refresh, however many of them wait (each \
                         cache is its own)",
                        if refreshed.is_ok() {
                            format!("took {took:?} to return (expected at once, within SLOW_LOCK)")
                        } else {
                            format!("had not returned {} s later", HANG.as_secs())
                        }
                    );
                    let (seen, slow) = {
                        let state = free.lock().await;
                        (state.catalog.version, state.slow_refreshes)
                    };
                    assert!(
                        seen == version && slow == 0,
                        "refresh(v{version}) of a cache whose lock was free returned {after:?} \
                         into the slow refreshes of {BUSY} other caches; then it held v{seen} \
                         with slow_refreshes at {slow}, expected v{version} and 0"
                    );
                }
                for (i, refresh) in waiting.into_iter().enumerate() {
                    let finished = refresh.await.expect("a refresh task failed");
                    assert!(
                        finished,
                        "the refresh of busy cache {i} of {BUSY} had not finished {} s after its \
                         report let go",
                        HANG.as_secs()
                    );
                }
            })
            .await;
        for report in reports {
            report.await.expect("a report task failed");
        }
        for (i, cache) in busy.iter().enumerate() {
            let state = cache.lock().await;
            assert!(
                (state.catalog.version, state.slow_refreshes) == (2, 1),
                "busy cache {i} of {BUSY}: its refresh waited {BUSY_REPORT:?} for its own report, then \
                 it held (version, slow_refreshes) = {:?}, expected (2, 1)",
                (state.catalog.version, state.slow_refreshes)
            );
        }
    }
}
