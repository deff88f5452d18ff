use std::{
    collections::{BTreeSet, HashMap, HashSet, VecDeque},
    future::Future,
    pin::Pin,
    task::{Context, Poll, Waker},
    time::Instant,
};

use futures_timer::Delay;
use libp2p::{
    core::{
        transport::{ListenerId, PortUse, TransportError},
        ConnectedPoint, Endpoint,
    },
    multiaddr::Protocol,
    swarm::{
        behaviour::{
            ConnectionClosed, ConnectionEstablished, DialFailure, ExpiredListenAddr, ListenerClosed,
            ListenerError, NewListenAddr,
        },
        CloseConnection, ConnectionDenied, ConnectionId, DialError, FromSwarm, NetworkBehaviour,
        NotifyHandler, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
    },
    Multiaddr, PeerId,
};

use crate::{
    address::{circuit_relay, relay_peer_id},
    backoff::Backoff,
    handler::{FromBehaviour, Handler, ToBehaviour},
    mistake::Mistake,
    relay::{Action, Env, Input, Link, Relay, State},
    AddRelayError, Cause, CauseKind, Config, Event, GiveUpReason, RelayStatus,
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
    config: Config,
    backoff: Backoff,
    pub(crate) relays: HashMap<PeerId, Relay>,
    /// Direct (not relayed) connections of every peer that is not a kept relay (a kept relay holds its own),
    /// with the address each was dialed at; a relay may be connected before it is added.
    connections: HashMap<PeerId, Vec<Link>>,
    /// Circuit listeners the keeper opened or adopted, and their relay.
    listeners: HashMap<ListenerId, PeerId>,
    /// The scheduled retries, earliest first; one entry per waiting relay.
    pub(crate) deadlines: BTreeSet<(Instant, PeerId)>,
    /// The one timer, armed for the earliest deadline.
    timer: Option<(Instant, Delay)>,
    pending: VecDeque<ToSwarm<Event, FromBehaviour>>,
    /// Scratch space for the actions of one transition, kept to avoid an allocation per event.
    actions: Vec<Action>,
    /// The live circuit addresses of the keeper's (and adopted) listeners: what the node is reachable at.
    /// Per relay, so a relay's loss drops them at once, before the relay client closes the listeners.
    circuit_addrs: HashMap<PeerId, Vec<(ListenerId, Multiaddr)>>,
    /// Connections the keeper closed because their probe timed out, with their peer, until the swarm reports
    /// them closed.
    probe_closed: HashMap<ConnectionId, PeerId>,
    /// Causes whose fix was logged already; each is logged once.
    fixes_logged: HashSet<CauseKind>,
    /// A connection reported that this swarm runs identify, so relays can learn their external address.
    identify_runs: bool,
    stopped: bool,
    missing_transport_logged: bool,
    waker: Option<Waker>,
    #[cfg(feature = "metrics")]
    metrics: Option<crate::metrics::Metrics>,
    /// A clock the model-based tests drive by hand.
    #[cfg(test)]
    pub(crate) manual_clock: Option<Instant>,
}

/// What a relay looked like before or after a transition, to tell what the transition changed. The default
/// stands for a relay that is not kept.
#[derive(Debug, Clone, Copy, Default)]
struct Snapshot {
    deadline: Option<Instant>,
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    status: Option<RelayStatus>,
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    outage_since: Option<Instant>,
}

impl Snapshot {
    fn of(relay: &Relay) -> Self {
        Self {
            deadline: relay.deadline(),
            status: Some(relay.status()),
            outage_since: relay.outage_since(),
        }
    }
}

/// How much room for queued actions the keeper keeps once the queue is empty.
const PENDING_CAPACITY_KEPT: usize = 16;

impl Default for RelayKeeper {
    fn default() -> Self {
        Self::new(Config::default())
    }
}

impl RelayKeeper {
    /// Creates a keeper with no relays.
    pub fn new(config: Config) -> Self {
        Self {
            backoff: Backoff::new(&config),
            config,
            relays: HashMap::new(),
            connections: HashMap::new(),
            listeners: HashMap::new(),
            deadlines: BTreeSet::new(),
            timer: None,
            pending: VecDeque::new(),
            actions: Vec::new(),
            circuit_addrs: HashMap::new(),
            probe_closed: HashMap::new(),
            fixes_logged: HashSet::new(),
            identify_runs: false,
            stopped: false,
            missing_transport_logged: false,
            waker: None,
            #[cfg(feature = "metrics")]
            metrics: None,
            #[cfg(test)]
            manual_clock: None,
        }
    }

    /// Registers the keeper's metrics in `registry`, under the `relay_keeper` prefix:
    ///
    /// | metric | type | meaning |
    /// |---|---|---|
    /// | `relay_keeper_relays{status}` | gauge | kept relays by status (`connecting`, `connected`, `reserved`, `waiting`, `gave_up`, `stopped`) |
    /// | `relay_keeper_reconnect_attempts_total` | counter | retries scheduled, re-dials and re-reservations alike |
    /// | `relay_keeper_reconnects_total` | counter | connections restored after a loss |
    /// | `relay_keeper_reservations_restored_total` | counter | reservations live again after an outage |
    /// | `relay_keeper_give_ups_total` | counter | relays given up on |
    /// | `relay_keeper_restore_duration_seconds` | histogram | from a relay leaving its goal state to being back |
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
        let metrics = crate::metrics::Metrics::new(registry);
        for relay in self.relays.values() {
            metrics.on_transition(None, Some(self.status_of(relay)), None, self.now());
        }
        self.metrics = Some(metrics);
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
        if self.stopped {
            return Err(AddRelayError::Stopped);
        }
        let peer = relay_peer_id(&addr)?;
        if let Some(relay) = self.relays.get_mut(&peer) {
            if relay.add_addr(addr) {
                tracing::debug!(relay = %peer, addrs = ?relay.addrs(), "relay address added");
            }
            if relay.gave_up().is_some() {
                self.drive(peer, Input::Revive);
            }
            return Ok(peer);
        }
        // A kept relay owns its connections; they may have been made before it was added.
        let links = self.connections.remove(&peer).unwrap_or_default();
        self.pending.extend(keep_alive(peer, &links, true));
        tracing::debug!(relay = %peer, %addr, connected = !links.is_empty(), "relay added");
        let mut env = Env {
            relay: peer,
            now: self.now(),
            config: &self.config,
            backoff: &mut self.backoff,
            actions: &mut self.actions,
        };
        let relay = Relay::new(addr, links, &mut env);
        let after = Snapshot::of(&relay);
        self.relays.insert(peer, relay);
        self.apply(peer, Snapshot::default(), after);
        Ok(peer)
    }

    /// Stops keeping `relay`: cancels its retry, drops its queued dial, listen and events, removes the circuit
    /// listener the keeper opened on it and lets its connections idle out. Emits no event about the relay;
    /// if its reservation was the node's last live one, [`Event::Unreachable`] follows.
    ///
    /// Returns `false` if the relay is not kept.
    pub fn remove_relay(&mut self, relay: &PeerId) -> bool {
        let Some(removed) = self.relays.remove(relay) else {
            return false;
        };
        if let Some(deadline) = removed.deadline() {
            self.deadlines.remove(&(deadline, *relay));
        }
        #[cfg(feature = "metrics")]
        if let Some(metrics) = &self.metrics {
            metrics.on_transition(Some(self.status_of(&removed)), None, None, self.now());
        }
        self.listeners.retain(|_, peer| peer != relay);
        self.pending.retain(|action| !concerns(action, relay));
        self.forget_circuits(*relay, |_, _| false);
        if let Some(id) = removed.own_listener() {
            self.pending.push_back(ToSwarm::RemoveListener { id });
        }
        let links = removed.into_links();
        if !self.stopped {
            self.pending.extend(keep_alive(*relay, &links, false));
        }
        if !links.is_empty() {
            self.connections.insert(*relay, links);
        }
        tracing::debug!(%relay, "relay removed");
        self.wake();
        true
    }

    /// Forgets the relay's backoff and tries now: dials it, or requests a reservation if it is connected.
    /// Revives a relay the keeper gave up on after too many retries; one given up for a mistake in its address
    /// waits for [`add_relay`](Self::add_relay) with a fixed one.
    ///
    /// Returns `false` if the relay is not kept, gave up for a mistake, or the keeper is stopped.
    pub fn retry_now(&mut self, relay: &PeerId) -> bool {
        let retryable = self.relays.get(relay).is_some_and(Relay::retryable);
        if self.stopped || !retryable {
            return false;
        }
        self.drive(*relay, Input::RetryNow);
        true
    }

    /// Stops the keeper for good: cancels every retry and drops queued dials, listens and events; no dial,
    /// listen or event follows, even for a dial that was in flight.
    /// Connections are no longer kept alive; circuit listeners are left as they are.
    ///
    /// Afterwards every relay's status is [`RelayStatus::Stopped`], [`add_relay`](Self::add_relay) returns
    /// [`AddRelayError::Stopped`] and [`retry_now`](Self::retry_now) returns `false`. Calling it again does
    /// nothing.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        #[cfg(feature = "metrics")]
        if let Some(metrics) = &self.metrics {
            for relay in self.relays.values() {
                metrics.on_transition(Some(relay.status()), Some(RelayStatus::Stopped), None, self.now());
            }
        }
        self.stopped = true;
        self.deadlines.clear();
        self.timer = None;
        self.pending.retain(|action| {
            matches!(
                action,
                ToSwarm::NotifyHandler { .. } | ToSwarm::RemoveListener { .. }
            )
        });
        for (peer, relay) in &self.relays {
            self.pending.extend(keep_alive(*peer, relay.links(), false));
        }
        tracing::debug!(relays = self.relays.len(), "relay keeper stopped");
        self.wake();
    }

    /// Tells the keeper that the node's network changed (e.g. the machine woke from sleep or joined another
    /// network): every relay that is waiting for a retry or gave up is tried at once, with its backoff reset.
    ///
    /// The keeper calls this itself when the swarm gains a new listen address that is not a circuit address.
    /// A burst of changes gives one round: each outage of a relay gets one such reset, so a relay that keeps
    /// failing still backs off however often the network changes. Returns how many relays were retried.
    pub fn network_changed(&mut self) -> usize {
        if self.stopped {
            return 0;
        }
        let waiting: Vec<PeerId> = self
            .relays
            .iter()
            .filter(|(_, relay)| matches!(relay.state(), State::Waiting { .. } | State::GaveUp { .. }))
            .map(|(peer, _)| *peer)
            .collect();
        let mut retried = 0;
        for peer in waiting {
            self.drive(peer, Input::NetworkChanged);
            retried += usize::from(!matches!(
                self.relays[&peer].state(),
                State::Waiting { .. } | State::GaveUp { .. }
            ));
        }
        if retried > 0 {
            tracing::info!(relays = retried, "network changed: retrying relays now");
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
        self.circuit_addrs.values().flatten().map(|(_, addr)| addr)
    }

    /// What the keeper is doing about `relay`; `None` if it is not kept.
    pub fn status(&self, relay: &PeerId) -> Option<RelayStatus> {
        self.relays.get(relay).map(|r| self.status_of(r))
    }

    /// Every kept relay with its status, in no particular order.
    pub fn relays(&self) -> impl Iterator<Item = (PeerId, RelayStatus)> + '_ {
        self.relays
            .iter()
            .map(|(peer, relay)| (*peer, self.status_of(relay)))
    }

    fn now(&self) -> Instant {
        #[cfg(test)]
        if let Some(now) = self.manual_clock {
            return now;
        }
        Instant::now()
    }

    fn status_of(&self, relay: &Relay) -> RelayStatus {
        if self.stopped {
            RelayStatus::Stopped
        } else {
            relay.status()
        }
    }

    /// Feeds `input` to the state machine of `peer` if the keeper runs; false if `peer` is not kept.
    fn drive(&mut self, peer: PeerId, input: Input) -> bool {
        let (stopped, now) = (self.stopped, self.now());
        let Some(relay) = self.relays.get_mut(&peer) else {
            return false;
        };
        if stopped {
            return true;
        }
        let before = Snapshot::of(relay);
        let mut env = Env {
            relay: peer,
            now,
            config: &self.config,
            backoff: &mut self.backoff,
            actions: &mut self.actions,
        };
        relay.on(input, &mut env);
        let after = Snapshot::of(relay);
        self.apply(peer, before, after);
        true
    }

    /// Carries out what a transition of `peer` asked for; `before` and `after` are how the relay looked.
    fn apply(&mut self, peer: PeerId, before: Snapshot, after: Snapshot) {
        let rescheduled = before.deadline != after.deadline;
        if rescheduled {
            if let Some(deadline) = before.deadline {
                self.deadlines.remove(&(deadline, peer));
            }
            if let Some(deadline) = after.deadline {
                self.deadlines.insert((deadline, peer));
            }
        }
        #[cfg(feature = "metrics")]
        if let Some(metrics) = &self.metrics {
            let restored_after = before.outage_since.filter(|_| after.outage_since.is_none());
            metrics.on_transition(before.status, after.status, restored_after, self.now());
        }
        let acted = !self.actions.is_empty();
        let mut actions = std::mem::take(&mut self.actions);
        for action in actions.drain(..) {
            match action {
                Action::Dial(opts) => {
                    tracing::debug!(relay = %peer, connection = %opts.connection_id(), "dialing relay");
                    self.pending.push_back(ToSwarm::Dial { opts });
                }
                Action::AbortDials => {
                    tracing::debug!(relay = %peer, "dial to relay timed out; aborting it");
                    self.pending.push_back(ToSwarm::CloseConnection {
                        peer_id: peer,
                        connection: CloseConnection::All,
                    });
                }
                Action::RemoveListener(id) => {
                    tracing::debug!(relay = %peer, listener = ?id, "withdrawing the keeper's reservation request");
                    self.listeners.remove(&id);
                    self.pending.push_back(ToSwarm::RemoveListener { id });
                }
                Action::Listen(opts) => {
                    tracing::debug!(relay = %peer, addr = %opts.address(), "requesting circuit reservation");
                    self.listeners.insert(opts.listener_id(), peer);
                    self.pending.push_back(ToSwarm::ListenOn { opts });
                }
                Action::Emit(event) => {
                    #[cfg(feature = "metrics")]
                    if let Some(metrics) = &self.metrics {
                        metrics.on_event(&event);
                    }
                    self.emit(event);
                }
            }
        }
        // Hands the emptied buffer back, so the next transition needs no allocation.
        self.actions = actions;
        if acted || rescheduled {
            self.wake();
        }
    }

    fn keeps_alive(&self, peer: &PeerId, addr: &Multiaddr) -> bool {
        !self.stopped && self.relays.contains_key(peer) && !is_relayed(addr)
    }

    fn wake(&mut self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    fn on_connection_established(&mut self, event: ConnectionEstablished<'_>) {
        let ConnectionEstablished {
            peer_id,
            connection_id,
            endpoint,
            ..
        } = event;
        if endpoint.is_relayed() {
            return;
        }
        let dialed = match endpoint {
            ConnectedPoint::Dialer { address, .. } => Some(address.clone()),
            ConnectedPoint::Listener { .. } => None,
        };
        let established = Input::ConnectionEstablished {
            connection: connection_id,
            dialed: dialed.clone(),
        };
        if !self.drive(peer_id, established) {
            // Most peers have one connection; a default Vec would reserve room for four.
            self.connections
                .entry(peer_id)
                .or_insert_with(|| Vec::with_capacity(1))
                .push((connection_id, dialed));
        }
    }

    fn on_connection_closed(&mut self, event: ConnectionClosed<'_>) {
        let ConnectionClosed {
            peer_id,
            connection_id,
            endpoint,
            cause,
            ..
        } = event;
        if endpoint.is_relayed() {
            return;
        }
        let cause = if self.probe_closed.remove(&connection_id).is_some() {
            Cause::probe_timeout()
        } else {
            Cause::connection_lost(cause.map(|e| e as &dyn std::error::Error))
        };
        let closed = Input::ConnectionClosed {
            connection: connection_id,
            cause,
        };
        if self.drive(peer_id, closed) {
            // The relay client closes the reservation's listener only after this; the node is unreachable
            // through the relay from now on.
            if self.relays[&peer_id].links().is_empty() {
                self.forget_circuits(peer_id, |_, _| false);
            }
            return;
        }
        if let Some(connections) = self.connections.get_mut(&peer_id) {
            connections.retain(|(id, _)| *id != connection_id);
            if connections.is_empty() {
                self.connections.remove(&peer_id);
            }
        }
    }

    fn on_dial_failure(&mut self, event: DialFailure<'_>) {
        let DialFailure {
            peer_id: Some(peer),
            error,
            connection_id,
        } = event
        else {
            return;
        };
        if !self.relays.contains_key(&peer) {
            return;
        }
        if let DialError::DialPeerConditionFalse(_) = error {
            self.drive(
                peer,
                Input::DialSkipped {
                    connection: connection_id,
                },
            );
        } else {
            tracing::debug!(relay = %peer, connection = %connection_id, %error, "dial to relay failed");
            self.drive(
                peer,
                Input::DialFailed {
                    connection: connection_id,
                    cause: Cause::dial_failed(error),
                    mistake: Mistake::of(error),
                },
            );
        }
    }

    fn on_new_listen_addr(&mut self, event: NewListenAddr<'_>) {
        let NewListenAddr { listener_id, addr } = event;
        if !is_relayed(addr) {
            tracing::debug!(%addr, "new listen address");
            self.network_changed();
            return;
        }
        if let Some(&peer) = self.listeners.get(&listener_id) {
            self.drive(
                peer,
                Input::ListenAddr {
                    listener: listener_id,
                    addr: addr.clone(),
                },
            );
            self.add_circuit_addr(peer, listener_id, addr);
            return;
        }
        let Some(peer) = circuit_relay(addr).filter(|peer| self.relays.contains_key(peer)) else {
            return;
        };
        self.drive(
            peer,
            Input::ForeignReservation {
                listener: listener_id,
                addr: addr.clone(),
            },
        );
        if matches!(self.relays[&peer].state(), State::Reserved { listener, .. } if listener == listener_id) {
            tracing::debug!(relay = %peer, listener = ?listener_id, "adopted the application's circuit listener");
            self.listeners.insert(listener_id, peer);
            self.add_circuit_addr(peer, listener_id, addr);
        }
    }

    fn on_expired_listen_addr(&mut self, event: ExpiredListenAddr<'_>) {
        let ExpiredListenAddr { listener_id, addr } = event;
        if let Some(&peer) = self.listeners.get(&listener_id) {
            self.forget_circuits(peer, |l, a| l != listener_id || a != addr);
        }
    }

    /// Records a live circuit address; the first one of all makes the node reachable.
    fn add_circuit_addr(&mut self, peer: PeerId, listener: ListenerId, addr: &Multiaddr) {
        let entry = (listener, addr.clone());
        if self.stopped
            || !self.listeners.contains_key(&listener)
            || self.circuit_addrs.get(&peer).is_some_and(|a| a.contains(&entry))
        {
            return;
        }
        let reachable_before = !self.circuit_addrs.is_empty();
        self.circuit_addrs.entry(peer).or_default().push(entry);
        if !reachable_before {
            self.emit(Event::Reachable {
                relay: peer,
                addr: addr.clone(),
            });
        }
    }

    /// Drops the circuit addresses of `peer` that `keep` rejects; if they were the node's last, the node is
    /// unreachable.
    fn forget_circuits(&mut self, peer: PeerId, keep: impl Fn(ListenerId, &Multiaddr) -> bool) {
        let Some(addrs) = self.circuit_addrs.get_mut(&peer) else {
            return;
        };
        addrs.retain(|(listener, addr)| keep(*listener, addr));
        if addrs.is_empty() {
            self.circuit_addrs.remove(&peer);
            if self.circuit_addrs.is_empty() && !self.stopped {
                self.emit(Event::Unreachable { relay: peer });
            }
        }
    }

    fn emit(&mut self, event: Event) {
        self.log(&event);
        self.pending.push_back(ToSwarm::GenerateEvent(event));
        self.wake();
    }

    fn on_listener_closed(&mut self, event: ListenerClosed<'_>) {
        let ListenerClosed { listener_id, reason } = event;
        let Some(peer) = self.listeners.remove(&listener_id) else {
            return;
        };
        self.forget_circuits(peer, |l, _| l != listener_id);
        // The relay client closes a reservation's listener when its connection goes, sometimes before the
        // swarm reports the connection closed: if the keeper closed a silent one, that is the cause.
        let cause = match reason {
            Err(error) => Cause::from_listener_error(error),
            Ok(()) if self.probe_closed.values().any(|p| *p == peer) => Cause::probe_timeout(),
            Ok(()) => Cause::reservation_lost(),
        };
        match reason {
            Ok(()) => tracing::debug!(relay = %peer, listener = ?listener_id, "circuit listener closed"),
            Err(error) => {
                tracing::debug!(relay = %peer, listener = ?listener_id, %error, "reservation refused or lost")
            }
        }
        self.drive(
            peer,
            Input::ListenerClosed {
                listener: listener_id,
                refused: reason.is_err(),
                cause,
            },
        );
    }

    fn on_listener_error(&mut self, event: ListenerError<'_>) {
        let ListenerError { listener_id, err } = event;
        let Some(peer) = self.listeners.remove(&listener_id) else {
            return;
        };
        self.forget_circuits(peer, |l, _| l != listener_id);
        let unsupported = matches!(
            err.downcast_ref::<TransportError<std::io::Error>>(),
            Some(TransportError::MultiaddrNotSupported(_))
        );
        if !unsupported {
            tracing::debug!(relay = %peer, listener = ?listener_id, error = %err, "circuit listener failed");
            self.drive(
                peer,
                Input::ListenerClosed {
                    listener: listener_id,
                    refused: true,
                    cause: Cause::new(CauseKind::ProtocolError, err),
                },
            );
            return;
        }
        if !self.missing_transport_logged {
            self.missing_transport_logged = true;
            tracing::error!(
                relay = %peer,
                "cannot reserve a circuit on the relay: the swarm has no relay client transport. {}",
                GiveUpReason::NoRelayTransport.fix()
            );
        }
        self.drive(
            peer,
            Input::ListenerUnsupported {
                listener: listener_id,
            },
        );
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
        Ok(Handler::new(
            self.keeps_alive(&peer, local_addr),
            self.config.probe(),
        ))
    }

    fn handle_pending_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: Option<PeerId>,
        _: &[Multiaddr],
        _: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        Ok(peer
            .and_then(|peer| self.relays.get(&peer))
            .map(|relay| relay.addrs().to_vec())
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
        Ok(Handler::new(self.keeps_alive(&peer, addr), self.config.probe()))
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionEstablished(e) => self.on_connection_established(e),
            FromSwarm::ConnectionClosed(e) => self.on_connection_closed(e),
            FromSwarm::DialFailure(e) => self.on_dial_failure(e),
            FromSwarm::NewListenAddr(e) => self.on_new_listen_addr(e),
            FromSwarm::ListenerClosed(e) => self.on_listener_closed(e),
            FromSwarm::ListenerError(e) => self.on_listener_error(e),
            FromSwarm::ExpiredListenAddr(e) => self.on_expired_listen_addr(e),
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {
            ToBehaviour::HopEnabled => {
                tracing::debug!(relay = %peer, "peer offers the relay HOP protocol");
                self.drive(peer, Input::HopEnabled);
            }
            ToBehaviour::IdentifyRuns => self.identify_runs = true,
            ToBehaviour::ProbeAnswered(rtt) => {
                tracing::trace!(relay = %peer, %connection, ?rtt, "probe answered");
                #[cfg(feature = "metrics")]
                if let Some(metrics) = &self.metrics {
                    metrics.on_probe_answered(rtt);
                }
            }
            ToBehaviour::ProbeTimedOut => {
                if self.stopped || !self.relays.contains_key(&peer) {
                    return;
                }
                tracing::debug!(relay = %peer, %connection, "probe timed out; closing the silent connection");
                self.probe_closed.insert(connection, peer);
                self.pending.push_back(ToSwarm::CloseConnection {
                    peer_id: peer,
                    connection: CloseConnection::One(connection),
                });
                self.wake();
            }
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        loop {
            if let Some(action) = self.pending.pop_front() {
                return Poll::Ready(action);
            }
            // A burst (every relay lost at once) must not leave its queue's memory behind.
            if self.pending.capacity() > PENDING_CAPACITY_KEPT {
                self.pending.shrink_to(PENDING_CAPACITY_KEPT);
            }
            let Some(&(deadline, relay)) = self.deadlines.first() else {
                self.timer = None;
                break;
            };
            let now = self.now();
            if deadline <= now {
                self.deadlines.pop_first();
                self.drive(relay, Input::TimerFired);
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

/// Tells the handlers of `links`, connections to `peer`, to keep them alive or not.
fn keep_alive(
    peer: PeerId,
    links: &[Link],
    on: bool,
) -> impl Iterator<Item = ToSwarm<Event, FromBehaviour>> + '_ {
    links.iter().map(move |(connection, _)| ToSwarm::NotifyHandler {
        peer_id: peer,
        handler: NotifyHandler::One(*connection),
        event: FromBehaviour::Kept(on),
    })
}

fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| p == Protocol::P2pCircuit)
}

/// Whether a queued action is on behalf of `relay`.
fn concerns(action: &ToSwarm<Event, FromBehaviour>, relay: &PeerId) -> bool {
    match action {
        ToSwarm::Dial { opts } => opts.get_peer_id() == Some(*relay),
        ToSwarm::ListenOn { opts } => circuit_relay(opts.address()) == Some(*relay),
        ToSwarm::GenerateEvent(event) => event.relay() == *relay,
        ToSwarm::NotifyHandler { peer_id, .. } => peer_id == relay,
        _ => false,
    }
}

impl RelayKeeper {
    /// Logs an event, and once per cause the fix for a cause that retrying alone does not cure.
    fn log(&mut self, event: &Event) {
        match event {
            Event::ReconnectScheduled {
                relay,
                attempt,
                delay,
                cause,
            } => {
                tracing::debug!(%relay, attempt, ?delay, cause = %cause.kind, error = %cause.message, "relay retry scheduled");
                let fix = match cause.kind {
                    CauseKind::HopUnsupported if !self.identify_runs => Some(
                        "this swarm runs no identify: a rust-libp2p relay offers HOP only once it knows its \
                         external address, which it learns from its clients' identify; add \
                         libp2p::identify::Behaviour to your behaviour (relay operators: or set the relay's \
                         status with relay::Behaviour::set_status)",
                    ),
                    kind => kind.fix(),
                };
                if let Some(fix) = fix {
                    if self.fixes_logged.insert(cause.kind) {
                        tracing::warn!(%relay, cause = %cause.kind, error = %cause.message, "{fix}");
                    }
                }
            }
            Event::Reconnected { relay, attempts } => {
                tracing::info!(%relay, attempts, "relay connection restored")
            }
            Event::Reserved { relay, addr } => tracing::info!(%relay, %addr, "relay reservation live"),
            Event::GaveUp {
                relay,
                attempts,
                reason,
            } => tracing::warn!(%relay, attempts, %reason, "gave up on relay: {}", reason.fix()),
            Event::Reachable { relay, addr } => {
                tracing::info!(%relay, %addr, "node reachable through a relay")
            }
            Event::Unreachable { relay } => {
                tracing::warn!(%relay, "node no longer reachable through any relay")
            }
        }
    }
}

/// The seed's tests (MetaMask ocap-kernel PR #860 and #918) and where each is proven here.
///
/// | # | seed test | here |
/// |---|-----------|------|
/// | 1 | re-dials relay when connection closes | [`tests::redials_relay_when_connection_closes`] |
/// | 2 | does not re-dial for non-relay peer | [`tests::does_not_redial_for_non_relay_peer`] |
/// | 3 | applies exponential backoff on consecutive failures | `relay::tests::backoff_doubles_to_the_cap_then_gives_up_after_max_attempts` |
/// | 4 | stops retrying after max attempts | same test, and `tests/relay.rs::relay_down_for_good_gives_up_after_max_attempts` |
/// | 5 | clears pending reconnects on stop | [`tests::stop_clears_pending_retries`] |
/// | 6 | no reconnects for close events during stop | [`tests::close_events_after_stop_schedule_nothing`] |
/// | 7 | stops retrying after a successful reconnect | `relay::tests::a_successful_retry_ends_the_outage_and_leaves_no_timer` |
/// | 8 | no duplicate reconnects for the same relay | [`tests::one_retry_per_relay_however_many_connections_close`] |
/// | 9 | no reconnect when the abort signal is already aborted | [`tests::a_stopped_keeper_takes_no_relays`] |
/// | 10 | cleans up the pending entry when the outer catch fires | N/A: a dial cannot throw here; every dial error arrives as `DialFailure` and is a counted failure ([`tests::any_dial_error_is_a_counted_failure`]) |
/// | 11 | no leaked timer when stop() runs during an in-flight dial | [`tests::stop_during_an_inflight_dial_leaves_nothing`] |
/// | 12 | schedules reconnect for relay not connected on startup | [`tests::relay_unreachable_at_start_is_retried`] |
/// | 13 | schedules reconnect for all relays when none are connected | [`tests::every_unreachable_relay_gets_its_own_retry`] |
/// | 14 | recovers relay that was down on startup once it is up | `relay::tests::relay_down_at_start_is_retried_and_recovers`, and `tests/relay.rs::relay_started_late_is_reached` |
/// | 15 | no duplicate startup reconnect when the relay also fires close | [`tests::startup_failure_and_a_close_schedule_one_retry`] |
#[cfg(test)]
mod tests {
    use std::{future::poll_fn, task::Waker, time::Duration};

    use libp2p::swarm::{behaviour::ConnectionClosed, dial_opts::DialOpts};

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(10);

    fn fast() -> Config {
        Config::default()
            .with_base_delay(Duration::from_millis(1))
            .with_max_delay(Duration::from_millis(4))
            .with_jitter(false)
    }

    fn relay_addr() -> (PeerId, Multiaddr) {
        let peer = PeerId::random();
        (
            peer,
            format!("/ip4/127.0.0.1/tcp/4001/p2p/{peer}").parse().unwrap(),
        )
    }

    fn dialer(addr: &Multiaddr) -> ConnectedPoint {
        ConnectedPoint::Dialer {
            address: addr.clone(),
            role_override: Endpoint::Dialer,
            port_use: PortUse::Reuse,
        }
    }

    fn establish(keeper: &mut RelayKeeper, peer: PeerId, id: usize, addr: &Multiaddr) {
        let endpoint = dialer(addr);
        keeper.on_swarm_event(FromSwarm::ConnectionEstablished(ConnectionEstablished {
            peer_id: peer,
            connection_id: ConnectionId::new_unchecked(id),
            endpoint: &endpoint,
            failed_addresses: &[],
            other_established: 0,
        }));
    }

    fn close(keeper: &mut RelayKeeper, peer: PeerId, id: usize, addr: &Multiaddr, remaining: usize) {
        let endpoint = dialer(addr);
        keeper.on_swarm_event(FromSwarm::ConnectionClosed(ConnectionClosed {
            peer_id: peer,
            connection_id: ConnectionId::new_unchecked(id),
            endpoint: &endpoint,
            cause: None,
            remaining_established: remaining,
        }));
    }

    fn fail_dial(keeper: &mut RelayKeeper, peer: PeerId, connection: ConnectionId) {
        keeper.on_swarm_event(FromSwarm::DialFailure(DialFailure {
            peer_id: Some(peer),
            error: &DialError::Aborted,
            connection_id: connection,
        }));
    }

    /// Everything the keeper has to say right now, without waiting for any timer.
    fn drain(keeper: &mut RelayKeeper) -> Vec<ToSwarm<Event, FromBehaviour>> {
        let mut cx = Context::from_waker(Waker::noop());
        std::iter::from_fn(|| match keeper.poll(&mut cx) {
            Poll::Ready(action) => Some(action),
            Poll::Pending => None,
        })
        .collect()
    }

    /// The next action, waiting for timers; panics after [`TIMEOUT`].
    async fn next(keeper: &mut RelayKeeper) -> ToSwarm<Event, FromBehaviour> {
        tokio::time::timeout(TIMEOUT, poll_fn(|cx| keeper.poll(cx)))
            .await
            .expect("the keeper acts before the timeout")
    }

    async fn next_dial(keeper: &mut RelayKeeper) -> DialOpts {
        loop {
            if let ToSwarm::Dial { opts } = next(keeper).await {
                return opts;
            }
        }
    }

    fn dials(actions: &[ToSwarm<Event, FromBehaviour>]) -> Vec<ConnectionId> {
        actions
            .iter()
            .filter_map(|a| match a {
                ToSwarm::Dial { opts } => Some(opts.connection_id()),
                _ => None,
            })
            .collect()
    }

    /// A keeper holding `relay` through connection 1, its first dial already taken.
    fn connected(config: Config) -> (RelayKeeper, PeerId, Multiaddr) {
        let (peer, addr) = relay_addr();
        let mut keeper = RelayKeeper::new(config);
        keeper.add_relay(addr.clone()).unwrap();
        drain(&mut keeper);
        establish(&mut keeper, peer, 1, &addr);
        drain(&mut keeper);
        (keeper, peer, addr)
    }

    #[test]
    fn only_direct_connections_to_a_kept_relay_are_kept_alive() {
        use libp2p::swarm::ConnectionHandler;

        let (mut keeper, peer, addr) = connected(fast());
        let other_relay = PeerId::random();
        let local_circuit: Multiaddr = format!("/ip4/192.0.2.1/tcp/1/p2p/{other_relay}/p2p-circuit")
            .parse()
            .unwrap();
        // A relayed inbound connection: its remote address is `/p2p/<source>`, its local one the circuit.
        let remote: Multiaddr = Multiaddr::empty().with(Protocol::P2p(peer));
        let relayed = keeper
            .handle_established_inbound_connection(
                ConnectionId::new_unchecked(8),
                peer,
                &local_circuit,
                &remote,
            )
            .unwrap();
        assert!(!relayed.connection_keep_alive());
        let direct_local: Multiaddr = "/ip4/192.0.2.2/tcp/4001".parse().unwrap();
        let direct = keeper
            .handle_established_inbound_connection(ConnectionId::new_unchecked(9), peer, &direct_local, &addr)
            .unwrap();
        assert!(direct.connection_keep_alive());
    }

    #[tokio::test]
    async fn redials_relay_when_connection_closes() {
        let (mut keeper, peer, addr) = connected(fast());
        close(&mut keeper, peer, 1, &addr, 0);
        let opts = next_dial(&mut keeper).await;
        assert_eq!(opts.get_peer_id(), Some(peer));
        let addrs = keeper
            .handle_pending_outbound_connection(opts.connection_id(), Some(peer), &[], Endpoint::Dialer)
            .unwrap();
        assert_eq!(
            addrs,
            [addr],
            "the keeper supplies the relay's addresses to the dial"
        );
    }

    #[test]
    fn dials_yield_to_existing_connections_and_dials() {
        let (peer, addr) = relay_addr();
        let mut keeper = RelayKeeper::new(fast());
        keeper.add_relay(addr).unwrap();
        let actions = drain(&mut keeper);
        let [ToSwarm::Dial { opts }] = actions.as_slice() else {
            panic!("{actions:?}")
        };
        assert_eq!(opts.get_peer_id(), Some(peer));
        // The condition has no public getter; its debug form names it.
        assert!(
            format!("{opts:?}").contains("DisconnectedAndNotDialing"),
            "{opts:?}"
        );
    }

    #[test]
    fn does_not_redial_for_non_relay_peer() {
        let (mut keeper, _, _) = connected(fast());
        let (other, other_addr) = relay_addr();
        establish(&mut keeper, other, 7, &other_addr);
        close(&mut keeper, other, 7, &other_addr, 0);
        assert!(drain(&mut keeper).is_empty());
        assert!(keeper.deadlines.is_empty());
    }

    #[test]
    fn relayed_connections_are_not_connections_to_the_relay() {
        let (mut keeper, peer, addr) = connected(fast());
        let circuit = addr.clone().with(Protocol::P2pCircuit);
        establish(&mut keeper, peer, 2, &circuit);
        close(&mut keeper, peer, 1, &addr, 1);
        assert!(
            keeper.deadlines.len() == 1,
            "the direct connection is gone: retry scheduled"
        );
        close(&mut keeper, peer, 2, &circuit, 0);
        assert_eq!(keeper.deadlines.len(), 1);
    }

    #[test]
    fn stop_clears_pending_retries() {
        let (mut keeper, peer, addr) = connected(fast());
        close(&mut keeper, peer, 1, &addr, 0);
        assert_eq!(keeper.deadlines.len(), 1);
        keeper.stop();
        assert!(keeper.deadlines.is_empty());
        assert!(keeper.timer.is_none());
        let actions = drain(&mut keeper);
        assert!(
            actions.iter().all(|a| matches!(a, ToSwarm::NotifyHandler { .. })),
            "{actions:?}"
        );
        assert_eq!(keeper.status(&peer), Some(RelayStatus::Stopped));
        assert!(!keeper.retry_now(&peer));
        keeper.stop();
        assert!(drain(&mut keeper).is_empty(), "stop is idempotent");
    }

    #[test]
    fn close_events_after_stop_schedule_nothing() {
        let (mut keeper, peer, addr) = connected(fast());
        keeper.stop();
        drain(&mut keeper);
        close(&mut keeper, peer, 1, &addr, 0);
        assert!(drain(&mut keeper).is_empty());
        assert!(keeper.deadlines.is_empty());
    }

    #[test]
    fn one_retry_per_relay_however_many_connections_close() {
        let (mut keeper, peer, addr) = connected(fast());
        establish(&mut keeper, peer, 2, &addr);
        close(&mut keeper, peer, 1, &addr, 1);
        assert!(keeper.deadlines.is_empty(), "another direct connection remains");
        close(&mut keeper, peer, 2, &addr, 0);
        close(&mut keeper, peer, 2, &addr, 0);
        assert_eq!(keeper.deadlines.len(), 1);
        let events: Vec<_> = drain(&mut keeper)
            .into_iter()
            .filter(|a| matches!(a, ToSwarm::GenerateEvent(Event::ReconnectScheduled { .. })))
            .collect();
        assert_eq!(events.len(), 1);
    }

    #[test]
    fn a_stopped_keeper_takes_no_relays() {
        let mut keeper = RelayKeeper::new(fast());
        keeper.stop();
        let (_, addr) = relay_addr();
        assert_eq!(keeper.add_relay(addr), Err(AddRelayError::Stopped));
        assert_eq!(keeper.relays().count(), 0);
        assert!(drain(&mut keeper).is_empty());
    }

    #[test]
    fn any_dial_error_is_a_counted_failure() {
        let (peer, addr) = relay_addr();
        let mut keeper = RelayKeeper::new(fast());
        keeper.add_relay(addr).unwrap();
        let dial = dials(&drain(&mut keeper))[0];
        keeper.on_swarm_event(FromSwarm::DialFailure(DialFailure {
            peer_id: Some(peer),
            error: &DialError::NoAddresses,
            connection_id: dial,
        }));
        assert_eq!(keeper.status(&peer), Some(RelayStatus::Waiting { attempt: 1 }));
        assert_eq!(keeper.deadlines.len(), 1);
    }

    #[tokio::test]
    async fn stop_during_an_inflight_dial_leaves_nothing() {
        let (mut keeper, peer, addr) = connected(fast());
        close(&mut keeper, peer, 1, &addr, 0);
        let dial = next_dial(&mut keeper).await.connection_id();
        keeper.stop();
        drain(&mut keeper);
        fail_dial(&mut keeper, peer, dial);
        establish(&mut keeper, peer, 3, &addr);
        assert!(
            drain(&mut keeper).is_empty(),
            "no dial, listen or event after stop"
        );
        assert!(keeper.deadlines.is_empty());
    }

    #[test]
    fn queued_work_is_dropped_by_stop() {
        let (peer, addr) = relay_addr();
        let mut keeper = RelayKeeper::new(fast());
        keeper.add_relay(addr).unwrap();
        keeper.stop();
        assert!(
            drain(&mut keeper).is_empty(),
            "the queued first dial is not raised"
        );
        assert_eq!(keeper.status(&peer), Some(RelayStatus::Stopped));
    }

    #[test]
    fn relay_unreachable_at_start_is_retried() {
        let (peer, addr) = relay_addr();
        let mut keeper = RelayKeeper::new(fast());
        keeper.add_relay(addr).unwrap();
        let dial = dials(&drain(&mut keeper))[0];
        fail_dial(&mut keeper, peer, dial);
        let actions = drain(&mut keeper);
        assert!(
            matches!(
                actions.as_slice(),
                [ToSwarm::GenerateEvent(Event::ReconnectScheduled {
                    attempt: 1,
                    ..
                })]
            ),
            "{actions:?}"
        );
    }

    #[test]
    fn every_unreachable_relay_gets_its_own_retry() {
        let mut keeper = RelayKeeper::new(fast());
        let relays: Vec<PeerId> = (0..3)
            .map(|_| keeper.add_relay(relay_addr().1).unwrap())
            .collect();
        let actions = drain(&mut keeper);
        for action in actions {
            let ToSwarm::Dial { opts } = action else { continue };
            fail_dial(&mut keeper, opts.get_peer_id().unwrap(), opts.connection_id());
        }
        assert_eq!(keeper.deadlines.len(), 3);
        for relay in relays {
            assert_eq!(keeper.status(&relay), Some(RelayStatus::Waiting { attempt: 1 }));
        }
    }

    #[test]
    fn startup_failure_and_a_close_schedule_one_retry() {
        let (peer, addr) = relay_addr();
        let mut keeper = RelayKeeper::new(fast());
        keeper.add_relay(addr.clone()).unwrap();
        let dial = dials(&drain(&mut keeper))[0];
        fail_dial(&mut keeper, peer, dial);
        close(&mut keeper, peer, 9, &addr, 0);
        assert_eq!(keeper.deadlines.len(), 1);
        assert_eq!(keeper.status(&peer), Some(RelayStatus::Waiting { attempt: 1 }));
    }

    #[tokio::test]
    async fn mutators_wake_an_idle_keeper() {
        let mut keeper = RelayKeeper::new(fast());
        // Park the keeper as an idle swarm would, then add a relay from outside.
        assert!(poll_fn(|cx| Poll::Ready(keeper.poll(cx).is_pending())).await);
        let (woken, waker) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(keeper.poll(&mut cx).is_pending());
        keeper.add_relay(relay_addr().1).unwrap();
        assert_eq!(woken(), 1);
        assert!(keeper.poll(&mut cx).is_ready());
    }

    #[test]
    fn an_idle_keeper_does_no_work_in_poll() {
        let (mut keeper, peer, addr) = connected(fast());
        let listener = *keeper.listeners.keys().next().unwrap();
        let circuit = addr.with(Protocol::P2pCircuit);
        keeper.on_swarm_event(FromSwarm::NewListenAddr(NewListenAddr {
            listener_id: listener,
            addr: &circuit,
        }));
        drain(&mut keeper);
        assert_eq!(keeper.status(&peer), Some(RelayStatus::Reserved));
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..100 {
            assert!(keeper.poll(&mut cx).is_pending());
        }
        assert!(keeper.pending.is_empty());
        assert!(keeper.deadlines.is_empty());
        assert!(keeper.timer.is_none());
    }

    #[test]
    fn remove_relay_cancels_everything_for_it_and_emits_nothing() {
        let (mut keeper, peer, addr) = connected(fast());
        close(&mut keeper, peer, 1, &addr, 0);
        assert!(keeper.remove_relay(&peer));
        assert!(!keeper.remove_relay(&peer));
        assert!(keeper.deadlines.is_empty());
        assert!(
            drain(&mut keeper).is_empty(),
            "the scheduled-retry event is dropped too"
        );
        assert_eq!(keeper.status(&peer), None);
        establish(&mut keeper, peer, 5, &addr);
        assert!(drain(&mut keeper).is_empty());
    }

    #[test]
    fn remove_relay_removes_the_keepers_listener_and_releases_keep_alive() {
        let (mut keeper, peer, _) = connected(fast());
        let listener = *keeper.listeners.keys().next().unwrap();
        assert!(keeper.remove_relay(&peer));
        let actions = drain(&mut keeper);
        assert!(actions
            .iter()
            .any(|a| matches!(a, ToSwarm::RemoveListener { id } if *id == listener)));
        assert!(actions.iter().any(|a| matches!(
            a,
            ToSwarm::NotifyHandler {
                event: FromBehaviour::Kept(false),
                ..
            }
        )));
    }

    #[test]
    fn bad_addresses_change_nothing() {
        let mut keeper = RelayKeeper::new(fast());
        let (peer, addr) = relay_addr();
        let cases = [
            (
                "/ip4/127.0.0.1/tcp/1".parse().unwrap(),
                AddRelayError::MissingPeerId,
            ),
            (
                format!("/p2p/{peer}").parse().unwrap(),
                AddRelayError::MissingTransport,
            ),
            (addr.with(Protocol::P2pCircuit), AddRelayError::CircuitAddress),
        ];
        for (addr, error) in cases {
            assert_eq!(keeper.add_relay(addr), Err(error));
        }
        assert_eq!(keeper.relays().count(), 0);
        assert!(drain(&mut keeper).is_empty());
    }

    #[test]
    fn a_relay_connected_before_it_is_added_is_reserved_without_a_dial() {
        let (peer, addr) = relay_addr();
        let mut keeper = RelayKeeper::new(fast());
        establish(&mut keeper, peer, 1, &addr);
        keeper.add_relay(addr).unwrap();
        let actions = drain(&mut keeper);
        assert!(dials(&actions).is_empty());
        assert!(actions.iter().any(|a| matches!(a, ToSwarm::ListenOn { .. })));
        assert!(actions.iter().any(|a| matches!(
            a,
            ToSwarm::NotifyHandler {
                event: FromBehaviour::Kept(true),
                ..
            }
        )));
    }

    #[test]
    fn a_listener_on_a_swarm_without_relay_transport_gives_up() {
        let (mut keeper, peer, addr) = connected(fast());
        let listener = *keeper.listeners.keys().next().unwrap();
        let error = TransportError::<std::io::Error>::MultiaddrNotSupported(addr);
        keeper.on_swarm_event(FromSwarm::ListenerError(ListenerError {
            listener_id: listener,
            err: &error,
        }));
        assert_eq!(
            keeper.status(&peer),
            Some(RelayStatus::GaveUp {
                attempts: 0,
                reason: GiveUpReason::NoRelayTransport
            })
        );
        assert!(keeper.deadlines.is_empty());
    }

    #[test]
    fn the_applications_listener_is_adopted_and_then_tracked() {
        let (mut keeper, peer, addr) = connected(fast());
        let ours = *keeper.listeners.keys().next().unwrap();
        keeper.on_swarm_event(FromSwarm::ListenerClosed(ListenerClosed {
            listener_id: ours,
            reason: Ok(()),
        }));
        assert_eq!(keeper.deadlines.len(), 1);
        let theirs = ListenerId::next();
        let circuit = addr.with(Protocol::P2pCircuit);
        keeper.on_swarm_event(FromSwarm::NewListenAddr(NewListenAddr {
            listener_id: theirs,
            addr: &circuit,
        }));
        assert_eq!(keeper.status(&peer), Some(RelayStatus::Reserved));
        assert!(keeper.deadlines.is_empty());
        keeper.on_swarm_event(FromSwarm::ListenerClosed(ListenerClosed {
            listener_id: theirs,
            reason: Ok(()),
        }));
        assert_eq!(keeper.status(&peer), Some(RelayStatus::Waiting { attempt: 1 }));
        // The keeper removes only listeners it opened.
        keeper.remove_relay(&peer);
        assert!(!drain(&mut keeper)
            .iter()
            .any(|a| matches!(a, ToSwarm::RemoveListener { .. })));
    }

    #[test]
    fn a_burst_of_new_listen_addresses_gives_one_retry_round() {
        let mut keeper = RelayKeeper::new(fast());
        let relays: Vec<PeerId> = (0..3)
            .map(|_| keeper.add_relay(relay_addr().1).unwrap())
            .collect();
        for action in drain(&mut keeper) {
            let ToSwarm::Dial { opts } = action else { continue };
            fail_dial(&mut keeper, opts.get_peer_id().unwrap(), opts.connection_id());
        }
        drain(&mut keeper);
        for port in 0..5 {
            let addr: Multiaddr = format!("/ip4/192.0.2.1/tcp/{port}").parse().unwrap();
            keeper.on_swarm_event(FromSwarm::NewListenAddr(NewListenAddr {
                listener_id: ListenerId::next(),
                addr: &addr,
            }));
        }
        let redials = dials(&drain(&mut keeper));
        assert_eq!(redials.len(), relays.len(), "one dial per waiting relay");
        for relay in &relays {
            assert_eq!(keeper.status(relay), Some(RelayStatus::Connecting));
        }
        assert_eq!(
            keeper.network_changed(),
            0,
            "relays that are dialing are left alone"
        );
    }

    fn counting_waker() -> (impl Fn() -> usize, Waker) {
        use std::sync::{
            atomic::{AtomicUsize, Ordering},
            Arc,
        };
        struct Count(AtomicUsize);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        (move || count.0.load(Ordering::SeqCst), waker)
    }
}
