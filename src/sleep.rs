//! Noticing that the machine slept, from the two clocks. On Linux and macOS the monotonic clock ([`Instant`])
//! stops while the machine is suspended and the wall clock ([`SystemTime`]) does not: across a sleep the wall
//! clock moves further than the monotonic one. Free of I/O: the caller reads both clocks and hands them in.

use std::time::{Duration, Instant, SystemTime};

use crate::SLEEP_THRESHOLD;

/// The two clocks as last seen.
#[derive(Debug, Default)]
pub(crate) struct SleepWatch {
    last: Option<(Instant, SystemTime)>,
}

impl SleepWatch {
    /// Records the clocks at `now` and `wall`; says how long the machine slept since the last call if the wall
    /// clock moved more than [`SLEEP_THRESHOLD`] further than the monotonic one. A wall clock that stepped
    /// backwards (NTP, the user) is no sleep, and neither is one that drifts or steps forward by less.
    pub(crate) fn observe(&mut self, now: Instant, wall: SystemTime) -> Option<Duration> {
        let (before, wall_before) = self.last.replace((now, wall))?;
        // `Err`: the wall clock went back.
        let wall_gap = wall.duration_since(wall_before).ok()?;
        let slept = wall_gap.saturating_sub(now.saturating_duration_since(before));
        (slept > SLEEP_THRESHOLD).then_some(slept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    /// A watch that saw the clocks once, and those clocks.
    fn watched() -> (SleepWatch, Instant, SystemTime) {
        let (now, wall) = (Instant::now(), SystemTime::now());
        let mut watch = SleepWatch::default();
        assert_eq!(
            watch.observe(now, wall),
            None,
            "the first look has nothing to compare with"
        );
        (watch, now, wall)
    }

    #[test]
    fn a_wall_clock_ahead_of_the_monotonic_one_by_more_than_the_threshold_is_a_sleep() {
        let (mut watch, now, wall) = watched();
        let slept = watch.observe(now + SECOND, wall + 3600 * SECOND);
        assert_eq!(slept, Some(3599 * SECOND));
        assert_eq!(
            watch.observe(now + 2 * SECOND, wall + 3601 * SECOND),
            None,
            "measured from the last look, not the first"
        );
    }

    #[test]
    fn drift_and_small_steps_are_no_sleep() {
        let (mut watch, now, wall) = watched();
        assert_eq!(watch.observe(now + 10 * SECOND, wall + 10 * SECOND), None);
        assert_eq!(
            watch.observe(now + 11 * SECOND, wall + 11 * SECOND + SLEEP_THRESHOLD),
            None,
            "exactly the threshold"
        );
        assert_eq!(
            watch.observe(now + 3600 * SECOND, wall),
            None,
            "the wall clock stood still"
        );
    }

    #[test]
    fn a_wall_clock_stepping_backwards_is_no_sleep_and_no_panic() {
        let (mut watch, now, wall) = watched();
        let back = wall - 3600 * SECOND;
        assert_eq!(watch.observe(now + SECOND, back), None);
        assert_eq!(
            watch.observe(now + 2 * SECOND, back + SECOND),
            None,
            "and the next look compares with the stepped clock"
        );
        assert_eq!(watch.observe(now, SystemTime::UNIX_EPOCH), None);
    }
}
