//! The far end of the paused clock, and durations as a failure message says them.

use std::time::Duration;

/// The far end of the paused clock: 2^62 ms, some 146 million years, past any deadline a fix
/// could sensibly set. A test reaches it with `tokio::time::advance`, in one jump, at no CPU cost.
/// A `sleep` cannot stand in for the jump: tokio ends a single `sleep` of more than about 30 years
/// at 30 years (its `Instant::far_future`), and its timer wheel moves a far timer on in steps of
/// about 2.2 years, so a timer of the test's own across the jump would cost millions of steps.
pub const FAR_END: Duration = Duration::from_millis(1 << 62);

/// A pause as a test message says it: `90s`, `100 year(s)` once it is a year or more, or
/// `146 million years` once it is a million years or more (a year is 365 days).
pub fn spoken(pause: Duration) -> String {
    const YEAR: f64 = 365.0 * 24.0 * 3600.0;
    match pause.as_secs_f64() / YEAR {
        years if years >= 1e6 => format!("{:.0} million years", years / 1e6),
        years if years >= 1.0 => format!("{years:.0} year(s)"),
        _ => format!("{pause:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_are_said_in_the_largest_unit_that_reads_well() {
        assert_eq!(spoken(Duration::from_secs(90)), "90s");
        assert_eq!(spoken(Duration::from_secs(100 * 365 * 24 * 3600)), "100 year(s)");
        assert_eq!(spoken(FAR_END), "146 million years");
    }
}
