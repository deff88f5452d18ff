use std::fmt;

/// Why [`RelayKeeper::add_relay`](crate::RelayKeeper::add_relay) refused an address. The keeper is unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddRelayError {
    /// The address does not end in `/p2p/<relay peer id>`, so the keeper cannot tell which relay it is.
    MissingPeerId,
    /// The address has a `/p2p/<peer id>` part, but not at its end, where the keeper (and libp2p's dialing)
    /// expects the relay's peer id.
    PeerIdNotLast,
    /// The address is a circuit address (it contains `/p2p-circuit`); the keeper wants the relay's own address.
    CircuitAddress,
    /// The address is only `/p2p/<relay peer id>`, with no transport part to dial.
    MissingTransport,
    /// [`RelayKeeper::stop`](crate::RelayKeeper::stop) was called; a stopped keeper takes no relays.
    Stopped,
}

impl fmt::Display for AddRelayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddRelayError::MissingPeerId => f.write_str(
                "relay address has no peer id: append /p2p/<relay peer id>, e.g. /ip4/198.51.100.1/tcp/4001/p2p/12D3KooW...",
            ),
            AddRelayError::PeerIdNotLast => f.write_str(
                "relay address has its peer id in the wrong place: /p2p/<relay peer id> must come last, e.g. /ip4/198.51.100.1/tcp/4001/p2p/12D3KooW...",
            ),
            AddRelayError::CircuitAddress => f.write_str(
                "relay address contains /p2p-circuit: pass the relay's own address, ending in /p2p/<relay peer id>; the keeper adds /p2p-circuit itself",
            ),
            AddRelayError::MissingTransport => f.write_str(
                "relay address has no transport part: put the relay's dialable address before /p2p/<relay peer id>, e.g. /ip4/198.51.100.1/tcp/4001",
            ),
            AddRelayError::Stopped => f.write_str(
                "relay keeper is stopped: create a new RelayKeeper to keep relays again",
            ),
        }
    }
}

impl std::error::Error for AddRelayError {}
