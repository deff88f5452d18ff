//! A circuit relay v2 server, as rust-libp2p's `examples/relay-server`: relay, ping and identify over TCP and
//! QUIC, taking identify's observed address as its external address (without one it refuses reservations).
//!
//! ```text
//! cargo run --example relay_server -- --port 4001 --secret-key-seed 0
//! ```
//!
//! It prints one line per fact on stdout: `peer_id=<id>` first, then `listening addr=<multiaddr>` per
//! address, `dead_link peer=<id>` when it closed a silent connection and `connection_closed peer=<id>` when a
//! connection ends. Unlike upstream, it probes every connection not heard from for 3.5 s (`LinkProbe`,
//! adaptive timeout of at least 1.3 s: a silent client is seen within 6.1 s on a fast link, and a client
//! whose uplink suddenly queues 2.5 s is not cut) and closes one that stopped answering, so a client behind a
//! dead link does not keep a stale reservation alive here and no circuit is routed into it;
//! `--no-rate-limits` lifts the relay's limits for tests that dial through it often.

mod common;

use std::{
    error::Error,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use clap::Parser;
use futures::StreamExt;
use libp2p::{
    identify,
    multiaddr::Protocol,
    noise, ping, relay,
    swarm::{behaviour::toggle::Toggle, NetworkBehaviour, SwarmEvent},
    tcp, yamux, Multiaddr,
};
use libp2p_relay_keeper::{LinkProbe, SilentLinkClosed};

#[derive(Debug, Parser)]
#[command(name = "relay_server", about = "A libp2p circuit relay v2 server")]
struct Opts {
    /// Listen on IPv6 instead of IPv4.
    #[arg(long, default_value_t = false)]
    use_ipv6: bool,

    /// Derives the relay's key, so its peer id is the same on every start (and as rust-libp2p's examples).
    #[arg(long)]
    secret_key_seed: u8,

    /// The TCP and UDP (QUIC) port to listen on.
    #[arg(long)]
    port: u16,

    /// The address to listen on; all interfaces by default.
    #[arg(long)]
    listen_ip: Option<IpAddr>,

    /// Lift the relay's rate limits (reservations and circuits per peer and per IP address), so a test that
    /// dials through it many times is not refused with RESOURCE_LIMIT_EXCEEDED.
    #[arg(long)]
    no_rate_limits: bool,

    /// Take the listen addresses as external addresses at once, so reservations are accepted from the start
    /// (upstream's relay waits until identify tells it its address). For clients that never retry.
    #[arg(long)]
    assume_reachable: bool,

    /// How long a connection may go unheard before it is probed, in milliseconds (`LinkProbe`).
    #[arg(long, default_value_t = 3_500)]
    probe_interval_ms: u64,

    /// The floor of the probe's adaptive timeout, in milliseconds: a connection is closed as dead once a
    /// ping went unanswered for twice max(floor, srtt + 4 rttvar).
    #[arg(long, default_value_t = 1_300)]
    probe_timeout_ms: u64,

    /// Turn `LinkProbe` off.
    #[arg(long)]
    no_probe: bool,

    /// Run without libp2p's `ping::Behaviour`.
    #[arg(long)]
    no_ping: bool,
}

/// `probe` comes before `ping`: the first field that offers ping answers the clients' pings, and only pings
/// it answers spare the relay its own probes of that client.
#[derive(NetworkBehaviour)]
struct Behaviour {
    relay: relay::Behaviour,
    probe: Toggle<LinkProbe>,
    ping: Toggle<ping::Behaviour>,
    identify: identify::Behaviour,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    common::init_logging();
    let opts = Opts::parse();

    let mut swarm =
        libp2p::SwarmBuilder::with_existing_identity(common::keypair_from_seed(opts.secret_key_seed))
            .with_tokio()
            .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)?
            .with_quic()
            .with_behaviour(|key| Behaviour {
                relay: relay::Behaviour::new(key.public().to_peer_id(), relay_config(opts.no_rate_limits)),
                probe: (!opts.no_probe)
                    .then(|| {
                        LinkProbe::new(
                            Duration::from_millis(opts.probe_interval_ms),
                            Duration::from_millis(opts.probe_timeout_ms),
                        )
                    })
                    .into(),
                ping: (!opts.no_ping).then(ping::Behaviour::default).into(),
                identify: identify::Behaviour::new(identify::Config::new(
                    "/relay-keeper/relay/1".into(),
                    key.public(),
                )),
            })?
            .with_swarm_config(|config| config)
            // The builder's default of 10 s cuts a handshake on a slow link (a few round trips of 2-3 s).
            .with_connection_timeout(Duration::from_secs(30))
            .build();
    common::say(format_args!("peer_id={}", swarm.local_peer_id()));

    let ip = opts.listen_ip.unwrap_or(if opts.use_ipv6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    });
    swarm.listen_on(Multiaddr::from(ip).with(Protocol::Tcp(opts.port)))?;
    swarm.listen_on(
        Multiaddr::from(ip)
            .with(Protocol::Udp(opts.port))
            .with(Protocol::QuicV1),
    )?;

    loop {
        match swarm.select_next_some().await {
            SwarmEvent::NewListenAddr { address, .. } => {
                common::say(format_args!("listening addr={address}"));
                if opts.assume_reachable {
                    swarm.add_external_address(address);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received { info, .. })) => {
                swarm.add_external_address(info.observed_addr);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Probe(SilentLinkClosed { peer, .. })) => {
                common::say(format_args!("dead_link peer={peer}"))
            }
            SwarmEvent::ConnectionClosed { peer_id, .. } => {
                common::say(format_args!("connection_closed peer={peer_id}"))
            }
            SwarmEvent::Behaviour(BehaviourEvent::Relay(event)) => tracing::info!(?event),
            _ => {}
        }
    }
}

/// rust-libp2p's relay defaults, or without any rate limit (and with room for many circuits).
fn relay_config(no_rate_limits: bool) -> relay::Config {
    if !no_rate_limits {
        return relay::Config::default();
    }
    relay::Config {
        reservation_rate_limiters: Vec::new(),
        circuit_src_rate_limiters: Vec::new(),
        max_circuits: 1024,
        max_circuits_per_peer: 1024,
        ..relay::Config::default()
    }
}
