//! Hidden tests for kata 12: callers get tokens in the order they started waiting, however many
//! status ticks interrupt their wait, and the status lines keep coming.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kata_support::hidden_test;
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

hidden_test! {
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
        sleep_until(start + STATUS_EVERY * 2 + STATUS_EVERY / 2).await;
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
             minute later. A dropped wait must leave nothing behind in the queue: something \
             detached from A's future took A's place and the token."
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
