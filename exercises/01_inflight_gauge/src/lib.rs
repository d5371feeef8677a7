//! # Kata 01: the in-flight gauge that leaks
//!
//! An API gateway sheds load: it forwards at most `limit` requests to the backend at once and
//! answers the rest with "503, try later" straight away. It knows how many requests are in flight
//! from a gauge that `forward` raises before calling the backend and lowers afterwards.
//!
//! The server races every `forward` against the client hanging up:
//!
//! ```text
//! tokio::select! {
//!     response = gateway.forward(backend.call(request)) => reply(response),
//!     _ = client.closed() => {} // the client left: stop working for it
//! }
//! ```
//!
//! When the client wins that race, `select!` drops the `forward` future while it is parked at its
//! `.await`. Nothing after that `.await` ever runs. Read `README.md` for the whole story.

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

        // TODO: the gauge must come back down however this function ends, including when the
        // future is dropped at the `.await` below.
        let response = call.await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        Ok(response)
    }
}
