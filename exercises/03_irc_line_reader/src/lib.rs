//! # Kata 03: the command reader that drops half a line
//!
//! An IRC-style chat server reads commands from each client, one per line (`/nick alice`,
//! `/join #rust`). It must also notice dead connections, so while it waits for the next line it
//! asks the connection's writer to send a `PING` every `ping_every`. One loop does both:
//!
//! ```text
//! loop {
//!     select! {
//!         read = reader.read_line(&mut line) => handle(line),
//!         _ = ping.tick() => send_ping(),
//!     }
//! }
//! ```
//!
//! Whenever the ping timer fires, `select!` drops the `read_line` future, which may be half way
//! through a line. Read `README.md` for the whole story.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc;
use tokio::time::{Instant, interval_at};

/// What a client session hands to the rest of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// One command line from the client, without its line ending.
    Command(String),
    /// The ping timer fired: the connection's writer should send `PING :irc.example.net`.
    Ping,
}

/// Reads one client's commands until it disconnects, asking for a ping every `ping_every`.
///
/// Every command line (terminated by `\n` or `\r\n`) becomes an [`Event::Command`]; every tick of
/// the ping timer becomes an [`Event::Ping`]. Returns `Ok(())` when the client closes the
/// connection.
///
/// # Cancel safety
///
/// Dropping the whole session ends it, which is fine. The trouble is inside: the `select!` in its
/// loop cancels `read_line` whenever a ping is due, and a cancelled `read_line` loses the part of
/// the line it had already read.
pub async fn serve<R>(
    reader: R,
    ping_every: Duration,
    events: mpsc::UnboundedSender<Event>,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
{
    let mut reader = BufReader::new(reader);
    let mut ping = interval_at(Instant::now() + ping_every, ping_every);
    let mut line = String::new();
    loop {
        line.clear();
        // TODO: when the ping branch wins, this `read_line` future is dropped, and the bytes of
        // the line it had read so far are dropped with it. Read lines with something that keeps
        // a partial line across cancellations, and create it once, outside the loop.
        tokio::select! {
            read = reader.read_line(&mut line) => {
                if read? == 0 {
                    return Ok(());
                }
                let command = line.trim_end_matches(['\r', '\n']).to_owned();
                let _ = events.send(Event::Command(command));
            }
            _ = ping.tick() => {
                let _ = events.send(Event::Ping);
            }
        }
    }
}
