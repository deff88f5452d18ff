use std::time::Duration;

use libp2p::{Multiaddr, PeerId};

/// What happened to a kept relay. Every event is also logged with `tracing`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// The relay is not in its goal state; retry `attempt` (1-based) of this outage is due in `delay`.
    ReconnectScheduled {
        /// The relay.
        relay: PeerId,
        /// The number of the retry, counted from the start of the outage.
        attempt: u32,
        /// The wait before the retry, jitter included.
        delay: Duration,
    },
    /// A direct connection to the relay is back after it was lost or could not be made.
    Reconnected {
        /// The relay.
        relay: PeerId,
        /// The retries this outage took until the connection was back; 0 when a dial that the keeper did not
        /// make restored it.
        attempts: u32,
    },
    /// A circuit reservation on the relay is live, for the first time or restored. Not raised on renewals.
    Reserved {
        /// The relay.
        relay: PeerId,
        /// The first circuit address the reservation yielded.
        addr: Multiaddr,
    },
    /// The keeper made `attempts` failed retries and leaves the relay alone until
    /// [`RelayKeeper::retry_now`](crate::RelayKeeper::retry_now) or
    /// [`RelayKeeper::add_relay`](crate::RelayKeeper::add_relay).
    GaveUp {
        /// The relay.
        relay: PeerId,
        /// How many retries failed.
        attempts: u32,
    },
}

impl Event {
    /// The relay the event is about.
    pub fn relay(&self) -> PeerId {
        match self {
            Event::ReconnectScheduled { relay, .. }
            | Event::Reconnected { relay, .. }
            | Event::Reserved { relay, .. }
            | Event::GaveUp { relay, .. } => *relay,
        }
    }
}
