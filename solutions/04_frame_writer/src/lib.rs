//! # Kata 04 solution: the unsent rest of the frame lives in the writer
//!
//! A cancelled `write_all` forgets how far it got, and `write_all` of the whole frame is no better
//! than two of them: any `.await` that writes can be dropped after a partial write. So the
//! progress is moved out of the future. The frame being sent is encoded once into a
//! `Cursor<Vec<u8>>` stored in the `FrameWriter`, and written with `write_all_buf`, which advances
//! that cursor by every byte that reaches the wire. If the future is dropped, the cursor still
//! says which bytes are left, and the next call carries on from there.

use std::io::{self, Cursor};

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
    io: W,
    /// The frame being sent, if a call was cancelled part way through it.
    pending: Option<Pending>,
}

/// A frame in the middle of being sent.
#[derive(Debug)]
struct Pending {
    seq: u32,
    /// The whole encoded frame; its position marks the first byte not yet on the wire.
    unsent: Cursor<Vec<u8>>,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    /// A writer sending frames to `io`.
    pub fn new(io: W) -> Self {
        FrameWriter { io, pending: None }
    }

    /// Sends one whole frame and flushes it.
    ///
    /// A caller whose earlier call with this frame was cancelled calls again with the same frame
    /// (same `seq`) to finish sending it; a caller that moves on passes the next frame instead.
    /// Either way the server must receive every frame whole, and once.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in the resumable sense: if this future is dropped, the unsent rest of the frame
    /// stays in the writer. The next call finishes that frame first; if it is a retry of the same
    /// frame (same `seq`), that is all it sends, otherwise it then sends its own frame. The server
    /// never sees a byte twice or a frame cut short, however often the calls are cancelled.
    pub async fn send_frame(&mut self, frame: &Frame) -> io::Result<()> {
        if self.pending.as_ref().is_some_and(|p| p.seq != frame.seq) {
            // A different frame was cut short and is partly on the wire: finish it first, or the
            // server's framing breaks.
            self.finish_pending().await?;
        }
        if self.pending.is_none() {
            // Stored before the first write, so that no byte reaches the wire without the writer
            // knowing about it. A retry of a cut-short frame skips this and resumes instead.
            self.pending = Some(Pending { seq: frame.seq, unsent: Cursor::new(frame.encode()) });
        }
        self.finish_pending().await
    }

    /// Writes the rest of the pending frame and flushes it.
    ///
    /// The frame is forgotten only after the flush: a call cancelled during the flush leaves it
    /// pending with nothing left to write, so a retry flushes again rather than sending it twice.
    async fn finish_pending(&mut self) -> io::Result<()> {
        if let Some(pending) = &mut self.pending {
            self.io.write_all_buf(&mut pending.unsent).await?;
            self.io.flush().await?;
        }
        self.pending = None;
        Ok(())
    }
}
