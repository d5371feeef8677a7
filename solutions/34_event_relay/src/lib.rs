//! # The event relay (kata 34: the function, fixed)
//!
//! The function the kata's test is written for, as it should have shipped: a call waits for room
//! in the outbox (`reserve`) before it takes the event off the backlog, so no `.await` ever holds
//! the event, and its heartbeat task lives in a guard that aborts it when the call ends or is
//! dropped. The reference test for it is `tests/cancel.rs`; the README says why it catches every
//! wrong version.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

/// How often the lease is renewed while a call waits for room in the outbox.
pub const HEARTBEAT: Duration = Duration::from_millis(10);

/// One event of the partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: u64,
    pub body: String,
}

/// The relay's lease on its partition, as the broker sees it: how often it was renewed.
#[derive(Debug, Default)]
pub struct Lease {
    renewals: AtomicU64,
}

impl Lease {
    /// A lease renewed zero times.
    pub fn new() -> Lease {
        Lease::default()
    }

    /// Tells the broker the relay is alive.
    pub fn renew(&self) {
        self.renewals.fetch_add(1, Ordering::SeqCst);
    }

    /// How many times the lease was renewed so far.
    pub fn renewals(&self) -> u64 {
        self.renewals.load(Ordering::SeqCst)
    }
}

/// A relay from one partition to one downstream outbox.
#[derive(Debug)]
pub struct Relay {
    backlog: Mutex<VecDeque<Event>>,
    outbox: mpsc::Sender<Event>,
    lease: Arc<Lease>,
}

impl Relay {
    /// A relay with `backlog` still to forward, in order, into `outbox`, holding `lease`.
    pub fn new(
        backlog: impl IntoIterator<Item = Event>,
        outbox: mpsc::Sender<Event>,
        lease: Arc<Lease>,
    ) -> Relay {
        Relay { backlog: Mutex::new(backlog.into_iter().collect()), outbox, lease }
    }

    /// The events not yet forwarded, front first.
    pub fn backlog(&self) -> Vec<Event> {
        self.backlog.lock().unwrap().iter().cloned().collect()
    }

    /// Forwards the event at the front of the backlog into the outbox, waiting for room when the
    /// outbox is full and renewing the lease every `HEARTBEAT` while it waits. Returns the id of
    /// the event forwarded, or `None` when the backlog is empty or the downstream is gone.
    ///
    /// # Cancel safety
    ///
    /// The promise: dropped at any point before it completes, a call leaves its event exactly
    /// once either in the outbox or back at the front of the backlog, in its place (the rest of
    /// the backlog in order), and it leaves nothing running: once the drop has settled (the
    /// runtime has run its ready tasks, before the clock moves on), no task the call started is
    /// still alive, so the lease is renewed no more.
    ///
    /// The call reserves a place in the outbox before it touches the backlog: a cut while it waits
    /// for room leaves the event where it was, and the event moves from the backlog into the
    /// reserved place with no `.await` in between. The heartbeat is owned by a guard that aborts
    /// it when the call returns or is dropped.
    pub async fn forward_next(&self) -> Option<u64> {
        if self.backlog.lock().unwrap().is_empty() {
            return None;
        }
        // The downstream may keep us waiting: keep the partition's lease alive meanwhile.
        let _heartbeat = AbortOnDrop(tokio::spawn(heartbeat(Arc::clone(&self.lease))));
        let permit = self.outbox.reserve().await.ok()?;
        let event = self.backlog.lock().unwrap().pop_front()?;
        let id = event.id;
        permit.send(event);
        Some(id)
    }
}

/// Renews `lease` every `HEARTBEAT`, for as long as the task runs.
async fn heartbeat(lease: Arc<Lease>) {
    loop {
        tokio::time::sleep(HEARTBEAT).await;
        lease.renew();
    }
}

/// Aborts its task when dropped. An aborted task that is not running is dropped the next time the
/// runtime gets to it, without being polled again: the heartbeat is gone before the clock moves.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
