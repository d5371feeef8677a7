//! Decoy for kata 22: `deliver` raises the connection's backpressure boundary to 64 KiB before
//! sending, so `poll_ready` is always ready and `send` hands the line over in its first poll.
//! Wrong: the README keeps the boundary, which caps each connection's memory; on a phone that reads
//! nothing, three dropped calls empty the outbox into the buffer of a connection that took 0 bytes.
//!
//! # Kata 22: the push writer that swallows notifications
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
    pub async fn deliver(&mut self) -> Result<(), LinesCodecError> {
        // With room for whole frames, `poll_ready` does not wait, so `send` hands the line over
        // in its first poll, before anything can drop it.
        self.device.set_backpressure_boundary(64 * 1024);
        while let Some(notification) = self.outbox.pop_front() {
            self.device.send(notification.to_line()).await?;
        }
        SinkExt::<String>::flush(&mut self.device).await
    }
}
