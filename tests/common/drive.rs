//! Feeding a `NetworkBehaviour` the swarm events it would see, by hand, for unit tests, simulations and
//! benchmarks that need no network.

use std::task::{Context, Poll, Waker};

use libp2p::{
    core::{transport::PortUse, ConnectedPoint, Endpoint},
    swarm::{
        behaviour::{ConnectionClosed, ConnectionEstablished, NewListenAddr},
        ConnectionId, FromSwarm, NetworkBehaviour, THandlerInEvent, ToSwarm,
    },
    Multiaddr, PeerId,
};

/// What a behaviour `B` asks of the swarm.
pub type Action<B> = ToSwarm<<B as NetworkBehaviour>::ToSwarm, THandlerInEvent<B>>;

/// An outbound connection dialed at `addr`.
pub fn dialer(addr: &Multiaddr) -> ConnectedPoint {
    ConnectedPoint::Dialer {
        address: addr.clone(),
        role_override: Endpoint::Dialer,
        port_use: PortUse::Reuse,
    }
}

/// Everything the behaviour has to do right now, without waiting for any timer.
pub fn drain<B: NetworkBehaviour>(behaviour: &mut B) -> Vec<Action<B>> {
    let mut cx = Context::from_waker(Waker::noop());
    std::iter::from_fn(|| match behaviour.poll(&mut cx) {
        Poll::Ready(action) => Some(action),
        Poll::Pending => None,
    })
    .collect()
}

/// A direct connection `id` to `peer`, dialed at `addr`, is up.
pub fn connect<B: NetworkBehaviour>(behaviour: &mut B, peer: PeerId, id: usize, addr: &Multiaddr) {
    behaviour.on_swarm_event(FromSwarm::ConnectionEstablished(ConnectionEstablished {
        peer_id: peer,
        connection_id: ConnectionId::new_unchecked(id),
        endpoint: &dialer(addr),
        failed_addresses: &[],
        other_established: 0,
    }));
}

/// The last connection `id` to `peer`, made as `endpoint`, closed.
pub fn disconnect<B: NetworkBehaviour>(
    behaviour: &mut B,
    peer: PeerId,
    id: usize,
    endpoint: &ConnectedPoint,
) {
    behaviour.on_swarm_event(FromSwarm::ConnectionClosed(ConnectionClosed {
        peer_id: peer,
        connection_id: ConnectionId::new_unchecked(id),
        endpoint,
        cause: None,
        remaining_established: 0,
    }));
}

/// Answers every reservation the behaviour requested with its circuit address; returns the other actions.
pub fn accept_reservations<B: NetworkBehaviour>(behaviour: &mut B) -> Vec<Action<B>> {
    let mut others = Vec::new();
    for action in drain(behaviour) {
        match action {
            ToSwarm::ListenOn { opts } => {
                let addr = opts.address().clone();
                behaviour.on_swarm_event(FromSwarm::NewListenAddr(NewListenAddr {
                    listener_id: opts.listener_id(),
                    addr: &addr,
                }));
            }
            other => others.push(other),
        }
    }
    others.extend(drain(behaviour));
    others
}
