//! Keeps a libp2p node reachable through its circuit relays.
//!
//! A node behind NAT is reachable only through circuit relay v2 reservations, and a reservation dies with
//! the connection to its relay: a relay restart, a network blip or a laptop going to sleep, and the node is
//! gone. rust-libp2p neither re-dials the relay nor re-reserves, and notices a relay link that died silently
//! only minutes later. [`RelayKeeper`] probes its relay links, re-dials and re-reserves with exponential
//! backoff and full jitter until the reservation is back, and says whether the node is reachable.
//!
//! # Usage
//!
//! Put the keeper beside [`libp2p::relay::client::Behaviour`] and `libp2p::identify::Behaviour` in a derived
//! behaviour and name the relays. identify is needed: a rust-libp2p relay offers reservations only once it
//! knows its external address, which it learns from its clients' identify.
//!
//! ```
//! use libp2p::{identify, noise, relay, swarm::NetworkBehaviour, tcp, yamux, Multiaddr};
//! use libp2p_relay_keeper::{Config, RelayKeeper};
//!
//! #[derive(NetworkBehaviour)]
//! struct Behaviour {
//!     relay: relay::client::Behaviour,
//!     identify: identify::Behaviour,
//!     keeper: RelayKeeper,
//! }
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut swarm = libp2p::SwarmBuilder::with_new_identity()
//!     .with_tokio()
//!     .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)?
//!     .with_relay_client(noise::Config::new, yamux::Config::default)?
//!     .with_behaviour(|key, relay| Behaviour {
//!         relay,
//!         identify: identify::Behaviour::new(identify::Config::new("/my-app/1.0.0".into(), key.public())),
//!         keeper: RelayKeeper::new(Config::default()),
//!     })?
//!     .build();
//!
//! let relay: Multiaddr =
//!     "/ip4/198.51.100.7/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN".parse()?;
//! let relay_id = swarm.behaviour_mut().keeper.add_relay(relay)?;
//! assert!(swarm.behaviour().keeper.status(&relay_id).is_some());
//! // Drive the swarm as usual; `BehaviourEvent::Keeper(libp2p_relay_keeper::Event)` says what happened,
//! // and `keeper.circuit_addrs()` where the node is reachable.
//! # Ok(())
//! # }
//! ```
//!
//! Do not call `swarm.listen_on(<relay>/p2p-circuit)` yourself for a kept relay: the keeper requests the
//! reservation. If you do, the keeper adopts your listener instead of fighting it.
//!
//! # A pool of relays
//!
//! Given more relays than it needs, the keeper can hold reservations on a few and keep the rest as standbys
//! ([`Config::with_max_reservations`]): when a held relay is lost, a standby takes its slot at once, without a
//! backoff wait, and working reservations are never moved. Use one when the node knows more relays than it needs
//! to be reachable through, e.g. two held out of five:
//!
//! ```
//! use libp2p::Multiaddr;
//! use libp2p_relay_keeper::{Config, RelayKeeper, RelayStatus};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut keeper = RelayKeeper::new(Config::default().with_max_reservations(Some(2)));
//! for relay in [
//!     "/ip4/198.51.100.1/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN",
//!     "/ip4/198.51.100.2/tcp/4001/p2p/12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDEp",
//!     "/ip4/198.51.100.3/tcp/4001/p2p/12D3KooWLRPJAA5o6Z6mX6ZzNHbUMxMLmJbnimGaLtyMVMKzVtme",
//!     "/ip4/198.51.100.4/tcp/4001/p2p/12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo",
//!     "/ip4/198.51.100.5/tcp/4001/p2p/12D3KooWH3uVF6wv47WnArKHk5p6cvgCJEb74UTmxztmQDc298L3",
//! ] {
//!     keeper.add_relay(relay.parse::<Multiaddr>()?)?;
//! }
//! let standbys = keeper.relays().filter(|(_, s)| *s == RelayStatus::Standby).count();
//! assert_eq!(standbys, 3);
//! # Ok(())
//! # }
//! ```
//!
//! # Known relays across restarts
//!
//! [`RelayKeeper::known_relays`] is a snapshot of the kept relays (their addresses, when each was last
//! reserved and its last failure, on the wall clock) for the application to store when it exits, and
//! [`RelayKeeper::add_known_relays`] starts the next run from it: a pool activates the relays that served last
//! first, bad entries are skipped each with an error, and entries unseen for 30 days are dropped. With the
//! `serde` feature the snapshot is `Serialize` and `Deserialize` (docs/known-relays.md stores it as JSON).
//!
//! ```
//! use libp2p::Multiaddr;
//! use libp2p_relay_keeper::{Config, RelayKeeper};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::default().with_max_reservations(Some(1));
//! let mut keeper = RelayKeeper::new(config.clone());
//! let relay: Multiaddr =
//!     "/ip4/198.51.100.1/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN".parse()?;
//! keeper.add_relay(relay)?;
//! let snapshot = keeper.known_relays(); // store it when the node exits
//!
//! let mut restarted = RelayKeeper::new(config); // the next run
//! let errors = restarted.add_known_relays(snapshot);
//! assert!(errors.is_empty());
//! assert_eq!(restarted.relays().count(), 1);
//! # Ok(())
//! # }
//! ```
//!
//! # How it works
//!
//! Each kept relay has a goal: a live reservation ([`RelayStatus::Reserved`]), or with
//! [`Config::with_reservations(false)`](Config::with_reservations) just a direct connection
//! ([`RelayStatus::Connected`]). An *outage* starts when the relay leaves its goal and ends when it is back.
//!
//! A relay is two state machines. Its *link* (connections, reservation, and the memory of its current trouble)
//! works toward the goal:
//!
//! ```text
//!                                   ┌──▶ Identifying ──HOP, or no report──┐ (a node running identify)
//!   Halted ──start──▶ Dialing ──connection up──▶ Reserving ──reservation live──▶ Reserved (or Connected)
//!                      │  ▲                        │   │ refused, or reported: no HOP │
//!          dial failed │  │ wait elapsed           │   └──▶ AwaitingHop ──HOP──▶ Reserving
//!                      ▼  │                        ▼ refused, or connection lost      │ lost
//!                      Waiting { attempt } ◀───────┴──────────────────────────────────┘
//!                      │  ▲   ╲ host refused: Rechecking ──connected──▶ Reserving
//!  max_attempts failed │  │    ╲            └──refused again──▶ back to Waiting (or GaveUp)
//!                      ▼  │ cool-down over / retry_now / add_relay / network change / HOP on a live connection
//!                      GaveUp
//! ```
//!
//! Its *membership* says whether the link runs: always without a pool, and with one
//! ([`Config::with_max_reservations`]) while the relay holds one of its slots:
//!
//! ```text
//!   Standby ──promote──▶ Promoted ──spread over──▶ Active ──demote (waiting out a backoff)──▶ Standby
//!   any ──node publicly reachable──▶ Paused ──no longer──▶ Active, or Standby in a pool
//! ```
//!
//! [`RelayStatus`] is the link's state while the relay is active (`Dialing` and `Rechecking` are
//! `Connecting`, `Identifying` is `Connected`, `AwaitingHop` is `Waiting` for the fallback's retry), and the
//! membership's otherwise.
//!
//! - Retries of one outage, re-dials and re-reservations alike, are numbered 1, 2, ... and `max_attempts`
//!   counts them: the keeper gives up after that many failed retries of one outage, and reaching the goal
//!   resets the count. The waits follow a backoff level of their own: the wait before a retry is uniform in
//!   `[0, Config::backoff_bound(level))`, the level rises by one with each wait, and a new outage goes on from
//!   the level the last one ended at until the goal has held for [`Config::with_forgive_after`]. Forgiveness
//!   shapes the waits, never the give-up. The dial made by `add_relay` is not a retry, nor is a re-check, and a
//!   pool's move to standby ends the outage's count: a promotion starts a fresh one.
//! - A relay that restarts on a host that is up is used within seconds of listening again, whatever the
//!   backoff: refused dials (they cost the relay nothing) start re-checks of its TCP addresses between the
//!   counted retries, through a give-up too, until one connects or a dial fails some other way. A relay that
//!   loses its reservation again soon after reaching it is presumed to be restarting as well
//!   ([`MAX_PRESUMED_RESTARTS`] times in a row), so a crash loop is reserved soon after it stays up.
//! - A connection loss is the last direct connection to the relay closing; relayed connections do not count.
//!   The keeper probes each direct connection to a kept relay with the ping protocol's echo
//!   ([`Config::with_probe`]: a ping on a stream kept open once a link was not heard from for 3 s, late after
//!   `max(1.3 s, srtt + 4 x rttvar)`) and closes one only when a ping stayed unanswered for twice that: a
//!   relay whose host vanished, whose route became a black hole, or that restarted under QUIC (whose new
//!   process silently drops the old connection's packets) is noticed within 5.6 s on a fast link instead of
//!   minutes, and a slow link that still answers is never cut.
//! - The keeper dials only the addresses it was given for the relay, limited in time by what it knows of the
//!   relay (dials that ran out of time, the round trip measured; [`Config::with_dial_timeout`]), with
//!   [`PeerCondition::DisconnectedAndNotDialing`](libp2p::swarm::dial_opts::PeerCondition), so it never races
//!   a dial of the application's; if the relay is connected already, the relay client reserves on that
//!   connection.
//! - Each scheduled retry says why ([`Cause`]). A mistake that no retry cures (a wrong peer id, an address the
//!   swarm has no transport for) stops the dialing of that address at once and gives up with a
//!   [`GiveUpReason`] when no address is left; one `warn!` names the fix.
//! - Once connected it raises [`ToSwarm::ListenOn`](libp2p::swarm::ToSwarm) for `<relay addr>/p2p-circuit`:
//!   re-dialing alone does not bring a reservation back in rust-libp2p.
//! - A freshly restarted relay refuses reservations until it has a confirmed external address. On a node that
//!   runs identify the keeper asks only once identify reports that the relay offers the HOP protocol, so the
//!   application's event loop sees no refused listener (the node's very first connection aside: it is how the
//!   keeper learns that the node runs identify); with no report within 2 s it asks anyway. A relay
//!   reported without HOP, or one that refused, is a "not yet" ([`CauseKind::AwaitingHop`]), once per
//!   connection: the keeper does not count it and reserves the moment the relay starts offering HOP; the
//!   announced wait is only the fallback for a relay that never does, and the try counts as failed only if it
//!   fires.
//! - Its connection handler keeps direct connections to kept relays alive, because the relay client lets a
//!   connection without a reservation idle out while a retry is waiting.
//! - A network change (the node gains or loses a network address, the machine woke from sleep, or
//!   [`RelayKeeper::network_changed`]) retries every waiting or given-up relay at once with its backoff reset,
//!   once per outage, so a laptop waking from sleep is reachable again without waiting out a long backoff, while
//!   a relay that keeps failing still backs off. A relay whose link is up is dialed again beside the old link,
//!   which is probed at once, and its reservation moves to the new connection in about one round trip,
//!   uncounted (at most one such dial per relay per [`MOVE_INTERVAL`]).
//! - A relay that gave up after too many retries starts a fresh round after the cool-down
//!   ([`Config::with_cooldown`], 10 minutes and a jitter below the cap by default), so an unattended node is
//!   never unreachable for good; [`Event::GaveUp`] says when (`retry_in`).
//! - A relay that keeps falling over right after coming back backs off longer each time in its counted retries
//!   (the level above), and in a pool loses its slot to a standby, but is never given up for it: each time it
//!   is back, its count starts over.
//! - [`RelayKeeper::circuit_addrs`] lists the circuit addresses live right now; [`Event::Reachable`] and
//!   [`Event::Unreachable`] say when the first comes up and the last goes away.
//! - With the `metrics` feature, `RelayKeeper::with_metrics` registers Prometheus metrics.
//! - One timer serves all relays: [`NetworkBehaviour::poll`](libp2p::swarm::NetworkBehaviour::poll) pops
//!   queued actions, then fires due retries in deadline order; it never scans every relay. All decisions are
//!   made by a sans-IO engine on an explicit clock; the behaviour only carries its inputs and outputs.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

mod address;
mod backoff;
mod behaviour;
mod cause;
mod config;
mod engine;
mod error;
mod event;
mod handler;
mod history;
mod known;
mod link;
mod link_probe;
mod listen_ips;
mod membership;
mod metrics;
mod mistake;
mod pool;
mod probe_clock;
mod public_addrs;
mod refusal;
mod relay;
mod rtt;
mod sleep;
mod status;
#[cfg(test)]
mod transition_table;

pub use behaviour::RelayKeeper;
pub use cause::{Cause, CauseKind};
pub use config::{Config, MAX_DISCOVERED, MAX_PRESUMED_RESTARTS, MOVE_INTERVAL, SLEEP_THRESHOLD};
pub use error::AddRelayError;
pub use event::Event;
pub use known::{KnownRelay, KnownRelayError, RelayFailure};
pub use link_probe::{LinkProbe, SilentLinkClosed};
pub use mistake::GiveUpReason;
pub use status::RelayStatus;
