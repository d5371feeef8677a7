//! Decoy for kata 08: yields to the scheduler once before the blocking sleep.
//!
//! A small IoT gateway reads an analogue-to-digital converter (ADC) over a serial bus. After the
//! converter is switched to another input channel, the input needs [`SETTLE_TIME`] to settle
//! before a conversion is accurate, so [`Poller::sample`] waits between selecting the channel and
//! converting.
//!
//! The gateway runs everything on one small tokio runtime: the poller, the uplink, and the task
//! that kicks the board's hardware watchdog. Each sample is also wrapped in a `timeout` by the
//! caller, so that a stuck bus cannot hold up a whole sweep:
//!
//! ```text
//! match tokio::time::timeout(SAMPLE_BUDGET, poller.sample(channel)).await { ... }
//! ```
//!
//! The wait is written the way it would be in a synchronous driver. Read `README.md` for what it
//! does to the rest of the gateway.

use std::time::Duration;

/// How long an input needs after a channel switch before a conversion is accurate.
pub const SETTLE_TIME: Duration = Duration::from_millis(2);

/// The register-level interface of the ADC chip.
///
/// Each call is one short bus transaction (a few microseconds), quick enough to make directly
/// from async code. It is the *waiting between* the calls that takes time.
pub trait Adc {
    /// Routes `channel` to the converter. A conversion is accurate only [`SETTLE_TIME`] later.
    fn select_channel(&mut self, channel: u8);

    /// Converts the selected channel and returns the raw reading.
    fn convert(&mut self) -> u16;
}

/// Reads the gateway's sensors through one ADC.
#[derive(Debug)]
pub struct Poller<A> {
    adc: A,
}

impl<A: Adc> Poller<A> {
    /// A poller that owns the converter.
    pub fn new(adc: A) -> Self {
        Poller { adc }
    }

    /// Gives the converter back (the gateway does this on shutdown).
    pub fn into_inner(self) -> A {
        self.adc
    }

    /// Reads one channel: selects it, waits for the input to settle, converts.
    ///
    /// # Cancel safety
    ///
    /// Meant to be cancel safe: dropped before the conversion, a sample leaves the channel
    /// selected and nothing else, and the next sample selects its own channel. But as written it
    /// has no `.await` at all, so it cannot be cancelled in the first place: a `timeout` around it
    /// only gets to look at its deadline after the whole wait is over.
    pub async fn sample(&mut self, channel: u8) -> u16 {
        self.adc.select_channel(channel);
        // Give the other tasks a turn before the wait.
        tokio::task::yield_now().await;
        std::thread::sleep(SETTLE_TIME);
        self.adc.convert()
    }

    /// Reads each channel in turn, one [`sample`](Self::sample) after another.
    ///
    /// # Cancel safety
    ///
    /// As cancel safe as `sample`: the readings taken so far are lost with the future, and the
    /// converter is left on some channel, which does no harm.
    pub async fn sweep(&mut self, channels: &[u8]) -> Vec<u16> {
        let mut readings = Vec::with_capacity(channels.len());
        for &channel in channels {
            readings.push(self.sample(channel).await);
        }
        readings
    }
}
