//! Hidden tests for kata 07: under steady load the batcher must still ship at least once a second,
//! which only works if its flush timer survives the `select!` races it loses to `recv()`.

use std::time::Duration;

use kata_support::{check_property, hidden_test};
use log_batcher_sleep::{FLUSH_EVERY, LogSink, run_batcher};
use proptest::prelude::*;
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

/// Checks every promise of the batcher's README against what was shipped, for lines sent at
/// `offsets` and a channel closed at `close`: each line shipped once, in order; no empty batch; no
/// line waiting more than `FLUSH_EVERY`; the rest shipped when the channel closes (not later); and
/// at most one shipment per `FLUSH_EVERY`, apart from that last one.
fn keeps_its_promises(
    offsets: &[Duration],
    close: Duration,
    shipped: &[(Duration, Vec<String>)],
) -> Result<(), String> {
    let lines: Vec<String> = shipped.iter().flat_map(|(_, b)| b.clone()).collect();
    if lines != expected_lines(offsets.len()) {
        return Err(format!(
            "{} lines were sent, and {} shipped: not every line exactly once, in order",
            offsets.len(),
            lines.len()
        ));
    }
    let mut line = 0;
    for (at, batch) in shipped {
        if batch.is_empty() {
            return Err(format!("an empty batch was shipped at {at:?}"));
        }
        if *at > close {
            return Err(format!(
                "the channel closed at {close:?}, but {} line(s) were shipped only at {at:?}: the \
                 last batch must leave when the channel closes",
                batch.len()
            ));
        }
        for _ in batch {
            let waited = *at - offsets[line];
            if waited > FLUSH_EVERY {
                return Err(format!(
                    "`line {line}` arrived at {:?} and was shipped at {at:?}: it waited \
                     {waited:?}, longer than the promised {FLUSH_EVERY:?}",
                    offsets[line]
                ));
            }
            line += 1;
        }
    }
    for (i, pair) in shipped.windows(2).enumerate() {
        let (earlier, later) = (pair[0].0, pair[1].0);
        let last_on_close = i + 2 == shipped.len() && later == close;
        if !last_on_close && later - earlier < FLUSH_EVERY {
            return Err(format!(
                "batches were shipped at {earlier:?} and at {later:?}, less than {FLUSH_EVERY:?} \
                 apart (sizes {} and {}): the batcher ships at most once a second, plus the last \
                 batch when the channel closes",
                pair[0].1.len(),
                pair[1].1.len()
            ));
        }
    }
    Ok(())
}

/// Runs the batcher against lines sent at `offsets` (sorted) and a channel closed at `close`.
async fn run_schedule(offsets: Vec<Duration>, close: Duration) -> Vec<(Duration, Vec<String>)> {
    let start = Instant::now();
    // Room for every line: a line arrives when it is sent, never held up by the channel.
    let (tx, rx) = mpsc::channel(offsets.len().max(1));
    let producer = async move {
        produce(tx.clone(), start, &offsets).await;
        sleep_until(start + close).await;
        drop(tx);
    };
    let (sink, ()) = tokio::join!(run_batcher(rx, RecordingSink::new(start)), producer);
    sink.shipped
}

/// A producer far busier than the batcher: every [`FIREHOSE_STEP`] of the paused clock it queues
/// `per_step` lines at once (more than the batcher takes in one turn), for [`FIREHOSE_FOR`], then
/// closes the channel. The batcher runs as its own task, as in production. Returns when (and how many lines)
/// each batch was shipped while the load lasted, and every line shipped in the end.
async fn firehose(per_step: usize) -> (Vec<(Duration, usize)>, Vec<String>) {
    use std::sync::{Arc, Mutex};

    /// A sink the test can look at while the batcher task still owns it.
    struct SharedSink(Instant, Arc<Mutex<Vec<(Duration, Vec<String>)>>>);
    impl LogSink for SharedSink {
        fn ship(&mut self, batch: Vec<String>) {
            self.1.lock().unwrap().push((self.0.elapsed(), batch));
        }
    }

    let start = Instant::now();
    let shipped = Arc::new(Mutex::new(Vec::new()));
    // Room for every line sent: the channel never refuses one, however slowly the batcher drains.
    let steps = (FIREHOSE_FOR.as_millis() / FIREHOSE_STEP.as_millis()) as usize + 1;
    let (tx, rx) = mpsc::channel(per_step * steps);
    let batcher = tokio::spawn(run_batcher(rx, SharedSink(start, shipped.clone())));
    let mut sent = 0;
    while start.elapsed() < FIREHOSE_FOR {
        for _ in 0..per_step {
            tx.try_send(format!("line {sent}")).expect("the batcher stopped receiving");
            sent += 1;
        }
        tokio::time::advance(FIREHOSE_STEP).await;
    }
    let during: Vec<(Duration, usize)> =
        shipped.lock().unwrap().iter().map(|(at, batch)| (*at, batch.len())).collect();
    drop(tx);
    batcher.await.expect("the batcher panicked");
    let lines = shipped.lock().unwrap().iter().flat_map(|(_, b)| b.clone()).collect();
    (during, lines)
}

/// How long [`firehose`] keeps the channel flooded.
const FIREHOSE_FOR: Duration = Duration::from_millis(2_200);

/// How often [`firehose`] queues its lines: time passes only between two of its steps.
const FIREHOSE_STEP: Duration = Duration::from_millis(10);

/// How many of [`firehose`]'s steps a shipment may come after it fell due. Under this load a timer
/// that fell due is seen a step or a few later, however it is made (a pinned `Sleep`, an
/// `Interval`, a deadline): the clock jumps a step at a time, and a fired timer races a channel
/// that always has a line ready. The verdict must not hang on which of two right timers is a step
/// slower, so the allowance is several steps, and still far less than a second.
const FIREHOSE_LATE_STEPS: u32 = 5;

/// What a run with a late batcher produced, all as offsets from the start on the paused clock.
struct LateRun {
    /// When each line was sent.
    sent: Vec<Duration>,
    /// When the runtime was kept busy elsewhere, so that the batcher was not polled: (from, to).
    busy: Vec<(Duration, Duration)>,
    /// When the channel was closed.
    close: Duration,
    shipped: Vec<(Duration, Vec<String>)>,
}

/// Runs the batcher as its own task against `groups` of (quiet time, lines sent at once, how long
/// the runtime is then kept busy elsewhere), then closes the channel `close_after` later (a
/// first group with no quiet time is sent before the batcher first runs). A busy
/// runtime (another task hogging the thread, a slow `ship`) is modelled on the paused clock by
/// moving the clock forward in one jump while the batcher is not polled: when it runs again, its
/// timers are late, as they would be in production.
async fn run_late(groups: &[(Duration, usize, Duration)], close_after: Duration) -> LateRun {
    run_late_created_ahead(Duration::ZERO, groups, close_after).await
}

/// [`run_late`], with the batcher's future created `ahead` before it is spawned (a service that
/// builds it at start-up and spawns it later): until then it is not polled, as if the runtime
/// were busy elsewhere from the start until `ahead`.
async fn run_late_created_ahead(
    ahead: Duration,
    groups: &[(Duration, usize, Duration)],
    close_after: Duration,
) -> LateRun {
    use std::sync::{Arc, Mutex};

    struct SharedSink(Instant, Arc<Mutex<Vec<(Duration, Vec<String>)>>>);
    impl LogSink for SharedSink {
        fn ship(&mut self, batch: Vec<String>) {
            self.1.lock().unwrap().push((self.0.elapsed(), batch));
        }
    }

    let start = Instant::now();
    let shipped = Arc::new(Mutex::new(Vec::new()));
    let total: usize = groups.iter().map(|(_, lines, _)| lines).sum();
    let (tx, rx) = mpsc::channel(total.max(1));
    let (mut sent, mut busy) = (Vec::new(), Vec::new());
    let batcher = run_batcher(rx, SharedSink(start, shipped.clone()));
    if !ahead.is_zero() {
        // One jump of the clock, whatever `ahead` is: nothing else runs meanwhile.
        tokio::time::advance(ahead).await;
        busy.push((Duration::ZERO, start.elapsed()));
    }
    let batcher = tokio::spawn(batcher);
    for (quiet, lines, busy_for) in groups {
        // No wait at all for no quiet time: lines of a first group are then queued before the
        // batcher task first runs (a service that logs as soon as it has spawned it).
        if !quiet.is_zero() {
            tokio::time::sleep(*quiet).await;
        }
        for _ in 0..*lines {
            tx.try_send(format!("line {}", sent.len())).expect("the batcher stopped receiving");
            sent.push(start.elapsed());
        }
        if !busy_for.is_zero() {
            let from = start.elapsed();
            tokio::time::advance(*busy_for).await;
            busy.push((from, start.elapsed()));
        }
    }
    tokio::time::sleep(close_after).await;
    let close = start.elapsed();
    drop(tx);
    batcher.await.expect("the batcher panicked");
    let shipped = std::mem::take(&mut *shipped.lock().unwrap());
    LateRun { sent, busy, close, shipped }
}

/// How much later than its deadline tokio's timer may fire, at most: it rounds a deadline up to
/// the next tick (a whole millisecond of the runtime's clock), and the paused clock, moving from
/// one tick's instant to the next by whole milliseconds, keeps any fraction a busy spell left.
const TICK_ROUNDING: Duration = Duration::from_millis(1);

/// Checks the README's promises for a batcher that was sometimes not polled: each line shipped
/// once, in order; no empty batch; nothing shipped after the close; at most one shipment per
/// `FLUSH_EVERY` apart from the last one at close, however late the batcher ran; and no line
/// waiting more than `FLUSH_EVERY` of the time the batcher could run (a line sent while the
/// runtime was busy, or due while it was, can only be seen, or shipped, when it is free again).
fn keeps_its_promises_when_late(run: &LateRun) -> Result<(), String> {
    let LateRun { sent, busy, close, shipped } = run;
    let close = *close;
    let lines: Vec<String> = shipped.iter().flat_map(|(_, b)| b.clone()).collect();
    if lines != expected_lines(sent.len()) {
        return Err(format!(
            "{} lines were sent, and {} shipped: not every line exactly once, in order",
            sent.len(),
            lines.len()
        ));
    }
    // The first moment at or after `at` when the batcher could run.
    let free_at = |at: Duration| {
        busy.iter().find(|(from, to)| *from <= at && at < *to).map_or(at, |(_, to)| *to)
    };
    let mut line = 0;
    for (at, batch) in shipped {
        if batch.is_empty() {
            return Err(format!("an empty batch was shipped at {at:?}"));
        }
        if *at > close {
            return Err(format!(
                "the channel closed at {close:?}, but {} line(s) were shipped only at {at:?}: the \
                 last batch must leave when the channel closes",
                batch.len()
            ));
        }
        for _ in batch {
            let due = free_at(free_at(sent[line]) + FLUSH_EVERY);
            // tokio's timer rounds a deadline up to its next whole-millisecond tick, and a busy
            // spell that ends between two ticks leaves every later deadline between two.
            if *at > due + TICK_ROUNDING {
                return Err(format!(
                    "`line {line}` was sent at {:?} and shipped only at {at:?}, although the \
                     batcher was free to ship it by {due:?} (a second after it could first see \
                     it, or as soon as the runtime was free again; or on the timer's next \
                     millisecond tick after that)",
                    sent[line]
                ));
            }
            line += 1;
        }
    }
    for (i, pair) in shipped.windows(2).enumerate() {
        let (earlier, later) = (pair[0].0, pair[1].0);
        let last_on_close = i + 2 == shipped.len() && later == close;
        if !last_on_close && later - earlier < FLUSH_EVERY {
            return Err(format!(
                "batches were shipped at {earlier:?} and at {later:?}, less than {FLUSH_EVERY:?} \
                 apart (sizes {} and {}): a batcher that runs late must still ship at most once \
                 a second (plus the last batch when the channel closes), not catch up on the \
                 flushes it missed",
                pair[0].1.len(),
                pair[1].1.len()
            ));
        }
    }
    Ok(())
}

fn expected_lines(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("line {i}")).collect()
}

/// How a line is named in a verdict: short lines quoted, long ones by size and start.
fn describe(line: &str) -> String {
    if line.len() <= 40 {
        format!("{line:?}")
    } else {
        let start: String = line.chars().take(12).collect();
        format!("a line of {} bytes starting {start:?}", line.len())
    }
}

/// A long log line (a stack trace, a request dump) of `bytes` bytes: its name, then NUL
/// padding, which costs little to allocate.
fn long_line(name: &str, bytes: usize) -> String {
    let mut text = vec![0u8; bytes];
    text[..name.len()].copy_from_slice(name.as_bytes());
    String::from_utf8(text).expect("NUL padding is valid UTF-8")
}

/// Runs the batcher against `sent` (each line at its offset from the start, in order) and a
/// channel closed at `close`, and checks every promise of [`keeps_its_promises`], with the lines
/// shipped exactly as sent, whatever their content: blank, whitespace, any UTF-8, megabytes long.
async fn keeps_its_promises_for_any_content(
    sent: Vec<(Duration, String)>,
    close: Duration,
) -> Result<Vec<(Duration, usize)>, String> {
    let offsets: Vec<Duration> = sent.iter().map(|(at, _)| *at).collect();
    let start = Instant::now();
    let (tx, rx) = mpsc::channel(sent.len().max(1));
    let expected: Vec<String> = sent.iter().map(|(_, line)| describe(line)).collect();
    let producer = async move {
        for (at, line) in sent {
            sleep_until(start + at).await;
            tx.send(line).await.expect("the batcher stopped receiving before the channel closed");
        }
        sleep_until(start + close).await;
    };
    let (sink, ()) = tokio::join!(run_batcher(rx, RecordingSink::new(start)), producer);
    let sizes: Vec<(Duration, usize)> = sink.shipped.iter().map(|(at, b)| (*at, b.len())).collect();
    let shipped: Vec<String> = sink
        .shipped
        .iter()
        .flat_map(|(_, batch)| batch.iter().map(|line| describe(line)))
        .collect();
    if shipped != expected {
        return Err(format!(
            "the lines sent were, in order, {expected:?}, and the lines shipped {shipped:?}: every \
             line is shipped exactly once, in order, as it was sent"
        ));
    }
    let mut line = 0;
    let named: Vec<(Duration, Vec<String>)> = sink
        .shipped
        .iter()
        .map(|(at, batch)| {
            let names = (line..line + batch.len()).map(|i| format!("line {i}")).collect();
            line += batch.len();
            (*at, names)
        })
        .collect();
    keeps_its_promises(&offsets, close, &named).map_err(|seen| {
        format!(
            "{seen} (`line i` is the i-th line sent, counting from 0: {expected:?}; batches, as \
             time and size: {sizes:?})"
        )
    })?;
    Ok(sizes)
}

/// A burst of `burst` lines sent at once after a quiet second and a half, on a channel with room
/// for all of them, and the channel closed at 3.5 s: checks that the burst leaves in one batch
/// within a second, and every other promise.
async fn a_burst_after_a_quiet_period_leaves_whole(burst: usize) {
    use std::sync::{Arc, Mutex};

    /// A sink the test can look at while the batcher task still owns it.
    struct SharedSink(Instant, Arc<Mutex<Vec<(Duration, Vec<String>)>>>);
    impl LogSink for SharedSink {
        fn ship(&mut self, batch: Vec<String>) {
            self.1.lock().unwrap().push((self.0.elapsed(), batch));
        }
    }

    let start = Instant::now();
    let offsets = vec![Duration::from_millis(1_500); burst];
    let close = Duration::from_millis(3_500);
    let shipped = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel(burst);
    let batcher = tokio::spawn(run_batcher(rx, SharedSink(start, shipped.clone())));
    sleep_until(start + offsets[0]).await;
    // All at once: the batcher cannot run between two of these sends.
    for i in 0..burst {
        tx.try_send(format!("line {i}")).expect("the batcher stopped receiving");
    }
    sleep_until(start + close).await;
    drop(tx);
    batcher.await.expect("the batcher panicked");
    let shipped = std::mem::take(&mut *shipped.lock().unwrap());
    let sizes: Vec<(Duration, usize)> = shipped.iter().map(|(at, b)| (*at, b.len())).collect();
    let setting = format!(
        "1.5 s of silence, then {burst} lines sent at once, and the channel closed at {close:?}"
    );
    if let Err(seen) = keeps_its_promises(&offsets, close, &shipped) {
        panic!("{setting}: {seen} (batches, as time and size: {sizes:?})");
    }
    assert!(
        shipped.len() == 1,
        "{setting}: the burst was split into {} shipments, as (time, lines) {sizes:?}; a \
         burst of lines queued at once leaves in one batch (at most one shipment per \
         second, a burst not split up)",
        shipped.len()
    );
}

/// How long the runtime stays busy elsewhere (or the batcher waits to be spawned) in the tests of
/// a very long absence: the far end of the paused clock (2^62 ms, some 146 million years) in
/// whole seconds, the clock jumping in one go. The README bounds no silence, so this is far past
/// every count a schedule might keep in a narrower type (seconds in a `u32` wrap after 136 years,
/// nanoseconds in a `u64` after 584) and costs nothing to reach.
const FAR: Duration = Duration::from_secs(kata_support::time::FAR_END.as_secs());

/// Where a spread-out burst is sent in [`a_spread_out_burst_leaves_whole`]: (a start-up line
/// queued before the batcher first runs, shipped at 1 s; [`FAR`] the clock jumps in one go while
/// the batcher is not polled, ending on a whole second; whole seconds of quiet after that). Every
/// right batcher then has its flushes due on the same whole seconds, counted from its first turn
/// (or a second after the first line of a batch, which splits no burst shorter than a second).
const SPREAD_SETTINGS: [(bool, bool, u64); 11] = [
    (false, false, 1),
    (false, false, 2),
    (false, false, 3),
    (false, false, 10),
    (true, false, 2),
    (true, false, 3),
    (true, false, 10),
    (false, true, 0),
    (false, true, 1),
    (true, true, 0),
    (true, true, 2),
];

/// After a quiet spell (setting `setting` of [`SPREAD_SETTINGS`]), a burst spread over part of one
/// second of the batcher's clock: `burst` holds (ms past the whole second, lines sent then), every
/// offset in 1..=998. Checks every promise, and that the burst left in one batch.
async fn a_spread_out_burst_leaves_whole(
    setting: usize,
    burst: &[(u64, usize)],
) -> Result<(), String> {
    let ms = Duration::from_millis;
    let (start_up_line, jump, seconds) = SPREAD_SETTINGS[setting];
    let mut burst = burst.to_vec();
    burst.sort_unstable();
    let mut groups = Vec::new();
    let mut now = Duration::ZERO;
    let mut before = String::new();
    if start_up_line {
        groups.push((Duration::ZERO, 1, Duration::ZERO));
        before.push_str("a start-up line queued before the batcher first ran (shipped at 1 s), ");
    }
    if jump {
        // The runtime busy elsewhere for [`FAR`], from half a second after the last shipment (or
        // the batcher's first turn) until a whole second of its clock.
        let from = if start_up_line { ms(1_500) } else { ms(500) };
        groups.push((from, 0, FAR + ms(500)));
        now = from + FAR + ms(500);
        before.push_str(&format!("the runtime busy elsewhere from {from:?} until {now:?}, "));
    }
    let second = now + Duration::from_secs(seconds);
    let first_of_burst = usize::from(start_up_line);
    for &(offset, lines) in &burst {
        let at = second + ms(offset);
        groups.push((at - now, lines, Duration::ZERO));
        now = at;
    }
    let last = burst.last().map_or(0, |(offset, _)| *offset);
    let run = run_late(&groups, ms(2_500 - last)).await;
    let sizes: Vec<(Duration, usize)> = run.shipped.iter().map(|(at, b)| (*at, b.len())).collect();
    let lines: usize = burst.iter().map(|(_, lines)| lines).sum();
    let setting = format!(
        "the batcher first ran at 0 s; {before}then quiet until {second:?}, and a burst of {lines} \
         lines spread over ms {:?} past it ((ms, lines sent at once) {burst:?}), all before \
         {:?}; the channel closed at {:?}",
        burst.first().map_or(0, |(offset, _)| *offset)..=last,
        second + FLUSH_EVERY,
        run.close
    );
    keeps_its_promises_when_late(&run)
        .map_err(|seen| format!("{setting}: {seen} (batches, as time and size: {sizes:?})"))?;
    let with_burst = run
        .shipped
        .iter()
        .filter(|(_, batch)| {
            batch.iter().any(|line| {
                line.strip_prefix("line ")
                    .and_then(|i| i.parse::<usize>().ok())
                    .is_some_and(|i| i >= first_of_burst)
            })
        })
        .count();
    if with_burst != 1 {
        return Err(format!(
            "{setting}: the burst was split into {with_burst} shipments, as (time, lines) \
             {sizes:?}; expected it in one batch within a second. A burst need not land in one \
             instant: lines that arrive after a quiet spell within one second of the batcher's \
             schedule (whole seconds from its first turn) leave together, however they are \
             spread over it; a line that arrives does not bring a flush forward"
        ));
    }
    Ok(())
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
        // Every line must leave within a second of arriving: that is the batcher's promise.
        let mut line = 0;
        let mut previous = Duration::ZERO;
        for (at, batch) in &sink.shipped {
            for _ in batch {
                let waited = *at - offsets[line];
                assert!(
                    waited <= FLUSH_EVERY,
                    "with a line arriving every 400 ms, `line {line}` arrived at {:?} but was \
                     shipped at {at:?}: it waited {waited:?}, longer than the promised \
                     {FLUSH_EVERY:?}. Nothing was shipped between {previous:?} and {at:?}, \
                     although lines kept arriving all that time (batches at {times:?})",
                    offsets[line]
                );
                line += 1;
            }
            previous = *at;
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

    /// A channel that is never empty: a producer queues 150 lines every 10 ms, more than the
    /// batcher takes in one turn. However busy the channel, a batch still leaves every second.
    async fn ships_every_second_while_the_channel_is_never_empty() {
        let per_step = 150;
        let (during, lines) = firehose(per_step).await;
        let sent = lines.len();
        assert_eq!(lines, expected_lines(sent), "every line must be shipped exactly once, in order");
        let mut previous = Duration::ZERO;
        for at in during.iter().map(|(at, _)| *at).chain([FIREHOSE_FOR]) {
            assert!(
                at - previous <= FLUSH_EVERY + FIREHOSE_STEP * FIREHOSE_LATE_STEPS,
                "{per_step} lines queued every {FIREHOSE_STEP:?} for {FIREHOSE_FOR:?}, so the \
                 channel was never empty: nothing was shipped between {previous:?} and {at:?}, \
                 although lines were waiting all that time (batches shipped during the load, as \
                 (time, lines): {during:?}). However busy the channel, a batch must leave every \
                 second"
            );
            previous = at;
        }
    }

    /// A quiet period, then a burst of 500 lines, then steady traffic: the burst is shipped as
    /// one batch (not split up), and every other promise holds too.
    async fn an_idle_period_then_a_burst() {
        let mut offsets = vec![Duration::from_millis(3_000); 500];
        offsets.extend((1..=10).map(|i| Duration::from_millis(3_000 + 300 * i)));
        let close = Duration::from_millis(6_200);
        let shipped = run_schedule(offsets.clone(), close).await;
        if let Err(seen) = keeps_its_promises(&offsets, close, &shipped) {
            panic!(
                "3 s of silence, then 500 lines at once at 3 s, then a line every 300 ms until \
                 6 s, and the channel closed at 6.2 s: {seen}"
            );
        }
    }

    /// A burst far bigger than any batch a batcher might cap itself at (10 000 lines at once),
    /// then a line every 300 ms: the batcher keeps receiving until the last sender is gone (it
    /// must not take a full batch, or a receive that got nothing, for a closed channel), and the
    /// burst leaves in one batch within a second, like any other burst.
    async fn a_huge_burst_does_not_stop_the_batcher() {
        use std::sync::{Arc, Mutex};

        /// A sink the test can look at while the batcher task still owns it.
        struct SharedSink(Instant, Arc<Mutex<Vec<(Duration, Vec<String>)>>>);
        impl LogSink for SharedSink {
            fn ship(&mut self, batch: Vec<String>) {
                self.1.lock().unwrap().push((self.0.elapsed(), batch));
            }
        }

        const BURST: usize = 10_000;
        let start = Instant::now();
        let mut offsets = vec![Duration::from_millis(500); BURST];
        offsets.extend((1..=10).map(|i| Duration::from_millis(500 + 300 * i)));
        let close = Duration::from_millis(3_700);
        let shipped = Arc::new(Mutex::new(Vec::new()));
        // Room for every line: a line arrives when it is sent, never held up by the channel.
        let (tx, rx) = mpsc::channel(offsets.len());
        let batcher = tokio::spawn(run_batcher(rx, SharedSink(start, shipped.clone())));
        let mut refused = Vec::new();
        for (i, offset) in offsets.iter().enumerate() {
            if start + *offset > Instant::now() {
                sleep_until(start + *offset).await;
            }
            if tx.try_send(format!("line {i}")).is_err() {
                refused.push(i);
            }
        }
        sleep_until(start + close).await;
        let finished_early = batcher.is_finished();
        drop(tx);
        let setting = format!(
            "{BURST} lines sent at once at 0.5 s, then a line every 300 ms until 3.5 s, and the \
             channel closed at {close:?}"
        );
        if finished_early || !refused.is_empty() {
            let first = refused.first().map_or(String::new(), |i| format!(", the first `line {i}`"));
            panic!(
                "{setting}: the batcher returned (dropping its receiver) while the service still \
                 had a sender, and {} line(s) were refused{first}: it took the end of a batch, \
                 or a receive that brought nothing, for the channel closing. It must keep \
                 receiving until every sender is gone, however many lines arrive at once \
                 (shipments so far: {:?})",
                refused.len(),
                shipped.lock().unwrap().iter().map(|(at, b)| (*at, b.len())).collect::<Vec<_>>()
            );
        }
        batcher.await.expect("the batcher panicked");
        let shipped = std::mem::take(&mut *shipped.lock().unwrap());
        if let Err(seen) = keeps_its_promises(&offsets, close, &shipped) {
            let sizes: Vec<(Duration, usize)> =
                shipped.iter().map(|(at, b)| (*at, b.len())).collect();
            panic!("{setting}: {seen} (batches, as time and size: {sizes:?})");
        }
    }

    /// A burst far bigger than any drain a batcher might bound itself at (10 000 lines at once),
    /// after a quiet second and a half: it leaves in one batch within a second, however the
    /// batcher takes in lines after a quiet period (on every `select!` order the tests try).
    async fn a_huge_burst_after_a_quiet_period_leaves_whole() {
        a_burst_after_a_quiet_period_leaves_whole(10_000).await;
    }

    /// Both floors the README sets for a cap at once: 131 071 lines (just under 2^17) of 1 KiB
    /// each, 1 024 bytes under 128 MiB of text in all, sent at once after a quiet second and a
    /// half. A batcher may cap its batch, bound its drain or flush early to bound its memory, but
    /// a burst under both floors is never split: counted as text, not as what the batch holds in
    /// memory, nor with a newline or any framing per line (131 071 bytes more would pass 128 MiB).
    /// (One runtime: a burst this big costs time in every run, and the size, not the branch
    /// order, is what it tests.)
    fn a_burst_just_under_both_floors_after_a_quiet_period_leaves_whole() {
        use std::sync::{Arc, Mutex};

        const LINES: usize = (1 << 17) - 1;
        const BYTES: usize = 1 << 10;

        /// Keeps, per shipment: when, how many lines, how many bytes of text, and whether they
        /// were the next lines sent, in order (not the lines themselves: 128 MiB).
        #[derive(Default)]
        struct Tally {
            next: usize,
            shipped: Vec<(Duration, usize, usize, bool)>,
        }
        struct TallySink(Instant, Arc<Mutex<Tally>>);
        impl LogSink for TallySink {
            fn ship(&mut self, batch: Vec<String>) {
                let mut tally = self.1.lock().unwrap();
                let first = tally.next;
                let in_order = batch.iter().enumerate().all(|(i, line)| {
                    line.len() == BYTES && line.starts_with(&format!("line {} ", first + i))
                });
                let bytes = batch.iter().map(String::len).sum();
                tally.next += batch.len();
                tally.shipped.push((self.0.elapsed(), batch.len(), bytes, in_order));
            }
        }

        let runtime = kata_support::runtime::current_thread(kata_support::runtime::SEEDS[0]);
        runtime.block_on(async {
            let start = Instant::now();
            let tally = Arc::new(Mutex::new(Tally::default()));
            let (tx, rx) = mpsc::channel(LINES);
            let batcher = tokio::spawn(run_batcher(rx, TallySink(start, tally.clone())));
            let at = Duration::from_millis(1_500);
            sleep_until(start + at).await;
            // All at once: the batcher cannot run between two of these sends.
            for i in 0..LINES {
                let line = long_line(&format!("line {i} "), BYTES);
                tx.try_send(line).expect("the batcher stopped receiving");
            }
            let close = Duration::from_millis(3_500);
            sleep_until(start + close).await;
            drop(tx);
            batcher.await.expect("the batcher panicked");
            let shipped = std::mem::take(&mut tally.lock().unwrap().shipped);
            let total = LINES * BYTES;
            assert!(total < 128 << 20, "the test's burst must stay under the byte floor");
            let whole = shipped.len() == 1
                && shipped[0].1 == LINES
                && shipped[0].3
                && shipped[0].0 <= at + FLUSH_EVERY;
            assert!(
                whole,
                "1.5 s of silence, then {LINES} lines of {BYTES} bytes sent at once ({total} \
                 bytes of text, under both the 2^17 lines and the 128 MiB a cap may not go \
                 below), and the channel closed at {close:?}: shipped as (time, lines, bytes of \
                 text, the next lines in order) {shipped:?}; expected one shipment of every \
                 line, in order, within a second: a burst under both floors is never split \
                 (a cap counts the lines' text, not the memory a batch holds nor any framing)"
            );
        });
    }

    /// A burst bigger than the channel holds (a panic's backtrace or an error storm in a service
    /// whose channel has room for 100 lines), after a quiet stretch of any length (1.5 s to a
    /// minute, or [`FAR`], the clock jumping in one go), on a fresh batcher or on one that shipped a
    /// start-up line a second after it came, before the quiet: the producer sends 500 lines in
    /// one loop, parked in `send` whenever the channel is full, with no time passing. Only part
    /// of the burst is queued at any instant, yet it is one burst: it leaves in one batch within a
    /// second, not as what was queued when the batcher woke and the rest a second later.
    async fn a_burst_bigger_than_the_channel_after_a_quiet_period_leaves_whole() {
        const CAPACITY: usize = 100;
        const BURST: usize = 500;
        let ms = Duration::from_millis;
        // (silence, of which the clock jumps in one go at its start (the runtime busy elsewhere))
        let silences = [
            (ms(1_500), Duration::ZERO),
            (ms(3_500), Duration::ZERO),
            (ms(10_500), Duration::ZERO),
            (ms(60_500), Duration::ZERO),
            (FAR + ms(500), FAR),
        ];
        for start_up_line in [false, true] {
            for (quiet, jump) in silences {
                // With a start-up line at 0, shipped at 1 s: the silence is counted from then.
                let shipped_at = if start_up_line { FLUSH_EVERY } else { Duration::ZERO };
                let mut offsets = if start_up_line { vec![Duration::ZERO] } else { Vec::new() };
                let first_of_burst = offsets.len();
                offsets.extend(vec![shipped_at + quiet; BURST]);
                let close = shipped_at + quiet + Duration::from_secs(2);
                let start = Instant::now();
                let (tx, rx) = mpsc::channel(CAPACITY);
                let producer = tokio::spawn({
                    let offsets = offsets.clone();
                    async move {
                        for (i, offset) in offsets.iter().enumerate() {
                            if i == first_of_burst && !jump.is_zero() {
                                sleep_until(start + shipped_at + ms(100)).await;
                                tokio::time::advance(jump).await;
                            }
                            sleep_until(start + *offset).await;
                            tx.send(format!("line {i}"))
                                .await
                                .expect("the batcher stopped receiving before the channel closed");
                        }
                        sleep_until(start + close).await;
                        drop(tx);
                    }
                });
                let sink = run_batcher(rx, RecordingSink::new(start)).await;
                producer.await.expect("the producer panicked");
                let shipped = sink.shipped;
                let sizes: Vec<(Duration, usize)> =
                    shipped.iter().map(|(at, b)| (*at, b.len())).collect();
                let before = if start_up_line {
                    "a start-up line at 0 (shipped at 1 s), then ".to_owned()
                } else {
                    String::new()
                };
                let setting = format!(
                    "{before}{quiet:?} of silence, then {BURST} lines sent in one loop through a \
                     channel with room for {CAPACITY} (each `send` waiting for room, no time \
                     passing), and the channel closed at {close:?}"
                );
                if let Err(seen) = keeps_its_promises(&offsets, close, &shipped) {
                    panic!("{setting}: {seen} (batches, as time and size: {sizes:?})");
                }
                let with_burst = shipped
                    .iter()
                    .filter(|(_, batch)| {
                        batch.iter().any(|line| {
                            line.strip_prefix("line ")
                                .and_then(|i| i.parse::<usize>().ok())
                                .is_some_and(|i| i >= first_of_burst)
                        })
                    })
                    .count();
                assert!(
                    with_burst == 1,
                    "{setting}: the burst was split into {with_burst} shipments, as (time, lines) \
                     {sizes:?}; expected one batch of {BURST} within a second: a burst is not \
                     split up, even when only part of it fits in the channel at once, and \
                     whenever the last shipment was"
                );
            }
        }
    }

    /// A burst need not land in one instant: a handler logs 200 lines, awaits a 2 ms call and
    /// logs 200 more, or a few lines trickle out over a few hundred milliseconds. After a quiet
    /// spell (on a fresh batcher, after a start-up line, after [`FAR`] the clock jumps in one go),
    /// lines that arrive within one second of the batcher's schedule (between two whole seconds
    /// counted from its first turn) leave in one batch, whatever part of the second they start
    /// at and however long they last: a line that arrives does not bring a flush forward.
    async fn a_burst_spread_over_part_of_a_second_leaves_whole() {
        let bursts: [&[(u64, usize)]; 5] = [
            &[(1, 200), (3, 200)],
            &[(500, 1), (501, 1), (502, 1)],
            &[(1, 1), (998, 1)],
            &[(990, 100), (998, 100)],
            &[(37, 5), (90, 5), (400, 5), (751, 5)],
        ];
        for (setting, burst) in [(2, 0), (0, 0), (4, 1), (7, 2), (5, 3), (10, 4), (3, 2), (9, 0)] {
            if let Err(seen) = a_spread_out_burst_leaves_whole(setting, bursts[burst]).await {
                panic!("{seen}");
            }
        }
    }

    /// The same over generated bursts: spread over any part of a second (a millisecond to almost
    /// all of it), starting at any moment of it, after any of the quiet spells above but the
    /// far jump (a property's scenario may not pass an hour of virtual time).
    fn a_burst_spread_over_any_part_of_a_second_leaves_whole() {
        let burst = proptest::collection::vec((1u64..999, 1usize..40), 2..10);
        let settings = 0..SPREAD_SETTINGS.iter().take_while(|(_, jump, _)| !jump).count();
        check_property(32, (settings, burst), |(setting, burst)| async move {
            a_spread_out_burst_leaves_whole(setting, &burst).await
        });
    }

    /// The service spawns its batcher and logs its start-up lines before it yields, so a burst is
    /// queued before the batcher first runs (at once, or with the runtime then busy elsewhere for
    /// 0.6 s, so that its first poll comes late), and steady lines may follow. The burst leaves
    /// in one batch, within a second of the batcher's first poll, whichever branch `select!`
    /// tries first: a flush that is ready at the batcher's first turn splits it.
    async fn a_burst_queued_before_the_batcher_first_runs_leaves_whole() {
        let ms = Duration::from_millis;
        let then_steady = [(ms(300), 1, ms(0)); 5];
        let scenarios =
            [(3, ms(0), false), (200, ms(0), false), (3, ms(600), false), (200, ms(600), true)];
        for (burst, late, steady) in scenarios {
            let mut groups = vec![(ms(0), burst, late)];
            if steady {
                groups.extend(then_steady);
            }
            let run = run_late(&groups, ms(2_000)).await;
            let sizes: Vec<(Duration, usize)> =
                run.shipped.iter().map(|(at, b)| (*at, b.len())).collect();
            let setting = format!(
                "{burst} lines queued before the batcher first ran{}{}, and the channel closed \
                 at {:?}",
                if late.is_zero() {
                    String::new()
                } else {
                    format!(" (the runtime then busy elsewhere until {late:?})")
                },
                if steady { ", then a line every 300 ms" } else { "" },
                run.close
            );
            if let Err(seen) = keeps_its_promises_when_late(&run) {
                panic!("{setting}: {seen} (batches, as time and size: {sizes:?})");
            }
            assert!(
                sizes.first().is_some_and(|(_, size)| *size >= burst),
                "{setting}: the batches were, as (time, lines), {sizes:?}; the burst was split, \
                 the first batch holding only {} of its {burst} lines and the rest leaving \
                 later. A burst queued before the \
                 batcher first runs is a burst like any other: it leaves in one batch (at most \
                 one shipment per second, a burst not split up), however the batcher's first \
                 turns go",
                sizes.first().map_or(0, |(_, size)| *size)
            );
        }
    }

    /// The service creates the batcher's future at start-up and spawns it only later, after
    /// seconds of other start-up work (or [`FAR`]), with a burst queued before its first turn and,
    /// in some runs, a line every 300 ms after it. The batcher starts when it first runs, not when
    /// `run_batcher` is called: the burst leaves in one batch within a second of its first turn,
    /// and every other promise holds, whichever branch `select!` tries first.
    async fn a_batcher_created_early_starts_when_it_first_runs() {
        let ms = Duration::from_millis;
        let then_steady = [(ms(300), 1, ms(0)); 5];
        let scenarios = [
            (ms(3_000), 200, false),
            (ms(3_000), 3, true),
            (ms(1_500), 200, true),
            (FAR, 200, true),
            (FAR, 3, false),
        ];
        for (ahead, burst, steady) in scenarios {
            let mut groups = vec![(ms(0), burst, ms(0))];
            if steady {
                groups.extend(then_steady);
            }
            let run = run_late_created_ahead(ahead, &groups, ms(2_000)).await;
            let sizes: Vec<(Duration, usize)> =
                run.shipped.iter().map(|(at, b)| (*at, b.len())).collect();
            let setting = format!(
                "the batcher's future created at 0 s and spawned (first run) at {ahead:?}, {burst} \
                 lines queued before its first turn{}, and the channel closed at {:?}",
                if steady { ", then a line every 300 ms" } else { "" },
                run.close
            );
            if let Err(seen) = keeps_its_promises_when_late(&run) {
                panic!(
                    "{setting}: {seen} (batches, as time and size: {sizes:?}). The batcher starts \
                     when it first runs, not when `run_batcher` is called"
                );
            }
            assert!(
                sizes.first().is_some_and(|(_, size)| *size >= burst),
                "{setting}: the batches were, as (time, lines), {sizes:?}; the burst was split, \
                 the first batch holding only {} of its {burst} lines and the rest leaving \
                 later. The batcher starts when it first runs, not when `run_batcher` is called: \
                 a burst queued before its first turn leaves in one batch, however long ago the \
                 future was created",
                sizes.first().map_or(0, |(_, size)| *size)
            );
        }
    }

    /// Lines of every content, one by one during quiet spells and at once: blank, whitespace
    /// only, multi-byte UTF-8. Each is shipped as sent, within a second: what a line holds
    /// changes nothing.
    async fn lines_of_any_content_are_shipped_alike() {
        let ms = Duration::from_millis;
        let lone = vec![
            (ms(500), String::new()),
            (ms(2_500), " ".to_owned()),
            (ms(4_500), "\t \r".to_owned()),
            (ms(6_500), "paiement refusé ✓ 日本語 🚀".to_owned()),
            (ms(8_000), String::new()),
            (ms(8_000), "x".to_owned()),
            (ms(8_000), String::new()),
        ];
        let close = ms(10_000);
        if let Err(seen) = keeps_its_promises_for_any_content(lone, close).await {
            panic!(
                "a blank line at 0.5 s, a space at 2.5 s, a tab and a carriage return at 4.5 s, \
                 a line of multi-byte UTF-8 at 6.5 s, a blank line, \"x\" and a blank line at \
                 once at 8 s, and the channel closed at {close:?}: {seen}"
            );
        }
    }

    /// A burst of long lines (stack traces, request dumps) just under the floor of 128 MiB the
    /// README sets for a cap, after a quiet second and a half: shipped as sent, in one batch,
    /// within a second. A batcher may bound its memory with a cap on a batch's bytes, but never
    /// below the floor. (One runtime: the size, not the branch order, is what it tests.)
    fn a_burst_of_long_lines_just_under_the_byte_floor_leaves_whole() {
        let runtime = kata_support::runtime::current_thread(kata_support::runtime::SEEDS[0]);
        runtime.block_on(async {
            // Eight lines 512 bytes short of 16 MiB, and three short ones: 4 087 bytes under
            // 128 MiB in all, room for a newline or some framing per line in a cap's count.
            const LONG: usize = (16 << 20) - 512;
            let ms = Duration::from_millis;
            let at = ms(1_500);
            let mut burst = vec![(at, "first".to_owned())];
            burst.extend((0..8).map(|i| (at, long_line(&format!("long {i} "), LONG))));
            burst.extend([(at, String::new()), (at, "last".to_owned())]);
            let bytes: usize = burst.iter().map(|(_, line)| line.len()).sum();
            assert!(bytes < 128 << 20, "the test's burst must stay under the floor");
            let close = ms(3_500);
            let setting = format!(
                "1.5 s of silence, then a burst of 11 lines at once (8 of them 16 MiB less 512 \
                 bytes long, {bytes} bytes in all, under the 128 MiB a cap may not go below), \
                 and the channel closed at {close:?}"
            );
            match keeps_its_promises_for_any_content(burst, close).await {
                Err(seen) => panic!("{setting}: {seen}"),
                Ok(sizes) => assert!(
                    sizes.len() == 1,
                    "{setting}: the burst was split into {} shipments, as (time, lines) \
                     {sizes:?}; a burst under 128 MiB and 2^17 lines leaves in one batch (a \
                     batch may be capped, but never below that)",
                    sizes.len()
                ),
            }
        });
    }

    /// Lines sent at once and a channel closed before a second has passed: the batch leaves by
    /// the time the channel closes (at once, or when it closes), not when a timer runs out later.
    async fn ships_the_rest_as_soon_as_the_channel_closes() {
        let offsets = vec![Duration::from_millis(1_200); 3];
        let close = Duration::from_millis(1_500);
        let shipped = run_schedule(offsets.clone(), close).await;
        let times: Vec<Duration> = shipped.iter().map(|(at, _)| *at).collect();
        assert!(
            times.len() == 1 && times[0] <= close,
            "three lines sent at 1.2 s and the channel closed at 1.5 s should make one batch, \
             shipped by 1.5 s at the latest (the last batch leaves when the channel closes); \
             batches were shipped at {times:?}"
        );
    }

    /// The README's promises over many schedules: quiet periods and bursts of every size, lines
    /// one by one, and a channel that closes at any moment.
    fn keeps_every_promise_over_any_schedule() {
        let burst = prop_oneof![3 => 1usize..4, 1 => 100usize..250];
        let groups = proptest::collection::vec((0u64..2_500, burst), 1..6);
        check_property(40, (groups, 0u64..2_500), |(groups, close_after)| async move {
            let mut offsets = Vec::new();
            let mut at = Duration::ZERO;
            for (gap, lines) in &groups {
                at += Duration::from_millis(*gap);
                offsets.extend(std::iter::repeat_n(at, *lines));
            }
            let close = at + Duration::from_millis(close_after);
            let shipped = run_schedule(offsets.clone(), close).await;
            keeps_its_promises(&offsets, close, &shipped).map_err(|seen| {
                format!(
                    "bursts of (ms of silence before, lines) {groups:?}, channel closed at {close:?}: \
                     {seen}"
                )
            })
        });
    }

    /// The batcher runs late (the runtime is busy elsewhere, or a `ship` blocks on a slow
    /// collector): when it runs again, it must not ship the flushes it missed back to back, nor
    /// ship once late and again soon after on the old schedule.
    async fn ships_at_most_once_a_second_after_running_late() {
        let ms = Duration::from_millis;
        let every_300_ms = [(ms(0), 1, ms(0)), (ms(300), 1, ms(0)), (ms(300), 1, ms(0))];
        let scenarios = [
            (
                "300 lines queued, then the runtime busy for 3 s",
                vec![(ms(0), 300, ms(3_000))],
                3_000,
            ),
            (
                "5 lines at 0.9 s, the runtime busy until 1.5 s, a line at 1.6 s",
                vec![(ms(900), 5, ms(600)), (ms(100), 1, ms(0))],
                1_500,
            ),
            (
                "a line at 0.2 s, the runtime busy until 2.7 s, then a line every 300 ms",
                [(ms(200), 1, ms(2_500))].into_iter().chain(every_300_ms).collect(),
                1_200,
            ),
        ];
        // A short stall just across a flush (the flush due at 1 s runs a few milliseconds
        // late): the next flush must still be a whole second after the late one, however
        // little it was late. Not 5 ms or less: tokio's own `Interval` takes a tick up to 5 ms
        // late for an on-time one (it keeps its schedule), and the README accepts it.
        // Between 5 and 6 ms too, to the nanosecond: 5 ms is the most `Interval` forgives.
        let stalls = [5_000_001, 5_500_001, 5_999_999, 6_000_000, 60_000_000, 400_000_000].map(
            |late: u64| {
                let late = Duration::from_nanos(late);
                let mut groups = vec![(ms(0), 1, ms(0))];
                groups.extend([(ms(100), 1, ms(0)); 9]);
                groups.push((ms(90), 1, ms(10) + late));
                groups.extend([(ms(100), 1, ms(0)); 20]);
                (
                    format!(
                        "a line every 100 ms, the runtime busy from 0.99 s until {late:?} after \
                         the flush due at 1 s"
                    ),
                    groups,
                    200,
                )
            },
        );
        let scenarios = scenarios
            .into_iter()
            .map(|(scenario, groups, close_after)| (scenario.to_string(), groups, close_after))
            .chain(stalls);
        for (scenario, groups, close_after) in scenarios {
            let run = run_late(&groups, ms(close_after)).await;
            if let Err(seen) = keeps_its_promises_when_late(&run) {
                panic!(
                    "{scenario}, the channel closed at {:?}: {seen} (batches as (time, lines): \
                     {:?})",
                    run.close,
                    run.shipped.iter().map(|(at, b)| (*at, b.len())).collect::<Vec<_>>()
                );
            }
        }
    }

    /// The same promises over generated schedules in which the runtime is now and then busy
    /// elsewhere for up to 3.5 s, so that the batcher runs late by any amount, across any number
    /// of its flushes.
    fn keeps_every_promise_when_running_late() {
        let burst = prop_oneof![3 => 1usize..4, 1 => 100usize..250];
        let busy = prop_oneof![1 => Just(0u64), 1 => 100u64..3_500];
        let groups = proptest::collection::vec((0u64..2_000, burst, busy), 1..6);
        check_property(32, (groups, 0u64..2_500), |(groups, close_after)| async move {
            let steps: Vec<(Duration, usize, Duration)> = groups
                .iter()
                .map(|(quiet, lines, busy)| {
                    (Duration::from_millis(*quiet), *lines, Duration::from_millis(*busy))
                })
                .collect();
            let run = run_late(&steps, Duration::from_millis(close_after)).await;
            keeps_its_promises_when_late(&run).map_err(|seen| {
                format!(
                    "groups of (ms quiet, lines sent at once, ms the runtime was then busy \
                     elsewhere) {groups:?}, channel closed at {:?}: {seen}",
                    run.close
                )
            })
        });
    }
}
