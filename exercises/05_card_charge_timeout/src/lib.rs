//! # Kata 05: the checkout that charges twice
//!
//! An online shop charges cards through a payment gateway. Gateways are sometimes slow, so
//! checkout gives each attempt a deadline and retries a slow attempt a couple of times before it
//! tells the customer to try again later. The gateway's client library is not ours and has been
//! known to panic, so each attempt runs in its own task: a panic there becomes a `JoinError` for
//! us instead of taking the request handler down with it.
//!
//! A deadline on a spawned task looks like this:
//!
//! ```text
//! timeout(deadline, tokio::spawn(gateway.charge(card, amount))).await
//! ```
//!
//! When the deadline passes, `timeout` drops what it was waiting on, here a `JoinHandle`. Read
//! `README.md` for what dropping a `JoinHandle` does, and does not do.

use std::future::Future;
use std::time::Duration;

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
    /// Not cancel safe, and not safe against its own deadline: an attempt that misses its
    /// deadline is not stopped, only forgotten. It carries on in the background and may still
    /// charge the card, after a retry has charged it too, or after `TimedOut` was reported. The
    /// same happens to the running attempt if the caller drops this future.
    pub async fn pay(&self, card: &Card, amount_cents: u64) -> Result<ChargeId, PayError> {
        for _ in 0..self.attempts {
            // In its own task, so that a panicking gateway client cannot take us down.
            let attempt = tokio::spawn(self.gateway.charge(card, amount_cents));
            // TODO: when the deadline passes, `timeout` drops the `JoinHandle`. Dropping a
            // `JoinHandle` does not stop the task: the attempt goes on, and can still charge the
            // card while the next attempt charges it again. Make sure a late attempt is stopped
            // before you retry or give up.
            match tokio::time::timeout(self.attempt_timeout, attempt).await {
                Ok(Ok(Ok(charge))) => return Ok(charge),
                Ok(Ok(Err(Declined))) => return Err(PayError::Declined),
                Ok(Err(_panicked)) => return Err(PayError::GatewayCrashed),
                Err(_elapsed) => continue,
            }
        }
        Err(PayError::TimedOut)
    }
}
