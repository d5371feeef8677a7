//! # The event relay (kata 34: write the test)
//!
//! A relay moves events from a partition of an event log to a downstream service. It keeps the
//! events it has read but not yet passed on in a backlog, and forwards them one at a time into the
//! downstream's bounded outbox. While the downstream is slow and the outbox full, the relay keeps
//! its lease on the partition alive: a heartbeat task renews the lease every `HEARTBEAT`, so the
//! broker does not hand the partition to another relay behind its back.
//!
//! The relay's caller races `forward_next` against rebalances and shutdown, so its future can be
//! dropped while it waits for room. The relay promises that a dropped call loses no event, delivers
//! none twice, keeps the backlog in order, and leaves no heartbeat behind (see
//! `Relay::forward_next`). This file is the function as it shipped, and it breaks that promise. In
//! this kata you do not fix it: you write the test that would have caught it, in `tests/cancel.rs`.
//! The grader runs your test against this function and against other versions of it, some wrong
//! and some right, that you never see. This file is not yours to edit.

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
    /// As shipped, it does not keep it.
    pub async fn forward_next(&self) -> Option<u64> {
        let event = self.backlog.lock().unwrap().pop_front()?;
        let id = event.id;
        // The downstream may keep us waiting: keep the partition's lease alive meanwhile.
        let lease = Arc::clone(&self.lease);
        let heartbeat = tokio::spawn(async move {
            loop {
                tokio::time::sleep(HEARTBEAT).await;
                lease.renew();
            }
        });
        let sent = self.outbox.send(event).await;
        heartbeat.abort();
        sent.ok().map(|()| id)
    }
}
