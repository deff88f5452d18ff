//! What the engine remembers of a kept relay's service across its outages: since when it is known, when it was
//! last in its goal, and its last failure. The snapshot of known relays ([`crate::known`]) is made of it, and the
//! pool prefers the relays that served last ([`crate::pool::View::served`]).
//!
//! A moment is kept as nanoseconds from an epoch: a moment from a snapshot taken before the process started may
//! lie before the monotonic clock's origin (a machine that rebooted), where no [`Instant`] can name it. Eight
//! bytes, since every kept relay holds three (BENCHMARKS.md, memory per kept relay).

use std::{
    sync::OnceLock,
    time::{Duration, Instant},
};

use crate::Cause;

/// The instant moments count from: the first `now` any engine of the process was given. Every `Instant` is on
/// the same clock, so one epoch serves every engine, and the engine still reads no clock of its own.
static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds from the epoch to `now`, negative before it.
fn since_epoch(now: Instant) -> i128 {
    let epoch = *EPOCH.get_or_init(|| now);
    match now.checked_duration_since(epoch) {
        Some(after) => after.as_nanos() as i128,
        None => -((epoch - now).as_nanos() as i128),
    }
}

/// A moment on the engine's clock, in nanoseconds from the epoch (about 292 years either way; further is
/// clamped). The later moment is the greater.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Moment(i64);

impl Moment {
    /// The moment `now`.
    pub(crate) fn at(now: Instant) -> Self {
        Self::ago(now, Duration::ZERO)
    }

    /// The moment `ago` before `now`.
    pub(crate) fn ago(now: Instant, ago: Duration) -> Self {
        let nanos = since_epoch(now) - ago.as_nanos() as i128;
        Self(nanos.clamp(i64::MIN.into(), i64::MAX.into()) as i64)
    }

    /// How long before `now` the moment was; zero for one after `now`.
    pub(crate) fn age(self, now: Instant) -> Duration {
        let nanos = (since_epoch(now) - i128::from(self.0)).max(0);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// What the engine remembers of one relay's service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct History {
    /// Since when the relay is known: its `add_relay`, or what a snapshot said.
    pub(crate) known_since: Moment,
    /// The last moment the relay was in its goal (reserved, or connected with reservations off).
    pub(crate) served: Option<Moment>,
    /// The cause of the relay's last failure, and when it happened. Boxed: only a relay that failed pays for it.
    pub(crate) failure: Option<Box<(Cause, Moment)>>,
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
        self.failure = Some(Box::new((cause.clone(), Moment::at(now))));
    }

    /// Takes in what `other`, a snapshot's memory of the same relay, knows beyond this one: an earlier
    /// first sighting, a later service, a later failure.
    pub(crate) fn merge(&mut self, other: History) {
        self.known_since = self.known_since.min(other.known_since);
        self.served = self.served.max(other.served);
        let later = match (&self.failure, &other.failure) {
            (Some(mine), Some(theirs)) => theirs.1 > mine.1,
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

    /// Every kept relay holds one (BENCHMARKS.md, memory per kept relay); a failure's cause is on the heap.
    #[test]
    fn a_history_costs_a_kept_relay_32_bytes() {
        assert_eq!(std::mem::size_of::<History>(), 32);
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
            failure: Some(Box::new((cause("theirs"), Moment::ago(now, HOUR)))),
        };
        mine.merge(theirs.clone());
        assert_eq!(mine.known_since, Moment::ago(now, HOUR));
        assert_eq!(mine.served, Some(Moment::ago(now, HOUR)));
        assert_eq!(mine.failure, Some(Box::new((cause("mine"), Moment::at(now)))));
        let mut fresh = History::new(now);
        fresh.merge(theirs.clone());
        assert_eq!(fresh, theirs);
    }
}
