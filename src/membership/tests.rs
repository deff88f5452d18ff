//! Every membership against every input, as a table: a new membership or input fails to compile here (the
//! matches below have no catch-all) or fails the table until its row says what it does.

use std::fmt::Write;

use libp2p::{swarm::ConnectionId, PeerId};

use super::*;
use crate::{
    backoff::Backoff, engine::harness::relay_addr, relay::Action, Cause, CauseKind, Config, RelayStatus,
};

/// A relay's membership and link, and everything a transition needs.
struct Rig {
    membership: Membership,
    link: Link,
    relay: PeerId,
    config: Config,
    backoff: Backoff,
    actions: Vec<Action>,
    now: Instant,
}

const SECOND: Duration = Duration::from_secs(1);

/// Every membership, by name, with the link states it is found with.
const STATES: [&str; 6] = [
    "active-dialing",
    "active-waiting",
    "standby-ready",
    "standby-waiting",
    "promoted",
    "paused",
];

fn name(membership: Membership) -> &'static str {
    match membership {
        Membership::Active => "active",
        Membership::Standby => "standby",
        Membership::Promoted { .. } => "promoted",
        Membership::Paused => "paused",
    }
}

impl Rig {
    fn new(state: &str) -> Self {
        let (relay, addr) = relay_addr();
        let config = Config::default()
            .with_jitter(false)
            .with_max_reservations(Some(1));
        let mut rig = Self {
            membership: Membership::Active,
            link: Link::new(addr, Vec::new()),
            relay,
            backoff: Backoff::new(&config),
            config,
            actions: Vec::new(),
            now: Instant::now(),
        };
        rig.run(|_, link, env| link.start(true, env));
        if state != "active-dialing" {
            let Some(Action::Dial(opts)) = rig.actions.first() else {
                panic!("a dial: {:?}", rig.actions)
            };
            let dial = opts.connection_id();
            let cause = Cause::new(CauseKind::DialFailed, "test");
            rig.run(|_, link, env| {
                let _ = link.dial_failed(dial, cause, None, false, env);
            });
        }
        rig.membership = match state {
            "active-dialing" | "active-waiting" => Membership::Active,
            "standby-ready" => {
                rig.link.reset();
                Membership::Standby
            }
            "standby-waiting" => {
                rig.link.halt();
                Membership::Standby
            }
            "promoted" => {
                rig.link.reset();
                Membership::Promoted { at: rig.now + SECOND }
            }
            "paused" => {
                rig.link.reset();
                Membership::Paused
            }
            other => panic!("no state {other}"),
        };
        rig.actions.clear();
        rig
    }

    fn run(&mut self, input: impl FnOnce(&mut Membership, &mut Link, &mut Env<'_>)) {
        let mut env = Env::new(
            self.relay,
            self.now,
            &self.config,
            &mut self.backoff,
            &mut self.actions,
        );
        input(&mut self.membership, &mut self.link, &mut env);
    }

    /// The membership after an input, its relay's status, and what was asked of the swarm.
    fn outcome(&self) -> String {
        // The status without the instants in it, which differ from run to run.
        let status = match self.membership.status(&self.link) {
            RelayStatus::Waiting { attempt, .. } => format!("Waiting {{ attempt: {attempt} }}"),
            other => format!("{other:?}"),
        };
        let mut outcome = format!("{} {status}", name(self.membership));
        for action in &self.actions {
            let said = match action {
                Action::Dial(_) => "dial",
                Action::AbortDials => "abort",
                Action::Close(_) => "close",
                Action::Listen(_) => "listen",
                Action::RemoveListener(_) => "remove-listener",
                Action::Adopt { .. } => "adopt",
                Action::Emit(_) => "event",
            };
            write!(outcome, " {said}").unwrap();
        }
        outcome
    }
}

const INPUTS: [&str; 12] = [
    "promote-now",
    "promote-later",
    "demote",
    "pause",
    "resume",
    "timer-fired",
    "connection-established",
    "retry-now",
    "network-changed",
    "adopted",
    "not-adopted",
    "start-over",
];

fn feed(rig: &mut Rig, input: &str) {
    let deadline = rig.membership.deadline(&rig.link);
    match input {
        "promote-now" => rig.run(|m, l, e| m.promote(Duration::ZERO, l, e)),
        "promote-later" => rig.run(|m, l, e| m.promote(SECOND, l, e)),
        "demote" => rig.run(|m, l, _| m.demote(l)),
        "pause" => rig.run(|m, l, e| m.pause(l, e)),
        "resume" => rig.run(|m, l, e| m.resume(l, e)),
        "timer-fired" => {
            rig.now = deadline.unwrap_or(rig.now + 3600 * SECOND);
            rig.run(|m, l, e| m.timer_fired(l, e))
        }
        "connection-established" => rig.run(|m, l, e| {
            let after = l.connection_established(ConnectionId::new_unchecked(9), None, e);
            m.after(after, l, e);
            m.connection_established(l, e);
        }),
        "retry-now" => rig.run(|m, l, e| m.retry_now(l, e)),
        "network-changed" => rig.run(|m, l, e| m.network_changed(l, e)),
        "adopted" => rig.run(|m, _, _| m.adopted(true)),
        "not-adopted" => rig.run(|m, _, _| m.adopted(false)),
        "start-over" => rig.run(|m, l, e| m.after(After::StartOver, l, e)),
        other => panic!("no input {other}"),
    }
}

const TABLE: &str = include_str!("transitions.txt");

#[test]
fn every_input_in_every_membership_does_what_the_table_says() {
    let mut seen = String::new();
    for state in STATES {
        for input in INPUTS {
            let mut rig = Rig::new(state);
            feed(&mut rig, input);
            writeln!(seen, "{state} {input} -> {}", rig.outcome()).unwrap();
        }
    }
    crate::transition_table::assert_table("membership", &seen, TABLE);
}
