//! # Kata 22 solution: race readiness, not the item
//!
//! A `Sink` is driven in three steps: `poll_ready` (wait until it can take an item),
//! `start_send` (hand the item over, synchronously) and `poll_flush` (push it out). `SinkExt::send`
//! bundles them into one future that owns the item, so dropping that future during `poll_ready`
//! drops the item. `deliver` now drives the steps itself. It awaits only readiness and flushing,
//! which hold no item, and it takes a notification off the queue only in the same synchronous
//! step that hands it to the sink.

use std::collections::VecDeque;

use std::future::poll_fn;

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
    /// Cancel safe. A notification stays in the queue until the connection has accepted it, and
    /// it is accepted exactly once. If this future is dropped, the next call carries on: it
    /// finishes writing any frame the connection already holds, then the rest of the queue.
    pub async fn deliver(&mut self) -> Result<(), LinesCodecError> {
        while !self.outbox.is_empty() {
            // Wait until the connection can take a frame. No notification has moved yet, so a
            // drop here loses nothing; the flush it does is resumed by the next call.
            poll_fn(|cx| SinkExt::<String>::poll_ready_unpin(&mut self.device, cx)).await?;
            // Take the notification and hand it over in one synchronous step: there is no
            // `.await` between leaving the queue and being in the connection's buffer.
            let notification = self.outbox.pop_front().expect("the queue is not empty");
            self.device.start_send_unpin(notification.to_line())?;
        }
        // Flushing holds no item either: the buffer keeps whatever is not written yet. (The
        // codec encodes anything that is `AsRef<str>`, so name the item type.)
        SinkExt::<String>::flush(&mut self.device).await
    }
}
