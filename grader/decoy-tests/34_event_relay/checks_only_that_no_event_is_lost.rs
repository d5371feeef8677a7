//! A full outbox and the leftover-task detector at every cut, but the check only asks that every
//! event is still somewhere: it misses an event put back at the back of the backlog, and an event
//! both delivered and back in the backlog.

use std::sync::{Arc, Mutex};

use event_relay::{Event, HEARTBEAT, Lease, Relay};
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

fn nothing_lost(rig: &Rig, _outcome: Outcome<Option<u64>>) -> Result<(), String> {
    let (delivered, backlog) = seen(rig);
    match [1, 2, 3].into_iter().find(|id| !delivered.contains(id) && !backlog.contains(id)) {
        Some(id) => Err(format!("event {id} is neither in the outbox nor in the backlog")),
        None => Ok(()),
    }
}

kata_support::hidden_test! {
    async fn no_cut_loses_an_event_or_leaves_a_heartbeat() {
        kata_support::assert_cancel_safe_with(
            Options::default().forbid_leftover_tasks(),
            fresh,
            |rig| async move { rig.relay.forward_next().await },
            |rig, outcome| async move { nothing_lost(&rig, outcome) },
        )
        .await;
    }
}
