//! # Kata 08 solution: settle on tokio's timer
//!
//! The settling wait is a `tokio::time::sleep`. While it waits, `sample` is parked at an
//! `.await`: the executor thread is free to run the watchdog and the uplink, and a `timeout`
//! around the sample can fire and drop it at that `.await`.

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
    /// Cancel safe: dropped while the input settles, a sample leaves the channel selected and
    /// nothing else, and the next sample selects its own channel. No conversion is made for a
    /// sample that was given up on.
    pub async fn sample(&mut self, channel: u8) -> u16 {
        self.adc.select_channel(channel);
        // A timer, not a parked thread: the task yields here, other tasks run, and this is the
        // point where a `timeout` or `select!` can cancel the sample.
        tokio::time::sleep(SETTLE_TIME).await;
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
