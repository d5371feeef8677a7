//! # Kata 01 solution: the gauge lowered by a guard
//!
//! The gauge is lowered in a destructor. A future that is dropped at an `.await` still drops its
//! live locals, so a guard created before the `.await` runs its `Drop` on every way out: a normal
//! return, an early `?`, a panic unwinding through, and cancellation.

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

/// Holds one unit of the gauge and gives it back when dropped.
struct InFlight<'a> {
    gauge: &'a AtomicUsize,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
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
    /// Cancel safe: dropping this future drops `call` (the backend round trip stops) and lowers
    /// the gauge. Nothing else is left behind.
    pub async fn forward<F: Future>(&self, call: F) -> Result<F::Output, Shed> {
        // Raise the gauge and create its guard with no `.await` in between, so there is no point
        // at which the gauge is raised but unguarded.
        let previous = self.in_flight.fetch_add(1, Ordering::SeqCst);
        let _in_flight = InFlight { gauge: &self.in_flight };
        if previous >= self.limit {
            return Err(Shed);
        }
        Ok(call.await)
    }
}
