//! # Kata 14 solution: one subscription, kept across the loop
//!
//! The session subscribes to its room once, before the loop, and keeps that receiver until the
//! client joins another room. A `broadcast::Receiver` is a cursor into the room's history: as
//! long as it lives, every message published to the room is either read through it or reported
//! as missed (`Lagged`). `recv()` itself is cancel safe, so the `select!` may drop the receive
//! whenever a command wins, and the next trip round the loop picks up where it left off.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc};

/// One chat message, as published to a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// The room it was posted in.
    pub room: String,
    /// Who wrote it.
    pub from: String,
    /// What they wrote.
    pub text: String,
}

/// What a client can ask its session to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A keep-alive; the session answers [`Event::Pong`].
    Ping,
    /// Leave the current room and join this one; the session answers [`Event::Joined`].
    Join(String),
}

/// What a session sends down to its client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A message posted in the client's room.
    Message(ChatMessage),
    /// The answer to [`Command::Ping`].
    Pong,
    /// The client is now in this room.
    Joined(String),
    /// The client fell so far behind that this many messages were overwritten before it read
    /// them. The client shows "some messages were skipped" and carries on.
    Missed(u64),
}

/// The rooms of the chat server: one broadcast channel per room.
#[derive(Debug)]
pub struct ChatHub {
    rooms: Mutex<HashMap<String, broadcast::Sender<ChatMessage>>>,
    capacity: usize,
}

impl ChatHub {
    /// A hub whose rooms each buffer up to `capacity` messages for slow readers.
    pub fn new(capacity: usize) -> Self {
        ChatHub { rooms: Mutex::new(HashMap::new()), capacity }
    }

    /// Subscribes to `room` (creating it if needed). The receiver gets every message published
    /// to the room from now on, and nothing published before.
    pub fn subscribe(&self, room: &str) -> broadcast::Receiver<ChatMessage> {
        let mut rooms = self.rooms.lock().expect("rooms lock");
        rooms
            .entry(room.to_owned())
            .or_insert_with(|| broadcast::channel(self.capacity).0)
            .subscribe()
    }

    /// Publishes `message` to its room and returns how many subscribers it reached.
    pub fn publish(&self, message: ChatMessage) -> usize {
        let rooms = self.rooms.lock().expect("rooms lock");
        match rooms.get(&message.room) {
            Some(room) => room.send(message).unwrap_or(0),
            None => 0,
        }
    }
}

/// Runs one client's session: forwards the messages of the client's room to `client` and
/// handles the client's `commands`, starting in `room`. Returns when the client disconnects
/// (`commands` closes) or stops listening (`client` closes).
///
/// # Cancel safety
///
/// The session is meant to run until the client leaves; dropping it simply ends it, and nothing
/// outside it is left half-done. Inside, the room subscription outlives every `select!`, and
/// `broadcast::Receiver::recv` is cancel safe, so a command winning the race never costs a
/// message. The subscription is replaced only when the client joins another room, never on a
/// `Join` of the room she is in, so that command costs no message either.
pub async fn run_session(
    hub: &ChatHub,
    mut room: String,
    mut commands: mpsc::Receiver<Command>,
    client: mpsc::Sender<Event>,
) {
    // Subscribed once, before the loop: from here on the receiver remembers our place in the
    // room's history, whatever the loop is doing.
    let mut feed = hub.subscribe(&room);

    loop {
        let event = tokio::select! {
            // Commands first: a client waiting for its `Pong` should not wait behind a busy room.
            biased;
            command = commands.recv() => match command {
                Some(Command::Ping) => Event::Pong,
                Some(Command::Join(next)) => {
                    // The only time the subscription changes: the client asked for another room.
                    // Messages of the new room published before this point were not meant for
                    // this client. A `Join` of the room she is already in leaves nothing: the
                    // receiver, and every message it still holds for her, stays.
                    if next != room {
                        feed = hub.subscribe(&next);
                        room.clone_from(&next);
                    }
                    Event::Joined(next)
                }
                // The client disconnected.
                None => return,
            },
            received = feed.recv() => match received {
                Ok(message) => Event::Message(message),
                // The receiver stays subscribed after a lag; tell the client and carry on from
                // the oldest message the room still holds.
                Err(RecvError::Lagged(missed)) => Event::Missed(missed),
                // Every sender of the room is gone: the room no longer exists.
                Err(RecvError::Closed) => return,
            },
        };

        if client.send(event).await.is_err() {
            // The client's connection is gone.
            return;
        }
    }
}
