//! The explorer with the leftover-task detector and the exact check, but the outbox has room: the
//! call never waits for it, so no cut lands in that wait. It misses every version whose bug is
//! there (the shipped one, the event taken too early, the heartbeat left running, the event put
//! back at the back); it still catches the two that leave something behind after the send.

use std::sync::{Arc, Mutex};

use event_relay::{Event, Lease, Relay};
use kata_support::{Options, Outcome};
use tokio::sync::mpsc;

fn events() -> Vec<Event> {
    [(1, "order-placed"), (2, "order-paid"), (3, "order-shipped")]
        .map(|(id, body)| Event { id, body: body.into() })
        .to_vec()
}

#[derive(Clone)]
struct Rig {
    relay: Arc<Relay>,
    downstream: Arc<Mutex<mpsc::Receiver<Event>>>,
}

/// An empty outbox with room for eight.
fn fresh() -> Rig {
    let (outbox, downstream) = mpsc::channel(8);
    let downstream = Arc::new(Mutex::new(downstream));
    let relay = Arc::new(Relay::new(events(), outbox, Arc::new(Lease::new())));
    Rig { relay, downstream }
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
    async fn every_cut_keeps_the_events_and_leaves_no_heartbeat() {
        kata_support::assert_cancel_safe_with(
            Options::default().forbid_leftover_tasks(),
            fresh,
            |rig| async move { rig.relay.forward_next().await },
            |rig, outcome| async move { exactly_once(&rig, outcome) },
        )
        .await;
    }
}
