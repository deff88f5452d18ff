//! The round-trip estimate behind the probe's adaptive timeout, as TCP's retransmission timer keeps it
//! (RFC 6298): a smoothed round trip and its variation, updated with every answered ping.
//!
//! libp2p-ping has a fixed timeout and no estimator to borrow, so the keeper keeps its own.

use std::time::Duration;

/// The timeout before the first answer: long enough for a stream negotiation and an echo (two round trips)
/// on a satellite or congested mobile link, since nothing is known about the link yet.
const INITIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// Smoothed round trip and its variation over a connection's answered pings.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RttEstimator {
    smoothed: Option<Duration>,
    variation: Duration,
}

impl RttEstimator {
    /// Takes the round trip of one answered ping.
    pub(crate) fn sample(&mut self, rtt: Duration) {
        match self.smoothed {
            None => {
                self.smoothed = Some(rtt);
                self.variation = rtt / 2;
            }
            Some(smoothed) => {
                let deviation = smoothed.abs_diff(rtt);
                self.variation = (self.variation * 3 + deviation) / 4;
                self.smoothed = Some((smoothed * 7 + rtt) / 8);
            }
        }
    }

    /// How long a ping may take before it is late: `max(floor, srtt + 4 * rttvar)`, or before the first answer
    /// `max(floor, 5 s)`. An answer within it is never late.
    pub(crate) fn timeout(&self, floor: Duration) -> Duration {
        self.upper().unwrap_or(INITIAL_TIMEOUT).max(floor)
    }

    /// The longest round trip the samples make likely, `srtt + 4 * rttvar`; `None` before the first sample.
    pub(crate) fn upper(&self) -> Option<Duration> {
        self.smoothed
            .map(|smoothed| smoothed.saturating_add(self.variation.saturating_mul(4)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_steady_link_settles_near_its_round_trip_and_never_below_the_floor() {
        let mut rtt = RttEstimator::default();
        assert_eq!(rtt.timeout(1000 * MS), INITIAL_TIMEOUT, "nothing known yet");
        for _ in 0..50 {
            rtt.sample(1200 * MS);
        }
        let timeout = rtt.timeout(1000 * MS);
        assert!(timeout >= 1200 * MS && timeout < 1300 * MS, "{timeout:?}");
        let mut fast = RttEstimator::default();
        fast.sample(MS);
        assert_eq!(fast.timeout(1000 * MS), 1000 * MS, "the floor");
    }

    #[test]
    fn a_jittery_link_gets_room_for_its_variation() {
        let mut rtt = RttEstimator::default();
        for n in 0..100 {
            rtt.sample(if n % 2 == 0 { 500 * MS } else { 2500 * MS });
        }
        let timeout = rtt.timeout(1000 * MS);
        assert!(
            timeout > 2500 * MS,
            "the slowest answers are not late: {timeout:?}"
        );
    }

    #[test]
    fn the_timeout_follows_a_link_that_slowed_down() {
        let mut rtt = RttEstimator::default();
        for _ in 0..20 {
            rtt.sample(50 * MS);
        }
        for _ in 0..20 {
            rtt.sample(2000 * MS);
        }
        assert!(rtt.timeout(1000 * MS) > 2000 * MS);
    }
}
