//! A kept relay's place among the relays: whether its link runs. Without a pool every relay is active; with
//! one ([`Config::with_max_reservations`](crate::Config::with_max_reservations)) the pool moves relays between
//! its slots and standby, and while the node is publicly reachable every relay is paused.
//!
//! ```text
//!            promote (after the spread)          promote (connected: at once)
//!  Standby ─────────────────▶ Promoted ──timer──▶ Active ◀──────────────────── Standby
//!     ▲                          │                  │
//!     └──────── demote ──────────┴──── demote ──────┘ (only while its link waits out a backoff)
//!
//!  any ──pause──▶ Paused ──resume──▶ a fresh start: Active, or Standby in a pool
//! ```
//!
//! The membership reads its link's state (a standby is ready once its link's own wait is over) and tells the
//! link to run or halt, but never touches the link's memory: the retry count and the backoff level are the
//! link's ([`crate::link`]).

use std::time::{Duration, Instant};

use crate::{
    link::{After, Link},
    relay::Env,
    RelayStatus,
};

/// Where the relay stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Membership {
    /// The link runs: it holds a pool's slot, or there is no pool.
    Active,
    /// A candidate the pool does not need now: its link is halted, its own wait running on.
    Standby,
    /// Given a slot; its link starts at `at`, a random moment within the promotion spread.
    Promoted { at: Instant },
    /// The node is publicly reachable: the link is halted and holds nothing.
    Paused,
}

impl Membership {
    /// The relay's status: its link's while it runs.
    pub(crate) fn status(self, link: &Link) -> RelayStatus {
        match self {
            Membership::Active => link.status(),
            Membership::Standby => RelayStatus::Standby,
            Membership::Promoted { .. } => RelayStatus::Connecting,
            Membership::Paused => RelayStatus::Paused,
        }
    }

    /// When the relay needs the clock next: a promotion's start, or its link's deadline.
    pub(crate) fn deadline(self, link: &Link) -> Option<Instant> {
        match self {
            Membership::Promoted { at } => Some(at),
            Membership::Active | Membership::Standby | Membership::Paused => link.deadline(),
        }
    }

    /// Starts a fresh round: while the node is public the relay stays paused, in a pool it waits as a ready
    /// standby for the pool to promote it, otherwise its link runs now.
    pub(crate) fn start_over(&mut self, link: &mut Link, env: &mut Env<'_>) {
        if env.paused {
            link.reset();
            *self = Membership::Paused;
        } else if env.config.max_reservations().is_some() {
            link.reset();
            *self = Membership::Standby;
        } else {
            *self = Membership::Active;
            link.start(true, env);
        }
    }

    /// Carries out what the link asked for after an input.
    pub(crate) fn after(&mut self, after: After, link: &mut Link, env: &mut Env<'_>) {
        match after {
            After::Nothing => {}
            After::StartOver => self.start_over(link, env),
        }
    }

    /// The pool needs the relay: its link starts after `delay` (zero: now).
    pub(crate) fn promote(&mut self, delay: Duration, link: &mut Link, env: &mut Env<'_>) {
        match self {
            Membership::Standby if delay.is_zero() => {
                *self = Membership::Active;
                link.start(false, env);
            }
            Membership::Standby => *self = Membership::Promoted { at: env.now + delay },
            // The pool promotes standbys only.
            Membership::Active | Membership::Promoted { .. } | Membership::Paused => {}
        }
    }

    /// The pool gives the relay's slot to another. Only a link that waits out a backoff, or one not started
    /// yet, gives its slot up; its outage's count ends with the move.
    pub(crate) fn demote(&mut self, link: &mut Link) {
        match self {
            Membership::Active if link.waiting() => {
                link.halt();
                *self = Membership::Standby;
            }
            Membership::Promoted { .. } => *self = Membership::Standby,
            // A relay that is trying, or in its goal, keeps its slot; the others hold none.
            Membership::Active | Membership::Standby | Membership::Paused => {}
        }
    }

    /// The node is publicly reachable: the relay releases its reservation and does nothing until resumed. A
    /// relay that gave up stays given up.
    pub(crate) fn pause(&mut self, link: &mut Link, env: &mut Env<'_>) {
        match self {
            Membership::Active | Membership::Standby | Membership::Promoted { .. } => {
                if link.pause(env) {
                    *self = Membership::Paused;
                }
            }
            Membership::Paused => {}
        }
    }

    /// The node is no longer publicly reachable: a paused relay starts over.
    pub(crate) fn resume(&mut self, link: &mut Link, env: &mut Env<'_>) {
        match self {
            Membership::Paused => self.start_over(link, env),
            // Only a paused relay resumes.
            Membership::Active | Membership::Standby | Membership::Promoted { .. } => {}
        }
    }

    /// The relay's deadline passed: a promotion starts, or the link's own deadline is handled.
    pub(crate) fn timer_fired(&mut self, link: &mut Link, env: &mut Env<'_>) {
        match self {
            Membership::Promoted { .. } => {
                *self = Membership::Active;
                link.start(false, env);
            }
            Membership::Active | Membership::Standby | Membership::Paused => {
                let after = link.timer_fired(env);
                self.after(after, link, env);
            }
        }
    }

    /// A direct connection to the relay is up: a promoted relay's connection is its first try.
    pub(crate) fn connection_established(&mut self, link: &mut Link, env: &mut Env<'_>) {
        match self {
            Membership::Promoted { .. } if link.connections().len() == 1 => {
                *self = Membership::Active;
                link.start_on_connection(env);
            }
            Membership::Promoted { .. } | Membership::Active | Membership::Standby | Membership::Paused => {}
        }
    }

    /// The application asked to try now.
    pub(crate) fn retry_now(&mut self, link: &mut Link, env: &mut Env<'_>) {
        match self {
            Membership::Promoted { .. } => {
                *self = Membership::Active;
                link.start(true, env);
            }
            Membership::Active | Membership::Standby => {
                let after = link.retry_now(env);
                self.after(after, link, env);
            }
            Membership::Paused => {}
        }
    }

    /// The node's network changed.
    pub(crate) fn network_changed(&mut self, link: &mut Link, env: &mut Env<'_>) {
        match self {
            Membership::Active | Membership::Standby | Membership::Promoted { .. } => {
                let after = link.network_changed(env);
                self.after(after, link, env);
            }
            Membership::Paused => link.forget_dial_timeouts(),
        }
    }

    /// The application's listener holds a reservation on the relay: the relay is active from now on,
    /// whatever the pool or its link were doing, but not while paused (the keeper holds nothing then).
    pub(crate) fn adopted(&mut self, adopted: bool) {
        match self {
            Membership::Standby | Membership::Promoted { .. } if adopted => *self = Membership::Active,
            Membership::Standby | Membership::Promoted { .. } | Membership::Active | Membership::Paused => {}
        }
    }
}

#[cfg(test)]
mod tests;
