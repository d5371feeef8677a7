//! WRONG FIX (kata 07): the shipped fix (pinned timer, reset after each fire) plus an early flush
//! when the batch reaches 100 lines ("the collector takes at most 100 lines per request").
//!
//! Scenario where it misbehaves: a burst of 1000 lines within 100 ms (an error storm). The batcher
//! makes 10 shipments in that 100 ms. README: "Keep the batching: at most one shipment per second,
//! plus a last one when the channel closes". Right: one shipment per second (1000 lines in the
//! 1 s batch; the README states no cap on batch size).
//!
//! Proven: yes, paused-clock probe (round1/tools/probes/p07.rs, burst of 1000 lines in ~100 ms):
//! shipments less than 1 s apart (the shipped solution and both right fixes pass the probe).

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

/// The most lines the collector takes in one request.
const MAX_BATCH: usize = 100;

/// Collects lines from `lines` and ships them to `sink` in batches, until every sender is gone.
pub async fn run_batcher<S: LogSink>(mut lines: mpsc::Receiver<String>, mut sink: S) -> S {
    let mut batch = Vec::new();
    let flush_timer = sleep(FLUSH_EVERY);
    tokio::pin!(flush_timer);
    loop {
        tokio::select! {
            line = lines.recv() => match line {
                Some(line) => {
                    batch.push(line);
                    if batch.len() >= MAX_BATCH {
                        sink.ship(std::mem::take(&mut batch));
                    }
                }
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
        sink.ship(batch);
    }
    sink
}
