//! Driving an [`Engine`] by hand on a clock the test owns, with the inputs the swarm would give it. Shared by
//! the engine's unit tests and the model-based property test.

use std::time::{Duration, Instant};

use libp2p::{
    core::{
        transport::{ListenerId, PortUse, TransportError},
        ConnectedPoint, Endpoint,
    },
    multiaddr::Protocol,
    swarm::{ConnectionId, DialError},
    Multiaddr, PeerId,
};

use super::{Command, Engine};
use crate::{Config, Event};

/// Millisecond backoff without jitter, so that waits are exact.
pub(crate) fn fast() -> Config {
    Config::default()
        .with_base_delay(Duration::from_millis(1))
        .with_max_delay(Duration::from_millis(4))
        .with_jitter(false)
}

/// A relay with a fresh identity at a TCP address.
pub(crate) fn relay_addr() -> (PeerId, Multiaddr) {
    let peer = PeerId::random();
    let addr = format!("/ip4/127.0.0.1/tcp/4001/p2p/{peer}").parse().unwrap();
    (peer, addr)
}

/// The circuit address of a reservation on the relay at `addr`.
pub(crate) fn circuit(addr: &Multiaddr) -> Multiaddr {
    addr.clone().with(Protocol::P2pCircuit)
}

/// The error a circuit listener closes with when the relay does not offer HOP (yet), nested as the swarm
/// hands it over.
pub(crate) fn hop_refusal() -> std::io::Error {
    std::io::Error::other(libp2p::relay::client::transport::Error::Reservation(
        libp2p::relay::outbound::hop::ReserveError::Unsupported,
    ))
}

/// The error a circuit listener closes with when the relay is full or this node asked too often.
pub(crate) fn limit_refusal() -> std::io::Error {
    std::io::Error::other(libp2p::relay::client::transport::Error::Reservation(
        libp2p::relay::outbound::hop::ReserveError::ResourceLimitExceeded,
    ))
}

/// How a dial to `addr` fails when the relay's host is up and nothing listens: refused, as the swarm nests it.
pub(crate) fn refusal(addr: &Multiaddr) -> DialError {
    let refused = std::io::Error::other(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
    DialError::Transport(vec![(addr.clone(), TransportError::Other(refused))])
}

/// An outbound connection dialed at `addr`.
pub(crate) fn dialer(addr: &Multiaddr) -> ConnectedPoint {
    ConnectedPoint::Dialer {
        address: addr.clone(),
        role_override: Endpoint::Dialer,
        port_use: PortUse::Reuse,
    }
}

/// The dials among `commands`, as connection ids.
pub(crate) fn dials(commands: &[Command]) -> Vec<ConnectionId> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::Dial(opts) => Some(opts.connection_id()),
            _ => None,
        })
        .collect()
}

/// The reservation requests among `commands`, as listener ids.
pub(crate) fn listens(commands: &[Command]) -> Vec<ListenerId> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::Listen(opts) => Some(opts.listener_id()),
            _ => None,
        })
        .collect()
}

/// The listener of the one reservation request among `commands`.
pub(crate) fn listener(commands: &[Command]) -> ListenerId {
    let [listener] = listens(commands)[..] else {
        panic!("one reservation request: {commands:?}")
    };
    listener
}

/// The events among `commands`.
pub(crate) fn events(commands: &[Command]) -> Vec<&Event> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::Emit(event) => Some(event),
            _ => None,
        })
        .collect()
}

/// An engine and the clock it runs on.
pub(crate) struct Harness {
    pub(crate) engine: Engine,
    pub(crate) now: Instant,
}

impl Harness {
    pub(crate) fn new(config: Config) -> Self {
        Self {
            engine: Engine::new(config),
            now: Instant::now(),
        }
    }

    /// Every command the engine has now, firing the deadlines that are due as the adapter would.
    pub(crate) fn drain(&mut self) -> Vec<Command> {
        let mut commands = Vec::new();
        loop {
            if let Some(command) = self.engine.poll_action() {
                commands.push(command);
                continue;
            }
            match self.engine.poll_timeout() {
                Some(deadline) if deadline <= self.now => self.engine.handle_timeout(self.now),
                _ => return commands,
            }
        }
    }

    /// Lets the clock run by `by`.
    pub(crate) fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    /// Lets the clock run to the engine's next deadline, and says how long that took.
    pub(crate) fn advance_to_timeout(&mut self) -> Duration {
        let deadline = self.engine.poll_timeout().expect("a deadline is set");
        let waited = deadline.saturating_duration_since(self.now);
        self.now = self.now.max(deadline);
        waited
    }

    pub(crate) fn add_relay(&mut self, addr: &Multiaddr) -> PeerId {
        self.engine.add_relay(addr.clone(), self.now).unwrap()
    }

    /// A direct connection `id` to `peer`, dialed at `addr`, is up.
    pub(crate) fn connect(&mut self, peer: PeerId, id: ConnectionId, addr: &Multiaddr) {
        self.engine
            .on_connection_established(peer, id, &dialer(addr), self.now);
    }

    /// Connection `id` to `peer`, dialed at `addr`, closed.
    pub(crate) fn close(&mut self, peer: PeerId, id: ConnectionId, addr: &Multiaddr) {
        self.engine
            .on_connection_closed(peer, id, &dialer(addr), None, self.now);
    }

    pub(crate) fn fail_dial(&mut self, peer: PeerId, id: ConnectionId, error: &DialError) {
        self.engine.on_dial_failure(Some(peer), id, error, self.now);
    }

    /// The keeper's relay at `addr`, added and connected through connection 1, its reservation live; returns
    /// its peer id and the listener that holds the reservation.
    pub(crate) fn reserved_relay(&mut self, addr: &Multiaddr) -> (PeerId, ListenerId) {
        let peer = self.add_relay(addr);
        self.connect(peer, ConnectionId::new_unchecked(1), addr);
        let listener = listener(&self.drain());
        self.engine.on_new_listen_addr(listener, &circuit(addr), self.now);
        self.drain();
        (peer, listener)
    }

    /// The keeper's relay at `addr`, added and connected through connection 1, its reservation requested;
    /// returns its peer id.
    pub(crate) fn connected_relay(&mut self, addr: &Multiaddr) -> PeerId {
        let peer = self.add_relay(addr);
        self.connect(peer, ConnectionId::new_unchecked(1), addr);
        self.drain();
        peer
    }
}
