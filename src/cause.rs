//! Why a relay left its goal state, or why a retry failed: what [`Event::ReconnectScheduled`] carries.
//!
//! [`Event::ReconnectScheduled`]: crate::Event::ReconnectScheduled

use std::{fmt, io};

use libp2p::{
    relay::outbound::hop::{ProtocolViolation, ReserveError},
    swarm::DialError,
};

/// The kind of [`Cause`]; its [`Display`](fmt::Display) is the `cause=<token>` of the event's line, and with the
/// `serde` feature it is serialized as that token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
#[non_exhaustive]
pub enum CauseKind {
    /// The last direct connection to the relay closed (the relay went away, or the link broke loudly).
    ConnectionLost,
    /// The keeper's liveness probe got no answer in time, so it closed the silent connection.
    ProbeTimeout,
    /// A dial to the relay failed.
    DialFailed,
    /// A dial to the relay took longer than [`Config::with_dial_timeout`](crate::Config::with_dial_timeout);
    /// the keeper aborted it.
    DialTimeout,
    /// The reservation's listener closed without an error: the connection that held it is closing (the relay
    /// client may say so before the swarm does), or another listener on the same relay replaced it.
    ReservationLost,
    /// The relay answered the reservation request with `RESERVATION_REFUSED`.
    ReservationRefused,
    /// The relay answered with `RESOURCE_LIMIT_EXCEEDED`: it holds as many reservations as it allows, or this
    /// node or its IP address asked too often. Not a failure: the keeper asks again after
    /// [`Config::with_limit_interval`](crate::Config::with_limit_interval) and never gives up for it.
    ResourceLimitExceeded,
    /// The peer does not offer the relay HOP protocol (yet). A freshly started rust-libp2p relay offers it only
    /// once it knows its external address, which it learns from identify; the keeper reserves the moment the
    /// relay announces HOP.
    HopUnsupported,
    /// The relay refused the reservation because it does not offer HOP yet, which a freshly started
    /// rust-libp2p relay does until identify told it its external address. The keeper reserves the moment
    /// the relay announces HOP (usually within a round trip); the event's delay is only the fallback, for a
    /// relay that never announces it, and the try counts as failed only if that fallback fires first.
    AwaitingHop,
    /// The relay accepted the reservation without any address to be reached at (go-libp2p relays put only
    /// public addresses into reservations), which rust-libp2p's client refuses.
    NoAddressesInReservation,
    /// The reservation exchange broke the protocol, timed out or failed on the stream.
    ProtocolError,
}

impl CauseKind {
    /// The stable token of this kind, as in `cause=<token>` and the metrics' `cause` label.
    pub fn as_str(&self) -> &'static str {
        match self {
            CauseKind::ConnectionLost => "connection_lost",
            CauseKind::ProbeTimeout => "probe_timeout",
            CauseKind::DialFailed => "dial_failed",
            CauseKind::DialTimeout => "dial_timeout",
            CauseKind::ReservationLost => "reservation_lost",
            CauseKind::ReservationRefused => "reservation_refused",
            CauseKind::ResourceLimitExceeded => "resource_limit_exceeded",
            CauseKind::HopUnsupported => "hop_unsupported",
            CauseKind::AwaitingHop => "awaiting_hop",
            CauseKind::NoAddressesInReservation => "no_addresses_in_reservation",
            CauseKind::ProtocolError => "protocol_error",
        }
    }

    /// What the user can do about it, for causes that retrying alone does not cure.
    pub(crate) fn fix(&self) -> Option<&'static str> {
        match self {
            // Counted only once the relay's "not yet" outlasted its fallback, or came twice on a connection:
            // after an ordinary restart a relay offers HOP within milliseconds of its clients' identify.
            CauseKind::HopUnsupported => Some(
                "the relay still does not offer HOP; the likely fix is identify: a rust-libp2p relay offers HOP \
                 only once it knows its external address, which it learns from its clients' identify, so add \
                 libp2p::identify::Behaviour (libp2p's `identify` feature) to your behaviour. Otherwise the \
                 peer is no relay, or its operator can set its status with relay::Behaviour::set_status",
            ),
            CauseKind::NoAddressesInReservation => Some(
                "the relay hands out reservations without addresses, which the rust-libp2p client refuses; \
                 go-libp2p relays include only public addresses: use a relay with a public address, or a \
                 rust-libp2p relay",
            ),
            CauseKind::ResourceLimitExceeded => Some(
                "the relay's limits are reached (reservations per peer or per IP address, or in total); \
                 the keeper asks again after Config::with_limit_interval without counting it as a failure, \
                 but a relay that is always full needs more capacity, or a pool with standbys",
            ),
            _ => None,
        }
    }
}

impl fmt::Display for CauseKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a relay left its goal state or a retry failed: a kind to match on and a one-line message for people.
///
/// It is `Clone`, unlike the errors it is made from ([`DialError`] and [`io::Error`] are not). With the `serde`
/// feature it is `Serialize` and `Deserialize`, for [`KnownRelay`](crate::KnownRelay).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct Cause {
    /// What happened.
    pub kind: CauseKind,
    /// The error as libp2p reported it, on one line.
    pub message: String,
}

impl Cause {
    pub(crate) fn new(kind: CauseKind, message: impl fmt::Display) -> Self {
        let message = message.to_string().replace('\n', " ");
        Self { kind, message }
    }

    /// The last direct connection closed, with the swarm's error if there was one.
    pub(crate) fn connection_lost(error: Option<&dyn std::error::Error>) -> Self {
        match error {
            Some(error) => Self::new(CauseKind::ConnectionLost, chain(error)),
            None => Self::new(CauseKind::ConnectionLost, "connection closed"),
        }
    }

    pub(crate) fn probe_timeout() -> Self {
        Self::new(
            CauseKind::ProbeTimeout,
            "liveness probe timed out; closed the silent connection",
        )
    }

    pub(crate) fn dial_timeout() -> Self {
        Self::new(CauseKind::DialTimeout, "dial timed out; aborted it")
    }

    pub(crate) fn dial_failed(error: &DialError) -> Self {
        Self::new(CauseKind::DialFailed, chain(error))
    }

    pub(crate) fn reservation_lost() -> Self {
        Self::new(
            CauseKind::ReservationLost,
            "circuit listener closed without an error: its connection is closing, or another listener replaced it",
        )
    }

    /// Reads what the relay answered out of the error a circuit listener closed with. The relay client nests
    /// its [`ReserveError`] in a transport error inside an [`io::Error`], whose `source()` skips the error it
    /// wraps, so each `io::Error` is opened with `get_ref` on the way down.
    pub(crate) fn from_listener_error(error: &io::Error) -> Self {
        let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(current) = next {
            if let Some(reserve) = current.downcast_ref::<ReserveError>() {
                return Self::from_reserve_error(reserve);
            }
            next = match current.downcast_ref::<io::Error>() {
                Some(io) => io.get_ref().map(|inner| inner as _),
                None => current.source(),
            };
        }
        Self::new(CauseKind::ProtocolError, chain(error))
    }

    fn from_reserve_error(error: &ReserveError) -> Self {
        let kind = match error {
            ReserveError::Refused => CauseKind::ReservationRefused,
            ReserveError::ResourceLimitExceeded => CauseKind::ResourceLimitExceeded,
            ReserveError::Unsupported => {
                return Self::new(CauseKind::HopUnsupported, "relay does not offer HOP (yet)")
            }
            ReserveError::Protocol(ProtocolViolation::NoAddressesInReservation) => {
                CauseKind::NoAddressesInReservation
            }
            ReserveError::Protocol(_) | ReserveError::Io(_) => CauseKind::ProtocolError,
        };
        Self::new(kind, chain(error))
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

/// An error and its sources on one line, `outer: inner: innermost`, without repeating a message.
fn chain(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = inner.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use libp2p::relay::client::transport::Error as ClientError;

    use super::*;

    /// The error a circuit listener closes with, nested as the swarm hands it over.
    fn listener_error(reserve: ReserveError) -> io::Error {
        io::Error::other(ClientError::Reservation(reserve))
    }

    #[test]
    fn the_relays_answer_is_read_out_of_the_listeners_error() {
        let cases = [
            (ReserveError::Refused, CauseKind::ReservationRefused),
            (
                ReserveError::ResourceLimitExceeded,
                CauseKind::ResourceLimitExceeded,
            ),
            (ReserveError::Unsupported, CauseKind::HopUnsupported),
            (
                ReserveError::Protocol(ProtocolViolation::NoAddressesInReservation),
                CauseKind::NoAddressesInReservation,
            ),
            (
                ReserveError::Io(io::ErrorKind::TimedOut.into()),
                CauseKind::ProtocolError,
            ),
        ];
        for (reserve, kind) in cases {
            let cause = Cause::from_listener_error(&listener_error(reserve));
            assert_eq!(cause.kind, kind, "{cause}");
            assert!(!cause.message.contains('\n'));
        }
    }

    #[test]
    fn a_hop_refusal_says_not_yet_instead_of_failed_to_get_reservation() {
        let cause = Cause::from_listener_error(&listener_error(ReserveError::Unsupported));
        assert_eq!(cause.message, "relay does not offer HOP (yet)");
    }

    #[test]
    fn an_unknown_error_is_a_protocol_error_with_its_text() {
        let cause = Cause::from_listener_error(&io::Error::other("stream reset"));
        assert_eq!(cause.kind, CauseKind::ProtocolError);
        assert!(cause.message.contains("stream reset"));
    }
}
