//! One hand-made cut: a `timeout` of a heartbeat and a half on a call waiting for room, then the
//! events and a few heartbeats of renewals checked. It never cuts a call after its event was sent, and a
//! heartbeat that still sleeps but renews nothing passes it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use event_relay::{Event, HEARTBEAT, Lease, Relay};
use kata_support::Outcome;
use tokio::sync::mpsc;

fn events() -> Vec<Event> {
    [(1, "order-placed"), (2, "order-paid"), (3, "order-shipped")]
        .map(|(id, body)| Event { id, body: body.into() })
        .to_vec()
}

#[derive(Clone)]
struct Rig {
    relay: Arc<Relay>,
    lease: Arc<Lease>,
    downstream: Arc<Mutex<mpsc::Receiver<Event>>>,
}

/// The outbox holds an earlier event; the downstream takes it off two and a half beats in.
fn fresh() -> Rig {
    let (outbox, downstream) = mpsc::channel(1);
    outbox.try_send(Event { id: 0, body: "earlier".into() }).unwrap();
    let downstream = Arc::new(Mutex::new(downstream));
    let slow = Arc::clone(&downstream);
    tokio::spawn(async move {
        tokio::time::sleep(HEARTBEAT * 5 / 2).await;
        let _ = slow.lock().unwrap().try_recv();
    });
    let lease = Arc::new(Lease::new());
    let relay = Arc::new(Relay::new(events(), outbox, Arc::clone(&lease)));
    Rig { relay, lease, downstream }
}

/// (ids in the outbox but the earlier one, ids in the backlog)
fn seen(rig: &Rig) -> (Vec<u64>, Vec<u64>) {
    let mut delivered = Vec::new();
    while let Ok(event) = rig.downstream.lock().unwrap().try_recv() {
        if event.id != 0 {
            delivered.push(event.id);
        }
    }
    (delivered, rig.relay.backlog().iter().map(|event| event.id).collect())
}

/// Exactly once, in order: untouched or forwarded after a cut, forwarded after a completed call.
fn exactly_once(rig: &Rig, outcome: Outcome<Option<u64>>) -> Result<(), String> {
    let seen = seen(rig);
    let forwarded = (vec![1], vec![2, 3]);
    let ok = match outcome {
        Outcome::Cancelled { .. } => seen == (vec![], vec![1, 2, 3]) || seen == forwarded,
        Outcome::Completed(id) => id == Some(1) && seen == forwarded,
    };
    if ok { Ok(()) } else { Err(format!("outbox and backlog: {seen:?}")) }
}

kata_support::hidden_test! {
    async fn a_timed_out_call_keeps_its_event_and_stops_its_heartbeat() {
        let rig = fresh();
        let cut = tokio::time::timeout(HEARTBEAT * 3 / 2, rig.relay.forward_next()).await;
        assert!(cut.is_err(), "the call finished before the timeout");
        exactly_once(&rig, Outcome::Cancelled { polls: 1 }).unwrap();
        let before = rig.lease.renewals();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(rig.lease.renewals(), before, "the lease was renewed after the call timed out");
    }
}
