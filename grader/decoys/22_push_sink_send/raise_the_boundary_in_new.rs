//! Decoy for kata 22: keeps `send`, but `Pusher::new` raises the connection's backpressure
//! boundary from one frame to 64 KiB, so `poll_ready` never waits and a dropped `send` has always
//! handed its line over. Wrong: the README keeps the boundary, which caps each connection's memory;
//! on a phone that reads nothing, every dropped `deliver` moves one more notification into the
//! connection's buffer (the hidden test sees the whole outbox leave while the phone reads nothing).

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
        let mut device = device;
        // `send` only loses its item when it is dropped in `poll_ready`, and `poll_ready` only
        // waits when the buffer is at the boundary. Give the buffer room: `send` then never waits
        // before `start_send`, so a dropped `send` has always handed its line over.
        device.set_backpressure_boundary(64 * 1024);
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
        while let Some(notification) = self.outbox.pop_front() {
            self.device.send(notification.to_line()).await?;
        }
        SinkExt::<String>::flush(&mut self.device).await
    }
}
