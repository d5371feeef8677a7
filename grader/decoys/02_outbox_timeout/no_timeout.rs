//! Decoy for kata 02: removes the timeout, so a full outbox stalls the room instead of answering
//! Busy.
//!
//! A chat server gives every connected client an outbox: a bounded channel drained by the task
//! that writes to the client's socket. When a room broadcasts a line, it calls
//! [`Outbox::enqueue`] for each member. A member on a slow phone link reads slowly, its outbox
//! fills up, and the room must not stall for everybody because of one client: `enqueue` waits a
//! little for space and then answers [`EnqueueError::Busy`], handing the message back so the room
//! can park it and try again later.
//!
//! `enqueue` bounds its wait with `tokio::time::timeout`. When the time is up, `timeout` drops
//! the future it was waiting on, and whatever that future owned is dropped with it. Read
//! `README.md` for the whole story.

use std::time::Duration;

use tokio::sync::mpsc;

/// One line of chat on its way to a client.
///
/// Deliberately not `Clone`: messages can carry large attachments, and the server moves them
/// rather than copying them.
#[derive(Debug, PartialEq, Eq)]
pub struct ChatMessage {
    pub room: String,
    pub from: String,
    pub text: String,
}

/// Why [`Outbox::enqueue`] did not queue a message.
#[derive(Debug, PartialEq, Eq)]
pub enum EnqueueError {
    /// The outbox stayed full for the whole wait: the client is reading slowly. Carries the
    /// message back, when the outbox still has it, so that the room can park it and retry.
    /// `Busy(None)` means the message is gone for good.
    Busy(Option<ChatMessage>),
    /// The client disconnected (its writer task dropped the receiving end). Carries the message
    /// back.
    Closed(ChatMessage),
}

/// The sending side of one client's outbox. Clones share the same outbox.
#[derive(Debug, Clone)]
pub struct Outbox {
    tx: mpsc::Sender<ChatMessage>,
    wait: Duration,
}

impl Outbox {
    /// An outbox feeding `tx` that waits at most `wait` for space before answering `Busy`.
    pub fn new(tx: mpsc::Sender<ChatMessage>, wait: Duration) -> Self {
        Outbox { tx, wait }
    }

    /// Queues `msg` for the client, waiting at most `wait` for space in the outbox.
    ///
    /// Returns `Busy` when the outbox stayed full for the whole wait, and `Closed` when the client
    /// is gone.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe, and not even safe against its own timeout: when the wait runs out, the
    /// message is dropped together with the `send` future that owned it, so `Busy` cannot hand it
    /// back. If the caller drops this future, the message is dropped too (it was never queued).
    pub async fn enqueue(&self, msg: ChatMessage) -> Result<(), EnqueueError> {
        // No timeout, no dropped `send` future: the message can no longer be lost.
        self.tx.send(msg).await.map_err(|mpsc::error::SendError(msg)| EnqueueError::Closed(msg))
    }
}
