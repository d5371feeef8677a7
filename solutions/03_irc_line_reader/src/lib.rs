//! # Kata 03 solution: one `Lines`, created before the loop
//!
//! The reader is wrapped once in `BufReader::lines()`. `Lines::next_line` keeps the bytes of an
//! unfinished line inside the `Lines` value, not inside the future it returns, so dropping that
//! future when a ping is due loses nothing: the next call picks up where the last one stopped.
//! Because `Lines` lives outside the loop, the partial line survives from one iteration to the
//! next.

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
/// Dropping the whole session ends it: the unread input and any partial line are dropped with the
/// reader, which is what ending a session means. Inside, both branches of the `select!` are cancel
/// safe (`Lines::next_line` and `Interval::tick`), so a ping never costs a byte of input.
pub async fn serve<R>(
    reader: R,
    ping_every: Duration,
    events: mpsc::UnboundedSender<Event>,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
{
    // Created once: the partial line lives in here between iterations.
    let mut lines = BufReader::new(reader).lines();
    let mut ping = interval_at(Instant::now() + ping_every, ping_every);
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let Some(command) = line? else {
                    return Ok(());
                };
                let _ = events.send(Event::Command(command));
            }
            _ = ping.tick() => {
                let _ = events.send(Event::Ping);
            }
        }
    }
}
