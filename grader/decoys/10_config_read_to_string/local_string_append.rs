//! Decoy for kata 10: reads each round into a fresh local `String` and appends it to the text.
//!
//! An edge proxy fetches its routing table from the control plane when it starts and whenever an
//! operator asks it to reload. The control plane is sometimes slow: under load it stops sending
//! for several seconds in the middle of a download. So the download happens in rounds: each call
//! to [`ConfigDownload::resume`] waits at most [`PATIENCE`] for the rest of the config, and
//! returns [`Fetch::Stalled`] if it did not all arrive. The reloader logs progress and calls
//! `resume` again, until the config is complete or it gives up and keeps the old one:
//!
//! ```text
//! let config = loop {
//!     match download.resume().await? {
//!         Fetch::Complete(text) => break text,
//!         Fetch::Stalled { received } => log!("config download stalled at {received} bytes"),
//!     }
//! };
//! ```
//!
//! `resume` reads with `read_to_string` into the `String` held by the download, expecting the text
//! read so far to stay there across rounds. Read `README.md` for what happens to it.

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
    /// The config text received so far.
    text: String,
}

impl<R: AsyncRead + Unpin> ConfigDownload<R> {
    /// Starts a download from `source`, which ends (EOF) after the last byte of the config.
    pub fn new(source: R) -> Self {
        ConfigDownload { source, text: String::new() }
    }

    /// Waits up to [`PATIENCE`] for the rest of the config.
    ///
    /// Returns the whole config once the stream ends, or how much has arrived if it stalls.
    /// Fails if the stream fails or the config is not valid UTF-8.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: `read_to_string` takes the download's text into its future, so when the
    /// future is dropped (by the `PATIENCE` timeout inside, or by the caller) everything received
    /// so far is lost, not only what this round read.
    pub async fn resume(&mut self) -> io::Result<Fetch> {
        // Read this round into a String of its own, so the text from earlier rounds is never
        // handed to `read_to_string`; append whatever arrived.
        let mut more = String::new();
        let round = timeout(PATIENCE, self.source.read_to_string(&mut more)).await;
        self.text.push_str(&more);
        match round {
            Ok(Ok(_)) => Ok(Fetch::Complete(std::mem::take(&mut self.text))),
            Ok(Err(e)) => Err(e),
            Err(_elapsed) => Ok(Fetch::Stalled { received: self.text.len() }),
        }
    }
}
