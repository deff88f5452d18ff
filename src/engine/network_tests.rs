//! A network change on the engine's clock: the node's own listen addresses come and go, or the machine slept
//! (the wall clock, which the tests hand in beside the monotonic one, jumped ahead of it). Relays in their goal
//! move to a new connection, uncounted; relays waiting out a backoff are tried at once.

use std::time::{Duration, SystemTime};

use libp2p::{
    core::transport::ListenerId,
    swarm::{CloseConnection, ConnectionId},
};

use super::{
    harness::{circuit, dials, events, fast, listens, relay_addr, Harness},
    *,
};
use crate::SLEEP_THRESHOLD;

const SECOND: Duration = Duration::from_secs(1);

fn id(n: usize) -> ConnectionId {
    ConnectionId::new_unchecked(n)
}

/// The node's own listen address in the tests, reported before any relay is added.
fn own_addr() -> Multiaddr {
    "/ip4/198.18.0.2/tcp/4001".parse().unwrap()
}

/// A harness keeping two relays: one reserved on connection 1, one waiting out a long backoff after its
/// first dial failed; with their peer ids, the reserved one's address and listener. The node listens at
/// [`own_addr`].
fn reserved_and_waiting() -> (Harness, PeerId, Multiaddr, ListenerId, PeerId) {
    let config = fast()
        .with_base_delay(Duration::from_secs(60))
        .with_max_delay(Duration::from_secs(60));
    let mut harness = Harness::new(config);
    harness
        .engine
        .on_new_listen_addr(ListenerId::next(), &own_addr(), harness.now);
    let (_, addr) = relay_addr();
    let (reserved, listener) = harness.reserved_relay(&addr);
    let (_, waiting_addr) = relay_addr();
    let waiting = harness.add_relay(&waiting_addr);
    let [dial] = dials(&harness.drain())[..] else {
        panic!("one dial")
    };
    harness.fail_dial(waiting, dial, &DialError::Aborted);
    harness.drain();
    (harness, reserved, addr, listener, waiting)
}

/// What a network change did: the connections probed, the relays dialed.
fn reaction(commands: &[Command]) -> (Vec<ConnectionId>, Vec<PeerId>) {
    let probed = commands
        .iter()
        .filter_map(|c| match c {
            Command::ProbeNow { connection, .. } => Some(*connection),
            _ => None,
        })
        .collect();
    let dialed = commands
        .iter()
        .filter_map(|c| match c {
            Command::Dial(opts) => opts.get_peer_id(),
            _ => None,
        })
        .collect();
    (probed, dialed)
}

#[test]
fn a_wall_clock_that_jumped_ahead_is_a_network_change() {
    let (mut harness, reserved, _, _, waiting) = reserved_and_waiting();
    let wall = SystemTime::now();
    harness.engine.on_clocks(harness.now, wall);
    assert!(harness.drain().is_empty(), "the first look compares with nothing");
    // An hour of suspend: the monotonic clock saw a second of it.
    harness.advance(SECOND);
    harness.engine.on_clocks(harness.now, wall + 3600 * SECOND);
    let (probed, mut dialed) = reaction(&harness.drain());
    assert_eq!(probed, [id(1)], "the link that looks alive is probed at once");
    dialed.sort();
    let mut expected = vec![reserved, waiting];
    expected.sort();
    assert_eq!(
        dialed, expected,
        "the reserved relay moves, the waiting one is tried without its wait"
    );
}

#[test]
fn a_wall_clock_that_steps_back_or_drifts_changes_nothing() {
    let (mut harness, ..) = reserved_and_waiting();
    let wall = SystemTime::now();
    harness.engine.on_clocks(harness.now, wall);
    // (how far the monotonic clock moved, the wall clock then)
    let steps = [
        // NTP stepped the wall clock back an hour.
        (SECOND, wall - 3600 * SECOND),
        // Both moved alike from there.
        (SECOND, wall - 3599 * SECOND),
        // The wall clock stepped ahead by the threshold, not more.
        (10 * SECOND, wall - 3589 * SECOND + SLEEP_THRESHOLD),
        // The wall clock stood still.
        (30 * SECOND, wall - 3584 * SECOND),
    ];
    for (monotonic, wall) in steps {
        harness.advance(monotonic);
        harness.engine.on_clocks(harness.now, wall);
        assert!(harness.drain().is_empty(), "at {wall:?}");
    }
}

#[test]
fn an_expired_listen_address_is_a_network_change_and_a_circuit_address_is_not() {
    let (mut harness, reserved, addr, listener, _) = reserved_and_waiting();
    harness
        .engine
        .on_expired_listen_addr(listener, &circuit(&addr), harness.now);
    assert!(
        dials(&harness.drain()).is_empty(),
        "a circuit address says nothing of the network"
    );
    harness
        .engine
        .on_expired_listen_addr(ListenerId::next(), &own_addr(), harness.now);
    let (probed, dialed) = reaction(&harness.drain());
    assert_eq!(probed, [id(1)]);
    assert_eq!(
        dialed.len(),
        2,
        "{reserved} moves, and the waiting relay is tried"
    );
}

/// The swarm's report of what the keeper's move did, in the order the relay client may report it.
#[test]
fn a_move_closes_the_old_connection_and_reserves_on_the_new_one_uncounted() {
    let (mut harness, peer, addr, old_listener, _) = reserved_and_waiting();
    let own: Multiaddr = "/ip4/198.18.0.3/tcp/4001".parse().unwrap();
    harness
        .engine
        .on_new_listen_addr(ListenerId::next(), &own, harness.now);
    let commands = harness.drain();
    let moved = commands.iter().find_map(|c| match c {
        Command::Dial(opts) if opts.get_peer_id() == Some(peer) => Some(opts.connection_id()),
        _ => None,
    });
    let moved = moved.expect("the reserved relay is dialed again at once");
    harness.connect(peer, moved, &addr);
    let commands = harness.drain();
    assert!(
        matches!(
            commands[..],
            [Command::Close { peer: p, connection: CloseConnection::One(old) }] if p == peer && old == id(1)
        ),
        "{commands:?}"
    );
    harness.close(peer, id(1), &addr);
    harness
        .engine
        .on_listener_closed(old_listener, Ok(()), harness.now);
    let commands = harness.drain();
    let [listener] = listens(&commands)[..] else {
        panic!("one reservation request on the new connection: {commands:?}")
    };
    harness
        .engine
        .on_new_listen_addr(listener, &circuit(&addr), harness.now);
    let mut seen: Vec<Event> = events(&commands).into_iter().cloned().collect();
    seen.extend(events(&harness.drain()).into_iter().cloned());
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, Event::ReconnectScheduled { .. } | Event::Connected { .. })),
        "the move is no loss: {seen:?}"
    );
    assert_eq!(harness.engine.status(&peer), Some(RelayStatus::Reserved));
    assert_eq!(harness.engine.circuit_addrs().count(), 1);
}
