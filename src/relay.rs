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

use crate::{backoff::Backoff, Config, Event, RelayStatus};

/// What the relay is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// A dial is in flight: the keeper's own (`Some`), or one made by someone else that the keeper's dial
    /// yielded to (`None`). `attempt` is the retry it belongs to; 0 for a dial that is not a retry.
    Dialing {
        dial: Option<ConnectionId>,
        attempt: u32,
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
    /// `attempts` retries failed; nothing is done until the relay is revived.
    GaveUp { attempts: u32 },
}

/// What happened to the relay, as the behaviour saw it.
#[derive(Debug, Clone)]
pub(crate) enum Input {
    /// The first direct connection to the relay is up, reached at `via`.
    Connected {
        connection: ConnectionId,
        via: Multiaddr,
    },
    /// The last direct connection to the relay closed.
    Disconnected,
    /// A dial `connection` to the relay failed: the keeper's own, or another one the keeper's yielded to.
    DialFailed { connection: ConnectionId },
    /// The swarm did not make the keeper's dial `connection`: the relay was connected or being dialed already.
    DialSkipped { connection: ConnectionId },
    /// `listener`, the keeper's or an adopted one, reports the circuit address `addr`.
    ListenAddr { listener: ListenerId, addr: Multiaddr },
    /// A listener the keeper did not open reports the circuit address `addr` on this relay.
    ForeignReservation { listener: ListenerId, addr: Multiaddr },
    /// `listener` closed or failed.
    ListenerClosed { listener: ListenerId },
    /// `listener` could not be opened because the swarm has no relay client transport.
    ListenerUnsupported { listener: ListenerId },
    /// The wait of the current retry elapsed.
    TimerFired,
    /// The relay started offering the HOP protocol, so a reservation can succeed now.
    HopEnabled,
    /// The application asked to forget the backoff and try now.
    RetryNow,
}

/// What the behaviour must do for the relay.
#[derive(Debug)]
pub(crate) enum Action {
    Dial(DialOpts),
    Listen(ListenOpts),
    Emit(Event),
}

/// What a transition needs besides the relay itself.
pub(crate) struct Env<'a> {
    pub(crate) now: Instant,
    pub(crate) config: &'a Config,
    pub(crate) backoff: &'a mut Backoff,
    pub(crate) actions: &'a mut Vec<Action>,
}

/// One kept relay.
#[derive(Debug)]
pub(crate) struct Relay {
    peer_id: PeerId,
    /// Dialable addresses, each ending in `/p2p/<peer_id>`.
    addrs: Vec<Multiaddr>,
    /// While directly connected: the address the reservation is requested through.
    via: Option<Multiaddr>,
    /// The relay left its goal state (or never reached it after a failure) and has not reached it since.
    outage: bool,
    state: State,
}

impl Relay {
    /// Starts keeping `peer_id`: reserves on the existing connection `via`, or dials.
    pub(crate) fn new(peer_id: PeerId, addr: Multiaddr, via: Option<Multiaddr>, env: &mut Env<'_>) -> Self {
        let mut relay = Self {
            peer_id,
            addrs: vec![addr],
            via,
            outage: false,
            state: State::GaveUp { attempts: 0 },
        };
        relay.try_now(0, env);
        relay
    }

    pub(crate) fn addrs(&self) -> &[Multiaddr] {
        &self.addrs
    }

    /// Adds a dialable address; false if it was known.
    pub(crate) fn add_addr(&mut self, addr: Multiaddr) -> bool {
        if self.addrs.contains(&addr) {
            return false;
        }
        self.addrs.push(addr);
        true
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
            State::GaveUp { attempts } => RelayStatus::GaveUp { attempts },
        }
    }

    /// When the behaviour must feed [`Input::TimerFired`]; `None` when no retry is scheduled.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::Waiting { deadline, .. } => Some(deadline),
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
        let connected = self.via.is_some();
        match (self.state, input) {
            (_, Input::Disconnected) if !connected => {}
            (state, Input::Disconnected) => {
                self.via = None;
                match state {
                    State::Connected | State::Reserved { .. } => self.fail(0, false, env),
                    State::Reserving { attempt, .. } => self.fail(attempt, false, env),
                    // A waiting retry dials instead of reserving when it fires.
                    State::Waiting { .. } | State::Dialing { .. } | State::GaveUp { .. } => {}
                }
            }
            (state, Input::Connected { connection, via }) => {
                if connected {
                    return;
                }
                self.via = Some(via);
                let (attempt, ours) = match state {
                    State::Dialing { dial, attempt } => (attempt, dial == Some(connection)),
                    State::Waiting { attempt, .. } => (attempt, false),
                    State::Connected
                    | State::Reserving { .. }
                    | State::Reserved { .. }
                    | State::GaveUp { .. } => return,
                };
                if self.outage {
                    let attempts = if ours { attempt } else { 0 };
                    env.emit(Event::Reconnected {
                        relay: self.peer_id,
                        attempts,
                    });
                }
                self.on_connection(attempt, env);
            }
            (
                State::Dialing {
                    dial: Some(dial),
                    attempt,
                },
                Input::DialFailed { connection },
            ) if dial == connection => self.fail(attempt, false, env),
            (
                State::Dialing {
                    dial: Some(dial),
                    attempt,
                },
                Input::DialSkipped { connection },
            ) if dial == connection => {
                if connected {
                    self.on_connection(attempt, env);
                } else {
                    self.state = State::Dialing { dial: None, attempt };
                }
            }
            (State::Dialing { dial: None, attempt }, Input::DialFailed { .. }) => {
                self.fail(attempt, false, env)
            }
            (State::Reserving { listener, .. }, Input::ListenAddr { listener: id, addr })
                if listener == id =>
            {
                self.state = State::Reserved {
                    listener,
                    adopted: false,
                };
                self.outage = false;
                env.emit(Event::Reserved {
                    relay: self.peer_id,
                    addr,
                });
            }
            (
                State::Waiting { .. } | State::Reserving { .. } | State::Reserved { .. },
                Input::ForeignReservation { listener, addr },
            ) if connected && env.config.reservations() => {
                let was_reserved = matches!(self.state, State::Reserved { .. });
                self.state = State::Reserved {
                    listener,
                    adopted: true,
                };
                self.outage = false;
                if !was_reserved {
                    env.emit(Event::Reserved {
                        relay: self.peer_id,
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
                Input::ListenerClosed { listener: id },
            ) if listener == id && connected => self.fail(attempt, hop_since, env),
            (State::Reserved { listener, .. }, Input::ListenerClosed { listener: id })
                if listener == id && connected =>
            {
                self.fail(0, false, env)
            }
            (
                State::Reserving {
                    listener, attempt, ..
                },
                Input::ListenerUnsupported { listener: id },
            ) if listener == id => self.give_up(attempt, env),
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
            (State::Waiting { .. } | State::GaveUp { .. }, Input::RetryNow) => self.try_now(0, env),
            (State::Dialing { dial, .. }, Input::RetryNow) => {
                self.state = State::Dialing { dial, attempt: 0 }
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

    /// Makes attempt `attempt` now: reserve on the live connection, or dial.
    fn try_now(&mut self, attempt: u32, env: &mut Env<'_>) {
        if self.via.is_some() {
            self.on_connection(attempt, env);
            return;
        }
        let opts = DialOpts::peer_id(self.peer_id)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        self.state = State::Dialing {
            dial: Some(opts.connection_id()),
            attempt,
        };
        env.actions.push(Action::Dial(opts));
    }

    /// The relay is connected: reserve, or with reservations off, the goal is reached.
    fn on_connection(&mut self, attempt: u32, env: &mut Env<'_>) {
        let Some(via) = &self.via else { return };
        if !env.config.reservations() {
            self.state = State::Connected;
            self.outage = false;
            return;
        }
        let mut circuit = via.clone();
        if !matches!(circuit.iter().last(), Some(Protocol::P2p(_))) {
            circuit.push(Protocol::P2p(self.peer_id));
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

    /// Retry `failed` (0: the goal state was lost, or a try that was no retry failed) did not reach the goal.
    /// `immediately`: the cause of the failure is known to be gone, so the next retry needs no wait.
    fn fail(&mut self, failed: u32, immediately: bool, env: &mut Env<'_>) {
        self.outage = true;
        if env.config.max_attempts().is_some_and(|max| failed >= max) {
            self.give_up(failed, env);
            return;
        }
        let attempt = failed + 1;
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
            relay: self.peer_id,
            attempt,
            delay,
        });
    }

    fn give_up(&mut self, attempts: u32, env: &mut Env<'_>) {
        self.outage = true;
        self.state = State::GaveUp { attempts };
        env.emit(Event::GaveUp {
            relay: self.peer_id,
            attempts,
        });
    }
}

impl Env<'_> {
    fn emit(&mut self, event: Event) {
        self.actions.push(Action::Emit(event));
    }
}
