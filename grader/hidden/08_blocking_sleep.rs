//! Hidden tests for kata 08: the settling wait must be a tokio timer, so that other tasks keep
//! running while it lasts and a `timeout` can cancel a sample at its deadline.
//!
//! Everything runs on the paused current-thread runtime. A wait that goes through tokio's timer
//! shows up on tokio's clock; a wait that parks the thread does not, and holds up every other task.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use blocking_sleep::{Adc, Poller, SETTLE_TIME};
use kata_support::{check_property, hidden_test};
use proptest::prelude::*;
use tokio::time::{Instant, interval_at, sleep, timeout};

/// What the fake converter was asked to do, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BusOp {
    Select(u8),
    Convert,
}

/// A converter whose reading of channel `c` is `1000 + c`. It notes, on tokio's clock, when the
/// channel was last switched and how long each conversion came after that switch.
#[derive(Debug, Default)]
struct FakeAdc {
    selected: Option<u8>,
    ops: Vec<BusOp>,
    switched_at: Option<Instant>,
    /// For each conversion: the channel, and how long after its switch it was converted.
    settled: Vec<(u8, Duration)>,
    /// How many conversions so far, readable while a `Poller` owns the converter.
    converts: Arc<AtomicUsize>,
}

impl Adc for FakeAdc {
    fn select_channel(&mut self, channel: u8) {
        self.selected = Some(channel);
        self.ops.push(BusOp::Select(channel));
        self.switched_at = Some(Instant::now());
    }

    fn convert(&mut self) -> u16 {
        self.ops.push(BusOp::Convert);
        self.converts.fetch_add(1, Ordering::SeqCst);
        let channel = self.selected.expect("convert called before any channel was selected");
        let switched_at = self.switched_at.expect("a selected channel has a switch time");
        self.settled.push((channel, Instant::now().saturating_duration_since(switched_at)));
        1000 + u16::from(channel)
    }
}

/// Err with what was seen if the conversions did not read `channels` in turn, one per entry, in
/// the list's order (a channel already selected may be converted again without a new switch).
fn sampled_in_turn(adc: &FakeAdc, channels: &[u8]) -> Result<(), String> {
    let converted: Vec<u8> = adc.settled.iter().map(|(channel, _)| *channel).collect();
    if converted == channels {
        return Ok(());
    }
    let at = converted.iter().zip(channels).position(|(seen, listed)| seen != listed);
    let at = at.unwrap_or(converted.len().min(channels.len()));
    let from = at.saturating_sub(3);
    Err(format!(
        "the entries were not sampled in turn: conversion {} read channel {:?} where the list \
         has {:?} (list from entry {from}: {:?}, channels converted from there: {:?}; {} \
         conversions for {} entries); a sweep samples each entry in the list's order, one \
         sample after another, not a channel's entries grouped together",
        at + 1,
        converted.get(at),
        channels.get(at),
        &channels[from..(from + 8).min(channels.len())],
        &converted[from.min(converted.len())..(from + 8).min(converted.len())],
        converted.len(),
        channels.len()
    ))
}

/// Err with what was seen if some conversion came less than `SETTLE_TIME` after its switch.
fn every_conversion_settled(adc: &FakeAdc) -> Result<(), String> {
    match adc.settled.iter().find(|(_, after)| *after < SETTLE_TIME) {
        Some((channel, after)) => Err(format!(
            "channel {channel} was converted {after:?} after the switch to it, on tokio's clock; \
             the input needs {SETTLE_TIME:?} to settle, so that reading is wrong (bus operations: \
             {:?})",
            adc.ops
        )),
        None => Ok(()),
    }
}

/// One step of a gateway's polling: stay idle a while, then sample a channel, perhaps under a
/// `timeout` (in microseconds) that may cut the sample short.
#[derive(Debug, Clone)]
struct Step {
    idle_ms: u64,
    channel: u8,
    budget_us: Option<u64>,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    // Timeouts of any length up to 4 ms, and often a whole number of milliseconds: on the paused
    // clock the timeout's deadline then lands in the same instant as the sample's own timer.
    let budget_us = prop_oneof![0u64..4_000, (0u64..=4).prop_map(|ms| ms * 1_000)];
    let step =
        (prop_oneof![2 => Just(0u64), 1 => 1u64..1_500], 0u8..3, proptest::option::of(budget_us))
            .prop_map(|(idle_ms, channel, budget_us)| Step { idle_ms, channel, budget_us });
    proptest::collection::vec(step, 1..8)
}

/// How a sample of the exhaustive patterns is run: plainly, or under a `timeout` that cuts it short
/// at once (after its first poll) or 1 ms into its settling, if it is still settling then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    Completes,
    AtOnce,
    After1Ms,
}

/// The steps of one exhaustive pattern, in words: "sample(0), then sample(1) under a 1 ms timeout,
/// ...".
fn describe(pattern: &[(u8, Cut)]) -> String {
    let steps: Vec<String> = pattern
        .iter()
        .map(|(channel, cut)| match cut {
            Cut::Completes => format!("sample({channel})"),
            Cut::AtOnce => format!("sample({channel}) under a 0 ms timeout"),
            Cut::After1Ms => format!("sample({channel}) under a 1 ms timeout"),
        })
        .collect();
    steps.join(", then ")
}

/// Every pattern of `len` samples over channels 0 and 1, each run plainly or under a timeout.
fn every_pattern(len: usize) -> Vec<Vec<(u8, Cut)>> {
    let choices: Vec<(u8, Cut)> = [0u8, 1]
        .into_iter()
        .flat_map(|c| [Cut::Completes, Cut::AtOnce, Cut::After1Ms].map(|cut| (c, cut)))
        .collect();
    let mut patterns = vec![Vec::new()];
    for _ in 0..len {
        patterns = patterns
            .into_iter()
            .flat_map(|p| {
                choices.iter().map(move |&choice| {
                    let mut p = p.clone();
                    p.push(choice);
                    p
                })
            })
            .collect();
    }
    patterns
}

/// How far the clock moves at a time in the tests that move it by hand, as a real clock does:
/// the paused clock's own jumps go from timer to timer in whole milliseconds, and so never show a
/// wait that ends early. Far from a whole millisecond of the runtime's clock the clock moves
/// `HAND_STEP` at a time; within `FINE_NEAR` of one it moves `FINE_STEP` at a time, and it lands on
/// every whole millisecond exactly: tokio's timer fires on whole milliseconds, so that is where a
/// wait cut short by even a microsecond shows.
const HAND_STEP: Duration = Duration::from_micros(50);
const FINE_STEP: Duration = Duration::from_micros(1);
const FINE_NEAR: Duration = Duration::from_micros(25);

/// The next step of the hand-moved clock, `origin` being the runtime's start (where its whole
/// milliseconds are counted from).
fn hand_step(origin: Instant) -> Duration {
    let ms = Duration::from_millis(1);
    let since = Instant::now().saturating_duration_since(origin);
    let into_ms = Duration::from_nanos((since.as_nanos() % ms.as_nanos()) as u64);
    if into_ms < FINE_NEAR || into_ms >= ms - FINE_NEAR {
        FINE_STEP.min(ms - into_ms)
    } else {
        HAND_STEP.min(ms - FINE_NEAR - into_ms)
    }
}

/// Runs `fut` to completion, moving the clock on by hand (`hand_step`) between polls for
/// `by_hand`, then letting the paused clock run on by itself (a wait that also checks the OS clock,
/// which barely moves meanwhile, is still finished).
async fn by_hand<F: std::future::Future>(fut: F, by_hand: Duration, origin: Instant) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let start = Instant::now();
    while start.elapsed() < by_hand {
        let poll = std::future::poll_fn(|cx| std::task::Poll::Ready(fut.as_mut().poll(cx))).await;
        if let std::task::Poll::Ready(output) = poll {
            return output;
        }
        tokio::time::advance(hand_step(origin)).await;
    }
    fut.await
}

/// Lets `idle` pass, moving the clock on by hand (`hand_step`).
async fn idle_by_hand(idle: Duration, origin: Instant) {
    let mut left = idle;
    while !left.is_zero() {
        let step = left.min(hand_step(origin));
        tokio::time::advance(step).await;
        left -= step;
    }
}

/// Lets the clock run on by hand to `phase` past the next whole millisecond of the runtime's clock.
async fn to_phase_by_hand(phase: Duration, origin: Instant) {
    let ms = Duration::from_millis(1).as_nanos();
    let since = Instant::now().saturating_duration_since(origin).as_nanos();
    let target = (since / ms + 1) * ms + phase.as_nanos();
    idle_by_hand(Duration::from_nanos((target - since) as u64), origin).await;
}

hidden_test! {
    /// Nothing cancelled: a sweep selects, converts and returns each channel's reading.
    async fn sweeps_every_channel() {
        let mut poller = Poller::new(FakeAdc::default());
        let readings = poller.sweep(&[0, 3, 7]).await;
        assert_eq!(readings, [1000, 1003, 1007], "each reading must come from its own channel");
        let ops = poller.into_inner().ops;
        assert_eq!(
            ops,
            [
                BusOp::Select(0),
                BusOp::Convert,
                BusOp::Select(3),
                BusOp::Convert,
                BusOp::Select(7),
                BusOp::Convert,
            ],
            "each sample must select its channel, then convert"
        );
    }

    /// A sweep reads each channel in its list in turn, one sample after another, also a channel
    /// the list names more than once (the firmware samples a noisy input several times in a sweep
    /// to average it): one conversion per entry, in the list's order (not a channel's entries
    /// grouped together to save switches), each settled, each reading its own channel.
    async fn a_sweep_samples_a_channel_listed_twice_each_time() {
        let long: Vec<u8> = (0..64).map(|i| [5, 5, 9, 5, 9, 9, 0][i % 7]).collect();
        let sweeps: [&[u8]; 5] = [&[4, 4, 4, 4], &[0, 1, 0], &[0, 1, 0, 1, 2, 2, 2], &[3, 3, 8, 3], &long];
        for channels in sweeps {
            let mut poller = Poller::new(FakeAdc::default());
            let readings = poller.sweep(channels).await;
            let adc = poller.into_inner();
            let conversions = adc.ops.iter().filter(|op| **op == BusOp::Convert).count();
            let expected: Vec<u16> = channels.iter().map(|&c| 1000 + u16::from(c)).collect();
            let shown = if channels.len() > 8 {
                format!("a sweep of {} entries ({:?}, ...)", channels.len(), &channels[..8])
            } else {
                format!("a sweep of {channels:?}")
            };
            assert!(
                conversions == channels.len() && readings == expected,
                "{shown} made {conversions} conversion(s) and returned {} reading(s), expected \
                 one conversion per entry, {} in all, each reading its own channel: a sweep \
                 samples each entry in turn, a channel listed twice too (its readings are \
                 averaged, so a copied reading is not a sample)",
                readings.len(),
                channels.len()
            );
            if let Err(seen) = sampled_in_turn(&adc, channels) {
                panic!("{shown}: {seen} (bus operations: {:?})", &adc.ops[..adc.ops.len().min(16)]);
            }
            if let Err(seen) = every_conversion_settled(&adc) {
                panic!("{shown}: {seen}");
            }
        }
    }

    /// The firmware starts the poller as a task of its own with `tokio::spawn`, which asks for
    /// `Send` even on a current-thread runtime: over a converter that is `Send`, a `Poller` and
    /// the futures of `sample` and `sweep` stay `Send`, as the original's are. And a `Poller`
    /// over a `Debug` converter stays `Debug`, as the original's is (the firmware logs it).
    async fn a_poller_can_run_in_a_spawned_task() {
        let mut poller = Poller::new(FakeAdc::default());
        let not_send = "over a converter that is `Send`, so the firmware can no longer \
                        `tokio::spawn` its poller task (`spawn` asks for `Send` even on a \
                        current-thread runtime)";
        assert!(
            kata_support::is_send!(poller),
            "a `Poller` is not `Send` {not_send}: it keeps something that is not `Send` (an `Rc`, \
             a `Box<dyn Future>` or `Box<dyn FnMut()>` without `+ Send`, a `Cell` shared with \
             another value)"
        );
        {
            let sample = poller.sample(1);
            assert!(
                kata_support::is_send!(sample),
                "the future returned by `sample` is not `Send` {not_send}: it holds something \
                 that is not `Send` across an `.await`"
            );
            assert_eq!(sample.await, 1001, "`sample(1)` must read channel 1");
        }
        let sweep = poller.sweep(&[0, 2]);
        assert!(
            kata_support::is_send!(sweep),
            "the future returned by `sweep` is not `Send` {not_send}: it holds something that is \
             not `Send` across an `.await`"
        );
        assert_eq!(sweep.await, [1000, 1002], "each reading must come from its own channel");
        assert!(
            kata_support::is_debug!(poller),
            "a `Poller` over a converter that is `Debug` is no longer `Debug`: the public API is \
             kept as it is, with the traits its types had (the firmware logs `{{poller:?}}`, and \
             derives `Debug` for structs that hold one). A timer kept as a `Box<dyn Future>` is \
             not `Debug`: keep a `Sleep` (it is), or write `Debug` for `Poller` by hand"
        );
    }

    /// The settling wait must be a tokio timer: it shows up on tokio's clock.
    async fn the_settling_wait_is_a_tokio_timer() {
        let mut poller = Poller::new(FakeAdc::default());
        let start = Instant::now();
        poller.sample(2).await;
        let waited = start.elapsed();
        assert!(
            waited >= SETTLE_TIME,
            "`sample(2)` returned {waited:?} after it began, on tokio's clock, expected at least \
             {SETTLE_TIME:?} of settling: for tokio (the clock `timeout` and every other task \
             see) the input did not settle. Either the settling wait did not go through tokio's \
             timer, or it was over at once."
        );
    }

    /// Other tasks on the runtime (the watchdog kicker) must keep running during a sweep.
    async fn the_watchdog_keeps_running_during_a_sweep() {
        let kicks = Arc::new(AtomicUsize::new(0));
        let kicker = {
            let kicks = kicks.clone();
            let every = Duration::from_millis(1);
            tokio::spawn(async move {
                let mut ticks = interval_at(Instant::now() + every, every);
                loop {
                    ticks.tick().await;
                    kicks.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        let channels = [0, 1, 2, 3, 4, 5, 6, 7];
        let mut poller = Poller::new(FakeAdc::default());
        poller.sweep(&channels).await;
        let kicked = kicks.load(Ordering::SeqCst);
        kicker.abort();
        // One kick per millisecond of settling, give or take the last one.
        let expected = (SETTLE_TIME * channels.len() as u32).as_millis() as usize - 1;
        assert!(
            kicked >= expected,
            "while the poller swept 8 channels ({SETTLE_TIME:?} of settling each), the watchdog \
             task, which kicks every millisecond, was kicked {kicked} time(s); expected at least \
             {expected}. Either the wait held the executor thread, so no other task could run \
             until it was over (the board's hardware watchdog would have reset it), or it \
             happened off tokio's clock, so for the runtime no time passed at all."
        );
    }

    /// A `timeout` shorter than the settling time must cancel the sample at its deadline.
    async fn a_timeout_cancels_a_sample_while_it_settles() {
        let mut poller = Poller::new(FakeAdc::default());
        let budget = SETTLE_TIME / 2;
        let start = Instant::now();
        let result = timeout(budget, poller.sample(5)).await;
        let took = start.elapsed();
        assert!(
            result.is_err(),
            "`timeout({budget:?}, poller.sample(5))` should have cancelled the sample at its \
             deadline, while the input settled ({SETTLE_TIME:?}), but the sample ran to \
             completion and returned {result:?}. A future is cancelled at an `.await` where it \
             waits on tokio. A thread sleep either has no `.await` at all, so the timeout checks \
             its deadline only after the wait is over, or it runs on a blocking-pool thread, \
             out of reach of tokio's clock and of the drop."
        );
        assert_eq!(
            took, budget,
            "the timeout should fire exactly at its deadline on tokio's clock"
        );
        let ops = poller.into_inner().ops;
        if ops.contains(&BusOp::Convert) {
            panic!(
                "a sample cancelled while settling must not go on to convert, but the bus \
                 operations were {ops:?}"
            );
        }
        assert_eq!(
            ops,
            [BusOp::Select(5)],
            "when the timeout cancelled `sample(5)`, {SETTLE_TIME:?} / 2 after it began, the bus \
             operations were {ops:?}: the sample should have switched to channel 5 and been \
             waiting for the input to settle (the settling time counts from the switch)"
        );
    }

    /// A sample the caller gave up on never converts, whatever its deadline: one that lands
    /// before the input has settled, exactly when it settles (the timer of the sample and the
    /// timeout's are due in the same instant), or after. A `timeout` that returns `Elapsed` has
    /// thrown the sample away, so the conversion must not have happened; a sample that converts
    /// must be the one whose reading comes back. Tried on a fresh poller, and on a channel that
    /// was sampled, or cut short, just before.
    async fn a_sample_given_up_on_never_converts_whatever_its_deadline() {
        let budgets_us = [0u64, 500, 1_000, 1_500, 1_999, 2_000, 2_001, 2_500, 3_000, 4_000];
        let before = ["nothing", "a completed sample(3)", "sample(3) cut short at 1 ms"];
        for budget_us in budgets_us {
            for (b, &history) in before.iter().enumerate() {
                let budget = Duration::from_micros(budget_us);
                let adc = FakeAdc::default();
                let conversions = adc.converts.clone();
                let mut poller = Poller::new(adc);
                match b {
                    0 => {}
                    1 => {
                        poller.sample(3).await;
                    }
                    _ => {
                        let _ = timeout(Duration::from_millis(1), poller.sample(3)).await;
                    }
                }
                let converts_before = conversions.load(Ordering::SeqCst);
                let result = timeout(budget, poller.sample(3)).await;
                let converts = conversions.load(Ordering::SeqCst) - converts_before;
                let adc = poller.into_inner();
                let setting = format!(
                    "after {history}, the gateway ran `timeout({budget:?}, poller.sample(3))` \
                     (the input settles for {SETTLE_TIME:?})"
                );
                match result {
                    Err(_) if converts > 0 => panic!(
                        "{setting}: the timeout returned `Elapsed`, so the sample was given up \
                         on, yet the converter had converted {converts} time(s) during it: a \
                         reading was taken and thrown away. A sample must not be cancellable \
                         once it has converted: after the conversion it returns its reading \
                         without awaiting anything else (bus operations: {:?})",
                        adc.ops
                    ),
                    Ok(reading) => {
                        assert_eq!(
                            converts, 1,
                            "{setting}: the sample returned {reading}, after {converts} \
                             conversion(s) during it; expected exactly one (bus operations: \
                             {:?})",
                            adc.ops
                        );
                        assert_eq!(reading, 1003, "{setting}: the sample must read channel 3");
                    }
                    Err(_) => {}
                }
                if let Err(seen) = every_conversion_settled(&adc) {
                    panic!("{setting}: {seen}");
                }
            }
        }
    }

    /// The explorer runs `timeout(SETTLE_TIME, poller.sample(3))` (both due in the same instant)
    /// and cuts it after every poll, while it waits and once woken, and also polls it as on a busy
    /// task whose cooperative budget is spent or nearly spent (a sample in a `join!` with a queue
    /// drain, say): there every tokio resource, a timer included, answers "not ready", even one
    /// that would be ready. A sample that was dropped, or whose timeout returned `Elapsed`, never
    /// converted; a sample that returned converted exactly once, a full `SETTLE_TIME` after its
    /// switch.
    async fn a_sample_given_up_on_never_converts_even_on_a_busy_task() {
        kata_support::assert_cancel_safe(
            || Arc::new(AtomicUsize::new(0)),
            |converts| async move {
                let mut poller = Poller::new(FakeAdc { converts, ..FakeAdc::default() });
                let reading = timeout(SETTLE_TIME, poller.sample(3)).await.ok();
                (reading, every_conversion_settled(&poller.into_inner()))
            },
            |converts, outcome| async move {
                let converts = converts.load(Ordering::SeqCst);
                let given_up = match outcome.completed() {
                    None => "the sample was dropped",
                    Some((None, _)) => "the timeout returned `Elapsed`",
                    Some((Some(reading), settled)) => {
                        return if converts == 1 && reading == 1003 {
                            settled
                        } else {
                            Err(format!(
                                "`timeout({SETTLE_TIME:?}, poller.sample(3))` returned {reading} \
                                 after {converts} conversion(s); expected channel 3's 1003 after \
                                 exactly one"
                            ))
                        };
                    }
                };
                if converts == 0 {
                    return Ok(());
                }
                Err(format!(
                    "under `timeout({SETTLE_TIME:?}, poller.sample(3))`, {given_up}, yet the \
                     converter had converted {converts} time(s) during the sample: a reading was \
                     taken and thrown away. Once it has converted, a sample cannot be cancelled \
                     any more: it returns its reading without awaiting anything else"
                ))
            },
        )
        .await;
    }

    /// Another task keeps the runtime busy while a sample settles, so the sample's wake-up comes
    /// late (tokio's sleep waits at least its duration, and on a busy runtime longer). Busy
    /// for 0.25 ms to 10,000 years (the clock jumping in one go), starting at the switch, 1 ms
    /// into the settling, or just as it is due: however late the wake-up, every conversion must
    /// still come a full `SETTLE_TIME` after the last switch to its channel, and read that
    /// channel.
    async fn a_late_wake_up_still_converts_a_settled_channel() {
        let ms = Duration::from_millis;
        let mut busy_for = [250, 1_000, 1_500, 3_000, 50_000].map(Duration::from_micros).to_vec();
        busy_for.extend([ms(101), ms(150), ms(400), ms(1_000), ms(60_000)]);
        busy_for.extend([Duration::from_secs(3600), Duration::from_secs(7 * 24 * 3600)]);
        // And far ends, where a wake-up "too late to trust" might be treated apart: a month and
        // a second, 400 days, 30 years and 10,000 years.
        let day = 24 * 3600;
        let far = [30 * day + 1, 400 * day, 30 * 365 * day, 10_000 * 365 * day];
        busy_for.extend(far.map(Duration::from_secs));
        let busy_from = [Duration::ZERO, Duration::from_millis(1), SETTLE_TIME];
        for busy_from in busy_from {
            for &busy_for in &busy_for {
                for channel in [4, 6] {
                    let mut poller = Poller::new(FakeAdc::default());
                    // A task that wakes `busy_from` after the switch and holds the runtime for
                    // `busy_for` of virtual time (on the paused clock: it moves the clock while
                    // it runs, so every timer due meanwhile fires late).
                    let busy = tokio::spawn(async move {
                        sleep(busy_from).await;
                        tokio::time::advance(busy_for).await;
                    });
                    let reading = poller.sample(channel).await;
                    busy.await.expect("the busy task does not panic");
                    let adc = poller.into_inner();
                    let setting = format!(
                        "another task kept the runtime busy for {busy_for:?}, from \
                         {busy_from:?} after `sample({channel})` switched to its channel, so the \
                         sample's settling wait may have ended late"
                    );
                    if let Err(seen) = every_conversion_settled(&adc) {
                        panic!("{setting}: {seen}");
                    }
                    assert_eq!(
                        reading,
                        1000 + u16::from(channel),
                        "{setting}: `sample({channel})` must read channel {channel} (bus \
                         operations: {:?})",
                        adc.ops
                    );
                }
            }
        }
    }

    /// The far end of a late wake-up, as far as tokio's timer counts (its ticks are milliseconds
    /// in a `u64` from the runtime's start, about 584 million years): another task holds the
    /// runtime for 500 million years, from the switch, 1 ms into the settling or just as it is
    /// due, in one jump of the paused clock (a fresh runtime each time, on every `select!` seed).
    /// No wake-up is so late that it is treated apart: the conversion still comes a full
    /// `SETTLE_TIME` after the last switch to its channel, and reads that channel. And a sample's
    /// future awaited 500 million years after it was made settles from its switch.
    fn a_wake_up_as_late_as_the_timer_counts_still_converts_a_settled_channel() {
        let far = Duration::from_secs(500_000_000 * 365 * 24 * 3600);
        for seed in kata_support::runtime::SEEDS {
            for busy_from in [Duration::ZERO, Duration::from_millis(1), SETTLE_TIME] {
                let runtime = kata_support::runtime::current_thread(seed);
                let (reading, adc) = runtime.block_on(async {
                    let mut poller = Poller::new(FakeAdc::default());
                    let busy = tokio::spawn(async move {
                        sleep(busy_from).await;
                        tokio::time::advance(far).await;
                    });
                    let reading = poller.sample(4).await;
                    busy.await.expect("the busy task does not panic");
                    (reading, poller.into_inner())
                });
                let setting = format!(
                    "another task kept the runtime busy for {far:?} (500 million years), from \
                     {busy_from:?} after `sample(4)` switched to its channel, so the sample's \
                     settling wait ended that late"
                );
                if let Err(seen) = every_conversion_settled(&adc) {
                    panic!("{setting}: {seen}");
                }
                assert_eq!(
                    reading, 1004,
                    "{setting}: `sample(4)` must read channel 4 (bus operations: {:?})",
                    adc.ops
                );
            }
            for before in [None, Some(0u8), Some(1)] {
                let runtime = kata_support::runtime::current_thread(seed);
                let (reading, adc) = runtime.block_on(async {
                    let mut poller = Poller::new(FakeAdc::default());
                    if let Some(channel) = before {
                        poller.sample(channel).await;
                    }
                    let sample = poller.sample(0);
                    tokio::time::advance(far).await;
                    let reading = sample.await;
                    (reading, poller.into_inner())
                });
                let seen = if reading != 1000 {
                    Err(format!("it read {reading}, expected channel 0's 1000"))
                } else {
                    every_conversion_settled(&adc)
                };
                if let Err(seen) = seen {
                    panic!(
                        "the gateway made the future of `sample(0)` ({}) and awaited it 500 \
                         million years later: {seen}. The settling is counted from the switch, \
                         when the sample runs, however long after its future was made",
                        match before {
                            None => "on a fresh poller".to_string(),
                            Some(channel) => format!("right after a sample of channel {channel}"),
                        }
                    );
                }
            }
        }
    }

    /// A sweep of 1,024 entries naming five channels over and over, past a "long sweep" of 256
    /// entries: one settled conversion per entry, each reading its own channel. (No longer: a
    /// right fix that also waits on the OS clock spends 2 ms of real time per sample.) One
    /// `select!` seed: a sweep races nothing.
    fn a_sweep_of_a_thousand_entries_samples_each() {
        const ENTRIES: usize = 1_024;
        let runtime = kata_support::runtime::current_thread(kata_support::runtime::SEEDS[0]);
        let channels: Vec<u8> = (0..ENTRIES).map(|i| [5, 5, 9, 5, 9, 9, 0, 3, 7][i % 9]).collect();
        let (readings, adc) = runtime.block_on(async {
            let mut poller = Poller::new(FakeAdc::default());
            let readings = poller.sweep(&channels).await;
            (readings, poller.into_inner())
        });
        let conversions = adc.ops.iter().filter(|op| **op == BusOp::Convert).count();
        let expected: Vec<u16> = channels.iter().map(|&c| 1000 + u16::from(c)).collect();
        assert!(
            conversions == ENTRIES && readings == expected,
            "a sweep of {ENTRIES} entries ({:?}, ...) made {conversions} conversion(s) and \
             returned {} reading(s), expected one conversion per entry, {ENTRIES} in all, each \
             reading its own channel: a sweep samples each entry in turn, however long the list \
             (a copied reading is not a sample)",
            &channels[..9],
            readings.len()
        );
        if let Err(seen) = sampled_in_turn(&adc, &channels) {
            panic!("a sweep of {ENTRIES} entries: {seen}");
        }
        if let Err(seen) = every_conversion_settled(&adc) {
            panic!("a sweep of {ENTRIES} entries: {seen}");
        }
    }

    /// The gateway retries a sample that its `timeout` cut short: the retry, on the same channel,
    /// must still give the input its full settling time before converting.
    async fn a_retry_after_a_cancelled_sample_still_settles() {
        let mut poller = Poller::new(FakeAdc::default());
        let first = timeout(SETTLE_TIME / 2, poller.sample(3)).await;
        assert!(first.is_err(), "a sample under a timeout of half the settling time completed");
        let reading = poller.sample(3).await;
        assert_eq!(reading, 1003, "the retry must read channel 3");
        let adc = poller.into_inner();
        if let Err(seen) = every_conversion_settled(&adc) {
            panic!(
                "a sample of channel 3 was cancelled by its timeout half way through settling, \
                 and the gateway retried it: {seen}"
            );
        }
    }

    /// The gateway makes a sample's future and awaits it only later (it awaits the uplink
    /// first, or the future waits in a `join!` behind other work): 1 ms, 3 ms or a week later, on
    /// a fresh poller or right after a sample of the same or the other channel. The settling is
    /// counted from the switch, which happens when the sample runs, not from the moment its
    /// future was made: the conversion still comes a full `SETTLE_TIME` after the switch.
    async fn a_sample_awaited_a_while_after_it_was_made_still_settles() {
        let week = Duration::from_secs(7 * 24 * 3600);
        for gap in [Duration::from_millis(1), Duration::from_millis(3), week] {
            for before in [None, Some(0u8), Some(1)] {
                let mut poller = Poller::new(FakeAdc::default());
                if let Some(channel) = before {
                    poller.sample(channel).await;
                }
                let sample = poller.sample(0);
                sleep(gap).await;
                let reading = sample.await;
                let adc = poller.into_inner();
                let what = match before {
                    None => "on a fresh poller".to_string(),
                    Some(channel) => format!("right after a sample of channel {channel}"),
                };
                let seen = if reading != 1000 {
                    Err(format!("it read {reading}, expected channel 0's 1000"))
                } else {
                    every_conversion_settled(&adc)
                };
                if let Err(seen) = seen {
                    panic!(
                        "{what}, the gateway made the future of `sample(0)` and awaited it \
                         {gap:?} later: {seen}. The settling is counted from the switch, when the \
                         sample runs, whatever happened between making its future and awaiting it"
                    );
                }
            }
        }
    }

    /// Samples that switch just past a whole millisecond of the runtime's clock (1 µs to 999 µs
    /// past it), with the clock moved by hand and landing on every whole millisecond: on a fresh
    /// poller, after a sample of the other channel, again on the same channel, and retried after a
    /// timeout cut it short. Every conversion comes a full `SETTLE_TIME` after its switch: a wait
    /// even a microsecond short converts early here.
    async fn a_sample_switched_just_past_a_millisecond_still_settles_fully() {
        let origin = Instant::now();
        let limit = Duration::from_millis(10);
        let mut poller = Poller::new(FakeAdc::default());
        for phase_us in [1u64, 2, 5, 10, 20, 49, 500, 999] {
            let phase = Duration::from_micros(phase_us);
            for channel in [0u8, 1, 1] {
                to_phase_by_hand(phase, origin).await;
                let reading = by_hand(poller.sample(channel), limit, origin).await;
                assert_eq!(reading, 1000 + u16::from(channel), "sample({channel}) read another channel");
            }
            to_phase_by_hand(phase, origin).await;
            let cut = by_hand(timeout(Duration::from_millis(1), poller.sample(0)), limit, origin).await;
            if cut.is_ok() {
                continue;
            }
            to_phase_by_hand(phase, origin).await;
            let reading = by_hand(poller.sample(0), limit, origin).await;
            assert_eq!(reading, 1000, "the retried sample(0) read another channel");
        }
        if let Err(seen) = every_conversion_settled(&poller.into_inner()) {
            panic!(
                "samples switched 1 µs to 999 µs past a whole millisecond, the clock moved by hand \
                 as a real one does: {seen}"
            );
        }
    }

    /// The clock moved by hand in steps of 50 µs (1 µs near each whole millisecond), as a real
    /// clock moves, from any point inside a
    /// millisecond (tokio's timer works in whole milliseconds of the runtime's clock, so a wait
    /// asked for from 0.1 ms past one may end anywhere in the next): idle periods, samples back to
    /// back, timeouts cutting samples short. Every conversion still comes a full `SETTLE_TIME`
    /// after the switch to its channel: a wait that ends up to a millisecond early is seen here.
    fn every_conversion_is_settled_on_a_clock_that_moves_in_small_steps() {
        // Idle periods of a few microseconds too: a sample that starts just past a whole
        // millisecond is where a wait a few microseconds short is converted early.
        let idle_us = prop_oneof![Just(0u64), 1u64..25, 1u64..1_000, 1_000u64..3_000];
        let step = (idle_us, 0u8..3, proptest::option::of(0u64..4_000));
        let offset_us = prop_oneof![1u64..50, 1u64..1_000];
        let scenario = (offset_us, proptest::collection::vec(step, 1..5));
        check_property(48, scenario, |(offset_us, steps)| async move {
            // Long enough for any sample to reach its conversion (or its timeout) by hand.
            let limit = Duration::from_millis(10);
            let adc = FakeAdc::default();
            let conversions = adc.converts.clone();
            let mut poller = Poller::new(adc);
            let origin = Instant::now();
            idle_by_hand(Duration::from_micros(offset_us), origin).await;
            let what = format!(
                "the clock moved by hand in steps of {HAND_STEP:?} ({FINE_STEP:?} near each whole \
                 millisecond), starting {offset_us} µs past \
                 a whole millisecond; steps (idle µs, channel, timeout µs) {steps:?}"
            );
            for &(idle_us, channel, budget_us) in &steps {
                idle_by_hand(Duration::from_micros(idle_us), origin).await;
                let converts_before = conversions.load(Ordering::SeqCst);
                let reading = match budget_us {
                    Some(us) => {
                        let budget = Duration::from_micros(us);
                        let sample = timeout(budget, poller.sample(channel));
                        by_hand(sample, limit, origin).await.ok()
                    }
                    None => Some(by_hand(poller.sample(channel), limit, origin).await),
                };
                let converts = conversions.load(Ordering::SeqCst) - converts_before;
                if reading.is_none() && converts > 0 {
                    return Err(format!(
                        "{what}: sample({channel}) was given up on (its timeout returned \
                         `Elapsed`), yet the converter converted {converts} time(s) during it"
                    ));
                }
                if let Some(reading) = reading
                    && reading != 1000 + u16::from(channel)
                {
                    return Err(format!(
                        "{what}: sample({channel}) returned {reading}, the reading of channel {}",
                        reading.wrapping_sub(1000)
                    ));
                }
            }
            every_conversion_settled(&poller.into_inner()).map_err(|seen| {
                format!(
                    "{what}: {seen}. On a clock that moves in small steps, as a real one does, \
                     the conversion came before the input had settled"
                )
            })
        });
    }

    /// Every pattern of three samples over two channels, each one completing or cut short by a
    /// timeout (at once, or 1 ms into its settling), then a last sample that completes: a gateway
    /// that goes back and forth between channels, with retries. Whatever came before (a channel
    /// settled earlier, then left, then switched back to), every conversion comes a full
    /// settling time after the switch to its channel, and every completed sample reads its own
    /// channel.
    fn every_conversion_is_settled_after_any_three_samples() {
        let seeds = kata_support::runtime::SEEDS;
        // The patterns that start on channel 1 are the mirror images of these: which channel is
        // called 0 makes no difference to the converter. Fewer patterns keep the test short also
        // for a right fix that costs real time per sample (one that also checks the OS clock).
        let patterns: Vec<Vec<(u8, Cut)>> = every_pattern(3)
            .into_iter()
            .filter(|pattern| pattern[0].0 == 0)
            .collect();
        // One runtime per seed, each taking its share of the patterns: a runtime per pattern
        // would cost more than the patterns themselves.
        for (s, &seed) in seeds.iter().enumerate() {
            let runtime = kata_support::runtime::current_thread(seed);
            for mut pattern in patterns.iter().skip(s).step_by(seeds.len()).cloned() {
                let last = pattern[2].0;
                pattern.push((last, Cut::Completes));
                let seen = runtime.block_on(async {
                    let mut poller = Poller::new(FakeAdc::default());
                    for &(channel, cut) in &pattern {
                        let budget = match cut {
                            Cut::Completes => None,
                            Cut::AtOnce => Some(Duration::ZERO),
                            Cut::After1Ms => Some(Duration::from_millis(1)),
                        };
                        let reading = match budget {
                            Some(budget) => timeout(budget, poller.sample(channel)).await.ok(),
                            None => Some(poller.sample(channel).await),
                        };
                        if let Some(reading) = reading
                            && reading != 1000 + u16::from(channel)
                        {
                            return Err(format!(
                                "sample({channel}) returned {reading}, the reading of channel {}",
                                reading.wrapping_sub(1000)
                            ));
                        }
                    }
                    every_conversion_settled(&poller.into_inner())
                });
                if let Err(seen) = seen {
                    panic!("the gateway took {}: {seen}", describe(&pattern));
                }
            }
        }
    }

    /// Any polling pattern (idle periods, samples back to back, timeouts cutting samples short at
    /// any point, retries on the same channel): every conversion comes a full settling time after
    /// the switch to its channel, every completed sample reads its own channel, and a sample cut
    /// short while settling never converts.
    fn every_conversion_is_settled_whatever_the_polling_pattern() {
        check_property(96, steps(), |steps| async move {
            let adc = FakeAdc::default();
            let conversions = adc.converts.clone();
            let mut poller = Poller::new(adc);
            for step in &steps {
                sleep(Duration::from_millis(step.idle_ms)).await;
                let converts_before = conversions.load(Ordering::SeqCst);
                let reading = match step.budget_us {
                    // A sample that completes under the timeout is checked like any other: its
                    // reading here, and its conversion's distance from its switch at the end. It
                    // may be quick if its channel was switched to, and settled, long before.
                    Some(us) => timeout(Duration::from_micros(us), poller.sample(step.channel))
                        .await
                        .ok(),
                    None => Some(poller.sample(step.channel).await),
                };
                let converts = conversions.load(Ordering::SeqCst) - converts_before;
                if reading.is_none() && converts > 0 {
                    return Err(format!(
                        "steps {steps:?}: sample({}) was given up on (its timeout returned \
                         `Elapsed`), yet the converter converted {converts} time(s) during it: a \
                         reading was taken and thrown away",
                        step.channel
                    ));
                }
                if let Some(reading) = reading {
                    if reading != 1000 + u16::from(step.channel) {
                        return Err(format!(
                            "steps {steps:?}: sample({}) returned {reading}, the reading of \
                             channel {}: the converter was on another channel when it converted \
                             (a sample cut short had switched it, say)",
                            step.channel,
                            reading.wrapping_sub(1000)
                        ));
                    }
                }
            }
            let adc = poller.into_inner();
            every_conversion_settled(&adc).map_err(|seen| format!("steps {steps:?}: {seen}"))
        });
    }
}
