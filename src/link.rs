//! One relay's link: its direct connections and its reservation, and the memory of its current trouble (the
//! outage's retry count, the backoff level, whether its host is presumed to be restarting it). Free of timers
//! and I/O: each input is a method that takes the current instant and says what to do through [`Env`].
//!
//! ```text
//!   Halted ──start──▶ Dialing ──connection up──▶ Reserving ──reservation live──▶ Reserved
//!                      │  ▲                        │   │  refused for lack of HOP      │ (or Connected with
//!          dial failed │  │ wait elapsed           │   └──▶ AwaitingHop ──HOP──▶ Reserving  reservations off)
//!                      ▼  │                        ▼ refused, or connection lost      │ lost
//!                      Waiting { attempt } ◀───────┴──────────────────────────────────┘
//!                      │  ▲   ╲ host refused: Rechecking ──connected──▶ Reserving
//!  max_attempts failed │  │    ╲            └──refused again──▶ back to Waiting (or GaveUp)
//!                      ▼  │ cool-down over (through the relay: in a pool, it becomes a standby)
//!                      GaveUp
//! ```
//!
//! While the relay's membership holds it out of the pool's slots or paused, the link is `Halted`, its own
//! wait (if any) running on. Whether the link runs is the membership's to decide ([`crate::membership`]); what
//! the link remembers of past trouble is its own.

use std::time::{Duration, Instant};

use libp2p::{
    core::transport::ListenerId,
    multiaddr::Protocol,
    swarm::{
        dial_opts::{DialOpts, PeerCondition},
        ConnectionId, ListenOpts,
    },
    Multiaddr,
};

use crate::{
    address::is_tcp,
    mistake::Mistake,
    relay::{Action, Env},
    rtt::RttEstimator,
    Cause, CauseKind, Event, GiveUpReason, RelayStatus, MAX_PRESUMED_RESTARTS, MOVE_INTERVAL,
};

/// A direct connection: its id and, if outbound, the address it was dialed at.
pub(crate) type Connection = (ConnectionId, Option<Multiaddr>);

/// The longest the keeper waits for identify's report of a relay's protocols before it asks anyway (less if
/// the base wait is shorter). Identify reports within a round trip of the connection; a relay that sends
/// nothing by then likely runs no identify, and a rust-libp2p relay closes a connection that holds no
/// reservation after 10 s, which a longer wait would run into.
const IDENTIFY_WAIT: Duration = Duration::from_secs(2);

/// Why a try waits for HOP without asking: identify said the relay does not offer it.
const NO_HOP: &str = "the relay's protocols, as identify reported them, do not include HOP";

/// What the link is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Not running: the relay's membership holds it as a standby, promoted and not dialed yet, or paused. The
    /// wait after its last failure runs until `until`; `None`: no wait left.
    Halted { until: Option<Instant> },
    /// A dial is in flight: the keeper's own (`Some`), or one made by someone else that the keeper's dial
    /// yielded to (`None`). `attempt` is the retry it belongs to; 0 for a dial that is not a retry. At
    /// `deadline` the dial is aborted and counts as failed.
    Dialing {
        dial: Option<ConnectionId>,
        attempt: u32,
        deadline: Instant,
    },
    /// A re-check of a relay presumed restarting: the keeper's dial of its TCP addresses is in flight, and at
    /// `deadline` it is aborted. Refused or failed, the counted schedule goes on as `then` says; connected,
    /// the relay is reserved.
    Rechecking {
        dial: ConnectionId,
        deadline: Instant,
        then: Resume,
    },
    /// Connected, and the node runs identify: the keeper asks for try `attempt`'s reservation only once the
    /// relay offers HOP, so the relay client is not refused for its lack (a refusal the application's own event
    /// loop would see as a closed listener). A relay reported without HOP usually offers it a round trip later,
    /// once its clients' identify told it its address. At `deadline`: with no report (the relay may not run
    /// identify) the keeper asks anyway; reported without HOP, it waits for HOP as after a refusal.
    Identifying { attempt: u32, deadline: Instant },
    /// Connected; the keeper's reservation request on `listener` is in flight. `hop_announced`: the relay
    /// announced HOP while it was, so a refusal sent before that is retried at once.
    Reserving {
        listener: ListenerId,
        attempt: u32,
        hop_announced: bool,
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
    /// Connected, and reservations are off: the goal. `moving`: to the node's new network.
    Connected { goal: Goal, moving: Option<Move> },
    /// The reservation on `listener` is live: the goal. `adopted`: the application opened the listener.
    /// `moving`: to the node's new network.
    Reserved {
        listener: ListenerId,
        adopted: bool,
        goal: Goal,
        moving: Option<Move>,
    },
    /// Retry `attempt` is due at `deadline`; the relay is re-checked at `recheck_at` before, if that comes first.
    Waiting {
        attempt: u32,
        deadline: Instant,
        recheck_at: Option<Instant>,
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
}

/// A live link moving to the node's new network: the keeper dials the relay beside the old connections, which
/// may be dead although they look alive, and keeps the new connection once it is up. The relay client reserves
/// on the oldest connection, so the old ones are closed and the reservation is asked for again once they are
/// gone. Neither the move nor the close is a failure: nothing is counted and nothing waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Move {
    /// The keeper's dial `dial` is in flight. `earlier`: the network changed again while the move's first
    /// dial was in flight, which may have left from an address that is gone now (a QUIC handshake then waits
    /// for its first resend, a second later), so the keeper dialed once more; whichever connects first is the
    /// move's.
    Dialing {
        dial: ConnectionId,
        earlier: Option<ConnectionId>,
    },
    /// The new connection `to` is up, and the old ones are being closed.
    Closing { to: ConnectionId },
}

/// The counted schedule a re-check interrupted, to go back to when it is refused or fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resume {
    /// Retry `attempt` is due at `at`.
    Retry { attempt: u32, at: Instant },
    /// The relay gave up after `attempts` retries; its cool-down ends at `retry_at`.
    CoolDown { attempts: u32, retry_at: Instant },
}

/// When the link reached its goal. The backoff level its last outage left is forgiven only once the goal has
/// held for [`Config::with_forgive_after`](crate::Config::with_forgive_after).
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

/// What the relay must do after an input to its link, besides what the link did itself.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum After {
    Nothing,
    /// A fresh round of tries: the relay's membership decides whether it runs now, waits as a standby, or
    /// stays paused.
    StartOver,
}

/// What the link remembers of past trouble.
#[derive(Debug)]
struct Memory {
    /// When the relay left its goal (or first failed to reach it); `None` while it is in it.
    outage_since: Option<Instant>,
    /// The backoff level: the next counted wait is drawn below `backoff_bound(level + 1)`. It goes on across
    /// outages until the goal holds for `forgive_after`, so it is kept apart from the attempt count, which
    /// starts from 1 in every outage and alone decides the give-up.
    level: u32,
    /// A network change already reset this outage's backoff; later changes leave it to back off.
    network_reset: bool,
    /// The relay has been in its goal before, so a loss soon after reaching it again is a flap.
    reached_before: bool,
    /// The connection on which the relay's refusal for lack of HOP was already let off once: a second one
    /// on the same connection counts, so a relay whose HOP comes and goes cannot loop.
    hop_awaited_on: Option<ConnectionId>,
    /// The relay refused a reservation for its limits (`RESOURCE_LIMIT_EXCEEDED`): it is asked again no sooner
    /// than this, on any connection, unless a refused dial showed that it restarted (and its limits with it).
    limited_until: Option<Instant>,
    /// What identify reported of the relay's protocols on its live connections: whether HOP is among them;
    /// `None`: no report yet.
    offers_hop: Option<bool>,
    /// The relay's host is presumed to be restarting it: a dial was refused, or the relay dropped the node
    /// soon after its goal. While it is and nothing connects the relay, it is re-checked.
    restarting: bool,
    /// Goals in a row lost before they held for `forgive_after`.
    flaps: u32,
    /// Dials in a row that ran out of time: each one doubles the next dial's limit (up to the cap), so a
    /// link too slow for the first limit is not cut on every try.
    dials_timed_out: u32,
    /// The round trips the probe measured on the relay's connections, for the limit of the next dial.
    rtt: RttEstimator,
    /// When the keeper last dialed to move the live link to a new network, for [`MOVE_INTERVAL`].
    moved_at: Option<Instant>,
    /// A move's dial that lost the race to the other one: closed if it connects beside other connections.
    straggler: Option<ConnectionId>,
}

/// One relay's connections, reservation and trouble.
#[derive(Debug)]
pub(crate) struct Link {
    /// Dialable addresses, each ending in `/p2p/<peer_id>`.
    addrs: Vec<Multiaddr>,
    /// The direct connections to the relay, with the address each was dialed at.
    connections: Vec<Connection>,
    /// The live circuit addresses of the keeper's (or an adopted) listener on the relay.
    circuits: Vec<(ListenerId, Multiaddr)>,
    memory: Memory,
    state: State,
}

// Queries.
impl Link {
    /// A halted link to the relay at `addr`, with its existing connections.
    pub(crate) fn new(addr: Multiaddr, connections: Vec<Connection>) -> Self {
        Self {
            addrs: vec![addr],
            connections,
            circuits: Vec::new(),
            memory: Memory {
                outage_since: None,
                level: 0,
                network_reset: false,
                reached_before: false,
                hop_awaited_on: None,
                offers_hop: None,
                limited_until: None,
                restarting: false,
                flaps: 0,
                dials_timed_out: 0,
                rtt: RttEstimator::default(),
                moved_at: None,
                straggler: None,
            },
            state: State::Halted { until: None },
        }
    }

    pub(crate) fn addrs(&self) -> &[Multiaddr] {
        &self.addrs
    }

    pub(crate) fn connections(&self) -> &[Connection] {
        &self.connections
    }

    /// Hands the relay's connections back when it is no longer kept.
    pub(crate) fn into_connections(self) -> Vec<Connection> {
        self.connections
    }

    /// The live circuit addresses the node is reachable at through the relay.
    pub(crate) fn circuits(&self) -> &[(ListenerId, Multiaddr)] {
        &self.circuits
    }

    /// When the current outage started; `None` while in the goal.
    pub(crate) fn outage_since(&self) -> Option<Instant> {
        self.memory.outage_since
    }

    /// The probe measured a round trip of `rtt` on a connection to the relay.
    pub(crate) fn measured(&mut self, rtt: Duration) {
        self.memory.rtt.sample(rtt);
    }

    /// Why the relay gave up, if it did.
    pub(crate) fn gave_up(&self) -> Option<GiveUpReason> {
        match self.state {
            State::GaveUp { ref reason, .. } => Some(**reason),
            _ => None,
        }
    }

    /// Whether a retry can help: not after giving up for a mistake, which waits for a fixed address.
    pub(crate) fn retryable(&self) -> bool {
        self.gave_up().is_none_or(|reason| reason.is_retryable())
    }

    /// What the link is doing, as the application sees it. A halted link's status is its membership's.
    pub(crate) fn status(&self) -> RelayStatus {
        match self.state {
            State::Dialing { .. } | State::Rechecking { .. } | State::Halted { .. } => {
                RelayStatus::Connecting
            }
            State::Identifying { .. } | State::Reserving { .. } | State::Connected { .. } => {
                RelayStatus::Connected
            }
            // The round's last try waits only to give up: no retry is coming.
            State::AwaitingHop { last: true, .. } => RelayStatus::Connected,
            State::Reserved { .. } => RelayStatus::Reserved,
            State::Waiting {
                attempt,
                deadline,
                recheck_at,
            } => RelayStatus::Waiting {
                attempt,
                next_try: recheck_at.map_or(deadline, |at| at.min(deadline)),
            },
            // The refused try waits for HOP; the fallback is the next retry's.
            State::AwaitingHop {
                attempt, deadline, ..
            } => RelayStatus::Waiting {
                attempt: attempt.saturating_add(1),
                next_try: deadline,
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
        }
    }

    /// When the link must be fed [`Link::timer_fired`]; `None` when nothing of it is timed.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::Halted { until } => until,
            State::Waiting {
                deadline, recheck_at, ..
            } => Some(recheck_at.map_or(deadline, |at| at.min(deadline))),
            State::AwaitingHop { deadline, .. }
            | State::Identifying { deadline, .. }
            | State::Dialing { deadline, .. }
            | State::Rechecking { deadline, .. } => Some(deadline),
            State::GaveUp {
                retry_at, recheck_at, ..
            } => [retry_at, recheck_at].into_iter().flatten().min(),
            State::Reserving { .. } | State::Connected { .. } | State::Reserved { .. } => None,
        }
    }

    /// Waiting out a backoff of its own: a pool may give its slot to a standby.
    pub(crate) fn waiting(&self) -> bool {
        matches!(self.state, State::Waiting { .. })
    }

    /// In its goal: reserved, or connected with reservations off.
    pub(crate) fn in_goal(&self) -> bool {
        matches!(self.state, State::Connected { .. } | State::Reserved { .. })
    }

    /// Halted with no wait left: a standby in this state may be promoted, unless its live connection says it
    /// does not offer HOP (it would only fail at once; it is eligible the moment it offers HOP).
    pub(crate) fn ready(&self) -> bool {
        self.state == State::Halted { until: None } && self.memory.offers_hop != Some(false)
    }

    /// The live link's move to a new network, if one is under way.
    fn moving(&self) -> Option<Move> {
        match self.state {
            State::Connected { moving, .. } | State::Reserved { moving, .. } => moving,
            _ => None,
        }
    }

    /// Whether `connection` is a dial in flight of the live link's move.
    fn is_move_dial(&self, connection: ConnectionId) -> bool {
        match self.moving() {
            Some(Move::Dialing { dial, earlier }) => dial == connection || earlier == Some(connection),
            Some(Move::Closing { .. }) | None => false,
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
}

// Inputs from the swarm.
impl Link {
    /// A direct connection to the relay is up; `dialed`: the address it was dialed at, if it was outbound.
    pub(crate) fn connection_established(
        &mut self,
        connection: ConnectionId,
        dialed: Option<Multiaddr>,
        env: &mut Env<'_>,
    ) -> After {
        let first = self.connections.is_empty();
        self.connections.push((connection, dialed));
        self.memory.dials_timed_out = 0;
        if self.is_move_dial(connection) {
            self.close_old(connection, env);
            return After::Nothing;
        }
        if self.memory.straggler == Some(connection) {
            self.memory.straggler = None;
            if !first {
                env.actions.push(Action::Close(connection));
                return After::Nothing;
            }
        }
        if !first {
            return After::Nothing;
        }
        // The retries the keeper's own dial took, and the try the connection stands for: a re-check that
        // connects stands for the retry it came before, so a relay that takes connections and drops them
        // still runs out of retries.
        let (made, attempt) = match self.state {
            State::Dialing { dial, attempt, .. } => {
                (if dial == Some(connection) { attempt } else { 0 }, attempt)
            }
            State::Waiting { attempt, .. } => (0, attempt),
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
                self.reconnected(if dial == connection { attempts } else { 0 }, env);
                return After::StartOver;
            }
            // Connected already, not trying, or held by the membership: the connection is recorded, nothing more.
            State::Halted { .. }
            | State::Connected { .. }
            | State::Identifying { .. }
            | State::Reserving { .. }
            | State::Reserved { .. }
            | State::AwaitingHop { .. }
            | State::GaveUp { .. } => return After::Nothing,
        };
        self.reconnected(made, env);
        self.on_connection(attempt, env);
        After::Nothing
    }

    /// A direct connection to the relay closed.
    pub(crate) fn connection_closed(&mut self, connection: ConnectionId, cause: Cause, env: &mut Env<'_>) {
        let was_connected = !self.connections.is_empty();
        self.connections.retain(|(id, _)| *id != connection);
        if let Some(Move::Closing { to }) = self.moving() {
            self.closed_while_moving(connection, to, env);
            return;
        }
        if !was_connected || !self.connections.is_empty() {
            return;
        }
        // The relay client closes the reservation's listener only after this: the node is unreachable
        // through the relay from now on. What identify said of the relay holds for the connection it came on.
        self.circuits.clear();
        self.memory.offers_hop = None;
        match self.state {
            State::Connected { goal, .. } | State::Reserved { goal, .. } => self.lose_goal(goal, cause, env),
            // The relay took the connection and dropped it before the goal: it is not restarting.
            State::Identifying { attempt, .. } | State::Reserving { attempt, .. } => {
                self.memory.restarting = false;
                self.fail(attempt, false, cause, env)
            }
            // HOP cannot come on a connection that is gone: the refused try failed, and the retry announced
            // for the fallback's deadline dials when it fires.
            State::AwaitingHop {
                attempt,
                deadline,
                last,
            } => self.hop_lost_with_connection(attempt, deadline, last, env),
            // The reservation's listener closed before its connection: the retry was scheduled while the
            // relay was still connected, and a restarting relay is re-checked from now on.
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
            | State::Halted { .. } => {}
        }
    }

    /// A dial `connection` to the relay failed: the keeper's own, or another one the keeper's yielded to.
    /// `mistake`: the failure named addresses that no retry can reach; `refused`: a TCP address was refused.
    pub(crate) fn dial_failed(
        &mut self,
        connection: ConnectionId,
        cause: Cause,
        mistake: Option<Mistake>,
        refused: bool,
        env: &mut Env<'_>,
    ) -> After {
        if self.memory.straggler == Some(connection) {
            self.memory.straggler = None;
        }
        match self.state {
            State::Dialing {
                dial: Some(dial),
                attempt,
                ..
            } if dial == connection => {
                self.dial_answered(refused);
                self.counted_dial_failed(attempt, cause, mistake, env);
                After::Nothing
            }
            // The keeper yielded to another dial: its outcome is this retry's.
            State::Dialing {
                dial: None, attempt, ..
            } => {
                self.dial_answered(refused);
                self.counted_dial_failed(attempt, cause, mistake, env);
                After::Nothing
            }
            State::Rechecking { dial, then, .. } if dial == connection => {
                self.dial_answered(refused);
                self.recheck_failed(then, cause, mistake, env)
            }
            // The old connections may still work: their probe decides, as without a move.
            State::Connected { .. } | State::Reserved { .. } if self.is_move_dial(connection) => {
                self.move_dial_failed(connection, env);
                After::Nothing
            }
            // Another dial than ours, or one that no longer matters: ours was aborted or superseded.
            State::Dialing { .. }
            | State::Rechecking { .. }
            | State::Halted { .. }
            | State::Reserving { .. }
            | State::AwaitingHop { .. }
            | State::Identifying { .. }
            | State::Connected { .. }
            | State::Reserved { .. }
            | State::Waiting { .. }
            | State::GaveUp { .. } => After::Nothing,
        }
    }

    /// The swarm did not make the keeper's dial `connection`: the relay was connected or being dialed already.
    pub(crate) fn dial_skipped(&mut self, connection: ConnectionId, env: &mut Env<'_>) -> After {
        match self.state {
            State::Dialing {
                dial: Some(dial),
                attempt,
                deadline,
            } if dial == connection => {
                if self.connections.is_empty() {
                    self.state = State::Dialing {
                        dial: None,
                        attempt,
                        deadline,
                    };
                } else {
                    self.on_connection(attempt, env);
                }
                After::Nothing
            }
            // Someone else's dial is in flight; if it connects, the relay is reserved from `Waiting`.
            State::Rechecking { dial, then, .. } if dial == connection => self.resume(then, env),
            // Someone else's dial is in flight; the keeper does not race it.
            State::Connected { .. } | State::Reserved { .. } if self.is_move_dial(connection) => {
                self.move_dial_failed(connection, env);
                After::Nothing
            }
            // A dial of ours that the keeper no longer waits for.
            State::Dialing { .. }
            | State::Rechecking { .. }
            | State::Halted { .. }
            | State::Reserving { .. }
            | State::AwaitingHop { .. }
            | State::Identifying { .. }
            | State::Connected { .. }
            | State::Reserved { .. }
            | State::Waiting { .. }
            | State::GaveUp { .. } => After::Nothing,
        }
    }

    /// `listener`, the keeper's or an adopted one, reports the circuit address `addr`.
    pub(crate) fn listen_addr(&mut self, id: ListenerId, addr: Multiaddr, env: &mut Env<'_>) {
        match self.state {
            State::Reserving { listener, .. } if listener == id => {
                let goal = self.goal_reached(env);
                self.state = State::Reserved {
                    listener,
                    adopted: false,
                    goal,
                    moving: None,
                };
                self.reach_goal();
                env.emit(Event::Reserved {
                    relay: env.relay,
                    addr: addr.clone(),
                });
                self.add_circuit(listener, addr);
            }
            // A renewal of the live reservation repeats its address.
            State::Reserved { listener, .. } if listener == id => self.add_circuit(listener, addr),
            // An address of a listener the keeper gave up on.
            State::Reserving { .. }
            | State::Reserved { .. }
            | State::Halted { .. }
            | State::Dialing { .. }
            | State::Rechecking { .. }
            | State::AwaitingHop { .. }
            | State::Identifying { .. }
            | State::Connected { .. }
            | State::Waiting { .. }
            | State::GaveUp { .. } => {}
        }
    }

    /// A circuit address `addr` of `listener` expired.
    pub(crate) fn listen_addr_expired(&mut self, listener: ListenerId, addr: &Multiaddr) {
        self.circuits.retain(|(l, a)| *l != listener || a != addr);
    }

    /// A listener the keeper did not open reports the circuit address `addr` on this relay: the application's
    /// reservation is the relay's from now on, whatever the keeper was doing. A status that said "gave up"
    /// while the node is reachable through the relay would lie. Says whether it was adopted.
    pub(crate) fn foreign_reservation(
        &mut self,
        listener: ListenerId,
        addr: Multiaddr,
        env: &mut Env<'_>,
    ) -> bool {
        let adoptable = !self.connections.is_empty() && env.config.reservations();
        match self.state {
            State::Waiting { .. }
            | State::AwaitingHop { .. }
            | State::Identifying { .. }
            | State::Halted { .. }
            | State::Reserving { .. }
            | State::Reserved { .. }
            | State::GaveUp { .. }
                if adoptable =>
            {
                self.adopt(listener, addr, env);
                true
            }
            // Not connected (the application's listener is not live yet), or reservations off (the keeper
            // holds none to replace).
            State::Waiting { .. }
            | State::AwaitingHop { .. }
            | State::Identifying { .. }
            | State::Halted { .. }
            | State::Reserving { .. }
            | State::Reserved { .. }
            | State::GaveUp { .. }
            | State::Dialing { .. }
            | State::Rechecking { .. }
            | State::Connected { .. } => false,
        }
    }

    /// `listener` closed or failed; `refused`: with an error (the relay refused or lost the reservation), not
    /// because its connection closed or another listener on the relay replaced it.
    pub(crate) fn listener_closed(&mut self, id: ListenerId, refused: bool, cause: Cause, env: &mut Env<'_>) {
        self.circuits.retain(|(listener, _)| *listener != id);
        let connected = !self.connections.is_empty();
        match self.state {
            State::Reserving {
                listener,
                attempt,
                hop_announced,
            } if listener == id && connected => self.refused(attempt, hop_announced, refused, cause, env),
            // The old connection is being closed: the reservation is asked for on the new one once it is gone.
            State::Reserved {
                listener,
                moving: Some(Move::Closing { .. }),
                ..
            } if listener == id => {}
            State::Reserved { listener, goal, .. } if listener == id && connected => {
                self.lose_goal(goal, cause, env)
            }
            // A stale listener, or one whose connection closed: the closed connection is the news.
            State::Reserving { .. }
            | State::Reserved { .. }
            | State::Halted { .. }
            | State::Dialing { .. }
            | State::Rechecking { .. }
            | State::AwaitingHop { .. }
            | State::Identifying { .. }
            | State::Connected { .. }
            | State::Waiting { .. }
            | State::GaveUp { .. } => {}
        }
    }

    /// `listener` could not be opened because the swarm has no relay client transport.
    pub(crate) fn listener_unsupported(&mut self, id: ListenerId, env: &mut Env<'_>) {
        match self.state {
            State::Reserving {
                listener, attempt, ..
            } if listener == id => self.give_up(attempt, GiveUpReason::NoRelayTransport, env),
            // A stale listener.
            State::Reserving { .. }
            | State::Halted { .. }
            | State::Dialing { .. }
            | State::Rechecking { .. }
            | State::AwaitingHop { .. }
            | State::Identifying { .. }
            | State::Connected { .. }
            | State::Reserved { .. }
            | State::Waiting { .. }
            | State::GaveUp { .. } => {}
        }
    }

    /// The relay started offering the HOP protocol, so a reservation can succeed now.
    pub(crate) fn hop_enabled(&mut self, env: &mut Env<'_>) -> After {
        let live = !self.connections.is_empty() && env.config.reservations();
        if !self.connections.is_empty() {
            self.memory.offers_hop = Some(true);
        }
        match self.state {
            State::Waiting { attempt, .. } if live => self.try_now(attempt, env),
            State::Identifying { attempt, .. } => self.reserve(attempt, env),
            // The refused try goes on, uncounted.
            State::AwaitingHop { attempt, .. } => self.on_connection(attempt, env),
            State::Reserving {
                listener, attempt, ..
            } => {
                self.state = State::Reserving {
                    listener,
                    attempt,
                    hop_announced: true,
                }
            }
            // What the relay lacked is there now: a fresh round, as after a cool-down.
            State::GaveUp { .. } if live && self.retryable() => return After::StartOver,
            // A halted link that waits out a refusal may run the moment the relay offers HOP.
            State::Halted { until: Some(_) } if live && !self.held_off(env) => {
                self.state = State::Halted { until: None }
            }
            // Not connected (HOP on a connection that closed since), reservations off, a mistake that HOP
            // does not cure, in the goal already, or about to try.
            State::Waiting { .. }
            | State::GaveUp { .. }
            | State::Halted { .. }
            | State::Dialing { .. }
            | State::Rechecking { .. }
            | State::Connected { .. }
            | State::Reserved { .. } => {}
        }
        After::Nothing
    }
}

impl Link {
    /// Identify reported the relay's protocols, and HOP is not among them. Nothing changes at once, in any
    /// state: a relay usually offers HOP a round trip later (see [`State::Identifying`]), and what the keeper
    /// does without it is decided when it would ask.
    pub(crate) fn hop_absent(&mut self) {
        if !self.connections.is_empty() {
            self.memory.offers_hop = Some(false);
        }
    }
}

// Inputs from the clock and the application.
impl Link {
    /// The link's deadline passed: a retry's wait elapsed, a dial ran out of time, a cool-down or a halted
    /// link's wait is over.
    pub(crate) fn timer_fired(&mut self, env: &mut Env<'_>) -> After {
        match self.state {
            State::Dialing { attempt, .. } => {
                self.dial_timed_out(env);
                self.fail(attempt, false, Cause::dial_timeout(), env)
            }
            State::Rechecking { then, .. } => {
                self.dial_timed_out(env);
                return self.resume(then, env);
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
            // No report of the relay's protocols came: it may not run identify, so ask as without it.
            State::Identifying { attempt, .. } if self.memory.offers_hop.is_none() => {
                self.reserve(attempt, env)
            }
            State::Identifying { attempt, .. } => {
                self.without_hop(attempt, Cause::new(CauseKind::HopUnsupported, NO_HOP), env)
            }
            // The fallback came before HOP: the refused try counts.
            State::AwaitingHop { attempt, last, .. } => {
                if last {
                    self.give_up(attempt, GiveUpReason::MaxAttempts, env);
                } else {
                    self.memory.level = self.memory.level.saturating_add(1);
                    self.try_now(attempt.saturating_add(1), env);
                }
            }
            State::GaveUp {
                retry_at: Some(retry_at),
                ..
            } if retry_at <= env.now => return After::StartOver,
            State::GaveUp {
                attempts,
                retry_at: Some(retry_at),
                ..
            } => self.recheck(Resume::CoolDown { attempts, retry_at }, env),
            State::Halted { .. } => self.state = State::Halted { until: None },
            // Nothing of these is timed.
            State::GaveUp { retry_at: None, .. }
            | State::Reserving { .. }
            | State::Connected { .. }
            | State::Reserved { .. } => {}
        }
        After::Nothing
    }

    /// The application asked to forget the backoff and try now.
    pub(crate) fn retry_now(&mut self, env: &mut Env<'_>) -> After {
        // The application knows better than the relay's limiter, say after adding capacity.
        self.memory.limited_until = None;
        match self.state {
            State::Waiting { .. } | State::AwaitingHop { .. } => {
                self.memory.level = 0;
                self.try_now(0, env)
            }
            State::GaveUp { .. } if self.retryable() => return After::StartOver,
            State::Halted { .. } => return After::StartOver,
            // The try under way becomes the first of a fresh count; a dial keeps its time limit.
            State::Dialing { dial, deadline, .. } => {
                self.memory.level = 0;
                self.state = State::Dialing {
                    dial,
                    attempt: 0,
                    deadline,
                }
            }
            State::Rechecking { dial, deadline, .. } => {
                self.memory.level = 0;
                self.state = State::Dialing {
                    dial: Some(dial),
                    attempt: 0,
                    deadline,
                }
            }
            State::Reserving {
                listener,
                hop_announced,
                ..
            } => {
                self.memory.level = 0;
                self.state = State::Reserving {
                    listener,
                    attempt: 0,
                    hop_announced,
                }
            }
            State::Identifying { deadline, .. } => {
                self.memory.level = 0;
                self.state = State::Identifying { attempt: 0, deadline }
            }
            // A mistake waits for a fixed address; the others have nothing to retry.
            State::GaveUp { .. } | State::Connected { .. } | State::Reserved { .. } => {}
        }
        After::Nothing
    }

    /// The node's network changed: what failed on the old network may work on the new one. The backoff is
    /// reset once per outage, so a burst of changes gives one retry round.
    pub(crate) fn network_changed(&mut self, env: &mut Env<'_>) -> After {
        // Dials that ran out of time on the old network say nothing of the new one.
        self.memory.dials_timed_out = 0;
        if self.memory.network_reset {
            return After::Nothing;
        }
        match self.state {
            State::Waiting { .. } => {
                self.memory.network_reset = true;
                self.memory.level = 0;
                self.try_now(0, env);
            }
            State::GaveUp { .. } | State::Halted { until: Some(_) } if self.retryable() => {
                self.memory.network_reset = true;
                return After::StartOver;
            }
            // Trying already, or about to: the try goes on, and the waits after it start from the base.
            State::Dialing { .. }
            | State::Rechecking { .. }
            | State::Identifying { .. }
            | State::Reserving { .. }
            | State::AwaitingHop { .. }
            | State::Halted { until: None } => {
                self.memory.network_reset = true;
                self.memory.level = 0;
            }
            // In the goal: the link may have died with the old network, so it moves to the new one, in parallel
            // with the probe of the old connections.
            State::Connected { moving: None, .. } | State::Reserved { moving: None, .. } => {
                self.start_move(env)
            }
            State::Connected {
                moving: Some(Move::Dialing { dial, earlier: None }),
                ..
            }
            | State::Reserved {
                moving: Some(Move::Dialing { dial, earlier: None }),
                ..
            } => self.dial_again(dial, env),
            // A mistake, or moved already.
            State::GaveUp { .. }
            | State::Halted { .. }
            | State::Connected { .. }
            | State::Reserved { .. } => {}
        }
        After::Nothing
    }

    /// The application added the relay again, at `addr`: whatever it gave up for may be fixed.
    pub(crate) fn added(&mut self, addr: Multiaddr, env: &mut Env<'_>) -> After {
        self.memory.dials_timed_out = 0;
        if !self.addrs.contains(&addr) {
            self.addrs.push(addr);
            tracing::debug!(relay = %env.relay, addrs = ?self.addrs, "relay address added");
        }
        match self.state {
            State::GaveUp { .. } => After::StartOver,
            // The new address is dialed by the next dial.
            State::Halted { .. }
            | State::Dialing { .. }
            | State::Rechecking { .. }
            | State::Reserving { .. }
            | State::AwaitingHop { .. }
            | State::Identifying { .. }
            | State::Connected { .. }
            | State::Reserved { .. }
            | State::Waiting { .. } => After::Nothing,
        }
    }

    /// Dials that ran out of time say nothing of what comes next (a network change while paused).
    pub(crate) fn forget_dial_timeouts(&mut self) {
        self.memory.dials_timed_out = 0;
    }
}

// What the membership asks of the link.
impl Link {
    /// Runs a halted link: a first try of a fresh count, now. `fresh`: the backoff level starts from the base.
    pub(crate) fn start(&mut self, fresh: bool, env: &mut Env<'_>) {
        if fresh {
            self.memory.level = 0;
        }
        self.try_now(0, env);
    }

    /// A promoted relay connected before its first try: the connection is its try.
    pub(crate) fn start_on_connection(&mut self, env: &mut Env<'_>) {
        self.reconnected(0, env);
        self.on_connection(0, env);
    }

    /// Stops the link for the pool: the outage's count ends here, while the wait it was in runs on, so the
    /// relay is no better a candidate than its backoff says.
    pub(crate) fn halt(&mut self) {
        let until = match self.state {
            State::Waiting { deadline, .. } => Some(deadline),
            _ => None,
        };
        self.state = State::Halted { until };
    }

    /// Starts afresh, halted: the backoff at its base and no wait, for the membership to run or hold.
    pub(crate) fn reset(&mut self) {
        self.memory.level = 0;
        self.state = State::Halted { until: None };
    }

    /// Releases the reservation while the node is publicly reachable: the link halts, and its outage is over.
    /// A relay that gave up stays given up, and is not re-checked meanwhile; says whether the link halted.
    pub(crate) fn pause(&mut self, env: &mut Env<'_>) -> bool {
        if let State::GaveUp {
            ref mut recheck_at, ..
        } = self.state
        {
            *recheck_at = None;
            return false;
        }
        if let Some(listener) = self.own_listener() {
            self.remove_listener(listener, env);
        }
        self.state = State::Halted { until: None };
        self.reach_goal();
        true
    }

    /// The relay is no longer kept: its own listener is withdrawn and its circuits are gone.
    pub(crate) fn remove(&mut self, env: &mut Env<'_>) {
        if let Some(listener) = self.own_listener() {
            self.remove_listener(listener, env);
        }
        self.circuits.clear();
        self.state = State::Halted { until: None };
    }
}

// Transitions shared by several inputs.
impl Link {
    /// The application's `listener`, live at `addr`, holds the relay's reservation from now on.
    fn adopt(&mut self, listener: ListenerId, addr: Multiaddr, env: &mut Env<'_>) {
        // Our request in flight would replace the application's listener once accepted.
        if let State::Reserving { listener: ours, .. } = self.state {
            self.remove_listener(ours, env);
        }
        let was_reserved = matches!(self.state, State::Reserved { .. });
        let goal = match self.state {
            State::Reserved { goal, .. } | State::Connected { goal, .. } => goal,
            _ => self.goal_reached(env),
        };
        self.state = State::Reserved {
            listener,
            adopted: true,
            goal,
            moving: self.moving(),
        };
        self.reach_goal();
        if !was_reserved {
            env.emit(Event::Reserved {
                relay: env.relay,
                addr: addr.clone(),
            });
        }
        env.actions.push(Action::Adopt { listener });
        self.add_circuit(listener, addr);
    }

    fn add_circuit(&mut self, listener: ListenerId, addr: Multiaddr) {
        if self.circuits.iter().any(|(l, a)| *l == listener && *a == addr) {
            return;
        }
        // Nearly always the one address; `push` would make room for four (BENCHMARKS.md, memory per kept
        // relay).
        self.circuits.reserve_exact(1);
        self.circuits.push((listener, addr));
    }

    fn remove_listener(&mut self, listener: ListenerId, env: &mut Env<'_>) {
        self.circuits.retain(|(l, _)| *l != listener);
        env.actions.push(Action::RemoveListener(listener));
    }

    /// Sets the live link's move; nothing for a link that is not in its goal.
    fn set_moving(&mut self, to: Option<Move>) {
        if let State::Connected { moving, .. } | State::Reserved { moving, .. } = &mut self.state {
            *moving = to;
        }
    }

    /// Dials the relay beside the live link's connections after a network change, at most once per
    /// [`MOVE_INTERVAL`]. `NotDialing`: never while another dial to the relay (the application's) is in flight.
    /// A discovered relay is never dialed: its connection is the application's to restore.
    fn start_move(&mut self, env: &mut Env<'_>) {
        if env.discovered {
            return;
        }
        if self
            .memory
            .moved_at
            .is_some_and(|at| env.now < at + MOVE_INTERVAL)
        {
            tracing::debug!(relay = %env.relay, "network changed again soon after a move; the probe decides");
            return;
        }
        let opts = self.move_dial(PeerCondition::NotDialing, env);
        self.memory.moved_at = Some(env.now);
        self.set_moving(Some(Move::Dialing {
            dial: opts.connection_id(),
            earlier: None,
        }));
        env.actions.push(Action::Dial(opts));
    }

    /// The network changed again while the move's dial `earlier` is in flight: dials once more, from the
    /// network as it is now. `Always`: the keeper's own dial is in flight, which `NotDialing` would refuse.
    fn dial_again(&mut self, earlier: ConnectionId, env: &mut Env<'_>) {
        let opts = self.move_dial(PeerCondition::Always, env);
        self.set_moving(Some(Move::Dialing {
            dial: opts.connection_id(),
            earlier: Some(earlier),
        }));
        env.actions.push(Action::Dial(opts));
    }

    /// A dial of the relay's configured addresses for a move.
    fn move_dial(&self, condition: PeerCondition, env: &Env<'_>) -> DialOpts {
        let opts = DialOpts::peer_id(env.relay)
            .addresses(self.addrs.clone())
            .condition(condition)
            .build();
        tracing::debug!(relay = %env.relay, connection = %opts.connection_id(), "network changed: dialing the relay beside the old link");
        opts
    }

    /// The move's dial `failed` failed or was not made: if the other one is in flight, that one goes on;
    /// otherwise the move changed nothing, so it does not hold the next change back.
    fn move_dial_failed(&mut self, failed: ConnectionId, env: &Env<'_>) {
        tracing::debug!(relay = %env.relay, connection = %failed, "a dial beside the old link failed");
        if let Some(Move::Dialing {
            dial,
            earlier: Some(earlier),
        }) = self.moving()
        {
            let left = if failed == dial { earlier } else { dial };
            self.set_moving(Some(Move::Dialing {
                dial: left,
                earlier: None,
            }));
            return;
        }
        self.memory.moved_at = None;
        self.set_moving(None);
    }

    /// The move's connection `to` is up: the old connections are closed, and so is the move's other dial if
    /// it connects.
    fn close_old(&mut self, to: ConnectionId, env: &mut Env<'_>) {
        tracing::debug!(relay = %env.relay, connection = %to, "moved to a new connection; closing the old ones");
        if let Some(Move::Dialing { dial, earlier }) = self.moving() {
            self.memory.straggler = if dial == to { earlier } else { Some(dial) };
        }
        for (old, _) in self.connections.iter().filter(|(id, _)| *id != to) {
            env.actions.push(Action::Close(*old));
        }
        self.set_moving(Some(Move::Closing { to }));
    }

    /// `connection` closed while the old connections are closed for the move's new one, `to`. Once `to` is
    /// the oldest left (the one the relay client reserves on) the move is done, and the reservation is asked
    /// for on it. If `to` itself closed, the move is over and the old connections are on their own again.
    fn closed_while_moving(&mut self, connection: ConnectionId, to: ConnectionId, env: &mut Env<'_>) {
        if connection == to {
            self.set_moving(None);
            return;
        }
        if self.connections.first().map(|(id, _)| *id) != Some(to) {
            return;
        }
        // The relay client expires the old reservation's address with its connection.
        self.circuits.clear();
        match self.state {
            State::Reserved { .. } => self.on_connection(0, env),
            State::Connected { goal, .. } => self.state = State::Connected { goal, moving: None },
            // Only a link in its goal moves.
            State::Halted { .. }
            | State::Dialing { .. }
            | State::Rechecking { .. }
            | State::Identifying { .. }
            | State::Reserving { .. }
            | State::AwaitingHop { .. }
            | State::Waiting { .. }
            | State::GaveUp { .. } => {}
        }
    }

    /// Emits that the connection is back, after `made` counted retries, if an outage was under way.
    fn reconnected(&self, made: u32, env: &mut Env<'_>) {
        if self.memory.outage_since.is_some() {
            env.emit(Event::Connected {
                relay: env.relay,
                attempts: made,
            });
        }
    }

    /// The goal is reached now. The backoff level stays until the goal has held for `forgive_after`, except
    /// at the relay's first goal: there was nothing to flap from, and a fresh relay's first refusal (it offers
    /// HOP only once identify told it its address) is no failure.
    fn goal_reached(&mut self, env: &Env<'_>) -> Goal {
        if !self.memory.reached_before {
            self.memory.level = 0;
        }
        self.memory.reached_before = true;
        self.memory.limited_until = None;
        Goal { since: env.now }
    }

    /// The outage is over: the relay is in its goal, or paused.
    fn reach_goal(&mut self) {
        self.memory.outage_since = None;
        self.memory.network_reset = false;
    }

    /// Loses the goal reached at `goal`. If it held long enough, the relay's history is forgiven: the backoff
    /// level and the presumption of a restart. If it did not, the relay flapped: the level stays, and the relay
    /// is presumed to be restarting (so it is re-checked) unless it flapped too often in a row for that.
    fn lose_goal(&mut self, goal: Goal, cause: Cause, env: &mut Env<'_>) {
        let memory = &mut self.memory;
        if goal.held(env) {
            memory.level = 0;
            memory.flaps = 0;
            memory.restarting = false;
        } else {
            memory.flaps = memory.flaps.saturating_add(1);
            memory.restarting = memory.flaps <= MAX_PRESUMED_RESTARTS;
        }
        if cause.kind == CauseKind::ResourceLimitExceeded {
            // A renewal the relay refused because it is full: the link is fine.
            self.not_now(0, cause, env);
        } else {
            self.fail(0, false, cause, env);
        }
    }

    /// The connection closed while the relay was refused for lack of HOP: the refused try failed.
    fn hop_lost_with_connection(&mut self, attempt: u32, deadline: Instant, last: bool, env: &mut Env<'_>) {
        self.memory.restarting = false;
        if last {
            self.give_up(attempt, GiveUpReason::MaxAttempts, env);
            return;
        }
        self.memory.level = self.memory.level.saturating_add(1);
        self.state = State::Waiting {
            attempt: attempt.saturating_add(1),
            deadline,
            recheck_at: None,
        };
    }

    /// Makes attempt `attempt` now: reserve on the live connection, or dial.
    fn try_now(&mut self, attempt: u32, env: &mut Env<'_>) {
        if !self.connections.is_empty() {
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
            deadline: env.now + self.dial_limit(env),
        };
        env.actions.push(Action::Dial(opts));
    }

    fn dial_limit(&self, env: &Env<'_>) -> Duration {
        env.config
            .dial_limit(self.memory.dials_timed_out, self.memory.rtt.upper())
    }

    /// The relay is connected: reserve, or with reservations off, the goal is reached. A node that runs
    /// identify asks only once the relay offers HOP.
    fn on_connection(&mut self, attempt: u32, env: &mut Env<'_>) {
        if self.connections.is_empty() {
            return;
        }
        if !env.config.reservations() {
            let goal = self.goal_reached(env);
            self.state = State::Connected { goal, moving: None };
            self.reach_goal();
            return;
        }
        if let Some(until) = self.memory.limited_until.filter(|until| *until > env.now) {
            // Asking sooner would only be refused again, whichever connection it went on.
            self.memory.outage_since.get_or_insert(env.now);
            self.state = State::Waiting {
                attempt: attempt.max(1),
                deadline: until,
                recheck_at: None,
            };
            return;
        }
        match self.memory.offers_hop {
            Some(true) => self.reserve(attempt, env),
            Some(false) => self.without_hop(attempt, Cause::new(CauseKind::HopUnsupported, NO_HOP), env),
            None if env.identify => {
                // Not jittered: no herd dials at this deadline, each client only asks its own connection.
                self.state = State::Identifying {
                    attempt,
                    deadline: env.now + env.config.backoff_bound(1).min(IDENTIFY_WAIT),
                }
            }
            None => self.reserve(attempt, env),
        }
    }

    /// Asks the relay client for try `attempt`'s reservation on the live connection.
    fn reserve(&mut self, attempt: u32, env: &mut Env<'_>) {
        let Some((_, dialed)) = self.connections.first() else {
            return;
        };
        // Reserve through the address the connection reached; an inbound one has none, so the first configured.
        // Either names the relay, if any peer: the connection reached it.
        let Some(Ok(circuit)) = dialed
            .as_ref()
            .or(self.addrs.first())
            .map(|addr| addr.clone().with_p2p(env.relay))
        else {
            return;
        };
        let opts = ListenOpts::new(circuit.with(Protocol::P2pCircuit));
        self.state = State::Reserving {
            listener: opts.listener_id(),
            attempt,
            hop_announced: false,
        };
        env.actions.push(Action::Listen(opts));
    }

    /// The relay does not offer HOP on its connection for try `attempt`. Once per connection that is a "not
    /// yet": the keeper waits for HOP without counting the try; a second time the try failed.
    fn without_hop(&mut self, attempt: u32, cause: Cause, env: &mut Env<'_>) {
        let link = self.connections.first().map(|(id, _)| *id);
        if self.memory.hop_awaited_on == link {
            self.memory.restarting = false;
            self.fail(attempt, false, cause, env);
            return;
        }
        self.memory.hop_awaited_on = link;
        self.memory.outage_since.get_or_insert(env.now);
        self.await_hop(attempt, cause, env);
    }

    /// The relay closed the keeper's reservation request of try `attempt` (`refused`: with an error). A
    /// refusal for lack of HOP is a "not yet", once per connection: the keeper waits for the relay to offer
    /// HOP (or, if it did meanwhile, `hop_announced`, asks again at once) without counting the try.
    fn refused(&mut self, attempt: u32, hop_announced: bool, refused: bool, cause: Cause, env: &mut Env<'_>) {
        if refused && cause.kind == CauseKind::ResourceLimitExceeded {
            self.not_now(attempt, cause, env);
            return;
        }
        let link = self.connections.first().map(|(id, _)| *id);
        let not_yet =
            refused && cause.kind == CauseKind::HopUnsupported && self.memory.hop_awaited_on != link;
        if !not_yet {
            // The relay answered: it is not restarting. Only a refusal is known to be cured by HOP; a
            // replacement must back off, or the keeper would answer the application's listener with one of
            // its own.
            self.memory.restarting = false;
            self.fail(attempt, hop_announced && refused, cause, env);
            return;
        }
        self.memory.hop_awaited_on = link;
        self.memory.outage_since.get_or_insert(env.now);
        if hop_announced {
            tracing::debug!(relay = %env.relay, "refused before the relay offered HOP, which it does now; asking again");
            self.on_connection(attempt, env);
            return;
        }
        self.await_hop(attempt, cause, env);
    }

    /// The relay said "not now" to try `attempt` (`RESOURCE_LIMIT_EXCEEDED`): it is full, or this node asked too
    /// often. No failure of the link, so nothing is counted and the backoff stays where it is; the relay is
    /// asked again once its limiter may allow it. Retry 1 stands for a first try, which is no retry.
    fn not_now(&mut self, attempt: u32, cause: Cause, env: &mut Env<'_>) {
        self.memory.restarting = false;
        self.memory.outage_since.get_or_insert(env.now);
        let delay = env.backoff.limit_hold(env.config);
        self.memory.limited_until = Some(env.now + delay);
        let attempt = attempt.max(1);
        self.state = State::Waiting {
            attempt,
            deadline: env.now + delay,
            recheck_at: None,
        };
        env.emit(Event::ReconnectScheduled {
            relay: env.relay,
            attempt,
            delay,
            cause,
        });
    }

    /// The relay holds the node off for its limits until later.
    fn held_off(&self, env: &Env<'_>) -> bool {
        self.memory.limited_until.is_some_and(|until| until > env.now)
    }

    /// A dial of the keeper's failed; `refused`: the relay's host refused it, so the relay is restarting and
    /// its limits start afresh.
    fn dial_answered(&mut self, refused: bool) {
        self.memory.restarting = refused;
        if refused {
            self.memory.limited_until = None;
        }
    }

    /// Waits for the relay to offer HOP after refusing try `attempt` for its lack, until a fallback.
    fn await_hop(&mut self, attempt: u32, cause: Cause, env: &mut Env<'_>) {
        let last = env.config.max_attempts().is_some_and(|max| attempt >= max);
        let level = self.memory.level.saturating_add(1);
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

    /// A counted dial failed; addresses it showed to be mistaken are never dialed again, and a relay left with
    /// none gives up at once.
    fn counted_dial_failed(
        &mut self,
        attempt: u32,
        cause: Cause,
        mistake: Option<Mistake>,
        env: &mut Env<'_>,
    ) {
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
        self.memory.dials_timed_out = self.memory.dials_timed_out.saturating_add(1);
        self.memory.restarting = false;
    }

    /// When to re-check the relay next: only while its host is presumed to be restarting it, nothing connects
    /// it, the node is not paused, and it has a TCP address to be refused at.
    fn next_recheck(&self, env: &mut Env<'_>) -> Option<Instant> {
        let idle = self.connections.is_empty() && !env.paused;
        if !self.memory.restarting || !idle || !self.addrs.iter().any(is_tcp) {
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
            deadline: env.now + self.dial_limit(env),
            then,
        };
        env.actions.push(Action::Dial(opts));
    }

    /// A re-check's dial failed: the counted schedule goes on, unless the failure showed every address to be
    /// a mistake.
    fn recheck_failed(
        &mut self,
        then: Resume,
        cause: Cause,
        mistake: Option<Mistake>,
        env: &mut Env<'_>,
    ) -> After {
        let made = match then {
            Resume::Retry { attempt, .. } => attempt.saturating_sub(1),
            Resume::CoolDown { attempts, .. } => attempts,
        };
        if self.drop_mistaken(made, &cause, mistake, env) {
            return self.resume(then, env);
        }
        After::Nothing
    }

    /// Goes back to the counted schedule a re-check interrupted: what fell due meanwhile happens now.
    fn resume(&mut self, then: Resume, env: &mut Env<'_>) -> After {
        match then {
            Resume::Retry { attempt, at } if at <= env.now => self.try_now(attempt, env),
            Resume::Retry { attempt, at } => {
                self.state = State::Waiting {
                    attempt,
                    deadline: at,
                    recheck_at: self.next_recheck(env),
                }
            }
            Resume::CoolDown { retry_at, .. } if retry_at <= env.now => return After::StartOver,
            Resume::CoolDown { attempts, retry_at } => {
                self.state = State::GaveUp {
                    attempts,
                    reason: Box::new(GiveUpReason::MaxAttempts),
                    retry_at: Some(retry_at),
                    recheck_at: self.next_recheck(env),
                }
            }
        }
        After::Nothing
    }

    /// Try `failed` (0: the goal was lost, or the first try, which is no retry) did not reach the goal: retry
    /// `failed + 1` waits its backoff, one level up; once `max_attempts` retries of this outage failed, the
    /// keeper gives up. `immediately`: the cause is known to be gone, so the retry needs no wait.
    fn fail(&mut self, failed: u32, immediately: bool, cause: Cause, env: &mut Env<'_>) {
        self.memory.outage_since.get_or_insert(env.now);
        if env.config.max_attempts().is_some_and(|max| failed >= max) {
            self.give_up(failed, GiveUpReason::MaxAttempts, env);
            return;
        }
        let attempt = failed.saturating_add(1);
        self.memory.level = self.memory.level.saturating_add(1);
        let delay = if immediately {
            Duration::ZERO
        } else {
            env.backoff.delay(env.config, self.memory.level)
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
        self.memory.outage_since.get_or_insert(env.now);
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

#[cfg(test)]
mod tests;
