//! Keeps a libp2p node reachable through its circuit relays.
//!
//! A node behind NAT is reachable only through circuit relay v2 reservations, and a reservation dies with
//! the connection to its relay: a relay restart, a network blip or a laptop going to sleep, and the node is
//! gone. rust-libp2p neither re-dials the relay nor re-reserves. [`RelayKeeper`] does both, with exponential
//! backoff and full jitter, until the reservation is back.
//!
//! # Usage
//!
//! Put the keeper beside [`libp2p::relay::client::Behaviour`] in a derived behaviour and name the relays:
//!
//! ```
//! use libp2p::{noise, relay, swarm::NetworkBehaviour, tcp, yamux, Multiaddr};
//! use libp2p_relay_keeper::{Config, RelayKeeper};
//!
//! #[derive(NetworkBehaviour)]
//! struct Behaviour {
//!     relay: relay::client::Behaviour,
//!     keeper: RelayKeeper,
//! }
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut swarm = libp2p::SwarmBuilder::with_new_identity()
//!     .with_tokio()
//!     .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)?
//!     .with_relay_client(noise::Config::new, yamux::Config::default)?
//!     .with_behaviour(|_key, relay| Behaviour {
//!         relay,
//!         keeper: RelayKeeper::new(Config::default()),
//!     })?
//!     .build();
//!
//! let relay: Multiaddr =
//!     "/ip4/198.51.100.7/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN".parse()?;
//! let relay_id = swarm.behaviour_mut().keeper.add_relay(relay)?;
//! assert!(swarm.behaviour().keeper.status(&relay_id).is_some());
//! // Drive the swarm as usual; `BehaviourEvent::Keeper(libp2p_relay_keeper::Event)` says what happened.
//! # Ok(())
//! # }
//! ```
//!
//! Do not call `swarm.listen_on(<relay>/p2p-circuit)` yourself for a kept relay: the keeper requests the
//! reservation. If you do, the keeper adopts your listener instead of fighting it.
//!
//! # How it works
//!
//! Each kept relay has a goal: a live reservation ([`RelayStatus::Reserved`]), or with
//! [`Config::with_reservations(false)`](Config::with_reservations) just a direct connection
//! ([`RelayStatus::Connected`]). An *outage* starts when the relay leaves its goal and ends when it is back.
//!
//! ```text
//!            add_relay
//!                │  (connected already: straight to Connected)
//!                ▼
//!           Connecting ──connection up──▶ Connected ──reservation live──▶ Reserved
//!               ▲  │                         │   ▲                          │
//!   wait elapsed│  │dial failed   refused or │   │ wait elapsed             │ connection or
//!  (not conn.)  │  ▼              conn. lost ▼   │ or relay offers HOP      │ reservation lost
//!               └─ Waiting { attempt } ◀─────────┴──────────────────────────┘
//!                      │
//!                      │ max_attempts retries failed
//!                      ▼
//!               GaveUp { attempts } ──retry_now / add_relay / network change / cool-down──▶ Connecting
//! ```
//!
//! - Retries of one outage, re-dials and re-reservations alike, are numbered 1, 2, ...; the wait before retry
//!   `n` is uniform in `[0, Config::backoff_bound(n))`. The dial made by `add_relay` is not a retry.
//! - A connection loss is the last direct connection to the relay closing; relayed connections do not count.
//!   The keeper dials with [`PeerCondition::DisconnectedAndNotDialing`](libp2p::swarm::dial_opts::PeerCondition),
//!   so it never races a dial of the application's.
//! - Once connected it raises [`ToSwarm::ListenOn`](libp2p::swarm::ToSwarm) for `<relay addr>/p2p-circuit`:
//!   re-dialing alone does not bring a reservation back in rust-libp2p.
//! - A freshly restarted relay refuses reservations until it has a confirmed external address. With identify
//!   on both sides the keeper sees the relay start offering the HOP protocol and reserves at once instead of
//!   waiting out the backoff.
//! - Its connection handler keeps direct connections to kept relays alive, because the relay client lets a
//!   connection without a reservation idle out while a retry is waiting.
//! - A new listen address of the node (or [`RelayKeeper::network_changed`]) retries every waiting or given-up
//!   relay at once with its backoff reset, once per outage, so a laptop waking from sleep is reachable again
//!   without waiting out a long backoff, while a relay that keeps failing still backs off.
//! - With [`Config::with_cooldown`] a relay that gave up is tried again after the cool-down.
//! - With the `metrics` feature, [`RelayKeeper::with_metrics`] registers Prometheus metrics.
//! - One timer serves all relays: [`NetworkBehaviour::poll`](libp2p::swarm::NetworkBehaviour::poll) pops
//!   queued actions, then fires due retries in deadline order; it never scans every relay.
//!
//! # Half-open links
//!
//! libp2p's ping reports failures but never closes a connection, and the keeper's handler keeps relay
//! connections alive, so a black-holed link can look up for a long time. Close the connection on a ping
//! failure and the keeper takes it from there:
//!
//! ```
//! use libp2p::{ping, swarm::NetworkBehaviour, Swarm};
//!
//! /// Call this with every `ping::Event` your swarm reports.
//! fn on_ping<B: NetworkBehaviour>(swarm: &mut Swarm<B>, event: ping::Event) {
//!     // `Unsupported` only says the peer does not speak ping; its link may be fine.
//!     if let Err(failure @ (ping::Failure::Timeout | ping::Failure::Other { .. })) = event.result {
//!         tracing::debug!(peer = %event.peer, %failure, "ping failed; closing the connection");
//!         swarm.close_connection(event.connection);
//!     }
//! }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

mod address;
mod backoff;
mod behaviour;
mod cause;
mod config;
mod error;
mod event;
mod handler;
#[cfg(feature = "metrics")]
mod metrics;
mod mistake;
#[cfg(test)]
mod model_tests;
mod relay;
mod status;

pub use behaviour::RelayKeeper;
pub use cause::{Cause, CauseKind};
pub use config::Config;
pub use error::AddRelayError;
pub use event::Event;
pub use mistake::GiveUpReason;
pub use status::RelayStatus;
