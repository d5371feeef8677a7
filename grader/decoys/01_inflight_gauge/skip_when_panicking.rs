//! Decoy for kata 01: the guard skips lowering the gauge while a panic unwinds.
//!
//! The guard's `Drop` returns early when `std::thread::panicking()` is true, on the theory that a
//! panicking request is a bug to look at, not load to count. But the gauge is what the shedder
//! reads: every backend panic leaves one unit raised for good, and after `limit` of them every
//! request is shed. The README names the backend panic as one of the ways out that must lower it.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Returned instead of forwarding when `limit` requests are already in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shed;

/// The load-shedding front of the gateway. Clones share one gauge.
#[derive(Debug, Clone)]
pub struct Gateway {
    in_flight: Arc<AtomicUsize>,
    limit: usize,
}

/// Lowers the gauge when the request ends, unless it ends by panicking.
struct InFlight<'a> {
    gauge: &'a AtomicUsize,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        self.gauge.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Gateway {
    /// A gateway that lets at most `limit` requests reach the backend at once.
    pub fn new(limit: usize) -> Self {
        Gateway { in_flight: Arc::new(AtomicUsize::new(0)), limit }
    }

    /// Requests currently being forwarded: the gauge the dashboards graph.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Forwards one request: runs `call` (the backend round trip) unless the gateway is full.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: if this future is dropped while `call` is pending, the gauge stays raised
    /// for good. After `limit` such cancellations the gateway sheds every request.
    pub async fn forward<F: Future>(&self, call: F) -> Result<F::Output, Shed> {
        if self.in_flight.fetch_add(1, Ordering::SeqCst) >= self.limit {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            return Err(Shed);
        }
        let _in_flight = InFlight { gauge: &self.in_flight };
        Ok(call.await)
    }
}
