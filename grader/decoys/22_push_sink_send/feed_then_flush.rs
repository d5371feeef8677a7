//! Decoy for kata 22: uses `feed` (no flush per item) and one `flush` at the end, still moving the item in.
//!
//! A push gateway keeps one connection open per device and writes notifications to it as lines
//! (`"<id> <title>\n"`) through a `FramedWrite` with a `LinesCodec`. Each device session queues
//! notifications in a [`Pusher`] and runs a `select!` loop: one branch is `pusher.deliver()`, the
//! others are new notifications arriving and the heartbeat timer. Whenever another branch wins,
//! `deliver` is dropped, and the loop calls it again.
//!
//! `SinkExt::send` takes the item by value. If the `send` future is dropped before the sink
//! accepted the item, the item is dropped with it. Read `README.md` for the whole story.

use std::collections::VecDeque;

use futures::SinkExt;
use tokio::io::AsyncWrite;
use tokio_util::codec::{FramedWrite, LinesCodec, LinesCodecError};

/// One notification for one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub id: u64,
    pub title: String,
}

impl Notification {
    /// The line the device expects: `"<id> <title>"` (the codec adds the newline).
    pub fn to_line(&self) -> String {
        format!("{} {}", self.id, self.title)
    }
}

/// One device session's writer: a queue of notifications and the framed connection.
#[derive(Debug)]
pub struct Pusher<W> {
    device: FramedWrite<W, LinesCodec>,
    outbox: VecDeque<Notification>,
}

impl<W: AsyncWrite + Unpin> Pusher<W> {
    /// A writer for one device connection, as the gateway's connection layer built it. (It caps
    /// the memory of each connection with a backpressure boundary of one frame: `poll_ready`
    /// flushes whatever is buffered before it accepts the next frame.)
    pub fn new(device: FramedWrite<W, LinesCodec>) -> Self {
        Pusher { device, outbox: VecDeque::new() }
    }

    /// Queues a notification; the next `deliver` pushes it.
    pub fn enqueue(&mut self, notification: Notification) {
        self.outbox.push_back(notification);
    }

    /// Notifications queued and not yet handed to the connection.
    pub fn queued(&self) -> usize {
        self.outbox.len()
    }

    /// Pushes every queued notification to the device, in order, and flushes the connection.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe. The session loop drops this future whenever another branch of its
    /// `select!` wins. If that happens while `send` waits for the connection to take the
    /// previous frame, the notification being sent is lost: it was already taken off the queue
    /// and moved into the `send` future.
    pub async fn deliver(&mut self) -> Result<(), LinesCodecError> {
        // `feed` only queues the frame in the sink without flushing it, so the slow part, the
        // flush, happens once at the end.
        while let Some(notification) = self.outbox.pop_front() {
            self.device.feed(notification.to_line()).await?;
        }
        SinkExt::<String>::flush(&mut self.device).await
    }
}
