//! Decoy for kata 07: puts the timer first in a `biased` `select!`, but still creates it anew each turn.
//!
//! A service does not send every log line to the log collector on its own: that would be one
//! network request per line. It hands its lines to a batcher instead, over an `mpsc` channel. The
//! batcher collects them and ships a whole batch at a time, and it promises that no line waits
//! longer than [`FLUSH_EVERY`] (one second) before it is shipped.
//!
//! The batcher waits for two things at once with `select!`: the next line, and the flush timer.
//!
//! ```text
//! loop {
//!     tokio::select! {
//!         line = lines.recv() => batch.push(line),
//!         () = sleep(FLUSH_EVERY) => ship(batch),
//!     }
//! }
//! ```
//!
//! When a line arrives first, `select!` drops the other branch, the `sleep`, and that drop is a
//! cancellation. Read `README.md` for what the dashboards showed.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::sleep;

/// The batcher's promise: a line waits at most this long before it is shipped.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Where batches go. In production this is the client of the log collector.
pub trait LogSink {
    /// Ships one batch of lines, oldest first. The batcher never ships an empty batch.
    fn ship(&mut self, batch: Vec<String>);
}

/// Collects lines from `lines` and ships them to `sink` in batches, until every sender is gone.
///
/// A batch is shipped at least every [`FLUSH_EVERY`] while lines are waiting, and once more,
/// with whatever is left, when the channel closes. The sink is handed back at the end.
///
/// # Cancel safety
///
/// Not cancel safe, by design: the lines collected since the last shipment are held in this
/// future and are lost if it is dropped. Run the batcher as its own task and stop it by dropping
/// the senders, which ships the last batch.
pub async fn run_batcher<S: LogSink>(mut lines: mpsc::Receiver<String>, mut sink: S) -> S {
    let mut batch = Vec::new();
    loop {
        tokio::select! {
            // Check the timer first, so that busy lines cannot starve it.
            biased;
            () = sleep(FLUSH_EVERY) => {
                if !batch.is_empty() {
                    sink.ship(std::mem::take(&mut batch));
                }
            }
            line = lines.recv() => match line {
                Some(line) => batch.push(line),
                None => break,
            },
        }
    }
    if !batch.is_empty() {
        sink.ship(batch);
    }
    sink
}
