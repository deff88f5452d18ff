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

use crate::{
    address::is_tcp,
    backoff::Backoff,
    mistake::Mistake,
    pool::{holds_slot, Standing},
    rtt::RttEstimator,
    Cause, CauseKind, Config, Event, GiveUpReason, RelayStatus, MAX_PRESUMED_RESTARTS,
};

/// What the relay is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// Retry `attempt` is due at `deadline`; the relay is re-checked at `recheck_at` before, if that comes first.
    Waiting {
        attempt: u32,
        deadline: Instant,
        recheck_at: Option<Instant>,
    },
    /// A re-check of a relay presumed restarting: the keeper's dial of its TCP addresses is in flight, and at
    /// `deadline` it is aborted. Refused or failed, the counted schedule goes on as `then` says; connected,
    /// the relay is reserved.
    Rechecking {
        dial: ConnectionId,
        deadline: Instant,
        then: Resume,
    },
    /// Connected; the relay refused try `attempt` because it does not offer HOP yet. Not a failure yet: the
    /// keeper reserves again the moment the relay offers HOP, as the same try. Only if `deadline` (the
    /// fallback) comes first does the try count as failed: then retry `attempt + 1` starts, or with `last`
    /// (the try was the round's last) the keeper gives up.
    AwaitingHop {
        attempt: u32,
        deadline: Instant,
        last: bool,
    },
    /// `attempts` retries failed, or a mistake left no address to dial (`reason`); nothing is done until the
    /// relay is revived, or until `retry_at` when a cool-down is configured.
    GaveUp {
        attempts: u32,
        /// Boxed: with the peer id a wrong one names it is the largest of every state's fields, and every
        /// kept relay would pay for it (BENCHMARKS.md, memory per kept relay).
        reason: Box<GiveUpReason>,
        retry_at: Option<Instant>,
        /// While the host refuses, the relay is still re-checked, at this instant next.
        recheck_at: Option<Instant>,
    },
    /// A candidate the pool does not need now: nothing is dialed. It becomes eligible for promotion at
    /// `eligible_at` (its own backoff after a failure); `None`: eligible now. A move to standby ends the outage's
    /// count: a promotion dials as the first try of a fresh one.
    Standby { eligible_at: Option<Instant> },
    /// Promoted from standby; its first try starts at `at`, a random moment within the promotion spread.
    Promoted { at: Instant },
    /// The node is publicly reachable ([`Config::with_pause_while_public`]): nothing is dialed or reserved.
    Paused,
}

/// The counted schedule a re-check interrupted, to go back to when it is refused or fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resume {
    /// Retry `attempt` is due at `at`.
    Retry { attempt: u32, at: Instant },
    /// The relay gave up after `attempts` retries; its cool-down ends at `retry_at`.
    CoolDown { attempts: u32, retry_at: Instant },
}

/// When the relay reached its goal state. The backoff level its last outage left is forgiven only once the
/// goal has held for [`Config::with_forgive_after`]: a relay that keeps coming back and falling over backs
/// off longer each time instead of starting from the base after every short success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Goal {
    since: Instant,
}

impl Goal {
    /// Whether the goal held long enough, when it is lost now, to forgive the backoff level.
    fn held(self, env: &Env<'_>) -> bool {
        env.now.saturating_duration_since(self.since) >= env.config.forgive_after()
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

/// One kept relay.
#[derive(Debug)]
pub(crate) struct Relay {
    /// Dialable addresses, each ending in `/p2p/<peer_id>`.
    addrs: Vec<Multiaddr>,
    /// The direct connections to the relay, with the address each was dialed at.
    links: Vec<Link>,
    /// When the relay left its goal state (or first failed to reach it); `None` while it is in it.
    outage_since: Option<Instant>,
    /// The backoff level: the next counted wait is drawn below `backoff_bound(level + 1)`. It goes on across
    /// outages until the goal holds for `forgive_after`, so it is kept apart from the attempt count, which
    /// starts from 1 in every outage and alone decides the give-up.
    level: u32,
    /// A network change already reset this outage's backoff; later changes leave it to back off.
    network_reset: bool,
    /// The relay has been in its goal state before, so a loss soon after reaching it again is a flap.
    reached_before: bool,
    /// The connection on which the relay's refusal for lack of HOP was already let off once: a second one
    /// on the same connection counts, so a relay whose HOP comes and goes cannot loop.
    hop_awaited_on: Option<ConnectionId>,
    /// The relay's host is presumed to be restarting it: a dial was refused, or the relay dropped the node
    /// soon after its goal. While it is and nothing connects the relay, it is re-checked
    /// ([`Config::with_recheck`]).
    restarting: bool,
    /// Goals in a row lost before they held for `forgive_after`.
    flaps: u32,
    /// Dials in a row that ran out of time: each one doubles the next dial's limit (up to the cap), so a
    /// link too slow for the first limit is not cut on every try.
    dials_timed_out: u32,
    /// The round trips the probe measured on the relay's connections, for the limit of the next dial.
    rtt: RttEstimator,
    state: State,
}

impl Relay {
    /// Starts keeping the relay at `addr`: reserves on one of its existing connections `links`, or dials.
    pub(crate) fn new(addr: Multiaddr, links: Vec<Link>, env: &mut Env<'_>) -> (Self, Transition) {
        let mut relay = Self {
            addrs: vec![addr],
            links,
            outage_since: None,
            level: 0,
            network_reset: false,
            reached_before: false,
            hop_awaited_on: None,
            restarting: false,
            flaps: 0,
            dials_timed_out: 0,
            rtt: RttEstimator::default(),
            state: State::Paused,
        };
        relay.start_over(env);
        let transition = Transition {
            deadline: (None, relay.deadline()),
            status: (None, relay.status()),
            restored_after: None,
        };
        (relay, transition)
    }

    /// The probe measured a round trip of `rtt` on a connection to the relay.
    pub(crate) fn measured(&mut self, rtt: Duration) {
        self.rtt.sample(rtt);
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
        self.links
    }

    /// Whether a retry can help: not after giving up for a mistake, which waits for a fixed address.
    pub(crate) fn retryable(&self) -> bool {
        self.gave_up().is_none_or(|reason| reason.is_retryable())
    }

    /// Why the relay gave up, if it did.
    pub(crate) fn gave_up(&self) -> Option<GiveUpReason> {
        match self.state {
            State::GaveUp { ref reason, .. } => Some(**reason),
            _ => None,
        }
    }

    pub(crate) fn status(&self) -> RelayStatus {
        match self.state {
            State::Dialing { .. } | State::Rechecking { .. } => RelayStatus::Connecting,
            State::Reserving { .. } | State::Connected { .. } => RelayStatus::Connected,
            State::AwaitingHop { last: true, .. } => RelayStatus::Connected,
            State::Reserved { .. } => RelayStatus::Reserved,
            State::Waiting { attempt, .. } => RelayStatus::Waiting { attempt },
            State::AwaitingHop { attempt, .. } => RelayStatus::Waiting {
                attempt: attempt.saturating_add(1),
            },
            State::GaveUp {
                attempts,
                ref reason,
                retry_at,
                ..
            } => RelayStatus::GaveUp {
                attempts,
                reason: **reason,
                retry_at,
            },
            State::Standby { .. } => RelayStatus::Standby,
            State::Promoted { .. } => RelayStatus::Connecting,
            State::Paused => RelayStatus::Paused,
        }
    }

    /// Where the relay stands in the pool. It gives way (a standby may take its slot) only while it waits
    /// out a backoff, not while it waits for a connected relay to offer HOP: that is a matter of a round trip.
    pub(crate) fn standing(&self) -> Standing {
        Standing {
            holds_slot: holds_slot(self.status()),
            eligible: matches!(self.state, State::Standby { eligible_at: None }),
            gives_way: matches!(self.state, State::Waiting { .. }),
            promoted: matches!(self.state, State::Promoted { .. }),
        }
    }

    /// When the engine must feed [`Input::TimerFired`]; `None` when no retry or dial is timed.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::Waiting {
                deadline, recheck_at, ..
            } => Some(recheck_at.map_or(deadline, |at| at.min(deadline))),
            State::AwaitingHop { deadline, .. }
            | State::Dialing { deadline, .. }
            | State::Rechecking { deadline, .. }
            | State::Promoted { at: deadline } => Some(deadline),
            State::GaveUp {
                retry_at, recheck_at, ..
            } => [retry_at, recheck_at].into_iter().flatten().min(),
            State::Standby { eligible_at, .. } => eligible_at,
            State::Reserving { .. } | State::Connected { .. } | State::Reserved { .. } | State::Paused => {
                None
            }
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

    /// The one place where the relay changes state. Every input is matched against every state, without a
    /// catch-all, so a pair that does nothing says why.
    fn step(&mut self, input: Input, env: &mut Env<'_>) {
        let connected = !self.links.is_empty();
        let reserving = env.config.reservations();
        match input {
            Input::ConnectionClosed { connection, cause } => {
                self.links.retain(|(id, _)| *id != connection);
                if !connected || !self.links.is_empty() {
                    return;
                }
                match self.state {
                    State::Connected { goal } | State::Reserved { goal, .. } => {
                        self.lose_goal(goal, cause, env)
                    }
                    // The relay took the connection and dropped it before the goal: it is not restarting.
                    State::Reserving { attempt, .. } => {
                        self.restarting = false;
                        self.fail(attempt, false, cause, env)
                    }
                    // HOP cannot come on a connection that is gone: the refused try failed, and the retry
                    // announced for the fallback's deadline dials when it fires.
                    State::AwaitingHop {
                        attempt,
                        deadline,
                        last,
                    } => {
                        self.restarting = false;
                        if last {
                            self.give_up(attempt, GiveUpReason::MaxAttempts, env);
                        } else {
                            self.level = self.level.saturating_add(1);
                            self.state = State::Waiting {
                                attempt: attempt.saturating_add(1),
                                deadline,
                                recheck_at: None,
                            };
                        }
                    }
                    // The reservation's listener closed before its connection: the retry was scheduled while
                    // the relay was still connected, and a restarting relay is re-checked from now on.
                    State::Waiting {
                        attempt,
                        deadline,
                        recheck_at: None,
                    } => {
                        self.state = State::Waiting {
                            attempt,
                            deadline,
                            recheck_at: self.next_recheck(env),
                        }
                    }
                    // A waiting retry dials instead of reserving when it fires; the others dial nothing now.
                    State::Waiting { .. }
                    | State::Rechecking { .. }
                    | State::Dialing { .. }
                    | State::GaveUp { .. }
                    | State::Standby { .. }
                    | State::Promoted { .. }
                    | State::Paused => {}
                }
            }
            Input::ConnectionEstablished { connection, dialed } => {
                self.links.push((connection, dialed));
                self.dials_timed_out = 0;
                if connected {
                    return;
                }
                // The retries the keeper's own dial took, and the try the connection stands for: a re-check
                // that connects stands for the retry it came before, so a relay that takes connections and
                // drops them still runs out of retries.
                let (made, attempt) = match self.state {
                    State::Dialing { dial, attempt, .. } => {
                        (if dial == Some(connection) { attempt } else { 0 }, attempt)
                    }
                    State::Waiting { attempt, .. } => (0, attempt),
                    State::Promoted { .. } => (0, 0),
                    State::Rechecking {
                        dial,
                        then: Resume::Retry { attempt, .. },
                        ..
                    } => {
                        let made = attempt.saturating_sub(1);
                        (if dial == connection { made } else { 0 }, attempt)
                    }
                    // Connected during a cool-down: the relay is back, and a fresh round reserves on it.
                    State::Rechecking {
                        dial,
                        then: Resume::CoolDown { attempts, .. },
                        ..
                    } => {
                        env.emit(Event::Reconnected {
                            relay: env.relay,
                            attempts: if dial == connection { attempts } else { 0 },
                        });
                        self.start_over(env);
                        return;
                    }
                    // Connected already, or not trying: the connection is recorded, nothing more.
                    State::Connected { .. }
                    | State::Reserving { .. }
                    | State::Reserved { .. }
                    | State::AwaitingHop { .. }
                    | State::GaveUp { .. }
                    | State::Standby { .. }
                    | State::Paused => return,
                };
                if self.outage_since.is_some() {
                    env.emit(Event::Reconnected {
                        relay: env.relay,
                        attempts: made,
                    });
                }
                self.on_connection(attempt, env);
            }
            Input::DialFailed {
                connection,
                cause,
                mistake,
                refused,
            } => match self.state {
                State::Dialing {
                    dial: Some(dial),
                    attempt,
                    ..
                } if dial == connection => {
                    self.restarting = refused;
                    self.dial_failed(attempt, cause, mistake, env)
                }
                // The keeper yielded to another dial: its outcome is this retry's.
                State::Dialing {
                    dial: None, attempt, ..
                } => {
                    self.restarting = refused;
                    self.dial_failed(attempt, cause, mistake, env)
                }
                State::Rechecking { dial, then, .. } if dial == connection => {
                    self.restarting = refused;
                    self.recheck_failed(then, cause, mistake, env)
                }
                // Another dial than ours, or one that no longer matters: ours was aborted or superseded.
                State::Dialing { .. }
                | State::Rechecking { .. }
                | State::Reserving { .. }
                | State::Connected { .. }
                | State::Reserved { .. }
                | State::Waiting { .. }
                | State::AwaitingHop { .. }
                | State::GaveUp { .. }
                | State::Standby { .. }
                | State::Promoted { .. }
                | State::Paused => {}
            },
            Input::DialSkipped { connection } => match self.state {
                State::Dialing {
                    dial: Some(dial),
                    attempt,
                    deadline,
                } if dial == connection => {
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
                // Someone else's dial is in flight; if it connects, the relay is reserved from `Waiting`.
                State::Rechecking { dial, then, .. } if dial == connection => self.resume(then, env),
                // A dial of ours that the keeper no longer waits for.
                State::Dialing { .. }
                | State::Rechecking { .. }
                | State::Reserving { .. }
                | State::Connected { .. }
                | State::Reserved { .. }
                | State::Waiting { .. }
                | State::AwaitingHop { .. }
                | State::GaveUp { .. }
                | State::Standby { .. }
                | State::Promoted { .. }
                | State::Paused => {}
            },
            Input::ListenAddr { listener: id, addr } => match self.state {
                State::Reserving { listener, .. } if listener == id => {
                    let goal = self.goal_reached(env);
                    self.state = State::Reserved {
                        listener,
                        adopted: false,
                        goal,
                    };
                    self.reach_goal();
                    env.emit(Event::Reserved {
                        relay: env.relay,
                        addr,
                    });
                }
                // A renewal of the live reservation, or an address of a listener the keeper gave up on.
                State::Reserving { .. }
                | State::Rechecking { .. }
                | State::Reserved { .. }
                | State::Dialing { .. }
                | State::Connected { .. }
                | State::Waiting { .. }
                | State::AwaitingHop { .. }
                | State::GaveUp { .. }
                | State::Standby { .. }
                | State::Promoted { .. }
                | State::Paused => {}
            },
            Input::ForeignReservation { listener, addr } => match self.state {
                // The application's reservation is the relay's from now on, whatever the keeper was doing:
                // a status that said "gave up" or "standby" while the node is reachable through it would lie.
                State::Waiting { .. }
                | State::AwaitingHop { .. }
                | State::Promoted { .. }
                | State::Reserving { .. }
                | State::Reserved { .. }
                | State::GaveUp { .. }
                | State::Standby { .. }
                    if connected && reserving =>
                {
                    self.adopt(listener, addr, env)
                }
                // Not connected (the application's listener is not live yet), reservations off (the keeper
                // holds none to replace), or paused (the keeper holds none while the node is public).
                State::Waiting { .. }
                | State::Rechecking { .. }
                | State::AwaitingHop { .. }
                | State::Promoted { .. }
                | State::Reserving { .. }
                | State::Reserved { .. }
                | State::GaveUp { .. }
                | State::Standby { .. }
                | State::Dialing { .. }
                | State::Connected { .. }
                | State::Paused => {}
            },
            Input::ListenerClosed {
                listener: id,
                refused,
                cause,
            } => match self.state {
                State::Reserving {
                    listener,
                    attempt,
                    hop_since,
                } if listener == id && connected => self.refused(attempt, hop_since, refused, cause, env),
                State::Reserved { listener, goal, .. } if listener == id && connected => {
                    self.lose_goal(goal, cause, env)
                }
                // A stale listener, or one whose connection closed: the closed connection is the news.
                State::Reserving { .. }
                | State::Rechecking { .. }
                | State::Reserved { .. }
                | State::Dialing { .. }
                | State::Connected { .. }
                | State::Waiting { .. }
                | State::AwaitingHop { .. }
                | State::GaveUp { .. }
                | State::Standby { .. }
                | State::Promoted { .. }
                | State::Paused => {}
            },
            Input::ListenerUnsupported { listener: id } => match self.state {
                State::Reserving {
                    listener, attempt, ..
                } if listener == id => self.give_up(attempt, GiveUpReason::NoRelayTransport, env),
                // A stale listener.
                State::Reserving { .. }
                | State::Rechecking { .. }
                | State::Dialing { .. }
                | State::Connected { .. }
                | State::Reserved { .. }
                | State::Waiting { .. }
                | State::AwaitingHop { .. }
                | State::GaveUp { .. }
                | State::Standby { .. }
                | State::Promoted { .. }
                | State::Paused => {}
            },
            Input::TimerFired => match self.state {
                State::Dialing { attempt, .. } => {
                    self.dial_timed_out(env);
                    self.fail(attempt, false, Cause::dial_timeout(), env)
                }
                State::Rechecking { then, .. } => {
                    self.dial_timed_out(env);
                    self.resume(then, env)
                }
                State::Waiting {
                    attempt, deadline, ..
                } if deadline <= env.now => self.try_now(attempt, env),
                State::Waiting {
                    attempt, deadline, ..
                } => self.recheck(
                    Resume::Retry {
                        attempt,
                        at: deadline,
                    },
                    env,
                ),
                State::Promoted { .. } => self.try_now(0, env),
                // The fallback came before HOP: the refused try counts.
                State::AwaitingHop { attempt, last, .. } => {
                    if last {
                        self.give_up(attempt, GiveUpReason::MaxAttempts, env);
                    } else {
                        self.level = self.level.saturating_add(1);
                        self.try_now(attempt.saturating_add(1), env);
                    }
                }
                State::GaveUp {
                    retry_at: Some(retry_at),
                    ..
                } if retry_at <= env.now => self.start_over(env),
                State::GaveUp {
                    attempts,
                    retry_at: Some(retry_at),
                    ..
                } => self.recheck(Resume::CoolDown { attempts, retry_at }, env),
                State::Standby { .. } => self.state = State::Standby { eligible_at: None },
                // Nothing of these is timed.
                State::GaveUp { retry_at: None, .. }
                | State::Reserving { .. }
                | State::Connected { .. }
                | State::Reserved { .. }
                | State::Paused => {}
            },
            Input::HopEnabled => match self.state {
                State::Waiting { attempt, .. } if connected && reserving => self.try_now(attempt, env),
                // The refused try goes on, uncounted.
                State::AwaitingHop { attempt, .. } => self.on_connection(attempt, env),
                State::Reserving {
                    listener, attempt, ..
                } => {
                    self.state = State::Reserving {
                        listener,
                        attempt,
                        hop_since: true,
                    };
                }
                // What the relay lacked is there now: a fresh round, as after a cool-down.
                State::GaveUp { .. } if connected && reserving && self.retryable() => self.start_over(env),
                // A standby that waits out a refusal is eligible the moment the relay offers HOP.
                State::Standby { eligible_at: Some(_) } if connected && reserving => {
                    self.state = State::Standby { eligible_at: None }
                }
                // Not connected (HOP on a connection that closed since), reservations off, a mistake that
                // HOP does not cure, in the goal already, about to try, or paused.
                State::Waiting { .. }
                | State::Rechecking { .. }
                | State::GaveUp { .. }
                | State::Standby { .. }
                | State::Dialing { .. }
                | State::Connected { .. }
                | State::Reserved { .. }
                | State::Promoted { .. }
                | State::Paused => {}
            },
            Input::RetryNow => match self.state {
                State::Waiting { .. } | State::AwaitingHop { .. } | State::Promoted { .. } => {
                    self.level = 0;
                    self.try_now(0, env)
                }
                State::GaveUp { .. } | State::Standby { .. } if self.retryable() => self.start_over(env),
                // The try under way becomes the first of a fresh count; a dial keeps its time limit.
                State::Dialing { dial, deadline, .. } => {
                    self.level = 0;
                    self.state = State::Dialing {
                        dial,
                        attempt: 0,
                        deadline,
                    }
                }
                State::Rechecking { dial, deadline, .. } => {
                    self.level = 0;
                    self.state = State::Dialing {
                        dial: Some(dial),
                        attempt: 0,
                        deadline,
                    }
                }
                State::Reserving {
                    listener, hop_since, ..
                } => {
                    self.level = 0;
                    self.state = State::Reserving {
                        listener,
                        attempt: 0,
                        hop_since,
                    }
                }
                // A mistake waits for a fixed address; the others have nothing to retry.
                State::GaveUp { .. }
                | State::Standby { .. }
                | State::Connected { .. }
                | State::Reserved { .. } => {}
                State::Paused => {}
            },
            Input::NetworkChanged => {
                // Dials that ran out of time on the old network say nothing of the new one.
                self.dials_timed_out = 0;
                match self.state {
                    State::Waiting { .. } if !self.network_reset => {
                        self.network_reset = true;
                        self.level = 0;
                        self.try_now(0, env);
                    }
                    State::GaveUp { .. } | State::Standby { eligible_at: Some(_) }
                        if !self.network_reset && self.retryable() =>
                    {
                        self.network_reset = true;
                        self.start_over(env);
                    }
                    // Trying already, or about to: the try goes on, and the waits after it start from the base.
                    State::Dialing { .. }
                    | State::Rechecking { .. }
                    | State::Reserving { .. }
                    | State::AwaitingHop { .. }
                    | State::Promoted { .. }
                    | State::Standby { eligible_at: None }
                        if !self.network_reset =>
                    {
                        self.network_reset = true;
                        self.level = 0;
                    }
                    // Reset once per outage already, a mistake, in the goal already, or paused.
                    State::Waiting { .. }
                    | State::GaveUp { .. }
                    | State::Standby { .. }
                    | State::AwaitingHop { .. }
                    | State::Dialing { .. }
                    | State::Rechecking { .. }
                    | State::Reserving { .. }
                    | State::Connected { .. }
                    | State::Reserved { .. }
                    | State::Promoted { .. }
                    | State::Paused => {}
                }
            }
            Input::Added(addr) => {
                self.dials_timed_out = 0;
                if !self.addrs.contains(&addr) {
                    self.addrs.push(addr);
                    tracing::debug!(relay = %env.relay, addrs = ?self.addrs, "relay address added");
                }
                match self.state {
                    // Whatever it gave up for may be fixed now.
                    State::GaveUp { .. } => self.start_over(env),
                    // The new address is dialed by the next dial.
                    State::Dialing { .. }
                    | State::Rechecking { .. }
                    | State::Reserving { .. }
                    | State::Connected { .. }
                    | State::Reserved { .. }
                    | State::Waiting { .. }
                    | State::AwaitingHop { .. }
                    | State::Standby { .. }
                    | State::Promoted { .. }
                    | State::Paused => {}
                }
            }
            Input::Promote { delay } => match self.state {
                State::Standby { .. } => {
                    if delay.is_zero() {
                        self.try_now(0, env);
                    } else {
                        self.state = State::Promoted { at: env.now + delay };
                    }
                }
                // The pool promotes standbys only.
                State::Dialing { .. }
                | State::Rechecking { .. }
                | State::Reserving { .. }
                | State::Connected { .. }
                | State::Reserved { .. }
                | State::Waiting { .. }
                | State::AwaitingHop { .. }
                | State::GaveUp { .. }
                | State::Promoted { .. }
                | State::Paused => {}
            },
            Input::Demote => match self.state {
                // The outage's count ends with the move; the backoff level does not.
                State::Waiting { deadline, .. } => {
                    self.state = State::Standby {
                        eligible_at: Some(deadline),
                    }
                }
                State::Promoted { .. } => self.state = State::Standby { eligible_at: None },
                // The pool demotes only relays that give way or have not been dialed.
                State::Dialing { .. }
                | State::Rechecking { .. }
                | State::Reserving { .. }
                | State::Connected { .. }
                | State::Reserved { .. }
                | State::AwaitingHop { .. }
                | State::GaveUp { .. }
                | State::Standby { .. }
                | State::Paused => {}
            },
            Input::Pause => match self.state {
                // Nothing held; a relay that gave up stays given up, and is not re-checked while paused.
                State::GaveUp {
                    ref mut recheck_at, ..
                } => *recheck_at = None,
                State::Paused => {}
                State::Dialing { .. }
                | State::Rechecking { .. }
                | State::Reserving { .. }
                | State::Connected { .. }
                | State::Reserved { .. }
                | State::Waiting { .. }
                | State::AwaitingHop { .. }
                | State::Standby { .. }
                | State::Promoted { .. } => {
                    if let Some(listener) = self.own_listener() {
                        env.actions.push(Action::RemoveListener(listener));
                    }
                    self.state = State::Paused;
                    self.reach_goal();
                }
            },
            Input::Resume => match self.state {
                State::Paused => self.start_over(env),
                // Only a paused relay resumes.
                State::Dialing { .. }
                | State::Rechecking { .. }
                | State::Reserving { .. }
                | State::Connected { .. }
                | State::Reserved { .. }
                | State::Waiting { .. }
                | State::AwaitingHop { .. }
                | State::GaveUp { .. }
                | State::Standby { .. }
                | State::Promoted { .. } => {}
            },
        }
    }

    /// The application's `listener`, live at `addr`, holds the relay's reservation from now on.
    fn adopt(&mut self, listener: ListenerId, addr: Multiaddr, env: &mut Env<'_>) {
        // Our request in flight would replace the application's listener once accepted.
        if let State::Reserving { listener: ours, .. } = self.state {
            env.actions.push(Action::RemoveListener(ours));
        }
        let was_reserved = matches!(self.state, State::Reserved { .. });
        let goal = match self.state {
            State::Reserved { goal, .. } | State::Connected { goal } => goal,
            _ => self.goal_reached(env),
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

    /// The goal is reached now. The backoff level stays until the goal has held for `forgive_after`, except
    /// at the relay's first goal: there was nothing to flap from, and a fresh relay's first refusal (it offers
    /// HOP only once identify told it its address) is no failure.
    fn goal_reached(&mut self, env: &Env<'_>) -> Goal {
        if !self.reached_before {
            self.level = 0;
        }
        self.reached_before = true;
        Goal { since: env.now }
    }

    /// The outage is over: the relay is in its goal state, or paused.
    fn reach_goal(&mut self) {
        self.outage_since = None;
        self.network_reset = false;
    }

    /// Loses the goal reached at `goal`. If it held long enough, the relay's history is forgiven: the backoff
    /// level and the presumption of a restart. If it did not, the relay flapped: the level stays, and the relay
    /// is presumed to be restarting (so it is re-checked) unless it flapped too often in a row for that.
    fn lose_goal(&mut self, goal: Goal, cause: Cause, env: &mut Env<'_>) {
        if goal.held(env) {
            self.level = 0;
            self.flaps = 0;
            self.restarting = false;
        } else {
            self.flaps = self.flaps.saturating_add(1);
            self.restarting = self.flaps <= MAX_PRESUMED_RESTARTS;
        }
        self.fail(0, false, cause, env)
    }

    /// Starts afresh, with no retry counted and the backoff at its base: tries now, or in a pool waits as an
    /// eligible standby for the pool to promote it; while reservations are paused, stays paused.
    fn start_over(&mut self, env: &mut Env<'_>) {
        self.level = 0;
        if env.paused {
            self.state = State::Paused;
        } else if env.config.max_reservations().is_some() {
            self.state = State::Standby { eligible_at: None };
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
            deadline: env.now + env.config.dial_limit(self.dials_timed_out, self.rtt.upper()),
        };
        env.actions.push(Action::Dial(opts));
    }

    /// The relay is connected: reserve, or with reservations off, the goal is reached.
    fn on_connection(&mut self, attempt: u32, env: &mut Env<'_>) {
        let Some((_, dialed)) = self.links.first() else {
            return;
        };
        if !env.config.reservations() {
            let goal = self.goal_reached(env);
            self.state = State::Connected { goal };
            self.reach_goal();
            return;
        }
        // Reserve through the address the connection reached; an inbound one has none, so the first configured.
        // Either names the relay, if any peer: the connection reached it.
        let Some(Ok(circuit)) = dialed
            .as_ref()
            .or(self.addrs.first())
            .map(|addr| addr.clone().with_p2p(env.relay))
        else {
            return;
        };
        let circuit = circuit.with(Protocol::P2pCircuit);
        let opts = ListenOpts::new(circuit);
        self.state = State::Reserving {
            listener: opts.listener_id(),
            attempt,
            hop_since: false,
        };
        env.actions.push(Action::Listen(opts));
    }

    /// The relay closed the keeper's reservation request of try `attempt` (`refused`: with an error). A
    /// refusal for lack of HOP is a "not yet", once per connection: the keeper waits for the relay to offer
    /// HOP (or, if it did meanwhile, `hop_since`, asks again at once) without counting the try.
    fn refused(&mut self, attempt: u32, hop_since: bool, refused: bool, cause: Cause, env: &mut Env<'_>) {
        let link = self.links.first().map(|(id, _)| *id);
        let not_yet = refused && cause.kind == CauseKind::HopUnsupported && self.hop_awaited_on != link;
        if !not_yet {
            // The relay answered: it is not restarting. Only a refusal is known to be cured by HOP; a
            // replacement must back off, or the keeper would answer the application's listener with one of
            // its own.
            self.restarting = false;
            self.fail(attempt, hop_since && refused, cause, env);
            return;
        }
        self.hop_awaited_on = link;
        self.outage_since.get_or_insert(env.now);
        if hop_since {
            tracing::debug!(relay = %env.relay, "refused before the relay offered HOP, which it does now; asking again");
            self.on_connection(attempt, env);
            return;
        }
        let last = env.config.max_attempts().is_some_and(|max| attempt >= max);
        let level = self.level.saturating_add(1);
        // The last try's fallback dials nothing, it only gives up: no herd to spread, so no jitter.
        let delay = if last {
            env.config.backoff_bound(level)
        } else {
            env.backoff.fallback(env.config, level)
        };
        self.state = State::AwaitingHop {
            attempt,
            deadline: env.now + delay,
            last,
        };
        if !last {
            env.emit(Event::ReconnectScheduled {
                relay: env.relay,
                attempt: attempt.saturating_add(1),
                delay,
                cause: Cause::new(CauseKind::AwaitingHop, cause.message),
            });
        }
    }

    /// A dial failed; addresses it showed to be mistaken are never dialed again, and a relay left with none
    /// gives up at once.
    fn dial_failed(&mut self, attempt: u32, cause: Cause, mistake: Option<Mistake>, env: &mut Env<'_>) {
        if self.drop_mistaken(attempt, &cause, mistake, env) {
            self.fail(attempt, false, cause, env)
        }
    }

    /// Drops the addresses a failed dial showed to be mistaken; a relay left with none gives up at once, after
    /// `attempts` retries. Says whether the relay has addresses left.
    fn drop_mistaken(
        &mut self,
        attempts: u32,
        cause: &Cause,
        mistake: Option<Mistake>,
        env: &mut Env<'_>,
    ) -> bool {
        let Some(mistake) = mistake else {
            return true;
        };
        let before = self.addrs.len();
        self.addrs.retain(|addr| !mistake.covers(addr));
        if self.addrs.is_empty() {
            // The give-up's own warning names the fix.
            self.give_up(attempts, mistake.reason, env);
            return false;
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
        true
    }

    /// The keeper's dial ran out of time and is aborted: the host does not answer, so it is not restarting,
    /// and the next dial's limit doubles.
    fn dial_timed_out(&mut self, env: &mut Env<'_>) {
        env.actions.push(Action::AbortDials);
        self.dials_timed_out = self.dials_timed_out.saturating_add(1);
        self.restarting = false;
    }

    /// When to re-check the relay next: only while its host is presumed to be restarting it, nothing connects
    /// it, the node is not paused, and it has a TCP address to be refused at.
    fn next_recheck(&self, env: &mut Env<'_>) -> Option<Instant> {
        if !self.restarting || !self.links.is_empty() || env.paused || !self.addrs.iter().any(is_tcp) {
            return None;
        }
        env.backoff.recheck(env.config).map(|wait| env.now + wait)
    }

    /// Re-checks the relay now: dials its TCP addresses (a QUIC dial to a relay that is down would hold the
    /// dial's failure for its whole handshake time-out), then goes back to `then` unless it connects.
    fn recheck(&mut self, then: Resume, env: &mut Env<'_>) {
        let tcp: Vec<Multiaddr> = self.addrs.iter().filter(|addr| is_tcp(addr)).cloned().collect();
        let opts = DialOpts::peer_id(env.relay)
            .addresses(tcp)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        tracing::debug!(relay = %env.relay, "re-checking a relay presumed restarting");
        self.state = State::Rechecking {
            dial: opts.connection_id(),
            deadline: env.now + env.config.dial_limit(self.dials_timed_out, self.rtt.upper()),
            then,
        };
        env.actions.push(Action::Dial(opts));
    }

    /// A re-check's dial failed: the counted schedule goes on, unless the failure showed every address to be
    /// a mistake.
    fn recheck_failed(&mut self, then: Resume, cause: Cause, mistake: Option<Mistake>, env: &mut Env<'_>) {
        let made = match then {
            Resume::Retry { attempt, .. } => attempt.saturating_sub(1),
            Resume::CoolDown { attempts, .. } => attempts,
        };
        if self.drop_mistaken(made, &cause, mistake, env) {
            self.resume(then, env);
        }
    }

    /// Goes back to the counted schedule a re-check interrupted: what fell due meanwhile happens now.
    fn resume(&mut self, then: Resume, env: &mut Env<'_>) {
        match then {
            Resume::Retry { attempt, at } if at <= env.now => self.try_now(attempt, env),
            Resume::Retry { attempt, at } => {
                self.state = State::Waiting {
                    attempt,
                    deadline: at,
                    recheck_at: self.next_recheck(env),
                }
            }
            Resume::CoolDown { retry_at, .. } if retry_at <= env.now => self.start_over(env),
            Resume::CoolDown { attempts, retry_at } => {
                self.state = State::GaveUp {
                    attempts,
                    reason: Box::new(GiveUpReason::MaxAttempts),
                    retry_at: Some(retry_at),
                    recheck_at: self.next_recheck(env),
                }
            }
        }
    }

    /// Try `failed` (0: the goal was lost, or the first try, which is no retry) did not reach the goal: retry
    /// `failed + 1` waits its backoff, one level up; once `max_attempts` retries of this outage failed, the
    /// keeper gives up. `immediately`: the cause is known to be gone, so the retry needs no wait.
    fn fail(&mut self, failed: u32, immediately: bool, cause: Cause, env: &mut Env<'_>) {
        self.outage_since.get_or_insert(env.now);
        if env.config.max_attempts().is_some_and(|max| failed >= max) {
            self.give_up(failed, GiveUpReason::MaxAttempts, env);
            return;
        }
        let attempt = failed.saturating_add(1);
        self.level = self.level.saturating_add(1);
        let delay = if immediately {
            Duration::ZERO
        } else {
            env.backoff.delay(env.config, self.level)
        };
        self.state = State::Waiting {
            attempt,
            deadline: env.now + delay,
            recheck_at: self.next_recheck(env),
        };
        env.emit(Event::ReconnectScheduled {
            relay: env.relay,
            attempt,
            delay,
            cause,
        });
    }

    /// Gives up after `attempts` retries. With a cool-down, a fresh round starts once it is over, after a
    /// wait drawn like a retry at the cap, so a herd that gave up together does not come back in one instant.
    fn give_up(&mut self, attempts: u32, reason: GiveUpReason, env: &mut Env<'_>) {
        self.outage_since.get_or_insert(env.now);
        let retry_in = env
            .config
            .cooldown()
            .filter(|_| reason.is_retryable())
            .map(|cooldown| cooldown + env.backoff.delay(env.config, u32::MAX));
        let retry_at = retry_in.map(|retry_in| env.now + retry_in);
        // A pool's relay that gave up holds no slot, and a re-check that connected would take one unasked.
        let recheck_at = retry_at
            .filter(|_| env.config.max_reservations().is_none())
            .and_then(|_| self.next_recheck(env));
        self.state = State::GaveUp {
            attempts,
            reason: Box::new(reason),
            retry_at,
            recheck_at,
        };
        env.emit(Event::GaveUp {
            relay: env.relay,
            attempts,
            reason,
            retry_in,
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
