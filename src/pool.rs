//! The pool's bookkeeping ([`Config::with_max_reservations`]): how many relays hold a slot, which standbys
//! are eligible, and the random choices that keep nodes given the same relays from herding. The engine makes
//! the decisions with it, after each transition.

use std::time::Duration;

use libp2p::PeerId;
use rand::{rngs::StdRng, RngExt, SeedableRng};

use crate::{
    relay::{Relay, Transition},
    Config, RelayStatus,
};

/// Slots for at most `target` relays out of the kept ones.
#[derive(Debug)]
pub(crate) struct Pool {
    target: usize,
    spread: Duration,
    rng: StdRng,
    /// Relays holding a slot: dialing, reserving, reserved, or waiting for a retry of their own.
    held: usize,
    /// Standbys whose backoff has run out, in the order they became eligible.
    eligible: Vec<PeerId>,
    /// Relays holding a slot while they wait out a backoff of their own: the ones to give a slot to a standby.
    waiting: Vec<PeerId>,
    /// Promoted relays that have not been dialed yet (their spread is running): a candidate added now may
    /// still take one's place at no cost.
    promoted: Vec<PeerId>,
    /// The pool was short of candidates and said so; cleared once it is full again.
    short: bool,
}

/// Puts `peer` in `list` or takes it out.
fn set(list: &mut Vec<PeerId>, peer: PeerId, member: bool) {
    match (list.iter().position(|p| *p == peer), member) {
        (None, true) => list.push(peer),
        (Some(index), false) => {
            list.remove(index);
        }
        _ => {}
    }
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
            held: 0,
            eligible: Vec::new(),
            waiting: Vec::new(),
            promoted: Vec::new(),
            short: false,
        })
    }

    pub(crate) fn target(&self) -> usize {
        self.target
    }

    pub(crate) fn held(&self) -> usize {
        self.held
    }

    pub(crate) fn has_free_slot(&self) -> bool {
        self.held < self.target
    }

    pub(crate) fn has_eligible(&self) -> bool {
        !self.eligible.is_empty()
    }

    /// A relay that holds a slot but waits for a retry, to give way to an eligible standby.
    pub(crate) fn waiting(&self) -> Option<PeerId> {
        self.waiting.first().copied()
    }

    /// Follows `peer`'s transition: its slot, its eligibility and whether it is promoted but not yet dialed.
    pub(crate) fn on_transition(&mut self, peer: PeerId, transition: &Transition, relay: Option<&Relay>) {
        let eligible = relay.is_some_and(Relay::eligible);
        let promoted = relay.is_some_and(Relay::promoted);
        let gives_way = relay.is_some_and(Relay::gives_way);
        let (before, after) = transition.status;
        let held_before = before.is_some_and(holds_slot);
        match (held_before, holds_slot(after)) {
            (false, true) => self.held += 1,
            (true, false) => self.held -= 1,
            _ => {}
        }
        set(&mut self.eligible, peer, eligible);
        set(&mut self.waiting, peer, gives_way);
        set(&mut self.promoted, peer, promoted);
    }

    /// Forgets a relay that is no longer kept.
    pub(crate) fn on_removed(&mut self, peer: PeerId, status: RelayStatus) {
        if holds_slot(status) {
            self.held -= 1;
        }
        set(&mut self.eligible, peer, false);
        set(&mut self.waiting, peer, false);
        set(&mut self.promoted, peer, false);
    }

    /// When a candidate is added to a full pool whose promoted relays have not been dialed yet: the promoted
    /// relay it replaces, if any. Each candidate added before the first dial goes out replaces one with the
    /// chance that makes the promoted set a uniform choice of all of them (reservoir sampling), so nodes given
    /// the same list in the same order do not all hold its first relays.
    pub(crate) fn displaced(&mut self) -> Option<PeerId> {
        let candidates = self.promoted.len() + self.eligible.len();
        if self.promoted.is_empty() || self.rng.random_range(0..candidates) >= self.promoted.len() {
            return None;
        }
        let index = self.rng.random_range(0..self.promoted.len());
        Some(self.promoted[index])
    }

    /// The standby to promote next: a relay given to the keeper before a `discovered` one; among those, one
    /// that is `connected` already, or else one at random. Also says whether it is connected.
    pub(crate) fn pick(
        &mut self,
        discovered: impl Fn(&PeerId) -> bool,
        connected: impl Fn(&PeerId) -> bool,
    ) -> Option<(PeerId, bool)> {
        let given_eligible = self.eligible.iter().any(|p| !discovered(p));
        let candidates: Vec<PeerId> = self
            .eligible
            .iter()
            .copied()
            .filter(|p| !given_eligible || !discovered(p))
            .collect();
        if let Some(peer) = candidates.iter().find(|p| connected(p)) {
            return Some((*peer, true));
        }
        if candidates.is_empty() {
            return None;
        }
        let index = self.rng.random_range(0..candidates.len());
        Some((candidates[index], false))
    }

    /// A wait uniform in `[0, spread]` before a promoted standby is dialed.
    pub(crate) fn spread(&mut self) -> Duration {
        if self.spread.is_zero() {
            return Duration::ZERO;
        }
        let nanos = self.rng.random_range(0..=self.spread.as_nanos());
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// Whether the pool has just become short of candidates (and should say so once), given that it could not
    /// fill its slots (`short`).
    pub(crate) fn became_short(&mut self, short: bool) -> bool {
        let became = short && !self.short;
        self.short = short;
        became
    }
}
