//! Hidden tests for kata 14: every message published to the client's room reaches the client, in
//! order, whatever the session is doing when it is published; a lagging client is told, not
//! dropped or silently skipped.

use std::sync::Arc;

use chat_fanout_subscribe::{ChatHub, ChatMessage, Command, Event, run_session};
use kata_support::{hidden_test, settle};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

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

hidden_test! {
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
        let mut expected = vec![Event::Missed(6)];
        expected.extend((6..10).map(|n| Event::Message(message("lobby", n))));
        let events = alice.received();
        assert!(
            !alice.session.is_finished(),
            "the session ended when the client fell behind (events: {events:?}); \
             `RecvError::Lagged` does not close the receiver, so tell the client with \
             `Event::Missed(n)` and keep forwarding"
        );
        assert_eq!(
            events,
            expected,
            "10 messages were posted into a room that keeps 4: the client must get \
             `Missed(6)` and then messages 6 to 9. `Ok(message) = feed.recv()` in `select!` \
             skips the `Err(RecvError::Lagged(6))` without telling anybody"
        );

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

    /// A slow client (its connection holds one event) joins another room while the session is
    /// still waiting to hand it an earlier event: once the `Join` is taken, a message posted to the
    /// new room reaches it and one posted to the old room does not.
    async fn a_join_while_the_client_is_slow_switches_at_once() {
        let hub = Arc::new(ChatHub::new(16));
        let mut alice = Client::connect_slow(&hub, "lobby", 1).await;
        let _support = hub.subscribe("support");
        alice.command(Command::Ping);
        settle().await;
        alice.command(Command::Join("support".into()));
        settle().await;
        // The session holds `Joined` and waits for room on the client's connection.
        hub.publish(ChatMessage { room: "support".into(), from: "carol".into(), text: "new".into() });
        hub.publish(ChatMessage { room: "lobby".into(), from: "bob".into(), text: "old".into() });
        let events = alice.read_slowly().await;
        let got = texts(&events);
        assert!(
            events.first() == Some(&Event::Pong)
                && events.get(1) == Some(&Event::Joined("support".into()))
                && got == ["new"],
            "the session took alice's `Join(support)` while she was slow to read; then \"new\" was \
             posted to support and \"old\" to the lobby. She must get Pong, Joined(support) and \
             \"new\" only, but got {events:?}"
        );
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
        let mut expected: Vec<Event> = (0..2).map(|n| Event::Message(message("lobby", n))).collect();
        expected.push(Event::Missed(6));
        expected.extend((8..12).map(|n| Event::Message(message("lobby", n))));
        assert_eq!(
            events, expected,
            "alice read slowly, and while the session waited to hand her message 1, messages 2 to \
             11 were posted to a room that holds 4: she must be told she missed 6, then get \
             messages 8 to 11"
        );
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
    }
}
