//! Known relays across a restart of the node: the snapshot [`RelayKeeper::known_relays`] hands out, and the
//! checks [`RelayKeeper::add_known_relays`] makes before the engine keeps its entries. The engine works on its
//! monotonic clock ([`crate::history`]); a snapshot is on the wall clock, which is all that means anything to
//! another process. Both are read once, at the same moment: a wall time is that moment's wall time minus the
//! age the engine knows, and an age is the wall time's distance from that moment. The wall clock may step
//! backwards (NTP, a machine without a clock battery): nothing here panics for it.
//!
//! [`RelayKeeper::known_relays`]: crate::RelayKeeper::known_relays
//! [`RelayKeeper::add_known_relays`]: crate::RelayKeeper::add_known_relays

use std::{
    cmp::Reverse,
    collections::HashSet,
    fmt,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use libp2p::{multiaddr::Protocol, Multiaddr, PeerId};

use crate::{
    address::relay_peer_id,
    history::{History, Moment},
    AddRelayError, Cause, Config,
};

/// A relay the keeper knew, as [`RelayKeeper::known_relays`](crate::RelayKeeper::known_relays) reports it
/// for the application to store, and [`RelayKeeper::add_known_relays`](crate::RelayKeeper::add_known_relays)
/// takes it back after a restart. With the `serde` feature it is `Serialize` and `Deserialize`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct KnownRelay {
    /// The relay's peer id.
    pub peer_id: PeerId,
    /// The addresses the keeper dials the relay at, each ending in `/p2p/<peer_id>` (an address without it is
    /// taken as the relay's).
    pub addrs: Vec<Multiaddr>,
    /// Since when the relay is known: when it was first kept, in this run or an earlier one.
    pub known_since: SystemTime,
    /// The last time the relay was in its goal: reserved (or connected, with reservations off). The time the
    /// snapshot was taken for a relay in its goal then; `None` for one that never was.
    #[cfg_attr(feature = "serde", serde(default))]
    pub last_reserved: Option<SystemTime>,
    /// The relay's last failure: the cause of its last scheduled retry.
    #[cfg_attr(feature = "serde", serde(default))]
    pub last_failure: Option<RelayFailure>,
}

impl KnownRelay {
    /// A relay at `addrs`, known since `known_since`, that has neither served nor failed yet; set the other
    /// fields as needed.
    pub fn new(peer_id: PeerId, addrs: Vec<Multiaddr>, known_since: SystemTime) -> Self {
        Self {
            peer_id,
            addrs,
            known_since,
            last_reserved: None,
            last_failure: None,
        }
    }

    /// When the relay was last seen: last reserved, or first known if it never served.
    fn seen(&self) -> SystemTime {
        self.last_reserved.unwrap_or(self.known_since)
    }
}

/// A relay's last failure, in a [`KnownRelay`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct RelayFailure {
    /// What went wrong.
    pub cause: Cause,
    /// When.
    pub at: SystemTime,
}

/// Why [`RelayKeeper::add_known_relays`](crate::RelayKeeper::add_known_relays) skipped an entry; one per
/// skipped entry. The other entries are kept all the same.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KnownRelayError {
    /// The entry has no address to dial the relay at.
    NoAddress {
        /// The entry's relay.
        relay: PeerId,
    },
    /// An address of the entry is not a relay's own dialable address.
    BadAddress {
        /// The entry's relay.
        relay: PeerId,
        /// The address.
        addr: Multiaddr,
        /// What is wrong with it.
        error: AddRelayError,
    },
    /// An address of the entry ends in `/p2p/<peer id>` of another peer than the entry's.
    PeerIdMismatch {
        /// The entry's relay.
        relay: PeerId,
        /// The address.
        addr: Multiaddr,
    },
    /// A further entry for a relay that an earlier entry of the same snapshot named; the earlier one is kept.
    Duplicate {
        /// The relay.
        relay: PeerId,
    },
    /// [`RelayKeeper::stop`](crate::RelayKeeper::stop) was called; a stopped keeper takes no relays.
    Stopped {
        /// The entry's relay.
        relay: PeerId,
    },
}

impl fmt::Display for KnownRelayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KnownRelayError::NoAddress { relay } => {
                write!(f, "known relay {relay} skipped: it has no address to dial")
            }
            KnownRelayError::BadAddress { relay, addr, error } => {
                write!(f, "known relay {relay} skipped: {addr}: {error}")
            }
            KnownRelayError::PeerIdMismatch { relay, addr } => write!(
                f,
                "known relay {relay} skipped: its address {addr} names another peer; each address must end in \
                 /p2p/{relay} or have no /p2p part"
            ),
            KnownRelayError::Duplicate { relay } => write!(
                f,
                "known relay {relay} skipped: an earlier entry names the same relay, and that one is kept"
            ),
            KnownRelayError::Stopped { relay } => write!(
                f,
                "known relay {relay} skipped: the relay keeper is stopped; create a new RelayKeeper"
            ),
        }
    }
}

impl std::error::Error for KnownRelayError {}

/// A relay of the snapshot as the engine knows it: on its clock.
#[derive(Debug, Clone)]
pub(crate) struct Known {
    pub(crate) peer: PeerId,
    pub(crate) addrs: Vec<Multiaddr>,
    pub(crate) history: History,
}

/// The clocks as read once, for one snapshot or one load.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clocks {
    pub(crate) now: Instant,
    pub(crate) wall: SystemTime,
}

impl Clocks {
    pub(crate) fn read() -> Self {
        Self {
            now: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    /// The wall time of `moment`; never before the Unix epoch, which serde cannot write.
    fn wall_time(self, moment: Moment) -> SystemTime {
        self.wall
            .checked_sub(moment.age(self.now))
            .filter(|time| *time >= UNIX_EPOCH)
            .unwrap_or(UNIX_EPOCH)
    }

    /// How long before now `time` was: zero for a time after now (the wall clock stepped back since).
    fn age(self, time: SystemTime) -> Duration {
        self.wall.duration_since(time).unwrap_or(Duration::ZERO)
    }

    fn moment(self, time: SystemTime) -> Moment {
        Moment::ago(self.now, self.age(time))
    }
}

/// The snapshot of `relays`: at most [`Config::with_max_known_relays`] of them, the most recently reserved
/// first.
pub(crate) fn snapshot(relays: Vec<Known>, config: &Config, clocks: Clocks) -> Vec<KnownRelay> {
    let mut relays = relays;
    relays.sort_by_key(|known| rank(&known.history, known.peer));
    relays.truncate(config.max_known_relays());
    relays
        .into_iter()
        .map(|known| KnownRelay {
            peer_id: known.peer,
            addrs: known.addrs,
            known_since: clocks.wall_time(known.history.known_since),
            last_reserved: known.history.served.map(|served| clocks.wall_time(served)),
            last_failure: known.history.failure.map(|failure| {
                let (cause, at) = *failure;
                RelayFailure {
                    cause,
                    at: clocks.wall_time(at),
                }
            }),
        })
        .collect()
}

/// How useful a relay is to start from, the most useful first: the most recently reserved, then (never
/// reserved) the one known longest, then by peer id so that the order does not depend on a hash table's.
fn rank(history: &History, peer: PeerId) -> (Reverse<Option<Moment>>, Moment, Vec<u8>) {
    (Reverse(history.served), history.known_since, peer.to_bytes())
}

/// The entries of a snapshot the keeper can start from, the most useful first, and an error for each bad
/// one. Entries unseen for longer than [`Config::with_known_relay_max_age`] are dropped, and so are the least
/// useful beyond [`Config::with_max_known_relays`]; each drop is logged.
pub(crate) fn check(
    relays: impl IntoIterator<Item = KnownRelay>,
    config: &Config,
    clocks: Clocks,
) -> (Vec<Known>, Vec<KnownRelayError>) {
    let mut errors = Vec::new();
    let mut named = HashSet::new();
    let mut good = Vec::new();
    for relay in relays {
        match check_one(&relay, &mut named) {
            Ok(addrs) => good.push((relay, addrs)),
            Err(error) => errors.push(error),
        }
    }
    let max_age = config.known_relay_max_age();
    good.retain(|(relay, _)| {
        let unseen = clocks.age(relay.seen());
        let fresh = unseen <= max_age;
        if !fresh {
            tracing::info!(relay = %relay.peer_id, unseen_days = unseen.as_secs() / 86_400, "known relay dropped: unseen for longer than the known relays' maximum age");
        }
        fresh
    });
    let mut known: Vec<Known> = good
        .into_iter()
        .map(|(relay, addrs)| known(relay, addrs, clocks))
        .collect();
    known.sort_by_key(|known| rank(&known.history, known.peer));
    for dropped in known.drain(config.max_known_relays().min(known.len())..) {
        tracing::info!(relay = %dropped.peer, "known relay dropped: more known relays than the keeper keeps");
    }
    for error in &errors {
        tracing::warn!("{error}");
    }
    (known, errors)
}

/// The dialable addresses of `relay`, unless something is wrong with it. Notes its peer id in `named`.
fn check_one(relay: &KnownRelay, named: &mut HashSet<PeerId>) -> Result<Vec<Multiaddr>, KnownRelayError> {
    let peer = relay.peer_id;
    if relay.addrs.is_empty() {
        return Err(KnownRelayError::NoAddress { relay: peer });
    }
    let mut addrs: Vec<Multiaddr> = Vec::with_capacity(relay.addrs.len());
    for addr in &relay.addrs {
        let addr = relay_address(peer, addr)?;
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    if !named.insert(peer) {
        return Err(KnownRelayError::Duplicate { relay: peer });
    }
    Ok(addrs)
}

/// `addr` as the relay `peer`'s own dialable address, ending in `/p2p/<peer>`.
fn relay_address(peer: PeerId, addr: &Multiaddr) -> Result<Multiaddr, KnownRelayError> {
    let has_peer_id = addr.iter().any(|p| matches!(p, Protocol::P2p(_)));
    let addr = match addr.iter().last() {
        Some(Protocol::P2p(id)) if id != peer => {
            return Err(KnownRelayError::PeerIdMismatch {
                relay: peer,
                addr: addr.clone(),
            })
        }
        // Misplaced peer ids and circuit addresses are named by `relay_peer_id` below.
        _ if has_peer_id => addr.clone(),
        _ => addr.clone().with(Protocol::P2p(peer)),
    };
    match relay_peer_id(&addr) {
        Ok(_) => Ok(addr),
        Err(error) => Err(KnownRelayError::BadAddress {
            relay: peer,
            addr,
            error,
        }),
    }
}

fn known(relay: KnownRelay, addrs: Vec<Multiaddr>, clocks: Clocks) -> Known {
    Known {
        peer: relay.peer_id,
        addrs,
        history: History {
            known_since: clocks.moment(relay.known_since),
            served: relay.last_reserved.map(|time| clocks.moment(time)),
            failure: relay
                .last_failure
                .map(|failure| Box::new((failure.cause, clocks.moment(failure.at)))),
        },
    }
}

#[cfg(test)]
mod tests;
