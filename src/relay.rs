//! The state machine of one kept relay: free of timers and I/O, it takes what happened and the current
//! instant and says what to do.

use std::time::{Duration, Instant};

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
enum State {
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
    Connected { goal: Goal },
    /// The reservation on `listener` is live: the goal state. `adopted`: the application opened the listener.
    Reserved {
        listener: ListenerId,
        adopted: bool,
        goal: Goal,
    },
    /// Retry `attempt` is due at `deadline`.
    Waiting { attempt: u32, deadline: Instant },
    /// `attempts` retries failed, or a mistake left no address to dial (`reason`); nothing is done until the
    /// relay is revived, or until `retry_at` when a cool-down is configured.
    GaveUp {
        attempts: u32,
        reason: GiveUpReason,
        retry_at: Option<Instant>,
    },
    /// A candidate the pool does not need now: nothing is dialed. It becomes eligible for promotion at
    /// `eligible_at` (its own backoff after a failure); `None`: eligible now. `attempt`: the retry a promotion
    /// makes, so a relay's count goes on across demotions.
    Standby {
        attempt: u32,
        eligible_at: Option<Instant>,
    },
    /// Promoted from standby; attempt `attempt` starts at `at`, a random moment within the promotion spread.
    Promoted { attempt: u32, at: Instant },
    /// The node is publicly reachable ([`Config::with_pause_while_public`]): nothing is dialed or reserved.
    Paused,
}

/// When the relay reached its goal state, and how many retries that took. The retries are forgiven only once
/// the goal has held for [`Config::with_forgive_after`]: a relay that keeps coming back and falling over goes
/// on counting (and backing off longer) instead of starting from the first retry after every short success.
/// The retries before the relay's first goal are forgiven when it is reached: there was nothing to flap from,
/// and a fresh relay's first refusal (it offers HOP only once identify told it its address) is no failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Goal {
    since: Instant,
    attempts: u32,
}

impl Goal {
    /// The retries still counted against the relay when it loses the goal now.
    fn unforgiven(self, env: &Env<'_>) -> u32 {
        if env.now.saturating_duration_since(self.since) >= env.config.forgive_after() {
            0
        } else {
            self.attempts
        }
    }
}

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
}

/// What the engine must do for the relay.
#[derive(Debug)]
pub(crate) enum Action {
    Dial(DialOpts),
    /// Abort every pending dial to the relay (it has no direct connection while one is in flight).
    AbortDials,
    Listen(ListenOpts),
    RemoveListener(ListenerId),
    /// The application's `listener`, live at `addr`, holds the relay's reservation from now on.
    Adopt {
        listener: ListenerId,
        addr: Multiaddr,
    },
    Emit(Event),
}

/// What one input changed about the relay, for the engine's deadline index and the metrics.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Transition {
    /// The relay's deadline before and after; `None` before for a relay that was just added.
    pub(crate) deadline: (Option<Instant>, Option<Instant>),
    /// The relay's status before (`None`: just added) and after.
    pub(crate) status: (Option<RelayStatus>, RelayStatus),
    /// The input ended an outage that started then.
    pub(crate) restored_after: Option<Instant>,
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
}

/// A direct connection: its id and, if outbound, the address it was dialed at.
pub(crate) type Link = (ConnectionId, Option<Multiaddr>);

/// The direct connections to a relay: nearly always one, kept inline. This buys memory, not time: 653-906
/// bytes per reserved relay against 771-1,000 with a `Vec` (whose first push makes room for four), and the
/// same time per loss event (`cargo bench --bench scale`, median of 5 runs; BENCHMARKS.md).
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
    /// The relay has been in its goal state before, so a loss soon after reaching it again is a flap.
    reached_before: bool,
    state: State,
}

impl Relay {
    /// Starts keeping the relay at `addr`: reserves on one of its existing connections `links`, or dials.
    pub(crate) fn new(addr: Multiaddr, links: Vec<Link>, env: &mut Env<'_>) -> (Self, Transition) {
        let links = Links::from_vec(links);
        let mut relay = Self {
            addrs: vec![addr],
            links,
            outage_since: None,
            network_reset: false,
            reached_before: false,
            state: State::GaveUp {
                attempts: 0,
                reason: GiveUpReason::MaxAttempts,
                retry_at: None,
            },
        };
        relay.start_over(env);
        let transition = Transition {
            deadline: (None, relay.deadline()),
            status: (None, relay.status()),
            restored_after: None,
        };
        (relay, transition)
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

    pub(crate) fn status(&self) -> RelayStatus {
        match self.state {
            State::Dialing { .. } => RelayStatus::Connecting,
            State::Reserving { .. } | State::Connected { .. } => RelayStatus::Connected,
            State::Reserved { .. } => RelayStatus::Reserved,
            State::Waiting { attempt, .. } => RelayStatus::Waiting { attempt },
            State::GaveUp { attempts, reason, .. } => RelayStatus::GaveUp { attempts, reason },
            State::Standby { .. } => RelayStatus::Standby,
            State::Promoted { .. } => RelayStatus::Connecting,
            State::Paused => RelayStatus::Paused,
        }
    }

    /// Whether the pool promoted the relay and has not dialed it yet.
    pub(crate) fn promoted(&self) -> bool {
        matches!(self.state, State::Promoted { .. })
    }

    /// Whether the relay is a standby the pool may promote now.
    pub(crate) fn eligible(&self) -> bool {
        matches!(
            self.state,
            State::Standby {
                eligible_at: None,
                ..
            }
        )
    }

    /// When the engine must feed [`Input::TimerFired`]; `None` when no retry or dial is timed.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::Waiting { deadline, .. }
            | State::Dialing { deadline, .. }
            | State::Promoted { at: deadline, .. } => Some(deadline),
            State::GaveUp { retry_at, .. } => retry_at,
            State::Standby { eligible_at, .. } => eligible_at,
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
                ..
            } => Some(listener),
            _ => None,
        }
    }

    /// Feeds `input` to the relay and says what it changed.
    pub(crate) fn on(&mut self, input: Input, env: &mut Env<'_>) -> Transition {
        let (deadline, status, outage_since) = (self.deadline(), self.status(), self.outage_since);
        self.step(input, env);
        Transition {
            deadline: (deadline, self.deadline()),
            status: (Some(status), self.status()),
            restored_after: outage_since.filter(|_| self.outage_since.is_none()),
        }
    }

    /// The one place where the relay changes state.
    fn step(&mut self, input: Input, env: &mut Env<'_>) {
        let connected = !self.links.is_empty();
        match (self.state, input) {
            (state, Input::ConnectionClosed { connection, cause }) => {
                self.links.retain(|(id, _)| *id != connection);
                if !connected || !self.links.is_empty() {
                    return;
                }
                match state {
                    State::Connected { goal } | State::Reserved { goal, .. } => {
                        self.fail(goal.unforgiven(env), false, cause, env)
                    }
                    State::Reserving { attempt, .. } => self.fail(attempt, false, cause, env),
                    // A waiting retry dials instead of reserving when it fires.
                    State::Waiting { .. }
                    | State::Dialing { .. }
                    | State::GaveUp { .. }
                    | State::Standby { .. }
                    | State::Promoted { .. }
                    | State::Paused => {}
                }
            }
            (state, Input::ConnectionEstablished { connection, dialed }) => {
                self.links.push((connection, dialed));
                if connected {
                    return;
                }
                let (attempt, ours) = match state {
                    State::Dialing { dial, attempt, .. } => (attempt, dial == Some(connection)),
                    State::Waiting { attempt, .. } | State::Promoted { attempt, .. } => (attempt, false),
                    State::Connected { .. }
                    | State::Reserving { .. }
                    | State::Reserved { .. }
                    | State::GaveUp { .. }
                    | State::Standby { .. }
                    | State::Paused => return,
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
            (
                State::Reserving {
                    listener, attempt, ..
                },
                Input::ListenAddr { listener: id, addr },
            ) if listener == id => {
                self.state = State::Reserved {
                    listener,
                    adopted: false,
                    goal: self.goal_reached(attempt, env),
                };
                self.reach_goal();
                env.emit(Event::Reserved {
                    relay: env.relay,
                    addr,
                });
            }
            (
                State::Waiting { .. }
                | State::Promoted { .. }
                | State::Reserving { .. }
                | State::Reserved { .. },
                Input::ForeignReservation { listener, addr },
            ) if connected && env.config.reservations() => {
                let was_reserved = matches!(self.state, State::Reserved { .. });
                // Our request in flight would replace the application's listener once accepted.
                if let State::Reserving { listener: ours, .. } = self.state {
                    env.actions.push(Action::RemoveListener(ours));
                }
                let goal = match self.state {
                    State::Reserved { goal, .. } => goal,
                    State::Waiting { attempt, .. }
                    | State::Promoted { attempt, .. }
                    | State::Reserving { attempt, .. } => self.goal_reached(attempt, env),
                    _ => self.goal_reached(0, env),
                };
                self.state = State::Reserved {
                    listener,
                    adopted: true,
                    goal,
                };
                self.reach_goal();
                if !was_reserved {
                    env.emit(Event::Reserved {
                        relay: env.relay,
                        addr: addr.clone(),
                    });
                }
                env.actions.push(Action::Adopt { listener, addr });
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
                State::Reserved { listener, goal, .. },
                Input::ListenerClosed {
                    listener: id, cause, ..
                },
            ) if listener == id && connected => self.fail(goal.unforgiven(env), false, cause, env),
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
            (State::Waiting { .. } | State::Promoted { .. }, Input::RetryNow) => self.try_now(0, env),
            (State::GaveUp { .. } | State::Standby { .. }, Input::RetryNow) if self.retryable() => {
                self.start_over(env)
            }
            (
                State::GaveUp {
                    retry_at: Some(_), ..
                },
                Input::TimerFired,
            ) => self.start_over(env),
            (State::Waiting { .. }, Input::NetworkChanged) if !self.network_reset => {
                self.network_reset = true;
                self.try_now(0, env);
            }
            (
                State::GaveUp { .. }
                | State::Standby {
                    eligible_at: Some(_), ..
                },
                Input::NetworkChanged,
            ) if !self.network_reset && self.retryable() => {
                self.network_reset = true;
                self.start_over(env);
            }
            (State::Standby { attempt, .. }, Input::TimerFired) => {
                self.state = State::Standby {
                    attempt,
                    eligible_at: None,
                }
            }
            (State::Standby { attempt, .. }, Input::Promote { delay }) => {
                if delay.is_zero() {
                    self.try_now(attempt, env);
                } else {
                    self.state = State::Promoted {
                        attempt,
                        at: env.now + delay,
                    };
                }
            }
            (State::Promoted { attempt, .. }, Input::TimerFired) => self.try_now(attempt, env),
            (State::Waiting { attempt, deadline }, Input::Demote) => {
                self.state = State::Standby {
                    attempt,
                    eligible_at: Some(deadline),
                }
            }
            (State::GaveUp { .. } | State::Paused, Input::Pause) => {}
            (_, Input::Pause) => {
                if let Some(listener) = self.own_listener() {
                    env.actions.push(Action::RemoveListener(listener));
                }
                self.state = State::Paused;
                self.reach_goal();
            }
            (State::Paused, Input::Resume) => self.start_over(env),
            (State::Promoted { attempt, .. }, Input::Demote) => {
                self.state = State::Standby {
                    attempt,
                    eligible_at: None,
                }
            }
            (state, Input::Added(addr)) => {
                if !self.addrs.contains(&addr) {
                    self.addrs.push(addr);
                    tracing::debug!(relay = %env.relay, addrs = ?self.addrs, "relay address added");
                }
                if let State::GaveUp { .. } = state {
                    self.start_over(env);
                }
            }
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

    /// The goal is reached now after `attempts` retries, which count on if it does not hold.
    fn goal_reached(&mut self, attempts: u32, env: &Env<'_>) -> Goal {
        let attempts = if self.reached_before { attempts } else { 0 };
        self.reached_before = true;
        Goal {
            since: env.now,
            attempts,
        }
    }

    fn reach_goal(&mut self) {
        self.outage_since = None;
        self.network_reset = false;
    }

    /// Starts afresh, with no retry counted: tries now, or in a pool waits as an eligible standby for the pool
    /// to promote it; while reservations are paused, stays paused.
    fn start_over(&mut self, env: &mut Env<'_>) {
        if env.paused {
            self.state = State::Paused;
        } else if env.config.max_reservations().is_some() {
            self.state = State::Standby {
                attempt: 0,
                eligible_at: None,
            };
        } else {
            self.try_now(0, env);
        }
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
            self.state = State::Connected {
                goal: self.goal_reached(attempt, env),
            };
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
mod tests;
