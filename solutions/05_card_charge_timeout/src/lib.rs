//! # Kata 05 solution: an attempt that misses its deadline is stopped, not forgotten
//!
//! Dropping a `JoinHandle` detaches its task; it does not cancel it. So each attempt's handle is
//! wrapped in `tokio_util::task::AbortOnDropHandle`, which aborts the task when it is dropped, and
//! when the deadline passes the attempt is aborted and awaited before anything else happens. Only
//! an attempt that is known to have stopped without charging is retried, and `TimedOut` is only
//! reported when no attempt charged the card.

use std::future::Future;
use std::time::Duration;

use tokio_util::task::AbortOnDropHandle;

/// A tokenised card, as the gateway knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    pub token: String,
}

/// The gateway's reference for a successful charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChargeId(pub u64);

/// The card issuer refused the charge. Not worth retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Declined;

/// Why a checkout did not take the customer's money.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayError {
    /// The issuer declined the card.
    Declined,
    /// Every attempt missed its deadline. The customer is told that nothing was charged.
    TimedOut,
    /// The gateway client panicked.
    GatewayCrashed,
}

/// The payment gateway's client: the real HTTPS client in production, a fake in tests.
pub trait Gateway: Send + Sync + 'static {
    /// Charges `amount_cents` to `card`. The card is charged when the gateway processes the
    /// request, which is why a request that is still running can still charge.
    fn charge(
        &self,
        card: &Card,
        amount_cents: u64,
    ) -> impl Future<Output = Result<ChargeId, Declined>> + Send + 'static;
}

/// Takes payments, with a deadline per attempt and a fixed number of attempts.
#[derive(Debug)]
pub struct Checkout<G> {
    gateway: G,
    attempt_timeout: Duration,
    attempts: u32,
}

impl<G: Gateway> Checkout<G> {
    /// A checkout that gives each of its `attempts` attempts `attempt_timeout` to finish.
    pub fn new(gateway: G, attempt_timeout: Duration, attempts: u32) -> Self {
        Checkout { gateway, attempt_timeout, attempts }
    }

    /// Charges `amount_cents` to `card`, retrying attempts that miss their deadline.
    ///
    /// `Err(PayError::TimedOut)` promises the customer that the card was not charged.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: an attempt runs in a task owned by an `AbortOnDropHandle`, so if this future
    /// is dropped, the running attempt is aborted at its next `.await` instead of carrying on in
    /// the background. An attempt that misses its deadline is aborted and awaited before the next
    /// one starts, so at most one attempt can ever charge the card.
    pub async fn pay(&self, card: &Card, amount_cents: u64) -> Result<ChargeId, PayError> {
        for _ in 0..self.attempts {
            // In its own task, so that a panicking gateway client cannot take us down. The
            // wrapper aborts the task if the handle is dropped: by the deadline below, or by our
            // caller dropping `pay`.
            let mut attempt =
                AbortOnDropHandle::new(tokio::spawn(self.gateway.charge(card, amount_cents)));
            let joined = match tokio::time::timeout(self.attempt_timeout, &mut attempt).await {
                Ok(joined) => joined,
                Err(_elapsed) => {
                    // Too slow. Stop it, and wait until it has really stopped: `abort` only asks,
                    // and an attempt that finished in the meantime did charge the card, so its
                    // result counts.
                    attempt.abort();
                    attempt.await
                }
            };
            match joined {
                Ok(Ok(charge)) => return Ok(charge),
                Ok(Err(Declined)) => return Err(PayError::Declined),
                // Stopped before it charged anything: safe to try again.
                Err(stopped) if stopped.is_cancelled() => continue,
                Err(_panicked) => return Err(PayError::GatewayCrashed),
            }
        }
        Err(PayError::TimedOut)
    }
}
