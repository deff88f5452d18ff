//! Driving a `RelayKeeper` by hand with the swarm events it would see, for simulations and benchmarks that
//! need no network.

use std::task::{Context, Poll, Waker};

use libp2p::{
    core::{transport::PortUse, ConnectedPoint, Endpoint},
    swarm::{
        behaviour::{ConnectionClosed, ConnectionEstablished, NewListenAddr},
        ConnectionId, FromSwarm, NetworkBehaviour, THandlerInEvent, ToSwarm,
    },
    Multiaddr, PeerId,
};
use libp2p_relay_keeper::{Event, RelayKeeper};

pub type Action = ToSwarm<Event, THandlerInEvent<RelayKeeper>>;

fn endpoint(addr: &Multiaddr) -> ConnectedPoint {
    ConnectedPoint::Dialer {
        address: addr.clone(),
        role_override: Endpoint::Dialer,
        port_use: PortUse::Reuse,
    }
}

/// Everything the keeper has to do right now, without waiting for any timer.
pub fn drain(keeper: &mut RelayKeeper) -> Vec<Action> {
    let mut cx = Context::from_waker(Waker::noop());
    std::iter::from_fn(|| match keeper.poll(&mut cx) {
        Poll::Ready(action) => Some(action),
        Poll::Pending => None,
    })
    .collect()
}

/// A direct connection `id` to `peer`, dialed at `addr`, is up.
pub fn connect(keeper: &mut RelayKeeper, peer: PeerId, id: usize, addr: &Multiaddr) {
    keeper.on_swarm_event(FromSwarm::ConnectionEstablished(ConnectionEstablished {
        peer_id: peer,
        connection_id: ConnectionId::new_unchecked(id),
        endpoint: &endpoint(addr),
        failed_addresses: &[],
        other_established: 0,
    }));
}

/// The last direct connection `id` to `peer` closed.
pub fn disconnect(keeper: &mut RelayKeeper, peer: PeerId, id: usize, addr: &Multiaddr) {
    keeper.on_swarm_event(FromSwarm::ConnectionClosed(ConnectionClosed {
        peer_id: peer,
        connection_id: ConnectionId::new_unchecked(id),
        endpoint: &endpoint(addr),
        cause: None,
        remaining_established: 0,
    }));
}

/// Answers every reservation the keeper requested with its circuit address; returns the other actions.
pub fn accept_reservations(keeper: &mut RelayKeeper) -> Vec<Action> {
    let mut others = Vec::new();
    for action in drain(keeper) {
        match action {
            ToSwarm::ListenOn { opts } => {
                let addr = opts.address().clone();
                keeper.on_swarm_event(FromSwarm::NewListenAddr(NewListenAddr {
                    listener_id: opts.listener_id(),
                    addr: &addr,
                }));
            }
            other => others.push(other),
        }
    }
    others.extend(drain(keeper));
    others
}
