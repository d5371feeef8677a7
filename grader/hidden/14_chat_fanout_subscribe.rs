//! Hidden tests for kata 14: every message published to the client's room reaches the client, in
//! order, whatever the session is doing when it is published; a lagging client is told, not
//! dropped or silently skipped.

use std::sync::Arc;

use chat_fanout_subscribe::{ChatHub, ChatMessage, Command, Event, run_session};
use kata_support::time::spoken;
use kata_support::{check_property, hidden_test, settle};
use proptest::prelude::*;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Duration, sleep};

/// A running session and the client's two ends of it.
struct Client {
    commands: mpsc::Sender<Command>,
    events: mpsc::Receiver<Event>,
    session: JoinHandle<()>,
}

impl Client {
    /// Starts a session in `room` and lets it subscribe.
    async fn connect(hub: &Arc<ChatHub>, room: &str) -> Client {
        Client::connect_slow(hub, room, 256).await
    }

    /// Starts a session whose connection to the client buffers only `buffer` events: a client
    /// that does not read keeps the session waiting in its send.
    async fn connect_slow(hub: &Arc<ChatHub>, room: &str, buffer: usize) -> Client {
        let (commands, command_rx) = mpsc::channel(64);
        let (event_tx, events) = mpsc::channel(buffer);
        let hub = hub.clone();
        let room = room.to_owned();
        let session = tokio::spawn(async move {
            run_session(&hub, room, command_rx, event_tx).await;
        });
        settle().await;
        Client { commands, events, session }
    }

    /// Queues a command without yielding, so the session has not seen it yet.
    fn command(&self, command: Command) {
        self.commands.try_send(command).expect("the session stopped reading commands");
    }

    /// Reads like a slow client: one event at a time, letting the session run in between, until
    /// nothing more comes.
    async fn read_slowly(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        settle().await;
        while let Ok(event) = self.events.try_recv() {
            out.push(event);
            settle().await;
        }
        out
    }

    /// Reads like a slow client, one event at a time, until the session has taken every command
    /// queued so far (or nothing more comes): what the client got before that moment.
    async fn read_until_commands_are_taken(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        settle().await;
        while self.commands.capacity() < self.commands.max_capacity() {
            let Ok(event) = self.events.try_recv() else { break };
            out.push(event);
            settle().await;
        }
        out
    }

    /// Everything the session has sent so far.
    fn received(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        while let Ok(event) = self.events.try_recv() {
            out.push(event);
        }
        out
    }
}

fn message(room: &str, n: usize) -> ChatMessage {
    ChatMessage { room: room.into(), from: "bob".into(), text: format!("message {n}") }
}

/// The texts of the chat messages among `events`, in order.
fn texts(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(m.text.clone()),
            _ => None,
        })
        .collect()
}

fn expected_texts(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|n| format!("message {n}")).collect()
}

/// `events` written short: `m3` for message 3, `new` for a message with another text.
fn short(events: &[Event]) -> String {
    let items: Vec<String> = events
        .iter()
        .map(|e| match e {
            Event::Message(m) => match m.text.strip_prefix("message ") {
                Some(n) => format!("m{n}"),
                None => format!("{}:{}", m.room, m.text),
            },
            Event::Pong => "Pong".into(),
            Event::Joined(room) => format!("Joined({room})"),
            Event::Missed(n) => format!("Missed({n})"),
        })
        .collect();
    format!("[{}]", items.join(", "))
}

/// Checks that messages 0, 1, .. of one room arrived in order and that every one that did not
/// arrive is accounted for by an `Event::Missed` between its neighbours, with the exact count;
/// and that every message of `held` (those the room still held for the client) arrived. Whether
/// the session loses message 1 or message 2 to a lag depends on how far it had read: any
/// accurate count is right.
fn account(events: &[Event], held: std::ops::Range<usize>) -> Result<(), String> {
    let mut next = 0;
    let mut told = 0;
    for event in events {
        match event {
            Event::Missed(n) => told += *n as usize,
            Event::Message(m) => {
                let n: usize =
                    m.text.strip_prefix("message ").and_then(|n| n.parse().ok()).unwrap_or(0);
                if n < next {
                    return Err(format!("message {n} arrived after message {}", next - 1));
                }
                let lost = n - next;
                if lost != told {
                    let before = if next == 0 {
                        String::new()
                    } else {
                        format!("after message {} and ", next - 1)
                    };
                    return Err(format!(
                        "{lost} message(s) were lost {before}before message {n}, and the client was \
                         told `Missed({told})`"
                    ));
                }
                next = n + 1;
                told = 0;
            }
            _ => {}
        }
    }
    let missing: Vec<usize> = held.clone().filter(|n| *n >= next).collect();
    if !missing.is_empty() {
        return Err(format!(
            "the room still held messages {} to {} for the client, yet messages {missing:?} never \
             reached it",
            held.start,
            held.end - 1
        ));
    }
    Ok(())
}

/// One step of what happens while a client is not reading.
#[derive(Debug, Clone)]
enum Step {
    /// This many messages are posted to the room at once.
    Burst(usize),
    /// The client's app sends a `Ping` (its keep-alive).
    Ping,
    /// The client reads one event, if one is there, and stops reading again.
    ReadOne,
}

/// Scripts of bursts, pings and single reads, each step 100 ms after the one before.
fn stalled_scripts() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        3 => (1usize..=6).prop_map(Step::Burst),
        1 => Just(Step::Ping),
        1 => Just(Step::ReadOne),
    ];
    prop::collection::vec(step, 1..10)
}

/// The number of a message of the tests (`message 7` is 7).
fn number(message: &ChatMessage) -> Option<usize> {
    message.text.strip_prefix("message ")?.parse().ok()
}

/// What a room keeps for a slow reader in the stalled-client property.
const ROOM: usize = 4;

/// A client whose connection holds one event reads nothing while `script` runs (but for the
/// single events of its `ReadOne` steps), then reads everything. Whatever the session did
/// meanwhile, the Messages and Pongs she then gets can only have been kept on her connection (1),
/// in the session's hand (1), in the room (4), or be answers to the Pings still waiting in her
/// command queue: anything more was kept by the session itself. So, of what she then reads, only
/// the first two events can be messages the room no longer holds.
async fn stalled_client_gets_only_what_was_kept(script: Vec<Step>) -> Result<(), String> {
    let hub = Arc::new(ChatHub::new(ROOM));
    let mut alice = Client::connect_slow(&hub, "lobby", 1).await;
    let (mut posted, mut pings) = (0, 0);
    // What alice read during the stall, one event at each `ReadOne`.
    let mut early = Vec::new();
    for step in &script {
        match *step {
            Step::ReadOne => {
                if let Ok(event) = alice.events.try_recv() {
                    early.push(event);
                }
            }
            Step::Burst(size) => {
                for _ in 0..size {
                    hub.publish(message("lobby", posted));
                    posted += 1;
                }
            }
            Step::Ping => {
                alice.command(Command::Ping);
                pings += 1;
            }
        }
        sleep(Duration::from_millis(100)).await;
    }
    let waiting = alice.commands.max_capacity() - alice.commands.capacity();
    let late = alice.read_slowly().await;
    let got = late.iter().filter(|e| matches!(e, Event::Message(_) | Event::Pong)).count();
    let most = 2 + ROOM + waiting;
    let came = if early.is_empty() {
        format!(
            "alice read nothing while {posted} message(s) and {pings} Ping(s) came, 100 ms apart"
        )
    } else {
        format!(
            "alice read only {} while {posted} message(s) and {pings} Ping(s) came, 100 ms apart \
             (script {script:?})",
            short(&early)
        )
    };
    let events = [early.as_slice(), late.as_slice()].concat();
    // Only the event on her connection and the one in the session's hand can be older than the
    // room: every later one was read from the room after she started reading again.
    let in_room = posted.saturating_sub(ROOM);
    let kept = late.iter().enumerate().skip(2).find_map(|(at, event)| match event {
        Event::Message(m) => number(m).filter(|n| *n < in_room).map(|n| (at, n)),
        _ => None,
    });
    if let Some((at, n)) = kept {
        return Err(format!(
            "{came}. When she read again she got {}, and message {n} came as event {} of those: \
             by then the room, which keeps the last {ROOM} messages, held only messages \
             {in_room} to {}, and outside the room at most 2 events could be kept for her (1 on \
             her connection, 1 the session is handing over). The session kept message {n} in \
             memory of its own besides the event it was handing over: a stalled client must \
             fall behind the room, not into the server's memory",
            short(&late),
            at + 1,
            posted - 1
        ));
    }
    if got > most {
        let taken = pings - waiting;
        return Err(format!(
            "{came}, and the session took {taken} of her Pings meanwhile. When she read again \
             she got {got} Messages and Pongs ({events}), yet at \
             most {most} can be kept for her: 1 on her connection, 1 the session is handing over, \
             {ROOM} in the room and a Pong for each of the {waiting} Ping(s) still waiting in her \
             command queue. The session kept the others in memory of its own: a stalled client \
             must fall behind the room, not into the server's memory",
            events = short(&late),
        ));
    }
    if let Err(seen) = account(&events, posted.saturating_sub(ROOM)..posted) {
        return Err(format!("{came}; in all she got {}: {seen}", short(&events)));
    }
    let pongs = events.iter().filter(|e| **e == Event::Pong).count();
    if pongs != pings {
        return Err(format!(
            "{came}; in all she got {pongs} Pong(s) ({}): every Ping must be answered once",
            short(&events)
        ));
    }
    Ok(())
}

/// How far [`a_client_that_pauses_for_seconds_loses_nothing`] moves the paused clock in its last
/// pause, in one jump: 2^62 ms, some 146 million years, beyond any bound a session could sensibly
/// set on a hand-over.
const FAR_END: Duration = kata_support::time::FAR_END;

/// What the session has been given to hand over when its client stops listening.
#[derive(Debug, Clone, Copy)]
enum Held {
    Nothing,
    Messages,
    Pongs,
}

/// What happens once the client has stopped listening.
#[derive(Debug, Clone, Copy)]
enum Then {
    Nothing,
    Message,
    Ping,
    Join(&'static str),
}

/// The rooms of the join property, and what a client sends in it.
const ROOMS: [&str; 3] = ["lobby", "support", "rust"];

/// Sequences of commands, each a `Ping` or a `Join` of one of [`ROOMS`] (the current one, one
/// left earlier, or a new one).
fn command_scripts() -> impl Strategy<Value = Vec<Option<usize>>> {
    prop::collection::vec(prop_oneof![Just(None), (0..ROOMS.len()).prop_map(Some)], 1..7)
}

/// `commands` written short: `Ping`, `Join(support)`.
fn short_commands(commands: &[Option<usize>]) -> String {
    let items: Vec<String> = commands
        .iter()
        .map(|c| match c {
            None => "Ping".to_owned(),
            Some(r) => format!("Join({})", ROOMS[*r]),
        })
        .collect();
    format!("[{}]", items.join(", "))
}

/// Alice, in the lobby, sends `commands` one at a time (her connection holds `buffer` events);
/// once each is answered, one message is posted to every room, and she reads what came. After
/// each answer she must get the one message of the room she is in, and no other room's.
async fn every_join_moves_the_client(
    (commands, buffer): (Vec<Option<usize>>, usize),
) -> Result<(), String> {
    let hub = Arc::new(ChatHub::new(16));
    // Every room exists from the start, so a message posted to one is a real message.
    let _rooms: Vec<_> = ROOMS.iter().map(|r| hub.subscribe(r)).collect();
    let mut alice = Client::connect_slow(&hub, "lobby", buffer).await;
    let mut current = "lobby";
    let (mut got, mut expected) = (Vec::new(), Vec::new());
    for (step, command) in commands.iter().enumerate() {
        match command {
            None => {
                alice.command(Command::Ping);
                expected.push(Event::Pong);
            }
            Some(r) => {
                current = ROOMS[*r];
                alice.command(Command::Join(current.into()));
                expected.push(Event::Joined(current.into()));
            }
        }
        got.extend(alice.read_until_commands_are_taken().await);
        for room in ROOMS {
            hub.publish(ChatMessage {
                room: room.into(),
                from: "bob".into(),
                text: format!("#{step}"),
            });
        }
        expected.push(Event::Message(ChatMessage {
            room: current.into(),
            from: "bob".into(),
            text: format!("#{step}"),
        }));
        got.extend(alice.read_slowly().await);
        if got != expected {
            return Err(format!(
                "alice started in the lobby and sent {} one at a time; once the session had taken \
                 each one, message #n was posted to each of {ROOMS:?}. After {} she got {}, \
                 expected {}: from a `Joined(room)` on she must get that room's messages and no \
                 other room's, also when she goes back to a room she left",
                short_commands(&commands),
                short_commands(&commands[..=step]),
                short(&got),
                short(&expected),
            ));
        }
    }
    Ok(())
}

hidden_test! {
    /// The server runs each session in a task of its own (`tokio::spawn`) on its multi-thread
    /// runtime, all of them sharing one hub (an `Arc<ChatHub>`): `ChatHub` must stay `Sync` and
    /// `run_session`'s future `Send`, as the original's are.
    async fn a_session_can_run_in_a_spawned_task_on_a_shared_hub() {
        let hub = ChatHub::new(4);
        let (commands, command_rx) = mpsc::channel(4);
        let (event_tx, mut events) = mpsc::channel(4);
        let mut not_shareable = Vec::new();
        // A shared reference is `Send` exactly when what it points to is `Sync`.
        if !kata_support::is_send!(&hub) {
            not_shareable.push("`ChatHub` is not `Sync`");
        }
        let session = run_session(&hub, "lobby".into(), command_rx, event_tx);
        if !kata_support::is_send!(session) {
            not_shareable.push("the future returned by `run_session` is not `Send`");
        }
        commands.try_send(Command::Ping).expect("the command queue has room");
        // The session runs until the client leaves; a second is plenty to answer the `Ping`.
        let _ = tokio::time::timeout(Duration::from_secs(1), session).await;
        assert!(
            not_shareable.is_empty(),
            "{}: the server can no longer run a session in a task of its own (`tokio::spawn`) on \
             its multi-thread runtime, with one hub shared by every session. A session holds \
             nothing across an `.await` that is not `Send` (an `Rc`, a `RefCell` borrow, a `std` \
             lock guard), and the hub's rooms need a lock that threads can share",
            not_shareable.join(", and ")
        );
        assert_eq!(events.try_recv().ok(), Some(Event::Pong), "the `Ping` must be answered");
    }

    /// Nothing concurrent: pings are answered.
    async fn pings_are_answered() {
        let hub = Arc::new(ChatHub::new(16));
        let mut alice = Client::connect(&hub, "lobby").await;
        for _ in 0..3 {
            alice.command(Command::Ping);
            settle().await;
        }
        assert_eq!(alice.received(), vec![Event::Pong; 3], "three pings must get three pongs");
    }

    /// Nothing concurrent: one message published to a quiet room reaches the client.
    async fn a_lone_message_reaches_the_client() {
        let hub = Arc::new(ChatHub::new(16));
        let mut alice = Client::connect(&hub, "lobby").await;
        hub.publish(message("lobby", 0));
        settle().await;
        assert_eq!(alice.received(), vec![Event::Message(message("lobby", 0))]);
    }

    /// The kata's bug: bob posts right after alice's client sends a command. The session handles
    /// the command first (it is `biased`), and the message must still reach alice afterwards.
    async fn messages_published_while_a_command_is_handled_all_arrive() {
        let hub = Arc::new(ChatHub::new(16));
        let mut alice = Client::connect(&hub, "lobby").await;
        for n in 0..10 {
            alice.command(Command::Ping);
            hub.publish(message("lobby", n));
            settle().await;
        }
        let events = alice.received();
        let got = texts(&events);
        let pongs = events.iter().filter(|e| **e == Event::Pong).count();
        assert_eq!(pongs, 10, "each of the 10 pings must be answered; events: {events:?}");
        assert_eq!(
            got,
            expected_texts(0..10),
            "10 messages were posted, each right after a Ping, while the session's subscription \
             was live; the client got {} of them. A message that arrives while a command is \
             handled waits in the subscription, and the subscription was dropped at the end of \
             that trip round the loop: the next `subscribe()` only sees messages published after \
             it",
            got.len()
        );
    }

    /// A burst of messages published together (fewer than the room buffers) all arrive, in order.
    async fn a_burst_of_messages_all_arrive_in_order() {
        let hub = Arc::new(ChatHub::new(16));
        let mut alice = Client::connect(&hub, "lobby").await;
        for n in 0..8 {
            hub.publish(message("lobby", n));
        }
        settle().await;
        let got = texts(&alice.received());
        assert_eq!(
            got,
            expected_texts(0..8),
            "8 messages were posted at once into a room that buffers 16; the client got {}. \
             Forwarding the first one takes the session round the loop, and a receiver dropped \
             there takes the other unread messages with it",
            got.len()
        );
    }

    /// A client that falls further behind than the room buffers is told how many messages it
    /// missed, and carries on with the rest.
    async fn a_lagging_client_is_told_and_keeps_going() {
        // Rounded to 4 by tokio: the room keeps the 4 newest messages for slow readers.
        let hub = Arc::new(ChatHub::new(4));
        let mut alice = Client::connect(&hub, "lobby").await;
        for n in 0..10 {
            hub.publish(message("lobby", n));
        }
        settle().await;
        let events = alice.received();
        assert!(
            !alice.session.is_finished(),
            "the session ended when the client fell behind (events: {}); a lag does not close \
             the room, so tell the client with `Event::Missed(n)` and keep forwarding",
            short(&events)
        );
        if let Err(seen) = account(&events, 6..10) {
            panic!(
                "10 messages were posted at once into a room that keeps 4, and the client got {}: \
                 {seen}. It must be told how many it missed, then get the messages the room still \
                 holds",
                short(&events)
            );
        }

        alice.command(Command::Ping);
        settle().await;
        hub.publish(message("lobby", 10));
        settle().await;
        assert_eq!(
            alice.received(),
            vec![Event::Pong, Event::Message(message("lobby", 10))],
            "after a lag the session must go on answering commands and forwarding messages"
        );
    }

    /// `Join` moves the client to another room: the new room's messages arrive, the old one's
    /// do not.
    async fn joining_a_room_switches_the_feed() {
        let hub = Arc::new(ChatHub::new(16));
        let mut alice = Client::connect(&hub, "lobby").await;
        alice.command(Command::Join("rust".into()));
        settle().await;
        assert_eq!(alice.received(), vec![Event::Joined("rust".into())]);

        hub.publish(message("lobby", 0));
        hub.publish(message("rust", 1));
        alice.command(Command::Ping);
        hub.publish(message("rust", 2));
        settle().await;
        let events = alice.received();
        assert_eq!(
            texts(&events),
            expected_texts(1..3),
            "after joining `rust` the client must get rust's messages 1 and 2 and not the \
             lobby's message 0; events: {events:?}"
        );
        assert!(
            events.iter().all(|e| match e {
                Event::Message(m) => m.room == "rust",
                _ => true,
            }),
            "a message from the old room reached the client after it joined another: {events:?}"
        );
    }

    /// The client disconnects: the session ends.
    async fn the_session_ends_when_the_client_disconnects() {
        let hub = Arc::new(ChatHub::new(16));
        let alice = Client::connect(&hub, "lobby").await;
        let Client { commands, events, session } = alice;
        drop(commands);
        settle().await;
        assert!(session.is_finished(), "the command channel closed, so the session must end");
        drop(events);
    }

    /// The client stops listening (its connection closes) while its command queue stays open:
    /// the session returns at the latest when it next has an event to hand her, whether that is
    /// a message of her room, the answer to a command, or the event it was already waiting to
    /// hand a slow client when her connection closed.
    async fn the_session_ends_when_the_client_stops_listening() {
        let thens =
            [Then::Nothing, Then::Message, Then::Ping, Then::Join("support"), Then::Join("lobby")];
        for buffer in [1, 256] {
            for held in [Held::Nothing, Held::Messages, Held::Pongs] {
                for then in thens {
                    // Without a next event, only a session with one in hand owes an end: on a
                    // fast connection everything it was given has been delivered.
                    let in_hand = buffer == 1 && !matches!(held, Held::Nothing);
                    if matches!(then, Then::Nothing) && !in_hand {
                        continue;
                    }
                    let hub = Arc::new(ChatHub::new(16));
                    let _support = hub.subscribe("support");
                    let Client { commands, events, mut session } =
                        Client::connect_slow(&hub, "lobby", buffer).await;
                    // Two events: on a connection that holds one, the first waits on it and the
                    // session waits to hand over the second.
                    for n in 0..2 {
                        match held {
                            Held::Nothing => {}
                            Held::Messages => {
                                hub.publish(message("lobby", n));
                            }
                            Held::Pongs => commands.try_send(Command::Ping).expect("a free slot"),
                        }
                        settle().await;
                    }
                    // She stops listening; her command sender stays open.
                    drop(events);
                    let (what, next) = match then {
                        Then::Nothing => (
                            "nothing more happened".to_string(),
                            "the event it was handing over when her connection closed".to_string(),
                        ),
                        Then::Message => {
                            hub.publish(message("lobby", 9));
                            let what = "a message was posted to her room";
                            (what.to_string(), "that message".to_string())
                        }
                        Then::Ping => {
                            commands.try_send(Command::Ping).expect("a free slot");
                            ("she sent a Ping".to_string(), "its Pong".to_string())
                        }
                        Then::Join(room) => {
                            commands.try_send(Command::Join(room.into())).expect("a free slot");
                            (format!("she sent Join({room})"), format!("Joined({room})"))
                        }
                    };
                    let ended = tokio::time::timeout(Duration::from_secs(10), &mut session).await;
                    session.abort();
                    let had = match held {
                        Held::Nothing => "nothing to hand her",
                        Held::Messages if in_hand => {
                            "message 0 on her connection (it holds one event) and message 1 in its \
                             hand"
                        }
                        Held::Pongs if in_hand => {
                            "a Pong on her connection (it holds one event) and the answer to her \
                             second Ping in its hand"
                        }
                        Held::Messages => "delivered messages 0 and 1",
                        Held::Pongs => "answered two Pings",
                    };
                    assert!(
                        ended.is_ok(),
                        "the session had {had} when alice stopped listening (her connection \
                         closed, her command queue still open); then {what}. Ten seconds later \
                         the session was still running: a session returns when its client stops \
                         listening, at the latest when it next has an event to hand her (here \
                         {next}). One that goes on for a client who is gone keeps a task and a \
                         room subscription per dropped connection, for ever"
                    );
                    drop(commands);
                }
            }
        }
    }

    /// A slow client (its connection holds one event) joins another room while the session may
    /// still be waiting to hand it earlier events (none, or two of the old room's). Once the
    /// session has taken the `Join` (the command queue is empty again), a message posted to the
    /// new room reaches the client after `Joined`, and one posted to the old room never does.
    /// Old-room messages posted before the `Join` was taken may arrive or not, before `Joined`.
    async fn a_join_while_the_client_is_slow_switches_at_once() {
        for earlier in [0, 2] {
            let hub = Arc::new(ChatHub::new(16));
            let mut alice = Client::connect_slow(&hub, "lobby", 1).await;
            let _support = hub.subscribe("support");
            alice.command(Command::Ping);
            settle().await;
            for n in 0..earlier {
                hub.publish(message("lobby", n));
            }
            alice.command(Command::Join("support".into()));
            let mut events = alice.read_until_commands_are_taken().await;
            assert!(
                alice.commands.capacity() == alice.commands.max_capacity(),
                "alice sent Join(support) and read everything that came ({}), yet the session \
                 never took the Join",
                short(&events)
            );
            hub.publish(ChatMessage { room: "support".into(), from: "carol".into(), text: "new".into() });
            hub.publish(ChatMessage { room: "lobby".into(), from: "bob".into(), text: "old".into() });
            events.extend(alice.read_slowly().await);
            let joined = events.iter().position(|e| *e == Event::Joined("support".into()));
            let before_ok = joined.is_some_and(|j| {
                events[..j].first() == Some(&Event::Pong)
                    && events[1..j].iter().all(|e| matches!(e, Event::Message(m) if m.room == "lobby" && m.text != "old"))
            });
            let after = joined.map(|j| short(&events[j + 1..]));
            assert!(
                before_ok && after.as_deref() == Some("[support:new]"),
                "alice was slow to read; with {earlier} lobby message(s) posted before her \
                 Join(support), once the session had taken the Join \"new\" was posted to support \
                 and \"old\" to the lobby. She must get Pong, maybe the earlier lobby messages, \
                 Joined(support), then \"new\" only, but got {}",
                short(&events)
            );
        }
    }

    /// A slow client (its connection holds one event) sends a `Ping` while the session waits to
    /// hand it a message: the command may be answered before or after that message, and every
    /// message still arrives, in order.
    async fn a_command_while_the_client_is_slow_loses_no_message() {
        let hub = Arc::new(ChatHub::new(16));
        let mut alice = Client::connect_slow(&hub, "lobby", 1).await;
        alice.command(Command::Ping);
        settle().await;
        hub.publish(message("lobby", 0));
        settle().await;
        hub.publish(message("lobby", 1));
        alice.command(Command::Ping);
        hub.publish(message("lobby", 2));
        let events = alice.read_slowly().await;
        let pongs = events.iter().filter(|e| **e == Event::Pong).count();
        assert!(
            texts(&events) == expected_texts(0..3) && pongs == 2,
            "alice's connection held a Pong while message 0 waited for room; then message 1, a \
             Ping and message 2 came. She must get messages 0, 1, 2 in order and two Pongs, but \
             got {}",
            short(&events)
        );
    }

    /// A client that stops reading falls behind the room, not into the server's memory: while it
    /// reads nothing, messages posted one at a time (the session runs in between) past what the
    /// room keeps are reported as missed.
    async fn a_stalled_client_falls_behind_the_room() {
        let hub = Arc::new(ChatHub::new(4));
        let mut alice = Client::connect_slow(&hub, "lobby", 1).await;
        for n in 0..10 {
            hub.publish(message("lobby", n));
            sleep(Duration::from_millis(100)).await;
        }
        let events = alice.read_slowly().await;
        if let Err(seen) = account(&events, 6..10) {
            panic!(
                "alice read nothing while 10 messages were posted 100 ms apart into a room that \
                 keeps 4; then she got {}: {seen}",
                short(&events)
            );
        }
        let delivered = texts(&events).len();
        assert!(
            delivered <= 6,
            "alice read nothing while 10 messages were posted 100 ms apart into a room that keeps \
             4, yet she then got {delivered} of them ({}): at most 6 can be kept for her (1 on her \
             connection, 1 the session is handing over, 4 in the room). The session kept the \
             others in memory of its own, so a stalled client grows the server without bound and \
             is never told it missed anything",
            short(&events)
        );
    }

    /// A client whose connection holds one event stops reading while bursts of messages and
    /// Pings come, in any order: afterwards she gets at most what her connection, the one event
    /// the session is handing over, the room and her own command queue could keep, every Ping is
    /// answered, and every message is delivered or reported as missed.
    fn a_stalled_client_costs_the_server_one_event() {
        check_property(64, stalled_scripts(), stalled_client_gets_only_what_was_kept);
    }

    /// A client that stops reading for seconds, minutes, hours, days or a lifetime (a phone in a
    /// tunnel, an app left in a drawer), with one message or one `Pong` waiting to be handed over
    /// and nothing lost from the room: when it reads again, it gets every event, in order. The
    /// paused clock makes the longest pause as cheap as the shortest, so no bound on the wait is
    /// long enough.
    async fn a_client_that_pauses_for_seconds_loses_nothing() {
        const DAY: u64 = 24 * 3600;
        let pauses = [5, 90, 20 * 60, 6 * 3600, DAY, 30 * DAY, 365 * DAY, 100 * 365 * DAY];
        let pauses = pauses.map(Duration::from_secs).into_iter().chain([FAR_END]);
        for (pause, ping) in pauses.flat_map(|p| [(p, false), (p, true)]) {
            let hub = Arc::new(ChatHub::new(16));
            let mut alice = Client::connect_slow(&hub, "lobby", 1).await;
            hub.publish(message("lobby", 0));
            settle().await;
            if ping {
                alice.command(Command::Ping);
            } else {
                hub.publish(message("lobby", 1));
            }
            settle().await;
            // Message 0 fills alice's connection and the session waits to hand her message 1 (or
            // the `Pong`), while she reads nothing. The room keeps 16, so nothing is lost there.
            if pause == FAR_END {
                // One jump: a sleep this long would cost the timer wheel a step per two years.
                tokio::time::advance(pause).await;
            } else {
                sleep(pause).await;
            }
            let last = if ping { 1 } else { 2 };
            hub.publish(message("lobby", last));
            let events = alice.read_slowly().await;
            let (held, expected) = if ping {
                ("the `Pong` to her Ping", vec![message("lobby", 0), message("lobby", 1)])
            } else {
                ("message 1", (0..3).map(|n| message("lobby", n)).collect())
            };
            let expected: Vec<Event> = expected.into_iter().map(Event::Message).collect();
            // The `Pong` may come before message 1 or after it: the README orders the room's
            // messages among themselves, not a command's answer among messages posted after it.
            let due = if ping {
                let (m0, m1) = (expected[0].clone(), expected[1].clone());
                vec![vec![m0.clone(), Event::Pong, m1.clone()], vec![m0, m1, Event::Pong]]
            } else {
                vec![expected]
            };
            let result = account(&events, 0..last + 1);
            assert!(
                result.is_ok() && due.contains(&events),
                "alice's connection held message 0 and the session was handing her {held} when \
                 she stopped reading for {}; the room (which keeps 16) lost nothing, and \
                 message {last} came after. When she read again she got {}{} where {} was due: \
                 every event the session had in hand and every message the room still holds must \
                 reach her, however long she pauses, and a message the session gives up on must \
                 at least be reported as `Missed`",
                spoken(pause),
                short(&events),
                result.err().map(|seen| format!(" ({seen})")).unwrap_or_default(),
                due.iter().map(|due| short(due)).collect::<Vec<_>>().join(" or ")
            );
        }
    }

    /// A client that joins the room it is already in (its app re-joins after a screen change)
    /// gets `Joined` for it, like for any `Join`, and the room's messages keep coming: those
    /// posted before the session took the `Join` too (she never left the room), in order, before
    /// the first message posted after it.
    async fn a_join_of_the_current_room_is_answered() {
        for (buffer, earlier) in [(256, 0), (256, 2), (1, 0), (1, 2)] {
            let hub = Arc::new(ChatHub::new(16));
            let mut alice = Client::connect_slow(&hub, "support", buffer).await;
            for n in 0..earlier {
                hub.publish(message("support", n));
            }
            alice.command(Command::Join("support".into()));
            let mut events = alice.read_until_commands_are_taken().await;
            assert!(
                alice.commands.capacity() == alice.commands.max_capacity(),
                "alice, in support, sent Join(support) and read everything that came ({}), yet \
                 the session never took the Join",
                short(&events)
            );
            let new =
                ChatMessage { room: "support".into(), from: "carol".into(), text: "new".into() };
            hub.publish(new);
            events.extend(alice.read_slowly().await);
            let joined = events.iter().filter(|e| **e == Event::Joined("support".into())).count();
            let earlier_seen = texts(&events[..events.len().saturating_sub(1)]);
            let last = events.last().map(|e| short(std::slice::from_ref(e)));
            assert!(
                joined == 1
                    && earlier_seen == expected_texts(0..earlier)
                    && last.as_deref() == Some("[support:new]"),
                "alice was in support (her connection holds {buffer} event(s)); with {earlier} \
                 message(s) posted to support just before, she sent Join(support), and once the \
                 session had taken it \"new\" was posted to support. She must get \
                 Joined(support) once (every Join is answered, also of the room she is in), \
                 every earlier message in order (a Join of her own room leaves nothing behind: \
                 she never left it), then \"new\", but got {}",
                short(&events)
            );
        }
    }

    /// The reviewer's scenario: a client in the lobby sends `Join(lobby)`, the room she is
    /// already in, while the session still has lobby messages to hand her: on a slow connection
    /// (it holds one event) message 0 waits on it, message 1 in the session's hand and the rest in
    /// the room; on a fast one they were all just posted. She never left the room, so she gets
    /// `Joined(lobby)` once and every one of those messages, in order (the lobby keeps 16: there
    /// is no lag to report), then the message posted after the session took the `Join`.
    async fn a_join_of_the_current_room_keeps_the_messages_not_yet_forwarded() {
        for buffer in [1, 256] {
            for waiting in [1, 3] {
                let hub = Arc::new(ChatHub::new(16));
                let mut alice = Client::connect_slow(&hub, "lobby", buffer).await;
                for n in 0..2 {
                    hub.publish(message("lobby", n));
                    settle().await;
                }
                let before_join = 2 + waiting;
                for n in 2..before_join {
                    hub.publish(message("lobby", n));
                }
                alice.command(Command::Join("lobby".into()));
                let mut events = alice.read_until_commands_are_taken().await;
                assert!(
                    alice.commands.capacity() == alice.commands.max_capacity(),
                    "alice, in the lobby, sent Join(lobby) and read everything that came ({}), \
                     yet the session never took the Join",
                    short(&events)
                );
                hub.publish(message("lobby", before_join));
                events.extend(alice.read_slowly().await);

                let joined = events.iter().filter(|e| **e == Event::Joined("lobby".into())).count();
                let got = texts(&events);
                let missing: Vec<usize> = (0..=before_join)
                    .filter(|n| !got.contains(&format!("message {n}")))
                    .collect();
                let last = events.last().map(|e| short(std::slice::from_ref(e)));
                let expected_last = format!("[m{before_join}]");
                let why = if !missing.is_empty() {
                    format!(
                        "lobby message(s) {missing:?} never reached her, and no `Missed` could \
                         account for them: the lobby keeps 16, so nothing was overwritten. A Join \
                         of the room she is in leaves nothing behind; what the room held for her \
                         must still come"
                    )
                } else if got != expected_texts(0..before_join + 1) {
                    "the lobby's messages must come once each, in the order they were posted"
                        .to_string()
                } else if joined != 1 {
                    format!("she must get Joined(lobby) once, not {joined} time(s)")
                } else if events.len() != got.len() + 1 {
                    "she must get the lobby's messages and Joined(lobby), nothing else".to_string()
                } else if last != Some(expected_last) {
                    format!(
                        "message {before_join}, posted after the session took the Join, must \
                         come after Joined(lobby) and every earlier message"
                    )
                } else {
                    String::new()
                };
                let rest = if waiting == 1 {
                    "message 2".to_string()
                } else {
                    format!("messages 2 to {}", before_join - 1)
                };
                let pending = if buffer == 1 {
                    format!(
                        "message 0 waited on her connection (it holds one event), message 1 in \
                         the session's hand and {rest} in the room"
                    )
                } else {
                    format!("messages 0 and 1 had reached her and {rest} just came")
                };
                assert!(
                    why.is_empty(),
                    "alice was in the lobby; {pending} when she sent Join(lobby), the room she \
                     was already in. Once the session had taken it, message {before_join} was \
                     posted. She got {}: {why}",
                    short(&events)
                );
            }
        }
    }

    /// A session dropped right after messages were posted to its room, before it forwarded them,
    /// with room on the client's connection (some read, some not): nothing more reaches the
    /// client, neither what the session had taken from the room nor what the room still held
    /// for it.
    async fn a_session_dropped_with_messages_pending_forwards_none_of_them() {
        for buffer in [1, 2, 256] {
            for fresh in 1..=3 {
                let hub = Arc::new(ChatHub::new(16));
                let mut alice = Client::connect_slow(&hub, "lobby", buffer).await;
                // Two messages forwarded (or handed over, on a small connection), which alice
                // then reads, making room on her connection.
                for n in 0..2 {
                    hub.publish(message("lobby", n));
                    settle().await;
                }
                let before = alice.received();
                // Posted, and the session dropped before it runs again.
                for n in 2..2 + fresh {
                    hub.publish(message("lobby", n));
                }
                alice.session.abort();
                settle().await;
                hub.publish(message("lobby", 9));
                settle().await;
                let after = alice.received();
                assert!(
                    after.is_empty(),
                    "alice's connection holds {buffer} event(s); she had read {} when {fresh} \
                     more message(s) were posted and her session was dropped before it ran \
                     again. Afterwards her connection got {}: a session that is dropped \
                     forwards nothing more, not even what it had in hand or what the room held \
                     for it",
                    short(&before),
                    short(&after)
                );
            }
        }
    }

    /// A lag that happens while the session waits on a slow client (room buffer 4, connection
    /// buffer 1) is reported too, before the messages the room still holds.
    async fn a_lag_while_the_client_is_slow_is_reported() {
        let hub = Arc::new(ChatHub::new(4));
        let mut alice = Client::connect_slow(&hub, "lobby", 1).await;
        for n in 0..2 {
            hub.publish(message("lobby", n));
            settle().await;
        }
        // Message 0 fills alice's connection; the session waits to hand her message 1 while ten
        // more are posted to a room that holds four.
        for n in 2..12 {
            hub.publish(message("lobby", n));
        }
        let events = alice.read_slowly().await;
        if let Err(seen) = account(&events, 8..12) {
            panic!(
                "alice read slowly, and while the session waited to hand her an early message, \
                 messages 2 to 11 were posted to a room that holds 4; she got {}: {seen}",
                short(&events)
            );
        }
    }

    /// A session that is dropped (its task aborted, as at server shutdown) forwards nothing more:
    /// nothing it started keeps the client subscribed.
    async fn a_dropped_session_forwards_nothing_more() {
        let hub = Arc::new(ChatHub::new(16));
        let mut alice = Client::connect(&hub, "lobby").await;
        alice.session.abort();
        settle().await;
        hub.publish(message("lobby", 0));
        settle().await;
        let events = alice.received();
        assert!(
            events.is_empty(),
            "alice's session was dropped, yet a message posted to the lobby afterwards still \
             reached her connection: {events:?}"
        );

        // Dropped while it waits for a slow client: what it was about to send dies with it.
        let mut bob = Client::connect_slow(&hub, "lobby", 1).await;
        for n in 1..4 {
            hub.publish(message("lobby", n));
            settle().await;
        }
        bob.session.abort();
        settle().await;
        let events = bob.read_slowly().await;
        assert_eq!(
            short(&events),
            "[m1]",
            "bob's connection held message 1 while messages 2 and 3 waited in his session, and \
             then the session was dropped; afterwards he got {}: a dropped session forwards \
             nothing more, and nothing it started keeps sending",
            short(&events)
        );
    }

    /// A client joins rooms in any order, back to a room she left, to the room she is in, with
    /// Pings between: after each `Joined(room)` she gets that room's messages and no other's.
    fn every_join_moves_the_client_to_that_room() {
        check_property(
            32,
            (command_scripts(), prop_oneof![Just(1usize), Just(256usize)]),
            every_join_moves_the_client,
        );
    }

    /// A busy room posts every millisecond to a client who reads one event every 2 ms, so the
    /// room always has a message waiting for her. A `Ping` and then a `Join` she sends meanwhile
    /// are answered while the room keeps posting, and after `Joined` only the new room's
    /// messages come.
    async fn commands_are_answered_while_a_busy_room_keeps_posting() {
        let hub = Arc::new(ChatHub::new(4));
        let _support = hub.subscribe("support");
        let mut alice = Client::connect_slow(&hub, "lobby", 1).await;
        let poster = {
            let hub = hub.clone();
            tokio::spawn(async move {
                for n in 0..1000 {
                    hub.publish(message("lobby", n));
                    hub.publish(message("support", n));
                    sleep(Duration::from_millis(1)).await;
                }
            })
        };
        let mut events = Vec::new();
        for tick in 0..80 {
            match tick {
                10 => alice.command(Command::Ping),
                30 => alice.command(Command::Join("support".into())),
                _ => {}
            }
            sleep(Duration::from_millis(2)).await;
            if let Ok(event) = alice.events.try_recv() {
                events.push(event);
            }
        }
        assert!(!poster.is_finished(), "the test's room stopped posting too early");
        poster.abort();
        let pong = events.iter().position(|e| *e == Event::Pong);
        let joined = events.iter().position(|e| *e == Event::Joined("support".into()));
        let read = events.len();
        assert!(
            pong.is_some() && joined.is_some(),
            "the lobby posted a message every millisecond while alice read one event every 2 ms; \
             she sent a Ping after 20 ms and Join(support) after 60 ms, and by 160 ms, with the \
             lobby still posting, she had read {read} events, {}{}. A command must be answered \
             while the room keeps posting, not only once it falls quiet: a client's keep-alive \
             that waits behind a busy room times out",
            if pong.is_some() { "with a Pong" } else { "no Pong among them" },
            if joined.is_some() { " and Joined(support)" } else { " and no Joined(support)" },
        );
        let stale = events[joined.unwrap_or(0)..]
            .iter()
            .filter(|e| matches!(e, Event::Message(m) if m.room == "lobby"))
            .count();
        assert!(
            stale == 0,
            "alice got Joined(support) while the lobby kept posting, and after it {stale} more \
             lobby message(s): once the session has taken a Join, the old room's messages stop"
        );
    }

    /// A slow client (its connection holds one event) sends `Join` while the lobby still holds
    /// messages for her; once the session has taken the `Join`, the lobby keeps posting past what
    /// it keeps (all at once, or one at a time while she reads one event now and then), whatever
    /// the session is still handing her of the lobby. Nothing posted to the lobby after the `Join`
    /// was taken reaches her, and no `Missed` counts it; after `Joined` only the new room's
    /// messages come.
    async fn a_join_taken_stops_the_old_room_even_while_its_backlog_is_handed_over() {
        for backlog in [1, 3, 5] {
            for after in [4, 9] {
                for one_at_a_time in [false, true] {
                    let hub = Arc::new(ChatHub::new(ROOM));
                    let _support = hub.subscribe("support");
                    let mut alice = Client::connect_slow(&hub, "lobby", 1).await;
                    // Message 0 fills her connection, message 1 is in the session's hand, and
                    // the lobby holds `backlog` more for her.
                    for n in 0..2 {
                        hub.publish(message("lobby", n));
                        settle().await;
                    }
                    let before_join = 2 + backlog;
                    for n in 2..before_join {
                        hub.publish(message("lobby", n));
                    }
                    alice.command(Command::Join("support".into()));
                    let mut events = alice.read_until_commands_are_taken().await;
                    assert!(
                        alice.commands.capacity() == alice.commands.max_capacity(),
                        "alice sent Join(support) and read everything that came ({}), yet the \
                         session never took the Join",
                        short(&events)
                    );
                    // Posted to the lobby after the session took the Join: numbers from 100 on.
                    for n in 100..100 + after {
                        hub.publish(message("lobby", n));
                        if one_at_a_time {
                            settle().await;
                            if let Ok(event) = alice.events.try_recv() {
                                events.push(event);
                            }
                        }
                    }
                    hub.publish(ChatMessage {
                        room: "support".into(),
                        from: "carol".into(),
                        text: "new".into(),
                    });
                    events.extend(alice.read_slowly().await);

                    let joined = events.iter().position(|e| *e == Event::Joined("support".into()));
                    let before = &events[..joined.unwrap_or(events.len())];
                    let late = events.iter().find_map(|e| match e {
                        Event::Message(m) if m.room == "lobby" => number(m).filter(|n| *n >= 100),
                        _ => None,
                    });
                    let told: u64 = before
                        .iter()
                        .map(|e| if let Event::Missed(n) = e { *n } else { 0 })
                        .sum();
                    let delivered = texts(before).len() as u64;
                    let after_joined = joined.map(|j| short(&events[j + 1..]));
                    let why = if let Some(n) = late {
                        format!(
                            "message {n} was posted to the lobby after the session had taken the \
                             Join, and reached her: once the Join is taken, no more of the old \
                             room's messages come, even while the session still hands her what \
                             the lobby held for her"
                        )
                    } else if told + delivered > before_join as u64 {
                        format!(
                            "before Joined(support) she got {delivered} lobby message(s) and was \
                             told she missed {told}, yet only {before_join} were posted to the \
                             lobby before the Join was taken: a `Missed` counts messages she \
                             lost, not ones posted after she left"
                        )
                    } else if let Err(seen) = account(before, 0..0) {
                        seen
                    } else if after_joined.as_deref() != Some("[support:new]") {
                        "she must get Joined(support), then \"new\" only".to_string()
                    } else {
                        String::new()
                    };
                    let how = if one_at_a_time {
                        "one at a time, while she read one event now and then"
                    } else {
                        "all at once"
                    };
                    assert!(
                        why.is_empty(),
                        "alice was slow to read (her connection holds one event); the lobby \
                         (which keeps {ROOM}) held messages 2 to {} for her, besides message 0 on \
                         her connection and message 1 in the session's hand, when she sent \
                         Join(support). Once the session had taken the Join, messages 100 to {} \
                         were posted to the lobby ({how}), then \"new\" to support. She got {}: \
                         {why}",
                        before_join - 1,
                        99 + after,
                        short(&events)
                    );
                }
            }
        }
    }

    /// A slow client (her connection holds one event) stops reading with an event on her
    /// connection and one in the session's hand (two messages, or two `Pong`s), and queues
    /// commands (`Ping`s, or `Ping`s and `Join`s of her own room). As she reads one event at a
    /// time, the session may take a command only when the answer to the one before has gone to
    /// her connection: it takes at most two more than she has read answers to (one on her
    /// connection, one in its hand), and the others wait in her command queue. Every command is
    /// answered once.
    async fn commands_wait_in_the_command_queue_while_the_client_is_slow() {
        for held_pongs in [false, true] {
            for joins in [false, true] {
                for queued in [3, 8, 40] {
                    let hub = Arc::new(ChatHub::new(16));
                    let mut alice = Client::connect_slow(&hub, "lobby", 1).await;
                    for n in 0..2 {
                        if held_pongs {
                            alice.command(Command::Ping);
                        } else {
                            hub.publish(message("lobby", n));
                        }
                        settle().await;
                    }
                    let command = |i: usize| {
                        if joins && i % 2 == 1 {
                            Command::Join("lobby".into())
                        } else {
                            Command::Ping
                        }
                    };
                    for i in 0..queued {
                        alice.command(command(i));
                    }
                    settle().await;
                    let sent = queued + if held_pongs { 2 } else { 0 };
                    let mut read = Vec::new();
                    for _ in 0..3 {
                        if let Ok(event) = alice.events.try_recv() {
                            read.push(event);
                        }
                        settle().await;
                        let waiting = alice.commands.max_capacity() - alice.commands.capacity();
                        let taken = sent - waiting;
                        let answers =
                            read.iter().filter(|e| !matches!(e, Event::Message(_))).count();
                        let what = if joins { "Pings and Join(lobby)s" } else { "Pings" };
                        let held = if held_pongs { "a Pong" } else { "a message" };
                        let count = match read.len() {
                            1 => "one event".to_string(),
                            n => format!("{n} events"),
                        };
                        assert!(
                            taken <= answers + 2,
                            "alice's connection held {held} and the session had another in its \
                             hand when she queued {queued} {what} and read {count} ({}); by then \
                             the session had taken {taken} of her {sent} commands and {waiting} \
                             were left in her command queue, yet besides the {answers} answer(s) \
                             she read at most 2 can be kept for her (1 on her connection, 1 in \
                             the session's hand). The session took commands into memory of its \
                             own: while an event waits for a slow client, her commands wait in \
                             her command queue",
                            short(&read)
                        );
                    }
                    read.extend(alice.read_slowly().await);
                    let answers = read.iter().filter(|e| !matches!(e, Event::Message(_))).count();
                    assert!(
                        answers == sent,
                        "alice sent {sent} commands and read slowly; she got {answers} answers \
                         ({}): every command is answered once",
                        short(&read)
                    );
                }
            }
        }
    }

    /// The same however many commands she queues: her command queue has room for 2^20, and
    /// while message 0 waits on her connection and message 1 in the session's hand she queues
    /// `Ping`s in doubling batches (1, 2, 4, .. up to 2^20 in all), reading one event after each
    /// batch. Whatever the queue's length, the session takes at most two more commands than she
    /// has read answers to: no length of her queue (a "spammer" threshold) makes it take her
    /// commands into memory of its own. (On one seed's runtime: queuing 2^20 commands is cheap
    /// once, dear eight times.)
    fn commands_wait_in_the_command_queue_however_many_are_queued() {
        const MOST: usize = 1 << 20;
        let runtime = kata_support::runtime::current_thread(kata_support::runtime::SEEDS[0]);
        runtime.block_on(async {
            let hub = Arc::new(ChatHub::new(16));
            let (commands, command_rx) = mpsc::channel(MOST);
            let (event_tx, mut events) = mpsc::channel(1);
            let session = tokio::spawn({
                let hub = hub.clone();
                async move { run_session(&hub, "lobby".to_owned(), command_rx, event_tx).await }
            });
            settle().await;
            for n in 0..2 {
                hub.publish(message("lobby", n));
                settle().await;
            }
            let (mut queued, mut batch) = (0, 1);
            let mut read = Vec::new();
            while queued < MOST {
                let now = batch.min(MOST - queued);
                for _ in 0..now {
                    commands.try_send(Command::Ping).expect("the session stopped reading commands");
                }
                queued += now;
                batch *= 2;
                settle().await;
                if let Ok(event) = events.try_recv() {
                    read.push(event);
                }
                settle().await;
                let waiting = commands.max_capacity() - commands.capacity();
                let taken = queued - waiting;
                let answers = read.iter().filter(|e| !matches!(e, Event::Message(_))).count();
                assert!(
                    taken <= answers + 2,
                    "alice's connection held a message and the session had another in its hand \
                     when she queued {queued} Pings, reading one event after each batch of them \
                     ({} events read: {}); by then the session had taken {taken} of her commands \
                     and {waiting} were left in her command queue, yet besides the {answers} \
                     answer(s) she read at most 2 can be kept for her (1 on her connection, 1 in \
                     the session's hand). The session took commands into memory of its own: \
                     while an event waits for a slow client, her commands wait in her command \
                     queue, however many she queued",
                    read.len(),
                    short(&read)
                );
            }
            drop(commands);
            drop(events);
            session.abort();
        });
    }

    /// A slow client (her connection holds one event) sends a `Join` (of another room, or of the
    /// room she is in) while message 0 waits on her connection, message 1 in the session's hand
    /// and more in the lobby (which keeps 4). Once the session has taken the `Join`, the lobby
    /// posts past what it keeps, overwriting what it held for her. When she reads again, only the
    /// first two events she gets can be messages the lobby no longer holds: what the session hands
    /// her of the room she leaves (or stays in) comes from the room, one event at a time, not
    /// from a copy of the session's own, and what the room overwrote meanwhile is at most
    /// reported as missed.
    async fn a_join_keeps_no_copy_of_the_room_in_the_session() {
        for target in ["support", "lobby"] {
            for backlog in [1, 3, ROOM] {
                for after in [ROOM, 20] {
                    let hub = Arc::new(ChatHub::new(ROOM));
                    let _support = hub.subscribe("support");
                    let mut alice = Client::connect_slow(&hub, "lobby", 1).await;
                    for n in 0..2 {
                        hub.publish(message("lobby", n));
                        settle().await;
                    }
                    let before_join = 2 + backlog;
                    for n in 2..before_join {
                        hub.publish(message("lobby", n));
                    }
                    alice.command(Command::Join(target.into()));
                    let early = alice.read_until_commands_are_taken().await;
                    assert!(
                        alice.commands.capacity() == alice.commands.max_capacity(),
                        "alice sent Join({target}) and read everything that came ({}), yet the \
                         session never took the Join",
                        short(&early)
                    );
                    // Posted to the lobby after the Join was taken, from 100 on: the lobby then
                    // holds none of messages 0 to `before_join - 1`.
                    for n in 100..100 + after {
                        hub.publish(message("lobby", n));
                    }
                    let late = alice.read_slowly().await;
                    let kept = late.iter().enumerate().skip(2).find_map(|(at, event)| match event {
                        Event::Message(m) if m.room == "lobby" => {
                            number(m).filter(|n| *n < 100).map(|n| (at, n))
                        }
                        _ => None,
                    });
                    if let Some((at, n)) = kept {
                        panic!(
                            "alice was slow to read (her connection holds one event); message 0 \
                             waited on her connection, message 1 in the session's hand and \
                             messages 2 to {} in the lobby (which keeps {ROOM}) when she sent \
                             Join({target}); she read {} until the session took it. Then messages \
                             100 to {} were posted to the lobby, which from then on held none of \
                             messages 0 to {}. When she read again she got {}, and message {n} \
                             came as event {} of those: outside the room at most 2 events could \
                             be kept for her (1 on her connection, 1 the session is handing \
                             over). The session copied the lobby into memory of its own at the \
                             Join: what it hands her of a room comes from the room, one event at \
                             a time, and what the room overwrote meanwhile is at most reported \
                             as missed",
                            before_join - 1,
                            short(&early),
                            99 + after,
                            before_join - 1,
                            short(&late),
                            at + 1,
                        );
                    }
                }
            }
        }
    }
}
