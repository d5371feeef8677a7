//! Hidden tests for kata 12: callers get tokens in the order they started waiting, however many
//! status ticks interrupt their wait, and the status lines keep coming.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use kata_support::{Options, Outcome, assert_cancel_safe_with, check_property, hidden_test};
use proptest::prelude::*;
use rate_limiter_queue::{LimiterClosed, RateLimiter, STATUS_EVERY};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_test::{assert_pending, task};

/// Starts a caller that waits for its turn and then notes its name (and when it got the token).
fn caller(
    limiter: &Arc<RateLimiter>,
    name: &'static str,
    served: &Arc<Mutex<Vec<&'static str>>>,
) -> JoinHandle<Result<(), LimiterClosed>> {
    let limiter = limiter.clone();
    let served = served.clone();
    tokio::spawn(async move {
        limiter.wait_turn(name).await?;
        served.lock().unwrap().push(name);
        Ok(())
    })
}

/// When the refill task of the cut test adds its one token.
const REFILL_AT: Duration = Duration::from_millis(2500);

/// A caller's wait that notes how many status lines name the caller at the instant it is
/// dropped, before anything the wait's own drop does: a line written while the wait is being
/// dropped comes after the caller stopped waiting.
struct NotedAtDrop<F> {
    wait: Pin<Box<F>>,
    limiter: Arc<RateLimiter>,
    lines_at_drop: Arc<Mutex<Option<usize>>>,
}

impl<F: Future> Future for NotedAtDrop<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.wait.as_mut().poll(cx)
    }
}

impl<F> Drop for NotedAtDrop<F> {
    fn drop(&mut self) {
        // Runs before the fields, so before the wait itself is dropped.
        *self.lines_at_drop.lock().unwrap() = Some(lines_of(&self.limiter, "invoice-sync"));
    }
}

/// How many status lines name `client`.
fn lines_of(limiter: &RateLimiter, client: &str) -> usize {
    limiter.status_lines().iter().filter(|line| line.contains(client)).count()
}

/// Callers that start waiting at different times and tokens that come at other times: each is an
/// offset in units of 100 ms, tokens half a unit later, so no token comes at the very instant a
/// caller starts or writes a status line. One token per caller; tokens may come before anyone
/// waits, and up to 12 s in, long after the first status lines.
fn arrivals() -> impl Strategy<Value = (Vec<u64>, Vec<u64>)> {
    (2..=4usize).prop_flat_map(|callers| {
        (
            proptest::collection::btree_set(0..40u64, callers)
                .prop_map(|starts| starts.into_iter().collect::<Vec<_>>()),
            proptest::collection::vec(0..120u64, callers),
        )
    })
}

/// Runs the callers and the refills of one scenario; the callers must be served in the order they
/// started waiting, each writing one status line per `STATUS_EVERY` it waited.
async fn serve_in_order((starts, refills): (Vec<u64>, Vec<u64>)) -> Result<(), String> {
    let unit = Duration::from_millis(100);
    let limiter = Arc::new(RateLimiter::new());
    let served = Arc::new(Mutex::new(Vec::new()));
    // Tokens added so far, and the most callers ever served with fewer tokens than that.
    let added = Arc::new(Mutex::new(0usize));
    let overserved = Arc::new(Mutex::new(None));
    // The first caller seen, as a token came, with fewer status lines than the periods it had
    // waited so far: the lines must come while a caller waits, not when it is served.
    let behind = Arc::new(Mutex::new(None));
    let begin = Instant::now();
    let names: Vec<String> = (0..starts.len()).map(|i| format!("invoice-{i}")).collect();
    for &at in &refills {
        let (limiter, added, served) = (limiter.clone(), added.clone(), served.clone());
        let (behind, names, starts) = (behind.clone(), names.clone(), starts.clone());
        tokio::spawn(async move {
            sleep_until(begin + unit * at as u32 + unit / 2).await;
            // Every caller that started and has not been served yet is still waiting.
            for (name, &start) in names.iter().zip(&starts) {
                let started = begin + unit * start as u32;
                let is_served = served.lock().unwrap().iter().any(|(n, _): &(String, _)| n == name);
                if started > Instant::now() || is_served {
                    continue;
                }
                let waited = started.elapsed();
                let expected = (waited.as_millis() / STATUS_EVERY.as_millis()) as usize;
                let written = lines_of(&limiter, name);
                if written != expected {
                    behind.lock().unwrap().get_or_insert(format!(
                        "{name} had been waiting for {waited:?} (no token for it yet) and had \
                         written {written} status line(s), expected {expected}: a waiting caller \
                         writes its line every {STATUS_EVERY:?} while it waits, not only once it \
                         is served or polled for another reason: {:?}",
                        limiter.status_lines()
                    ));
                }
            }
            *added.lock().unwrap() += 1;
            limiter.refill(1);
        });
    }
    let mut callers = Vec::new();
    for (name, &at) in names.iter().zip(&starts) {
        let (limiter, served, name) = (limiter.clone(), served.clone(), name.clone());
        let (added, overserved) = (added.clone(), overserved.clone());
        callers.push(tokio::spawn(async move {
            sleep_until(begin + unit * at as u32).await;
            let result = limiter.wait_turn(&name).await;
            let mut served = served.lock().unwrap();
            served.push((name, begin.elapsed()));
            let added = *added.lock().unwrap();
            if result.is_ok() && served.len() > added {
                overserved.lock().unwrap().get_or_insert((served.clone(), added));
            }
            result
        }));
    }
    for caller in callers {
        match timeout(Duration::from_secs(60), caller).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(LimiterClosed))) => return Err("a caller was told the limiter closed".into()),
            Ok(Err(_)) => return Err("a caller panicked".into()),
            Err(_) => {
                let served = served.lock().unwrap().clone();
                return Err(format!(
                    "there was one token per caller, but a minute later only {served:?} had been \
                     served"
                ));
            }
        }
    }
    if let Some(behind) = behind.lock().unwrap().clone() {
        return Err(behind);
    }
    if let Some((served, added)) = overserved.lock().unwrap().clone() {
        return Err(format!(
            "{} callers had been served (name, time served: {served:?}) when only {added} \
             token(s) had been added: each caller served must take one token for its API call, \
             and not give it back for the next caller",
            served.len()
        ));
    }
    let served = served.lock().unwrap().clone();
    let order: Vec<&str> = served.iter().map(|(name, _)| name.as_str()).collect();
    // When each caller was served, in the order they started waiting. Two callers served at the
    // same instant (two tokens at once) may note it in either order.
    let when = |name: &str| served.iter().find(|(served, _)| served == name).map(|(_, at)| *at);
    for (earlier, later) in names.iter().zip(names.iter().skip(1)) {
        let (Some(first), Some(second)) = (when(earlier), when(later)) else {
            return Err(format!("a caller was not served: {served:?}"));
        };
        if second < first {
            return Err(format!(
                "{earlier} started waiting before {later}, but {later} was served at {second:?} \
                 and {earlier} only at {first:?} (callers started in the order {names:?}; order \
                 served {order:?}; name, time served: {served:?}): a token went to a caller who \
                 had waited less, so {earlier} lost its place in the queue while it waited"
            ));
        }
    }
    let served: Vec<(String, Duration)> =
        names.iter().map(|name| (name.clone(), when(name).expect("checked above"))).collect();
    for ((name, at), &start) in served.iter().zip(&starts) {
        let waited = *at - unit * start as u32;
        let expected = (waited.as_millis() / STATUS_EVERY.as_millis()) as usize;
        let written = lines_of(&limiter, name);
        if written != expected {
            return Err(format!(
                "{name} waited {waited:?} and wrote {written} status lines, expected {expected} \
                 (one every {STATUS_EVERY:?} while it waits): {:?}",
                limiter.status_lines()
            ));
        }
    }
    Ok(())
}

hidden_test! {
    /// Callers that start at any times and tokens that come at any times: callers are served in
    /// the order they started waiting, however long they wait, with a status line per period.
    fn callers_are_served_in_order_whenever_tokens_come() {
        check_property(64, arrivals(), serve_in_order);
    }

    /// A waiting caller dropped at any point (while queued, or just after a token was handed to
    /// it): the token goes to the next caller, the dropped caller's status lines stop, and it
    /// leaves no task behind.
    async fn a_dropped_wait_passes_the_token_on_and_goes_quiet() {
        type Noted = (Arc<RateLimiter>, Arc<Mutex<Option<usize>>>);
        assert_cancel_safe_with(
            Options::default().forbid_leftover_tasks().cut_every(Duration::from_millis(100)),
            || {
                let limiter = Arc::new(RateLimiter::new());
                let refill = limiter.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(REFILL_AT).await;
                    refill.refill(1);
                });
                (limiter, Arc::new(Mutex::new(None)))
            },
            |(limiter, lines_at_drop): Noted| {
                let waiting = limiter.clone();
                let wait = async move { waiting.wait_turn("invoice-sync").await };
                NotedAtDrop { wait: Box::pin(wait), limiter, lines_at_drop }
            },
            |(limiter, lines_at_drop): Noted, outcome| async move {
                match outcome {
                    Outcome::Completed(Ok(())) => return Ok(()),
                    Outcome::Completed(Err(LimiterClosed)) => {
                        return Err("the wait failed, but the limiter was never closed".into());
                    }
                    Outcome::Cancelled { .. } => {}
                }
                // The lines written when the wait was dropped, before its own drop ran.
                let lines_at_cut = lines_at_drop.lock().unwrap().expect("the wait was dropped");
                let next = limiter.clone();
                let checkout = tokio::spawn(async move { next.wait_turn("checkout").await });
                match timeout(REFILL_AT + STATUS_EVERY * 10, checkout).await {
                    Ok(Ok(Ok(()))) => {}
                    Ok(Ok(Err(LimiterClosed))) => {
                        return Err("the next caller was told the limiter closed".into());
                    }
                    Ok(Err(_)) => return Err("the next caller panicked".into()),
                    Err(_) => {
                        return Err(format!(
                            "the next caller, who started waiting after the dropped one, had \
                             waited {:?} with nothing, though one token came at {REFILL_AT:?}: the \
                             token was not handed on to the caller still waiting. A dropped wait \
                             must neither take the token nor hold up the callers behind it",
                            REFILL_AT + STATUS_EVERY * 10
                        ));
                    }
                }
                let lines_now = lines_of(&limiter, "invoice-sync");
                if lines_now != lines_at_cut {
                    return Err(format!(
                        "the caller stopped waiting with {lines_at_cut} status lines written, but \
                         {} more came after that, while its wait was being dropped or after it \
                         was gone (a caller that stops waiting writes no more lines, not even a \
                         last one as it leaves): {:?}",
                        lines_now - lines_at_cut,
                        limiter.status_lines()
                    ));
                }
                Ok(())
            },
        )
        .await;
    }

    /// A token is there: the caller gets it at once, with no status line.
    async fn takes_an_available_token_at_once() {
        let limiter = RateLimiter::new();
        limiter.refill(1);
        let start = Instant::now();
        assert_eq!(limiter.wait_turn("invoice-sync").await, Ok(()));
        assert_eq!(start.elapsed(), Duration::ZERO, "a token was available: no waiting");
        assert!(limiter.status_lines().is_empty(), "nobody waited, so no status line");
    }

    /// A caller that waits writes a status line every `STATUS_EVERY`.
    async fn writes_a_status_line_while_waiting() {
        let limiter = Arc::new(RateLimiter::new());
        let served = Arc::default();
        let start = Instant::now();
        let a = caller(&limiter, "invoice-sync", &served);
        // Look at the lines halfway through each period while the caller still waits, with nobody polling
        // its wait but the runtime.
        for half_periods in [1u32, 3, 5] {
            sleep_until(start + STATUS_EVERY * half_periods / 2).await;
            let waited = start.elapsed();
            let expected = (half_periods / 2) as usize;
            let lines = limiter.status_lines();
            assert_eq!(
                lines.len(),
                expected,
                "the caller had been waiting for {waited:?}, with no token yet, and had written \
                 {} status line(s), expected {expected} (one every {STATUS_EVERY:?} while it \
                 waits, each written when its period is up, not when the caller is served): \
                 {lines:?}",
                lines.len()
            );
        }
        limiter.refill(1);
        assert_eq!(a.await.expect("the caller panicked"), Ok(()));
        let lines = limiter.status_lines();
        assert_eq!(
            lines.len(),
            2,
            "a caller that waited 2.5 status periods should have written 2 status lines, one \
             every {STATUS_EVERY:?}; it wrote {lines:?}"
        );
        assert!(
            lines.iter().all(|l| l.contains("invoice-sync")),
            "each status line must name the waiting caller: {lines:?}"
        );
    }

    /// A waiting caller that is polled late (its task did not run while the clock moved 2.5
    /// periods on in one step) still writes one status line per period it waited.
    async fn a_caller_polled_late_writes_a_line_per_period_waited() {
        let limiter = RateLimiter::new();
        let mut wait = task::spawn(limiter.wait_turn("invoice-sync"));
        assert_pending!(wait.poll());
        // Whatever the wait handed to tasks of its own gets to run; the clock stays put.
        kata_support::settle().await;
        tokio::time::advance(STATUS_EVERY * 2 + STATUS_EVERY / 2).await;
        kata_support::settle().await;
        assert_pending!(wait.poll());
        let lines = limiter.status_lines();
        assert_eq!(
            lines.len(),
            2,
            "the caller started waiting at 0 s, was not polled again until the clock had moved on \
             2.5 s in one step (as when its task ran late), and had then written {} status \
             line(s), expected 2 (one per {STATUS_EVERY:?} it waited, also for the periods that \
             passed while it was not polled): {lines:?}",
            lines.len()
        );
        limiter.refill(1);
        kata_support::settle().await;
        assert!(
            wait.poll().is_ready(),
            "a token came and the runtime then ran every task that was ready, but the waiting \
             caller, polled again, was still pending: it was not served with the token"
        );
        assert_eq!(limiter.status_lines().len(), 2, "a caller served writes no more lines");
    }

    /// The caller who has waited longest gets the next token, status ticks or not.
    async fn serves_callers_in_the_order_they_started_waiting() {
        let limiter = Arc::new(RateLimiter::new());
        let served = Arc::new(Mutex::new(Vec::new()));
        let start = Instant::now();
        let a = caller(&limiter, "A", &served);
        sleep_until(start + STATUS_EVERY / 2).await;
        let b = caller(&limiter, "B", &served);
        // By now A has had two status ticks (at 1 s and 2 s) and B one (at 1.5 s).
        sleep_until(start + STATUS_EVERY * 2 + STATUS_EVERY * 4 / 10).await;
        limiter.refill(1);
        kata_support::settle().await;
        let after_one = served.lock().unwrap().clone();
        assert_eq!(
            after_one.len(),
            1,
            "one token came at 2.4 s, so one caller should have been served, but {after_one:?} \
             were: a caller served must take its token for its API call, not give it back"
        );
        sleep_until(start + STATUS_EVERY * 3 + STATUS_EVERY / 5).await;
        limiter.refill(1);
        for handle in [a, b] {
            assert_eq!(handle.await.expect("a caller panicked"), Ok(()));
        }
        let order = served.lock().unwrap().clone();
        assert_eq!(
            order,
            ["A", "B"],
            "caller A started waiting at 0 s and caller B at 0.5 s, so the first token (at 2.4 s) \
             was A's, but the order served was {order:?}: A lost its place in the semaphore's \
             queue. A place in that queue belongs to a pending `acquire()` future. Drop it (as \
             `select!` drops its losing branch on every status tick) and the next `acquire()` \
             joins at the back; never wait in one (polling `try_acquire`) and there is no place \
             to keep."
        );
        let lines = limiter.status_lines();
        assert!(
            lines.iter().filter(|l| l.contains('A')).count() >= 2,
            "caller A waited 2.4 s, so it should have written at least 2 status lines: {lines:?}"
        );
    }

    /// A caller who stops waiting (its `wait_turn` is dropped) must not take a token.
    async fn a_caller_who_gives_up_takes_no_token() {
        let limiter = Arc::new(RateLimiter::new());
        let served = Arc::new(Mutex::new(Vec::new()));
        let mut gave_up = task::spawn(limiter.wait_turn("A"));
        assert_pending!(gave_up.poll());
        drop(gave_up);
        let b = caller(&limiter, "B", &served);
        kata_support::settle().await;
        limiter.refill(1);
        let waited = timeout(STATUS_EVERY * 60, b).await;
        assert!(
            matches!(waited, Ok(Ok(Ok(())))),
            "caller A stopped waiting (its `wait_turn` future was dropped) before the token came, \
             so the token should have gone to B, who was still waiting; B was still waiting a \
             minute later: the token was not handed on to B. A dropped wait must leave nothing \
             behind that takes the token or holds up the callers who came after it."
        );
    }

    /// Closing the limiter releases every waiter with an error.
    async fn closing_releases_waiters() {
        let limiter = Arc::new(RateLimiter::new());
        let served = Arc::new(Mutex::new(Vec::new()));
        let a = caller(&limiter, "A", &served);
        tokio::time::sleep(STATUS_EVERY * 3).await;
        limiter.close();
        assert_eq!(a.await.expect("the caller panicked"), Err(LimiterClosed));
    }
}
