//! The pool ([`Config::with_max_reservations`]): which kept relays hold one of its slots, and the decisions
//! that move relays between a slot and standby. The pool decides; the engine carries its decisions out
//! ([`Pool::decide`], until it has none left) and tells it where each relay stands afterwards.

use std::time::Duration;

use libp2p::PeerId;
use rand::{rngs::StdRng, RngExt, SeedableRng};

use crate::{Config, RelayStatus};

/// Where a kept relay stands, as far as the pool is concerned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Standing {
    /// Dialing, reserving, reserved, or waiting for a retry of its own.
    pub(crate) holds_slot: bool,
    /// A standby whose backoff has run out: it may take a slot.
    pub(crate) eligible: bool,
    /// Holds a slot only to wait out a backoff, so an eligible standby may take the slot.
    pub(crate) gives_way: bool,
    /// Promoted and not dialed yet (its spread is running): a candidate added now may take its place at no
    /// cost.
    pub(crate) promoted: bool,
}

/// The next move the pool asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Give the slot of `relay`, which waits for a retry, to a standby: `relay` becomes a standby until its
    /// wait is over.
    Demote(PeerId),
    /// Give a free slot to the standby `relay`, to be dialed after `delay` (none if it is connected already).
    Promote { relay: PeerId, delay: Duration },
    /// The candidate `promote`, just added, takes the slot of `demote`, promoted but not dialed yet.
    Swap {
        demote: PeerId,
        promote: PeerId,
        delay: Duration,
    },
}

/// What the pool reads of the kept relays when it decides.
pub(crate) trait View {
    /// The relay has a direct connection.
    fn connected(&self, relay: &PeerId) -> bool;
    /// The relay was discovered rather than given to `add_relay`.
    fn discovered(&self, relay: &PeerId) -> bool;
}

/// Slots for at most `target` relays out of the kept ones.
#[derive(Debug)]
pub(crate) struct Pool {
    target: usize,
    spread: Duration,
    rng: StdRng,
    /// Where every relay the pool knows of stands, in the order the pool first heard of it; a relay that
    /// stands nowhere is not listed.
    members: Vec<(PeerId, Standing)>,
    /// A candidate added since the last decision, which may displace a promoted relay.
    added: Option<PeerId>,
    /// The pool was short of candidates and said so; cleared once it is full again.
    short: bool,
}

/// Whether a relay with `status` holds one of the pool's slots.
pub(crate) fn holds_slot(status: RelayStatus) -> bool {
    !matches!(
        status,
        RelayStatus::Standby | RelayStatus::Paused | RelayStatus::GaveUp { .. } | RelayStatus::Stopped
    )
}

impl Pool {
    /// The pool `config` asks for; `None` without [`Config::with_max_reservations`].
    pub(crate) fn new(config: &Config) -> Option<Self> {
        let target = config.max_reservations()?;
        // A stream of its own, so that the pool's choices do not shift the backoff's jitter.
        let rng = match config.rng_seed() {
            Some(seed) => StdRng::seed_from_u64(seed ^ 0x706f_6f6c),
            None => rand::make_rng(),
        };
        Some(Self {
            target,
            spread: config.promotion_spread(),
            rng,
            members: Vec::new(),
            added: None,
            short: false,
        })
    }

    pub(crate) fn target(&self) -> usize {
        self.target
    }

    pub(crate) fn held(&self) -> usize {
        self.with(|standing| standing.holds_slot).count()
    }

    /// The relays whose standing `has`, in the order the pool first heard of them.
    fn with<'a>(&'a self, has: impl Fn(&Standing) -> bool + 'a) -> impl Iterator<Item = PeerId> + 'a {
        self.members
            .iter()
            .filter(move |(_, standing)| has(standing))
            .map(|(peer, _)| *peer)
    }

    /// Records where `peer` stands now; [`Standing::default`] forgets a relay that is no longer kept.
    pub(crate) fn update(&mut self, peer: PeerId, standing: Standing) {
        let index = self.members.iter().position(|(p, _)| *p == peer);
        match (index, standing == Standing::default()) {
            (Some(index), true) => {
                self.members.remove(index);
            }
            (Some(index), false) => self.members[index].1 = standing,
            (None, false) => self.members.push((peer, standing)),
            (None, true) => {}
        }
        if !standing.eligible && self.added == Some(peer) {
            self.added = None;
        }
    }

    /// Notes a candidate the application (or discovery) just added, for the next decision.
    pub(crate) fn added(&mut self, peer: PeerId) {
        self.added = Some(peer);
    }

    /// The next move, or `None` once the pool is settled:
    /// - a candidate just added to a full pool whose promoted relays have not been dialed yet replaces one of
    ///   them with the chance that makes the promoted set a uniform choice of all candidates (reservoir
    ///   sampling), so nodes given the same list in the same order do not all hold its first relays;
    /// - while a standby is eligible, it takes a free slot, or the slot of a relay that waits for a retry of
    ///   its own (which is demoted first). A relay in its goal state is never demoted;
    /// - the standby promoted is a relay given to the keeper before a discovered one; among those, one that
    ///   is connected already (at once), or else one at random (after a random part of the spread).
    pub(crate) fn decide(&mut self, relays: &impl View) -> Option<Decision> {
        if let Some(added) = self.added.take() {
            if let Some(demote) = self.displaced() {
                let delay = self.spread();
                return Some(Decision::Swap {
                    demote,
                    promote: added,
                    delay,
                });
            }
        }
        let eligible: Vec<PeerId> = self.with(|standing| standing.eligible).collect();
        if eligible.is_empty() {
            return None;
        }
        if self.held() >= self.target {
            return self
                .with(|standing| standing.gives_way)
                .next()
                .map(Decision::Demote);
        }
        let given_eligible = eligible.iter().any(|p| !relays.discovered(p));
        let candidates: Vec<PeerId> = eligible
            .into_iter()
            .filter(|p| !given_eligible || !relays.discovered(p))
            .collect();
        if let Some(relay) = candidates.iter().copied().find(|p| relays.connected(p)) {
            return Some(Decision::Promote {
                relay,
                delay: Duration::ZERO,
            });
        }
        if candidates.is_empty() {
            return None;
        }
        let relay = candidates[self.rng.random_range(0..candidates.len())];
        let delay = self.spread();
        Some(Decision::Promote { relay, delay })
    }

    /// The promoted relay a candidate just added replaces, if any.
    fn displaced(&mut self) -> Option<PeerId> {
        let promoted: Vec<PeerId> = self.with(|standing| standing.promoted).collect();
        let candidates = promoted.len() + self.with(|standing| standing.eligible).count();
        if promoted.is_empty() || self.rng.random_range(0..candidates) >= promoted.len() {
            return None;
        }
        Some(promoted[self.rng.random_range(0..promoted.len())])
    }

    /// A wait uniform in `[0, spread]` before a promoted standby is dialed.
    fn spread(&mut self) -> Duration {
        if self.spread.is_zero() {
            return Duration::ZERO;
        }
        let nanos = self.rng.random_range(0..=self.spread.as_nanos());
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// Whether the pool has just become short of candidates (and should say so once): it holds fewer relays
    /// than it has slots, and no decision is left.
    pub(crate) fn became_short(&mut self) -> bool {
        let short = self.held() < self.target;
        let became = short && !self.short;
        self.short = short;
        became
    }
}

#[cfg(test)]
mod tests;
