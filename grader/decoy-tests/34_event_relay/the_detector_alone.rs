//! A weak test: the reference test without watching the renewals: the leftover-task detector is its only check that nothing runs on.
//!
//! The detector counts the tasks the call spawned. A relay whose one heartbeat task is started by
//! `Relay::new`, and renews while a count of waiting calls is above zero, spawns nothing in the call;
//! a cut call never lowers the count, and the lease is renewed forever after the cut. Misses that
//! version; the promise is that nothing renews the lease any more, not only that no task is left.

use std::sync::{Arc, Mutex};

use event_relay::{Event, HEARTBEAT, Lease, Relay};
use kata_support::{Options, Outcome};
use tokio::sync::mpsc;

fn events() -> Vec<Event> {
    [(1, "order-placed"), (2, "order-paid"), (3, "order-shipped")]
        .map(|(id, body)| Event { id, body: body.into() })
        .to_vec()
}

/// One run's world: the relay, the downstream end of its outbox, and the lease it renews.
#[derive(Clone)]
struct Rig {
    relay: Arc<Relay>,
    downstream: Arc<Mutex<mpsc::Receiver<Event>>>,
    lease: Arc<Lease>,
}

/// A relay with three events to forward (more than one, so that an event put back in the wrong
/// place shows) into an outbox that is full: it holds one event of an earlier call, and the
/// downstream takes that one off two and a half heartbeats in. So every call waits for room,
/// longer than a heartbeat, with its heartbeat running, and that wait is where the explorer cuts
/// it.
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
    let lease = Arc::new(Lease::new());
    let relay = Arc::new(Relay::new(events(), outbox, Arc::clone(&lease)));
    Rig { relay, downstream, lease }
}

/// The events the downstream has been given since the earlier one, taken off the outbox.
fn delivered(rig: &Rig) -> Vec<Event> {
    let mut delivered = Vec::new();
    while let Ok(event) = rig.downstream.lock().unwrap().try_recv() {
        if event.id != 0 {
            delivered.push(event);
        }
    }
    delivered
}

/// The promise, checked after every cut and after a completed call:
/// - each event of the backlog exactly once, whole, in the outbox or in the backlog, in order (a
///   cut call may have delivered its event already; a completed call has, and returned its id);
/// - and the relay goes on from there: the next call forwards the event now at the front.
async fn as_promised(rig: Rig, outcome: Outcome<Option<u64>>) -> Result<(), String> {
    let seen = (delivered(&rig), rig.relay.backlog());
    let all = events();
    let untouched = (vec![], all.clone());
    let forwarded = (all[..1].to_vec(), all[1..].to_vec());
    let (ok, expected) = match outcome {
        Outcome::Cancelled { .. } => {
            (seen == untouched || seen == forwarded, "nothing and [1, 2, 3], or [1] and [2, 3]")
        }
        Outcome::Completed(id) => {
            if id != Some(1) {
                return Err(format!("the call returned {id:?}, not Some(1)"));
            }
            (seen == forwarded, "[1] and [2, 3]")
        }
    };
    if !ok {
        return Err(format!(
            "the outbox got {:?} and the backlog is {:?}; expected {expected}, every event whole",
            seen.0, seen.1
        ));
    }

    // Let the downstream have its turn, so that the next call has room.
    tokio::time::sleep(HEARTBEAT * 4).await;

    // The outbox is empty now (and the downstream has had its turn): the next call has room.
    let front = seen.1.first().cloned();
    let next = rig.relay.forward_next().await;
    let got = delivered(&rig);
    let wanted: Vec<Event> = front.iter().cloned().collect();
    if next != front.as_ref().map(|event| event.id) || got != wanted {
        return Err(format!(
            "the next call returned {next:?} and delivered {got:?}; the front of the backlog was \
             {front:?}"
        ));
    }
    Ok(())
}

kata_support::hidden_test! {
    async fn every_cut_keeps_the_events_and_leaves_no_heartbeat() {
        let explored = kata_support::assert_cancel_safe_with(
            Options::default().forbid_leftover_tasks(),
            fresh,
            |rig| async move { rig.relay.forward_next().await },
            as_promised,
        )
        .await;
        // With room to spare the call never waits, and the explorer has nothing to cut.
        assert!(explored.full_run_polls > 1, "the call never waited for room: no cut reached it");
    }

    async fn a_call_dropped_before_its_first_poll_keeps_its_event() {
        // The explorer's cut before the first poll drops the `op`'s `async move` block, which has
        // not called `forward_next` yet. Here the call is made, and its future dropped unpolled,
        // as a `select!` whose other branch is ready first drops it.
        let rig = fresh();
        let call = rig.relay.forward_next();
        drop(call);
        tokio::task::yield_now().await;
        if let Err(seen) = as_promised(rig, Outcome::Cancelled { polls: 0 }).await {
            panic!("a call dropped before its first poll: {seen}");
        }
    }
}
