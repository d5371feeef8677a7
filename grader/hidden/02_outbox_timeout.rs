//! Hidden tests for kata 02: `enqueue` must hand the message back when its wait runs out, queue it
//! exactly once when there is room, keep its place in the channel's queue while it waits, wait at
//! most `wait`, and answer `Closed` when the client leaves during the wait.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kata_support::{Outcome, assert_cancel_safe, check_property, hidden_test};
use outbox_timeout::{ChatMessage, EnqueueError, Outbox};
use proptest::prelude::*;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, timeout};
use tokio_test::{assert_pending, task};

/// How long `enqueue` waits for space in every test.
const WAIT: Duration = Duration::from_millis(50);

fn line(from: &str, text: &str) -> ChatMessage {
    ChatMessage { room: "#rust".into(), from: from.into(), text: text.into() }
}

/// A capacity-1 outbox that already holds one message: `enqueue` has to wait for space.
fn full_outbox() -> (Outbox, mpsc::Sender<ChatMessage>, mpsc::Receiver<ChatMessage>) {
    let (tx, rx) = mpsc::channel(1);
    tx.try_send(line("server", "welcome to #rust"))
        .expect("a fresh channel has room for one message");
    (Outbox::new(tx.clone(), WAIT), tx, rx)
}

/// Describes a result for a failure message without needing `ChatMessage: Clone`.
fn describe(result: &Result<(), EnqueueError>) -> String {
    match result {
        Ok(()) => "Ok(())".into(),
        Err(EnqueueError::Busy(Some(m))) => format!("Busy(Some({:?}))", m.text),
        Err(EnqueueError::Busy(None)) => "Busy(None)".into(),
        Err(EnqueueError::Closed(m)) => format!("Closed({:?})", m.text),
    }
}

/// A client whose writer task starts reading after `drain_after`, and records what it read.
#[derive(Clone)]
struct Rig {
    outbox: Outbox,
    seen: Arc<Mutex<Vec<ChatMessage>>>,
}

impl Rig {
    fn new(drain_after: Duration) -> Rig {
        let (outbox, _tx, mut rx) = full_outbox();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        tokio::spawn(async move {
            sleep(drain_after).await;
            while let Some(m) = rx.recv().await {
                sink.lock().expect("seen lock").push(m);
            }
        });
        Rig { outbox, seen }
    }

    fn copies_of(&self, text: &str) -> usize {
        let seen = self.seen.lock().expect("seen lock");
        seen.iter().filter(|m| m.text == text).count()
    }
}

/// The invariant for one explored `enqueue`: Ok means delivered exactly once, Busy means handed
/// back and not delivered, cancelled means not delivered.
async fn check_delivery(
    rig: Rig,
    outcome: Outcome<Result<(), EnqueueError>>,
    text: &str,
) -> Result<(), String> {
    // Give the client's writer all the time it needs to read what was queued.
    sleep(Duration::from_secs(1)).await;
    let copies = rig.copies_of(text);
    match outcome {
        Outcome::Cancelled { polls } => match copies {
            0 => Ok(()),
            n => Err(format!(
                "the room cancelled `enqueue` after poll {polls}, yet the client received the \
                 message {n} time(s); a cancelled enqueue must not deliver it"
            )),
        },
        Outcome::Completed(Ok(())) => match copies {
            1 => Ok(()),
            n => Err(format!(
                "`enqueue` returned Ok(()), so the client must receive the message exactly once; \
                 it received it {n} time(s)"
            )),
        },
        Outcome::Completed(Err(EnqueueError::Busy(Some(m)))) => {
            if m.text != text {
                Err(format!(
                    "`Busy` handed back {:?}, but the message enqueued was {text:?}",
                    m.text
                ))
            } else if copies != 0 {
                Err(format!(
                    "`enqueue` answered Busy and handed the message back, but the client also \
                     received it {copies} time(s): a retry would deliver it twice"
                ))
            } else {
                Ok(())
            }
        }
        Outcome::Completed(Err(EnqueueError::Busy(None))) => {
            Err("`enqueue` gave up with Busy(None): the message was lost. It was moved into \
             `tx.send(..)`, and when `timeout` ran out it dropped that future and the message \
             inside it; keep the message outside the future you race against the clock"
                .into())
        }
        Outcome::Completed(Err(EnqueueError::Closed(_))) => {
            Err("`enqueue` answered Closed, but the client is still connected".into())
        }
    }
}

/// What the client does while one `enqueue` waits on its full outbox.
#[derive(Debug, Clone, Copy)]
enum Client {
    /// Reads one message after this many milliseconds, freeing a slot.
    ReadsAfter(u64),
    /// Disconnects (drops its end of the outbox) after this many milliseconds.
    LeavesAfter(u64),
    /// Never reads and never leaves.
    Stalls,
}

/// A wait for space in milliseconds, and what the client does during (or after) it, never at the
/// very moment the wait runs out, where either answer would be fair.
fn waits_and_clients() -> impl Strategy<Value = (u64, Client)> {
    (1u64..=120, 0u64..=200, 0u8..3).prop_map(|(wait, at, kind)| {
        let at = if at == wait { wait + 1 } else { at };
        let client = match kind {
            0 => Client::ReadsAfter(at),
            1 => Client::LeavesAfter(at),
            _ => Client::Stalls,
        };
        (wait, client)
    })
}

hidden_test! {
    /// Nothing cancelled, plenty of room: the message is queued and the client reads it.
    async fn queues_when_there_is_room() {
        let (tx, mut rx) = mpsc::channel(4);
        let outbox = Outbox::new(tx, WAIT);
        let result = outbox.enqueue(line("alice", "hello")).await;
        assert!(
            result.is_ok(),
            "enqueue into an empty outbox returned {}",
            describe(&result)
        );
        assert_eq!(
            rx.try_recv().ok(),
            Some(line("alice", "hello")),
            "enqueue returned Ok(()), so the message must already be in the outbox"
        );
    }

    /// A disconnected client: the message comes back in `Closed`.
    async fn closed_outbox_hands_the_message_back() {
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let outbox = Outbox::new(tx, WAIT);
        let result = outbox.enqueue(line("alice", "anyone there?")).await;
        assert_eq!(
            result,
            Err(EnqueueError::Closed(line("alice", "anyone there?"))),
            "the client is gone: enqueue must answer Closed and hand the message back"
        );
    }

    /// The core of the kata: on a full outbox `enqueue` waits `WAIT`, then answers Busy with the
    /// very message it was given.
    async fn busy_hands_the_message_back() {
        let (outbox, _tx, _rx) = full_outbox();
        let start = Instant::now();
        let Ok(result) = timeout(Duration::from_secs(10), outbox.enqueue(line("bob", "brb"))).await
        else {
            panic!(
                "enqueue never returned on a full outbox: after 10 s it was still waiting for \
                 space (its wait is {WAIT:?}). A slow client must get Busy, not stall the room"
            );
        };
        match result {
            Err(EnqueueError::Busy(Some(m))) => {
                assert_eq!(
                    m,
                    line("bob", "brb"),
                    "Busy must carry back the message it was given"
                );
                assert!(
                    start.elapsed() >= WAIT,
                    "enqueue answered Busy after {:?}, before its wait of {WAIT:?} ran out",
                    start.elapsed()
                );
            }
            Err(EnqueueError::Busy(None)) => panic!(
                "on a full outbox, enqueue answered Busy(None): the message was lost. It was \
                 moved into `tx.send(..)`; when the wait ran out, `timeout` dropped that `send` \
                 future, and the message inside it. Expected Busy(Some(message))"
            ),
            Ok(()) => panic!(
                "enqueue answered Ok(()) although the outbox was full for its whole wait: the \
                 message was not queued (was it handed to a detached task?). Expected \
                 Busy(Some(message)) so the room knows the client is slow"
            ),
            Err(EnqueueError::Closed(_)) => {
                panic!("enqueue answered Closed, but the client is still connected")
            }
        }
    }

    /// Busy, then the client catches up: the retried message arrives exactly once.
    async fn retry_after_busy_delivers_exactly_once() {
        let (outbox, _tx, mut rx) = full_outbox();
        let Ok(Err(EnqueueError::Busy(Some(parked)))) =
            timeout(Duration::from_secs(10), outbox.enqueue(line("bob", "brb"))).await
        else {
            panic!(
                "on a full outbox, enqueue must answer Busy(Some(message)) within its wait, so \
                 that the room can park the message and retry"
            );
        };
        assert_eq!(rx.recv().await, Some(line("server", "welcome to #rust")));
        let retried = outbox.enqueue(parked).await;
        assert!(
            retried.is_ok(),
            "the retry into a drained outbox returned {}",
            describe(&retried)
        );
        assert_eq!(
            rx.recv().await,
            Some(line("bob", "brb")),
            "the retried message must arrive"
        );
        sleep(Duration::from_secs(1)).await;
        assert!(
            rx.try_recv().is_err(),
            "the client received the retried message twice: the first attempt was delivered \
             although it answered Busy"
        );
    }

    /// Space that frees up during the wait must be used: enqueue waits, it does not give up early.
    async fn waits_for_space_that_frees_up() {
        let (outbox, _tx, mut rx) = full_outbox();
        tokio::spawn(async move {
            sleep(WAIT / 2).await;
            let _ = rx.recv().await;
            sleep(Duration::from_secs(1)).await;
            rx
        });
        let result = outbox.enqueue(line("carol", "on my way")).await;
        assert!(
            result.is_ok(),
            "the client read a message {:?} into a wait of {WAIT:?}, but enqueue returned {}: it \
             must wait for space, not give up at the first full outbox",
            WAIT / 2,
            describe(&result)
        );
    }

    /// A waiting enqueue holds its place in the channel's queue: a sender that arrives later must
    /// not take the slot that frees up first.
    async fn keeps_its_place_in_line() {
        let (outbox, tx, mut rx) = full_outbox();
        let mut first = task::spawn(outbox.enqueue(line("alice", "first in line")));
        assert!(
            first.poll().is_pending(),
            "on a full outbox, enqueue must wait for space instead of returning at once"
        );
        let mut later = task::spawn(tx.send(line("bob", "arrived later")));
        assert_pending!(later.poll());

        // The client reads one message: one slot frees up, and it belongs to the first waiter.
        assert_eq!(rx.recv().await, Some(line("server", "welcome to #rust")));
        let result = timeout(Duration::from_secs(1), &mut first).await;
        match result {
            Ok(Ok(())) => {}
            Ok(other) => panic!(
                "enqueue was first in line for space, but a sender that arrived later took the \
                 freed slot and enqueue returned {}. The slot that frees up is handed to the \
                 sender first in line; enqueue must put its message into that very slot, not let \
                 it go and ask again (a `try_send` poller is never in line, and a reservation \
                 dropped before sending passes its slot to the next sender)",
                describe(&other)
            ),
            Err(_) => panic!("enqueue did not finish after a slot freed up for it"),
        }
        assert_eq!(rx.recv().await, Some(line("alice", "first in line")));
        drop(later);
    }

    /// Cancelled by the room at every point, on an outbox the client drains during the wait and on
    /// one it drains too late: never delivered twice, never delivered after a cancel or a Busy,
    /// and Busy always carries the message back.
    async fn cancelled_enqueue_never_delivers_or_loses_the_message() {
        for drain_after in [WAIT / 2, WAIT * 4] {
            assert_cancel_safe(
                || Rig::new(drain_after),
                |rig: Rig| async move { rig.outbox.enqueue(line("dave", "see you")).await },
                |rig, outcome| check_delivery(rig, outcome, "see you"),
            )
            .await;
        }
    }

    /// The client disconnects while `enqueue` waits for space: the room must learn at once that
    /// the client is gone, with the message back, not park it for a client that will never read.
    async fn client_leaving_during_the_wait_is_closed() {
        let (outbox, _tx, rx) = full_outbox();
        tokio::spawn(async move {
            sleep(WAIT / 2).await;
            drop(rx);
        });
        let start = Instant::now();
        let result = outbox.enqueue(line("erin", "still there?")).await;
        let waited = start.elapsed();
        assert_eq!(
            result,
            Err(EnqueueError::Closed(line("erin", "still there?"))),
            "the client disconnected {:?} into the wait, yet enqueue answered {} after {waited:?}: \
             a client that leaves during the wait is Closed, with the message handed back, not \
             Busy",
            WAIT / 2,
            describe(&result)
        );
        assert!(
            waited <= WAIT / 2 + Duration::from_millis(1),
            "the client disconnected {:?} into the wait, but enqueue only answered after \
             {waited:?}",
            WAIT / 2
        );
    }

    /// Over any wait and any moment the client reads or leaves: a slot freed during the wait is
    /// used at once, a client leaving during the wait is `Closed` at once, and otherwise `Busy`
    /// comes back with the message when the wait runs out, not later.
    fn answers_within_the_wait_whatever_the_client_does() {
        check_property(96, waits_and_clients(), |(wait_ms, client)| async move {
            let (tx, rx) = mpsc::channel(1);
            tx.try_send(line("server", "welcome to #rust")).expect("room for one message");
            let wait = Duration::from_millis(wait_ms);
            let outbox = Outbox::new(tx.clone(), wait);
            let reader = tokio::spawn(async move {
                let mut rx = rx;
                match client {
                    Client::ReadsAfter(ms) => {
                        sleep(Duration::from_millis(ms)).await;
                        let _ = rx.recv().await;
                        sleep(Duration::from_secs(3600)).await;
                    }
                    Client::LeavesAfter(ms) => {
                        sleep(Duration::from_millis(ms)).await;
                        drop(rx);
                    }
                    Client::Stalls => sleep(Duration::from_secs(3600)).await,
                }
            });
            let start = Instant::now();
            let result = outbox.enqueue(line("frank", "hello from the train")).await;
            let waited = start.elapsed();
            reader.abort();
            let (expected, at_ms) = match client {
                Client::ReadsAfter(ms) if ms < wait_ms => ("Ok(())", ms),
                Client::LeavesAfter(ms) if ms < wait_ms => ("Closed(\"hello from the train\")", ms),
                _ => ("Busy(Some(\"hello from the train\"))", wait_ms),
            };
            let seen = describe(&result);
            let at = Duration::from_millis(at_ms);
            if seen != expected {
                return Err(format!(
                    "with a wait of {wait:?}, enqueue answered {seen} after {waited:?}; expected \
                     {expected} after {at:?}"
                ));
            }
            if waited < at || waited > at + Duration::from_millis(1) {
                return Err(format!(
                    "with a wait of {wait:?}, enqueue answered {seen} after {waited:?}; it should \
                     have answered after {at:?} (a full outbox is waited on for at most `wait`)"
                ));
            }
            Ok(())
        });
    }
}
