//! The keeper's sans-IO engine: every kept relay, the connections and listeners it knows of, the deadlines and
//! the queue of commands for the swarm. It has no timer, waker or swarm of its own: inputs and API calls come
//! with the current instant, [`Engine::poll_timeout`] says when it next needs [`Engine::handle_timeout`], and
//! [`Engine::poll_action`] hands out what to do, in the style of quinn-proto's `Connection`.
//!
//! Every entry point checks once whether the keeper was stopped, feeds its input to the relay's state machine
//! ([`Relay::on`]) and carries out the transition; then it settles the pool: it asks [`Pool::decide`] for the
//! next decision and carries that out, until there is none.
//!
//! [`RelayKeeper`](crate::RelayKeeper) is the adapter that feeds it from the swarm; tests drive it directly
//! on a clock they own.

use std::{
    collections::{BTreeSet, HashMap, HashSet, VecDeque},
    time::{Duration, Instant, SystemTime},
};

use libp2p::{
    core::{
        transport::{ListenerId, TransportError},
        ConnectedPoint,
    },
    swarm::{dial_opts::DialOpts, CloseConnection, ConnectionId, DialError, ListenOpts},
    Multiaddr, PeerId,
};

use crate::{
    address::{circuit_relay, is_relayed, relay_peer_id},
    backoff::Backoff,
    handler::ToBehaviour,
    history::{History, Moment},
    known::Known,
    link::Connection,
    listen_ips::ListenIps,
    metrics::Metrics,
    mistake::Mistake,
    pool::{Decision, Pool, Report, View},
    public_addrs::PublicAddrs,
    refusal::dial_refused,
    relay::{Action, Env, Input, Relay, Transition},
    sleep::SleepWatch,
    AddRelayError, Cause, CauseKind, Config, Event, GiveUpReason, RelayStatus, MAX_DISCOVERED,
};

/// What the engine asks of the swarm.
#[derive(Debug)]
pub(crate) enum Command {
    Dial(DialOpts),
    Listen(ListenOpts),
    RemoveListener(ListenerId),
    /// Close `connection` to `peer`: a silent one, or every pending dial.
    Close {
        peer: PeerId,
        connection: CloseConnection,
    },
    /// Tell the handler of `connection` to `peer` whether to keep the connection alive.
    KeepAlive {
        peer: PeerId,
        connection: ConnectionId,
        on: bool,
    },
    /// Tell the handler of `connection` to `peer` to probe it now: the node's network changed under it.
    ProbeNow {
        peer: PeerId,
        connection: ConnectionId,
    },
    Emit(Event),
}

impl Command {
    /// Whether the command is on behalf of `relay`.
    fn concerns(&self, relay: &PeerId) -> bool {
        match self {
            Command::Dial(opts) => opts.get_peer_id() == Some(*relay),
            Command::Listen(opts) => circuit_relay(opts.address()) == Some(*relay),
            // What the node as a whole became stays news after the relay it names is gone.
            Command::Emit(Event::Reachable { .. } | Event::Unreachable { .. } | Event::PoolShort { .. }) => {
                false
            }
            Command::Emit(event) => event.relay() == *relay,
            Command::KeepAlive { peer, on: true, .. } | Command::ProbeNow { peer, .. } => peer == relay,
            // Releasing a connection is what a removal wants too (and all that is left after `stop`).
            Command::KeepAlive { on: false, .. } | Command::RemoveListener(_) | Command::Close { .. } => {
                false
            }
        }
    }
}

/// How much room for queued commands the engine keeps once the queue is empty.
const COMMANDS_CAPACITY_KEPT: usize = 16;

/// What every relay's transitions share, apart from the relays, so a transition can borrow both.
struct Shared {
    config: Config,
    backoff: Backoff,
    /// What the transition under way asked for.
    actions: Vec<Action>,
    /// Reservations are paused while the node is publicly reachable.
    paused: bool,
    /// A connection handler reported that the node runs identify. Learned, not configured: a behaviour cannot
    /// see the others in the swarm, while every connection tells its handlers which protocols the node offers.
    identify: bool,
}

impl Shared {
    fn env(&mut self, relay: PeerId, discovered: bool, now: Instant) -> Env<'_> {
        Env {
            relay,
            now,
            config: &self.config,
            backoff: &mut self.backoff,
            actions: &mut self.actions,
            paused: self.paused,
            discovered,
            identify: self.identify,
        }
    }
}

/// A kept relay: its state machine, and how the keeper came to keep it.
struct Kept {
    relay: Relay,
    /// Found among connected peers ([`Config::with_discovery`]) rather than given to `add_relay`.
    discovered: bool,
    /// Its service so far, for the snapshot of known relays and the pool's preference.
    history: History,
}

/// Every kept relay on an explicit clock.
pub(crate) struct Engine {
    shared: Shared,
    /// Boxed: a hash table has up to twice as many slots as entries, and each slot would hold a whole relay
    /// (BENCHMARKS.md, memory per kept relay).
    relays: HashMap<PeerId, Box<Kept>>,
    /// Direct (not relayed) connections of every peer that is not a kept relay (a kept relay holds its own),
    /// with the address each was dialed at; a relay may be connected before it is added.
    connections: HashMap<PeerId, Vec<Connection>>,
    /// Circuit listeners the keeper opened or adopted, and their relay.
    listeners: HashMap<ListenerId, PeerId>,
    /// Every relay's deadline, earliest first; at most one per relay.
    deadlines: BTreeSet<(Instant, PeerId)>,
    commands: VecDeque<Command>,
    /// How many relays have live circuit addresses: the node is reachable while this is not 0.
    reachable_through: usize,
    /// Connections the keeper closed because their probe timed out, with their peer, until the swarm reports
    /// them closed.
    probe_closed: HashMap<ConnectionId, PeerId>,
    /// The fixes logged already, by cause or reason; each is logged once.
    fixes_logged: HashSet<&'static str>,
    stopped: bool,
    metrics: Metrics,
    /// With [`Config::with_max_reservations`]: the slots and the standbys.
    pool: Option<Pool>,
    /// How many kept relays were discovered.
    discovered: usize,
    /// The node's public addresses, for the pause while it is publicly reachable.
    public_addrs: PublicAddrs,
    /// The clocks at the last poll, to notice that the machine slept.
    sleep: SleepWatch,
    /// The node's own network addresses, as its listeners report them.
    listen_ips: ListenIps,
}

impl View for HashMap<PeerId, Box<Kept>> {
    fn connected(&self, relay: &PeerId) -> bool {
        self.get(relay)
            .is_some_and(|kept| !kept.relay.connections().is_empty())
    }

    fn discovered(&self, relay: &PeerId) -> bool {
        self.get(relay).is_some_and(|kept| kept.discovered)
    }

    fn served(&self, relay: &PeerId) -> Option<Moment> {
        self.get(relay).and_then(|kept| kept.history.served)
    }
}

impl Engine {
    pub(crate) fn new(config: Config) -> Self {
        Self {
            shared: Shared {
                backoff: Backoff::new(&config),
                config: config.clone(),
                actions: Vec::new(),
                paused: false,
                identify: false,
            },
            relays: HashMap::new(),
            connections: HashMap::new(),
            listeners: HashMap::new(),
            deadlines: BTreeSet::new(),
            commands: VecDeque::new(),
            reachable_through: 0,
            probe_closed: HashMap::new(),
            fixes_logged: HashSet::new(),
            stopped: false,
            metrics: Metrics::default(),
            pool: Pool::new(&config),
            discovered: 0,
            public_addrs: PublicAddrs::default(),
            sleep: SleepWatch::default(),
            listen_ips: ListenIps::default(),
        }
    }

    pub(crate) fn config(&self) -> &Config {
        &self.shared.config
    }

    #[cfg(feature = "metrics")]
    pub(crate) fn register_metrics(
        &mut self,
        registry: &mut prometheus_client::registry::Registry,
        now: Instant,
    ) {
        let statuses: Vec<RelayStatus> = self
            .relays
            .values()
            .map(|kept| self.status_of(&kept.relay))
            .collect();
        let pool_target = self.pool.as_ref().map_or(0, Pool::target);
        self.metrics
            .register(registry, statuses.into_iter(), pool_target, now);
        self.count_candidates();
    }

    // The API, as `RelayKeeper` documents it.

    pub(crate) fn add_relay(&mut self, addr: Multiaddr, now: Instant) -> Result<PeerId, AddRelayError> {
        if self.stopped {
            return Err(AddRelayError::Stopped);
        }
        let peer = relay_peer_id(&addr)?;
        if let Some(kept) = self.relays.get_mut(&peer) {
            if std::mem::take(&mut kept.discovered) {
                self.discovered -= 1;
                self.count_candidates();
            }
            self.input(peer, Input::Added(addr), now);
            return Ok(peer);
        }
        self.keep(peer, addr, false, History::new(now), now);
        Ok(peer)
    }

    /// Starts keeping the relay `peer` at `addr`, given by the application or `discovered`, with what is
    /// known of its service.
    fn keep(&mut self, peer: PeerId, addr: Multiaddr, discovered: bool, history: History, now: Instant) {
        // A kept relay owns its connections; they may have been made before it was added.
        let links = self.connections.remove(&peer).unwrap_or_default();
        self.keep_alive(peer, &links, true);
        tracing::debug!(relay = %peer, %addr, connected = !links.is_empty(), discovered, "relay added");
        let (relay, transition) = Relay::new(addr, links, &mut self.shared.env(peer, discovered, now));
        self.discovered += usize::from(discovered);
        let kept = Kept {
            relay,
            discovered,
            history,
        };
        self.relays.insert(peer, Box::new(kept));
        self.count_candidates();
        self.apply(peer, transition, now);
        // While paused nothing is promoted, so nothing is displaced either.
        if let Some(pool) = self.pool.as_mut().filter(|_| !self.shared.paused) {
            pool.added(peer);
        }
        self.settle(now);
    }

    fn count_candidates(&self) {
        self.metrics
            .on_candidates(self.relays.len() - self.discovered, self.discovered);
    }

    /// A peer the node dialed offers HOP on `connection`: with discovery on, and room for it, it becomes a
    /// candidate of the pool, reserved through the address that connection was dialed at.
    fn discover(&mut self, peer: PeerId, connection: ConnectionId, now: Instant) {
        if !self.shared.config.discovery() || self.discovered >= MAX_DISCOVERED {
            return;
        }
        // Relayed connections are not recorded, and inbound ones have no address to reserve through. A
        // dialed address naming another peer cannot have reached `peer`.
        let Some(Ok(addr)) = self
            .connections
            .get(&peer)
            .and_then(|links| links.iter().find(|(id, _)| *id == connection))
            .and_then(|(_, dialed)| dialed.clone())
            .map(|dialed| dialed.with_p2p(peer))
        else {
            return;
        };
        tracing::info!(relay = %peer, %addr, "a connected peer offers HOP: kept as a discovered relay");
        self.keep(peer, addr, true, History::new(now), now);
    }

    pub(crate) fn remove_relay(&mut self, relay: &PeerId, now: Instant) -> bool {
        if !self.drop_relay(*relay, now) {
            return false;
        }
        // Stopping ended the pool's decisions.
        if !self.stopped {
            self.settle(now);
            self.report_pool(*relay);
        }
        true
    }

    /// Stops keeping `peer`. Its removal is its last input: its listener is withdrawn, and if it was the last
    /// relay the node was reachable through, the node is unreachable. Its connections go back to the peers
    /// that are not kept. Says whether it was kept.
    fn drop_relay(&mut self, peer: PeerId, now: Instant) -> bool {
        let Some(kept) = self.relays.remove(&peer) else {
            return false;
        };
        let Kept {
            relay: mut removed,
            discovered,
            ..
        } = *kept;
        self.commands.retain(|command| !command.concerns(&peer));
        let status = self.status_of(&removed);
        let transition = removed.on(Input::Removed, &mut self.shared.env(peer, discovered, now));
        self.listeners.retain(|_, relay| *relay != peer);
        // The node's loss of its last circuit is news before the listener goes. A stopped keeper follows
        // reachability no longer.
        if transition.reachable.0 && !self.stopped {
            self.lost_reachability(peer);
        }
        for action in std::mem::take(&mut self.shared.actions) {
            if let Action::RemoveListener(id) = action {
                self.commands.push_back(Command::RemoveListener(id));
            }
        }
        self.discovered -= usize::from(discovered);
        self.count_candidates();
        if let Some(deadline) = transition.deadline.0 {
            self.deadlines.remove(&(deadline, peer));
        }
        self.metrics.on_transition(Some(status), None, None, now);
        if let Some(pool) = &mut self.pool {
            pool.forget(peer);
        }
        let connections = removed.into_connections();
        tracing::debug!(relay = %peer, "relay removed");
        // Stopping released every connection already.
        if !self.stopped {
            self.keep_alive(peer, &connections, false);
        }
        if !connections.is_empty() {
            self.connections.insert(peer, connections);
        }
        true
    }

    pub(crate) fn retry_now(&mut self, relay: &PeerId, now: Instant) -> bool {
        let retryable = self.relays.get(relay).is_some_and(|kept| kept.relay.retryable());
        if self.stopped || !retryable {
            return false;
        }
        self.input(*relay, Input::RetryNow, now);
        true
    }

    pub(crate) fn stop(&mut self, now: Instant) {
        if self.stopped {
            return;
        }
        self.remember_goals(now);
        for kept in self.relays.values() {
            self.metrics
                .on_transition(Some(kept.relay.status()), Some(RelayStatus::Stopped), None, now);
        }
        self.stopped = true;
        // Nothing is due any more, and the keeper follows neither reservations nor public addresses.
        self.deadlines.clear();
        self.public_addrs.stop();
        self.reachable_through = 0;
        self.commands
            .retain(|command| matches!(command, Command::KeepAlive { .. } | Command::RemoveListener(_)));
        let relays = std::mem::take(&mut self.relays);
        for (peer, kept) in &relays {
            self.keep_alive(*peer, kept.relay.connections(), false);
        }
        self.relays = relays;
        tracing::debug!(relays = self.relays.len(), "relay keeper stopped");
    }

    pub(crate) fn network_changed(&mut self, now: Instant) -> usize {
        if self.stopped {
            return 0;
        }
        // A link that survived the change may be dead now (a new address, a laptop that slept): probe the
        // relays that are still connected at once instead of an interval later.
        let probes: Vec<Command> = self
            .relays
            .iter()
            .flat_map(|(peer, kept)| {
                kept.relay
                    .connections()
                    .iter()
                    .map(|(connection, _)| Command::ProbeNow {
                        peer: *peer,
                        connection: *connection,
                    })
            })
            .collect();
        self.commands.extend(probes);
        let peers: Vec<PeerId> = self.relays.keys().copied().collect();
        let retried = peers
            .into_iter()
            .filter_map(|peer| self.input(peer, Input::NetworkChanged, now))
            .filter(|transition| transition.status.0 != Some(transition.status.1))
            .count();
        if retried > 0 {
            tracing::info!(relays = retried, "network changed: retrying relays now");
        }
        retried
    }

    /// Both clocks as the adapter read them at a poll: a wall clock that moved much further than `now` since the
    /// last poll means the machine slept, and its links may be dead while they look alive, as after a network
    /// change.
    pub(crate) fn on_clocks(&mut self, now: Instant, wall: SystemTime) {
        if let Some(slept) = self.sleep.observe(now, wall) {
            tracing::info!(
                ?slept,
                "the machine slept: treating the wake-up as a network change"
            );
            self.network_changed(now);
        }
    }

    /// The live circuit addresses; none after `stop`, which no longer follows the listeners.
    pub(crate) fn circuit_addrs(&self) -> impl Iterator<Item = &Multiaddr> + '_ {
        self.relays
            .values()
            .filter(|_| !self.stopped)
            .flat_map(|kept| kept.relay.circuits())
    }

    pub(crate) fn status(&self, relay: &PeerId) -> Option<RelayStatus> {
        self.relays.get(relay).map(|kept| self.status_of(&kept.relay))
    }

    pub(crate) fn relays(&self) -> impl Iterator<Item = (PeerId, RelayStatus)> + '_ {
        self.relays
            .iter()
            .map(|(peer, kept)| (*peer, self.status_of(&kept.relay)))
    }

    /// The addresses to dial `peer` at: a kept relay's own; none for other peers.
    pub(crate) fn addrs_of(&self, peer: &PeerId) -> &[Multiaddr] {
        self.relays
            .get(peer)
            .map(|kept| kept.relay.addrs())
            .unwrap_or_default()
    }

    /// Whether a new connection to `peer` at `addr` (its remote address if outbound, its local one if
    /// inbound) is to be kept alive: a direct connection to a kept relay while the keeper runs.
    pub(crate) fn keeps_alive(&self, peer: &PeerId, addr: &Multiaddr) -> bool {
        !self.stopped && self.relays.contains_key(peer) && !is_relayed(addr)
    }

    // The clock.

    /// When [`handle_timeout`](Self::handle_timeout) is due next; `None` while nothing is timed.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let relay = self.deadlines.first().map(|(deadline, _)| *deadline);
        [relay, self.pause_at()].into_iter().flatten().min()
    }

    /// When the reservations are to be paused: once a public address held long enough.
    fn pause_at(&self) -> Option<Instant> {
        let hold = self.shared.config.pause_while_public()?;
        let since = self.public_addrs.since().filter(|_| !self.shared.paused)?;
        Some(since + hold)
    }

    /// Fires the deadlines that are due by `now`, until one of them queues a command: a burst of due retries
    /// goes out one at a time, as the swarm takes them, instead of piling up in the queue (BENCHMARKS.md, time
    /// per timer firing). Call it again once the queue is empty; [`poll_timeout`](Self::poll_timeout) says
    /// whether anything is still due.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self.pause_at().is_some_and(|at| at <= now) {
            self.pause(now);
        }
        while self.commands.is_empty() {
            match self.deadlines.first() {
                Some(&(deadline, relay)) if deadline <= now => {
                    self.deadlines.pop_first();
                    self.input(relay, Input::TimerFired, now);
                }
                _ => break,
            }
        }
    }

    /// The next thing the swarm must do, oldest first.
    pub(crate) fn poll_action(&mut self) -> Option<Command> {
        let command = self.commands.pop_front();
        if let Some(Command::Emit(event)) = &command {
            self.announce(event);
        }
        // A burst (every relay added, or lost, at once) must not leave its queue's memory behind (BENCHMARKS.md,
        // memory per kept relay).
        if command.is_none() && self.commands.capacity() > COMMANDS_CAPACITY_KEPT {
            self.commands.shrink_to(COMMANDS_CAPACITY_KEPT);
        }
        command
    }

    // What the swarm reports.

    pub(crate) fn on_connection_established(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        endpoint: &ConnectedPoint,
        now: Instant,
    ) {
        if self.stopped || endpoint.is_relayed() {
            return;
        }
        let dialed = match endpoint {
            ConnectedPoint::Dialer { address, .. } => Some(address.clone()),
            ConnectedPoint::Listener { .. } => None,
        };
        if self.relays.contains_key(&peer) {
            self.input(peer, Input::ConnectionEstablished { connection, dialed }, now);
            return;
        }
        // Most peers have one connection; a default Vec would make room for four (BENCHMARKS.md, memory per
        // connected peer).
        self.connections
            .entry(peer)
            .or_insert_with(|| Vec::with_capacity(1))
            .push((connection, dialed));
    }

    pub(crate) fn on_connection_closed(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        endpoint: &ConnectedPoint,
        error: Option<&dyn std::error::Error>,
        now: Instant,
    ) {
        if self.stopped || endpoint.is_relayed() {
            return;
        }
        let cause = if self.probe_closed.remove(&connection).is_some() {
            Cause::probe_timeout()
        } else {
            Cause::connection_lost(error)
        };
        if let Some(kept) = self.relays.get(&peer) {
            let last = kept.relay.connections().iter().all(|(id, _)| *id == connection);
            if !(kept.discovered && last) {
                self.input(peer, Input::ConnectionClosed { connection, cause }, now);
                return;
            }
            tracing::info!(relay = %peer, "a discovered relay disconnected; no longer kept");
            // Its connections go back to the peers that are not kept; this one is dropped below.
            self.drop_relay(peer, now);
            self.settle(now);
            self.report_pool(peer);
        }
        if let Some(links) = self.connections.get_mut(&peer) {
            links.retain(|(id, _)| *id != connection);
            if links.is_empty() {
                self.connections.remove(&peer);
            }
        }
    }

    pub(crate) fn on_dial_failure(
        &mut self,
        peer: Option<PeerId>,
        connection: ConnectionId,
        error: &DialError,
        now: Instant,
    ) {
        let Some(peer) = peer.filter(|peer| !self.stopped && self.relays.contains_key(peer)) else {
            return;
        };
        let input = if let DialError::DialPeerConditionFalse(_) = error {
            Input::DialSkipped { connection }
        } else {
            tracing::debug!(relay = %peer, %connection, %error, "dial to relay failed");
            Input::DialFailed {
                connection,
                cause: Cause::dial_failed(error),
                mistake: Mistake::of(error),
                refused: dial_refused(error),
            }
        };
        self.input(peer, input, now);
    }

    pub(crate) fn on_new_listen_addr(&mut self, listener: ListenerId, addr: &Multiaddr, now: Instant) {
        if self.stopped {
            return;
        }
        if !is_relayed(addr) {
            tracing::debug!(%addr, "new listen address");
            if self.listen_ips.appeared(addr) {
                self.network_changed(now);
            }
            return;
        }
        if let Some(&peer) = self.listeners.get(&listener) {
            let addr = addr.clone();
            self.input(peer, Input::ListenAddr { listener, addr }, now);
            return;
        }
        if let Some(peer) = circuit_relay(addr).filter(|peer| self.relays.contains_key(peer)) {
            let addr = addr.clone();
            self.input(peer, Input::ForeignReservation { listener, addr }, now);
        }
    }

    /// The swarm confirmed an external address of the node; one that is no circuit address makes the node
    /// publicly reachable.
    pub(crate) fn on_external_addr_confirmed(&mut self, addr: &Multiaddr, now: Instant) {
        if !self.stopped && self.public_addrs.confirmed(addr, now) {
            tracing::debug!(%addr, "public address confirmed");
        }
    }

    /// An external address of the node expired; once no public one is left, paused reservations resume.
    pub(crate) fn on_external_addr_expired(&mut self, addr: &Multiaddr, now: Instant) {
        let none_left = self.public_addrs.expired(addr);
        if !self.stopped && none_left && self.shared.paused {
            self.resume(now);
        }
    }

    /// Releases every reservation the keeper holds while the node is publicly reachable.
    fn pause(&mut self, now: Instant) {
        tracing::info!("the node is publicly reachable: releasing its relay reservations");
        self.shared.paused = true;
        if let Some(pool) = &mut self.pool {
            pool.pause();
        }
        let peers: Vec<PeerId> = self.relays.keys().copied().collect();
        for peer in peers {
            self.step(peer, Input::Pause, now);
        }
    }

    fn resume(&mut self, now: Instant) {
        tracing::info!("the node is no longer publicly reachable: reserving on its relays again");
        self.shared.paused = false;
        // Every relay first, then the pool's choice among them all: connected ones first.
        let peers: Vec<PeerId> = self.relays.keys().copied().collect();
        for peer in peers {
            self.step(peer, Input::Resume, now);
        }
        self.settle(now);
    }

    pub(crate) fn on_expired_listen_addr(&mut self, listener: ListenerId, addr: &Multiaddr, now: Instant) {
        if self.stopped {
            return;
        }
        // An address the node lost (Wi-Fi off while cellular stays up reports only this).
        if !is_relayed(addr) {
            tracing::debug!(%addr, "listen address expired");
            if self.listen_ips.expired(addr) {
                self.network_changed(now);
            }
            return;
        }
        if let Some(&peer) = self.listeners.get(&listener) {
            let addr = addr.clone();
            self.input(peer, Input::ListenAddrExpired { listener, addr }, now);
        }
    }

    pub(crate) fn on_listener_closed(
        &mut self,
        listener: ListenerId,
        reason: Result<(), &std::io::Error>,
        now: Instant,
    ) {
        if self.stopped {
            return;
        }
        let Some(peer) = self.listener_gone(listener) else {
            return;
        };
        // The relay client closes a reservation's listener when its connection goes, sometimes before the
        // swarm reports the connection closed: if the keeper closed a silent one, that is the cause.
        let cause = match reason {
            Err(error) => {
                tracing::debug!(relay = %peer, ?listener, %error, "reservation refused or lost");
                Cause::from_listener_error(error)
            }
            Ok(()) if self.probe_closed.values().any(|p| *p == peer) => Cause::probe_timeout(),
            Ok(()) => {
                tracing::debug!(relay = %peer, ?listener, "circuit listener closed");
                Cause::reservation_lost()
            }
        };
        let refused = reason.is_err();
        let input = Input::ListenerClosed {
            listener,
            refused,
            cause,
        };
        self.input(peer, input, now);
    }

    pub(crate) fn on_listener_error(
        &mut self,
        listener: ListenerId,
        error: &(dyn std::error::Error + 'static),
        now: Instant,
    ) {
        if self.stopped {
            return;
        }
        let Some(peer) = self.listener_gone(listener) else {
            return;
        };
        let unsupported = matches!(
            error.downcast_ref::<TransportError<std::io::Error>>(),
            Some(TransportError::MultiaddrNotSupported(_))
        );
        let input = if unsupported {
            if self.fixes_logged.insert(GiveUpReason::NoRelayTransport.as_str()) {
                tracing::error!(
                    relay = %peer,
                    "cannot reserve a circuit on the relay: the swarm has no relay client transport. {}",
                    GiveUpReason::NoRelayTransport.fix()
                );
            }
            Input::ListenerUnsupported { listener }
        } else {
            tracing::debug!(relay = %peer, ?listener, %error, "circuit listener failed");
            Input::ListenerClosed {
                listener,
                refused: true,
                cause: Cause::new(CauseKind::ProtocolError, error),
            }
        };
        self.input(peer, input, now);
    }

    /// Forgets a closed or failed listener of the keeper's; returns its relay.
    fn listener_gone(&mut self, listener: ListenerId) -> Option<PeerId> {
        self.listeners.remove(&listener)
    }

    /// What the keeper's connection handler reports.
    pub(crate) fn on_handler_event(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        event: ToBehaviour,
        now: Instant,
    ) {
        if self.stopped {
            return;
        }
        match event {
            ToBehaviour::HopEnabled => {
                tracing::debug!(relay = %peer, "peer offers the relay HOP protocol");
                if self.input(peer, Input::HopEnabled, now).is_none() {
                    self.discover(peer, connection, now);
                }
            }
            ToBehaviour::HopAbsent if self.relays.contains_key(&peer) => {
                tracing::debug!(relay = %peer, "relay's protocols are known; it does not offer HOP (yet)");
                self.input(peer, Input::HopAbsent, now);
            }
            // Any other peer: nothing to reserve on.
            ToBehaviour::HopAbsent => {}
            ToBehaviour::IdentifyRuns => self.shared.identify = true,
            ToBehaviour::HopDisabled => match self.relays.get(&peer).map(|kept| kept.discovered) {
                Some(true) => {
                    tracing::info!(relay = %peer, "a discovered relay stopped offering HOP; no longer kept");
                    self.drop_relay(peer, now);
                    self.settle(now);
                    self.report_pool(peer);
                }
                // A relay the application gave: kept, and not asked while HOP is missing.
                Some(false) => {
                    self.input(peer, Input::HopAbsent, now);
                }
                None => {}
            },
            ToBehaviour::ProbeAnswered(rtt) => {
                tracing::trace!(relay = %peer, %connection, ?rtt, "probe answered");
                self.metrics.on_probe_answered(rtt);
                if let Some(kept) = self.relays.get_mut(&peer) {
                    kept.relay.measured(rtt);
                }
            }
            ToBehaviour::ProbeTimedOut => {
                if !self.relays.contains_key(&peer) {
                    return;
                }
                tracing::debug!(relay = %peer, %connection, "probe timed out; closing the silent connection");
                self.probe_closed.insert(connection, peer);
                self.commands.push_back(Command::Close {
                    peer,
                    connection: CloseConnection::One(connection),
                });
            }
        }
    }

    // Carrying out transitions.

    fn status_of(&self, relay: &Relay) -> RelayStatus {
        if self.stopped {
            RelayStatus::Stopped
        } else {
            relay.status()
        }
    }

    /// Feeds `input` to the kept relay `peer` and settles the pool; says when that left the pool short.
    /// `None` if `peer` is not kept.
    fn input(&mut self, peer: PeerId, input: Input, now: Instant) -> Option<Transition> {
        let transition = self.step(peer, input, now)?;
        self.settle(now);
        self.report_pool(peer);
        Some(transition)
    }

    /// Feeds `input` to the kept relay `peer` and carries out its transition, nothing more.
    fn step(&mut self, peer: PeerId, input: Input, now: Instant) -> Option<Transition> {
        let kept = self.relays.get_mut(&peer)?;
        let transition = kept
            .relay
            .on(input, &mut self.shared.env(peer, kept.discovered, now));
        self.apply(peer, transition, now);
        Some(transition)
    }

    /// Carries out the pool's decisions until it has none left. None while reservations are paused.
    fn settle(&mut self, now: Instant) {
        if self.shared.paused {
            return;
        }
        while let Some(decision) = self.pool.as_mut().and_then(|pool| pool.decide(&self.relays)) {
            match decision {
                Decision::Demote(relay) => {
                    tracing::debug!(%relay, "relay waiting out a backoff gives its pool slot to a standby");
                    self.metrics.on_failover();
                    self.retract_retries(relay);
                    self.step(relay, Input::Demote, now);
                }
                Decision::Promote {
                    relay,
                    delay,
                    replaces,
                } => self.promote(relay, delay, replaces, now),
                Decision::Swap {
                    demote,
                    promote,
                    delay,
                } => {
                    tracing::debug!(relay = %promote, replaces = %demote, ?delay, "promoting a new candidate");
                    self.step(demote, Input::Demote, now);
                    self.step(promote, Input::Promote { delay }, now);
                }
            }
        }
    }

    /// Promotes the standby `relay`, to try after `delay`, into the slot `replaces` lost if it lost one; the
    /// first time in `replaces`'s outage, that is news.
    fn promote(&mut self, relay: PeerId, delay: Duration, replaces: Option<PeerId>, now: Instant) {
        tracing::debug!(%relay, ?delay, "promoting a standby relay");
        self.step(relay, Input::Promote { delay }, now);
        let news = replaces.filter(|from| self.pool.as_mut().is_some_and(|pool| pool.announce(*from)));
        if let Some(from) = news {
            self.emit(Event::FailedOver { relay, from });
        }
    }

    /// Takes back the retries `relay` announced in the input under way: moved to standby, it is not retried,
    /// so they were never news.
    fn retract_retries(&mut self, relay: PeerId) {
        self.commands.retain(
            |command| !matches!(command, Command::Emit(Event::ReconnectScheduled { relay: r, .. }) if *r == relay),
        );
    }

    /// Says when `peer`'s loss, failure or removal left the pool short with no standby stepping in, and when
    /// its recovery filled the pool again. Not while paused: the pause releases the slots on purpose.
    fn report_pool(&mut self, peer: PeerId) {
        if self.shared.paused {
            return;
        }
        let event = match self.pool.as_mut().and_then(Pool::report) {
            Some(Report::Short { reserved, target }) => Event::PoolShort {
                relay: peer,
                reserved,
                target,
            },
            Some(Report::Full { target }) => Event::PoolFull { relay: peer, target },
            None => return,
        };
        self.emit(event);
    }

    /// Carries out what a transition of `peer` changed and asked for.
    fn apply(&mut self, peer: PeerId, transition: Transition, now: Instant) {
        self.remember(peer, &transition, now);
        let (before, after) = transition.deadline;
        if before != after {
            if let Some(deadline) = before {
                self.deadlines.remove(&(deadline, peer));
            }
            if let Some(deadline) = after {
                self.deadlines.insert((deadline, peer));
            }
        }
        let (before, after) = transition.status;
        self.metrics
            .on_transition(before, Some(after), transition.restored_after, now);
        // Only with a pool: a lookup in the relay table costs as much as the rest of a timer firing.
        if let Some(pool) = &mut self.pool {
            if let Some(kept) = self.relays.get(&peer) {
                pool.update(peer, kept.relay.standing());
            }
        }
        for action in std::mem::take(&mut self.shared.actions) {
            match action {
                Action::Dial(opts) => {
                    tracing::debug!(relay = %peer, connection = %opts.connection_id(), "dialing relay");
                    self.commands.push_back(Command::Dial(opts));
                }
                Action::AbortDials => {
                    tracing::debug!(relay = %peer, "dial to relay timed out; aborting it");
                    self.commands.push_back(Command::Close {
                        peer,
                        connection: CloseConnection::All,
                    });
                }
                Action::Close(connection) => self.commands.push_back(Command::Close {
                    peer,
                    connection: CloseConnection::One(connection),
                }),
                Action::RemoveListener(id) => {
                    tracing::debug!(relay = %peer, listener = ?id, "withdrawing the keeper's reservation");
                    self.listeners.remove(&id);
                    self.commands.push_back(Command::RemoveListener(id));
                }
                Action::Listen(opts) => {
                    tracing::debug!(relay = %peer, addr = %opts.address(), "requesting circuit reservation");
                    self.listeners.insert(opts.listener_id(), peer);
                    self.commands.push_back(Command::Listen(opts));
                }
                Action::Adopt { listener } => {
                    tracing::debug!(relay = %peer, ?listener, "adopted the application's circuit listener");
                    self.listeners.insert(listener, peer);
                }
                Action::Emit(event) => self.emit(event),
            }
        }
        match transition.reachable {
            (false, true) => self.gained_reachability(peer),
            (true, false) => self.lost_reachability(peer),
            _ => {}
        }
    }

    /// Tells the handlers of `links`, connections to `peer`, to keep them alive or not.
    fn keep_alive(&mut self, peer: PeerId, links: &[Connection], on: bool) {
        self.commands
            .extend(links.iter().map(|(connection, _)| Command::KeepAlive {
                peer,
                connection: *connection,
                on,
            }));
    }

    /// `peer` has live circuit addresses now; the first relay that has makes the node reachable.
    fn gained_reachability(&mut self, peer: PeerId) {
        self.reachable_through += 1;
        let addr = self
            .relays
            .get(&peer)
            .and_then(|kept| kept.relay.circuits().next().cloned());
        if let (1, Some(addr)) = (self.reachable_through, addr) {
            self.emit(Event::Reachable { relay: peer, addr });
        }
    }

    /// `peer` has no live circuit address any more; if it was the last relay the node was reachable through,
    /// the node is unreachable. A pause releases the reservations on purpose: the node is reachable without.
    fn lost_reachability(&mut self, peer: PeerId) {
        self.reachable_through -= 1;
        if self.reachable_through == 0 && !self.shared.paused {
            self.emit(Event::Unreachable { relay: peer });
        }
    }

    /// Queues `event`; it is logged and counted when the swarm takes it, so an event taken back before
    /// (a retry of a relay the pool then moved to standby) never shows.
    fn emit(&mut self, event: Event) {
        self.commands.push_back(Command::Emit(event));
    }

    /// Logs and counts an event the swarm takes now.
    fn announce(&mut self, event: &Event) {
        event.log();
        // Once per cause, the fix for a cause that retrying alone does not cure.
        if let Event::ReconnectScheduled { relay, cause, .. } = event {
            if let Some(fix) = cause.kind.fix() {
                if self.fixes_logged.insert(fix) {
                    tracing::warn!(%relay, cause = %cause.kind, error = %cause.message, "{fix}");
                }
            }
        }
        self.metrics.on_event(event);
    }
}

// Known relays across a restart of the node.
impl Engine {
    /// Keeps the relay of a snapshot's entry, with what the snapshot knows of it; for a kept relay, adds what
    /// the snapshot knows beyond what the keeper does. A candidate that served later than a promoted relay
    /// that has not been dialed yet takes its place.
    pub(crate) fn add_known(&mut self, known: Known, now: Instant) -> Result<(), AddRelayError> {
        if self.stopped {
            return Err(AddRelayError::Stopped);
        }
        let Known { peer, addrs, history } = known;
        let mut addrs = addrs.into_iter();
        match self.relays.get_mut(&peer) {
            Some(kept) => {
                kept.history.merge(history);
                // Only a standby may take a promoted relay's place.
                let eligible = kept.relay.standing().eligible;
                if let Some(pool) = self.pool.as_mut().filter(|_| eligible && !self.shared.paused) {
                    pool.added(peer);
                }
            }
            None => {
                let Some(addr) = addrs.next() else {
                    return Ok(());
                };
                self.keep(peer, addr, false, history, now);
            }
        }
        for addr in addrs {
            if !self.addrs_of(&peer).contains(&addr) {
                self.input(peer, Input::Added(addr), now);
            }
        }
        self.settle(now);
        Ok(())
    }

    /// Every kept relay with its addresses and service until `now`.
    pub(crate) fn known(&self, now: Instant) -> Vec<Known> {
        self.relays
            .iter()
            .map(|(peer, kept)| {
                let mut history = kept.history.clone();
                if !self.stopped && in_goal(kept.relay.status(), &self.shared.config) {
                    history.served(now);
                }
                Known {
                    peer: *peer,
                    addrs: kept.relay.addrs().to_vec(),
                    history,
                }
            })
            .collect()
    }

    /// Notes what the transition of `peer` under way tells of its service: it was in its goal until `now`, or
    /// it failed (a retry was scheduled, with its cause). A freshly restarted relay's "not yet" is no failure.
    fn remember(&mut self, peer: PeerId, transition: &Transition, now: Instant) {
        let (before, after) = transition.status;
        let config = &self.shared.config;
        let served = before.is_some_and(|s| in_goal(s, config)) || in_goal(after, config);
        let failure = self.shared.actions.iter().rev().find_map(|action| match action {
            Action::Emit(Event::ReconnectScheduled { cause, .. }) if cause.kind != CauseKind::AwaitingHop => {
                Some(cause)
            }
            _ => None,
        });
        if !served && failure.is_none() {
            return;
        }
        let Some(kept) = self.relays.get_mut(&peer) else {
            return;
        };
        if served {
            kept.history.served(now);
        }
        if let Some(cause) = failure {
            kept.history.failed(cause, now);
        }
    }

    /// Notes that the relays in their goal were so until `now`, when the keeper stops following them.
    fn remember_goals(&mut self, now: Instant) {
        for kept in self.relays.values_mut() {
            if in_goal(kept.relay.status(), &self.shared.config) {
                kept.history.served(now);
            }
        }
    }
}

/// Whether a relay with `status` is in its goal: reserved, or connected with reservations off.
fn in_goal(status: RelayStatus, config: &Config) -> bool {
    status == RelayStatus::Reserved || (status == RelayStatus::Connected && !config.reservations())
}

#[cfg(test)]
mod bad_day_tests;
#[cfg(test)]
mod fault_tests;
#[cfg(test)]
pub(crate) mod harness;
#[cfg(test)]
mod identify_tests;
#[cfg(test)]
mod known_tests;
#[cfg(test)]
mod limit_tests;
#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod network_tests;
#[cfg(test)]
mod pool_tests;
#[cfg(test)]
mod tests;
