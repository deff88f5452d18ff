//! Every state of the link against every input, as a table: a new state or input fails to compile here (the
//! matches below have no catch-all) or fails the table until its row says what it does.

use std::{fmt::Write, time::Duration};

use libp2p::{swarm::ConnectionId, PeerId};

use super::*;
use crate::{backoff::Backoff, engine::harness::relay_addr, relay::Input, Config};

/// A link in a given state, with everything a transition needs.
struct Rig {
    link: Link,
    relay: PeerId,
    config: Config,
    backoff: Backoff,
    actions: Vec<Action>,
    now: Instant,
    after: After,
    /// The node runs identify (the environment's flag).
    identify: bool,
}

const SECOND: Duration = Duration::from_secs(1);

fn connection() -> ConnectionId {
    ConnectionId::new_unchecked(1)
}

fn dial() -> ConnectionId {
    ConnectionId::new_unchecked(2)
}

/// Every state, by name; each is built by [`Rig::new`].
const STATES: [&str; 14] = [
    "halted",
    "halted-waiting",
    "dialing",
    "rechecking",
    "identifying",
    "reserving",
    "awaiting-hop",
    "connected",
    "connected-closing",
    "reserved",
    "reserved-moving",
    "reserved-closing",
    "waiting",
    "gave-up",
];

fn name(state: &State) -> &'static str {
    match state {
        State::Halted { until: None } => "halted",
        State::Halted { until: Some(_) } => "halted-waiting",
        State::Dialing { .. } => "dialing",
        State::Rechecking { .. } => "rechecking",
        State::Identifying { .. } => "identifying",
        State::Reserving { .. } => "reserving",
        State::AwaitingHop { .. } => "awaiting-hop",
        State::Connected { moving: None, .. } => "connected",
        State::Connected {
            moving: Some(Move::Dialing { .. }),
            ..
        } => "connected-moving",
        State::Connected {
            moving: Some(Move::Closing { .. }),
            ..
        } => "connected-closing",
        State::Reserved { moving: None, .. } => "reserved",
        State::Reserved {
            moving: Some(Move::Dialing { .. }),
            ..
        } => "reserved-moving",
        State::Reserved {
            moving: Some(Move::Closing { .. }),
            ..
        } => "reserved-closing",
        State::Waiting { .. } => "waiting",
        State::GaveUp { .. } => "gave-up",
    }
}

impl Rig {
    /// A link to a relay with a TCP address, in the state named `state`, its outage at retry 2. A moving
    /// link's dial in flight is `dial`; a closing one moved to connection `dial` and closes `connection`.
    fn new(state: &str, listener: ListenerId) -> Self {
        let (relay, addr) = relay_addr();
        let config = Config::default().with_jitter(false).with_rng_seed(1);
        let now = Instant::now();
        let soon = now + SECOND;
        let (state, connected) = match state {
            "halted" => (State::Halted { until: None }, false),
            "halted-waiting" => (State::Halted { until: Some(soon) }, false),
            "dialing" => (
                State::Dialing {
                    dial: Some(dial()),
                    attempt: 2,
                    deadline: soon,
                },
                false,
            ),
            "rechecking" => (
                State::Rechecking {
                    dial: dial(),
                    deadline: soon,
                    then: Resume::Retry {
                        attempt: 2,
                        at: now + 5 * SECOND,
                    },
                },
                false,
            ),
            "identifying" => (
                State::Identifying {
                    attempt: 2,
                    deadline: soon,
                },
                true,
            ),
            "reserving" => (
                State::Reserving {
                    listener,
                    attempt: 2,
                    hop_announced: false,
                },
                true,
            ),
            "awaiting-hop" => (
                State::AwaitingHop {
                    attempt: 2,
                    deadline: soon,
                    last: false,
                },
                true,
            ),
            "connected" => (
                State::Connected {
                    goal: Goal { since: now },
                    moving: None,
                },
                true,
            ),
            "connected-closing" => (
                State::Connected {
                    goal: Goal { since: now },
                    moving: Some(Move::Closing { to: dial() }),
                },
                true,
            ),
            "reserved" | "reserved-moving" | "reserved-closing" => (
                State::Reserved {
                    listener,
                    adopted: false,
                    goal: Goal { since: now },
                    moving: match state {
                        "reserved-moving" => Some(Move::Dialing {
                            dial: dial(),
                            earlier: None,
                        }),
                        "reserved-closing" => Some(Move::Closing { to: dial() }),
                        _ => None,
                    },
                },
                true,
            ),
            "waiting" => (
                State::Waiting {
                    attempt: 2,
                    deadline: soon,
                    recheck_at: None,
                },
                false,
            ),
            "gave-up" => (
                State::GaveUp {
                    attempts: 3,
                    reason: Box::new(GiveUpReason::MaxAttempts),
                    retry_at: Some(soon),
                    recheck_at: None,
                },
                false,
            ),
            other => panic!("no state {other}"),
        };
        let mut link = Link::new(addr.clone(), Vec::new());
        if connected {
            link.connections.push((connection(), Some(addr.clone())));
        }
        if matches!(
            state,
            State::Connected {
                moving: Some(Move::Closing { .. }),
                ..
            } | State::Reserved {
                moving: Some(Move::Closing { .. }),
                ..
            }
        ) {
            link.connections.push((dial(), Some(addr.clone())));
        }
        if matches!(state, State::Reserved { .. }) {
            link.circuits.push((listener, addr.with(Protocol::P2pCircuit)));
        }
        link.memory.outage_since = Some(now);
        link.state = state;
        Self {
            link,
            relay,
            backoff: Backoff::new(&config),
            config,
            actions: Vec::new(),
            now,
            after: After::Nothing,
            identify: false,
        }
    }

    /// Runs `input` on the link with an environment.
    fn run(&mut self, input: impl FnOnce(&mut Link, &mut Env<'_>) -> After) {
        let mut env = Env::new(
            self.relay,
            self.now,
            &self.config,
            &mut self.backoff,
            &mut self.actions,
        );
        env.identify = self.identify;
        self.after = input(&mut self.link, &mut env);
    }

    fn circuit(&self) -> Multiaddr {
        self.link.addrs[0].clone().with(Protocol::P2pCircuit)
    }

    /// The state the link is in, what it asked for, and whether it asked to start over.
    fn outcome(&self) -> String {
        let mut outcome = name(&self.link.state).to_owned();
        for action in &self.actions {
            let said = match action {
                Action::Dial(_) => "dial".to_owned(),
                Action::AbortDials => "abort".to_owned(),
                Action::Close(id) if *id == connection() => "close".to_owned(),
                Action::Close(id) => format!("close-{id}"),
                Action::Listen(_) => "listen".to_owned(),
                Action::RemoveListener(_) => "remove-listener".to_owned(),
                Action::Adopt { .. } => "adopt".to_owned(),
                Action::Emit(event) => event_name(event).to_owned(),
            };
            write!(outcome, " {said}").unwrap();
        }
        if self.after == After::StartOver {
            outcome.push_str(" START-OVER");
        }
        outcome
    }
}

fn event_name(event: &Event) -> &'static str {
    match event {
        Event::ReconnectScheduled { .. } => "scheduled",
        Event::Connected { .. } => "reconnected",
        Event::Reserved { .. } => "reserved",
        Event::GaveUp { .. } => "gave-up",
        Event::Reachable { .. } => "reachable",
        Event::Unreachable { .. } => "unreachable",
        Event::FailedOver { .. } => "failed-over",
        Event::PoolShort { .. } => "pool-short",
        Event::PoolFull { .. } => "pool-full",
    }
}

/// Every input of the link, by name, as the relay feeds it (and the membership's requests).
const INPUTS: [&str; 25] = [
    "connection-established",
    "connection-established-identify",
    "connection-closed",
    "dial-failed",
    "dial-refused",
    "dial-skipped",
    "listen-addr",
    "listen-addr-expired",
    "foreign-reservation",
    "listener-refused",
    "listener-hop-refused",
    "listener-limited",
    "listener-unsupported",
    "hop-enabled",
    "hop-absent",
    "timer-fired",
    "retry-now",
    "network-changed",
    "added",
    "start",
    "start-on-connection",
    "halt",
    "reset",
    "pause",
    "remove",
];

/// The rows of the table that one of the relay's inputs reaches: a new input fails to compile here.
fn rows_of(input: &Input) -> &'static [&'static str] {
    match input {
        Input::ConnectionEstablished { .. } => &[
            "connection-established",
            "connection-established-identify",
            "start-on-connection",
        ],
        Input::ConnectionClosed { .. } => &["connection-closed"],
        Input::DialFailed { .. } => &["dial-failed", "dial-refused"],
        Input::DialSkipped { .. } => &["dial-skipped"],
        Input::ListenAddr { .. } => &["listen-addr"],
        Input::ListenAddrExpired { .. } => &["listen-addr-expired"],
        Input::ForeignReservation { .. } => &["foreign-reservation"],
        Input::ListenerClosed { .. } => &["listener-refused", "listener-hop-refused", "listener-limited"],
        Input::ListenerUnsupported { .. } => &["listener-unsupported"],
        Input::TimerFired => &["timer-fired"],
        Input::HopEnabled => &["hop-enabled"],
        Input::HopAbsent => &["hop-absent"],
        Input::RetryNow => &["retry-now", "start"],
        Input::NetworkChanged => &["network-changed"],
        Input::Added(_) => &["added"],
        Input::Promote { .. } => &["start"],
        Input::Demote => &["halt"],
        Input::Pause => &["pause"],
        Input::Resume => &["reset", "start"],
        Input::Removed => &["remove"],
    }
}

fn feed(rig: &mut Rig, input: &str, listener: ListenerId) {
    let cause = || Cause::new(CauseKind::DialFailed, "test");
    let circuit = rig.circuit();
    let other: Multiaddr = format!("/ip4/127.0.0.1/tcp/4002/p2p/{}", rig.relay)
        .parse()
        .unwrap();
    let deadline = rig.link.deadline();
    match input {
        "connection-established" => rig.run(|l, e| l.connection_established(dial(), None, e)),
        "connection-established-identify" => {
            rig.identify = true;
            rig.run(|l, e| l.connection_established(dial(), None, e))
        }
        "connection-closed" => rig.run(|l, e| {
            l.connection_closed(connection(), Cause::connection_lost(None), e);
            After::Nothing
        }),
        "dial-failed" => rig.run(|l, e| l.dial_failed(dial(), cause(), None, false, e)),
        "dial-refused" => rig.run(|l, e| l.dial_failed(dial(), cause(), None, true, e)),
        "dial-skipped" => rig.run(|l, e| l.dial_skipped(dial(), e)),
        "listen-addr" => rig.run(|l, e| {
            l.listen_addr(listener, circuit, e);
            After::Nothing
        }),
        "listen-addr-expired" => rig.run(|l, _| {
            l.listen_addr_expired(listener, &circuit);
            After::Nothing
        }),
        "foreign-reservation" => rig.run(|l, e| {
            l.foreign_reservation(ListenerId::next(), circuit, e);
            After::Nothing
        }),
        "listener-refused" => rig.run(|l, e| {
            l.listener_closed(listener, true, Cause::new(CauseKind::ReservationRefused, "no"), e);
            After::Nothing
        }),
        "listener-hop-refused" => rig.run(|l, e| {
            l.listener_closed(
                listener,
                true,
                Cause::new(CauseKind::HopUnsupported, "not yet"),
                e,
            );
            After::Nothing
        }),
        "listener-limited" => rig.run(|l, e| {
            let cause = Cause::new(CauseKind::ResourceLimitExceeded, "full");
            l.listener_closed(listener, true, cause, e);
            After::Nothing
        }),
        "listener-unsupported" => rig.run(|l, e| {
            l.listener_unsupported(listener, e);
            After::Nothing
        }),
        "hop-enabled" => rig.run(|l, e| l.hop_enabled(e)),
        "hop-absent" => rig.run(|l, _| {
            l.hop_absent();
            After::Nothing
        }),
        "timer-fired" => {
            rig.now = deadline.unwrap_or(rig.now + 3600 * SECOND);
            rig.run(|l, e| l.timer_fired(e))
        }
        "retry-now" => rig.run(|l, e| l.retry_now(e)),
        "network-changed" => rig.run(|l, e| l.network_changed(e)),
        "added" => rig.run(|l, e| l.added(other, e)),
        "start" => rig.run(|l, e| {
            l.start(true, e);
            After::Nothing
        }),
        "start-on-connection" => rig.run(|l, e| {
            l.start_on_connection(e);
            After::Nothing
        }),
        "halt" => rig.run(|l, _| {
            l.halt();
            After::Nothing
        }),
        "reset" => rig.run(|l, _| {
            l.reset();
            After::Nothing
        }),
        "pause" => rig.run(|l, e| {
            l.pause(e);
            After::Nothing
        }),
        "remove" => rig.run(|l, e| {
            l.remove(e);
            After::Nothing
        }),
        other => panic!("no input {other}"),
    }
}

/// What each input does in each state: `state input -> state after, then what the link asked for`. The
/// relay's own retry is 2 in every state; `connection` is the only connection of a connected state, and the
/// dial in flight is `dial`.
const TABLE: &str = include_str!("transitions.txt");

#[test]
fn every_input_in_every_state_does_what_the_table_says() {
    let cause = || Cause::new(CauseKind::DialFailed, "test");
    let addr: Multiaddr = "/ip4/127.0.0.1/tcp/1".parse().unwrap();
    let every_input = [
        Input::ConnectionEstablished {
            connection: dial(),
            dialed: None,
        },
        Input::ConnectionClosed {
            connection: dial(),
            cause: cause(),
        },
        Input::DialFailed {
            connection: dial(),
            cause: cause(),
            mistake: None,
            refused: false,
        },
        Input::DialSkipped { connection: dial() },
        Input::ListenAddr {
            listener: ListenerId::next(),
            addr: addr.clone(),
        },
        Input::ListenAddrExpired {
            listener: ListenerId::next(),
            addr: addr.clone(),
        },
        Input::ForeignReservation {
            listener: ListenerId::next(),
            addr: addr.clone(),
        },
        Input::ListenerClosed {
            listener: ListenerId::next(),
            refused: true,
            cause: cause(),
        },
        Input::ListenerUnsupported {
            listener: ListenerId::next(),
        },
        Input::TimerFired,
        Input::HopEnabled,
        Input::HopAbsent,
        Input::RetryNow,
        Input::NetworkChanged,
        Input::Added(addr),
        Input::Promote {
            delay: Duration::ZERO,
        },
        Input::Demote,
        Input::Pause,
        Input::Resume,
        Input::Removed,
    ];
    let reached: Vec<&str> = every_input.iter().flat_map(rows_of).copied().collect();
    for row in INPUTS {
        assert!(reached.contains(&row), "no input of the relay reaches {row}");
    }
    let mut seen = String::new();
    for state in STATES {
        for input in INPUTS {
            let listener = ListenerId::next();
            let mut rig = Rig::new(state, listener);
            assert_eq!(name(&rig.link.state), state);
            feed(&mut rig, input, listener);
            writeln!(seen, "{state} {input} -> {}", rig.outcome()).unwrap();
        }
    }
    crate::transition_table::assert_table("link", &seen, TABLE);
}

/// Someone else's connection got there between the keeper's decision to dial and the swarm's check: the
/// skipped dial reserves on it.
#[test]
fn a_dial_skipped_for_a_live_connection_reserves() {
    let listener = ListenerId::next();
    let mut rig = Rig::new("dialing", listener);
    let addr = rig.link.addrs[0].clone();
    rig.link.connections.push((connection(), Some(addr)));
    rig.run(|l, e| l.dial_skipped(dial(), e));
    assert_eq!(rig.outcome(), "reserving listen");
}

/// A standby connected to a relay that identify reported without HOP is not a candidate for a slot: promoted,
/// it would only fail at once. It is one again the moment the relay offers HOP, or its connection closes.
#[test]
fn a_halted_link_whose_relay_lacks_hop_is_not_ready_until_it_offers_it() {
    let listener = ListenerId::next();
    let mut rig = Rig::new("halted", listener);
    let addr = rig.link.addrs[0].clone();
    rig.link.connections.push((connection(), Some(addr)));
    assert!(rig.link.ready());
    rig.link.hop_absent();
    assert!(!rig.link.ready());
    rig.run(|l, e| l.hop_enabled(e));
    assert!(rig.link.ready());
    rig.link.hop_absent();
    rig.run(|l, e| {
        l.connection_closed(connection(), Cause::connection_lost(None), e);
        After::Nothing
    });
    assert!(rig.link.ready());
}
