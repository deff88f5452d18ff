use std::time::Duration;

use rand::{rngs::StdRng, RngExt, SeedableRng};

use crate::Config;

/// Draws the wait before each retry from [`Config::backoff_bound`], with full jitter when configured.
#[derive(Debug)]
pub(crate) struct Backoff {
    rng: StdRng,
    /// A stream of its own for the fallbacks of refusals for lack of HOP, which are rarely used (HOP comes
    /// first): with a seed, the waits of the retries are then the same whether or not relays refused.
    fallbacks: StdRng,
    /// A stream of its own for the waits between re-checks, likewise.
    rechecks: StdRng,
    /// A stream of its own for the holds after a relay's limits refused, likewise.
    holds: StdRng,
}

const NANOS_PER_SEC: u128 = 1_000_000_000;

impl Backoff {
    pub(crate) fn new(config: &Config) -> Self {
        let (rng, fallbacks, rechecks, holds) = match config.rng_seed() {
            Some(seed) => (
                StdRng::seed_from_u64(seed),
                StdRng::seed_from_u64(seed ^ 0x0068_6f70),
                StdRng::seed_from_u64(seed ^ 0x7265_6368),
                StdRng::seed_from_u64(seed ^ 0x686f_6c64),
            ),
            None => (
                rand::make_rng(),
                rand::make_rng(),
                rand::make_rng(),
                rand::make_rng(),
            ),
        };
        Self {
            rng,
            fallbacks,
            rechecks,
            holds,
        }
    }

    /// The wait before retry `attempt` (1-based): uniform in `[0, bound)` with jitter, `bound` without.
    pub(crate) fn delay(&mut self, config: &Config, attempt: u32) -> Duration {
        draw(&mut self.rng, config, attempt)
    }

    /// The fallback of a refusal for lack of HOP, drawn like the wait before retry `attempt`.
    pub(crate) fn fallback(&mut self, config: &Config, attempt: u32) -> Duration {
        draw(&mut self.fallbacks, config, attempt)
    }

    /// How long a relay that refused for its limits is left alone: the limit interval, and with jitter up to a
    /// tenth more, so that the clients a full relay refused in one instant do not all ask again in one instant,
    /// and none sooner than its limiter allows.
    pub(crate) fn limit_hold(&mut self, config: &Config) -> Duration {
        let interval = config.limit_interval();
        if !config.jitter() {
            return interval;
        }
        let nanos = self.holds.random_range(0..=interval.as_nanos() / 10);
        interval + Duration::new((nanos / NANOS_PER_SEC) as u64, (nanos % NANOS_PER_SEC) as u32)
    }

    /// The wait before the next re-check, uniform in `window` (jittered whatever [`Config::with_jitter`] says:
    /// the window is there to spread a relay's clients); `None` with re-checks off.
    pub(crate) fn recheck(&mut self, config: &Config) -> Option<Duration> {
        let window = config.recheck()?;
        if window.is_empty() {
            return Some(window.start);
        }
        Some(self.rechecks.random_range(window))
    }
}

fn draw(rng: &mut StdRng, config: &Config, attempt: u32) -> Duration {
    let bound = config.backoff_bound(attempt);
    if !config.jitter() {
        return bound;
    }
    // Whole nanoseconds, so that millisecond bounds in tests still spread; the bound is at least 1 ms, so the
    // range is never empty.
    let nanos = rng.random_range(0..bound.as_nanos());
    Duration::new((nanos / NANOS_PER_SEC) as u64, (nanos % NANOS_PER_SEC) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_jitter_the_wait_is_the_bound() {
        let config = Config::default().with_jitter(false);
        let mut backoff = Backoff::new(&config);
        let waits: Vec<u64> = (1..=6).map(|n| backoff.delay(&config, n).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 60, 60]);
    }

    #[test]
    fn jittered_waits_stay_below_their_bound_and_spread() {
        let config = Config::default().with_rng_seed(7);
        let mut backoff = Backoff::new(&config);
        for attempt in 1..=12 {
            let bound = config.backoff_bound(attempt);
            let waits: Vec<Duration> = (0..200).map(|_| backoff.delay(&config, attempt)).collect();
            assert!(waits.iter().all(|w| *w < bound), "attempt {attempt}");
            // Full jitter uses the whole range: some waits fall in each half.
            assert!(waits.iter().any(|w| *w < bound / 2));
            assert!(waits.iter().any(|w| *w >= bound / 2));
        }
    }

    #[test]
    fn seeded_jitter_is_reproducible() {
        let config = Config::default().with_rng_seed(42);
        let draw = || {
            let mut backoff = Backoff::new(&config);
            (1..=10).map(|n| backoff.delay(&config, n)).collect::<Vec<_>>()
        };
        assert_eq!(draw(), draw());
        let other = Config::default().with_rng_seed(43);
        let mut backoff = Backoff::new(&other);
        let other_draw: Vec<_> = (1..=10).map(|n| backoff.delay(&other, n)).collect();
        assert_ne!(draw(), other_draw);
    }

    #[test]
    fn huge_bounds_do_not_overflow() {
        let config = Config::default().with_max_delay(Duration::MAX).with_rng_seed(1);
        let mut backoff = Backoff::new(&config);
        assert!(backoff.delay(&config, u32::MAX) < config.backoff_bound(u32::MAX));
    }
}
