use std::{
    collections::{BTreeSet, HashMap, VecDeque},
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
            ConnectionClosed, ConnectionEstablished, DialFailure, ListenerClosed, ListenerError,
            NewListenAddr,
        },
        ConnectionDenied, ConnectionId, DialError, FromSwarm, NetworkBehaviour, NotifyHandler, THandler,
        THandlerInEvent, THandlerOutEvent, ToSwarm,
    },
    Multiaddr, PeerId,
};

use crate::{
    address::{circuit_relay, relay_peer_id},
    backoff::Backoff,
    handler::{FromBehaviour, Handler, ToBehaviour},
    relay::{Action, Env, Input, Relay, State},
    AddRelayError, Config, Event, RelayStatus,
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
    relays: HashMap<PeerId, Relay>,
    /// Direct (not relayed) connections of every peer, with the address each was dialed at; a relay may be
    /// connected before it is added.
    connections: HashMap<PeerId, Vec<(ConnectionId, Option<Multiaddr>)>>,
    /// Circuit listeners the keeper opened or adopted, and their relay.
    listeners: HashMap<ListenerId, PeerId>,
    /// The scheduled retries, earliest first; one entry per waiting relay.
    deadlines: BTreeSet<(Instant, PeerId)>,
    /// The one timer, armed for the earliest deadline.
    timer: Option<(Instant, Delay)>,
    pending: VecDeque<ToSwarm<Event, FromBehaviour>>,
    /// Scratch space for the actions of one transition, kept to avoid an allocation per event.
    actions: Vec<Action>,
    stopped: bool,
    missing_transport_logged: bool,
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
            backoff: Backoff::new(&config),
            config,
            relays: HashMap::new(),
            connections: HashMap::new(),
            listeners: HashMap::new(),
            deadlines: BTreeSet::new(),
            timer: None,
            pending: VecDeque::new(),
            actions: Vec::new(),
            stopped: false,
            missing_transport_logged: false,
            waker: None,
        }
    }

    /// Keeps the relay at `addr`, a transport address ending in `/p2p/<relay peer id>`, and returns its peer id.
    ///
    /// The keeper uses a direct connection to the relay if there is one, and dials otherwise (a failed first
    /// dial is retried like a lost connection); once connected it requests a circuit reservation.
    ///
    /// For a relay that is kept already, `addr` is added to the addresses the keeper dials, and a relay the
    /// keeper gave up on is tried again at once, with a fresh backoff.
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
            if matches!(relay.state(), State::GaveUp { .. }) {
                self.drive(peer, Input::RetryNow);
            }
            return Ok(peer);
        }
        let connections = self.connections.get(&peer).map(Vec::as_slice).unwrap_or_default();
        let via = connections
            .first()
            .map(|(_, dialed)| dialed.clone().unwrap_or_else(|| addr.clone()));
        for (connection, _) in connections {
            self.pending.push_back(keep_alive(peer, *connection, true));
        }
        tracing::debug!(relay = %peer, %addr, connected = via.is_some(), "relay added");
        let mut env = Env {
            now: Instant::now(),
            config: &self.config,
            backoff: &mut self.backoff,
            actions: &mut self.actions,
        };
        let relay = Relay::new(peer, addr, via, &mut env);
        self.relays.insert(peer, relay);
        self.apply(peer, None);
        Ok(peer)
    }

    /// Stops keeping `relay`: cancels its retry, drops its queued dial, listen and events, removes the circuit
    /// listener the keeper opened on it and lets its connections idle out. Emits no event.
    ///
    /// Returns `false` if the relay is not kept.
    pub fn remove_relay(&mut self, relay: &PeerId) -> bool {
        let Some(removed) = self.relays.remove(relay) else {
            return false;
        };
        if let Some(deadline) = removed.deadline() {
            self.deadlines.remove(&(deadline, *relay));
        }
        self.listeners.retain(|_, peer| peer != relay);
        self.pending.retain(|action| !concerns(action, relay));
        if let Some(id) = removed.own_listener() {
            self.pending.push_back(ToSwarm::RemoveListener { id });
        }
        if !self.stopped {
            self.release_keep_alive(relay);
        }
        tracing::debug!(%relay, "relay removed");
        self.wake();
        true
    }

    /// Forgets the relay's backoff and tries now: dials it, or requests a reservation if it is connected.
    /// Revives a relay the keeper gave up on.
    ///
    /// Returns `false` if the relay is not kept or the keeper is stopped.
    pub fn retry_now(&mut self, relay: &PeerId) -> bool {
        if self.stopped || !self.relays.contains_key(relay) {
            return false;
        }
        self.drive(*relay, Input::RetryNow);
        true
    }

    /// Stops the keeper for good, like the seed's `stop()`: cancels every retry and drops queued dials,
    /// listens and events; no dial, listen or event follows, even for a dial that was in flight.
    /// Connections are no longer kept alive; circuit listeners are left as they are.
    ///
    /// Afterwards every relay's status is [`RelayStatus::Stopped`], [`add_relay`](Self::add_relay) returns
    /// [`AddRelayError::Stopped`] and [`retry_now`](Self::retry_now) returns `false`. Calling it again does
    /// nothing.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
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
        let relays: Vec<PeerId> = self.relays.keys().copied().collect();
        for relay in &relays {
            self.release_keep_alive(relay);
        }
        tracing::debug!(relays = relays.len(), "relay keeper stopped");
        self.wake();
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

    fn status_of(&self, relay: &Relay) -> RelayStatus {
        if self.stopped {
            RelayStatus::Stopped
        } else {
            relay.status()
        }
    }

    /// Feeds `input` to the state machine of `peer`, if it is kept and the keeper runs.
    fn drive(&mut self, peer: PeerId, input: Input) {
        if self.stopped {
            return;
        }
        let Some(relay) = self.relays.get_mut(&peer) else {
            return;
        };
        let before = relay.deadline();
        let mut env = Env {
            now: Instant::now(),
            config: &self.config,
            backoff: &mut self.backoff,
            actions: &mut self.actions,
        };
        relay.on(input, &mut env);
        self.apply(peer, before);
    }

    /// Carries out what a transition of `peer` asked for; `before` is its deadline before the transition.
    fn apply(&mut self, peer: PeerId, before: Option<Instant>) {
        let after = self.relays.get(&peer).and_then(Relay::deadline);
        let rescheduled = before != after;
        if rescheduled {
            if let Some(deadline) = before {
                self.deadlines.remove(&(deadline, peer));
            }
            if let Some(deadline) = after {
                self.deadlines.insert((deadline, peer));
            }
        }
        let acted = !self.actions.is_empty();
        for action in self.actions.drain(..) {
            match action {
                Action::Dial(opts) => {
                    tracing::debug!(relay = %peer, connection = %opts.connection_id(), "dialing relay");
                    self.pending.push_back(ToSwarm::Dial { opts });
                }
                Action::Listen(opts) => {
                    tracing::debug!(relay = %peer, addr = %opts.address(), "requesting circuit reservation");
                    self.listeners.insert(opts.listener_id(), peer);
                    self.pending.push_back(ToSwarm::ListenOn { opts });
                }
                Action::Emit(event) => {
                    log(&event);
                    self.pending.push_back(ToSwarm::GenerateEvent(event));
                }
            }
        }
        if acted || rescheduled {
            self.wake();
        }
    }

    fn release_keep_alive(&mut self, relay: &PeerId) {
        for (connection, _) in self.connections.get(relay).map(Vec::as_slice).unwrap_or_default() {
            self.pending.push_back(keep_alive(*relay, *connection, false));
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
        let connections = self.connections.entry(peer_id).or_default();
        connections.push((connection_id, dialed.clone()));
        if connections.len() > 1 {
            return;
        }
        let Some(relay) = self.relays.get(&peer_id) else {
            return;
        };
        let via = dialed.unwrap_or_else(|| relay.addrs()[0].clone());
        self.drive(
            peer_id,
            Input::Connected {
                connection: connection_id,
                via,
            },
        );
    }

    fn on_connection_closed(&mut self, event: ConnectionClosed<'_>) {
        let ConnectionClosed {
            peer_id,
            connection_id,
            endpoint,
            ..
        } = event;
        if endpoint.is_relayed() {
            return;
        }
        let Some(connections) = self.connections.get_mut(&peer_id) else {
            return;
        };
        connections.retain(|(id, _)| *id != connection_id);
        if connections.is_empty() {
            self.connections.remove(&peer_id);
            self.drive(peer_id, Input::Disconnected);
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
                },
            );
        }
    }

    fn on_new_listen_addr(&mut self, event: NewListenAddr<'_>) {
        let NewListenAddr { listener_id, addr } = event;
        if let Some(&peer) = self.listeners.get(&listener_id) {
            self.drive(
                peer,
                Input::ListenAddr {
                    listener: listener_id,
                    addr: addr.clone(),
                },
            );
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
        }
    }

    fn on_listener_closed(&mut self, event: ListenerClosed<'_>) {
        let ListenerClosed { listener_id, reason } = event;
        let Some(peer) = self.listeners.remove(&listener_id) else {
            return;
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
            },
        );
    }

    fn on_listener_error(&mut self, event: ListenerError<'_>) {
        let ListenerError { listener_id, err } = event;
        let Some(peer) = self.listeners.remove(&listener_id) else {
            return;
        };
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
                },
            );
            return;
        }
        if !self.missing_transport_logged {
            self.missing_transport_logged = true;
            tracing::error!(
                relay = %peer,
                "cannot reserve a circuit on the relay: the swarm has no relay client transport. Build the swarm \
                 with `SwarmBuilder::with_relay_client` and put the `relay::client::Behaviour` it hands out into \
                 your behaviour, or turn reservations off with `Config::with_reservations(false)`"
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
        _: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(Handler::new(self.keeps_alive(&peer, remote_addr)))
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
        Ok(Handler::new(self.keeps_alive(&peer, addr)))
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionEstablished(e) => self.on_connection_established(e),
            FromSwarm::ConnectionClosed(e) => self.on_connection_closed(e),
            FromSwarm::DialFailure(e) => self.on_dial_failure(e),
            FromSwarm::NewListenAddr(e) => self.on_new_listen_addr(e),
            FromSwarm::ListenerClosed(e) => self.on_listener_closed(e),
            FromSwarm::ListenerError(e) => self.on_listener_error(e),
            _ => {}
        }
    }

    fn on_connection_handler_event(&mut self, peer: PeerId, _: ConnectionId, event: THandlerOutEvent<Self>) {
        match event {
            ToBehaviour::HopEnabled => {
                tracing::debug!(relay = %peer, "peer offers the relay HOP protocol");
                self.drive(peer, Input::HopEnabled);
            }
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        loop {
            if let Some(action) = self.pending.pop_front() {
                return Poll::Ready(action);
            }
            let Some(&(deadline, relay)) = self.deadlines.first() else {
                self.timer = None;
                break;
            };
            let now = Instant::now();
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

fn keep_alive(peer: PeerId, connection: ConnectionId, on: bool) -> ToSwarm<Event, FromBehaviour> {
    ToSwarm::NotifyHandler {
        peer_id: peer,
        handler: NotifyHandler::One(connection),
        event: FromBehaviour::KeepAlive(on),
    }
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

fn log(event: &Event) {
    match event {
        Event::ReconnectScheduled {
            relay,
            attempt,
            delay,
        } => {
            tracing::debug!(%relay, attempt, ?delay, "relay retry scheduled")
        }
        Event::Reconnected { relay, attempts } => {
            tracing::info!(%relay, attempts, "relay connection restored")
        }
        Event::Reserved { relay, addr } => tracing::info!(%relay, %addr, "relay reservation live"),
        Event::GaveUp { relay, attempts } => {
            tracing::warn!(%relay, attempts, "gave up on relay; call add_relay or retry_now to try again")
        }
    }
}
