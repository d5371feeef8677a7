//! Your cancellation test for `Relay::forward_next` (kata 34). Read the README first.
//!
//! The grader builds this file against the shipped `forward_next` and against other versions of
//! it, some wrong and some right. It passes when every test here passes against every right
//! version and at least one test fails against every wrong one. Declare tests inside
//! `hidden_test!`: an `async fn` runs on a paused, seeded tokio runtime; a plain `fn` builds its
//! own runtimes.

use std::sync::Arc;

use event_relay::{Event, Lease, Relay};
use tokio::sync::mpsc;

/// Three events to forward, in order.
fn events() -> Vec<Event> {
    [(1, "order-placed"), (2, "order-paid"), (3, "order-shipped")]
        .map(|(id, body)| Event { id, body: body.into() })
        .to_vec()
}

kata_support::hidden_test! {
    async fn forwarding_is_cancel_safe() {
        // TODO: cancel `forward_next` at every point it can be cancelled, in a scenario where it
        // has to wait, and check after each cut what the README says must hold. As it stands,
        // this test only forwards one event into an outbox with room to spare, so it passes
        // against every version, the broken ones too: it catches nothing.
        let (outbox, mut downstream) = mpsc::channel(8);
        let relay = Relay::new(events(), outbox, Arc::new(Lease::new()));
        assert_eq!(relay.forward_next().await, Some(1));
        assert_eq!(downstream.recv().await.map(|event| event.id), Some(1));
    }
}
