//! WRONG FIX (kata 07): the shipped fix (pinned timer, reset after each fire), but when the channel
//! closes it waits for the timer before shipping the rest, "so that we never ship twice within a
//! second".
//!
//! Scenario where it misbehaves: three lines are sent at t=0 and the senders are dropped (service
//! shutting down). The last batch is shipped at t=1 s instead of at close; a caller that stops the
//! batcher with a deadline (or the process exiting) loses it. README: "plus a last one when the
//! channel closes". Right: the batch is shipped at t=0, when the channel closes.
//!
//! Proven: yes, paused-clock probe (round1/tools/probes/p07.rs): the batch is shipped at 1 s, not
//! at 0 (the shipped solution ships it at 0).

use std::time::Duration;

use tokio::sync::mpsc;
#[allow(unused_imports)]
use tokio::time::{Instant, interval, sleep, sleep_until, MissedTickBehavior};

/// The batcher's promise: a line waits at most this long before it is shipped.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Where batches go. In production this is the client of the log collector.
pub trait LogSink {
    /// Ships one batch of lines, oldest first. The batcher never ships an empty batch.
    fn ship(&mut self, batch: Vec<String>);
}

/// Collects lines from `lines` and ships them to `sink` in batches, until every sender is gone.
pub async fn run_batcher<S: LogSink>(mut lines: mpsc::Receiver<String>, mut sink: S) -> S {
    let mut batch = Vec::new();
    let flush_timer = sleep(FLUSH_EVERY);
    tokio::pin!(flush_timer);
    loop {
        tokio::select! {
            line = lines.recv() => match line {
                Some(line) => batch.push(line),
                None => break,
            },
            () = &mut flush_timer => {
                if !batch.is_empty() {
                    sink.ship(std::mem::take(&mut batch));
                }
                flush_timer.as_mut().reset(Instant::now() + FLUSH_EVERY);
            }
        }
    }
    if !batch.is_empty() {
        // Respect the rate: the last batch goes out at the next tick, like every other batch.
        flush_timer.await;
        sink.ship(batch);
    }
    sink
}
