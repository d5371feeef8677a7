//! Hidden tests for kata 02: `enqueue` must hand the message back when its wait runs out, queue it
//! exactly once when there is room, keep its place in the channel's queue while it waits, wait at
//! most `wait` (and not less, whole milliseconds or not, up to `Duration::MAX`; each call its own
//! wait, however many rooms wait on the same outbox), and answer `Closed` when the client leaves
//! during the wait.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kata_support::{
    Options, Outcome, assert_cancel_safe, check_property, explore_with, hidden_test,
};
use outbox_timeout::{ChatMessage, EnqueueError, Outbox};
use proptest::prelude::*;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, sleep_until, timeout};
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
    /// When the client starts reading.
    reads_from: Instant,
}

impl Rig {
    fn new(drain_after: Duration) -> Rig {
        Rig::waiting(WAIT, drain_after)
    }

    /// The same on a full outbox that waits `wait` for space.
    fn waiting(wait: Duration, drain_after: Duration) -> Rig {
        let (outbox, _tx, mut rx) = full_outbox_waiting(wait);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        tokio::spawn(async move {
            sleep(drain_after).await;
            while let Some(m) = rx.recv().await {
                sink.lock().expect("seen lock").push(m);
            }
        });
        Rig { outbox, seen, reads_from: Instant::now() + drain_after }
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
    // Give the client's writer all the time it needs to read what was queued, once it reads.
    sleep_until(rig.reads_from.max(Instant::now()) + Duration::from_secs(1)).await;
    // The room goes on using the same outbox: a new call must queue its own message, and must not
    // bring back anything the earlier call left behind.
    let next = "next line";
    let again = timeout(Duration::from_secs(10), rig.outbox.enqueue(line("dave", next))).await;
    match again {
        Ok(Ok(())) => {}
        Ok(other) => {
            return Err(format!(
                "after that, a new `enqueue` on the same outbox, with the client reading, answered \
                 {}; expected Ok(())",
                describe(&other)
            ));
        }
        Err(_) => {
            return Err("after that, a new `enqueue` on the same outbox, with the client \
                        reading, never returned"
                .into());
        }
    }
    sleep(Duration::from_secs(1)).await;
    if rig.copies_of(next) != 1 {
        return Err(format!(
            "after that, a new `enqueue` answered Ok(()), but the client received its message {} \
             time(s) (expected once)",
            rig.copies_of(next)
        ));
    }
    let copies = rig.copies_of(text);
    match outcome {
        Outcome::Cancelled { polls } => match copies {
            0 => Ok(()),
            n => Err(format!(
                "the room cancelled `enqueue` after poll {polls}, yet the client received the \
                 message {n} time(s) (by the time a new `enqueue` on the same outbox had been \
                 delivered); a cancelled enqueue must never deliver it, then or later"
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
                     received it {copies} time(s) (by the time a new `enqueue` on the same outbox \
                     had been delivered): a retry would deliver it twice"
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

/// A wait for space in microseconds (often none at all: "do not wait, just try"; otherwise a
/// whole number of milliseconds half of the time, or any), and what the client does (at a whole
/// millisecond) during or after it. Never on the timer tick at which the wait runs out, where
/// either answer would be fair: tokio's timers fire on whole-millisecond ticks, so a wait of
/// 1.5 ms runs out on the tick at 2 ms, and a zero wait runs out at once.
fn waits_and_clients() -> impl Strategy<Value = (u64, Client)> {
    let wait_us = prop_oneof![
        Just(0u64),
        (1u64..=120).prop_map(|ms| ms * 1000),
        1u64..=120_000,
        // Long waits too, up to ten minutes: "at most `wait`" holds for any wait.
        (1u64..=600).prop_map(|s| s * 1_000_000),
    ];
    (wait_us, 0u64..=200, 0u8..3).prop_map(|(wait_us, at, kind)| {
        let runs_out_ms = wait_us.div_ceil(1000);
        // The client's moment scales with the wait, so a long wait is read or left during it too.
        let at = at * (runs_out_ms / 100).max(1);
        let at = if at * 1000 >= wait_us && at <= runs_out_ms { runs_out_ms + 1 } else { at };
        let client = match kind {
            0 => Client::ReadsAfter(at),
            1 => Client::LeavesAfter(at),
            _ => Client::Stalls,
        };
        (wait_us, client)
    })
}

/// A wait for space in milliseconds (a zero wait often: "do not wait, just try"), the capacity
/// of an outbox, and how many messages already sit in it: always fewer than it holds.
fn waits_and_outboxes_with_room() -> impl Strategy<Value = (u64, usize, usize)> {
    (prop_oneof![Just(0u64), 0u64..=120], 1usize..=4)
        .prop_flat_map(|(wait, capacity)| (Just(wait), Just(capacity), 0..capacity))
}

/// Several rooms calling `enqueue` for one member: a wait for space in milliseconds, for each room
/// the moment it calls (all different) and whether it uses the outbox shared by all rooms or a
/// clone of its own, and perhaps the moment the client reads one message, never at the moment a
/// room calls or a wait runs out, where either answer would be fair.
fn rooms_and_a_read() -> impl Strategy<Value = (u64, Vec<(u64, bool)>, Option<u64>)> {
    let rooms = prop::collection::vec((0u64..=40, any::<bool>()), 2..=4);
    (1u64..=120, rooms, prop::option::of(0u64..=250)).prop_map(|(wait, rooms, read)| {
        let mut at = 0;
        let rooms: Vec<(u64, bool)> = rooms
            .into_iter()
            .enumerate()
            .map(|(i, (gap, shared))| {
                at += gap + u64::from(i > 0);
                (at, shared)
            })
            .collect();
        let read = read.map(|mut r| {
            while rooms.iter().any(|&(start, _)| r == start || r == start + wait) {
                r += 1;
            }
            r
        });
        (wait, rooms, read)
    })
}

/// A wait for space in milliseconds on a full outbox, the moments (inside the wait) at which
/// other senders start a plain `send` of their own, and the moment (inside the wait) at which the
/// client reads one message and frees one slot.
fn latecomers_and_a_read() -> impl Strategy<Value = (u64, Vec<u64>, u64)> {
    (3u64..=150).prop_flat_map(|wait| (Just(wait), prop::collection::vec(1..wait, 1..=3), 1..wait))
}

/// A short wait (under a millisecond half of the time, otherwise under three) in microseconds, and
/// what the client does: reads at once (its writer is ready to run), reads at a whole millisecond
/// before the wait runs out, or never reads.
fn short_waits_and_clients() -> impl Strategy<Value = (u64, Option<u64>)> {
    (prop_oneof![1u64..1000, 1000u64..=3000], 0u8..4).prop_flat_map(|(wait_us, kind)| {
        let last_ms_inside = (wait_us - 1) / 1000;
        let read = match kind {
            0 => Just(None).boxed(),
            // `Some(u64::MAX)` stands for "reads at once, without waiting for the clock".
            1 => Just(Some(u64::MAX)).boxed(),
            _ => (0..=last_ms_inside).prop_map(Some).boxed(),
        };
        (Just(wait_us), read)
    })
}

/// A call made between two timer ticks: how far past a tick the clock is when `enqueue` is called
/// (in microseconds), a wait that is often not a whole number of milliseconds, and perhaps the
/// moment (in microseconds, counted from the tick before the call) at which the client reads one
/// message: never before the call, and always before the tick at which the wait runs out, often
/// after the wait's length has passed but before that tick.
fn off_tick_calls() -> impl Strategy<Value = (u64, u64, Option<u64>)> {
    let offset_us = prop_oneof![1u64..1000, Just(500u64)];
    let wait_us = prop_oneof![1u64..1000, 1000u64..=3000, (1u64..=5).prop_map(|ms| ms * 1000)];
    (offset_us, wait_us, 0u8..4).prop_flat_map(|(offset_us, wait_us, kind)| {
        let runs_out_us = (offset_us + wait_us).div_ceil(1000) * 1000;
        let nominal_us = offset_us + wait_us;
        let read = match kind {
            0 => Just(None).boxed(),
            1 => (offset_us..runs_out_us).prop_map(Some).boxed(),
            _ if nominal_us < runs_out_us => (nominal_us..runs_out_us).prop_map(Some).boxed(),
            _ => (offset_us..runs_out_us).prop_map(Some).boxed(),
        };
        (Just(offset_us), Just(wait_us), read)
    })
}

/// Who sends to one full outbox in [`senders_in_line_and_reads`].
#[derive(Debug, Clone, Copy, PartialEq)]
enum Caller {
    /// A room calling `enqueue` on the outbox all rooms share.
    Shared,
    /// A room calling `enqueue` on a clone of its own.
    Clone,
    /// Another sender of the same channel, with a plain `send` it never gives up.
    Plain,
}

/// The capacity of a full outbox, a wait for space in milliseconds, the senders in the order they
/// arrive (with the moment each starts), and the moments the client reads one message. Senders
/// start at multiples of 4 ms, waits run out 2 ms past a multiple of 4, and the client reads 1 ms
/// past one, so no two of these things happen at the same moment.
fn senders_in_line_and_reads() -> impl Strategy<Value = (usize, u64, Vec<(u64, Caller)>, Vec<u64>)>
{
    let sender = prop_oneof![Just(Caller::Shared), Just(Caller::Clone), Just(Caller::Plain)];
    (
        1usize..=2,
        2u64..=25,
        prop::collection::vec((0u64..=4, sender), 3..=7),
        prop::collection::vec(0u64..=40, 1..=6),
    )
        .prop_filter("two rooms call enqueue", |(_, _, senders, _)| {
            senders.iter().filter(|s| s.1 != Caller::Plain).count() >= 2
        })
        .prop_map(|(capacity, wait, senders, reads)| {
            let mut at = 0;
            let senders = senders
                .into_iter()
                .enumerate()
                .map(|(i, (gap, who))| {
                    at += 4 * (gap + u64::from(i > 0));
                    (at, who)
                })
                .collect();
            let mut reads: Vec<u64> = reads.into_iter().map(|r| 4 * r + 1).collect();
            reads.sort_unstable();
            reads.dedup();
            (capacity, 4 * wait + 2, senders, reads)
        })
}

/// What a fair channel does with [`senders_in_line_and_reads`]: every sender joins one line when it
/// starts (or takes a free slot at once if nobody is in line), an `enqueue` leaves the line when
/// its wait runs out, and each message the client reads frees a slot for the first sender in line.
/// Returns each sender's text in the order they got a slot, and for each `enqueue` (by index) its
/// answer and after how long.
fn fair_line(
    capacity: usize,
    wait: u64,
    senders: &[(u64, Caller)],
    reads: &[u64],
) -> (Vec<String>, Vec<(String, u64)>) {
    enum Event {
        Arrives(usize),
        RunsOut(usize),
        Reads,
    }
    let mut events: Vec<(u64, Event)> = Vec::new();
    for (i, &(at, who)) in senders.iter().enumerate() {
        events.push((at, Event::Arrives(i)));
        if who != Caller::Plain {
            events.push((at + wait, Event::RunsOut(i)));
        }
    }
    events.extend(reads.iter().map(|&r| (r, Event::Reads)));
    events.sort_by_key(|e| e.0);
    let mut queued = capacity;
    let mut line = std::collections::VecDeque::new();
    let mut granted = Vec::new();
    let mut answers: Vec<(String, u64)> = senders
        .iter()
        .enumerate()
        .map(|(i, _)| (format!("Busy(Some({:?}))", sender_text(i)), wait))
        .collect();
    for (now, event) in events {
        match event {
            Event::Arrives(i) if queued < capacity => {
                queued += 1;
                granted.push(sender_text(i));
                answers[i] = ("Ok(())".into(), 0);
            }
            Event::Arrives(i) => line.push_back(i),
            Event::RunsOut(i) => line.retain(|&j| j != i),
            Event::Reads if queued > 0 => {
                queued -= 1;
                if let Some(i) = line.pop_front() {
                    queued += 1;
                    granted.push(sender_text(i));
                    answers[i] = ("Ok(())".into(), now - senders[i].0);
                }
            }
            Event::Reads => {}
        }
    }
    (granted, answers)
}

/// The message sender `i` of [`senders_in_line_and_reads`] sends.
fn sender_text(i: usize) -> String {
    format!("sender {}", i + 1)
}

/// One step of the room's life with a member's outbox, in the order it happens.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// A room calls `enqueue` and awaits its answer; nobody reads during the wait.
    Enqueue,
    /// The client reads one message, if there is one.
    Read,
}

/// The capacity of an outbox, how many messages sit in it at first (perhaps all it holds), a wait
/// for space in milliseconds (often none), the steps taken while the client is connected, and how
/// many calls the rooms make after it has disconnected.
fn histories_then_a_disconnect() -> impl Strategy<Value = (usize, usize, u64, Vec<Step>, usize)> {
    let step = prop_oneof![3 => Just(Step::Enqueue), 2 => Just(Step::Read)];
    (1usize..=4, prop_oneof![Just(0u64), 1u64..=60], prop::collection::vec(step, 0..=8), 1usize..=2)
        .prop_flat_map(|(capacity, wait, steps, after)| {
            (Just(capacity), 0..=capacity, Just(wait), Just(steps), Just(after))
        })
}

/// A capacity-1 outbox that already holds one message, waiting `wait` for space.
fn full_outbox_waiting(
    wait: Duration,
) -> (Outbox, mpsc::Sender<ChatMessage>, mpsc::Receiver<ChatMessage>) {
    let (_, tx, rx) = full_outbox();
    (Outbox::new(tx.clone(), wait), tx, rx)
}

/// Calls `enqueue` from a task of its own (a room's), and says what it answered and after how
/// long. A panic inside `enqueue` fails the test with a message that says so.
async fn enqueue_in_a_task(outbox: &Outbox, text: &str) -> (String, Duration) {
    let outbox = outbox.clone();
    let message = line("bot", text);
    let start = Instant::now();
    let call = tokio::spawn(async move { describe(&outbox.enqueue(message).await) }).await;
    match call {
        Ok(seen) => (seen, start.elapsed()),
        Err(error) => {
            let why = match error.try_into_panic() {
                Ok(payload) => payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_default(),
                Err(error) => error.to_string(),
            };
            panic!(
                "enqueue panicked ({why}) after {:?}, taking the room's task down with it: \
                 `wait` may be any `Duration`, up to `Duration::MAX` (an outbox that waits as \
                 long as it takes), and `enqueue` must then wait, not panic (`Instant::now() + \
                 wait` overflows there; `timeout`, `sleep` and `send_timeout` saturate it)",
                start.elapsed()
            )
        }
    }
}

/// How many more messages a plain sender of the channel can queue right now, without waiting.
/// The slots it takes to count them are given back at once.
fn free_slots(plain: &mpsc::Sender<ChatMessage>) -> usize {
    let permits: Vec<_> = std::iter::from_fn(|| plain.try_reserve().ok()).collect();
    permits.len()
}

/// How many calls in a row the long-run test cancels before their first poll, and at it: the
/// floor the exercise README states.
const CANCELS_IN_A_ROW: usize = 1 << 17;

/// How many calls in a row the long-run test cancels part way into their wait: the floor the
/// exercise README states (each costs a tick of the paused clock, so this run stops sooner).
const LATE_CANCELS_IN_A_ROW: usize = 1 << 12;

/// After a run of cancelled calls (`run` says which) on a full capacity-1 outbox waiting `wait`
/// (1.5 ms), its clock on a tick: the next call waits its own whole wait and answers `Busy` with
/// its message on the tick at 2 ms, and the call after it, during which the client reads the
/// message that filled the outbox 1 ms in, answers `Ok(())` then, its message the only one
/// delivered after that read (no cancelled call's message ever is). Leaves the outbox full again.
async fn next_calls_wait_their_wait_after(
    outbox: &Outbox,
    plain: &mpsc::Sender<ChatMessage>,
    rx: &mut mpsc::Receiver<ChatMessage>,
    run: &str,
) {
    let start = Instant::now();
    let seen = describe(&outbox.enqueue(line("bot", "anyone?")).await);
    let waited = start.elapsed();
    assert!(
        seen == "Busy(Some(\"anyone?\"))" && waited == Duration::from_millis(2),
        "after {run}, on a full outbox (wait 1.5ms) whose client is connected but not reading, \
         the next call answered {seen} after {waited:?}; expected Busy(Some(\"anyone?\")) when \
         its own wait ran out, on the tick at 2 ms: each call waits its own full wait, however \
         many calls the rooms cancelled before"
    );
    let start = Instant::now();
    let call = async {
        let seen = describe(&outbox.enqueue(line("bot", "at last")).await);
        (seen, start.elapsed())
    };
    let client = async {
        sleep(Duration::from_millis(1)).await;
        rx.recv().await.map(|m| m.text)
    };
    let ((seen, waited), read) = tokio::join!(call, client);
    let mut after = Vec::new();
    while let Ok(m) = rx.try_recv() {
        after.push(m.text);
    }
    assert!(
        seen == "Ok(())"
            && waited == Duration::from_millis(1)
            && read.as_deref() == Some("welcome to #rust")
            && after == ["at last"],
        "after {run} and one Busy, the client read one message 1 ms into the next call's wait of \
         1.5ms: the call answered {seen} after {waited:?}, the client read {read:?} and then \
         found {after:?} queued; expected Ok(()) after 1ms, then [\"at last\"] alone: a slot \
         freed during the wait is the call's, however many calls the rooms cancelled before, \
         and a cancelled call's message is never delivered"
    );
    plain.try_send(line("server", "welcome to #rust")).expect("the outbox has room again");
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

    /// A client that is gone while its outbox is full: the outbox is closed *and* has no room,
    /// and every call answers `Closed` with its message at once, whatever its wait (zero too).
    /// Two ways to get there: the client's writer closes its end with messages still queued
    /// (`Receiver::close`), or it drops its end while another room holds a reserved slot. A full
    /// outbox is not a busy one when nobody will ever read it.
    async fn a_full_outbox_whose_client_is_gone_answers_closed() {
        let waits = [
            Duration::ZERO,
            Duration::from_nanos(500),
            WAIT,
            Duration::from_secs(3600),
            Duration::MAX,
        ];
        for wait in waits {
            let cases = [
                (1, false, "closed its end of a capacity-1 outbox holding one message"),
                (3, false, "closed its end of a capacity-3 outbox holding three messages"),
                (1, true, "dropped its end while another room held a reserved slot of a capacity-1 outbox"),
                (2, true, "dropped its end while one message was queued and another room held the \
                           other slot of a capacity-2 outbox"),
            ];
            for (capacity, dropped, how) in cases {
                let (tx, mut rx) = mpsc::channel::<ChatMessage>(capacity);
                let queued = if dropped { capacity - 1 } else { capacity };
                for i in 0..queued {
                    tx.try_send(line("server", &format!("queued {i}"))).expect("room");
                }
                let (held, _rx) = if dropped {
                    let held = tx.try_reserve().expect("room for a reserved slot");
                    drop(rx);
                    (Some(held), None)
                } else {
                    rx.close();
                    (None, Some(rx))
                };
                let outbox = Outbox::new(tx.clone(), wait);
                let start = Instant::now();
                let result = outbox.enqueue(line("kim", "still there?")).await;
                let waited = start.elapsed();
                drop(held);
                let seen = describe(&result);
                let expected = "Closed(\"still there?\")";
                assert!(
                    seen == expected && waited.is_zero(),
                    "with a wait of {wait:?}, the client {how}; enqueue answered {seen} after \
                     {waited:?}, expected {expected} at once: the outbox has no room, but nobody \
                     will ever read it, so the client is gone, not slow, and the room must get \
                     the message back as Closed"
                );
            }
        }
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
                let waited = start.elapsed();
                assert!(
                    waited == WAIT,
                    "enqueue answered Busy after {waited:?}; on a full outbox it must answer when \
                     its wait of {WAIT:?} runs out, not earlier and not later"
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

    /// The far end of the wait's range: outboxes configured to wait hours, days, or as long as it
    /// takes (`Duration::MAX`, say for a bot account whose messages must never be dropped). Each
    /// call must queue at once into an outbox with room, use a slot the client frees however late
    /// in the wait, answer `Busy` only when the whole wait has run out, and `Closed` the moment
    /// the client leaves: `wait` is any `Duration`, neither capped nor a deadline that overflows.
    async fn the_longest_waits_are_waited_in_full() {
        const HOUR: u64 = 3600;
        const DAY: u64 = 24 * HOUR;
        const YEAR: u64 = 365 * DAY;
        let secs = Duration::from_secs;
        let as_long_as_it_takes = [Duration::MAX, secs(u64::MAX), secs(1000 * YEAR)];
        // (wait, when the client reads one message: before the wait runs out)
        let mut cases = vec![
            (secs(2 * HOUR), secs(90 * 60)),
            (secs(36 * HOUR), secs(30 * HOUR)),
            (secs(400 * DAY), secs(399 * DAY)),
            (secs(12 * YEAR), secs(11 * YEAR)),
        ];
        cases.extend(as_long_as_it_takes.iter().map(|&wait| (wait, secs(20 * YEAR))));
        for (wait, read_at) in cases {
            let what = format!("an outbox with a wait of {wait:?}");
            // Room: queued at once.
            let (tx, mut rx) = mpsc::channel(2);
            let outbox = Outbox::new(tx, wait);
            let (seen, waited) = enqueue_in_a_task(&outbox, "hello").await;
            assert!(
                seen == "Ok(())" && waited.is_zero() && rx.try_recv().is_ok(),
                "{what} and room for the message: enqueue answered {seen} after {waited:?}; \
                 expected Ok(()) at once, with the message in the outbox"
            );
            // Full, and the client reads late in the wait: the freed slot is this call's.
            let (outbox, _tx, mut rx) = full_outbox_waiting(wait);
            let reader = tokio::spawn(async move {
                sleep(read_at).await;
                let _welcome = rx.recv().await;
                sleep(Duration::from_secs(1)).await;
                rx.try_recv().map(|m| m.text).ok()
            });
            let (seen, waited) = enqueue_in_a_task(&outbox, "still there?").await;
            let arrived = reader.await.expect("the client's reader");
            assert!(
                seen == "Ok(())" && waited == read_at && arrived.as_deref() == Some("still there?"),
                "{what}, full; the client read one message {read_at:?} into the wait: enqueue \
                 answered {seen} after {waited:?} and the client then received {arrived:?}; \
                 expected Ok(()) after {read_at:?}, with the message delivered. A slot that frees \
                 up before the wait has run out belongs to the call, however long the wait"
            );
            // Full, and the client leaves part way: Closed at that moment.
            let (outbox, _tx, rx) = full_outbox_waiting(wait);
            let leave_at = read_at / 2;
            tokio::spawn(async move {
                sleep(leave_at).await;
                drop(rx);
            });
            let (seen, waited) = enqueue_in_a_task(&outbox, "bye?").await;
            assert!(
                seen == "Closed(\"bye?\")" && waited == leave_at,
                "{what}, full; the client disconnected {leave_at:?} into the wait: enqueue \
                 answered {seen} after {waited:?}; expected Closed(\"bye?\") after {leave_at:?}"
            );
        }
        // Full, and nobody reads: Busy exactly when a long (but finite) wait runs out.
        for wait in [secs(2 * HOUR), secs(36 * HOUR), secs(400 * DAY)] {
            let (outbox, _tx, _rx) = full_outbox_waiting(wait);
            let (seen, waited) = enqueue_in_a_task(&outbox, "anyone?").await;
            assert!(
                seen == "Busy(Some(\"anyone?\"))" && waited == wait,
                "an outbox with a wait of {wait:?}, full, the client never reading: enqueue \
                 answered {seen} after {waited:?}; expected Busy(Some(\"anyone?\")) after \
                 {wait:?}, when the whole wait has run out (a wait is never capped)"
            );
        }
    }

    /// However long the wait, a full outbox whose client never reads answers `Busy` when the wait
    /// runs out, not never: waits of decades, centuries and ten thousand years (on the
    /// paused clock, where they cost next to nothing) are waits like any other, so no length
    /// past some threshold may mean "for ever". tokio's `sleep` waits at most about 30 years, so
    /// for a longer wait `Busy` may come then, or when the wait has run out, and never between.
    /// At the very end of the range (`Duration::MAX` and values next to it, where `Instant::now()
    /// + wait` overflows), `enqueue` must not panic, and is still waiting after 30 years unless it
    /// answered `Busy` with the message at tokio's 30-year limit.
    async fn however_long_the_wait_a_client_that_never_reads_gets_busy() {
        const YEAR: u64 = 365 * 24 * 3600;
        let secs = Duration::from_secs;
        // The longest a tokio `sleep` waits (`tokio::time::sleep` saturates there).
        let sleep_limit = secs(30 * YEAR);
        let finite = [
            secs(20 * YEAR + 1),
            secs(25 * YEAR),
            secs(30 * YEAR - 1),
            sleep_limit,
            secs(30 * YEAR + 1),
            secs(40 * YEAR),
            secs(100 * YEAR),
            secs(1000 * YEAR),
            secs(10_000 * YEAR),
        ];
        for wait in finite {
            let (outbox, _tx, _rx) = full_outbox_waiting(wait);
            let answer = timeout(wait + secs(24 * 3600), enqueue_in_a_task(&outbox, "anyone?")).await;
            let expected = "Busy(Some(\"anyone?\"))";
            let on_time = |waited: Duration| waited == wait || (wait > sleep_limit && waited == sleep_limit);
            match answer {
                Ok((seen, waited)) if seen == expected && on_time(waited) => {}
                Ok((seen, waited)) => panic!(
                    "an outbox with a wait of {wait:?}, full, the client connected but never \
                     reading: enqueue answered {seen} after {waited:?}; expected {expected} after \
                     {wait:?}, when the whole wait has run out (or after {sleep_limit:?}, where \
                     tokio's `sleep` stops, for a longer wait)"
                ),
                Err(_) => panic!(
                    "an outbox with a wait of {wait:?}, full, the client connected but never \
                     reading: enqueue had not answered a day after its wait ran out; expected \
                     {expected} after {wait:?}. A wait of decades or more is still a wait that \
                     runs out, not \"wait for ever\""
                ),
            }
        }
        let very_end = [
            Duration::MAX,
            Duration::MAX - Duration::from_nanos(1),
            secs(u64::MAX),
            secs(u64::MAX - 1),
            secs(i64::MAX.unsigned_abs()),
        ];
        for wait in very_end {
            let (outbox, _tx, _rx) = full_outbox_waiting(wait);
            let call = tokio::spawn({
                let outbox = outbox.clone();
                async move { enqueue_in_a_task(&outbox, "anyone?").await }
            });
            sleep(secs(100 * YEAR)).await;
            if call.is_finished() {
                let (seen, waited) = match call.await {
                    Ok(answer) => answer,
                    // `enqueue_in_a_task` has said what panicked.
                    Err(error) => std::panic::resume_unwind(error.into_panic()),
                };
                assert!(
                    seen == "Busy(Some(\"anyone?\"))" && waited == sleep_limit,
                    "an outbox with a wait of {wait:?} (as long as it takes), full, the client \
                     never reading: enqueue answered {seen} after {waited:?}; expected it still \
                     waiting after a hundred years, or Busy(Some(\"anyone?\")) after \
                     {sleep_limit:?}, where tokio's `sleep` stops"
                );
            } else {
                call.abort();
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

    /// A member in many busy rooms: 1,000 rooms `enqueue` for them at once on a full outbox (on
    /// the outbox they share and on clones of it), with a wait of two seconds, while the client
    /// reads a message every millisecond. A slot frees for each call well inside its wait, so
    /// every call must answer Ok(()) and deliver its message once, in the order the calls were
    /// made: nothing in the task caps how many calls may wait on one outbox.
    async fn a_crowd_of_rooms_waiting_at_once_each_get_their_slot() {
        const ROOMS: usize = 1000;
        let (tx, mut rx) = mpsc::channel(1);
        tx.try_send(line("server", "welcome to #rust")).expect("room for one message");
        let shared = Arc::new(Outbox::new(tx, Duration::from_secs(2)));
        let calls: Vec<_> = (0..ROOMS)
            .map(|i| {
                let outbox =
                    if i % 2 == 0 { shared.clone() } else { Arc::new((*shared).clone()) };
                tokio::spawn(async move {
                    let result = outbox.enqueue(line("room", &format!("room {i}"))).await;
                    (describe(&result), i)
                })
            })
            .collect();
        let reader = tokio::spawn(async move {
            let mut read = Vec::new();
            for _ in 0..=ROOMS {
                sleep(Duration::from_millis(1)).await;
                match rx.try_recv() {
                    Ok(m) => read.push(m.text),
                    Err(_) => break,
                }
            }
            read
        });
        let mut busy = Vec::new();
        for call in calls {
            let (answer, i) = call.await.expect("an enqueue task panicked");
            if answer != "Ok(())" {
                busy.push(format!("room {i}: {answer}"));
            }
        }
        let read = reader.await.expect("the reader panicked");
        let expected: Vec<String> = std::iter::once("welcome to #rust".to_owned())
            .chain((0..ROOMS).map(|i| format!("room {i}")))
            .collect();
        assert!(
            busy.is_empty() && read == expected,
            "{ROOMS} rooms called `enqueue` at once on a full outbox with a 2 s wait, and the \
             client read a message every millisecond, so a slot freed for every call well inside \
             its wait: each should have answered Ok(()) and been read once, in the order of the \
             calls. {} call(s) did not answer Ok(()) (the first: {:?}), and the client read {} \
             message(s), the first out of order or missing at position {:?}",
            busy.len(),
            busy.first(),
            read.len(),
            read.iter().zip(&expected).position(|(a, b)| a != b).or(
                (read.len() != expected.len()).then_some(read.len().min(expected.len()))
            )
        );
    }

    /// The floor of any cap on waiting calls (README: 8,192): ROOMS calls wait on one full outbox
    /// (shared and cloned) with a wait of a second, a plain sender of the same channel starts after all of
    /// them, and at 500 ms the client reads everything at once. Every call was waiting in line, so
    /// every call answers Ok(()) at 500 ms, and the client reads the rooms' messages in the order
    /// of the calls, then the plain sender's: no call answers before its wait runs out, and none
    /// waits anywhere but in the channel's line, however many others wait too.
    fn thousands_of_rooms_all_wait_in_line() {
        // One `select!` seed is enough: the test races nothing itself, and how many calls may
        // wait does not depend on the order in which a fix's own `select!` polls its branches.
        let runtime = kata_support::runtime::current_thread(kata_support::runtime::SEEDS[0]);
        runtime.block_on(async {
            const ROOMS: usize = 8_192;
            let (tx, mut rx) = mpsc::channel(1);
            tx.try_send(line("server", "welcome to #rust")).expect("room for one message");
            let shared = Arc::new(Outbox::new(tx.clone(), Duration::from_secs(1)));
            let start = Instant::now();
            let calls: Vec<_> = (0..ROOMS)
                .map(|i| {
                    let outbox =
                        if i % 2 == 0 { shared.clone() } else { Arc::new((*shared).clone()) };
                    tokio::spawn(async move {
                        let result = outbox.enqueue(line("room", &format!("room {i}"))).await;
                        (describe(&result), start.elapsed())
                    })
                })
                .collect();
            sleep(Duration::from_millis(1)).await;
            let plain = tx.clone();
            let later = tokio::spawn(async move { plain.send(line("plain", "sent later")).await.is_ok() });
            sleep(Duration::from_millis(499)).await;
            // Every slot the client frees is taken at this same moment: one bound for the lot.
            let mut read = Vec::with_capacity(ROOMS + 2);
            let _ = timeout(Duration::from_millis(1), async {
                while read.len() < ROOMS + 2 {
                    match rx.recv().await {
                        Some(m) => read.push(m.text),
                        None => break,
                    }
                }
            })
            .await;
            let mut not_ok = Vec::new();
            for (i, call) in calls.into_iter().enumerate() {
                let (answer, at) = call.await.expect("an enqueue task panicked");
                if answer != "Ok(())" || at != Duration::from_millis(500) {
                    not_ok.push(format!("room {i}: {answer} after {at:?}"));
                }
            }
            let sent_later = later.await.expect("the plain sender panicked");
            let expected: Vec<String> = std::iter::once("welcome to #rust".to_owned())
                .chain((0..ROOMS).map(|i| format!("room {i}")))
                .chain(std::iter::once("sent later".to_owned()))
                .collect();
            let mismatch = read.iter().zip(&expected).position(|(a, b)| a != b);
            let order = match mismatch {
                Some(at) => format!(
                    "message {at} the client read was {:?}, expected {:?}",
                    read[at], expected[at]
                ),
                None if read.len() != expected.len() => format!(
                    "the client read {} message(s), expected {}",
                    read.len(),
                    expected.len()
                ),
                None => "the client read every message in order".to_string(),
            };
            assert!(
                not_ok.is_empty() && sent_later && read == expected,
                "{ROOMS} rooms called `enqueue` at once on a full outbox with a 1 s wait, a plain \
                 sender of the same channel started 1 ms later, and the client read every message at \
                 500 ms: each call should have answered Ok(()) at 500 ms and been read in the order \
                 of the calls, before the plain sender's message. {} call(s) did not answer Ok(()) at \
                 500 ms (the first: {:?}), and {order}: no call may answer before its wait runs out, \
                 nor wait anywhere but in the channel's line, however many calls wait on one outbox",
                not_ok.len(),
                not_ok.first(),
            );
        });
    }

    /// The floor of "for ever": a wait shorter than a hundred thousand years is a wait that runs
    /// out (README: only from a hundred thousand years up may `enqueue` wait for good). Waits a
    /// millisecond under that floor, and at every power of two of seconds a fix might take for
    /// "for ever" below it (2^30 s to 2^41 s), with a client connected that never reads: each
    /// answers `Busy` with the message when the wait has run out (or at tokio's 30-year `sleep`
    /// limit), never later, never in between. One `select!` seed, since no branch of a fix's
    /// `select!` is ready at the same moment as another here (and tokio's timer steps about two
    /// years at a time toward each far deadline: the floor is what that costs).
    fn waits_short_of_a_hundred_thousand_years_run_out() {
        let runtime = kata_support::runtime::current_thread(kata_support::runtime::SEEDS[0]);
        runtime.block_on(async {
            let secs = Duration::from_secs;
            let sleep_limit = kata_support::time::SLEEP_LIMIT;
            for wait in kata_support::time::waits_short_of_a_hundred_thousand_years() {
                let (outbox, _tx, _rx) = full_outbox_waiting(wait);
                let answer =
                    timeout(wait + secs(24 * 3600), enqueue_in_a_task(&outbox, "anyone?")).await;
                let expected = "Busy(Some(\"anyone?\"))";
                let on_time = |waited: Duration| {
                    waited == wait || (wait > sleep_limit && waited == sleep_limit)
                };
                match answer {
                    Ok((seen, waited)) if seen == expected && on_time(waited) => {}
                    Ok((seen, waited)) => panic!(
                        "an outbox with a wait of {wait:?}, full, the client connected but never \
                         reading: enqueue answered {seen} after {waited:?}; expected {expected} \
                         after {wait:?} (or after {sleep_limit:?}, where tokio's `sleep` stops)"
                    ),
                    Err(_) => panic!(
                        "an outbox with a wait of {wait:?}, full, the client connected but never \
                         reading: enqueue had not answered a day after its wait ran out; expected \
                         {expected} after {wait:?}. Only a wait of a hundred thousand years or \
                         more may be waited for good: any shorter wait runs out"
                    ),
                }
            }
        });
    }

    /// A long run of calls on one outbox whose client stays connected but does not read: 20,000
    /// calls in a row (on the outbox and on a clone of it), each with a wait of 1.5 ms, each answer
    /// `Busy` with its own message when its own whole wait has run out, however many `Busy` came
    /// before (no count of them makes the next call give up sooner), and the next call, during
    /// which the client reads at last, uses the slot at that moment. One `select!` seed: nothing
    /// here is ready at the same moment as anything else.
    fn twenty_thousand_busy_calls_in_a_row_each_wait_their_wait() {
        const CALLS: usize = 20_000;
        let runtime = kata_support::runtime::current_thread(kata_support::runtime::SEEDS[0]);
        runtime.block_on(async {
            let wait = Duration::from_micros(1500);
            let (outbox, _tx, mut rx) = full_outbox_waiting(wait);
            let clone = outbox.clone();
            for i in 0..CALLS {
                let which = if i % 2 == 0 { &outbox } else { &clone };
                let start = Instant::now();
                let result = which.enqueue(line("bot", "anyone?")).await;
                let waited = start.elapsed();
                let seen = describe(&result);
                // The call starts on a tick, so its 1.5 ms run out on the tick at 2 ms.
                assert!(
                    seen == "Busy(Some(\"anyone?\"))" && waited == Duration::from_millis(2),
                    "call {} of {CALLS} in a row on a full outbox (wait {wait:?}) whose client is \
                     connected but not reading answered {seen} after {waited:?}; expected \
                     Busy(Some(\"anyone?\")) when its own wait ran out, on the tick at 2 ms, \
                     however many Busy answers came before it",
                    i + 1
                );
            }
            let start = Instant::now();
            let reader = tokio::spawn(async move {
                sleep(Duration::from_millis(1)).await;
                let _welcome = rx.recv().await;
                sleep(Duration::from_secs(1)).await;
                rx.try_recv().map(|m| m.text).ok()
            });
            let seen = describe(&outbox.enqueue(line("bot", "at last")).await);
            let waited = start.elapsed();
            let arrived = reader.await.expect("the client's reader");
            assert!(
                seen == "Ok(())"
                    && waited == Duration::from_millis(1)
                    && arrived.as_deref() == Some("at last"),
                "after {CALLS} Busy answers in a row, the client read one message 1 ms into the \
                 next call's wait of {wait:?}: the call answered {seen} after {waited:?} and the \
                 client then received {arrived:?}; expected Ok(()) after 1ms with the message \
                 delivered: a slot freed during the wait is the call's, however many Busy came \
                 before"
            );
        });
    }

    /// No run of cancelled calls, however long, makes the next call give up sooner: the rooms
    /// cancel 131,072 calls in a row before their first poll, 131,072 at their first poll, and
    /// 4,096 part way into their wait (1 ms into a wait of 1.5 ms), on a full outbox and a clone
    /// of it in turn. Every call of a run is checked as it is cut (it was still waiting: no call
    /// answers before its wait ran out), so a breaker is caught when it trips; and after each run
    /// a call waits its whole wait and answers `Busy`, and the next uses the slot the client
    /// frees during it. Polled by hand with a no-op waker on one seed's runtime (nothing here is
    /// ready at the same moment as anything else), so the test stays cheap.
    fn thousands_of_cancelled_calls_in_a_row_leave_each_next_call_its_wait() {
        let runtime = kata_support::runtime::current_thread(kata_support::runtime::SEEDS[0]);
        runtime.block_on(async {
            let wait = Duration::from_micros(1500);
            let (outbox, plain, mut rx) = full_outbox_waiting(wait);
            let clone = outbox.clone();
            let handles = [("the outbox", &outbox), ("its clone", &clone)];
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());

            for n in 0..CANCELS_IN_A_ROW {
                drop(handles[n % 2].1.enqueue(line("bot", "never sent")));
            }
            let run =
                format!("{CANCELS_IN_A_ROW} calls in a row cancelled before their first poll");
            next_calls_wait_their_wait_after(&outbox, &plain, &mut rx, &run).await;

            for n in 0..CANCELS_IN_A_ROW {
                if n % 64 == 0 {
                    // A fresh cooperative budget, as a room's task has after a turn.
                    tokio::task::yield_now().await;
                }
                let (name, handle) = handles[n % 2];
                let call = std::pin::pin!(handle.enqueue(line("bot", "never sent")));
                if let std::task::Poll::Ready(result) = call.poll(&mut cx) {
                    panic!(
                        "call {} of a run of calls that the rooms cancelled in a row at their \
                         first poll, made through {name} (full, with a wait of {wait:?}, its \
                         client connected), answered {} on its first poll, expected Pending \
                         (waiting): each call waits its own wait, however many calls the rooms \
                         cancelled before",
                        n + 1,
                        describe(&result)
                    );
                }
            }
            let run = format!("{CANCELS_IN_A_ROW} calls in a row cancelled at their first poll");
            next_calls_wait_their_wait_after(&outbox, &plain, &mut rx, &run).await;

            for n in 0..LATE_CANCELS_IN_A_ROW {
                let (name, handle) = handles[n % 2];
                let start = Instant::now();
                let call = handle.enqueue(line("bot", "never sent"));
                let cut = timeout(Duration::from_millis(1), call);
                if let Ok(result) = cut.await {
                    panic!(
                        "call {} of a run of calls that the rooms cancelled in a row 1 ms into \
                         their wait, made through {name} (full, with a wait of {wait:?}, its \
                         client connected), answered {} after {:?}, before its wait ran out \
                         (on the tick at 2 ms): each call waits its own wait, however many calls \
                         the rooms cancelled before",
                        n + 1,
                        describe(&result),
                        start.elapsed()
                    );
                }
            }
            let run = format!("{LATE_CANCELS_IN_A_ROW} calls in a row cut 1 ms into their wait");
            next_calls_wait_their_wait_after(&outbox, &plain, &mut rx, &run).await;
        });
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
                "enqueue was polled first on a full outbox, then another sender started a `send`; \
                 the client read one message, and the sender that came later took the freed slot \
                 while enqueue returned {}. The slot that frees up belongs to the sender that \
                 asked first: enqueue must be in line for space from its first poll, and keep \
                 its place until its message is in the slot",
                describe(&other)
            ),
            Err(_) => panic!("enqueue did not finish after a slot freed up for it"),
        }
        assert_eq!(rx.recv().await, Some(line("alice", "first in line")));
        drop(later);
    }

    /// One call after another on an outbox the client does not read: each call, after a `Busy`
    /// and after a call the room cancelled, waits its own full wait, and then uses a slot that
    /// frees up during it. Nothing an earlier call left behind is delivered.
    async fn each_call_waits_its_own_wait_after_busy_or_cancel() {
        let (outbox, _tx, mut rx) = full_outbox();
        for (round, text) in ["brb", "still here", "hello?"].into_iter().enumerate() {
            let start = Instant::now();
            let result = timeout(Duration::from_secs(10), outbox.enqueue(line("gus", text))).await;
            let waited = start.elapsed();
            match result {
                Ok(Err(EnqueueError::Busy(Some(m)))) if m.text == text && waited == WAIT => {}
                Ok(other) => panic!(
                    "call {} on a full outbox (after {round} earlier call(s) answered Busy or \
                     were cancelled) answered {} after {waited:?}; expected Busy({text:?}) when \
                     its own wait of {WAIT:?} runs out",
                    round + 1,
                    describe(&other)
                ),
                Err(_) => panic!("call {} on a full outbox never returned", round + 1),
            }
            // The room gives up on a call a fifth of the way into its wait.
            let cancelled = timeout(WAIT / 5, outbox.enqueue(line("gus", "never sent"))).await;
            assert!(
                cancelled.is_err(),
                "on a full outbox, a call answered {} after {:?}, before its wait ran out",
                cancelled.as_ref().map(describe).unwrap_or_default(),
                WAIT / 5
            );
        }
        // Still full; the client reads one message halfway into the next call's wait.
        let reader = tokio::spawn(async move {
            sleep(WAIT / 2).await;
            let first = rx.recv().await;
            sleep(Duration::from_secs(1)).await;
            let mut rest = Vec::new();
            while let Ok(m) = rx.try_recv() {
                rest.push(m.text);
            }
            (first, rest)
        });
        let start = Instant::now();
        let result = outbox.enqueue(line("gus", "back online")).await;
        let waited = start.elapsed();
        assert!(
            result.is_ok() && waited == WAIT / 2,
            "after earlier calls answered Busy or were cancelled, a call on the still-full outbox \
             answered {} after {waited:?}; the client read a message {:?} into its wait, so it \
             must answer Ok(()) then (each call waits its own wait; an earlier Busy says nothing \
             about this one)",
            describe(&result),
            WAIT / 2
        );
        let (first, rest) = reader.await.expect("the client's reader");
        assert_eq!(first.map(|m| m.text), Some("welcome to #rust".to_string()));
        assert_eq!(
            rest,
            vec!["back online".to_string()],
            "the client must receive only the message of the call that answered Ok(()); messages \
             handed back in Busy or dropped with a cancelled call are never delivered"
        );
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

    /// The room cancels `enqueue` at every point, whatever the outbox's wait: zero, under a timer
    /// tick, a few ticks, seconds, just under and over a minute, ten minutes, an hour, a day, a
    /// year, `Duration::MAX`; the client reading within the wait, and (where the wait is short
    /// enough to let it run out) only after it. Whatever the wait, a cancelled call leaves nothing
    /// behind: no task of its own still waits for a slot once the cut has settled, and its message
    /// is never delivered, then or later (once the client reads). Each wait runs on a runtime of
    /// its own, the `select!` seeds taken in turn.
    fn a_cancelled_enqueue_leaves_nothing_behind_whatever_the_wait() {
        let ms = Duration::from_millis;
        let secs = Duration::from_secs;
        const HOUR: u64 = 3600;
        const YEAR: u64 = 365 * 24 * HOUR;
        // The client may read at most this far into a run: the explorer waits an hour for a wakeup.
        let latest = secs(30 * 60);
        let waits = [
            Duration::ZERO,
            Duration::from_nanos(500),
            Duration::from_micros(1500),
            ms(50),
            secs(59),
            secs(60),
            secs(61),
            secs(600),
            secs(HOUR),
            secs(24 * HOUR),
            secs(YEAR),
            Duration::MAX,
        ];
        let mut cases = Vec::new();
        for wait in waits {
            cases.push((wait, (wait / 2).min(latest)));
            if wait <= secs(600) {
                cases.push((wait, wait * 2 + ms(3)));
            }
        }
        for (index, (wait, drain_after)) in cases.into_iter().enumerate() {
            let seed = kata_support::runtime::SEEDS[index % kata_support::runtime::SEEDS.len()];
            let runtime = kata_support::runtime::current_thread(seed);
            let explored = runtime.block_on(explore_with(
                Options::default().forbid_leftover_tasks(),
                || Rig::waiting(wait, drain_after),
                |rig: Rig| async move { rig.outbox.enqueue(line("dave", "see you")).await },
                |rig, outcome| check_delivery(rig, outcome, "see you"),
            ));
            if let Err(failure) = explored {
                panic!(
                    "an outbox with a wait of {wait:?}, full, its client reading from \
                     {drain_after:?} on; the room cancelled `enqueue`: {failure}. Whatever the \
                     wait, a cancelled `enqueue` has not queued its message and never will: \
                     nothing may go on waiting for a slot on its behalf"
                );
            }
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
            waited == WAIT / 2,
            "the client disconnected {:?} into the wait, but enqueue only answered after \
             {waited:?}",
            WAIT / 2
        );
    }

    /// Over any wait, a zero wait too, and any moment the client reads or leaves: a slot freed
    /// during the wait is used at once, a client leaving during the wait is `Closed` at once, and
    /// otherwise `Busy` comes back with the message when the wait runs out, not later (with a zero
    /// wait, on the very first poll).
    fn answers_within_the_wait_whatever_the_client_does() {
        check_property(160, waits_and_clients(), |(wait_us, client)| async move {
            let (tx, rx) = mpsc::channel(1);
            tx.try_send(line("server", "welcome to #rust")).expect("room for one message");
            let wait = Duration::from_micros(wait_us);
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
            // A moment the client acts at, and the moment the wait runs out: the first timer tick
            // (a whole millisecond) at or after `wait`.
            let tick = Duration::from_millis(wait_us.div_ceil(1000));
            let (expected, at, why) = match client {
                Client::ReadsAfter(ms) if ms * 1000 < wait_us => (
                    "Ok(())",
                    Duration::from_millis(ms),
                    "a slot freed during the wait is used at once",
                ),
                Client::LeavesAfter(ms) if ms * 1000 < wait_us => (
                    "Closed(\"hello from the train\")",
                    Duration::from_millis(ms),
                    "a client that leaves during the wait is answered Closed at once",
                ),
                _ => (
                    "Busy(Some(\"hello from the train\"))",
                    tick,
                    "Busy comes when the wait has run out, on the first timer tick at or after \
                     it: never before, and no later",
                ),
            };
            let seen = describe(&result);
            if matches!(result, Err(EnqueueError::Busy(_))) && waited < wait {
                return Err(format!(
                    "with a wait of {wait:?} on a full outbox, enqueue answered {seen} after \
                     {waited:?}, before its wait had run out (expected {expected} after {at:?}): \
                     Busy means the outbox stayed full for the whole wait"
                ));
            }
            if seen != expected {
                return Err(format!(
                    "with a wait of {wait:?}, enqueue answered {seen} after {waited:?}; expected \
                     {expected} after {at:?}"
                ));
            }
            if waited != at {
                return Err(format!(
                    "with a wait of {wait:?}, enqueue answered {seen} after {waited:?}; it should \
                     have answered after {at:?} ({why})"
                ));
            }
            Ok(())
        });
    }

    /// A zero wait means "do not wait": on a full outbox whose client is about to read (its
    /// writer task is ready to run), `enqueue` answers `Busy` with the message on its very first
    /// poll, without giving the writer a turn first.
    async fn a_zero_wait_answers_on_the_first_poll_with_the_client_about_to_read() {
        let (tx, mut rx) = mpsc::channel(1);
        tx.try_send(line("server", "welcome to #rust")).expect("room for one message");
        let outbox = Outbox::new(tx.clone(), Duration::ZERO);
        let reader = tokio::spawn(async move { rx.recv().await.map(|m| m.text) });
        let mut call = task::spawn(outbox.enqueue(line("grace", "no time to wait")));
        let expected = "Busy(Some(\"no time to wait\"))";
        match call.poll() {
            std::task::Poll::Ready(result) => {
                let seen = describe(&result);
                assert!(
                    seen == expected,
                    "with a zero wait on a full outbox, the client's writer about to read, \
                     enqueue answered {seen} on its first poll; expected {expected}: a zero wait \
                     means \"do not wait\", so the answer is Busy at once"
                );
            }
            std::task::Poll::Pending => panic!(
                "with a zero wait on a full outbox, enqueue was still pending after its first \
                 poll; expected {expected} at once: a zero wait means \"do not wait\", not \
                 \"let the client have a turn first\""
            ),
        }
        drop(call);
        let read = reader.await.expect("the reader task ends");
        assert_eq!(read.as_deref(), Some("welcome to #rust"));
    }

    /// Whatever the wait, even none at all, an outbox with room queues the message at once:
    /// `Busy` is only for an outbox that stayed full, and this one never was.
    fn an_outbox_with_room_queues_at_once_whatever_the_wait() {
        let cases = waits_and_outboxes_with_room();
        check_property(64, cases, |(wait_ms, capacity, queued)| async move {
            let (tx, mut rx) = mpsc::channel(capacity);
            for i in 0..queued {
                tx.try_send(line("server", &format!("backlog {i}"))).expect("room for the backlog");
            }
            let wait = Duration::from_millis(wait_ms);
            let outbox = Outbox::new(tx.clone(), wait);
            let start = Instant::now();
            let result = outbox.enqueue(line("alice", "hello")).await;
            let waited = start.elapsed();
            let seen = describe(&result);
            if seen != "Ok(())" || !waited.is_zero() {
                return Err(format!(
                    "the outbox has room for {capacity} message(s) and held {queued}, so there was \
                     room; with a wait of {wait:?}, enqueue answered {seen} after {waited:?}; \
                     expected Ok(()) at once (Busy means the outbox stayed full for the whole \
                     wait, whatever the wait)"
                ));
            }
            let mut texts = Vec::new();
            while let Ok(m) = rx.try_recv() {
                texts.push(m.text);
            }
            if texts.last().map(String::as_str) != Some("hello") || texts.len() != queued + 1 {
                return Err(format!(
                    "enqueue answered Ok(()) into an outbox with room, but the outbox then held \
                     {texts:?}; expected the {queued} earlier message(s), then \"hello\" once"
                ));
            }
            Ok(())
        });
    }

    /// On a full outbox, other senders start a plain `send` at any moments during the wait, and
    /// the client reads one message at any moment during it: the freed slot belongs to `enqueue`,
    /// which asked first, however long it has been waiting and whoever came after it.
    fn a_later_sender_never_overtakes_a_waiting_enqueue() {
        check_property(96, latecomers_and_a_read(), |(wait_ms, arrivals, read_ms)| async move {
            let (tx, mut rx) = mpsc::channel(1);
            tx.try_send(line("server", "welcome to #rust")).expect("room for one message");
            let wait = Duration::from_millis(wait_ms);
            let outbox = Outbox::new(tx.clone(), wait);
            let reader = tokio::spawn(async move {
                sleep(Duration::from_millis(read_ms)).await;
                let first = rx.recv().await.map(|m| m.text);
                (first, rx)
            });
            for (i, &at) in arrivals.iter().enumerate() {
                let tx = tx.clone();
                tokio::spawn(async move {
                    sleep(Duration::from_millis(at)).await;
                    let _ = tx.send(line("bob", &format!("latecomer {}", i + 1))).await;
                });
            }
            let start = Instant::now();
            let result = outbox.enqueue(line("alice", "first in line")).await;
            let waited = start.elapsed();
            let (first, mut rx) = reader.await.expect("the client's reader");
            if first.as_deref() != Some("welcome to #rust") {
                return Err(format!("the client read {first:?} first; expected the welcome line"));
            }
            let slot = rx.try_recv().map(|m| m.text).ok();
            let seen = describe(&result);
            let read_at = Duration::from_millis(read_ms);
            if seen != "Ok(())" || waited != read_at || slot.as_deref() != Some("first in line") {
                return Err(format!(
                    "with a wait of {wait:?} on a full outbox, other senders started a plain \
                     `send` at {arrivals:?} ms and the client read one message after {read_at:?}; \
                     enqueue, which asked first, answered {seen} after {waited:?}, and the freed \
                     slot went to {slot:?}. Expected Ok(()) after {read_at:?}, with the slot \
                     holding \"first in line\": the slot belongs to the sender first in line, \
                     and enqueue must be in line from its first poll and stay there for its whole \
                     wait"
                ));
            }
            Ok(())
        });
    }

    /// A wait shorter than a timer tick is still a wait: on a full outbox whose client reads at once
    /// or at a whole millisecond before the wait runs out, `enqueue` uses the freed slot; otherwise
    /// `Busy` comes on the first tick at or after the wait, never before.
    fn a_wait_shorter_than_a_tick_is_still_a_wait() {
        check_property(96, short_waits_and_clients(), |(wait_us, read)| async move {
            let (tx, rx) = mpsc::channel(1);
            tx.try_send(line("server", "welcome to #rust")).expect("room for one message");
            let wait = Duration::from_micros(wait_us);
            let outbox = Outbox::new(tx.clone(), wait);
            let reader = tokio::spawn(async move {
                let mut rx = rx;
                match read {
                    Some(u64::MAX) => {}
                    Some(ms) => sleep(Duration::from_millis(ms)).await,
                    None => sleep(Duration::from_secs(3600)).await,
                }
                let _ = rx.recv().await;
                rx
            });
            let start = Instant::now();
            let result = outbox.enqueue(line("ivan", "short and sweet")).await;
            let waited = start.elapsed();
            reader.abort();
            let (client, expected, at, why) = match read {
                Some(u64::MAX) => (
                    "the client's writer, ready to run, read one message at once".to_string(),
                    "Ok(())",
                    Duration::ZERO,
                    "a slot freed during the wait belongs to enqueue",
                ),
                Some(ms) => (
                    format!("the client read one message after {ms} ms"),
                    "Ok(())",
                    Duration::from_millis(ms),
                    "a slot freed during the wait belongs to enqueue",
                ),
                None => (
                    "the client never read".to_string(),
                    "Busy(Some(\"short and sweet\"))",
                    Duration::from_millis(wait_us.div_ceil(1000)),
                    "Busy comes once the wait has run out, on that tick, never before",
                ),
            };
            let seen = describe(&result);
            if seen != expected || waited != at {
                return Err(format!(
                    "with a wait of {wait:?} on a full outbox, {client}; enqueue answered {seen} \
                     after {waited:?}, expected {expected} after {at:?}. A wait shorter than a \
                     timer tick is still a wait (only a zero wait means \"do not wait\"): tokio \
                     rounds the deadline up to the next millisecond tick, and {why}"
                ));
            }
            Ok(())
        });
    }

    /// A wait of a few nanoseconds is still a wait: only a zero wait means "do not wait". On a
    /// full outbox whose client's writer is ready to read at once, a wait of 1 ns, 500 ns or
    /// 999 ns (as of any length) uses the slot the client frees; a client that never reads gets
    /// `Busy` on the first tick at or after the wait, never before.
    async fn a_wait_of_a_few_nanoseconds_is_still_a_wait() {
        for wait_ns in [1u64, 2, 10, 100, 500, 999, 1_001, 999_999] {
            for reads in [true, false] {
                let (tx, rx) = mpsc::channel(1);
                tx.try_send(line("server", "welcome to #rust")).expect("room for one message");
                let wait = Duration::from_nanos(wait_ns);
                let outbox = Outbox::new(tx.clone(), wait);
                let reader = tokio::spawn(async move {
                    let mut rx = rx;
                    if !reads {
                        sleep(Duration::from_secs(3600)).await;
                    }
                    let _ = rx.recv().await;
                    rx
                });
                let start = Instant::now();
                let result = outbox.enqueue(line("judy", "in a blink")).await;
                let waited = start.elapsed();
                reader.abort();
                let (client, expected, at) = if reads {
                    ("the client's writer, ready to run, read one message at once", "Ok(())", 0)
                } else {
                    ("the client never read", "Busy(Some(\"in a blink\"))", 1)
                };
                let at = Duration::from_millis(at);
                let seen = describe(&result);
                assert!(
                    seen == expected && waited == at,
                    "with a wait of {wait:?} on a full outbox, {client}; enqueue answered {seen} \
                     after {waited:?}, expected {expected} after {at:?}. However short, a wait \
                     that is not zero is a wait: it runs out on the first timer tick at or after \
                     it, and a slot freed before then belongs to enqueue"
                );
            }
        }
    }

    /// The same from a clock that is not on a tick (a room calls between two ticks): the wait runs
    /// out on the first tick at or after the call's moment plus the wait, as tokio's own timer
    /// rounds it, not a tick later; and until that tick `enqueue` is still waiting, so a slot the
    /// client frees before it, even after the wait's length has passed, belongs to `enqueue`.
    fn the_wait_runs_out_on_its_tick_wherever_the_call_starts() {
        check_property(96, off_tick_calls(), |(offset_us, wait_us, read_us)| async move {
            let (tx, mut rx) = mpsc::channel(1);
            tx.try_send(line("server", "welcome to #rust")).expect("room for one message");
            let wait = Duration::from_micros(wait_us);
            let outbox = Outbox::new(tx.clone(), wait);
            let tick = Instant::now();
            let us = Duration::from_micros;
            tokio::time::advance(us(offset_us)).await;
            let runs_out_us = (offset_us + wait_us).div_ceil(1000) * 1000;
            let runs_out = us(runs_out_us - offset_us);
            let scene = format!(
                "enqueue was called {offset_us} µs past a timer tick, with a wait of {wait:?}, on \
                 a full outbox; the wait runs out on the tick {runs_out:?} after the call"
            );
            let mut call = task::spawn(outbox.enqueue(line("judy", "between two ticks")));
            if let std::task::Poll::Ready(result) = call.poll() {
                return Err(format!(
                    "{scene}, but enqueue answered {} on its first poll; expected it to wait",
                    describe(&result)
                ));
            }
            // Moves the clock to `at` (counted from the tick before the call) and polls the call.
            let mut poll_at = async |at_us: u64| {
                tokio::time::advance((tick + us(at_us)) - Instant::now()).await;
                call.poll().map(|result| describe(&result))
            };
            match read_us {
                Some(read_us) => {
                    let read_at = us(read_us - offset_us);
                    if let std::task::Poll::Ready(seen) = poll_at(read_us).await {
                        return Err(format!(
                            "{scene}; enqueue answered {seen} after {read_at:?}, before its wait \
                             had run out (expected Ok(()) once the client read at {read_at:?})"
                        ));
                    }
                    rx.try_recv().expect("the welcome message is in the outbox");
                    match call.poll() {
                        std::task::Poll::Ready(result) if describe(&result) == "Ok(())" => Ok(()),
                        seen => Err(format!(
                            "{scene}. The client read one message {read_at:?} after the call, \
                             before that tick, and enqueue then answered {} (expected \
                             Ok(()) at that moment): until its wait runs out on that tick, \
                             enqueue is still waiting, and a slot that frees up during the wait \
                             belongs to it, even after the wait's length has passed",
                            match seen {
                                std::task::Poll::Ready(result) => describe(&result),
                                std::task::Poll::Pending => "nothing yet".to_string(),
                            }
                        )),
                    }
                }
                None => {
                    let just_before = runs_out_us - 1;
                    if let std::task::Poll::Ready(seen) = poll_at(just_before).await {
                        return Err(format!(
                            "{scene}; the client never read, and enqueue answered {seen} after \
                             {:?}, before its wait had run out",
                            us(just_before - offset_us)
                        ));
                    }
                    let expected = "Busy(Some(\"between two ticks\"))";
                    match poll_at(runs_out_us).await {
                        std::task::Poll::Ready(seen) if seen == expected => Ok(()),
                        std::task::Poll::Ready(seen) => Err(format!(
                            "{scene}; the client never read, and enqueue answered {seen} on that \
                             tick; expected {expected}"
                        )),
                        std::task::Poll::Pending => Err(format!(
                            "{scene}; the client never read, and at that tick enqueue was still \
                             waiting (expected {expected} then, not a tick later): the wait is \
                             rounded once, by tokio's timer, to the first tick at or after the \
                             call's moment plus the wait; rounding the wait itself up as well \
                             makes it run out late whenever the call is made between two ticks"
                        )),
                    }
                }
            }
        });
    }

    /// Several rooms wait on one full outbox at once, on the outbox they share or on clones of it,
    /// while other senders of the same channel start a plain `send` after them and the client reads
    /// now and then: every freed slot goes to the sender first in line, so no sender that arrived
    /// later, plain or not, overtakes a waiting `enqueue`, and each `enqueue` answers Ok(()) when
    /// its slot comes or Busy when its own wait runs out.
    fn waiting_enqueues_are_never_overtaken_by_later_senders() {
        let cases = senders_in_line_and_reads();
        check_property(80, cases, |(capacity, wait_ms, senders, reads)| async move {
            let (tx, mut rx) = mpsc::channel(capacity);
            for i in 0..capacity {
                let text = format!("backlog {i}");
                tx.try_send(line("server", &text)).expect("room for the backlog");
            }
            let wait = Duration::from_millis(wait_ms);
            let shared = Arc::new(Outbox::new(tx.clone(), wait));
            let t0 = Instant::now();
            let mut rooms = Vec::new();
            let mut plain = Vec::new();
            for (i, &(at, who)) in senders.iter().enumerate() {
                let text = sender_text(i);
                let start_at = t0 + Duration::from_millis(at);
                match who {
                    Caller::Plain => {
                        let tx = tx.clone();
                        plain.push(tokio::spawn(async move {
                            tokio::time::sleep_until(start_at).await;
                            let _ = tx.send(line("bot", &text)).await;
                        }));
                    }
                    Caller::Shared | Caller::Clone => {
                        let outbox = if who == Caller::Shared {
                            shared.clone()
                        } else {
                            Arc::new((*shared).clone())
                        };
                        rooms.push((
                            i,
                            tokio::spawn(async move {
                                tokio::time::sleep_until(start_at).await;
                                let start = Instant::now();
                                let result = outbox.enqueue(line("room", &text)).await;
                                (describe(&result), start.elapsed())
                            }),
                        ));
                    }
                }
            }
            let read_at = reads.clone();
            let reader = tokio::spawn(async move {
                let mut read = Vec::new();
                for r in read_at {
                    tokio::time::sleep_until(t0 + Duration::from_millis(r)).await;
                    if let Ok(m) = rx.try_recv() {
                        read.push(m.text);
                    }
                }
                (read, rx)
            });
            let (granted, answers) = fair_line(capacity, wait_ms, &senders, &reads);
            let scenario = {
                let who: Vec<String> = senders
                    .iter()
                    .enumerate()
                    .map(|(i, &(at, who))| {
                        let how = match who {
                            Caller::Shared => "enqueue on the shared outbox",
                            Caller::Clone => "enqueue on a clone of the outbox",
                            Caller::Plain => "a plain `send`",
                        };
                        format!("{} at {at} ms ({how})", sender_text(i))
                    })
                    .collect();
                format!(
                    "on a full capacity-{capacity} outbox (wait {wait:?}), {}; the client read one \
                     message at each of {reads:?} ms",
                    who.join(", ")
                )
            };
            let mut wrong = Vec::new();
            for (i, room) in rooms {
                let (seen, waited) = room.await.expect("a room's call");
                let (expected, after) = &answers[i];
                let after = Duration::from_millis(*after);
                if seen != *expected || waited != after {
                    wrong.push(format!(
                        "{} answered {seen} after {waited:?}, expected {expected} after {after:?}",
                        sender_text(i)
                    ));
                }
            }
            let (read, mut rx) = reader.await.expect("the client's reader");
            // Let any plain sender granted a slot at the last read put its message in.
            sleep(Duration::from_millis(1)).await;
            let mut received = read;
            while let Ok(m) = rx.try_recv() {
                received.push(m.text);
            }
            for p in plain {
                p.abort();
            }
            let got: Vec<String> =
                received.into_iter().filter(|t| !t.starts_with("backlog")).collect();
            if got != granted || !wrong.is_empty() {
                return Err(format!(
                    "{scenario}. The freed slots went to {got:?} in that order, expected \
                     {granted:?}{}{}: a slot that frees up belongs to the sender first in line, \
                     and a sender that arrives later, plain or not, never overtakes a waiting \
                     enqueue (each enqueue is in the channel's line from its first poll until it \
                     answers)",
                    if wrong.is_empty() { "" } else { "; " },
                    wrong.join("; ")
                ));
            }
            Ok(())
        });
    }

    /// Several rooms call `enqueue` for the same member at different moments, on the outbox they
    /// share or on clones of it, while the client reads at most one message: each call answers
    /// within its own wait, however many other calls wait on the same outbox, and the slot the
    /// client frees goes to the call that asked first.
    fn concurrent_calls_each_wait_their_own_wait() {
        check_property(96, rooms_and_a_read(), |(wait_ms, rooms, read)| async move {
            let (tx, rx) = mpsc::channel(1);
            tx.try_send(line("server", "welcome to #rust")).expect("room for one message");
            let wait = Duration::from_millis(wait_ms);
            let shared = Arc::new(Outbox::new(tx.clone(), wait));
            // The client stays connected throughout: it keeps its end whether or not it reads.
            let reader = tokio::spawn(async move {
                let mut rx = rx;
                if let Some(read_ms) = read {
                    sleep(Duration::from_millis(read_ms)).await;
                    let _welcome = rx.recv().await;
                }
                rx
            });
            let calls: Vec<_> = rooms
                .iter()
                .enumerate()
                .map(|(i, &(start_ms, on_shared))| {
                    let outbox =
                        if on_shared { shared.clone() } else { Arc::new((*shared).clone()) };
                    tokio::spawn(async move {
                        sleep(Duration::from_millis(start_ms)).await;
                        let start = Instant::now();
                        let result = outbox.enqueue(line("room", &format!("room {}", i + 1))).await;
                        (describe(&result), start.elapsed())
                    })
                })
                .collect();
            // Which call the freed slot belongs to: the first in line when the client reads, or,
            // if nobody waits then, the first call made after the read.
            let winner = read.and_then(|r| {
                rooms
                    .iter()
                    .position(|&(start, _)| start < r && r < start + wait_ms)
                    .map(|i| (i, r - rooms[i].0))
                    .or_else(|| rooms.iter().position(|&(start, _)| start > r).map(|i| (i, 0)))
            });
            let scenario = |i: usize| {
                let (start, on_shared) = rooms[i];
                let how = if on_shared { "the shared outbox" } else { "a clone of the outbox" };
                let read = match read {
                    Some(r) => format!("the client read one message at {r} ms"),
                    None => "the client never read".to_string(),
                };
                format!(
                    "{} rooms called `enqueue` on one full outbox (wait {wait:?}) at {:?} ms, and \
                     {read}; room {} (called at {start} ms on {how})",
                    rooms.len(),
                    rooms.iter().map(|r| r.0).collect::<Vec<_>>(),
                    i + 1
                )
            };
            for (i, call) in calls.into_iter().enumerate() {
                let (seen, waited) = call.await.expect("a room's call");
                let text = format!("room {}", i + 1);
                let (expected, after) = match winner {
                    Some((w, after_ms)) if w == i => ("Ok(())".to_string(), after_ms),
                    _ => (format!("Busy(Some({text:?}))"), wait_ms),
                };
                let after = Duration::from_millis(after);
                let why = if seen != expected && winner.is_some_and(|(w, _)| w == i) {
                    " (the slot the client freed belongs to the call that asked first)"
                } else if seen == expected && waited != after {
                    " (each call waits at most `wait`, and not less, however many other calls \
                     wait on the same outbox)"
                } else {
                    ""
                };
                if seen != expected || waited != after {
                    return Err(format!(
                        "{} answered {seen} after {waited:?} of its own wait; expected {expected} \
                         after {after:?}{why}",
                        scenario(i)
                    ));
                }
            }
            let mut rx = reader.await.expect("the client's reader");
            if read.is_some() {
                let slot = rx.try_recv().map(|m| m.text).ok();
                let expected = winner.map(|(w, _)| format!("room {}", w + 1));
                if slot != expected {
                    return Err(format!(
                        "{} rooms called `enqueue` on one full outbox; after the client read one \
                         message, the freed slot held {slot:?}, expected {expected:?}",
                        rooms.len()
                    ));
                }
            }
            Ok(())
        });
    }

    /// One call after another on the same outbox, the client reading now and then, and then
    /// disconnecting: every call answers as the outbox is at that moment (Ok at once with room,
    /// Busy when its wait runs out on a full one, Closed at once once the client is gone), a plain
    /// sender of the same channel finds exactly the room the queued messages leave (a call that
    /// has answered keeps no slot of the outbox), and the client reads exactly the messages of the
    /// calls that answered Ok(()), in order.
    fn every_call_answers_as_the_outbox_is_then_up_to_and_after_a_disconnect() {
        let cases = histories_then_a_disconnect();
        check_property(96, cases, |(capacity, backlog, wait_ms, steps, after)| async move {
            let (tx, mut rx) = mpsc::channel(capacity);
            let mut queued = std::collections::VecDeque::new();
            for i in 0..backlog {
                let text = format!("backlog {i}");
                tx.try_send(line("server", &text)).expect("room for the backlog");
                queued.push_back(text);
            }
            let wait = Duration::from_millis(wait_ms);
            let outbox = Outbox::new(tx.clone(), wait);
            let mut history = format!(
                "a capacity-{capacity} outbox holding {backlog} message(s), wait {wait:?}"
            );
            let mut calls = 0;
            for step in &steps {
                match step {
                    Step::Enqueue => {
                        calls += 1;
                        let text = format!("line {calls}");
                        let start = Instant::now();
                        let result = outbox.enqueue(line("heidi", &text)).await;
                        let waited = start.elapsed();
                        let seen = describe(&result);
                        let (expected, at) = if queued.len() < capacity {
                            ("Ok(())".to_string(), Duration::ZERO)
                        } else {
                            (format!("Busy(Some({text:?}))"), wait)
                        };
                        if seen != expected || waited != at {
                            let why = if seen == "Busy(None)" {
                                "Busy(None) means the message was lost; Busy must hand it back"
                            } else {
                                "Ok at once into an outbox with room; on a full one, Busy when \
                                 the call's own wait runs out, at once for a zero wait"
                            };
                            return Err(format!(
                                "{history}; then a call with {} message(s) in the outbox answered \
                                 {seen} after {waited:?}; expected {expected} after {at:?} ({why})",
                                queued.len()
                            ));
                        }
                        history += &format!("; a call answered {seen}");
                        if result.is_ok() {
                            queued.push_back(text);
                        }
                    }
                    Step::Read => {
                        let read = rx.try_recv().map(|m| m.text).ok();
                        let expected = queued.pop_front();
                        if read != expected {
                            return Err(format!(
                                "{history}; then the client read {read:?}, expected {expected:?} \
                                 (only the messages of calls that answered Ok(()) reach the \
                                 client, in order)"
                            ));
                        }
                        history += "; the client read one message";
                    }
                }
                let free = free_slots(&tx);
                if free != capacity - queued.len() {
                    return Err(format!(
                        "{history}; then, with {} message(s) in the outbox, a plain sender of the \
                         same channel could queue {free} more message(s), expected {}: a call \
                         that has answered must not keep any slot of the outbox, which belongs to \
                         whoever sends next",
                        queued.len(),
                        capacity - queued.len()
                    ));
                }
            }
            drop(rx);
            history += "; the client disconnected";
            for _ in 0..after {
                calls += 1;
                let text = format!("line {calls}");
                let start = Instant::now();
                let result = outbox.enqueue(line("heidi", &text)).await;
                let waited = start.elapsed();
                let seen = describe(&result);
                let expected = format!("Closed({text:?})");
                if seen != expected || !waited.is_zero() {
                    return Err(format!(
                        "{history}; then a call answered {seen} after {waited:?}; expected \
                         {expected} at once: the client is gone, nothing sent to it is ever \
                         read, and the room must get the message back"
                    ));
                }
                history += &format!("; a call answered {seen}");
            }
            Ok(())
        });
    }
}
