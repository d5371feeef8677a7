//! The reference test for `Relay::forward_next` (kata 34): it catches every wrong version the grader
//! keeps and passes every right one. See the solution README for why each part is there.

use std::sync::{Arc, Mutex};

use event_relay::{Event, HEARTBEAT, Lease, Relay};
use kata_support::{Options, Outcome};
use tokio::sync::mpsc;

fn events() -> Vec<Event> {
    [(1, "order-placed"), (2, "order-paid"), (3, "order-shipped")]
        .map(|(id, body)| Event { id, body: body.into() })
        .to_vec()
}

/// One run's world: the relay, and the downstream end of its outbox.
#[derive(Clone)]
struct Rig {
    relay: Arc<Relay>,
    downstream: Arc<Mutex<mpsc::Receiver<Event>>>,
}

/// A relay with three events to forward (more than one, so that an event put back in the wrong
/// place shows) into an outbox that is full: it holds one event of an earlier call, and the
/// downstream takes that one off two and a half heartbeats in. So every call waits for room,
/// with its heartbeat running, and that wait is where the explorer cuts it.
fn fresh() -> Rig {
    let (outbox, downstream) = mpsc::channel(1);
    let earlier = Event { id: 0, body: "earlier".into() };
    outbox.try_send(earlier).expect("an empty outbox has room for one");
    let downstream = Arc::new(Mutex::new(downstream));
    let slow = Arc::clone(&downstream);
    tokio::spawn(async move {
        tokio::time::sleep(HEARTBEAT * 5 / 2).await;
        let _ = slow.lock().unwrap().try_recv();
    });
    let relay = Arc::new(Relay::new(events(), outbox, Arc::new(Lease::new())));
    Rig { relay, downstream }
}

/// The promise about the events, checked after every cut and after a completed call: each event
/// of the backlog exactly once, in the outbox or in the backlog, in order. A cut call may have
/// delivered its event already; a completed call has, and returned its id.
fn as_promised(rig: &Rig, outcome: Outcome<Option<u64>>) -> Result<(), String> {
    let mut delivered = Vec::new();
    while let Ok(event) = rig.downstream.lock().unwrap().try_recv() {
        if event.id != 0 {
            delivered.push(event.id);
        }
    }
    let backlog: Vec<u64> = rig.relay.backlog().iter().map(|event| event.id).collect();
    let seen = (delivered, backlog);
    let untouched = (vec![], vec![1, 2, 3]);
    let forwarded = (vec![1], vec![2, 3]);
    let (ok, expected) = match outcome {
        Outcome::Cancelled { .. } => {
            (seen == untouched || seen == forwarded, "[] and [1, 2, 3], or [1] and [2, 3]")
        }
        Outcome::Completed(id) => {
            if id != Some(1) {
                return Err(format!("the call returned {id:?}, not Some(1)"));
            }
            (seen == forwarded, "[1] and [2, 3]")
        }
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the outbox got {:?} and the backlog is {:?}; expected {expected}",
            seen.0, seen.1
        ))
    }
}

kata_support::hidden_test! {
    async fn every_cut_keeps_the_events_and_leaves_no_heartbeat() {
        let explored = kata_support::assert_cancel_safe_with(
            Options::default().forbid_leftover_tasks(),
            fresh,
            |rig| async move { rig.relay.forward_next().await },
            |rig, outcome| async move { as_promised(&rig, outcome) },
        )
        .await;
        // With room to spare the call never waits, and the explorer has nothing to cut.
        assert!(explored.full_run_polls > 1, "the call never waited for room: no cut reached it");
    }
}
