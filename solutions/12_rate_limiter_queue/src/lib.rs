//! # Kata 12 solution: one place in the queue for the whole wait
//!
//! The `acquire` future is created once, before the loop, and pinned; the `select!` polls it
//! through `&mut`. A status tick winning the race now drops only that borrow. The `acquire` future,
//! and with it the caller's place in the semaphore's queue, lives until a token is granted or the
//! whole `wait_turn` is dropped. The `select!` is `biased`, status tick first, so that a caller
//! polled late writes every line it owes before it takes its token, whatever order the token and
//! the overdue ticks became ready in.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::{Instant, interval_at};

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
    /// Cancel safe: a dropped wait takes no token. It does give up its place in the queue
    /// (a new wait starts at the back), which is what a caller who stops waiting wants.
    pub async fn wait_turn(&self, client: &str) -> Result<(), LimiterClosed> {
        let started = Instant::now();
        let mut status = interval_at(started + STATUS_EVERY, STATUS_EVERY);
        // One `acquire` for the whole wait: it holds this caller's place in the queue.
        let acquire = self.tokens.acquire();
        tokio::pin!(acquire);
        loop {
            tokio::select! {
                // The status tick first: a caller polled late owes a line for every period that
                // was up before it returns, also when its token came (or the limiter was closed)
                // while it was not polled. An unbiased `select!` would pick at random between a
                // due line and the token.
                biased;
                _ = status.tick() => {
                    let waited = started.elapsed();
                    self.log(format!("{client}: waiting for a rate-limit token ({waited:?})"));
                }
                permit = &mut acquire => {
                    // The token is spent on the API call: it is not given back.
                    permit.map_err(|_| LimiterClosed)?.forget();
                    return Ok(());
                }
            }
        }
    }
}
