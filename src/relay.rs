//! One kept relay: its link ([`crate::link`]: connections, reservation, trouble) and its place among the relays
//! ([`crate::membership`]). Free of timers and I/O: [`Relay::on`] takes what happened and the current instant,
//! hands it to the part it concerns, and says what changed.

use std::time::{Duration, Instant};

use libp2p::{
    core::transport::ListenerId,
    swarm::{dial_opts::DialOpts, ConnectionId, ListenOpts},
    Multiaddr, PeerId,
};

use crate::{
    backoff::Backoff,
    link::{Connection, Link},
    membership::Membership,
    mistake::Mistake,
    pool::{holds_slot, Standing},
    Cause, Config, Event, RelayStatus,
};

/// What happened to the relay, as the engine saw it.
#[derive(Debug, Clone)]
pub(crate) enum Input {
    /// A direct connection to the relay is up; `dialed`: the address it was dialed at, if it was outbound.
    ConnectionEstablished {
        connection: ConnectionId,
        dialed: Option<Multiaddr>,
    },
    /// A direct connection to the relay closed.
    ConnectionClosed { connection: ConnectionId, cause: Cause },
    /// A dial `connection` to the relay failed: the keeper's own, or another one the keeper's yielded to.
    /// `mistake`: the failure named addresses that no retry can reach. `refused`: a TCP address of the dial
    /// was refused, so the relay's host is up and its relay is not listening.
    DialFailed {
        connection: ConnectionId,
        cause: Cause,
        mistake: Option<Mistake>,
        refused: bool,
    },
    /// The swarm did not make the keeper's dial `connection`: the relay was connected or being dialed already.
    DialSkipped { connection: ConnectionId },
    /// `listener`, the keeper's or an adopted one, reports the circuit address `addr`.
    ListenAddr { listener: ListenerId, addr: Multiaddr },
    /// A listener the keeper did not open reports the circuit address `addr` on this relay.
    ForeignReservation { listener: ListenerId, addr: Multiaddr },
    /// `listener` closed or failed; `refused`: with an error (the relay refused or lost the reservation), not
    /// because its connection closed or another listener on the relay replaced it.
    ListenerClosed {
        listener: ListenerId,
        refused: bool,
        cause: Cause,
    },
    /// `listener` could not be opened because the swarm has no relay client transport.
    ListenerUnsupported { listener: ListenerId },
    /// The relay's deadline passed: a retry's wait elapsed, or a dial ran out of time.
    TimerFired,
    /// The relay started offering the HOP protocol, so a reservation can succeed now.
    HopEnabled,
    /// Identify reported the relay's protocols, and HOP is not among them: a reservation request would be
    /// refused.
    HopAbsent,
    /// The application asked to forget the backoff and try now.
    RetryNow,
    /// The node's network changed (a new listen address, or the application said so).
    NetworkChanged,
    /// The application added the relay again, at `addr`: whatever it gave up for may be fixed.
    Added(Multiaddr),
    /// The pool needs the relay: try after `delay` (zero: now).
    Promote { delay: Duration },
    /// The pool gives the relay's slot to another: a relay waiting for its retry becomes a standby that is
    /// eligible once the wait is over.
    Demote,
    /// The node is publicly reachable: release the reservation and do nothing until [`Input::Resume`].
    Pause,
    /// The node is no longer publicly reachable: start over.
    Resume,
    /// A circuit address of `listener` expired.
    ListenAddrExpired { listener: ListenerId, addr: Multiaddr },
    /// The relay is no longer kept: withdraw what the keeper holds on it.
    Removed,
}

/// What the engine must do for the relay.
#[derive(Debug)]
pub(crate) enum Action {
    Dial(DialOpts),
    /// Abort every pending dial to the relay (it has no direct connection while one is in flight).
    AbortDials,
    /// Close this connection to the relay: the link moved to a newer one.
    Close(ConnectionId),
    Listen(ListenOpts),
    RemoveListener(ListenerId),
    /// The application's `listener` holds the relay's reservation from now on.
    Adopt {
        listener: ListenerId,
    },
    Emit(Event),
}

/// What one input changed about the relay, for the engine's deadline index, reachability and metrics.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Transition {
    /// The relay's deadline before and after; `None` before for a relay that was just added.
    pub(crate) deadline: (Option<Instant>, Option<Instant>),
    /// The relay's status before (`None`: just added) and after.
    pub(crate) status: (Option<RelayStatus>, RelayStatus),
    /// The input ended an outage that started then.
    pub(crate) restored_after: Option<Instant>,
    /// Whether the node was, and is, reachable through the relay (it has live circuit addresses).
    pub(crate) reachable: (bool, bool),
}

/// What a transition needs besides the relay itself.
pub(crate) struct Env<'a> {
    /// The relay the transition is for.
    pub(crate) relay: PeerId,
    pub(crate) now: Instant,
    pub(crate) config: &'a Config,
    pub(crate) backoff: &'a mut Backoff,
    pub(crate) actions: &'a mut Vec<Action>,
    /// The node is publicly reachable and reservations are paused: a relay that starts over stays paused.
    pub(crate) paused: bool,
    /// The relay was discovered among connected peers: the keeper never dials it of its own accord.
    pub(crate) discovered: bool,
    /// The node runs identify, so a relay's protocols are reported on each new connection: the keeper asks for
    /// a reservation only once the relay offers HOP.
    pub(crate) identify: bool,
}

impl<'a> Env<'a> {
    pub(crate) fn emit(&mut self, event: Event) {
        self.actions.push(Action::Emit(event));
    }

    /// An environment for tests that drive a relay, link or membership by hand, the node not paused.
    #[cfg(test)]
    pub(crate) fn new(
        relay: PeerId,
        now: Instant,
        config: &'a Config,
        backoff: &'a mut Backoff,
        actions: &'a mut Vec<Action>,
    ) -> Self {
        Self {
            relay,
            now,
            config,
            backoff,
            actions,
            paused: false,
            discovered: false,
            identify: false,
        }
    }
}

/// One kept relay.
#[derive(Debug)]
pub(crate) struct Relay {
    link: Link,
    membership: Membership,
}

impl Relay {
    /// Starts keeping the relay at `addr`: reserves on one of its existing `connections`, or dials; in a pool,
    /// waits as a standby.
    pub(crate) fn new(
        addr: Multiaddr,
        connections: Vec<Connection>,
        env: &mut Env<'_>,
    ) -> (Self, Transition) {
        let mut relay = Self {
            link: Link::new(addr, connections),
            membership: Membership::Standby,
        };
        relay.membership.start_over(&mut relay.link, env);
        let transition = Transition {
            deadline: (None, relay.deadline()),
            status: (None, relay.status()),
            restored_after: None,
            reachable: (false, false),
        };
        (relay, transition)
    }

    /// The probe measured a round trip of `rtt` on a connection to the relay.
    pub(crate) fn measured(&mut self, rtt: Duration) {
        self.link.measured(rtt);
    }

    pub(crate) fn addrs(&self) -> &[Multiaddr] {
        self.link.addrs()
    }

    /// The direct connections to the relay.
    pub(crate) fn connections(&self) -> &[Connection] {
        self.link.connections()
    }

    /// Hands the relay's connections back when it is no longer kept.
    pub(crate) fn into_connections(self) -> Vec<Connection> {
        self.link.into_connections()
    }

    /// The live circuit addresses the node is reachable at through the relay.
    pub(crate) fn circuits(&self) -> impl Iterator<Item = &Multiaddr> + '_ {
        self.link.circuits().iter().map(|(_, addr)| addr)
    }

    /// Whether a retry can help: not after giving up for a mistake, which waits for a fixed address.
    pub(crate) fn retryable(&self) -> bool {
        self.link.retryable()
    }

    pub(crate) fn status(&self) -> RelayStatus {
        self.membership.status(&self.link)
    }

    /// Where the relay stands in the pool. It gives way (a standby may take its slot) only while its link
    /// waits out a backoff, not while it waits for a connected relay to offer HOP: that is a matter of a round
    /// trip.
    pub(crate) fn standing(&self) -> Standing {
        let active = self.membership == Membership::Active;
        Standing {
            holds_slot: holds_slot(self.status()),
            eligible: self.membership == Membership::Standby && self.link.ready(),
            gives_way: active && self.link.waiting(),
            promoted: matches!(self.membership, Membership::Promoted { .. }),
            in_goal: active && self.link.in_goal(),
        }
    }

    /// When the engine must feed [`Input::TimerFired`]; `None` when nothing is timed.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.membership.deadline(&self.link)
    }

    /// Feeds `input` to the relay and says what it changed.
    pub(crate) fn on(&mut self, input: Input, env: &mut Env<'_>) -> Transition {
        let deadline = self.deadline();
        let status = self.status();
        let outage_since = self.link.outage_since();
        let reachable = !self.link.circuits().is_empty();
        self.step(input, env);
        Transition {
            deadline: (deadline, self.deadline()),
            status: (Some(status), self.status()),
            restored_after: outage_since.filter(|_| self.link.outage_since().is_none()),
            reachable: (reachable, !self.link.circuits().is_empty()),
        }
    }

    /// Hands `input` to the part of the relay it concerns: what the pool and the node's reachability decide
    /// to the membership, what the swarm reports to the link, whose requests the membership then carries out.
    fn step(&mut self, input: Input, env: &mut Env<'_>) {
        let (link, membership) = (&mut self.link, &mut self.membership);
        match input {
            Input::Promote { delay } => membership.promote(delay, link, env),
            Input::Demote => membership.demote(link),
            Input::Pause => membership.pause(link, env),
            Input::Resume => membership.resume(link, env),
            Input::TimerFired => membership.timer_fired(link, env),
            Input::RetryNow => membership.retry_now(link, env),
            Input::NetworkChanged => membership.network_changed(link, env),
            Input::ConnectionEstablished { connection, dialed } => {
                let after = link.connection_established(connection, dialed, env);
                membership.after(after, link, env);
                membership.connection_established(link, env);
            }
            Input::ConnectionClosed { connection, cause } => link.connection_closed(connection, cause, env),
            Input::DialFailed {
                connection,
                cause,
                mistake,
                refused,
            } => {
                let after = link.dial_failed(connection, cause, mistake, refused, env);
                membership.after(after, link, env);
            }
            Input::DialSkipped { connection } => {
                let after = link.dial_skipped(connection, env);
                membership.after(after, link, env);
            }
            Input::ListenAddr { listener, addr } => link.listen_addr(listener, addr, env),
            Input::ListenAddrExpired { listener, addr } => link.listen_addr_expired(listener, &addr),
            Input::ForeignReservation { listener, addr } => {
                let adopted =
                    *membership != Membership::Paused && link.foreign_reservation(listener, addr, env);
                membership.adopted(adopted);
            }
            Input::ListenerClosed {
                listener,
                refused,
                cause,
            } => link.listener_closed(listener, refused, cause, env),
            Input::ListenerUnsupported { listener } => link.listener_unsupported(listener, env),
            Input::HopEnabled => {
                let after = link.hop_enabled(env);
                membership.after(after, link, env);
            }
            Input::HopAbsent => link.hop_absent(),
            Input::Added(addr) => {
                let after = link.added(addr, env);
                membership.after(after, link, env);
            }
            Input::Removed => link.remove(env),
        }
    }
}

#[cfg(test)]
mod tests;
