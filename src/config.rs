use std::time::Duration;

/// The shortest wait the keeper schedules; a base delay of zero would turn a dead relay into a busy loop.
const MIN_DELAY: Duration = Duration::from_millis(1);

/// The longest wait the keeper schedules. Larger values are clamped so that adding a wait to an
/// [`Instant`](std::time::Instant) can never overflow.
const MAX_DELAY: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Configuration of a [`RelayKeeper`](crate::RelayKeeper).
///
/// The default follows MetaMask ocap-kernel's relay reconnection: waits start at 5 s and double up to 60 s,
/// with full jitter, for at most 10 retries per outage, and a circuit reservation is kept on every relay.
///
/// ```
/// use std::time::Duration;
/// use libp2p_relay_keeper::Config;
///
/// let config = Config::default()
///     .with_base_delay(Duration::from_secs(1))
///     .with_max_delay(Duration::from_secs(30))
///     .with_max_attempts(None);
/// assert_eq!(config.backoff_bound(3), Duration::from_secs(4));
/// assert_eq!(config.backoff_bound(10), Duration::from_secs(30));
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    base_delay: Duration,
    max_delay: Duration,
    max_attempts: Option<u32>,
    jitter: bool,
    rng_seed: Option<u64>,
    reservations: bool,
    cooldown: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            base_delay: Duration::from_secs(5),
            max_delay: Duration::from_secs(60),
            max_attempts: Some(10),
            jitter: true,
            rng_seed: None,
            reservations: true,
            cooldown: None,
        }
    }
}

impl Config {
    /// Sets the bound of the wait before the first retry of an outage; each further retry doubles it.
    ///
    /// Zero is clamped to 1 ms, values above one year to one year.
    pub fn with_base_delay(mut self, base_delay: Duration) -> Self {
        self.base_delay = base_delay.clamp(MIN_DELAY, MAX_DELAY);
        self
    }

    /// Sets the cap on the wait between two retries.
    ///
    /// A cap below the base delay acts as the base delay (whichever setter is called first); values above one
    /// year are clamped to one year.
    pub fn with_max_delay(mut self, max_delay: Duration) -> Self {
        self.max_delay = max_delay.min(MAX_DELAY);
        self
    }

    /// Sets how many failed retries of one outage the keeper makes before it gives up on the relay.
    ///
    /// `None` never gives up. `Some(0)` gives up as soon as the relay is lost, without a retry.
    pub fn with_max_attempts(mut self, max_attempts: Option<u32>) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// With jitter (the default) the wait before retry `n` is uniform in `[0, backoff_bound(n))`, so that many
    /// nodes losing the same relay do not all dial it at the same instant. Without, it is exactly
    /// [`backoff_bound(n)`](Config::backoff_bound).
    pub fn with_jitter(mut self, jitter: bool) -> Self {
        self.jitter = jitter;
        self
    }

    /// Seeds the jitter's random number generator, so that the sequence of waits is reproducible.
    ///
    /// Meant for tests and simulations; in production leave it unset so that nodes spread out.
    pub fn with_rng_seed(mut self, seed: u64) -> Self {
        self.rng_seed = Some(seed);
        self
    }

    /// With reservations on (the default) the keeper keeps a circuit reservation on every relay, so the node is
    /// reachable through it. Off, it keeps only the connection (e.g. for a relay used to dial out through).
    pub fn with_reservations(mut self, reservations: bool) -> Self {
        self.reservations = reservations;
        self
    }

    /// After giving up on a relay, try it again once `cooldown` has passed, with a fresh backoff; and again
    /// after each further give-up. `None` (the default) leaves a relay that gave up alone until
    /// [`RelayKeeper::retry_now`](crate::RelayKeeper::retry_now) or
    /// [`RelayKeeper::add_relay`](crate::RelayKeeper::add_relay).
    ///
    /// Set it on nodes that run unattended, where nobody is there to call `retry_now` after a long outage
    /// (a relay down for maintenance, a data-centre network failure), so the node never stays unreachable
    /// for good; a cool-down of a few times the max delay keeps the load on a dead relay negligible:
    ///
    /// ```
    /// use std::time::Duration;
    /// use libp2p_relay_keeper::Config;
    ///
    /// let config = Config::default().with_cooldown(Some(Duration::from_secs(10 * 60)));
    /// ```
    ///
    /// Values above one year are clamped to one year.
    pub fn with_cooldown(mut self, cooldown: Option<Duration>) -> Self {
        self.cooldown = cooldown.map(|c| c.min(MAX_DELAY));
        self
    }

    /// Upper bound of the wait before retry `attempt` (1-based) of an outage:
    /// `min(max_delay, base_delay * 2^(attempt - 1))`, saturating instead of overflowing.
    /// Attempt 0 is treated as attempt 1.
    pub fn backoff_bound(&self, attempt: u32) -> Duration {
        let cap = self.max_delay.max(self.base_delay);
        1u32.checked_shl(attempt.saturating_sub(1))
            .and_then(|factor| self.base_delay.checked_mul(factor))
            .map_or(cap, |bound| bound.min(cap))
    }

    pub(crate) fn max_attempts(&self) -> Option<u32> {
        self.max_attempts
    }

    pub(crate) fn jitter(&self) -> bool {
        self.jitter
    }

    pub(crate) fn rng_seed(&self) -> Option<u64> {
        self.rng_seed
    }

    pub(crate) fn reservations(&self) -> bool {
        self.reservations
    }

    pub(crate) fn cooldown(&self) -> Option<Duration> {
        self.cooldown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_bounds_follow_the_seed() {
        let config = Config::default();
        let bounds: Vec<u64> = (1..=7).map(|n| config.backoff_bound(n).as_secs()).collect();
        assert_eq!(bounds, [5, 10, 20, 40, 60, 60, 60]);
    }

    #[test]
    fn bound_saturates_instead_of_overflowing() {
        let config = Config::default().with_max_delay(Duration::MAX);
        assert_eq!(config.backoff_bound(u32::MAX), MAX_DELAY);
        assert_eq!(config.backoff_bound(40), MAX_DELAY);
        assert_eq!(Config::default().backoff_bound(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn zero_base_is_clamped_to_one_millisecond() {
        let config = Config::default().with_base_delay(Duration::ZERO);
        assert_eq!(config.backoff_bound(1), MIN_DELAY);
        assert_eq!(config.backoff_bound(2), 2 * MIN_DELAY);
    }

    #[test]
    fn max_below_base_acts_as_base_in_either_order() {
        let base = Duration::from_secs(10);
        let low = Duration::from_secs(1);
        let a = Config::default().with_base_delay(base).with_max_delay(low);
        let b = Config::default().with_max_delay(low).with_base_delay(base);
        for attempt in [1, 2, 9] {
            assert_eq!(a.backoff_bound(attempt), base);
            assert_eq!(b.backoff_bound(attempt), base);
        }
    }

    #[test]
    fn attempt_zero_is_treated_as_the_first() {
        let config = Config::default();
        assert_eq!(config.backoff_bound(0), config.backoff_bound(1));
    }
}
