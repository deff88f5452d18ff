//! The keeper's connection handler: keeps direct connections to kept relays alive and reports when a relay
//! starts offering the HOP protocol.

use std::task::{Context, Poll};

use libp2p::{
    core::upgrade::DeniedUpgrade,
    relay::HOP_PROTOCOL_NAME,
    swarm::{
        handler::{ConnectionEvent, ProtocolsChange},
        ConnectionHandlerEvent, SubstreamProtocol,
    },
};

/// Tells the handler of a relay connection whether the keeper needs it kept alive.
#[derive(Debug, Clone, Copy)]
pub enum FromBehaviour {
    /// Keep the connection alive (`true`), or let the swarm's idle timeout apply again (`false`).
    KeepAlive(bool),
}

/// Reports from a connection to the keeper.
#[derive(Debug, Clone, Copy)]
pub enum ToBehaviour {
    /// The remote started offering the relay HOP protocol, so a reservation request can succeed now.
    HopEnabled,
}

/// Connection handler of [`RelayKeeper`](crate::RelayKeeper). Opens no streams.
#[derive(Debug)]
pub struct Handler {
    keep_alive: bool,
    hop: bool,
    hop_enabled: bool,
}

impl Handler {
    pub(crate) fn new(keep_alive: bool) -> Self {
        Self {
            keep_alive,
            hop: false,
            hop_enabled: false,
        }
    }
}

impl libp2p::swarm::ConnectionHandler for Handler {
    type FromBehaviour = FromBehaviour;
    type ToBehaviour = ToBehaviour;
    type InboundProtocol = DeniedUpgrade;
    type OutboundProtocol = DeniedUpgrade;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = ();

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol> {
        SubstreamProtocol::new(DeniedUpgrade, ())
    }

    fn on_behaviour_event(&mut self, event: Self::FromBehaviour) {
        match event {
            FromBehaviour::KeepAlive(keep_alive) => self.keep_alive = keep_alive,
        }
    }

    fn connection_keep_alive(&self) -> bool {
        self.keep_alive
    }

    fn poll(
        &mut self,
        _: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Self::OutboundProtocol, (), Self::ToBehaviour>> {
        if std::mem::take(&mut self.hop_enabled) {
            return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(ToBehaviour::HopEnabled));
        }
        Poll::Pending
    }

    fn on_connection_event(&mut self, event: ConnectionEvent<Self::InboundProtocol, Self::OutboundProtocol>) {
        match event {
            ConnectionEvent::RemoteProtocolsChange(ProtocolsChange::Added(added))
                if !self.hop && added.clone().any(|p| *p == HOP_PROTOCOL_NAME) =>
            {
                self.hop = true;
                self.hop_enabled = true;
            }
            ConnectionEvent::RemoteProtocolsChange(ProtocolsChange::Removed(removed))
                if removed.clone().any(|p| *p == HOP_PROTOCOL_NAME) =>
            {
                self.hop = false;
            }
            ConnectionEvent::FullyNegotiatedInbound(inbound) => {
                libp2p::core::util::unreachable(inbound.protocol)
            }
            ConnectionEvent::FullyNegotiatedOutbound(outbound) => {
                libp2p::core::util::unreachable(outbound.protocol)
            }
            _ => {}
        }
    }
}
