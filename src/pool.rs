//! The pool's bookkeeping ([`Config::with_max_reservations`]): how many relays hold a slot, which standbys
//! are eligible, and the random choices that keep nodes given the same relays from herding. The engine makes
//! the decisions with it, after each transition.

use std::time::Duration;

use libp2p::PeerId;
use rand::{rngs::StdRng, RngExt, SeedableRng};

use crate::{relay::Transition, Config, RelayStatus};

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
    /// The pool was short of candidates and said so; cleared once it is full again.
    short: bool,
}

/// Whether a relay with `status` holds one of the pool's slots.
pub(crate) fn holds_slot(status: RelayStatus) -> bool {
    !matches!(
        status,
        RelayStatus::Standby | RelayStatus::GaveUp { .. } | RelayStatus::Stopped
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

    /// Follows `peer`'s transition: its slot and its eligibility.
    pub(crate) fn on_transition(&mut self, peer: PeerId, transition: &Transition, eligible: bool) {
        let (before, after) = transition.status;
        let held_before = before.is_some_and(holds_slot);
        match (held_before, holds_slot(after)) {
            (false, true) => self.held += 1,
            (true, false) => self.held -= 1,
            _ => {}
        }
        self.set_eligible(peer, eligible);
    }

    /// Forgets a relay that is no longer kept.
    pub(crate) fn on_removed(&mut self, peer: PeerId, status: RelayStatus) {
        if holds_slot(status) {
            self.held -= 1;
        }
        self.set_eligible(peer, false);
    }

    fn set_eligible(&mut self, peer: PeerId, eligible: bool) {
        let position = self.eligible.iter().position(|p| *p == peer);
        match (position, eligible) {
            (None, true) => self.eligible.push(peer),
            (Some(index), false) => {
                self.eligible.remove(index);
            }
            _ => {}
        }
    }

    /// The standby to promote next: one that is `connected` already, or else one at random.
    pub(crate) fn pick(&mut self, connected: impl Fn(&PeerId) -> bool) -> Option<(PeerId, bool)> {
        if let Some(peer) = self.eligible.iter().find(|p| connected(p)) {
            return Some((*peer, true));
        }
        if self.eligible.is_empty() {
            return None;
        }
        let index = self.rng.random_range(0..self.eligible.len());
        Some((self.eligible[index], false))
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
