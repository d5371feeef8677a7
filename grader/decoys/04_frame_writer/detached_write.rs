//! Decoy for kata 04: detaches each write into its own task, so the caller's `select!` cannot cut
//! it.
//!
//! A file-sync client uploads a file to its server as a sequence of frames over one long-lived
//! connection. A frame is a fixed header (sequence number and body length) followed by the body.
//! The server reads the header, then exactly that many body bytes, then the next header: one
//! missing or repeated byte and everything after it is garbage.
//!
//! The upload loop shows a progress bar, so it races every frame against a ticker:
//!
//! ```text
//! for frame in frames {
//!     loop {
//!         select! {
//!             sent = writer.send_frame(&frame) => { sent?; break }
//!             _ = progress.tick() => redraw_progress_bar(),
//!         }
//!     }
//! }
//! ```
//!
//! Each tick drops the `send_frame` future, perhaps half way through the frame, and the next
//! iteration calls `send_frame` again with the same frame. Read `README.md` for the whole story.

use std::io;

use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Bytes in a frame header: the sequence number and the body length, both big-endian `u32`.
pub const HEADER_LEN: usize = 8;

/// One frame of an upload. The sequence number identifies it: a retry carries the same number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub seq: u32,
    pub body: Vec<u8>,
}

impl Frame {
    /// The header that goes on the wire before the body.
    pub fn header(&self) -> [u8; HEADER_LEN] {
        let len = u32::try_from(self.body.len()).expect("a frame body fits in u32");
        let mut header = [0; HEADER_LEN];
        header[..4].copy_from_slice(&self.seq.to_be_bytes());
        header[4..].copy_from_slice(&len.to_be_bytes());
        header
    }

    /// The whole frame as it goes on the wire: header, then body.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(HEADER_LEN + self.body.len());
        bytes.extend_from_slice(&self.header());
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// Writes frames to one connection.
#[derive(Debug)]
pub struct FrameWriter<W> {
    io: std::sync::Arc<tokio::sync::Mutex<W>>,
}

impl<W: AsyncWrite + Unpin + Send + 'static> FrameWriter<W> {
    /// A writer sending frames to `io`.
    pub fn new(io: W) -> Self {
        FrameWriter { io: std::sync::Arc::new(tokio::sync::Mutex::new(io)) }
    }

    /// Sends one whole frame and flushes it.
    ///
    /// A caller whose earlier call with this frame was cancelled calls again with the same frame
    /// (same `seq`) to finish sending it; a caller that moves on passes the next frame instead.
    /// Either way the server must receive every frame whole, and once.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: if this future is dropped part way, part of the frame is on the wire and
    /// the writer forgets how much. Calling again starts the frame over from its first byte, so
    /// the server reads a partial frame followed by a whole one, and its framing is broken.
    pub async fn send_frame(&mut self, frame: &Frame) -> io::Result<()> {
        // The write runs in its own task: dropping this future cannot interrupt it, and the lock
        // keeps frames from interleaving.
        let io = self.io.clone();
        let bytes = frame.encode();
        tokio::spawn(async move {
            let mut io = io.lock().await;
            if io.write_all(&bytes).await.is_ok() {
                let _ = io.flush().await;
            }
        });
        Ok(())
    }
}
