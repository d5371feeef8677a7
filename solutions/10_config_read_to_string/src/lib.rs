//! # Kata 10 solution: keep the bytes, decode at the end
//!
//! The download keeps the raw bytes it has received in a `Vec<u8>` of its own, and reads into it
//! with `read_buf`, which appends each chunk the moment it arrives. A round that is cut short
//! loses nothing: every byte read is already in `self`. The bytes become a `String` once, after
//! the stream has ended, so a character split between two chunks is decoded whole.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::timeout;

/// How long one round of the download waits for the rest of the config.
pub const PATIENCE: Duration = Duration::from_secs(2);

/// Where a round of the download got to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetch {
    /// The control plane sent everything and closed the stream: here is the whole config.
    Complete(String),
    /// [`PATIENCE`] passed before the end of the config; `received` bytes of it have arrived so
    /// far. Call [`ConfigDownload::resume`] again to carry on.
    Stalled {
        /// Bytes of the config received since the download started.
        received: usize,
    },
}

/// One download of the config, from the stream the control plane sends it on.
#[derive(Debug)]
pub struct ConfigDownload<R> {
    source: R,
    /// The raw bytes received so far. They are decoded only when the stream has ended: a chunk
    /// may end in the middle of a multi-byte character.
    received: Vec<u8>,
    /// Set when a round failed. The stream is broken and `received` is not the whole config, so
    /// a later call must not read on and take the end of the broken stream for the end of the
    /// config: it fails again.
    failed: Option<io::ErrorKind>,
}

impl<R: AsyncRead + Unpin> ConfigDownload<R> {
    /// Starts a download from `source`, which ends (EOF) after the last byte of the config.
    pub fn new(source: R) -> Self {
        ConfigDownload { source, received: Vec::new(), failed: None }
    }

    /// Waits up to [`PATIENCE`] for the rest of the config.
    ///
    /// Returns the whole config once the stream ends, or how much has arrived if it stalls.
    /// Fails if the stream fails (with the read's own error, kind and all) or the config is not
    /// valid UTF-8 (`InvalidData`). An error ends the download: every later call fails too
    /// (start a new download on a new stream).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: every byte is stored in the download as soon as it is read, so dropping this
    /// future (by the `PATIENCE` timeout inside, or by the caller) loses nothing, and the next
    /// call carries on where this one stopped.
    pub async fn resume(&mut self) -> io::Result<Fetch> {
        if let Some(kind) = self.failed {
            return Err(io::Error::new(kind, "the config download already failed"));
        }
        let source = &mut self.source;
        let received = &mut self.received;
        // Each `read_buf` is cancel safe: if it is dropped, no data was read; once it returns,
        // the chunk is already appended to `received`, outside this future.
        let read_to_eof = async {
            while source.read_buf(received).await? != 0 {}
            Ok::<(), io::Error>(())
        };
        let fetched = match timeout(PATIENCE, read_to_eof).await {
            Ok(Ok(())) => {
                let bytes = std::mem::take(&mut self.received);
                String::from_utf8(bytes)
                    .map(Fetch::Complete)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
            }
            Ok(Err(e)) => Err(e),
            Err(_elapsed) => Ok(Fetch::Stalled { received: self.received.len() }),
        };
        // A reset socket reports its error once and then reads as the end of the stream, and the
        // bytes of an invalid config are gone: a retry must not turn either into `Complete`.
        if let Err(e) = &fetched {
            self.failed = Some(e.kind());
        }
        fetched
    }
}
