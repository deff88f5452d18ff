//! The adapter's own duties: what the swarm asks of it directly, its one timer and its waker. The rules
//! themselves are the engine's tests.

use std::{
    future::poll_fn,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    task::Wake,
    time::Duration,
};

use libp2p::{multiaddr::Protocol, swarm::ConnectionHandler};

use super::*;
use crate::engine::harness::{fast, relay_addr};

#[path = "../../tests/common/drive.rs"]
mod drive;

/// A keeper holding `relay` through connection 1, its first dial and reservation request taken.
fn connected() -> (RelayKeeper, PeerId, Multiaddr) {
    let (peer, addr) = relay_addr();
    let mut keeper = RelayKeeper::new(fast());
    keeper.add_relay(addr.clone()).unwrap();
    drive::connect(&mut keeper, peer, 1, &addr);
    drive::drain(&mut keeper);
    (keeper, peer, addr)
}

#[test]
fn only_direct_connections_to_a_kept_relay_are_kept_alive() {
    let (mut keeper, peer, addr) = connected();
    let other_relay = PeerId::random();
    let local_circuit: Multiaddr = format!("/ip4/192.0.2.1/tcp/1/p2p/{other_relay}/p2p-circuit")
        .parse()
        .unwrap();
    // A relayed inbound connection: its remote address is `/p2p/<source>`, its local one the circuit.
    let remote = Multiaddr::empty().with(Protocol::P2p(peer));
    let relayed = keeper
        .handle_established_inbound_connection(ConnectionId::new_unchecked(8), peer, &local_circuit, &remote)
        .unwrap();
    assert!(!relayed.connection_keep_alive());
    let direct_local: Multiaddr = "/ip4/192.0.2.2/tcp/4001".parse().unwrap();
    let direct = keeper
        .handle_established_inbound_connection(ConnectionId::new_unchecked(9), peer, &direct_local, &addr)
        .unwrap();
    assert!(direct.connection_keep_alive());
    let outbound_relayed = keeper
        .handle_established_outbound_connection(
            ConnectionId::new_unchecked(10),
            peer,
            &addr.with(Protocol::P2pCircuit),
            Endpoint::Dialer,
            PortUse::Reuse,
        )
        .unwrap();
    assert!(!outbound_relayed.connection_keep_alive());
}

#[tokio::test]
async fn a_lost_relay_is_redialed_when_the_timer_fires() {
    let (mut keeper, peer, addr) = connected();
    drive::disconnect(&mut keeper, peer, 1, &drive::dialer(&addr));
    let opts = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let ToSwarm::Dial { opts } = poll_fn(|cx| keeper.poll(cx)).await {
                return opts;
            }
        }
    })
    .await
    .expect("the retry's timer fires");
    assert_eq!(opts.get_peer_id(), Some(peer));
    let addrs = keeper
        .handle_pending_outbound_connection(opts.connection_id(), Some(peer), &[], Endpoint::Dialer)
        .unwrap();
    assert_eq!(
        addrs,
        [addr],
        "the keeper supplies the relay's addresses to the dial"
    );
    let other = keeper
        .handle_pending_outbound_connection(
            ConnectionId::new_unchecked(3),
            Some(PeerId::random()),
            &[],
            Endpoint::Dialer,
        )
        .unwrap();
    assert!(other.is_empty(), "nothing for peers that are not kept");
}

#[test]
fn commands_reach_the_swarm_as_its_own_actions() {
    let (peer, addr) = relay_addr();
    let mut keeper = RelayKeeper::new(fast());
    drive::connect(&mut keeper, peer, 1, &addr);
    keeper.add_relay(addr).unwrap();
    let actions = drive::drain(&mut keeper);
    assert!(
        matches!(
            actions[..],
            [
                ToSwarm::NotifyHandler {
                    peer_id,
                    handler: NotifyHandler::One(connection),
                    event: FromBehaviour::Kept(true)
                },
                ToSwarm::ListenOn { .. }
            ] if peer_id == peer && connection == ConnectionId::new_unchecked(1)
        ),
        "{actions:?}"
    );
}

struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn mutators_wake_an_idle_keeper() {
    let mut keeper = RelayKeeper::new(fast());
    let count = Arc::new(CountingWaker(AtomicUsize::new(0)));
    let waker = Waker::from(count.clone());
    let mut cx = Context::from_waker(&waker);
    assert!(keeper.poll(&mut cx).is_pending());
    let peer = keeper.add_relay(relay_addr().1).unwrap();
    assert_eq!(count.0.load(Ordering::SeqCst), 1);
    assert!(keeper.poll(&mut cx).is_ready());
    assert!(keeper.poll(&mut cx).is_pending());
    assert!(keeper.remove_relay(&peer));
    assert_eq!(count.0.load(Ordering::SeqCst), 2);
    assert!(!keeper.remove_relay(&peer), "nothing to do: no wake-up");
    assert_eq!(count.0.load(Ordering::SeqCst), 2);
}

#[test]
fn an_idle_keeper_answers_every_poll_with_pending() {
    let (peer, addr) = relay_addr();
    let mut keeper = RelayKeeper::new(fast());
    keeper.add_relay(addr.clone()).unwrap();
    drive::connect(&mut keeper, peer, 1, &addr);
    drive::accept_reservations(&mut keeper);
    assert_eq!(keeper.status(&peer), Some(RelayStatus::Reserved));
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..100 {
        assert!(keeper.poll(&mut cx).is_pending());
    }
}
