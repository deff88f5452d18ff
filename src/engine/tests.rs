//! The engine's unit tests, on a clock the tests own. They read only what the swarm and users see: the
//! commands, the events, `status()`, `circuit_addrs()` and when the engine next needs the clock.
//! The seed project's tests and where each is proven: the README's background.

use std::time::Duration;

use libp2p::{
    core::transport::{ListenerId, TransportError},
    swarm::{CloseConnection, ConnectionId, DialError},
};

use super::{
    harness::{circuit, dialer, dials, events, fast, listener, listens, relay_addr, Harness},
    *,
};
use crate::handler::ToBehaviour;

/// A relay waiting for retry `attempt`, due when the engine's next deadline is.
fn waiting(harness: &Harness, attempt: u32) -> Option<RelayStatus> {
    let next_try = harness.engine.poll_timeout().expect("a retry is scheduled");
    Some(RelayStatus::Waiting { attempt, next_try })
}

fn id(n: usize) -> ConnectionId {
    ConnectionId::new_unchecked(n)
}

/// A harness keeping one relay, connected through connection 1, with its reservation requested.
fn connected() -> (Harness, PeerId, Multiaddr) {
    let (_, addr) = relay_addr();
    let mut harness = Harness::new(fast());
    let peer = harness.connected_relay(&addr);
    (harness, peer, addr)
}

/// A harness keeping one relay whose reservation is live on connection 1, with the listener holding it.
fn reserved() -> (Harness, PeerId, Multiaddr, ListenerId) {
    reserved_with(fast())
}

fn reserved_with(config: Config) -> (Harness, PeerId, Multiaddr, ListenerId) {
    let (_, addr) = relay_addr();
    let mut harness = Harness::new(config);
    let (peer, listener) = harness.reserved_relay(&addr);
    (harness, peer, addr, listener)
}

#[test]
fn redials_relay_when_connection_closes() {
    let (mut harness, peer, addr) = connected();
    harness.close(peer, id(1), &addr);
    assert_eq!(harness.engine.status(&peer), waiting(&harness, 1));
    assert!(dials(&harness.drain()).is_empty(), "not before the wait");
    harness.advance_to_timeout();
    let commands = harness.drain();
    let [Command::Dial(opts)] = &commands[..] else {
        panic!("{commands:?}")
    };
    assert_eq!(opts.get_peer_id(), Some(peer));
    assert_eq!(harness.engine.addrs_of(&peer), [addr], "the dial's addresses");
}

#[test]
fn dials_yield_to_existing_connections_and_dials() {
    let (peer, addr) = relay_addr();
    let mut harness = Harness::new(fast());
    harness.add_relay(&addr);
    let commands = harness.drain();
    let [Command::Dial(opts)] = &commands[..] else {
        panic!("{commands:?}")
    };
    assert_eq!(opts.get_peer_id(), Some(peer));
    // The condition has no public getter; its debug form names it.
    assert!(
        format!("{opts:?}").contains("DisconnectedAndNotDialing"),
        "{opts:?}"
    );
}

#[test]
fn does_not_redial_for_non_relay_peer() {
    let (mut harness, ..) = connected();
    let (other, other_addr) = relay_addr();
    harness.connect(other, id(7), &other_addr);
    harness.close(other, id(7), &other_addr);
    assert!(harness.drain().is_empty());
    assert_eq!(harness.engine.poll_timeout(), None);
}

#[test]
fn relayed_connections_are_not_connections_to_the_relay() {
    let (mut harness, peer, addr) = connected();
    let relayed = circuit(&addr);
    harness.connect(peer, id(2), &relayed);
    harness.close(peer, id(1), &addr);
    assert_eq!(
        harness.engine.status(&peer),
        waiting(&harness, 1),
        "the direct connection is gone: retry scheduled"
    );
    let deadline = harness.engine.poll_timeout();
    harness.close(peer, id(2), &relayed);
    assert_eq!(harness.engine.poll_timeout(), deadline);
    assert_eq!(events(&harness.drain()).len(), 1, "one retry scheduled");
}

#[test]
fn stop_clears_pending_retries() {
    let (mut harness, peer, addr) = connected();
    harness.close(peer, id(1), &addr);
    harness.engine.stop(harness.now);
    assert_eq!(harness.engine.poll_timeout(), None);
    let commands = harness.drain();
    assert!(
        commands
            .iter()
            .all(|c| matches!(c, Command::KeepAlive { on: false, .. })),
        "{commands:?}"
    );
    assert_eq!(harness.engine.status(&peer), Some(RelayStatus::Stopped));
    assert!(!harness.engine.retry_now(&peer, harness.now));
    harness.engine.stop(harness.now);
    assert!(harness.drain().is_empty(), "stop is idempotent");
}

#[test]
fn close_events_after_stop_schedule_nothing() {
    let (mut harness, peer, addr) = connected();
    harness.engine.stop(harness.now);
    harness.drain();
    harness.close(peer, id(1), &addr);
    assert!(harness.drain().is_empty());
    assert_eq!(harness.engine.poll_timeout(), None);
}

#[test]
fn one_retry_per_relay_however_many_connections_close() {
    let (mut harness, peer, addr) = connected();
    harness.connect(peer, id(2), &addr);
    harness.close(peer, id(1), &addr);
    assert_eq!(
        harness.engine.poll_timeout(),
        None,
        "another direct connection remains"
    );
    harness.close(peer, id(2), &addr);
    harness.close(peer, id(2), &addr);
    let commands = harness.drain();
    let scheduled = events(&commands)
        .into_iter()
        .filter(|e| matches!(e, Event::ReconnectScheduled { .. }))
        .count();
    assert_eq!(scheduled, 1);
}

#[test]
fn a_stopped_keeper_takes_no_relays() {
    let mut harness = Harness::new(fast());
    harness.engine.stop(harness.now);
    let (_, addr) = relay_addr();
    assert_eq!(
        harness.engine.add_relay(addr, harness.now),
        Err(AddRelayError::Stopped)
    );
    assert_eq!(harness.engine.relays().count(), 0);
    assert!(harness.drain().is_empty());
}

#[test]
fn any_dial_error_is_a_counted_failure() {
    let (peer, addr) = relay_addr();
    let mut harness = Harness::new(fast());
    harness.add_relay(&addr);
    let dial = dials(&harness.drain())[0];
    harness.fail_dial(peer, dial, &DialError::NoAddresses);
    assert_eq!(harness.engine.status(&peer), waiting(&harness, 1));
    assert!(harness.engine.poll_timeout().is_some());
}

#[test]
fn stop_during_an_inflight_dial_leaves_nothing() {
    let (mut harness, peer, addr) = connected();
    harness.close(peer, id(1), &addr);
    harness.advance_to_timeout();
    let dial = dials(&harness.drain())[0];
    harness.engine.stop(harness.now);
    harness.drain();
    harness.fail_dial(peer, dial, &DialError::Aborted);
    harness.connect(peer, id(3), &addr);
    assert!(harness.drain().is_empty(), "no dial, listen or event after stop");
    assert_eq!(harness.engine.poll_timeout(), None, "no timer left");
}

/// After `stop` the keeper follows nothing: whatever the swarm reports, nothing is queued and nothing is timed,
/// with every feature that acts on its own on (a pool, discovery, the pause while public).
#[test]
fn a_stopped_keeper_queues_nothing_whatever_the_swarm_reports() {
    let config = fast()
        .with_max_reservations(Some(2))
        .with_discovery(true)
        .with_pause_while_public(Some(Duration::from_secs(1)));
    let (mut harness, peer, addr, listener) = reserved_with(config);
    let (other, other_addr) = relay_addr();
    let public: Multiaddr = "/ip4/198.51.100.1/tcp/4001".parse().unwrap();
    harness.engine.stop(harness.now);
    harness.drain();
    assert_eq!(harness.engine.circuit_addrs().count(), 0, "no longer followed");
    let now = harness.now;
    let engine = &mut harness.engine;
    engine.on_external_addr_confirmed(&public, now);
    engine.on_handler_event(peer, id(1), ToBehaviour::ProbeTimedOut, now);
    engine.on_connection_established(other, id(5), &dialer(&other_addr), now);
    engine.on_handler_event(other, id(5), ToBehaviour::HopEnabled, now);
    engine.on_expired_listen_addr(listener, &circuit(&addr), now);
    engine.on_listener_closed(listener, Ok(()), now);
    engine.on_new_listen_addr(ListenerId::next(), &"/ip4/10.0.0.2/tcp/1".parse().unwrap(), now);
    engine.on_connection_established(peer, id(2), &dialer(&addr), now);
    harness.close(peer, id(1), &addr);
    harness.close(peer, id(2), &addr);
    harness.advance(Duration::from_secs(3600));
    assert!(harness.drain().is_empty(), "no command after stop");
    assert_eq!(harness.engine.poll_timeout(), None, "nothing timed");
    assert_eq!(harness.engine.relays().count(), 1, "nothing discovered");
}

/// A relay removed after `stop` has its reservation withdrawn, and its connection stays released: the
/// removal drops the relay's queued work, but not the `stop`'s release.
#[test]
fn removing_a_relay_after_stop_withdraws_its_reservation_and_keeps_it_released() {
    let (mut harness, peer, _, listener) = reserved();
    harness.engine.stop(harness.now);
    assert!(harness.engine.remove_relay(&peer, harness.now));
    let commands = harness.drain();
    assert!(
        matches!(
            commands.as_slice(),
            [Command::KeepAlive { peer: p, connection, on: false }, Command::RemoveListener(l)]
                if *p == peer && *connection == id(1) && *l == listener
        ),
        "{commands:?}"
    );
    assert_eq!(harness.engine.poll_timeout(), None);
}

#[test]
fn queued_work_is_dropped_by_stop() {
    let (peer, addr) = relay_addr();
    let mut harness = Harness::new(fast());
    harness.add_relay(&addr);
    harness.engine.stop(harness.now);
    assert!(harness.drain().is_empty(), "the queued first dial is not raised");
    assert_eq!(harness.engine.status(&peer), Some(RelayStatus::Stopped));
}

#[test]
fn relay_unreachable_at_start_is_retried() {
    let (peer, addr) = relay_addr();
    let mut harness = Harness::new(fast());
    harness.add_relay(&addr);
    let dial = dials(&harness.drain())[0];
    harness.fail_dial(peer, dial, &DialError::Aborted);
    let commands = harness.drain();
    assert!(
        matches!(
            commands.as_slice(),
            [Command::Emit(Event::ReconnectScheduled { attempt: 1, .. })]
        ),
        "{commands:?}"
    );
}

/// A harness keeping three relays whose first dials failed.
fn unreachable_relays() -> (Harness, Vec<PeerId>) {
    let mut harness = Harness::new(fast());
    let relays: Vec<PeerId> = (0..3).map(|_| harness.add_relay(&relay_addr().1)).collect();
    for command in harness.drain() {
        let Command::Dial(opts) = command else { continue };
        harness.fail_dial(
            opts.get_peer_id().unwrap(),
            opts.connection_id(),
            &DialError::Aborted,
        );
    }
    (harness, relays)
}

#[test]
fn every_unreachable_relay_gets_its_own_retry() {
    let (mut harness, relays) = unreachable_relays();
    for relay in &relays {
        assert_eq!(harness.engine.status(relay), waiting(&harness, 1));
    }
    harness.advance_to_timeout();
    assert_eq!(dials(&harness.drain()).len(), 3, "every retry fires");
}

#[test]
fn startup_failure_and_a_close_schedule_one_retry() {
    let (peer, addr) = relay_addr();
    let mut harness = Harness::new(fast());
    harness.add_relay(&addr);
    let dial = dials(&harness.drain())[0];
    harness.fail_dial(peer, dial, &DialError::Aborted);
    harness.close(peer, id(9), &addr);
    assert_eq!(events(&harness.drain()).len(), 1);
    assert_eq!(harness.engine.status(&peer), waiting(&harness, 1));
}

#[test]
fn remove_relay_cancels_everything_for_it_and_emits_nothing() {
    let (mut harness, peer, addr) = connected();
    harness.close(peer, id(1), &addr);
    assert!(harness.engine.remove_relay(&peer, harness.now));
    assert!(!harness.engine.remove_relay(&peer, harness.now));
    assert_eq!(harness.engine.poll_timeout(), None);
    assert!(
        !harness.drain().iter().any(|c| matches!(c, Command::Emit(_))),
        "the scheduled-retry event is dropped too"
    );
    assert_eq!(harness.engine.status(&peer), None);
    harness.connect(peer, id(5), &addr);
    assert!(harness.drain().is_empty());
}

#[test]
fn remove_relay_removes_the_keepers_listener_and_releases_keep_alive() {
    let (mut harness, peer, _, listener) = reserved();
    assert!(harness.engine.remove_relay(&peer, harness.now));
    let commands = harness.drain();
    assert!(commands
        .iter()
        .any(|c| matches!(c, Command::RemoveListener(id) if *id == listener)));
    assert!(commands.iter().any(|c| matches!(
        c,
        Command::KeepAlive { peer: p, on: false, .. } if *p == peer
    )));
    assert!(
        commands
            .iter()
            .any(|c| matches!(c, Command::Emit(Event::Unreachable { .. }))),
        "its reservation was the last: {commands:?}"
    );
    assert_eq!(harness.engine.circuit_addrs().count(), 0);
}

#[test]
fn the_node_hears_it_became_reachable_when_the_relay_that_made_it_so_is_removed() {
    let mut harness = Harness::new(fast());
    let relays: Vec<(PeerId, Multiaddr)> = (0..2)
        .map(|n| {
            let (_, addr) = relay_addr();
            let peer = harness.add_relay(&addr);
            harness.connect(peer, id(n + 1), &addr);
            (peer, addr)
        })
        .collect();
    let listeners = listens(&harness.drain());
    for ((_, addr), listener) in relays.iter().zip(&listeners) {
        harness
            .engine
            .on_new_listen_addr(*listener, &circuit(addr), harness.now);
    }
    // Both reservations are live, and the first made the node reachable; its event is still queued.
    assert!(harness.engine.remove_relay(&relays[0].0, harness.now));
    let events = events_of(harness.drain());
    assert!(
        events.iter().any(|e| matches!(e, Event::Reachable { .. })),
        "the node is reachable through the other relay: {events:?}"
    );
    assert!(!events.iter().any(|e| matches!(e, Event::Unreachable { .. })));
    assert_eq!(harness.engine.circuit_addrs().count(), 1);
}

/// The events among `commands`, owned.
fn events_of(commands: Vec<Command>) -> Vec<Event> {
    events(&commands).into_iter().cloned().collect()
}

#[test]
fn bad_addresses_change_nothing() {
    let mut harness = Harness::new(fast());
    let (peer, addr) = relay_addr();
    let cases = [
        (
            "/ip4/127.0.0.1/tcp/1".parse().unwrap(),
            AddRelayError::MissingPeerId,
        ),
        (
            format!("/p2p/{peer}").parse().unwrap(),
            AddRelayError::MissingTransport,
        ),
        (circuit(&addr), AddRelayError::CircuitAddress),
    ];
    for (addr, error) in cases {
        assert_eq!(harness.engine.add_relay(addr, harness.now), Err(error));
    }
    assert_eq!(harness.engine.relays().count(), 0);
    assert!(harness.drain().is_empty());
}

#[test]
fn a_relay_connected_before_it_is_added_is_reserved_without_a_dial() {
    let (peer, addr) = relay_addr();
    let mut harness = Harness::new(fast());
    harness.connect(peer, id(1), &addr);
    harness.add_relay(&addr);
    let commands = harness.drain();
    assert!(dials(&commands).is_empty());
    assert!(commands.iter().any(|c| matches!(c, Command::Listen(_))));
    assert!(commands
        .iter()
        .any(|c| matches!(c, Command::KeepAlive { on: true, .. })));
}

#[test]
fn only_direct_connections_to_a_kept_relay_are_kept_alive() {
    let (harness, peer, addr) = connected();
    assert!(harness.engine.keeps_alive(&peer, &addr));
    assert!(!harness.engine.keeps_alive(&peer, &circuit(&addr)));
    assert!(!harness.engine.keeps_alive(&relay_addr().0, &addr));
}

#[test]
fn a_listener_on_a_swarm_without_relay_transport_gives_up() {
    let (_, addr) = relay_addr();
    let mut harness = Harness::new(fast());
    let peer = harness.add_relay(&addr);
    harness.connect(peer, id(1), &addr);
    let listener = listener(&harness.drain());
    let error = TransportError::<std::io::Error>::MultiaddrNotSupported(addr);
    harness.engine.on_listener_error(listener, &error, harness.now);
    assert_eq!(
        harness.engine.status(&peer),
        Some(RelayStatus::GaveUp {
            attempts: 0,
            reason: GiveUpReason::NoRelayTransport,
            retry_at: None,
        })
    );
    assert_eq!(harness.engine.poll_timeout(), None);
}

#[test]
fn the_applications_listener_is_adopted_and_then_tracked() {
    let (mut harness, peer, addr, ours) = reserved();
    harness.engine.on_listener_closed(ours, Ok(()), harness.now);
    assert!(harness.engine.poll_timeout().is_some(), "a retry is scheduled");
    let theirs = ListenerId::next();
    harness
        .engine
        .on_new_listen_addr(theirs, &circuit(&addr), harness.now);
    assert_eq!(harness.engine.status(&peer), Some(RelayStatus::Reserved));
    assert_eq!(harness.engine.poll_timeout(), None, "the retry is cancelled");
    assert_eq!(
        harness.engine.circuit_addrs().collect::<Vec<_>>(),
        [&circuit(&addr)]
    );
    harness.advance(harness.engine.config().forgive_after());
    harness.engine.on_listener_closed(theirs, Ok(()), harness.now);
    assert_eq!(harness.engine.status(&peer), waiting(&harness, 1));
    // The keeper removes only listeners it opened.
    harness.drain();
    harness.engine.remove_relay(&peer, harness.now);
    assert!(!harness
        .drain()
        .iter()
        .any(|c| matches!(c, Command::RemoveListener(_))));
}

#[test]
fn a_burst_of_new_listen_addresses_gives_one_retry_round() {
    let (mut harness, relays) = unreachable_relays();
    harness.drain();
    for port in 0..5 {
        let addr: Multiaddr = format!("/ip4/192.0.2.1/tcp/{port}").parse().unwrap();
        harness
            .engine
            .on_new_listen_addr(ListenerId::next(), &addr, harness.now);
    }
    assert_eq!(
        dials(&harness.drain()).len(),
        relays.len(),
        "one dial per waiting relay"
    );
    for relay in &relays {
        assert_eq!(harness.engine.status(relay), Some(RelayStatus::Connecting));
    }
    assert_eq!(
        harness.engine.network_changed(harness.now),
        0,
        "relays that are dialing are left alone"
    );
}

#[test]
fn the_node_is_reachable_from_the_first_circuit_address_to_the_loss_of_the_last() {
    let (mut harness, peer, addr, _) = reserved();
    assert_eq!(harness.engine.circuit_addrs().count(), 1);
    harness.close(peer, id(1), &addr);
    let commands = harness.drain();
    assert!(
        matches!(
            events(&commands)[..],
            [Event::ReconnectScheduled { .. }, Event::Unreachable { .. }]
        ),
        "{commands:?}"
    );
    assert_eq!(harness.engine.circuit_addrs().count(), 0);
}

#[test]
fn a_silent_connection_is_closed_and_its_loss_blamed_on_the_probe() {
    let (mut harness, peer, addr) = connected();
    harness
        .engine
        .on_handler_event(peer, id(1), ToBehaviour::ProbeTimedOut, harness.now);
    let commands = harness.drain();
    assert!(
        matches!(
            commands[..],
            [Command::Close { peer: p, connection: CloseConnection::One(c) }] if p == peer && c == id(1)
        ),
        "{commands:?}"
    );
    harness
        .engine
        .on_connection_closed(peer, id(1), &dialer(&addr), None, harness.now);
    let commands = harness.drain();
    assert!(
        matches!(
            events(&commands)[..],
            [Event::ReconnectScheduled { cause, .. }] if cause.kind == CauseKind::ProbeTimeout
        ),
        "{commands:?}"
    );
}

#[test]
fn a_probe_of_a_peer_that_is_not_kept_closes_nothing() {
    let mut harness = Harness::new(fast());
    harness
        .engine
        .on_handler_event(relay_addr().0, id(1), ToBehaviour::ProbeTimedOut, harness.now);
    assert!(harness.drain().is_empty());
}

#[test]
fn a_reserved_relay_needs_neither_the_clock_nor_the_swarm() {
    let (mut harness, peer, ..) = reserved();
    assert_eq!(harness.engine.status(&peer), Some(RelayStatus::Reserved));
    assert_eq!(harness.engine.poll_timeout(), None, "no deadline");
    assert!(harness.engine.poll_action().is_none(), "no command");
}

/// A public address the swarm confirmed: no circuit address.
fn public_addr() -> Multiaddr {
    "/ip4/203.0.113.9/tcp/4001".parse().unwrap()
}

/// A harness pausing after a public address held for `HOLD`, one relay reserved.
fn pausing() -> (Harness, PeerId, Multiaddr, ListenerId) {
    reserved_with(fast().with_pause_while_public(Some(HOLD)))
}

const HOLD: Duration = Duration::from_secs(60);

#[test]
fn a_public_address_that_held_releases_the_reservations_without_unreachable() {
    let (mut harness, peer, _, listener) = pausing();
    harness
        .engine
        .on_external_addr_confirmed(&public_addr(), harness.now);
    assert_eq!(harness.engine.poll_timeout(), Some(harness.now + HOLD));
    harness.advance(HOLD);
    let commands = harness.drain();
    assert!(
        matches!(commands[..], [Command::RemoveListener(id)] if id == listener),
        "{commands:?}"
    );
    assert_eq!(harness.engine.status(&peer), Some(RelayStatus::Paused));
    harness.engine.on_listener_closed(listener, Ok(()), harness.now);
    assert!(harness.drain().is_empty(), "no Unreachable, no retry");
    assert_eq!(harness.engine.poll_timeout(), None);
}

#[test]
fn the_reservations_come_back_when_no_public_address_is_left() {
    let (mut harness, peer, _, listener) = pausing();
    harness
        .engine
        .on_external_addr_confirmed(&public_addr(), harness.now);
    harness.advance(HOLD);
    harness.drain();
    harness.engine.on_listener_closed(listener, Ok(()), harness.now);
    harness
        .engine
        .on_external_addr_expired(&public_addr(), harness.now);
    let commands = harness.drain();
    assert!(
        commands.iter().any(|c| matches!(c, Command::Listen(_))),
        "reserves again on the live connection: {commands:?}"
    );
    assert_eq!(harness.engine.status(&peer), Some(RelayStatus::Connected));
}

#[test]
fn circuit_addresses_and_a_flapping_public_address_do_not_pause() {
    let (mut harness, peer, addr, _) = pausing();
    harness
        .engine
        .on_external_addr_confirmed(&circuit(&addr), harness.now);
    assert_eq!(
        harness.engine.poll_timeout(),
        None,
        "a circuit address is no public one"
    );
    for _ in 0..10 {
        harness
            .engine
            .on_external_addr_confirmed(&public_addr(), harness.now);
        harness.advance(HOLD / 2);
        harness
            .engine
            .on_external_addr_expired(&public_addr(), harness.now);
        harness.drain();
    }
    assert_eq!(harness.engine.status(&peer), Some(RelayStatus::Reserved));
}

#[test]
fn without_the_setting_a_public_address_changes_nothing() {
    let (mut harness, peer, ..) = reserved();
    harness
        .engine
        .on_external_addr_confirmed(&public_addr(), harness.now);
    assert_eq!(harness.engine.poll_timeout(), None);
    assert_eq!(harness.engine.status(&peer), Some(RelayStatus::Reserved));
}

#[test]
fn a_relay_added_while_paused_stays_paused_until_the_node_is_private_again() {
    let (mut harness, ..) = pausing();
    harness
        .engine
        .on_external_addr_confirmed(&public_addr(), harness.now);
    harness.advance(HOLD);
    harness.drain();
    let (late, late_addr) = relay_addr();
    harness.add_relay(&late_addr);
    assert!(dials(&harness.drain()).is_empty());
    assert_eq!(harness.engine.status(&late), Some(RelayStatus::Paused));
    harness
        .engine
        .on_external_addr_expired(&public_addr(), harness.now);
    assert_eq!(dials(&harness.drain()).len(), 1);
}

#[test]
fn a_network_change_probes_every_connected_relay_at_once() {
    let (mut harness, peer, _, _) = reserved();
    assert_eq!(
        harness.engine.network_changed(harness.now),
        0,
        "the reservation stays"
    );
    let probes: Vec<ConnectionId> = harness
        .drain()
        .iter()
        .filter_map(|c| match c {
            Command::ProbeNow { peer: p, connection } if *p == peer => Some(*connection),
            _ => None,
        })
        .collect();
    assert_eq!(probes, [id(1)], "its link may not have survived the change");
}
