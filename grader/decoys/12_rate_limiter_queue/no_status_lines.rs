//! Decoy for kata 12: drops the status ticks, so nothing interrupts the `acquire` any more.
//!
//! A service calls a partner's API, which allows only so many requests per minute. Every call
//! first takes a token from a [`RateLimiter`]; a refill task adds tokens as the partner's quota
//! allows. Tokens are handed out by a `tokio::sync::Semaphore`, which is fair: waiters get
//! tokens in the order they started waiting.
//!
//! Waiting can take a while, so while a caller waits, the limiter writes a status line every
//! [`STATUS_EVERY`] ("invoice-sync: waiting for a rate-limit token (2s)"), which the on-call
//! engineer watches. The wait loop races the semaphore against the status timer:
//!
//! ```text
//! loop {
//!     tokio::select! {
//!         permit = self.tokens.acquire() => return ...,
//!         _ = status.tick() => self.log(..),
//!     }
//! }
//! ```
//!
//! Read `README.md` for who gets the next token.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Semaphore;

/// How often a waiting caller's status line is written.
pub const STATUS_EVERY: Duration = Duration::from_secs(1);

/// The limiter was closed (the service is shutting down): no more tokens will come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimiterClosed;

/// Hands out the partner API's request tokens, first come, first served.
#[derive(Debug)]
pub struct RateLimiter {
    tokens: Semaphore,
    status: Mutex<Vec<String>>,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl RateLimiter {
    /// A limiter with no tokens yet; [`refill`](Self::refill) adds them.
    pub fn new() -> Self {
        RateLimiter { tokens: Semaphore::new(0), status: Mutex::new(Vec::new()) }
    }

    /// Adds `tokens` request tokens (the refill task calls this as the quota allows).
    pub fn refill(&self, tokens: usize) {
        self.tokens.add_permits(tokens);
    }

    /// Closes the limiter: every waiting and future [`wait_turn`](Self::wait_turn) fails.
    pub fn close(&self) {
        self.tokens.close();
    }

    /// The status lines written so far, oldest first.
    pub fn status_lines(&self) -> Vec<String> {
        self.status.lock().expect("status lock poisoned").clone()
    }

    fn log(&self, line: String) {
        self.status.lock().expect("status lock poisoned").push(line);
    }

    /// Waits until it is `client`'s turn, then takes one token for a single API call.
    ///
    /// Callers are served in the order they started waiting. While waiting, a status line is
    /// written every [`STATUS_EVERY`].
    ///
    /// # Cancel safety
    ///
    /// Meant to be cancel safe (a dropped wait takes no token, and gives up its place in the
    /// queue), but the wait loop cancels its own `acquire` on every status tick, so a caller who
    /// has waited longest keeps losing its place.
    pub async fn wait_turn(&self, client: &str) -> Result<(), LimiterClosed> {
        // No status timer, no `select!`: nothing can cancel the wait.
        let _ = client;
        self.tokens.acquire().await.map_err(|_| LimiterClosed)?.forget();
        Ok(())
    }
}
