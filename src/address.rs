use libp2p::{multiaddr::Protocol, Multiaddr, PeerId};

use crate::AddRelayError;

/// The relay's peer id, if `addr` is a dialable relay address ending in `/p2p/<relay peer id>`.
pub(crate) fn relay_peer_id(addr: &Multiaddr) -> Result<PeerId, AddRelayError> {
    if is_relayed(addr) {
        return Err(AddRelayError::CircuitAddress);
    }
    let Some(Protocol::P2p(peer_id)) = addr.iter().last() else {
        if addr.iter().any(|p| matches!(p, Protocol::P2p(_))) {
            return Err(AddRelayError::PeerIdNotLast);
        }
        return Err(AddRelayError::MissingPeerId);
    };
    if addr.iter().count() == 1 {
        return Err(AddRelayError::MissingTransport);
    }
    Ok(peer_id)
}

/// Whether `addr` goes through a relay: a circuit address. (libp2p offers this only for a connection's
/// endpoint, `ConnectedPoint::is_relayed`.)
pub(crate) fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| p == Protocol::P2pCircuit)
}

/// Whether a dial to `addr` runs over TCP, whose refused connection says the host is up and nothing listens.
/// QUIC has no such answer: a dial to a closed UDP port waits out its handshake.
pub(crate) fn is_tcp(addr: &Multiaddr) -> bool {
    !is_relayed(addr) && addr.iter().any(|p| matches!(p, Protocol::Tcp(_)))
}

/// The relay a circuit listen address (`.../p2p/<relay>/p2p-circuit`) was reserved on.
pub(crate) fn circuit_relay(addr: &Multiaddr) -> Option<PeerId> {
    let mut before_circuit = None;
    for protocol in addr.iter() {
        match protocol {
            Protocol::P2pCircuit => {
                return match before_circuit {
                    Some(Protocol::P2p(relay)) => Some(relay),
                    _ => None,
                }
            }
            other => before_circuit = Some(other),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const RELAY: &str = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";

    fn addr(s: &str) -> Multiaddr {
        s.replace("RELAY", RELAY).parse().unwrap()
    }

    #[test]
    fn only_direct_tcp_addresses_are_tcp() {
        assert!(is_tcp(&addr("/ip4/127.0.0.1/tcp/1/p2p/RELAY")));
        assert!(is_tcp(&addr("/dns4/relay.example/tcp/443/wss/p2p/RELAY")));
        assert!(!is_tcp(&addr("/ip4/127.0.0.1/udp/1/quic-v1/p2p/RELAY")));
        assert!(!is_tcp(&addr("/ip4/127.0.0.1/tcp/1/p2p/RELAY/p2p-circuit")));
    }

    #[test]
    fn accepts_a_transport_address_with_peer_id() {
        let relay: PeerId = RELAY.parse().unwrap();
        assert_eq!(relay_peer_id(&addr("/ip4/127.0.0.1/tcp/1/p2p/RELAY")), Ok(relay));
        assert_eq!(
            relay_peer_id(&addr("/dns4/relay.example/udp/1/quic-v1/p2p/RELAY")),
            Ok(relay)
        );
    }

    #[test]
    fn names_what_is_wrong() {
        assert_eq!(
            relay_peer_id(&addr("/ip4/127.0.0.1/tcp/1")),
            Err(AddRelayError::MissingPeerId)
        );
        assert_eq!(relay_peer_id(&addr("")), Err(AddRelayError::MissingPeerId));
        assert_eq!(
            relay_peer_id(&addr("/p2p/RELAY")),
            Err(AddRelayError::MissingTransport)
        );
        assert_eq!(
            relay_peer_id(&addr("/ip4/127.0.0.1/tcp/1/p2p/RELAY/p2p-circuit")),
            Err(AddRelayError::CircuitAddress)
        );
        assert_eq!(
            relay_peer_id(&addr("/ip4/127.0.0.1/tcp/1/p2p/RELAY/tcp/2")),
            Err(AddRelayError::PeerIdNotLast)
        );
    }

    #[test]
    fn finds_the_relay_of_a_circuit_address() {
        let relay: PeerId = RELAY.parse().unwrap();
        assert_eq!(
            circuit_relay(&addr("/ip4/127.0.0.1/tcp/1/p2p/RELAY/p2p-circuit")),
            Some(relay)
        );
        assert_eq!(circuit_relay(&addr("/ip4/127.0.0.1/tcp/1/p2p/RELAY")), None);
        assert_eq!(circuit_relay(&addr("/ip4/127.0.0.1/tcp/1/p2p-circuit")), None);
    }
}
