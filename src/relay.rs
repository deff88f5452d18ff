//! The state machine of one kept relay: free of timers and I/O, it takes what happened and the current
//! instant and says what to do.

use std::time::Instant;

use libp2p::{
    core::transport::ListenerId,
    multiaddr::Protocol,
    swarm::{
        dial_opts::{DialOpts, PeerCondition},
        ConnectionId, ListenOpts,
    },
    Multiaddr, PeerId,
};

use smallvec::SmallVec;

use crate::{backoff::Backoff, mistake::Mistake, Cause, Config, Event, GiveUpReason, RelayStatus};

/// What the relay is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// A dial is in flight: the keeper's own (`Some`), or one made by someone else that the keeper's dial
    /// yielded to (`None`). `attempt` is the retry it belongs to; 0 for a dial that is not a retry. At
    /// `deadline` the dial is aborted and counts as failed.
    Dialing {
        dial: Option<ConnectionId>,
        attempt: u32,
        deadline: Instant,
    },
    /// Connected; the keeper's reservation request on `listener` is in flight. `hop_since` records that the
    /// relay announced HOP while it was, so a refusal sent before that is retried at once.
    Reserving {
        listener: ListenerId,
        attempt: u32,
        hop_since: bool,
    },
    /// Connected, and reservations are off: the goal state.
    Connected,
    /// The reservation on `listener` is live: the goal state. `adopted`: the application opened the listener.
    Reserved { listener: ListenerId, adopted: bool },
    /// Retry `attempt` is due at `deadline`.
    Waiting { attempt: u32, deadline: Instant },
    /// `attempts` retries failed, or a mistake left no address to dial (`reason`); nothing is done until the
    /// relay is revived, or until `retry_at` when a cool-down is configured.
    GaveUp {
        attempts: u32,
        reason: GiveUpReason,
        retry_at: Option<Instant>,
    },
}

/// What happened to the relay, as the behaviour saw it.
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
    /// `mistake`: the failure named addresses that no retry can reach.
    DialFailed {
        connection: ConnectionId,
        cause: Cause,
        mistake: Option<Mistake>,
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
    /// The application asked to forget the backoff and try now.
    RetryNow,
    /// The node's network changed (a new listen address, or the application said so).
    NetworkChanged,
    /// The application added the relay again: whatever it gave up for may be fixed.
    Revive,
}

/// What the behaviour must do for the relay.
#[derive(Debug)]
pub(crate) enum Action {
    Dial(DialOpts),
    /// Abort every pending dial to the relay (it has no direct connection while one is in flight).
    AbortDials,
    Listen(ListenOpts),
    RemoveListener(ListenerId),
    Emit(Event),
}

/// What a transition needs besides the relay itself.
pub(crate) struct Env<'a> {
    /// The relay the transition is for.
    pub(crate) relay: PeerId,
    pub(crate) now: Instant,
    pub(crate) config: &'a Config,
    pub(crate) backoff: &'a mut Backoff,
    pub(crate) actions: &'a mut Vec<Action>,
}

/// A direct connection: its id and, if outbound, the address it was dialed at.
pub(crate) type Link = (ConnectionId, Option<Multiaddr>);

/// The direct connections to a relay: nearly always one, kept inline so that a connection event touches no
/// memory beyond the relay itself (it matters with 100k relays, where each extra place is a cache miss).
type Links = SmallVec<[Link; 1]>;

/// One kept relay.
#[derive(Debug)]
pub(crate) struct Relay {
    /// Dialable addresses, each ending in `/p2p/<peer_id>`.
    addrs: Vec<Multiaddr>,
    /// The direct connections to the relay, with the address each was dialed at.
    links: Links,
    /// When the relay left its goal state (or first failed to reach it); `None` while it is in it.
    outage_since: Option<Instant>,
    /// A network change already reset this outage's backoff; later changes leave it to back off.
    network_reset: bool,
    state: State,
}

impl Relay {
    /// Starts keeping the relay at `addr`: reserves on one of its existing connections `links`, or dials.
    pub(crate) fn new(addr: Multiaddr, links: Vec<Link>, env: &mut Env<'_>) -> Self {
        let links = Links::from_vec(links);
        let mut relay = Self {
            addrs: vec![addr],
            links,
            outage_since: None,
            network_reset: false,
            state: State::GaveUp {
                attempts: 0,
                reason: GiveUpReason::MaxAttempts,
                retry_at: None,
            },
        };
        relay.try_now(0, env);
        relay
    }

    pub(crate) fn addrs(&self) -> &[Multiaddr] {
        &self.addrs
    }

    /// The direct connections to the relay.
    pub(crate) fn links(&self) -> &[Link] {
        &self.links
    }

    /// Hands the relay's connections back when it is no longer kept.
    pub(crate) fn into_links(self) -> Vec<Link> {
        self.links.into_vec()
    }

    /// Adds a dialable address; false if it was known.
    pub(crate) fn add_addr(&mut self, addr: Multiaddr) -> bool {
        if self.addrs.contains(&addr) {
            return false;
        }
        self.addrs.push(addr);
        true
    }

    /// Whether a retry can help: not after giving up for a mistake, which waits for a fixed address.
    pub(crate) fn retryable(&self) -> bool {
        self.gave_up().is_none_or(|reason| reason.is_retryable())
    }

    /// Why the relay gave up, if it did.
    pub(crate) fn gave_up(&self) -> Option<GiveUpReason> {
        match self.state {
            State::GaveUp { reason, .. } => Some(reason),
            _ => None,
        }
    }

    pub(crate) fn state(&self) -> State {
        self.state
    }

    pub(crate) fn status(&self) -> RelayStatus {
        match self.state {
            State::Dialing { .. } => RelayStatus::Connecting,
            State::Reserving { .. } | State::Connected => RelayStatus::Connected,
            State::Reserved { .. } => RelayStatus::Reserved,
            State::Waiting { attempt, .. } => RelayStatus::Waiting { attempt },
            State::GaveUp { attempts, reason, .. } => RelayStatus::GaveUp { attempts, reason },
        }
    }

    /// When the behaviour must feed [`Input::TimerFired`]; `None` when no retry or dial is timed.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::Waiting { deadline, .. } | State::Dialing { deadline, .. } => Some(deadline),
            State::GaveUp { retry_at, .. } => retry_at,
            _ => None,
        }
    }

    /// The circuit listener the keeper opened on this relay and has not handed over to the application.
    pub(crate) fn own_listener(&self) -> Option<ListenerId> {
        match self.state {
            State::Reserving { listener, .. }
            | State::Reserved {
                listener,
                adopted: false,
            } => Some(listener),
            _ => None,
        }
    }

    /// The one place where the relay changes state.
    pub(crate) fn on(&mut self, input: Input, env: &mut Env<'_>) {
        let connected = !self.links.is_empty();
        match (self.state, input) {
            (state, Input::ConnectionClosed { connection, cause }) => {
                self.links.retain(|(id, _)| *id != connection);
                if !connected || !self.links.is_empty() {
                    return;
                }
                match state {
                    State::Connected | State::Reserved { .. } => self.fail(0, false, cause, env),
                    State::Reserving { attempt, .. } => self.fail(attempt, false, cause, env),
                    // A waiting retry dials instead of reserving when it fires.
                    State::Waiting { .. } | State::Dialing { .. } | State::GaveUp { .. } => {}
                }
            }
            (state, Input::ConnectionEstablished { connection, dialed }) => {
                self.links.push((connection, dialed));
                if connected {
                    return;
                }
                let (attempt, ours) = match state {
                    State::Dialing { dial, attempt, .. } => (attempt, dial == Some(connection)),
                    State::Waiting { attempt, .. } => (attempt, false),
                    State::Connected
                    | State::Reserving { .. }
                    | State::Reserved { .. }
                    | State::GaveUp { .. } => return,
                };
                if self.outage_since.is_some() {
                    let attempts = if ours { attempt } else { 0 };
                    env.emit(Event::Reconnected {
                        relay: env.relay,
                        attempts,
                    });
                }
                self.on_connection(attempt, env);
            }
            (
                State::Dialing {
                    dial: Some(dial),
                    attempt,
                    ..
                },
                Input::DialFailed {
                    connection,
                    cause,
                    mistake,
                },
            ) if dial == connection => self.dial_failed(attempt, cause, mistake, env),
            (
                State::Dialing {
                    dial: Some(dial),
                    attempt,
                    deadline,
                },
                Input::DialSkipped { connection },
            ) if dial == connection => {
                if connected {
                    self.on_connection(attempt, env);
                } else {
                    self.state = State::Dialing {
                        dial: None,
                        attempt,
                        deadline,
                    };
                }
            }
            (
                State::Dialing {
                    dial: None, attempt, ..
                },
                Input::DialFailed { cause, mistake, .. },
            ) => self.dial_failed(attempt, cause, mistake, env),
            (State::Dialing { attempt, .. }, Input::TimerFired) => {
                env.actions.push(Action::AbortDials);
                self.fail(attempt, false, Cause::dial_timeout(), env)
            }
            (State::Reserving { listener, .. }, Input::ListenAddr { listener: id, addr })
                if listener == id =>
            {
                self.state = State::Reserved {
                    listener,
                    adopted: false,
                };
                self.reach_goal();
                env.emit(Event::Reserved {
                    relay: env.relay,
                    addr,
                });
            }
            (
                State::Waiting { .. } | State::Reserving { .. } | State::Reserved { .. },
                Input::ForeignReservation { listener, addr },
            ) if connected && env.config.reservations() => {
                let was_reserved = matches!(self.state, State::Reserved { .. });
                // Our request in flight would replace the application's listener once accepted.
                if let State::Reserving { listener: ours, .. } = self.state {
                    env.actions.push(Action::RemoveListener(ours));
                }
                self.state = State::Reserved {
                    listener,
                    adopted: true,
                };
                self.reach_goal();
                if !was_reserved {
                    env.emit(Event::Reserved {
                        relay: env.relay,
                        addr,
                    });
                }
            }
            (
                State::Reserving {
                    listener,
                    attempt,
                    hop_since,
                },
                Input::ListenerClosed {
                    listener: id,
                    refused,
                    cause,
                },
            ) if listener == id && connected => {
                // Only a refusal is known to be cured by HOP; a replacement must back off, or the keeper
                // would answer the application's listener with one of its own.
                self.fail(attempt, hop_since && refused, cause, env)
            }
            (
                State::Reserved { listener, .. },
                Input::ListenerClosed {
                    listener: id, cause, ..
                },
            ) if listener == id && connected => self.fail(0, false, cause, env),
            (
                State::Reserving {
                    listener, attempt, ..
                },
                Input::ListenerUnsupported { listener: id },
            ) if listener == id => self.give_up(attempt, GiveUpReason::NoRelayTransport, env),
            (State::Waiting { attempt, .. }, Input::TimerFired) => self.try_now(attempt, env),
            (State::Waiting { attempt, .. }, Input::HopEnabled) if connected && env.config.reservations() => {
                self.try_now(attempt, env)
            }
            (
                State::Reserving {
                    listener, attempt, ..
                },
                Input::HopEnabled,
            ) => {
                self.state = State::Reserving {
                    listener,
                    attempt,
                    hop_since: true,
                };
            }
            (State::Waiting { .. } | State::GaveUp { .. }, Input::RetryNow) if self.retryable() => {
                self.try_now(0, env)
            }
            (
                State::GaveUp {
                    retry_at: Some(_), ..
                },
                Input::TimerFired,
            ) => self.try_now(0, env),
            (State::Waiting { .. } | State::GaveUp { .. }, Input::NetworkChanged)
                if !self.network_reset && self.retryable() =>
            {
                self.network_reset = true;
                self.try_now(0, env);
            }
            (State::GaveUp { .. }, Input::Revive) if !self.addrs.is_empty() => self.try_now(0, env),
            (State::Dialing { dial, deadline, .. }, Input::RetryNow) => {
                self.state = State::Dialing {
                    dial,
                    attempt: 0,
                    deadline,
                }
            }
            (
                State::Reserving {
                    listener, hop_since, ..
                },
                Input::RetryNow,
            ) => {
                self.state = State::Reserving {
                    listener,
                    attempt: 0,
                    hop_since,
                }
            }
            _ => {}
        }
    }

    /// When the current outage started; `None` while the relay is in its goal state.
    pub(crate) fn outage_since(&self) -> Option<Instant> {
        self.outage_since
    }

    fn reach_goal(&mut self) {
        self.outage_since = None;
        self.network_reset = false;
    }

    /// Makes attempt `attempt` now: reserve on the live connection, or dial.
    fn try_now(&mut self, attempt: u32, env: &mut Env<'_>) {
        if !self.links.is_empty() {
            self.on_connection(attempt, env);
            return;
        }
        // Only the addresses the user gave: other behaviours (identify's cache) would add ones of their own,
        // e.g. a dead relay's QUIC address that holds the dial for its whole handshake timeout.
        let opts = DialOpts::peer_id(env.relay)
            .addresses(self.addrs.clone())
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        self.state = State::Dialing {
            dial: Some(opts.connection_id()),
            attempt,
            deadline: env.now + env.config.dial_timeout(),
        };
        env.actions.push(Action::Dial(opts));
    }

    /// The relay is connected: reserve, or with reservations off, the goal is reached.
    fn on_connection(&mut self, attempt: u32, env: &mut Env<'_>) {
        let Some((_, dialed)) = self.links.first() else {
            return;
        };
        if !env.config.reservations() {
            self.state = State::Connected;
            self.reach_goal();
            return;
        }
        // Reserve through the address the connection reached; an inbound one has none, so the first configured.
        let Some(mut circuit) = dialed.as_ref().or(self.addrs.first()).cloned() else {
            return;
        };
        if !matches!(circuit.iter().last(), Some(Protocol::P2p(_))) {
            circuit.push(Protocol::P2p(env.relay));
        }
        circuit.push(Protocol::P2pCircuit);
        let opts = ListenOpts::new(circuit);
        self.state = State::Reserving {
            listener: opts.listener_id(),
            attempt,
            hop_since: false,
        };
        env.actions.push(Action::Listen(opts));
    }

    /// A dial failed; addresses it showed to be mistaken are never dialed again, and a relay left with none
    /// gives up at once.
    fn dial_failed(&mut self, attempt: u32, cause: Cause, mistake: Option<Mistake>, env: &mut Env<'_>) {
        if let Some(mistake) = mistake {
            let before = self.addrs.len();
            self.addrs.retain(|addr| !mistake.covers(addr));
            if self.addrs.is_empty() {
                // The give-up's own warning names the fix.
                self.give_up(attempt, mistake.reason, env);
                return;
            }
            if self.addrs.len() < before {
                tracing::warn!(
                    relay = %env.relay,
                    reason = %mistake.reason,
                    error = %cause.message,
                    "dropped one of the relay's addresses: {}",
                    mistake.reason.fix()
                );
            }
        }
        self.fail(attempt, false, cause, env)
    }

    /// Retry `failed` (0: the goal state was lost, or a try that was no retry failed) did not reach the goal.
    /// `immediately`: the cause of the failure is known to be gone, so the next retry needs no wait.
    fn fail(&mut self, failed: u32, immediately: bool, cause: Cause, env: &mut Env<'_>) {
        self.outage_since.get_or_insert(env.now);
        if env.config.max_attempts().is_some_and(|max| failed >= max) {
            self.give_up(failed, GiveUpReason::MaxAttempts, env);
            return;
        }
        let attempt = failed.saturating_add(1);
        let delay = if immediately {
            Default::default()
        } else {
            env.backoff.delay(env.config, attempt)
        };
        self.state = State::Waiting {
            attempt,
            deadline: env.now + delay,
        };
        env.emit(Event::ReconnectScheduled {
            relay: env.relay,
            attempt,
            delay,
            cause,
        });
    }

    fn give_up(&mut self, attempts: u32, reason: GiveUpReason, env: &mut Env<'_>) {
        self.outage_since.get_or_insert(env.now);
        let retry_at = env
            .config
            .cooldown()
            .filter(|_| reason.is_retryable())
            .map(|cooldown| env.now + cooldown);
        self.state = State::GaveUp {
            attempts,
            reason,
            retry_at,
        };
        env.emit(Event::GaveUp {
            relay: env.relay,
            attempts,
            reason,
        });
    }
}

impl Env<'_> {
    fn emit(&mut self, event: Event) {
        self.actions.push(Action::Emit(event));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::CauseKind;

    const MS: Duration = Duration::from_millis(1);

    /// One relay driven by hand: the test owns the clock and reads every action.
    struct Driver {
        relay: Relay,
        peer: PeerId,
        now: Instant,
        config: Config,
        backoff: Backoff,
        dials: usize,
        listens: usize,
        events: Vec<Event>,
        last_dial: Option<ConnectionId>,
        last_listener: Option<ListenerId>,
        /// Listeners the relay asked to remove.
        removed: Vec<ListenerId>,
        aborts: usize,
    }

    fn addr() -> Multiaddr {
        let peer = PeerId::random();
        format!("/ip4/127.0.0.1/tcp/4001/p2p/{peer}").parse().unwrap()
    }

    fn peer_of(addr: &Multiaddr) -> PeerId {
        crate::address::relay_peer_id(addr).unwrap()
    }

    impl Driver {
        fn new(config: Config, connected: bool) -> Self {
            let addr = addr();
            let mut backoff = Backoff::new(&config);
            let mut actions = Vec::new();
            let now = Instant::now();
            let mut env = Env {
                relay: peer_of(&addr),
                now,
                config: &config,
                backoff: &mut backoff,
                actions: &mut actions,
            };
            let links = if connected {
                vec![(ConnectionId::new_unchecked(0), Some(addr.clone()))]
            } else {
                Vec::new()
            };
            let peer = env.relay;
            let relay = Relay::new(addr, links, &mut env);
            let mut driver = Self {
                relay,
                peer,
                now,
                config,
                backoff,
                dials: 0,
                listens: 0,
                events: Vec::new(),
                last_dial: None,
                last_listener: None,
                removed: Vec::new(),
                aborts: 0,
            };
            driver.record(actions);
            driver
        }

        /// A relay with millisecond backoff and no jitter, so that deadlines are exact.
        fn exact(max_attempts: Option<u32>) -> Self {
            Self::new(
                Config::default()
                    .with_base_delay(MS)
                    .with_max_delay(100 * MS)
                    .with_jitter(false)
                    .with_max_attempts(max_attempts),
                false,
            )
        }

        fn peer_id(&self) -> PeerId {
            self.peer
        }

        /// When a dial made now is aborted.
        fn dial_deadline(&self) -> Option<Instant> {
            Some(self.now + self.config.dial_timeout())
        }

        fn feed(&mut self, input: Input) {
            let mut actions = Vec::new();
            let mut env = Env {
                relay: self.peer_id(),
                now: self.now,
                config: &self.config,
                backoff: &mut self.backoff,
                actions: &mut actions,
            };
            self.relay.on(input, &mut env);
            self.record(actions);
        }

        fn record(&mut self, actions: Vec<Action>) {
            for action in actions {
                match action {
                    Action::Dial(opts) => {
                        assert_eq!(opts.get_peer_id(), Some(self.peer_id()));
                        self.dials += 1;
                        self.last_dial = Some(opts.connection_id());
                    }
                    Action::Listen(opts) => {
                        assert_eq!(circuit_addr_relay(opts.address()), Some(self.peer_id()));
                        self.listens += 1;
                        self.last_listener = Some(opts.listener_id());
                    }
                    Action::RemoveListener(listener) => self.removed.push(listener),
                    Action::AbortDials => self.aborts += 1,
                    Action::Emit(event) => self.events.push(event),
                }
            }
        }

        /// Lets the clock run to the relay's deadline and fires it.
        fn elapse(&mut self) -> Duration {
            let deadline = self.relay.deadline().expect("a retry is scheduled");
            let waited = deadline - self.now;
            self.now = deadline;
            self.feed(Input::TimerFired);
            waited
        }

        fn fail_dial(&mut self) {
            let connection = self.last_dial.expect("a dial was made");
            self.feed(dial_failed(connection));
        }

        fn connect(&mut self, connection: ConnectionId) {
            let dialed = Some(self.relay.addrs()[0].clone());
            self.feed(Input::ConnectionEstablished { connection, dialed });
        }

        fn connect_ours(&mut self) {
            self.connect(self.last_dial.expect("a dial was made"));
        }

        fn connect_other(&mut self) {
            self.connect(ConnectionId::new_unchecked(usize::MAX));
        }

        /// Every direct connection to the relay closes.
        fn disconnect(&mut self) {
            let links: Vec<ConnectionId> = self.relay.links().iter().map(|(id, _)| *id).collect();
            for connection in links {
                self.feed(Input::ConnectionClosed {
                    connection,
                    cause: Cause::connection_lost(None),
                });
            }
        }

        fn reservation_accepted(&mut self) {
            let listener = self.last_listener.expect("a reservation was requested");
            let addr = self.relay.addrs()[0].clone().with(Protocol::P2pCircuit);
            self.feed(Input::ListenAddr { listener, addr });
        }

        fn reservation_closed(&mut self) {
            let listener = self.last_listener.expect("a reservation was requested");
            self.feed(Input::ListenerClosed {
                listener,
                refused: true,
                cause: Cause::new(CauseKind::ReservationRefused, "refused"),
            });
        }

        /// Our listener closes without an error while connected: replaced, or its connection went.
        fn listener_replaced(&mut self) {
            let listener = self.last_listener.expect("a reservation was requested");
            self.feed(Input::ListenerClosed {
                listener,
                refused: false,
                cause: Cause::reservation_lost(),
            });
        }

        fn take_events(&mut self) -> Vec<Event> {
            std::mem::take(&mut self.events)
        }

        fn reserved(config: Config) -> Self {
            let mut driver = Self::new(config, false);
            driver.connect_ours();
            driver.reservation_accepted();
            driver.take_events();
            driver
        }
    }

    /// A dial `connection` failed the way a dead relay's does.
    fn dial_failed(connection: ConnectionId) -> Input {
        Input::DialFailed {
            connection,
            cause: Cause::new(CauseKind::DialFailed, "connection refused"),
            mistake: None,
        }
    }

    fn circuit_addr_relay(addr: &Multiaddr) -> Option<PeerId> {
        crate::address::circuit_relay(addr)
    }

    fn scheduled(events: &[Event]) -> Vec<u32> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::ReconnectScheduled { attempt, .. } => Some(*attempt),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_dial_past_its_time_limit_is_aborted_and_counted_with_its_cause() {
        let mut driver = Driver::exact(Some(3));
        let waited = driver.elapse();
        assert_eq!(waited, driver.config.dial_timeout());
        assert_eq!(driver.aborts, 1);
        let events = driver.take_events();
        assert!(
            matches!(
                events.as_slice(),
                [Event::ReconnectScheduled { attempt: 1, cause, .. }] if cause.kind == CauseKind::DialTimeout
            ),
            "{events:?}"
        );
        // The aborted dial's failure arrives after the keeper moved on and changes nothing.
        driver.fail_dial();
        assert_eq!(driver.relay.status(), RelayStatus::Waiting { attempt: 1 });
    }

    #[test]
    fn a_mistaken_last_address_gives_up_at_once_and_only_revive_tries_again() {
        let mut driver = Driver::exact(Some(3));
        let connection = driver.last_dial.unwrap();
        driver.feed(Input::DialFailed {
            connection,
            cause: Cause::new(CauseKind::DialFailed, "wrong peer id"),
            mistake: Some(Mistake {
                reason: GiveUpReason::WrongPeerId,
                addrs: None,
            }),
        });
        let gave_up = RelayStatus::GaveUp {
            attempts: 0,
            reason: GiveUpReason::WrongPeerId,
        };
        assert_eq!(driver.relay.status(), gave_up);
        for input in [Input::NetworkChanged, Input::RetryNow, Input::Revive] {
            driver.feed(input);
        }
        assert_eq!(
            (driver.dials, driver.relay.status()),
            (1, gave_up),
            "no address left to dial"
        );
        let fixed = format!("/ip4/127.0.0.1/tcp/4002/p2p/{}", driver.peer);
        driver.relay.add_addr(fixed.parse().unwrap());
        driver.feed(Input::Revive);
        assert_eq!(
            (driver.dials, driver.relay.status()),
            (2, RelayStatus::Connecting)
        );
    }

    #[test]
    fn add_relay_dials_once_without_counting_a_retry() {
        let driver = Driver::exact(Some(3));
        assert_eq!(driver.dials, 1);
        assert_eq!(driver.relay.status(), RelayStatus::Connecting);
        assert!(driver.events.is_empty());
        assert_eq!(
            driver.relay.deadline(),
            driver.dial_deadline(),
            "only the dial's time limit"
        );
    }

    #[test]
    fn add_relay_on_a_live_connection_reserves_without_dialing() {
        let driver = Driver::new(Config::default(), true);
        assert_eq!((driver.dials, driver.listens), (0, 1));
        assert_eq!(driver.relay.status(), RelayStatus::Connected);
    }

    #[test]
    fn connection_then_reservation_reaches_the_goal_once() {
        let mut driver = Driver::exact(Some(3));
        driver.connect_ours();
        assert_eq!(driver.listens, 1);
        driver.reservation_accepted();
        assert_eq!(driver.relay.status(), RelayStatus::Reserved);
        let events = driver.take_events();
        assert!(
            matches!(events.as_slice(), [Event::Reserved { .. }]),
            "{events:?}"
        );
        // A renewal repeats the address on the same listener: no second event, nothing scheduled.
        driver.reservation_accepted();
        assert!(driver.take_events().is_empty());
        assert_eq!(driver.relay.deadline(), None);
    }

    #[test]
    fn backoff_doubles_to_the_cap_then_gives_up_after_max_attempts() {
        let config = Config::default().with_jitter(false).with_max_attempts(Some(10));
        let mut driver = Driver::reserved(config);
        driver.disconnect();
        let mut waits = Vec::new();
        while driver.relay.deadline().is_some() {
            waits.push(driver.elapse().as_secs());
            driver.fail_dial();
        }
        assert_eq!(waits, [5, 10, 20, 40, 60, 60, 60, 60, 60, 60]);
        assert_eq!(
            driver.dials,
            1 + 10,
            "the first dial plus exactly max_attempts retries"
        );
        assert_eq!(
            driver.relay.status(),
            RelayStatus::GaveUp {
                attempts: 10,
                reason: GiveUpReason::MaxAttempts
            }
        );
        let events = driver.take_events();
        assert_eq!(scheduled(&events), (1..=10).collect::<Vec<_>>());
        assert!(matches!(events.last(), Some(Event::GaveUp { attempts: 10, .. })));
        // Given up means left alone.
        driver.feed(Input::TimerFired);
        driver.feed(Input::HopEnabled);
        assert_eq!(driver.dials, 11);
    }

    #[test]
    fn jittered_waits_are_reproducible_with_a_seed_and_within_bounds() {
        let config = Config::default().with_rng_seed(9).with_max_attempts(Some(8));
        let run = || {
            let mut driver = Driver::reserved(config.clone());
            driver.disconnect();
            let mut waits = Vec::new();
            while driver.relay.deadline().is_some() {
                waits.push(driver.elapse());
                driver.fail_dial();
            }
            waits
        };
        let waits = run();
        assert_eq!(waits, run());
        for (n, wait) in (1..).zip(&waits) {
            assert!(*wait < config.backoff_bound(n));
        }
    }

    #[test]
    fn a_successful_retry_ends_the_outage_and_leaves_no_timer() {
        let mut driver = Driver::exact(Some(10));
        driver.connect_ours();
        driver.reservation_accepted();
        driver.disconnect();
        driver.elapse();
        driver.fail_dial();
        driver.elapse();
        driver.fail_dial();
        driver.elapse();
        driver.connect_ours();
        assert_eq!(driver.dials, 1 + 3);
        assert_eq!(driver.relay.deadline(), None);
        let events = driver.take_events();
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::Reconnected { attempts: 3, .. })),
            "{events:?}"
        );
        driver.reservation_accepted();
        assert_eq!(driver.relay.status(), RelayStatus::Reserved);
        // The next outage counts from 1 again.
        driver.disconnect();
        assert_eq!(driver.relay.status(), RelayStatus::Waiting { attempt: 1 });
    }

    #[test]
    fn a_connection_made_by_someone_else_counts_zero_retries_and_cancels_the_wait() {
        let mut driver = Driver::exact(Some(10));
        driver.connect_ours();
        driver.reservation_accepted();
        driver.disconnect();
        driver.take_events();
        driver.connect_other();
        let events = driver.take_events();
        assert!(
            matches!(events.as_slice(), [Event::Reconnected { attempts: 0, .. }]),
            "{events:?}"
        );
        assert_eq!(driver.relay.deadline(), None);
        assert_eq!(driver.listens, 2, "reserves at once on the new connection");
    }

    #[test]
    fn the_first_connection_is_not_reported_as_reconnected() {
        let mut driver = Driver::exact(Some(10));
        driver.connect_ours();
        assert!(driver.take_events().is_empty());
    }

    #[test]
    fn relay_down_at_start_is_retried_and_recovers() {
        let mut driver = Driver::exact(Some(10));
        driver.fail_dial();
        assert_eq!(driver.relay.status(), RelayStatus::Waiting { attempt: 1 });
        driver.elapse();
        driver.fail_dial();
        driver.elapse();
        driver.connect_ours();
        driver.reservation_accepted();
        assert_eq!(driver.relay.status(), RelayStatus::Reserved);
        let events = driver.take_events();
        assert_eq!(scheduled(&events), [1, 2]);
        assert!(events
            .iter()
            .any(|e| matches!(e, Event::Reconnected { attempts: 2, .. })));
    }

    #[test]
    fn a_refused_reservation_is_a_counted_retry_on_the_live_connection() {
        let mut driver = Driver::exact(Some(10));
        driver.connect_ours();
        driver.reservation_closed();
        assert_eq!(driver.relay.status(), RelayStatus::Waiting { attempt: 1 });
        driver.elapse();
        assert_eq!(
            (driver.dials, driver.listens),
            (1, 2),
            "re-reserves, does not re-dial"
        );
        driver.reservation_closed();
        assert_eq!(driver.relay.status(), RelayStatus::Waiting { attempt: 2 });
    }

    #[test]
    fn retries_count_across_redials_and_rereservations_until_the_goal() {
        let mut driver = Driver::exact(Some(10));
        driver.connect_ours();
        driver.reservation_accepted();
        driver.disconnect(); // retry 1 scheduled
        driver.elapse();
        driver.connect_ours(); // retry 1 reconnected, reservation requested as part of it
        driver.reservation_closed(); // refused: retry 2
        assert_eq!(driver.relay.status(), RelayStatus::Waiting { attempt: 2 });
        driver.elapse();
        driver.reservation_accepted();
        driver.disconnect();
        assert_eq!(driver.relay.status(), RelayStatus::Waiting { attempt: 1 });
    }

    #[test]
    fn a_connection_lost_while_waiting_to_reserve_dials_when_the_wait_ends() {
        let mut driver = Driver::exact(Some(10));
        driver.connect_ours();
        driver.reservation_closed();
        driver.disconnect();
        assert_eq!(driver.relay.status(), RelayStatus::Waiting { attempt: 1 });
        driver.elapse();
        assert_eq!((driver.dials, driver.listens), (2, 1));
    }

    #[test]
    fn hop_announced_while_waiting_reserves_at_once() {
        let mut driver = Driver::new(Config::default(), true);
        driver.reservation_closed();
        assert!(driver.relay.deadline().is_some());
        driver.feed(Input::HopEnabled);
        assert_eq!(driver.listens, 2);
        assert_eq!(driver.relay.deadline(), None);
        assert_eq!(driver.relay.status(), RelayStatus::Connected);
    }

    #[test]
    fn hop_announced_while_a_request_is_in_flight_retries_its_refusal_without_waiting() {
        let mut driver = Driver::new(Config::default(), true);
        driver.feed(Input::HopEnabled);
        driver.reservation_closed();
        let events = driver.take_events();
        assert!(
            matches!(events.as_slice(), [Event::ReconnectScheduled { attempt: 1, delay, .. }] if delay.is_zero()),
            "{events:?}"
        );
        // The announcement is spent: a second refusal backs off as usual.
        driver.elapse();
        driver.reservation_closed();
        let events = driver.take_events();
        assert!(
            matches!(events.as_slice(), [Event::ReconnectScheduled { attempt: 2, delay, .. }] if !delay.is_zero())
        );
    }

    #[test]
    fn hop_is_ignored_without_a_connection() {
        let mut driver = Driver::exact(Some(3));
        driver.fail_dial();
        driver.feed(Input::HopEnabled);
        assert_eq!(driver.relay.status(), RelayStatus::Waiting { attempt: 1 });
    }

    #[test]
    fn losing_the_listener_while_connected_is_a_counted_retry() {
        let mut driver = Driver::exact(Some(10));
        driver.connect_ours();
        driver.reservation_accepted();
        driver.reservation_closed();
        assert_eq!(driver.relay.status(), RelayStatus::Waiting { attempt: 1 });
    }

    #[test]
    fn the_applications_own_reservation_is_adopted_instead_of_replaced() {
        let mut driver = Driver::exact(Some(10));
        driver.connect_ours();
        driver.reservation_accepted();
        driver.take_events();
        // The application listens on the relay itself: ours closes, its address shows.
        driver.listener_replaced();
        let theirs = ListenerId::next();
        let addr = driver.relay.addrs()[0].clone().with(Protocol::P2pCircuit);
        driver.feed(Input::ForeignReservation {
            listener: theirs,
            addr,
        });
        assert_eq!(
            driver.relay.state(),
            State::Reserved {
                listener: theirs,
                adopted: true
            }
        );
        assert_eq!(driver.relay.deadline(), None, "the retry is cancelled");
        assert_eq!(driver.relay.own_listener(), None);
        assert_eq!(
            driver.listens, 1,
            "never answers a replacement with a replacement"
        );
        // Losing the adopted listener is handled like losing our own.
        driver.feed(Input::ListenerClosed {
            listener: theirs,
            refused: false,
            cause: Cause::reservation_lost(),
        });
        assert_eq!(driver.relay.status(), RelayStatus::Waiting { attempt: 1 });
    }

    #[test]
    fn adopting_over_a_live_reservation_raises_no_second_event() {
        let mut driver = Driver::exact(Some(10));
        driver.connect_ours();
        driver.reservation_accepted();
        driver.take_events();
        let addr = driver.relay.addrs()[0].clone().with(Protocol::P2pCircuit);
        driver.feed(Input::ForeignReservation {
            listener: ListenerId::next(),
            addr,
        });
        assert!(driver.take_events().is_empty());
        assert_eq!(driver.relay.status(), RelayStatus::Reserved);
        // Our replaced listener closing afterwards is stale.
        driver.reservation_closed();
        assert_eq!(driver.relay.status(), RelayStatus::Reserved);
    }

    #[test]
    fn a_stale_listener_closing_changes_nothing() {
        let mut driver = Driver::exact(Some(10));
        driver.connect_ours();
        let old = driver.last_listener;
        driver.disconnect();
        driver.elapse();
        driver.connect_ours();
        driver.feed(Input::ListenerClosed {
            listener: old.unwrap(),
            refused: false,
            cause: Cause::reservation_lost(),
        });
        assert_eq!(driver.relay.status(), RelayStatus::Connected);
        assert_eq!(driver.relay.deadline(), None);
    }

    #[test]
    fn a_dial_skipped_for_a_live_connection_reserves() {
        let mut driver = Driver::exact(Some(10));
        driver.fail_dial();
        driver.elapse();
        // Someone else's connection got there between our decision and the swarm's check.
        driver.relay.links.push((ConnectionId::new_unchecked(7), None));
        let connection = driver.last_dial.unwrap();
        driver.feed(Input::DialSkipped { connection });
        assert_eq!(driver.listens, 1);
    }

    #[test]
    fn a_dial_skipped_for_another_dial_takes_that_dials_outcome() {
        let mut driver = Driver::exact(Some(10));
        driver.fail_dial();
        driver.elapse();
        let connection = driver.last_dial.unwrap();
        driver.feed(Input::DialSkipped { connection });
        assert_eq!(driver.relay.status(), RelayStatus::Connecting);
        // No retry is scheduled; only the other dial's time limit runs.
        let dial_timeout = driver.config.dial_timeout();
        assert_eq!(driver.relay.deadline(), Some(driver.now + dial_timeout));
        driver.feed(dial_failed(ConnectionId::new_unchecked(usize::MAX)));
        assert_eq!(driver.relay.status(), RelayStatus::Waiting { attempt: 2 });
    }

    #[test]
    fn a_failure_of_a_foreign_dial_does_not_count_against_ours() {
        let mut driver = Driver::exact(Some(10));
        driver.feed(dial_failed(ConnectionId::new_unchecked(usize::MAX)));
        assert_eq!(driver.relay.status(), RelayStatus::Connecting);
    }

    #[test]
    fn zero_max_attempts_gives_up_at_the_loss() {
        let mut driver = Driver::exact(Some(0));
        driver.connect_ours();
        driver.reservation_accepted();
        driver.disconnect();
        assert_eq!(
            driver.relay.status(),
            RelayStatus::GaveUp {
                attempts: 0,
                reason: GiveUpReason::MaxAttempts
            }
        );
        assert_eq!(driver.dials, 1);
    }

    #[test]
    fn unlimited_attempts_never_give_up_and_stay_capped() {
        let mut driver = Driver::exact(None);
        for _ in 0..1000 {
            driver.fail_dial();
            assert!(driver.elapse() <= 100 * MS);
        }
        assert_eq!(driver.dials, 1001);
        assert_eq!(driver.relay.status(), RelayStatus::Connecting);
    }

    #[test]
    fn retry_now_revives_a_relay_that_gave_up_with_a_fresh_backoff() {
        let mut driver = Driver::exact(Some(1));
        driver.fail_dial();
        driver.elapse();
        driver.fail_dial();
        assert_eq!(
            driver.relay.status(),
            RelayStatus::GaveUp {
                attempts: 1,
                reason: GiveUpReason::MaxAttempts
            }
        );
        driver.feed(Input::RetryNow);
        assert_eq!(driver.dials, 3);
        driver.fail_dial();
        assert_eq!(driver.relay.status(), RelayStatus::Waiting { attempt: 1 });
    }

    #[test]
    fn retry_now_skips_the_wait() {
        let mut driver = Driver::exact(Some(5));
        driver.fail_dial();
        driver.elapse();
        driver.fail_dial();
        assert_eq!(driver.relay.status(), RelayStatus::Waiting { attempt: 2 });
        driver.feed(Input::RetryNow);
        assert_eq!(driver.dials, 3);
        assert_eq!(
            driver.relay.deadline(),
            driver.dial_deadline(),
            "no wait, only the dial's time limit"
        );
        driver.fail_dial();
        assert_eq!(driver.relay.status(), RelayStatus::Waiting { attempt: 1 });
    }

    #[test]
    fn a_swarm_without_relay_transport_gives_up_instead_of_retrying() {
        let mut driver = Driver::new(Config::default(), true);
        let listener = driver.last_listener.unwrap();
        driver.feed(Input::ListenerUnsupported { listener });
        assert_eq!(
            driver.relay.status(),
            RelayStatus::GaveUp {
                attempts: 0,
                reason: GiveUpReason::NoRelayTransport
            }
        );
        assert_eq!(driver.relay.deadline(), None);
    }

    #[test]
    fn without_reservations_the_connection_is_the_goal() {
        let config = Config::default()
            .with_reservations(false)
            .with_base_delay(MS)
            .with_jitter(false);
        let mut driver = Driver::new(config, false);
        driver.connect_ours();
        assert_eq!(driver.listens, 0);
        assert_eq!(driver.relay.status(), RelayStatus::Connected);
        driver.disconnect();
        assert_eq!(driver.relay.status(), RelayStatus::Waiting { attempt: 1 });
        driver.elapse();
        driver.connect_ours();
        assert_eq!(driver.relay.status(), RelayStatus::Connected);
        assert_eq!(driver.listens, 0);
        let events = driver.take_events();
        assert!(events
            .iter()
            .any(|e| matches!(e, Event::Reconnected { attempts: 1, .. })));
    }

    #[test]
    fn a_second_disconnect_schedules_nothing_more() {
        let mut driver = Driver::exact(Some(10));
        driver.connect_ours();
        driver.reservation_accepted();
        driver.disconnect();
        let deadline = driver.relay.deadline();
        driver.disconnect();
        assert_eq!(driver.relay.deadline(), deadline);
        assert_eq!(scheduled(&driver.take_events()), [1]);
    }

    #[test]
    fn a_cooldown_tries_again_after_giving_up_with_a_fresh_backoff() {
        let config = Config::default()
            .with_base_delay(MS)
            .with_jitter(false)
            .with_max_attempts(Some(2))
            .with_cooldown(Some(Duration::from_secs(600)));
        let mut driver = Driver::new(config, false);
        driver.fail_dial();
        driver.elapse();
        driver.fail_dial();
        driver.elapse();
        driver.fail_dial();
        assert_eq!(
            driver.relay.status(),
            RelayStatus::GaveUp {
                attempts: 2,
                reason: GiveUpReason::MaxAttempts
            }
        );
        assert_eq!(
            driver.elapse(),
            Duration::from_secs(600),
            "the cool-down, not a backoff wait"
        );
        assert_eq!(driver.dials, 4);
        driver.fail_dial();
        assert_eq!(driver.relay.status(), RelayStatus::Waiting { attempt: 1 });
        assert_eq!(driver.elapse(), MS, "the backoff starts over");
    }

    #[test]
    fn without_a_cooldown_giving_up_is_final() {
        let mut driver = Driver::exact(Some(0));
        driver.fail_dial();
        assert_eq!(
            driver.relay.status(),
            RelayStatus::GaveUp {
                attempts: 0,
                reason: GiveUpReason::MaxAttempts
            }
        );
        assert_eq!(driver.relay.deadline(), None);
    }

    #[test]
    fn a_network_change_retries_a_waiting_relay_at_once_with_the_backoff_reset() {
        let mut driver = Driver::exact(Some(10));
        for _ in 0..3 {
            driver.fail_dial();
            driver.elapse();
        }
        driver.fail_dial();
        assert_eq!(driver.relay.status(), RelayStatus::Waiting { attempt: 4 });
        driver.feed(Input::NetworkChanged);
        assert_eq!(driver.dials, 5, "dialed at once");
        driver.fail_dial();
        assert_eq!(driver.relay.status(), RelayStatus::Waiting { attempt: 1 });
    }

    #[test]
    fn a_relay_that_keeps_failing_still_backs_off_however_often_the_network_changes() {
        let mut driver = Driver::exact(Some(10));
        driver.fail_dial();
        driver.feed(Input::NetworkChanged);
        driver.fail_dial();
        for _ in 0..5 {
            driver.feed(Input::NetworkChanged);
        }
        assert_eq!(driver.dials, 2, "one reset per outage");
        driver.elapse();
        driver.fail_dial();
        assert_eq!(driver.relay.status(), RelayStatus::Waiting { attempt: 2 });
    }

    #[test]
    fn a_network_change_revives_a_relay_that_gave_up_and_resets_for_the_next_outage() {
        let mut driver = Driver::exact(Some(0));
        driver.fail_dial();
        driver.feed(Input::NetworkChanged);
        assert_eq!(driver.dials, 2);
        driver.connect_ours();
        driver.reservation_accepted();
        driver.disconnect();
        assert_eq!(
            driver.relay.status(),
            RelayStatus::GaveUp {
                attempts: 0,
                reason: GiveUpReason::MaxAttempts
            }
        );
        driver.feed(Input::NetworkChanged);
        assert_eq!(driver.dials, 3, "a new outage gets its own reset");
    }

    #[test]
    fn a_network_change_leaves_relays_in_their_goal_alone() {
        let mut driver = Driver::exact(Some(3));
        driver.connect_ours();
        driver.reservation_accepted();
        driver.feed(Input::NetworkChanged);
        assert_eq!((driver.dials, driver.listens), (1, 1));
        assert_eq!(driver.relay.status(), RelayStatus::Reserved);
    }

    #[test]
    fn a_replaced_listener_backs_off_even_after_hop_was_announced() {
        let mut driver = Driver::new(Config::default(), true);
        driver.feed(Input::HopEnabled);
        driver.listener_replaced();
        let events = driver.take_events();
        assert!(
            matches!(events.as_slice(), [Event::ReconnectScheduled { attempt: 1, delay, .. }] if !delay.is_zero()),
            "an immediate retry would answer the application's listener with a replacement: {events:?}"
        );
    }

    #[test]
    fn adopting_while_our_request_is_in_flight_withdraws_it() {
        let mut driver = Driver::new(Config::default(), true);
        let ours = driver.last_listener.unwrap();
        let addr = driver.relay.addrs()[0].clone().with(Protocol::P2pCircuit);
        driver.feed(Input::ForeignReservation {
            listener: ListenerId::next(),
            addr,
        });
        assert_eq!(driver.removed, [ours]);
        assert_eq!(driver.relay.own_listener(), None);
    }
}
