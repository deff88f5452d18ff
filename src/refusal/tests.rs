use std::{net::TcpListener, time::Duration};

use futures::StreamExt;
use libp2p::{
    noise, relay,
    swarm::{dummy, NetworkBehaviour, SwarmEvent},
    yamux, Multiaddr, PeerId, Swarm, SwarmBuilder,
};

use super::*;

/// A TCP address on loopback where nothing listens: the kernel refuses a connection to it.
fn closed_tcp_addr() -> Multiaddr {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    format!("/ip4/127.0.0.1/tcp/{port}/p2p/{}", PeerId::random())
        .parse()
        .unwrap()
}

/// TCP alone, as the smallest `SwarmBuilder` program builds it.
fn tcp_swarm() -> Swarm<dummy::Behaviour> {
    SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(Default::default(), noise::Config::new, yamux::Config::default)
        .unwrap()
        .with_behaviour(|_| dummy::Behaviour)
        .unwrap()
        .build()
}

/// TCP, QUIC, DNS and the relay client, as a node kept by the keeper builds it: the refusal under every
/// layer of `Either`.
fn full_swarm() -> Swarm<relay::client::Behaviour> {
    SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(Default::default(), noise::Config::new, yamux::Config::default)
        .unwrap()
        .with_quic()
        .with_dns()
        .unwrap()
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .unwrap()
        .with_behaviour(|_, relay| relay)
        .unwrap()
        .build()
}

/// Dials `addr` and returns the error the swarm reports.
async fn dial_error<B: NetworkBehaviour>(swarm: &mut Swarm<B>, addr: Multiaddr) -> DialError {
    swarm.dial(addr).expect("the dial starts");
    let error = async {
        loop {
            if let SwarmEvent::OutgoingConnectionError { error, .. } = swarm.select_next_some().await {
                return error;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), error)
        .await
        .expect("the dial fails within 10 s")
}

#[tokio::test]
async fn a_closed_tcp_port_is_a_refusal_through_a_tcp_only_swarm() {
    let error = dial_error(&mut tcp_swarm(), closed_tcp_addr()).await;
    assert!(dial_refused(&error), "{error:?}");
}

#[tokio::test]
async fn a_closed_tcp_port_is_a_refusal_through_quic_dns_and_the_relay_client() {
    let error = dial_error(&mut full_swarm(), closed_tcp_addr()).await;
    assert!(dial_refused(&error), "{error:?}");
}

#[tokio::test]
async fn a_peer_that_answers_with_another_identity_is_no_refusal() {
    let mut listener = tcp_swarm();
    listener
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    let addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = listener.select_next_some().await {
            break address;
        }
    };
    let serve = tokio::spawn(async move {
        loop {
            listener.select_next_some().await;
        }
    });
    let error = dial_error(&mut full_swarm(), addr.with_p2p(PeerId::random()).unwrap()).await;
    serve.abort();
    assert!(matches!(error, DialError::WrongPeerId { .. }), "{error:?}");
    assert!(!dial_refused(&error));
}

#[test]
fn a_refusal_on_a_quic_address_is_not_counted() {
    let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
    let quic: Multiaddr = "/ip4/127.0.0.1/udp/1/quic-v1".parse().unwrap();
    let error = DialError::Transport(vec![(quic, TransportError::Other(refused))]);
    assert!(!dial_refused(&error));
}

#[test]
fn any_refused_tcp_address_makes_the_dial_refused() {
    let tcp: Multiaddr = "/ip4/127.0.0.1/tcp/1".parse().unwrap();
    let quic: Multiaddr = "/ip4/127.0.0.1/udp/1/quic-v1".parse().unwrap();
    let error = DialError::Transport(vec![
        (quic, TransportError::Other(io::ErrorKind::TimedOut.into())),
        (
            tcp,
            TransportError::Other(io::Error::other(io::Error::from(
                io::ErrorKind::ConnectionRefused,
            ))),
        ),
    ]);
    assert!(dial_refused(&error));
}

#[test]
fn a_message_that_only_mentions_a_refusal_is_none() {
    let tcp: Multiaddr = "/ip4/127.0.0.1/tcp/1".parse().unwrap();
    let said = io::Error::other("the peer said kind: ConnectionRefused");
    let error = DialError::Transport(vec![(tcp, TransportError::Other(said))]);
    assert!(!dial_refused(&error));
}

#[test]
fn escaped_quotes_do_not_end_a_message_early() {
    let tcp: Multiaddr = "/ip4/127.0.0.1/tcp/1".parse().unwrap();
    let said = io::Error::other(r#"a \" quote", kind: ConnectionRefused"#);
    let error = DialError::Transport(vec![(tcp, TransportError::Other(said))]);
    assert!(!dial_refused(&error));
}
