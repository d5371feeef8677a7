//! Decoy for kata 02: reserves correctly, then retries the reservation twice before giving up.
//!
//! Nothing is lost, but the "resilience" breaks the promise the room relies on: `enqueue` waits at
//! most `wait` for space. On a full outbox whose client never reads, Busy comes back after three
//! waits, and the room stalls three times as long for one phone on a train. Each retry also
//! rejoins the channel's queue at the back, behind senders that arrived during the first wait.

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
    /// Returns `Busy` with the message when the outbox stayed full for the whole wait, and
    /// `Closed` with the message when the client is gone.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in the sense that matters to the room: if this future is dropped, the message
    /// was not queued (it is dropped with the future, since the caller gave it away) and the
    /// outbox is unchanged apart from the dropped waiter's place in line. The message is never
    /// queued twice and never half-queued. Its own timeout no longer loses anything: `Busy`
    /// always carries the message back.
    pub async fn enqueue(&self, msg: ChatMessage) -> Result<(), EnqueueError> {
        for _attempt in 0..3 {
            match tokio::time::timeout(self.wait, self.tx.reserve()).await {
                Ok(Ok(permit)) => {
                    permit.send(msg);
                    return Ok(());
                }
                Ok(Err(mpsc::error::SendError(()))) => return Err(EnqueueError::Closed(msg)),
                Err(_elapsed) => continue,
            }
        }
        Err(EnqueueError::Busy(Some(msg)))
    }
}
