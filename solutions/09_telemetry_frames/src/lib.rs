//! # Kata 09 solution: the partial frame lives in the link
//!
//! The link owns a `FramedRead` with a `LengthDelimitedCodec`. Every byte read from the sensor goes
//! into the `FramedRead`'s buffer, which belongs to the link, not to any one call of
//! `next_event`. Dropping a call loses nothing: the next call finds the half-read frame still in
//! the buffer and carries on where the last one stopped.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::io::AsyncRead;
use tokio::time::{Instant, Interval, interval_at};
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};

/// How often the link reports that it is alive, on its own schedule, whether or not frames arrive.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

/// The largest payload a sensor sends. A bigger length means the stream is corrupt.
pub const MAX_FRAME: usize = 64 * 1024;

/// What the link produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// One frame's payload (without its length prefix).
    Frame(Bytes),
    /// The heartbeat timer ticked.
    Heartbeat,
}

/// The collector's end of one sensor link.
#[derive(Debug)]
pub struct TelemetryLink<R> {
    /// The reader and, in its buffer, whatever part of the next frame has arrived so far.
    frames: FramedRead<R, LengthDelimitedCodec>,
    heartbeat: Interval,
}

impl<R: AsyncRead + Unpin> TelemetryLink<R> {
    /// A link reading frames from `reader`. The first heartbeat is due one period from now.
    pub fn new(reader: R) -> Self {
        // The codec's defaults are the sensors' protocol: a 4-byte big-endian length that counts
        // the payload only.
        let frames = LengthDelimitedCodec::builder().max_frame_length(MAX_FRAME).new_read(reader);
        let heartbeat = interval_at(Instant::now() + HEARTBEAT_EVERY, HEARTBEAT_EVERY);
        TelemetryLink { frames, heartbeat }
    }

    /// Waits for the next frame or heartbeat, whichever comes first.
    ///
    /// Returns `Ok(None)` when the sensor closes the link, and an `InvalidData` error when a
    /// length prefix is larger than [`MAX_FRAME`]. A read error is returned as the reader
    /// reported it, kind and all: the collector tells a failed transport from a corrupt stream
    /// by the kind.
    /// An error of any kind (`Interrupted` too, which this link passes on) ends the link: drop
    /// it. A later call may report the end, since `FramedRead` returns `None` once after an error.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a half-read frame stays buffered in the link, and a dropped call consumes no
    /// heartbeat tick. After a cancellation, the next call returns the same events the dropped
    /// one would have.
    pub async fn next_event(&mut self) -> io::Result<Option<Event>> {
        // Both branches are cancel safe: `StreamExt::next` on a `FramedRead` never loses a
        // value, and `Interval::tick` consumes no tick when it loses the race.
        tokio::select! {
            frame = self.frames.next() => match frame {
                Some(Ok(payload)) => Ok(Some(Event::Frame(payload.freeze()))),
                Some(Err(e)) => Err(e),
                None => Ok(None),
            },
            _ = self.heartbeat.tick() => Ok(Some(Event::Heartbeat)),
        }
    }
}
