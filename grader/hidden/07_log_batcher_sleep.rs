//! Hidden tests for kata 07: under steady load the batcher must still ship at least once a second,
//! which only works if its flush timer survives the `select!` races it loses to `recv()`.

use std::time::Duration;

use kata_support::hidden_test;
use log_batcher_sleep::{FLUSH_EVERY, LogSink, run_batcher};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

/// A sink that records when (on the paused clock) each batch was shipped.
struct RecordingSink {
    start: Instant,
    shipped: Vec<(Duration, Vec<String>)>,
}

impl RecordingSink {
    fn new(start: Instant) -> Self {
        RecordingSink { start, shipped: Vec::new() }
    }

    fn lines(&self) -> Vec<String> {
        self.shipped.iter().flat_map(|(_, b)| b.clone()).collect()
    }

    fn times(&self) -> Vec<Duration> {
        self.shipped.iter().map(|(at, _)| *at).collect()
    }
}

impl LogSink for RecordingSink {
    fn ship(&mut self, batch: Vec<String>) {
        self.shipped.push((self.start.elapsed(), batch));
    }
}

/// Sends `line i` at each offset from `start`, then drops the sender (the service shuts down).
async fn produce(tx: mpsc::Sender<String>, start: Instant, offsets: &[Duration]) {
    for (i, offset) in offsets.iter().enumerate() {
        sleep_until(start + *offset).await;
        tx.send(format!("line {i}"))
            .await
            .expect("the batcher stopped receiving before the channel closed");
    }
}

fn expected_lines(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("line {i}")).collect()
}

hidden_test! {
    /// Nothing is racing: lines sent in a burst are shipped together when the channel closes.
    async fn ships_the_last_batch_when_the_channel_closes() {
        let start = Instant::now();
        let (tx, rx) = mpsc::channel(16);
        let offsets = [Duration::ZERO; 3];
        let (sink, ()) = tokio::join!(
            run_batcher(rx, RecordingSink::new(start)),
            produce(tx, start, &offsets)
        );
        assert_eq!(
            sink.lines(),
            expected_lines(3),
            "every line must be shipped exactly once, in order"
        );
        assert_eq!(
            sink.shipped.len(),
            1,
            "three lines sent at once and then a closed channel should make one batch, got {:?}",
            sink.shipped
        );
    }

    /// A quiet service: each lone line is shipped within a second, and no empty batch is shipped.
    async fn ships_a_lone_line_within_a_second() {
        let start = Instant::now();
        let (tx, rx) = mpsc::channel(16);
        let offsets = [Duration::ZERO, Duration::from_millis(5_500)];
        let producer = async move {
            produce(tx.clone(), start, &offsets).await;
            // Keep the channel open a while after the last line: the timer must ship it.
            sleep_until(start + Duration::from_secs(8)).await;
            drop(tx);
        };
        let (sink, ()) = tokio::join!(run_batcher(rx, RecordingSink::new(start)), producer);
        assert_eq!(sink.lines(), expected_lines(2), "every line must be shipped exactly once");
        for (at, batch) in &sink.shipped {
            assert!(!batch.is_empty(), "an empty batch was shipped at {at:?}");
        }
        let times = sink.times();
        assert!(
            times.len() == 2
                && times[0] <= FLUSH_EVERY
                && times[1] <= Duration::from_millis(5_500) + FLUSH_EVERY,
            "a line sent at 0 s and another at 5.5 s, with silence in between, should be shipped \
             in two batches, each within 1 s of its line; they were shipped at {times:?}"
        );
    }

    /// Steady load, a line every 400 ms for 10 s: the flush timer must still fire every second.
    async fn flushes_every_second_under_steady_load() {
        let start = Instant::now();
        let (tx, rx) = mpsc::channel(64);
        let offsets: Vec<Duration> =
            (0..25).map(|i| Duration::from_millis(100 + 400 * i)).collect();
        let (sink, ()) = tokio::join!(
            run_batcher(rx, RecordingSink::new(start)),
            produce(tx, start, &offsets)
        );
        assert_eq!(
            sink.lines(),
            expected_lines(25),
            "every line must be shipped exactly once, in order"
        );
        let times = sink.times();
        let first = times[0];
        assert!(
            first <= FLUSH_EVERY,
            "with a line arriving every 400 ms, the first batch should be shipped at 1 s, but it \
             was shipped at {first:?}: the 1 s flush timer was restarted every time a line \
             arrived, so under steady load it never reached its deadline. A `sleep` that loses \
             the `select!` race to `recv()` is dropped, and the next turn of the loop starts a \
             fresh one."
        );
        // Every line must leave within a second of arriving: that is the batcher's promise.
        let mut line = 0;
        for (at, batch) in &sink.shipped {
            for _ in batch {
                let waited = *at - offsets[line];
                assert!(
                    waited <= FLUSH_EVERY,
                    "`line {line}` arrived at {:?} but was shipped at {at:?}: it waited {waited:?}, \
                     longer than the promised {FLUSH_EVERY:?}. The flush timer was restarted \
                     instead of kept: a `sleep` that loses the `select!` race is dropped.",
                    offsets[line]
                );
                line += 1;
            }
        }
        assert!(
            times.len() >= 9,
            "over 10 s of steady load the batcher shipped {} batch(es) at {times:?}; expected one \
             every second (at least 9)",
            times.len()
        );
        assert!(
            times.len() <= 11,
            "25 lines over 10 s were shipped in {} batches at {times:?}; a batcher ships at most \
             one batch per second (plus the last one on close), otherwise it is not batching",
            times.len()
        );
    }
}
