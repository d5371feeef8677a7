//! The far end of the paused clock, and durations as a failure message says them.

use std::time::Duration;

/// The far end of the paused clock: 2^62 ms, some 146 million years, past any deadline a fix
/// could sensibly set. A test reaches it with `tokio::time::advance`, in one jump, at no CPU cost.
/// A `sleep` cannot stand in for the jump: tokio ends a single `sleep` of more than about 30 years
/// at 30 years (its `Instant::far_future`), and its timer wheel moves a far timer on in steps of
/// about 2.2 years, so a timer of the test's own across the jump would cost millions of steps.
pub const FAR_END: Duration = Duration::from_millis(1 << 62);

/// The longest one tokio `sleep` lasts: 30 years of 365 days. tokio 1.54 ends a longer `sleep` (and
/// an `Interval` period) there, at its `Instant::far_future`, so a wait past it that a fix builds
/// on one timer ends at this figure, and a test allows that as "the wait's end".
pub const SLEEP_LIMIT: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// The waits a fix might take for "for ever" below the floor that 02, 05 and 13 state (only from a
/// hundred thousand years up may a wait be endless): every power of two of seconds from 2^30 s
/// (34 years) to 2^41 s (69,700 years), then a millisecond under a hundred thousand years. All are
/// whole milliseconds, so each runs out on the tick it names.
pub fn waits_short_of_a_hundred_thousand_years() -> Vec<Duration> {
    let floor = Duration::from_secs(100_000 * 365 * 24 * 3600);
    let mut waits: Vec<Duration> = (30..=41).map(|p| Duration::from_secs(1u64 << p)).collect();
    waits.push(floor - Duration::from_millis(1));
    waits
}

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
