//! The node's confirmed public addresses, for [`Config::with_pause_while_public`](crate::Config::with_pause_while_public):
//! which addresses the swarm confirmed that are no circuit addresses, and since when the node has had one.
//!
//! Not libp2p's `swarm::behaviour::ExternalAddresses`: it keeps the 20 newest confirmed addresses, circuit ones
//! among them (the relay client confirms each reservation's), so a pool's reservations would push the public
//! address out and end the pause they were released for.

use std::time::Instant;

use libp2p::Multiaddr;

use crate::address::is_relayed;

#[derive(Debug, Default)]
pub(crate) struct PublicAddrs {
    addrs: Vec<Multiaddr>,
    /// Since when `addrs` has not been empty.
    since: Option<Instant>,
}

impl PublicAddrs {
    /// The swarm confirmed `addr`; says whether it is a public address the node did not have.
    pub(crate) fn confirmed(&mut self, addr: &Multiaddr, now: Instant) -> bool {
        if is_relayed(addr) || self.addrs.contains(addr) {
            return false;
        }
        self.addrs.push(addr.clone());
        self.since.get_or_insert(now);
        true
    }

    /// `addr` expired; says whether the node has no public address left.
    pub(crate) fn expired(&mut self, addr: &Multiaddr) -> bool {
        self.addrs.retain(|a| a != addr);
        if !self.addrs.is_empty() {
            return false;
        }
        self.since = None;
        true
    }

    /// Since when the node has had a public address.
    pub(crate) fn since(&self) -> Option<Instant> {
        self.since
    }

    /// Stops the clock: nothing falls due any more.
    pub(crate) fn stop(&mut self) {
        self.since = None;
    }
}
