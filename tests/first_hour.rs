//! What a new user meets first, with real swarms on loopback TCP: mistakes in a relay's address stop at once
//! and say why, the node says when it becomes reachable, and a relay that waits for identify says so.

mod common;

use std::time::Duration;

use common::{fast_config, Client, External, LogCapture, Net, RelayServer};
use libp2p::{identity::Keypair, multiaddr::Protocol, relay, Multiaddr};
use libp2p_relay_keeper::{CauseKind, Event, GiveUpReason, RelayStatus};

/// The relay's peer id behind another transport part.
fn with_transport(relay: &RelayServer, transport: &str) -> Multiaddr {
    format!("{transport}/p2p/{}", relay.peer_id).parse().unwrap()
}

async fn gave_up(client: &mut Client) -> (u32, GiveUpReason) {
    client
        .wait_for("giving up", |e| match e {
            Event::GaveUp { attempts, reason, .. } => Some((*attempts, *reason)),
            _ => None,
        })
        .await
}

#[tokio::test]
async fn a_wrong_peer_id_gives_up_after_the_first_dial_and_dials_no_more() {
    let relay = RelayServer::spawn(Net::Tcp).await;
    let wrong = Keypair::generate_ed25519().public().to_peer_id();
    let mistaken = relay.transport_addr().with(Protocol::P2p(wrong));
    let mut client = Client::new(Net::Tcp, fast_config(), false);
    client.keeper().add_relay(mistaken).unwrap();

    let found = relay.peer_id;
    assert_eq!(
        gave_up(&mut client).await,
        (0, GiveUpReason::WrongPeerId { found }),
        "the event names the peer id that answered"
    );
    let dials = client.dials.len();
    client.serve_for(Duration::from_millis(300)).await;
    assert_eq!(client.dials.len(), dials, "no further dial");
    assert_eq!(
        client.keeper().status(&wrong),
        Some(RelayStatus::GaveUp {
            attempts: 0,
            reason: GiveUpReason::WrongPeerId { found },
            retry_at: None,
        }),
        "a mistake is not retried by the cool-down"
    );
    assert!(
        !client.keeper().retry_now(&wrong),
        "retry_now cannot fix an address"
    );
    client.serve_for(Duration::from_millis(100)).await;
    assert_eq!(client.dials.len(), dials);
    assert_eq!(client.count(|e| matches!(e, Event::ReconnectScheduled { .. })), 0);
    relay.kill().await;
}

#[tokio::test]
async fn an_address_without_a_transport_gives_up_at_once_and_a_fixed_one_reserves() {
    let relay = RelayServer::spawn(Net::Tcp).await;
    // The test client speaks TCP only: QUIC and DNS addresses cannot be dialed.
    let mut client = Client::new(Net::Tcp, fast_config(), false);
    for transport in ["/ip4/127.0.0.1/udp/4001/quic-v1", "/dns4/localhost/tcp/4001"] {
        let relay_id = client
            .keeper()
            .add_relay(with_transport(&relay, transport))
            .unwrap();
        assert_eq!(gave_up(&mut client).await, (0, GiveUpReason::UnsupportedAddress));
        assert_eq!(
            client.keeper().network_changed(),
            0,
            "a network change cannot fix an address"
        );
        assert!(matches!(
            client.keeper().status(&relay_id),
            Some(RelayStatus::GaveUp { .. })
        ));
    }
    // The right address revives the relay.
    let relay_id = client.keeper().add_relay(relay.addr.clone()).unwrap();
    client.wait_reserved(relay_id).await;
    relay.kill().await;
}

#[tokio::test]
async fn a_bad_address_beside_a_good_one_is_dropped_and_the_good_one_used() {
    let relay = RelayServer::spawn(Net::Tcp).await;
    let mut client = Client::new(Net::Tcp, fast_config(), false);
    let relay_id = client
        .keeper()
        .add_relay(with_transport(&relay, "/ip4/127.0.0.1/udp/4001/quic-v1"))
        .unwrap();
    client.keeper().add_relay(relay.addr.clone()).unwrap();
    client.wait_reserved(relay_id).await;
    assert_eq!(client.count(|e| matches!(e, Event::GaveUp { .. })), 0);
    relay.kill().await;
}

#[tokio::test]
async fn reachable_and_unreachable_follow_the_live_circuit_addresses() {
    let relay = RelayServer::spawn(Net::Tcp).await;
    let mut client = Client::new(Net::Tcp, fast_config(), false);
    let relay_id = client.keeper().add_relay(relay.addr.clone()).unwrap();
    assert_eq!(client.keeper().circuit_addrs().count(), 0);

    let reachable_at = client
        .wait_for("reachable", |e| match e {
            Event::Reachable { addr, .. } => Some(addr.clone()),
            _ => None,
        })
        .await;
    let reserved_before = client.count(|e| matches!(e, Event::Reserved { .. }));
    assert_eq!(reserved_before, 1, "Reserved comes first");
    let live: Vec<Multiaddr> = client.keeper().circuit_addrs().cloned().collect();
    assert!(live.contains(&reachable_at), "{live:?}");
    let external: Vec<Multiaddr> = client
        .swarm
        .external_addresses()
        .filter(|a| a.iter().any(|p| p == Protocol::P2pCircuit))
        .cloned()
        .collect();
    for addr in &live {
        assert!(external.contains(addr), "{addr} is not external: {external:?}");
    }

    let relay = relay.restart(Net::Tcp, External::AtStart).await;
    client
        .wait_for("the loss", |e| {
            matches!(e, Event::ReconnectScheduled { .. }).then_some(())
        })
        .await;
    assert_eq!(client.keeper().circuit_addrs().count(), 0, "gone with the loss");
    client
        .wait_for("unreachable", |e| {
            matches!(e, Event::Unreachable { relay } if *relay == relay_id).then_some(())
        })
        .await;
    assert_eq!(client.keeper().circuit_addrs().count(), 0);
    client
        .wait_for("reachable again", |e| {
            matches!(e, Event::Reachable { .. }).then_some(())
        })
        .await;
    assert_eq!(client.count(|e| matches!(e, Event::Reachable { .. })), 2);
    assert_eq!(client.count(|e| matches!(e, Event::Unreachable { .. })), 1);
    relay.kill().await;
}

/// A fresh rust-libp2p relay offers HOP only once identify told it its address: a client without identify
/// gets the refusal explained once its fallback ran out, naming identify; one with identify does not (its
/// refusal passes by itself).
#[tokio::test]
async fn a_relay_waiting_for_identify_is_reported_as_not_offering_hop() {
    for with_identify in [false, true] {
        let logs = LogCapture::start();
        let key = Keypair::generate_ed25519();
        let relay = RelayServer::start(
            Net::Tcp,
            key,
            None,
            External::FromIdentify,
            relay::Config::default(),
        )
        .await;
        // With identify, a fallback longer than a loaded machine's round trip, so only HOP can end the wait.
        let config = match with_identify {
            true => fast_config().with_base_delay(Duration::from_secs(10)),
            false => fast_config(),
        };
        let mut client = Client::new(Net::Tcp, config, with_identify);
        let relay_id = client.keeper().add_relay(relay.addr.clone()).unwrap();
        let cause = client
            .wait_for("a refusal", |e| match e {
                Event::ReconnectScheduled { cause, .. } => Some(cause.clone()),
                _ => None,
            })
            .await;
        assert_eq!(
            cause.kind,
            CauseKind::AwaitingHop,
            "a first refusal is a \"not yet\""
        );
        assert!(
            cause.message.contains("does not offer HOP (yet)"),
            "{}",
            cause.message
        );
        if with_identify {
            client.wait_reserved(relay_id).await;
        } else {
            // The refusal counted after the fallback, then another, to see that the fix is named once.
            client
                .wait_for("another refusal", |e| {
                    matches!(e, Event::ReconnectScheduled { attempt: 3, .. }).then_some(())
                })
                .await;
        }
        let warned = logs.count("the likely fix is identify");
        assert_eq!(warned, usize::from(!with_identify), "identify: {with_identify}");
        relay.kill().await;
    }
}
