//! Decoy for kata 01: the guard puts back the gauge value it saw instead of subtracting one.
//!
//! Each request remembers the gauge before it raised it and, on drop, stores that value back.
//! With one request at a time, or requests that end in the reverse order they started, this is the
//! same as subtracting one. Concurrent requests do not end in that order: with A, B and C in flight
//! (gauge 3), A's client leaves first and stores 0 while B and C still wait, then B stores 1 and C
//! stores 2, so the gauge reads 2 with nothing in flight and leaks like the original bug.

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

/// Puts the gauge back to the value this request saw when it arrived.
struct Restore<'a> {
    gauge: &'a AtomicUsize,
    seen: usize,
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        self.gauge.store(self.seen, Ordering::SeqCst);
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
        let seen = self.in_flight.fetch_add(1, Ordering::SeqCst);
        let _restore = Restore { gauge: &self.in_flight, seen };
        if seen >= self.limit {
            return Err(Shed);
        }
        Ok(call.await)
    }
}
