//! Hidden tests for kata 08: the settling wait must be a tokio timer, so that other tasks keep
//! running while it lasts and a `timeout` can cancel a sample at its deadline.
//!
//! Everything runs on the paused current-thread runtime. A wait that goes through tokio's timer
//! shows up on tokio's clock; a wait that parks the thread does not, and holds up every other task.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use blocking_sleep::{Adc, Poller, SETTLE_TIME};
use kata_support::hidden_test;
use tokio::time::{Instant, interval_at, timeout};

/// What the fake converter was asked to do, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BusOp {
    Select(u8),
    Convert,
}

/// A converter whose reading of channel `c` is `1000 + c`.
#[derive(Debug, Default)]
struct FakeAdc {
    selected: Option<u8>,
    ops: Vec<BusOp>,
}

impl Adc for FakeAdc {
    fn select_channel(&mut self, channel: u8) {
        self.selected = Some(channel);
        self.ops.push(BusOp::Select(channel));
    }

    fn convert(&mut self) -> u16 {
        self.ops.push(BusOp::Convert);
        1000 + u16::from(self.selected.expect("convert called before any channel was selected"))
    }
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

    /// The settling wait must be a tokio timer: it shows up on tokio's clock.
    async fn the_settling_wait_is_a_tokio_timer() {
        let mut poller = Poller::new(FakeAdc::default());
        let start = Instant::now();
        poller.sample(2).await;
        let waited = start.elapsed();
        assert!(
            waited >= SETTLE_TIME,
            "`sample` waited {waited:?} on tokio's clock, expected at least {SETTLE_TIME:?} of \
             settling: the wait did not go through tokio's timer. A thread sleep, whether it \
             blocks this thread or a `spawn_blocking` thread, is a wait tokio knows nothing \
             about: it ignores tokio's clock, and dropping the future does not stop it."
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
        assert_eq!(
            ops,
            [BusOp::Select(5)],
            "a sample cancelled while settling must not go on to convert"
        );
    }
}
