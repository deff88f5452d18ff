//! What the engine remembers of a kept relay's service across its outages: since when it is known, when it was
//! last in its goal, and its last failure. The snapshot of known relays ([`crate::known`]) is made of it, and the
//! pool prefers the relays that served last ([`crate::pool::View::served`]).
//!
//! A moment is kept as an instant of the engine's clock and a duration before it: a moment from a snapshot
//! taken before the process started may lie before the monotonic clock's origin (a machine that rebooted),
//! where no [`Instant`] can name it.

use std::{
    cmp::Ordering,
    time::{Duration, Instant},
};

use crate::Cause;

/// A moment on the engine's clock: `before` ahead of `at`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Moment {
    at: Instant,
    before: Duration,
}

impl Moment {
    /// The moment `now`.
    pub(crate) fn at(now: Instant) -> Self {
        Self::ago(now, Duration::ZERO)
    }

    /// The moment `ago` before `now`.
    pub(crate) fn ago(now: Instant, ago: Duration) -> Self {
        Self { at: now, before: ago }
    }

    /// How long before `now` the moment was; zero for one after `now`.
    pub(crate) fn age(self, now: Instant) -> Duration {
        match self.at.checked_duration_since(now) {
            Some(ahead) => self.before.saturating_sub(ahead),
            None => (now - self.at).saturating_add(self.before),
        }
    }
}

/// The later moment is the greater.
impl Ord for Moment {
    fn cmp(&self, other: &Self) -> Ordering {
        // Both ages from an instant after both anchors: the older moment has the greater age.
        let reference = self.at.max(other.at);
        other.age(reference).cmp(&self.age(reference))
    }
}

impl PartialOrd for Moment {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Moment {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Moment {}

/// What the engine remembers of one relay's service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct History {
    /// Since when the relay is known: its `add_relay`, or what a snapshot said.
    pub(crate) known_since: Moment,
    /// The last moment the relay was in its goal (reserved, or connected with reservations off).
    pub(crate) served: Option<Moment>,
    /// The cause of the relay's last failure, and when it happened.
    pub(crate) failure: Option<(Cause, Moment)>,
}

impl History {
    /// A relay first known `now`.
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            known_since: Moment::at(now),
            served: None,
            failure: None,
        }
    }

    /// The relay was in its goal at `now`.
    pub(crate) fn served(&mut self, now: Instant) {
        self.served = Some(Moment::at(now));
    }

    /// The relay failed `now` for `cause`.
    pub(crate) fn failed(&mut self, cause: &Cause, now: Instant) {
        self.failure = Some((cause.clone(), Moment::at(now)));
    }

    /// Takes in what `other`, a snapshot's memory of the same relay, knows beyond this one: an earlier
    /// first sighting, a later service, a later failure.
    pub(crate) fn merge(&mut self, other: History) {
        self.known_since = self.known_since.min(other.known_since);
        self.served = self.served.max(other.served);
        let later = match (&self.failure, &other.failure) {
            (Some((_, mine)), Some((_, theirs))) => theirs > mine,
            (None, Some(_)) => true,
            (_, None) => false,
        };
        if later {
            self.failure = other.failure;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_moment_before_the_clocks_origin_has_an_age_and_an_order() {
        let now = Instant::now();
        // Ten years ago: before the boot of any machine this runs on, so no `Instant` names it.
        let long_ago = Moment::ago(now, 87_600 * HOUR);
        let later = now + HOUR;
        assert_eq!(long_ago.age(later), 87_601 * HOUR);
        assert!(long_ago < Moment::ago(later, 87_600 * HOUR));
        assert!(Moment::at(now) < Moment::at(later));
        assert_eq!(Moment::ago(later, HOUR), Moment::at(now));
        assert_eq!(Moment::at(later).age(now), Duration::ZERO, "after now: no age");
        assert_eq!(Moment::ago(later, 3 * HOUR).age(now), 2 * HOUR);
    }

    #[test]
    fn a_merge_keeps_the_earliest_sighting_and_the_latest_service_and_failure() {
        let now = Instant::now();
        let cause = |m: &str| Cause::new(crate::CauseKind::DialFailed, m);
        let mut mine = History::new(now);
        mine.failed(&cause("mine"), now);
        let theirs = History {
            known_since: Moment::ago(now, HOUR),
            served: Some(Moment::ago(now, HOUR)),
            failure: Some((cause("theirs"), Moment::ago(now, HOUR))),
        };
        mine.merge(theirs.clone());
        assert_eq!(mine.known_since, Moment::ago(now, HOUR));
        assert_eq!(mine.served, Some(Moment::ago(now, HOUR)));
        assert_eq!(mine.failure, Some((cause("mine"), Moment::at(now))));
        let mut fresh = History::new(now);
        fresh.merge(theirs.clone());
        assert_eq!(fresh, theirs);
    }
}
