//! A node that runs identify learns each relay's protocols on every new connection: the keeper asks the relay
//! client for a reservation only once the relay offers HOP, so the application never sees a listener closed
//! for its lack; without a report it asks as a node without identify does.

use std::time::Duration;

use libp2p::{swarm::ConnectionId, Multiaddr, PeerId};

use super::{
    harness::{circuit, events, listens, relay_addr, Harness},
    Command,
};
use crate::{handler::ToBehaviour, CauseKind, Config, Event, GiveUpReason, RelayStatus};

/// The relay's one connection.
fn link() -> ConnectionId {
    ConnectionId::new_unchecked(1)
}

/// A node that runs identify, keeping one relay, connected through [`link`].
fn connected_with_identify(config: Config) -> (Harness, PeerId, Multiaddr) {
    let mut harness = Harness::new(config);
    let (_, addr) = relay_addr();
    let relay = harness.add_relay(&addr);
    harness.drain();
    // The handler of any connection says so, the relay's own included.
    report(&mut harness, relay, ToBehaviour::IdentifyRuns);
    harness.connect(relay, link(), &addr);
    (harness, relay, addr)
}

fn report(harness: &mut Harness, relay: PeerId, report: ToBehaviour) {
    let now = harness.now;
    harness.engine.on_handler_event(relay, link(), report, now);
}

/// The causes of the retries the commands announce.
fn announced(commands: &[Command]) -> Vec<CauseKind> {
    events(commands)
        .into_iter()
        .filter_map(|event| match event {
            Event::ReconnectScheduled { cause, .. } => Some(cause.kind),
            _ => None,
        })
        .collect()
}

#[test]
fn a_fresh_relay_is_asked_once_it_offers_hop_and_nothing_is_refused_or_announced() {
    let (mut harness, relay, addr) = connected_with_identify(Config::default());
    let connected = harness.drain();
    assert!(
        listens(&connected).is_empty(),
        "asked before identify: {connected:?}"
    );
    assert_eq!(harness.engine.status(&relay), Some(RelayStatus::Connected));

    // A restarted rust-libp2p relay's first identify lacks HOP; its push a round trip later has it.
    report(&mut harness, relay, ToBehaviour::HopAbsent);
    let without_hop = harness.drain();
    assert!(
        listens(&without_hop).is_empty(),
        "asked without HOP: {without_hop:?}"
    );
    report(&mut harness, relay, ToBehaviour::HopEnabled);
    let with_hop = harness.drain();
    assert_eq!(listens(&with_hop).len(), 1, "{with_hop:?}");

    let now = harness.now;
    harness
        .engine
        .on_new_listen_addr(listens(&with_hop)[0], &circuit(&addr), now);
    let reserved = harness.drain();
    let every_event: Vec<_> = [connected, without_hop, with_hop, reserved]
        .iter()
        .flat_map(|commands| events(commands).into_iter().cloned().collect::<Vec<_>>())
        .collect();
    assert!(
        matches!(every_event[..], [Event::Reserved { .. }, Event::Reachable { .. }]),
        "{every_event:?}"
    );
}

#[test]
fn without_a_report_of_the_relays_protocols_the_keeper_asks_within_two_seconds() {
    let (mut harness, _, _) = connected_with_identify(Config::default());
    assert!(listens(&harness.drain()).is_empty());

    // Less than the base wait (5 s): a relay closes a connection without a reservation after 10 s.
    let waited = harness.advance_to_timeout();
    let commands = harness.drain();
    assert_eq!(waited, Duration::from_secs(2));
    assert_eq!(listens(&commands).len(), 1, "{commands:?}");
    assert!(announced(&commands).is_empty(), "{commands:?}");
}

#[test]
fn a_relay_that_never_offers_hop_is_never_asked_and_gives_up_with_the_hint() {
    let config = Config::default()
        .with_base_delay(Duration::from_millis(10))
        .with_max_delay(Duration::from_millis(80))
        .with_max_attempts(Some(3))
        .with_rng_seed(5);
    let (mut harness, relay, _) = connected_with_identify(config);
    report(&mut harness, relay, ToBehaviour::HopAbsent);
    let mut commands = harness.drain();
    while !matches!(harness.engine.status(&relay), Some(RelayStatus::GaveUp { .. })) {
        harness.advance_to_timeout();
        commands.extend(harness.drain());
    }

    assert!(
        listens(&commands).is_empty(),
        "asked a relay without HOP: {commands:?}"
    );
    // The wait for HOP is announced once, then each counted retry finds it still missing.
    assert_eq!(
        announced(&commands),
        [
            CauseKind::AwaitingHop,
            CauseKind::HopUnsupported,
            CauseKind::HopUnsupported,
        ]
    );
    let gave_up = events(&commands).into_iter().find_map(|event| match event {
        Event::GaveUp { attempts, reason, .. } => Some((*attempts, *reason)),
        _ => None,
    });
    assert_eq!(gave_up, Some((3, GiveUpReason::MaxAttempts)));
}

#[test]
fn a_relay_reported_without_hop_is_asked_the_moment_it_offers_it_during_the_wait() {
    let (mut harness, relay, _) = connected_with_identify(Config::default().with_jitter(false));
    report(&mut harness, relay, ToBehaviour::HopAbsent);
    harness.drain();
    harness.advance_to_timeout();
    let waiting = harness.drain();
    assert_eq!(announced(&waiting), [CauseKind::AwaitingHop]);
    assert!(listens(&waiting).is_empty());

    report(&mut harness, relay, ToBehaviour::HopEnabled);
    assert_eq!(listens(&harness.drain()).len(), 1);
}
