use std::{fmt, time::Duration};

use libp2p::{Multiaddr, PeerId};

use crate::{Cause, GiveUpReason};

/// What happened to a kept relay. Every event is also logged with `tracing`.
///
/// Its [`Display`](fmt::Display) form is one stable line of `key=value` pairs after the event's name, meant
/// for logs that scripts read, e.g. `reconnect_scheduled relay=12D3KooW... attempt=2 delay_ms=4312
/// cause=connection_lost`. Keys may be added at the end of a line, never removed or reordered.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// The relay is not in its goal state; retry `attempt` (1-based) of this outage is due in `delay`.
    ReconnectScheduled {
        /// The relay.
        relay: PeerId,
        /// The number of the retry, counted from the start of the outage.
        attempt: u32,
        /// The wait before the retry, jitter included.
        delay: Duration,
        /// Why the relay left its goal state, or why the previous retry failed.
        cause: Cause,
    },
    /// A direct connection to the relay is up again during an outage. Not a recovery yet: with reservations
    /// on, the keeper requests the reservation on it next, and [`Event::Reserved`] says when it is live.
    Connected {
        /// The relay.
        relay: PeerId,
        /// The counted retries this outage took until the connection was up (a re-check of a refusing relay
        /// that connects is not one of them); 0 when a dial that the keeper did not make brought it.
        attempts: u32,
    },
    /// A circuit reservation on the relay is live, for the first time or restored. Not raised on renewals.
    Reserved {
        /// The relay.
        relay: PeerId,
        /// The first circuit address the reservation yielded.
        addr: Multiaddr,
    },
    /// The keeper leaves the relay alone: after [`GiveUpReason::MaxAttempts`] until the cool-down is over
    /// (`retry_in`), or until [`RelayKeeper::retry_now`](crate::RelayKeeper::retry_now), a network change
    /// or the relay offering HOP on a live connection; after a mistake until
    /// [`RelayKeeper::add_relay`](crate::RelayKeeper::add_relay).
    GaveUp {
        /// The relay.
        relay: PeerId,
        /// How many retries of this outage were made; 0 when the first dial showed a mistake.
        attempts: u32,
        /// Why: too many failed retries, or a mistake in the relay's address that no retry cures.
        reason: GiveUpReason,
        /// When, counted from this event, the keeper starts a fresh round of retries by itself: the
        /// cool-down ([`Config::with_cooldown`](crate::Config::with_cooldown)) and a jitter below the cap on
        /// the waits. `None`: never by itself (no cool-down, or a mistake).
        retry_in: Option<Duration>,
    },
    /// The node became reachable: the first circuit address of any kept relay is live. Comes after the
    /// [`Event::Reserved`] that brought it.
    Reachable {
        /// The relay whose reservation made the node reachable.
        relay: PeerId,
        /// Its circuit address.
        addr: Multiaddr,
    },
    /// The node is no longer reachable through any kept relay: the last live circuit address went away.
    Unreachable {
        /// The relay whose reservation was the last one.
        relay: PeerId,
    },
    /// In a pool ([`Config::with_max_reservations`](crate::Config::with_max_reservations)), the standby
    /// `relay` takes the slot that `from` lost (its outage, give-up or removal). Raised once per outage of
    /// `from`, however often the slot changes hands while it lasts.
    FailedOver {
        /// The standby that takes the slot.
        relay: PeerId,
        /// The relay that lost it.
        from: PeerId,
    },
    /// Fewer relays of the pool are reserved than its target, and no standby can step in: every other kept
    /// relay is waiting out its backoff, trying already, or gave up. Raised once for each relay lost below the
    /// target, down to none (not while relays are being added, nor while the node is publicly reachable);
    /// the pool fills up again by itself as relays recover, and [`Event::PoolFull`] says when.
    PoolShort {
        /// The relay whose loss, failure or removal left the pool short.
        relay: PeerId,
        /// How many relays of the pool are reserved.
        reserved: usize,
        /// How many slots the pool has.
        target: usize,
    },
    /// The pool is full again after it was short: as many relays are reserved as it has slots.
    PoolFull {
        /// The relay whose reservation filled the pool.
        relay: PeerId,
        /// How many slots the pool has.
        target: usize,
    },
}

impl Event {
    /// Logs the event at the level an operator needs it: a scheduled retry, a connection, a reservation and
    /// the pool's moves at `info`, a give-up, the loss of every circuit and a short pool at `warn`.
    pub(crate) fn log(&self) {
        match self {
            Event::ReconnectScheduled {
                attempt,
                delay,
                cause,
                ..
            } => {
                let relay = self.relay();
                tracing::info!(%relay, attempt, ?delay, cause = %cause.kind, error = %cause.message, "relay retry scheduled")
            }
            Event::Connected { relay, attempts } => {
                tracing::info!(%relay, attempts, "relay connected again; its reservation comes next")
            }
            Event::Reserved { relay, addr } => tracing::info!(%relay, %addr, "relay reservation live"),
            Event::GaveUp {
                relay,
                attempts,
                reason,
                retry_in: Some(retry_in),
            } => tracing::warn!(
                %relay,
                attempts,
                %reason,
                retry_in_ms = retry_in.as_millis(),
                "gave up on relay for now: {}",
                reason.fix()
            ),
            Event::GaveUp {
                relay,
                attempts,
                reason,
                retry_in: None,
            } => tracing::warn!(%relay, attempts, %reason, "gave up on relay: {}", reason.fix()),
            Event::Reachable { relay, addr } => {
                tracing::info!(%relay, %addr, "node reachable through a relay")
            }
            Event::Unreachable { relay } => {
                tracing::warn!(%relay, "node no longer reachable through any relay")
            }
            Event::FailedOver { relay, from } => {
                tracing::info!(%relay, %from, "a standby relay takes the pool slot of a lost one")
            }
            Event::PoolShort {
                relay,
                reserved,
                target,
            } => tracing::warn!(
                %relay,
                reserved,
                target,
                "the relay pool is short: no standby can step in"
            ),
            Event::PoolFull { relay, target } => {
                tracing::info!(%relay, target, "the relay pool is full again")
            }
        }
    }

    /// The relay the event is about.
    pub fn relay(&self) -> PeerId {
        match self {
            Event::ReconnectScheduled { relay, .. }
            | Event::Connected { relay, .. }
            | Event::Reserved { relay, .. }
            | Event::GaveUp { relay, .. }
            | Event::Reachable { relay, .. }
            | Event::Unreachable { relay }
            | Event::FailedOver { relay, .. }
            | Event::PoolShort { relay, .. }
            | Event::PoolFull { relay, .. } => *relay,
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::ReconnectScheduled {
                relay,
                attempt,
                delay,
                cause,
            } => write!(
                f,
                "reconnect_scheduled relay={relay} attempt={attempt} delay_ms={} cause={}",
                delay.as_millis(),
                cause.kind
            ),
            Event::Connected { relay, attempts } => {
                write!(f, "connected relay={relay} attempts={attempts}")
            }
            Event::Reserved { relay, addr } => write!(f, "reserved relay={relay} addr={addr}"),
            Event::GaveUp {
                relay,
                attempts,
                reason,
                retry_in,
            } => {
                write!(f, "gave_up relay={relay} attempts={attempts} reason={reason}")?;
                if let GiveUpReason::WrongPeerId { found } = reason {
                    write!(f, " found={found}")?;
                }
                match retry_in {
                    Some(retry_in) => write!(f, " retry_in_ms={}", retry_in.as_millis()),
                    None => Ok(()),
                }
            }
            Event::Reachable { relay, addr } => write!(f, "reachable relay={relay} addr={addr}"),
            Event::Unreachable { relay } => write!(f, "unreachable relay={relay}"),
            Event::FailedOver { relay, from } => write!(f, "failed_over relay={relay} from={from}"),
            Event::PoolShort {
                relay,
                reserved,
                target,
            } => write!(f, "pool_short relay={relay} reserved={reserved} target={target}"),
            Event::PoolFull { relay, target } => write!(f, "pool_full relay={relay} target={target}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_one_stable_line_per_event() {
        let relay: PeerId = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
            .parse()
            .unwrap();
        let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/1/p2p/{relay}/p2p-circuit")
            .parse()
            .unwrap();
        let lines = [
            Event::ReconnectScheduled {
                relay,
                attempt: 2,
                delay: Duration::from_micros(4_312_900),
                cause: Cause::probe_timeout(),
            }
            .to_string(),
            Event::Connected { relay, attempts: 3 }.to_string(),
            Event::Reserved {
                relay,
                addr: addr.clone(),
            }
            .to_string(),
            Event::GaveUp {
                relay,
                attempts: 10,
                reason: GiveUpReason::MaxAttempts,
                retry_in: Some(Duration::from_millis(612_345)),
            }
            .to_string(),
            Event::GaveUp {
                relay,
                attempts: 0,
                reason: GiveUpReason::WrongPeerId { found: relay },
                retry_in: None,
            }
            .to_string(),
            Event::Reachable {
                relay,
                addr: addr.clone(),
            }
            .to_string(),
            Event::Unreachable { relay }.to_string(),
            Event::FailedOver { relay, from: relay }.to_string(),
            Event::PoolShort {
                relay,
                reserved: 1,
                target: 2,
            }
            .to_string(),
            Event::PoolFull { relay, target: 2 }.to_string(),
        ];
        assert_eq!(
            lines,
            [
                format!("reconnect_scheduled relay={relay} attempt=2 delay_ms=4312 cause=probe_timeout"),
                format!("connected relay={relay} attempts=3"),
                format!("reserved relay={relay} addr={addr}"),
                format!("gave_up relay={relay} attempts=10 reason=max_attempts retry_in_ms=612345"),
                format!("gave_up relay={relay} attempts=0 reason=wrong_peer_id found={relay}"),
                format!("reachable relay={relay} addr={addr}"),
                format!("unreachable relay={relay}"),
                format!("failed_over relay={relay} from={relay}"),
                format!("pool_short relay={relay} reserved=1 target=2"),
                format!("pool_full relay={relay} target=2"),
            ]
        );
    }
}
