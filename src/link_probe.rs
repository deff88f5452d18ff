//! A behaviour that closes connections that stopped carrying traffic, for the other end of a kept relay link:
//! the relay server.

use std::{
    collections::VecDeque,
    task::{Context, Poll, Waker},
    time::Duration,
};

use libp2p::{
    core::{transport::PortUse, Endpoint},
    swarm::{
        CloseConnection, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler,
        THandlerInEvent, THandlerOutEvent, ToSwarm,
    },
    Multiaddr, PeerId,
};

use crate::{
    config::Probe,
    handler::{Handler, ToBehaviour},
};

/// Probes every connection with the `/ipfs/ping/1.0.0` echo, as [`RelayKeeper`](crate::RelayKeeper) probes
/// its relay links, by the same rule ([`Config::with_probe`](crate::Config::with_probe)): a connection not
/// heard from for `interval` is pinged on a stream kept open, and closed only once that ping went unanswered
/// for twice `max(timeout, srtt + 4 x rttvar)`. It answers the peers' pings itself, and each further ping on
/// a stream it echoed on (the peer got the echo, so the link works both ways) spares it a probe of its own,
/// so a client whose keeper probes more often than the relay costs the relay nothing; put it before
/// `ping::Behaviour` in the derived behaviour, since only the first field that offers ping gets the peers'
/// pings.
///
/// Meant for relay servers: when a client's link dies silently (its host vanished, its NAT mapping was
/// dropped), the relay would otherwise route new circuits into the dead connection until TCP gives up.
/// libp2p's `ping::Behaviour` reports only the second failure in a row, and its second ping waits for a new
/// stream whose negotiation has a 10 s time limit, so it notices much later. Like the keeper's probe it counts
/// only a timeout, never a reset stream, keeps no connection alive and leaves peers that do not speak ping
/// alone.
///
/// ```
/// use std::time::Duration;
/// use libp2p::{relay, swarm::NetworkBehaviour};
/// use libp2p_relay_keeper::LinkProbe;
///
/// #[derive(NetworkBehaviour)]
/// struct RelayServer {
///     relay: relay::Behaviour,
///     probe: LinkProbe,
/// }
///
/// // A client's silent death is seen within 3.5 + 2 x 1.3 s on a fast link, and a client whose uplink
/// // suddenly queues 2.5 s is not cut; a client whose keeper probes every 3 s (its default) spares the relay
/// // its own probes.
/// let probe = LinkProbe::new(Duration::from_millis(3500), Duration::from_millis(1300));
/// ```
pub struct LinkProbe {
    probe: Probe,
    pending: VecDeque<ToSwarm<SilentLinkClosed, THandlerInEvent<Self>>>,
    waker: Option<Waker>,
}

/// A connection a [`LinkProbe`] closed because its probe went unanswered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SilentLinkClosed {
    /// The peer at the other end.
    pub peer: PeerId,
    /// The connection.
    pub connection: ConnectionId,
}

impl LinkProbe {
    /// Probes a connection not heard from for `interval`, with `timeout` as the floor of its adaptive timeout
    /// (both clamped like [`Config::with_probe_interval`](crate::Config::with_probe_interval)'s).
    pub fn new(interval: Duration, timeout: Duration) -> Self {
        Self {
            probe: Probe::new(interval, timeout),
            pending: VecDeque::new(),
            waker: None,
        }
    }
}

impl NetworkBehaviour for LinkProbe {
    type ConnectionHandler = Handler;
    type ToSwarm = SilentLinkClosed;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(Handler::probe_only(self.probe))
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(Handler::probe_only(self.probe))
    }

    fn on_swarm_event(&mut self, _: FromSwarm) {}

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        if let ToBehaviour::ProbeTimedOut = event {
            tracing::debug!(%peer, %connection, "probe timed out; closing the silent connection");
            self.pending.push_back(ToSwarm::CloseConnection {
                peer_id: peer,
                connection: CloseConnection::One(connection),
            });
            self.pending
                .push_back(ToSwarm::GenerateEvent(SilentLinkClosed { peer, connection }));
            if let Some(waker) = self.waker.take() {
                waker.wake();
            }
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        if let Some(action) = self.pending.pop_front() {
            return Poll::Ready(action);
        }
        self.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}
