//! Decoy for kata 01: a semaphore permit as the guard, but acquired by waiting.
//!
//! The permit does come back however `forward` ends, so nothing leaks. But `acquire().await` parks
//! a request that finds the gateway full until another one finishes: the gateway queues instead of
//! shedding, and the slow backend's clients wait instead of getting "503, try later" at once.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::Semaphore;

/// Returned instead of forwarding when `limit` requests are already in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shed;

/// The load-shedding front of the gateway. Clones share one set of permits.
#[derive(Debug, Clone)]
pub struct Gateway {
    permits: Arc<Semaphore>,
    limit: usize,
}

impl Gateway {
    /// A gateway that lets at most `limit` requests reach the backend at once.
    pub fn new(limit: usize) -> Self {
        Gateway { permits: Arc::new(Semaphore::new(limit)), limit }
    }

    /// Requests currently being forwarded.
    pub fn in_flight(&self) -> usize {
        self.limit - self.permits.available_permits()
    }

    /// Forwards one request once a permit is free.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the permit is returned when the future is dropped.
    pub async fn forward<F: Future>(&self, call: F) -> Result<F::Output, Shed> {
        let _permit = self.permits.acquire().await.map_err(|_closed| Shed)?;
        Ok(call.await)
    }
}
