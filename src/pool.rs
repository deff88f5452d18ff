//! The pool ([`Config::with_max_reservations`]): which kept relays hold one of its slots, and the decisions
//! that move relays between a slot and standby. The pool decides; the engine carries its decisions out
//! ([`Pool::decide`], until it has none left) and tells it where each relay stands afterwards.

use std::time::Duration;

use libp2p::PeerId;
use rand::{rngs::StdRng, RngExt, SeedableRng};

use crate::{history::Moment, Config, RelayStatus};

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
    /// In its goal: reserved (or connected, with reservations off).
    pub(crate) in_goal: bool,
}

/// The next move the pool asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Give the slot of `relay`, which waits for a retry, to a standby: `relay` becomes a standby until its
    /// wait is over.
    Demote(PeerId),
    /// Give a free slot to the standby `relay`, to be dialed after `delay` (none if it is connected already).
    /// `replaces`: the relay that lost the slot, if one did.
    Promote {
        relay: PeerId,
        delay: Duration,
        replaces: Option<PeerId>,
    },
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
    /// The last moment the relay was in its goal, in this run or (from a snapshot) an earlier one.
    fn served(&self, _relay: &PeerId) -> Option<Moment> {
        None
    }
}

/// What the pool has to say about itself after an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Report {
    /// A relay was lost below the target and no standby stepped in: `reserved` of `target` are left.
    Short { reserved: usize, target: usize },
    /// As many relays are reserved as the pool has slots, again.
    Full { target: usize },
}

/// A relay the pool knows of.
#[derive(Debug)]
struct Member {
    peer: PeerId,
    standing: Standing,
    /// The loss of its slot was announced in its current outage; cleared when it is in its goal again.
    announced: bool,
}

/// Slots for at most `target` relays out of the kept ones.
#[derive(Debug)]
pub(crate) struct Pool {
    target: usize,
    spread: Duration,
    rng: StdRng,
    /// Where every kept relay stands, in the order the pool first heard of it.
    members: Vec<Member>,
    /// Relays that lost their slot, oldest first, until a promotion fills it.
    vacated: Vec<PeerId>,
    /// A candidate added since the last decision, which may displace a promoted relay.
    added: Option<PeerId>,
    /// A standby was promoted since the last report.
    stepped_in: bool,
    /// How many relays were in their goal at the last report.
    reserved: usize,
    /// The pool said it was short; cleared once it is full again.
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
            vacated: Vec::new(),
            added: None,
            stepped_in: false,
            reserved: 0,
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
            .filter(move |member| has(&member.standing))
            .map(|member| member.peer)
    }

    /// Records where `peer` stands now.
    pub(crate) fn update(&mut self, peer: PeerId, standing: Standing) {
        let index = self.members.iter().position(|member| member.peer == peer);
        // A promoted relay that gives its slot back before its first try lost nothing.
        let held = index.is_some_and(|index| {
            let before = self.members[index].standing;
            before.holds_slot && !before.promoted
        });
        match index {
            Some(index) => {
                let member = &mut self.members[index];
                member.standing = standing;
                member.announced &= !standing.in_goal;
            }
            None => self.members.push(Member {
                peer,
                standing,
                announced: false,
            }),
        }
        self.vacate(peer, held, standing);
    }

    /// `peer` is no longer kept: a slot it held is free.
    pub(crate) fn forget(&mut self, peer: PeerId) {
        let Some(index) = self.members.iter().position(|member| member.peer == peer) else {
            return;
        };
        let member = self.members.remove(index);
        let held = member.standing.holds_slot && !member.standing.promoted;
        self.vacate(peer, held, Standing::default());
    }

    /// Notes that `peer`, which `held` a slot before, stands as `standing` now.
    fn vacate(&mut self, peer: PeerId, held: bool, standing: Standing) {
        if held && !standing.holds_slot && !self.vacated.contains(&peer) {
            self.vacated.push(peer);
        }
        if standing.holds_slot {
            self.vacated.retain(|p| *p != peer);
        }
        if !standing.eligible && self.added == Some(peer) {
            self.added = None;
        }
    }

    /// Whether the loss of `relay`'s slot is news: the first time in its outage (or it is no longer kept).
    /// Marks it announced.
    pub(crate) fn announce(&mut self, relay: PeerId) -> bool {
        match self.members.iter_mut().find(|member| member.peer == relay) {
            Some(member) => !std::mem::replace(&mut member.announced, true),
            None => true,
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
    ///   is connected already (at once), or else the one that served last, or else one at random (after a
    ///   random part of the spread).
    pub(crate) fn decide(&mut self, relays: &impl View) -> Option<Decision> {
        if let Some(added) = self.added.take() {
            if let Some(demote) = self.displaced(added, relays) {
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
            return Some(self.promote(relay, Duration::ZERO));
        }
        if candidates.is_empty() {
            return None;
        }
        // A relay that served is likely to serve again, the latest the likeliest.
        let served_last = candidates
            .iter()
            .filter_map(|p| relays.served(p).map(|served| (served, *p)))
            .max_by_key(|(served, _)| *served);
        let relay = match served_last {
            Some((_, relay)) => relay,
            None => candidates[self.rng.random_range(0..candidates.len())],
        };
        let delay = self.spread();
        Some(self.promote(relay, delay))
    }

    /// Promotes `relay` into the oldest vacated slot, or a free one.
    fn promote(&mut self, relay: PeerId, delay: Duration) -> Decision {
        self.stepped_in = true;
        let replaces = (!self.vacated.is_empty()).then(|| self.vacated.remove(0));
        Decision::Promote {
            relay,
            delay,
            replaces,
        }
    }

    /// The promoted relay the candidate `added` replaces, if any. A candidate that served replaces the promoted
    /// relay that served least lately (or never), if it served later; one that never served competes only with
    /// the promoted relays that never served either, by reservoir sampling among those.
    fn displaced(&mut self, added: PeerId, relays: &impl View) -> Option<PeerId> {
        if let Some(served) = relays.served(&added) {
            let (weakest, its) = self
                .with(|standing| standing.promoted)
                .filter(|p| *p != added)
                .map(|p| (p, relays.served(&p)))
                .min_by_key(|(_, served)| *served)?;
            return (Some(served) > its).then_some(weakest);
        }
        let unserved = |p: &PeerId| relays.served(p).is_none();
        let promoted: Vec<PeerId> = self.with(|standing| standing.promoted).filter(unserved).collect();
        let candidates = promoted.len() + self.with(|standing| standing.eligible).filter(unserved).count();
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

    /// What the pool has to say after an input and its decisions: short when a relay in its goal was lost below
    /// the target and no standby stepped in; full when it is back at its target after it was short.
    pub(crate) fn report(&mut self) -> Option<Report> {
        let reserved = self.with(|standing| standing.in_goal).count();
        let dropped = reserved < self.reserved;
        let stepped_in = std::mem::take(&mut self.stepped_in);
        self.reserved = reserved;
        let target = self.target();
        if dropped && reserved < target && !stepped_in {
            self.short = true;
            return Some(Report::Short { reserved, target });
        }
        if self.short && reserved >= target {
            self.short = false;
            return Some(Report::Full { target });
        }
        None
    }

    /// The node is publicly reachable: the pool releases its slots on purpose, and says nothing of it.
    pub(crate) fn pause(&mut self) {
        self.reserved = 0;
        self.short = false;
        self.stepped_in = false;
    }
}

#[cfg(test)]
mod tests;
