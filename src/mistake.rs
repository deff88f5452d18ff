//! Failures that no retry cures, and why the keeper gave up on a relay.
//!
//! | dial error | verdict |
//! |---|---|
//! | `WrongPeerId` at an `/ip4`, `/ip6` address | mistake: that address is dropped ([`GiveUpReason::WrongPeerId`]) |
//! | `WrongPeerId` at a `/dns*` address | outage: DNS may point elsewhere for a while, so it backs off |
//! | `Transport` with `MultiaddrNotSupported` | mistake: those addresses are dropped ([`GiveUpReason::UnsupportedAddress`]) |
//! | `Transport` with any other error | outage (refused, unreachable, timed out, handshake failed) |
//! | `LocalPeerId` | mistake: the relay is this node ([`GiveUpReason::LocalPeerId`]) |
//! | `Denied` | outage: a behaviour (connection limits, a block list) refused it, which may pass |
//! | `Aborted` | outage: the keeper's dial timeout, or the application aborted it |
//! | `NoAddresses` | outage; cannot happen for the keeper's own dials, which always carry addresses |
//! | `DialPeerConditionFalse` | not a failure: the relay is connected or being dialed already |
//!
//! A relay left without a usable address gives up at once; [`RelayKeeper::add_relay`] with a fixed address
//! revives it. Network changes and the cool-down do not, since they cannot fix an address.
//!
//! [`RelayKeeper::add_relay`]: crate::RelayKeeper::add_relay

use std::{borrow::Cow, fmt};

use libp2p::{core::transport::TransportError, multiaddr::Protocol, swarm::DialError, Multiaddr, PeerId};

/// Why the keeper gave up on a relay, as carried by [`Event::GaveUp`](crate::Event::GaveUp) and
/// [`RelayStatus::GaveUp`](crate::RelayStatus::GaveUp).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GiveUpReason {
    /// `max_attempts` retries of one outage failed ([`Config::with_max_attempts`](crate::Config::with_max_attempts)).
    MaxAttempts,
    /// Every address given for the relay answered under another peer id: the `/p2p/<id>` part is wrong.
    WrongPeerId {
        /// The peer id that answered at the last of them: the one the address leads to.
        found: PeerId,
    },
    /// The swarm has no transport for any address given for the relay (e.g. a QUIC or `/dns4` address on a
    /// swarm built with TCP only).
    UnsupportedAddress,
    /// The relay's peer id is this node's own.
    LocalPeerId,
    /// The swarm has no relay client transport, so no reservation can be made.
    NoRelayTransport,
}

impl GiveUpReason {
    /// The stable token of this reason, as in the event's `reason=<token>`.
    pub fn as_str(&self) -> &'static str {
        match self {
            GiveUpReason::MaxAttempts => "max_attempts",
            GiveUpReason::WrongPeerId { .. } => "wrong_peer_id",
            GiveUpReason::UnsupportedAddress => "unsupported_address",
            GiveUpReason::LocalPeerId => "local_peer_id",
            GiveUpReason::NoRelayTransport => "no_relay_transport",
        }
    }

    /// Whether a network change or the cool-down may cure it; mistakes wait for a fixed address.
    pub(crate) fn is_retryable(&self) -> bool {
        matches!(self, GiveUpReason::MaxAttempts)
    }

    /// What the user has to do, for the one `warn!` the keeper logs.
    pub(crate) fn fix(&self) -> Cow<'static, str> {
        let fix = match self {
            GiveUpReason::MaxAttempts => {
                "call retry_now (or add_relay) to try again now; with a cool-down (Config::with_cooldown, on by \
                 default) the keeper starts a fresh round by itself"
            }
            GiveUpReason::WrongPeerId { found } => {
                return format!(
                    "the peer at the relay's address is {found}: fix the /p2p/<id> part (to {found}, if that is \
                     the relay you meant) and call add_relay"
                )
                .into()
            }
            GiveUpReason::UnsupportedAddress => {
                "the swarm has no transport for the relay's address: add it to the SwarmBuilder (with_quic, with \
                 libp2p's `quic` feature; with_dns, with its `dns` feature; ...) or pass an address it can dial, \
                 then call add_relay"
            }
            GiveUpReason::LocalPeerId => "the relay's peer id is this node's own: pass the relay's address",
            GiveUpReason::NoRelayTransport => {
                "build the swarm with SwarmBuilder::with_relay_client and put the relay::client::Behaviour it \
                 hands out into your behaviour, or turn reservations off with Config::with_reservations(false)"
            }
        };
        fix.into()
    }
}

impl fmt::Display for GiveUpReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A dial error that no retry cures: the addresses that must not be dialed again, or `None` for all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mistake {
    pub(crate) reason: GiveUpReason,
    pub(crate) addrs: Option<Vec<Multiaddr>>,
}

impl Mistake {
    /// The mistake in a failed dial, if it was one (see the table in this module's docs).
    pub(crate) fn of(error: &DialError) -> Option<Self> {
        match error {
            DialError::LocalPeerId { .. } => Some(Self {
                reason: GiveUpReason::LocalPeerId,
                addrs: None,
            }),
            DialError::WrongPeerId { address, obtained } if !is_dns(address) => Some(Self {
                reason: GiveUpReason::WrongPeerId { found: *obtained },
                addrs: Some(vec![address.clone()]),
            }),
            DialError::Transport(errors) => {
                let unsupported: Vec<Multiaddr> = errors
                    .iter()
                    .filter(|(_, e)| matches!(e, TransportError::MultiaddrNotSupported(_)))
                    .map(|(addr, _)| addr.clone())
                    .collect();
                (!unsupported.is_empty()).then_some(Self {
                    reason: GiveUpReason::UnsupportedAddress,
                    addrs: Some(unsupported),
                })
            }
            _ => None,
        }
    }

    /// Whether `addr`, one of the relay's addresses (ending in `/p2p/<id>`), is one of the mistaken ones,
    /// which the swarm may report with or without the `/p2p` part.
    pub(crate) fn covers(&self, addr: &Multiaddr) -> bool {
        match &self.addrs {
            None => true,
            Some(addrs) => addrs
                .iter()
                .any(|bad| transport_part(bad) == transport_part(addr)),
        }
    }
}

fn transport_part(addr: &Multiaddr) -> Multiaddr {
    addr.iter()
        .take_while(|p| !matches!(p, Protocol::P2p(_)))
        .collect()
}

fn is_dns(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| {
        matches!(
            p,
            Protocol::Dns(_) | Protocol::Dns4(_) | Protocol::Dns6(_) | Protocol::Dnsaddr(_)
        )
    })
}

#[cfg(test)]
mod tests {
    use std::io;

    use libp2p::{PeerId, TransportError};

    use super::*;

    fn addr(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    #[test]
    fn each_dial_error_is_classified_as_the_table_says() {
        let ip = addr("/ip4/198.51.100.7/tcp/4001");
        let dns = addr("/dns4/relay.example/tcp/4001");
        let found = PeerId::random();
        let wrong = |address: &Multiaddr| DialError::WrongPeerId {
            obtained: found,
            address: address.clone(),
        };
        assert_eq!(
            Mistake::of(&wrong(&ip)).map(|m| m.reason),
            Some(GiveUpReason::WrongPeerId { found })
        );
        assert_eq!(
            Mistake::of(&wrong(&dns)),
            None,
            "DNS may point elsewhere for a while"
        );
        let unsupported = DialError::Transport(vec![
            (ip.clone(), TransportError::MultiaddrNotSupported(ip.clone())),
            (dns.clone(), TransportError::Other(io::Error::other("refused"))),
        ]);
        assert_eq!(
            Mistake::of(&unsupported),
            Some(Mistake {
                reason: GiveUpReason::UnsupportedAddress,
                addrs: Some(vec![ip.clone()]),
            })
        );
        let refused = DialError::Transport(vec![(
            ip.clone(),
            TransportError::Other(io::Error::other("refused")),
        )]);
        assert_eq!(Mistake::of(&refused), None);
        let local = DialError::LocalPeerId { address: ip.clone() };
        assert_eq!(
            Mistake::of(&local).map(|m| m.reason),
            Some(GiveUpReason::LocalPeerId)
        );
        for transient in [DialError::Aborted, DialError::NoAddresses] {
            assert_eq!(Mistake::of(&transient), None);
        }
    }

    #[test]
    fn a_mistake_covers_the_address_with_or_without_its_peer_id() {
        let mistake = Mistake {
            reason: GiveUpReason::WrongPeerId {
                found: PeerId::random(),
            },
            addrs: Some(vec![addr("/ip4/198.51.100.7/tcp/4001")]),
        };
        let id = PeerId::random();
        assert!(mistake.covers(&addr(&format!("/ip4/198.51.100.7/tcp/4001/p2p/{id}"))));
        assert!(!mistake.covers(&addr(&format!("/ip4/198.51.100.7/tcp/4002/p2p/{id}"))));
    }
}
