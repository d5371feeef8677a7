//! Decoy for kata 02: polls with `try_send` and short sleeps, which never joins the channel's queue
//! and starves under load.
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
    pub async fn enqueue(&self, mut msg: ChatMessage) -> Result<(), EnqueueError> {
        // `try_send` hands the message back when the outbox is full, so nothing can be lost:
        // retry every millisecond until the wait runs out.
        let deadline = tokio::time::Instant::now() + self.wait;
        loop {
            match self.tx.try_send(msg) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Closed(m)) => return Err(EnqueueError::Closed(m)),
                Err(mpsc::error::TrySendError::Full(m)) => msg = m,
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(EnqueueError::Busy(Some(msg)));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}
