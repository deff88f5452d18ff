//! The [`NetworkBehaviour`]: an adapter that feeds the swarm's events to the [`Engine`], raises its commands
//! and runs one timer for it.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, Waker},
    time::{Instant, SystemTime},
};

use futures_timer::Delay;
use libp2p::{
    core::{transport::PortUse, Endpoint},
    swarm::{
        behaviour::{
            ConnectionClosed, ConnectionEstablished, DialFailure, ExpiredListenAddr, ExternalAddrConfirmed,
            ExternalAddrExpired, ListenerClosed, ListenerError, NewListenAddr,
        },
        ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, NotifyHandler, THandler,
        THandlerInEvent, THandlerOutEvent, ToSwarm,
    },
    Multiaddr, PeerId,
};

use crate::{
    engine::{Command, Engine},
    handler::{FromBehaviour, Handler},
    known::{self, Clocks},
    AddRelayError, Config, Event, KnownRelay, KnownRelayError, RelayStatus,
};

/// A [`NetworkBehaviour`] that keeps the node connected to its relays and holds a circuit reservation on each,
/// re-dialing and re-reserving with exponential backoff and jitter whenever one is lost.
///
/// Compose it with [`libp2p::relay::client::Behaviour`] in a `#[derive(NetworkBehaviour)]` struct, then name
/// the relays with [`RelayKeeper::add_relay`]. See the [crate documentation](crate) for an example.
///
/// It has no task or thread of its own: all work happens in [`NetworkBehaviour::poll`], driven by the swarm,
/// and dropping the swarm leaves nothing behind.
pub struct RelayKeeper {
    engine: Engine,
    /// The one timer, armed for the engine's next deadline.
    timer: Option<(Instant, Delay)>,
    waker: Option<Waker>,
}

impl Default for RelayKeeper {
    fn default() -> Self {
        Self::new(Config::default())
    }
}

impl RelayKeeper {
    /// Creates a keeper with no relays.
    pub fn new(config: Config) -> Self {
        Self {
            engine: Engine::new(config),
            timer: None,
            waker: None,
        }
    }

    /// Registers the keeper's metrics in `registry`, under the `relay_keeper` prefix:
    ///
    /// | metric | type | meaning |
    /// |---|---|---|
    /// | `relay_keeper_relays{status}` | gauge | kept relays by status (`connecting`, `connected`, `reserved`, `waiting`, `gave_up`, `stopped`, `standby`, `paused`) |
    /// | `relay_keeper_reconnect_attempts_total{cause}` | counter | retries scheduled, re-dials and re-reservations alike, by [`CauseKind`](crate::CauseKind) |
    /// | `relay_keeper_reconnects_total` | counter | connections restored after a loss |
    /// | `relay_keeper_reservations_restored_total` | counter | reservations live again after an outage |
    /// | `relay_keeper_give_ups_total` | counter | relays given up on |
    /// | `relay_keeper_restore_duration_seconds` | histogram | from a relay leaving its goal state to being back |
    /// | `relay_keeper_probe_rtt_seconds` | histogram | round trip of the liveness probe |
    /// | `relay_keeper_pool_target` | gauge | the pool's slots ([`Config::with_max_reservations`]), 0 without a pool; the live reservations are `relay_keeper_relays{status="reserved"}`, the candidates `{status="standby"}` |
    /// | `relay_keeper_pool_candidates{source}` | gauge | kept relays by where they came from: `given` to `add_relay`, or `discovered` ([`Config::with_discovery`]) |
    /// | `relay_keeper_failovers_total` | counter | slots of the pool given to a standby after the relay holding it lost its goal |
    ///
    /// ```
    /// use libp2p_relay_keeper::{Config, RelayKeeper};
    /// use prometheus_client::registry::Registry;
    ///
    /// let mut registry = Registry::default();
    /// let keeper = RelayKeeper::new(Config::default()).with_metrics(&mut registry);
    /// ```
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn with_metrics(mut self, registry: &mut prometheus_client::registry::Registry) -> Self {
        self.engine.register_metrics(registry, Instant::now());
        self
    }

    /// Keeps the relay at `addr`, a transport address ending in `/p2p/<relay peer id>`, and returns its peer id.
    ///
    /// The keeper uses a direct connection to the relay if there is one, and dials otherwise (a failed first
    /// dial is retried like a lost connection); once connected it requests a circuit reservation.
    ///
    /// For a relay that is kept already, `addr` is added to the addresses the keeper dials, and a relay the
    /// keeper gave up on is tried again at once, with a fresh backoff, whatever it gave up for.
    ///
    /// The keeper dials only the addresses given here, never ones other behaviours know for the relay. If the
    /// relay is connected already (e.g. the application dialed it), the keeper reserves on that connection.
    ///
    /// On error nothing changes.
    pub fn add_relay(&mut self, addr: Multiaddr) -> Result<PeerId, AddRelayError> {
        let peer = self.engine.add_relay(addr, Instant::now())?;
        self.wake();
        Ok(peer)
    }

    /// Stops keeping `relay`: cancels its retry, drops its queued dial, listen and events, removes the circuit
    /// listener the keeper opened on it and lets its connections idle out. Emits no event about the relay;
    /// if its reservation was the node's last live one, [`Event::Unreachable`] follows.
    ///
    /// Returns `false` if the relay is not kept.
    pub fn remove_relay(&mut self, relay: &PeerId) -> bool {
        let removed = self.engine.remove_relay(relay, Instant::now());
        if removed {
            self.wake();
        }
        removed
    }

    /// Forgets the relay's backoff and tries now: dials it, or requests a reservation if it is connected. It
    /// also lifts the hold after a relay refused for its limits
    /// ([`Config::with_limit_interval`](crate::Config::with_limit_interval)). Revives a relay the keeper gave
    /// up on after too many retries; one given up for a mistake in its address waits for
    /// [`add_relay`](Self::add_relay) with a fixed one.
    ///
    /// Returns `false` if the relay is not kept, gave up for a mistake, or the keeper is stopped.
    pub fn retry_now(&mut self, relay: &PeerId) -> bool {
        let retried = self.engine.retry_now(relay, Instant::now());
        if retried {
            self.wake();
        }
        retried
    }

    /// Stops the keeper for good: cancels every retry and drops queued dials, listens and events; no dial,
    /// listen or event follows, even for a dial that was in flight.
    /// Connections are no longer kept alive; circuit listeners are left as they are, but the keeper no longer
    /// follows them, so [`circuit_addrs`](Self::circuit_addrs) is empty from then on.
    ///
    /// Afterwards every relay's status is [`RelayStatus::Stopped`], [`add_relay`](Self::add_relay) returns
    /// [`AddRelayError::Stopped`] and [`retry_now`](Self::retry_now) returns `false`. Calling it again does
    /// nothing.
    pub fn stop(&mut self) {
        self.engine.stop(Instant::now());
        self.timer = None;
        self.wake();
    }

    /// Tells the keeper that the node's network changed (e.g. the machine joined another network, and the
    /// application heard of it first): every relay whose link is up is dialed again beside its old connections,
    /// which are probed at once, and moved to the new connection once it is up, uncounted; every relay that is
    /// waiting for a retry or gave up is tried at once, with its backoff reset.
    ///
    /// The keeper notices a change itself when the node gains or loses a network address (a listen address
    /// that is not a circuit address; on Linux at once, elsewhere within if-watch's 10 s poll) and when the
    /// machine slept ([`SLEEP_THRESHOLD`](crate::SLEEP_THRESHOLD)). A relay is dialed for a move at most once
    /// per [`MOVE_INTERVAL`](crate::MOVE_INTERVAL), and a burst of changes gives one retry round: each outage
    /// of a relay gets one such reset, so a relay that keeps failing still backs off however often the network
    /// changes. Returns how many waiting or given-up relays were retried. See docs/network-changes.md.
    pub fn network_changed(&mut self) -> usize {
        let retried = self.engine.network_changed(Instant::now());
        if retried > 0 {
            self.wake();
        }
        retried
    }

    /// The circuit addresses the node is reachable at right now: every address the keeper's live reservations
    /// (and the application's listeners it adopted) report, in no particular order. Empty while no reservation
    /// is live. The relay client confirms the same addresses as external addresses of the swarm
    /// ([`Swarm::external_addresses`](libp2p::Swarm::external_addresses)).
    ///
    /// [`Event::Reachable`] and [`Event::Unreachable`] say when this goes from empty to not and back.
    pub fn circuit_addrs(&self) -> impl Iterator<Item = &Multiaddr> + '_ {
        self.engine.circuit_addrs()
    }

    /// What the keeper is doing about `relay`; `None` if it is not kept.
    pub fn status(&self, relay: &PeerId) -> Option<RelayStatus> {
        self.engine.status(relay)
    }

    /// Every kept relay with its status, in no particular order.
    pub fn relays(&self) -> impl Iterator<Item = (PeerId, RelayStatus)> + '_ {
        self.engine.relays()
    }

    /// A snapshot of the kept relays for the application to store, so that the node starts from the relays
    /// that served last after a restart ([`add_known_relays`](Self::add_known_relays)): each relay's peer id
    /// and addresses, since when it is known, when it was last reserved (now, for one reserved now) and its
    /// last failure, on the wall clock. At most [`Config::with_max_known_relays`] relays (20 by default), the
    /// most recently reserved first, then those that never were, the longest known first.
    ///
    /// The times are the wall clock's now minus how long ago each thing happened on the monotonic clock, so
    /// a wall clock set while the node ran does not shift them apart; none is before the Unix epoch. With the
    /// `serde` feature, [`KnownRelay`] is `Serialize` and `Deserialize`. See docs/known-relays.md.
    pub fn known_relays(&self) -> Vec<KnownRelay> {
        let clocks = Clocks::read();
        known::snapshot(self.engine.known(clocks.now), self.engine.config(), clocks)
    }

    /// Keeps the relays of a snapshot that [`known_relays`](Self::known_relays) took, in this process or an
    /// earlier one, as [`add_relay`](Self::add_relay) would, with what the snapshot knows of each: a pool
    /// ([`Config::with_max_reservations`]) activates the relays that served last first. For a relay that is
    /// kept already, the snapshot's addresses are added and its service taken into account.
    ///
    /// Bad entries are skipped, each with an error (also logged at `warn`): no address, an address that is no
    /// relay's own (a circuit address, no transport part), an address naming another peer, a second entry for
    /// the same relay. Entries unseen (last reserved, or if never, first known) for longer than
    /// [`Config::with_known_relay_max_age`] (30 days by default) are dropped, and so are the least useful
    /// beyond [`Config::with_max_known_relays`], each with an `info` line. The good entries are kept all the
    /// same, so a snapshot never stops the node from starting.
    ///
    /// Call it before adding the application's own relays, so a pool's first choice goes to a relay that
    /// served; a relay that served displaces a promoted one only while that one has not been dialed yet.
    pub fn add_known_relays(&mut self, relays: impl IntoIterator<Item = KnownRelay>) -> Vec<KnownRelayError> {
        let clocks = Clocks::read();
        let (relays, mut errors) = known::check(relays, self.engine.config(), clocks);
        for relay in relays {
            let peer = relay.peer;
            if self.engine.add_known(relay, clocks.now).is_err() {
                let error = KnownRelayError::Stopped { relay: peer };
                tracing::warn!("{error}");
                errors.push(error);
            }
        }
        self.wake();
        errors
    }

    fn wake(&mut self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}

impl NetworkBehaviour for RelayKeeper {
    type ConnectionHandler = Handler;
    type ToSwarm = Event;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        local_addr: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        // An inbound relayed connection's remote address is `/p2p/<source>`; its local one holds the circuit.
        let kept = self.engine.keeps_alive(&peer, local_addr);
        Ok(Handler::new(kept, self.engine.config().probe()))
    }

    fn handle_pending_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: Option<PeerId>,
        _: &[Multiaddr],
        _: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        Ok(peer
            .map(|peer| self.engine.addrs_of(&peer).to_vec())
            .unwrap_or_default())
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        let kept = self.engine.keeps_alive(&peer, addr);
        Ok(Handler::new(kept, self.engine.config().probe()))
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        let now = Instant::now();
        let engine = &mut self.engine;
        match event {
            FromSwarm::ConnectionEstablished(ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            }) => engine.on_connection_established(peer_id, connection_id, endpoint, now),
            FromSwarm::ConnectionClosed(ConnectionClosed {
                peer_id,
                connection_id,
                endpoint,
                cause,
                ..
            }) => {
                let error = cause.map(|e| e as &dyn std::error::Error);
                engine.on_connection_closed(peer_id, connection_id, endpoint, error, now)
            }
            FromSwarm::DialFailure(DialFailure {
                peer_id,
                error,
                connection_id,
            }) => engine.on_dial_failure(peer_id, connection_id, error, now),
            FromSwarm::NewListenAddr(NewListenAddr { listener_id, addr }) => {
                engine.on_new_listen_addr(listener_id, addr, now)
            }
            FromSwarm::ExpiredListenAddr(ExpiredListenAddr { listener_id, addr }) => {
                engine.on_expired_listen_addr(listener_id, addr, now)
            }
            FromSwarm::ListenerClosed(ListenerClosed { listener_id, reason }) => {
                engine.on_listener_closed(listener_id, reason, now)
            }
            FromSwarm::ListenerError(ListenerError { listener_id, err }) => {
                engine.on_listener_error(listener_id, err, now)
            }
            FromSwarm::ExternalAddrConfirmed(ExternalAddrConfirmed { addr }) => {
                engine.on_external_addr_confirmed(addr, now)
            }
            FromSwarm::ExternalAddrExpired(ExternalAddrExpired { addr }) => {
                engine.on_external_addr_expired(addr, now)
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        self.engine
            .on_handler_event(peer, connection, event, Instant::now());
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        // One reading of the clocks per poll: a deadline that falls due while this poll runs is armed as a
        // timer of (nearly) zero and handled at the next.
        let now = Instant::now();
        self.engine.on_clocks(now, SystemTime::now());
        loop {
            if let Some(command) = self.engine.poll_action() {
                return Poll::Ready(to_swarm(command));
            }
            let Some(deadline) = self.engine.poll_timeout() else {
                self.timer = None;
                break;
            };
            if deadline <= now {
                self.engine.handle_timeout(now);
                continue;
            }
            let timer = match &mut self.timer {
                Some((armed, timer)) if *armed == deadline => timer,
                slot => &mut slot.insert((deadline, Delay::new(deadline - now))).1,
            };
            if Pin::new(timer).poll(cx).is_pending() {
                break;
            }
            self.timer = None;
        }
        if !self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            self.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

fn to_swarm(command: Command) -> ToSwarm<Event, FromBehaviour> {
    match command {
        Command::Dial(opts) => ToSwarm::Dial { opts },
        Command::Listen(opts) => ToSwarm::ListenOn { opts },
        Command::RemoveListener(id) => ToSwarm::RemoveListener { id },
        Command::Close { peer, connection } => ToSwarm::CloseConnection {
            peer_id: peer,
            connection,
        },
        Command::KeepAlive { peer, connection, on } => ToSwarm::NotifyHandler {
            peer_id: peer,
            handler: NotifyHandler::One(connection),
            event: FromBehaviour::Kept(on),
        },
        Command::ProbeNow { peer, connection } => ToSwarm::NotifyHandler {
            peer_id: peer,
            handler: NotifyHandler::One(connection),
            event: FromBehaviour::ProbeNow,
        },
        Command::Emit(event) => ToSwarm::GenerateEvent(event),
    }
}

#[cfg(test)]
mod tests;
