use std::{fmt, time::Duration};

use libp2p::{Multiaddr, PeerId};

/// What happened to a kept relay. Every event is also logged with `tracing`.
///
/// Its [`Display`](fmt::Display) form is one stable line of `key=value` pairs after the event's name, meant
/// for logs that scripts read, e.g. `reconnect_scheduled relay=12D3KooW... attempt=2 delay_ms=4312`.
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

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::ReconnectScheduled {
                relay,
                attempt,
                delay,
            } => write!(
                f,
                "reconnect_scheduled relay={relay} attempt={attempt} delay_ms={}",
                delay.as_millis()
            ),
            Event::Reconnected { relay, attempts } => {
                write!(f, "reconnected relay={relay} attempts={attempts}")
            }
            Event::Reserved { relay, addr } => write!(f, "reserved relay={relay} addr={addr}"),
            Event::GaveUp { relay, attempts } => write!(f, "gave_up relay={relay} attempts={attempts}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_one_stable_line_per_event() {
        let relay: PeerId = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
            .parse()
            .unwrap();
        let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/1/p2p/{relay}/p2p-circuit")
            .parse()
            .unwrap();
        let lines = [
            Event::ReconnectScheduled {
                relay,
                attempt: 2,
                delay: Duration::from_micros(4_312_900),
            }
            .to_string(),
            Event::Reconnected { relay, attempts: 3 }.to_string(),
            Event::Reserved {
                relay,
                addr: addr.clone(),
            }
            .to_string(),
            Event::GaveUp { relay, attempts: 10 }.to_string(),
        ];
        assert_eq!(
            lines,
            [
                format!("reconnect_scheduled relay={relay} attempt=2 delay_ms=4312"),
                format!("reconnected relay={relay} attempts=3"),
                format!("reserved relay={relay} addr={addr}"),
                format!("gave_up relay={relay} attempts=10"),
            ]
        );
    }
}
