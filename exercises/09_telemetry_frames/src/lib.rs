//! # Kata 09: the telemetry link that loses its place
//!
//! Field sensors stream telemetry to a collector over a serial-to-TCP bridge. The protocol is the
//! simplest there is: every frame is a 4-byte big-endian length followed by that many bytes of
//! payload. The collector side of one link is a [`TelemetryLink`]: [`TelemetryLink::next_event`]
//! yields each frame as it arrives and, every [`HEARTBEAT_EVERY`] on its own schedule, a
//! heartbeat, so that the collector can tell the upstream service "link alive" even when the
//! sensor is quiet.
//!
//! `next_event` races reading a frame against the heartbeat timer:
//!
//! ```text
//! tokio::select! {
//!     frame = read_frame(&mut self.reader) => ...,
//!     _ = self.heartbeat.tick() => Heartbeat,
//! }
//! ```
//!
//! Frames come over a slow radio, so a frame can take longer than a heartbeat period to arrive.
//! Read `README.md` for what happens then.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::{Instant, Interval, interval_at};

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
    reader: R,
    heartbeat: Interval,
}

impl<R: AsyncRead + Unpin> TelemetryLink<R> {
    /// A link reading frames from `reader`. The first heartbeat is due one period from now.
    pub fn new(reader: R) -> Self {
        let heartbeat = interval_at(Instant::now() + HEARTBEAT_EVERY, HEARTBEAT_EVERY);
        TelemetryLink { reader, heartbeat }
    }

    /// Waits for the next frame or heartbeat, whichever comes first.
    ///
    /// Returns `Ok(None)` when the sensor closes the link, and an `InvalidData` error when a
    /// length prefix is larger than [`MAX_FRAME`].
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: if this future is dropped while a frame is half read, the bytes of it that
    /// were already read are lost, and the next call starts reading in the middle of a frame. The
    /// heartbeat inside does exactly that to it whenever a frame is slower than a period.
    pub async fn next_event(&mut self) -> io::Result<Option<Event>> {
        // TODO: when the heartbeat wins this race, the losing `read_frame` future is dropped,
        // and the bytes it has read go with it. Keep the partial frame somewhere that outlives
        // one call.
        tokio::select! {
            frame = read_frame(&mut self.reader) => Ok(frame?.map(Event::Frame)),
            _ = self.heartbeat.tick() => Ok(Some(Event::Heartbeat)),
        }
    }
}

/// Reads one length-prefixed frame, or `None` at the end of the stream.
async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> io::Result<Option<Bytes>> {
    let len = match reader.read_u32().await {
        Ok(len) => len as usize,
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    };
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame length {len} exceeds the limit of {MAX_FRAME} bytes"),
        ));
    }
    let mut payload = vec![0; len];
    reader.read_exact(&mut payload).await?;
    Ok(Some(Bytes::from(payload)))
}
