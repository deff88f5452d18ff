use std::time::Instant;

use crate::GiveUpReason;

/// What the keeper is doing about one relay, as returned by [`RelayKeeper::status`](crate::RelayKeeper::status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RelayStatus {
    /// A dial to the relay is in flight: a retry, the first try, or a re-check of a relay whose host refused
    /// ([`Config::with_recheck`](crate::Config::with_recheck)).
    Connecting,
    /// Connected directly to the relay. With reservations on, a reservation request is in flight, or on a node
    /// that runs identify, about to be made once identify reports that the relay offers HOP.
    Connected,
    /// A circuit reservation on the relay is live: the node is reachable through it.
    Reserved,
    /// Retry `attempt` (1-based) of the current outage is scheduled and its wait is running (a refusing relay
    /// is re-checked meanwhile).
    Waiting {
        /// The number of the retry that is due next.
        attempt: u32,
        /// When the keeper next tries anything for the relay: the retry, or a re-check before it; for a relay
        /// that refused for lack of HOP, the fallback (it reserves at once when the relay offers HOP).
        next_try: Instant,
    },
    /// The keeper left the relay alone. [`RelayKeeper::add_relay`](crate::RelayKeeper::add_relay) revives
    /// it; after [`GiveUpReason::MaxAttempts`] so do the cool-down's end (`retry_at`),
    /// [`RelayKeeper::retry_now`](crate::RelayKeeper::retry_now), a network change and the relay offering
    /// HOP on a live connection.
    GaveUp {
        /// How many retries of the outage were made.
        attempts: u32,
        /// Why the keeper gave up.
        reason: GiveUpReason,
        /// When the keeper starts a fresh round by itself; `None`: never by itself.
        retry_at: Option<Instant>,
    },
    /// [`RelayKeeper::stop`](crate::RelayKeeper::stop) was called; nothing is done for any relay any more.
    Stopped,
    /// A candidate of the pool ([`Config::with_max_reservations`](crate::Config::with_max_reservations)) that
    /// the pool does not need now: not dialed until it is promoted.
    Standby,
    /// The node is publicly reachable ([`Config::with_pause_while_public`](crate::Config::with_pause_while_public)),
    /// so the keeper released the reservation; it takes it again when the node no longer is.
    Paused,
}
