//! rust-libp2p's DCUtR example (relay client, ping, identify, dcutr) with a [`RelayKeeper`] composed in: in
//! `listen` mode the keeper holds a reservation on every `--relay-address` (or on `--max-reservations` of
//! them, the others standing by) and restores it whenever a relay goes away; in `dial` mode it keeps the relay connection the circuit dial goes through.
//!
//! ```text
//! cargo run --example dcutr -- --mode listen --secret-key-seed 1 --relay-address /ip4/127.0.0.1/tcp/4001/p2p/<relay id>
//! cargo run --example dcutr -- --mode dial --secret-key-seed 2 --relay-address /ip4/127.0.0.1/tcp/4001/p2p/<relay id> --remote-peer-id <listener id>
//! ```
//!
//! Stdout carries one line per fact, for people and scripts alike: `peer_id=<id>`, `listening addr=<addr>`,
//! `connected peer=<id> relayed=<bool>`, `keeper <event>` (the keeper event's stable `Display` form, e.g.
//! `keeper reserved relay=<id> addr=<addr>`), and in dial mode `dial_failed peer=<id> error=<text>`. Dial mode
//! exits 0 once it reached the remote peer.
//!
//! `--no-keeper` runs the same node without the keeper (one `listen_on` per relay, as rust-libp2p's example
//! does), to compare how long a node stays unreachable without it.

mod common;

use std::{
    error::Error,
    net::{IpAddr, Ipv4Addr},
    process::ExitCode,
    time::Duration,
};

use clap::{Parser, ValueEnum};
use futures::StreamExt;
use libp2p::{
    dcutr, identify,
    multiaddr::Protocol,
    noise, ping, relay,
    swarm::{behaviour::toggle::Toggle, NetworkBehaviour, SwarmEvent},
    tcp, yamux, Multiaddr, PeerId,
};
use libp2p_relay_keeper::{AddRelayError, Config, RelayKeeper};

#[derive(Debug, Parser)]
#[command(name = "dcutr", about = "libp2p DCUtR client, kept reachable by RelayKeeper")]
struct Opts {
    /// `listen`: be reachable through the relays; `dial`: reach `--remote-peer-id` through the first relay.
    #[arg(long)]
    mode: Mode,

    /// Derives the key, so the peer id is the same on every start (and as rust-libp2p's examples).
    #[arg(long)]
    secret_key_seed: u8,

    /// A relay, `/<transport address>/p2p/<relay peer id>`. May be given more than once.
    #[arg(long, required = true)]
    relay_address: Vec<Multiaddr>,

    /// The peer to reach, in dial mode.
    #[arg(long)]
    remote_peer_id: Option<PeerId>,

    /// The address to listen on for direct (hole-punched) connections; all interfaces by default.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    listen_ip: IpAddr,

    /// Bound of the keeper's first wait, in milliseconds.
    #[arg(long, default_value_t = 5_000)]
    backoff_base_ms: u64,

    /// Cap of the keeper's waits, in milliseconds.
    #[arg(long, default_value_t = 60_000)]
    backoff_max_ms: u64,

    /// Failed retries per outage before the keeper gives up on a relay.
    #[arg(long, default_value_t = 10)]
    max_attempts: u32,

    /// How long a relay connection may go unheard before the keeper probes it, in milliseconds.
    #[arg(long, default_value_t = 3_000)]
    probe_interval_ms: u64,

    /// The floor of the probe's adaptive timeout, in milliseconds: a ping is late after
    /// max(floor, srtt + 4 rttvar), and the connection counts as dead after twice that.
    #[arg(long, default_value_t = 1_300)]
    probe_timeout_ms: u64,

    /// Turn the keeper's liveness probe off.
    #[arg(long)]
    no_probe: bool,

    /// Run without libp2p's `ping::Behaviour` (to measure what the keeper's probe costs alone).
    #[arg(long)]
    no_ping: bool,

    /// How long one dial to a relay may take, in milliseconds; by default the keeper's, which follows
    /// dials that ran out of time and the measured round trip (`Config::with_dial_timeout`).
    #[arg(long)]
    dial_timeout_ms: Option<u64>,

    /// How long a relay's reservation must hold before its backoff level is forgiven, in milliseconds; the
    /// library's default (`Config::with_forgive_after`) if not given.
    #[arg(long)]
    forgive_after_ms: Option<u64>,

    /// Hold reservations on at most this many of the relays, the others standing by (a pool).
    #[arg(long)]
    max_reservations: Option<usize>,

    /// Run without the keeper: reserve once on each relay and never restore it.
    #[arg(long)]
    no_keeper: bool,

    /// In dial mode, after reaching the remote through the relay, wait this long for DCUtR to upgrade to a
    /// direct connection and print `dcutr upgraded=<bool>` before exiting.
    #[arg(long, default_value_t = 0)]
    wait_direct_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Dial,
    Listen,
}

/// `keeper` comes before `ping`: the first field that offers ping answers the relay's pings, and only pings
/// the keeper answers spare its own probes.
#[derive(NetworkBehaviour)]
struct Behaviour {
    relay_client: relay::client::Behaviour,
    keeper: Toggle<RelayKeeper>,
    ping: Toggle<ping::Behaviour>,
    identify: identify::Behaviour,
    dcutr: dcutr::Behaviour,
}

#[tokio::main]
async fn main() -> ExitCode {
    common::init_logging();
    match run(Opts::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(opts: Opts) -> Result<(), Box<dyn Error>> {
    let remote = match (opts.mode, opts.remote_peer_id) {
        (Mode::Dial, None) => {
            return Err("--mode dial needs --remote-peer-id <peer id of the listener>".into())
        }
        (_, remote) => remote,
    };
    let mut config = Config::default()
        .with_base_delay(Duration::from_millis(opts.backoff_base_ms))
        .with_max_delay(Duration::from_millis(opts.backoff_max_ms))
        .with_max_attempts(Some(opts.max_attempts))
        .with_max_reservations(opts.max_reservations)
        .with_reservations(opts.mode == Mode::Listen)
        .with_probe(!opts.no_probe)
        .with_probe_interval(Duration::from_millis(opts.probe_interval_ms))
        .with_probe_timeout(Duration::from_millis(opts.probe_timeout_ms));
    if let Some(ms) = opts.dial_timeout_ms {
        config = config.with_dial_timeout(Duration::from_millis(ms));
    }
    if let Some(ms) = opts.forgive_after_ms {
        config = config.with_forgive_after(Duration::from_millis(ms));
    }

    let mut swarm =
        libp2p::SwarmBuilder::with_existing_identity(common::keypair_from_seed(opts.secret_key_seed))
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )?
            .with_quic()
            .with_dns()?
            .with_relay_client(noise::Config::new, yamux::Config::default)?
            .with_behaviour(|key, relay_client| Behaviour {
                relay_client,
                ping: (!opts.no_ping).then(ping::Behaviour::default).into(),
                identify: identify::Behaviour::new(identify::Config::new(
                    "/relay-keeper/dcutr/1".into(),
                    key.public(),
                )),
                dcutr: dcutr::Behaviour::new(key.public().to_peer_id()),
                keeper: (!opts.no_keeper).then(|| RelayKeeper::new(config)).into(),
            })?
            .with_swarm_config(|config| config)
            // The builder's default of 10 s cuts a handshake on a slow link (a few round trips of 2-3 s).
            .with_connection_timeout(Duration::from_secs(30))
            .build();
    common::say(format_args!("peer_id={}", swarm.local_peer_id()));

    swarm.listen_on(
        Multiaddr::from(opts.listen_ip)
            .with(Protocol::Udp(0))
            .with(Protocol::QuicV1),
    )?;
    swarm.listen_on(Multiaddr::from(opts.listen_ip).with(Protocol::Tcp(0)))?;

    let mut relays = Vec::new();
    for addr in &opts.relay_address {
        let relay = match swarm.behaviour_mut().keeper.as_mut() {
            Some(keeper) => keeper.add_relay(addr.clone()),
            None => relay_peer_id(addr),
        }
        .map_err(|e| format!("--relay-address {addr}: {e}"))?;
        if opts.no_keeper {
            match opts.mode {
                Mode::Listen => {
                    swarm.listen_on(addr.clone().with(Protocol::P2pCircuit))?;
                }
                Mode::Dial => swarm.dial(addr.clone())?,
            }
        }
        relays.push(relay);
    }
    let mut dialed = false;
    // Set once the remote was reached through the relay while we wait for a direct connection.
    let mut direct_deadline: Option<tokio::time::Instant> = None;

    loop {
        let event = match direct_deadline {
            Some(deadline) => tokio::select! {
                event = swarm.select_next_some() => event,
                _ = tokio::time::sleep_until(deadline) => {
                    common::say(format_args!("dcutr upgraded=false"));
                    return Ok(());
                }
            },
            None => swarm.select_next_some().await,
        };
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                common::say(format_args!("listening addr={address}"))
            }
            SwarmEvent::Behaviour(BehaviourEvent::Keeper(event)) => {
                common::say(format_args!("keeper {event}"))
            }
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => {
                common::say(format_args!(
                    "connected peer={peer_id} relayed={}",
                    endpoint.is_relayed()
                ));
                if Some(peer_id) == remote {
                    if !endpoint.is_relayed() && direct_deadline.is_some() {
                        common::say(format_args!("dcutr upgraded=true"));
                        return Ok(());
                    }
                    if opts.wait_direct_ms == 0 {
                        return Ok(());
                    }
                    direct_deadline.get_or_insert_with(|| {
                        tokio::time::Instant::now() + Duration::from_millis(opts.wait_direct_ms)
                    });
                }
                // Dial through the relay once the keeper has connected it, so the two dials do not race.
                if let (Some(remote), false) = (remote, dialed) {
                    if let Some(addr) = relays
                        .iter()
                        .position(|r| *r == peer_id)
                        .map(|i| &opts.relay_address[i])
                    {
                        dialed = true;
                        swarm.dial(
                            addr.clone()
                                .with(Protocol::P2pCircuit)
                                .with(Protocol::P2p(remote)),
                        )?;
                    }
                }
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer),
                error,
                ..
            } if Some(peer) == remote && direct_deadline.is_none() => {
                let error = error.to_string().replace('\n', " ");
                common::say(format_args!("dial_failed peer={peer} error={error}"));
                return Err(format!("could not reach {peer}").into());
            }
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(event)) => tracing::info!(?event),
            SwarmEvent::Behaviour(BehaviourEvent::RelayClient(event)) => tracing::info!(?event),
            event => tracing::debug!(?event),
        }
    }
}

/// The relay's peer id, for the run without a keeper; the keeper's own check when it runs.
fn relay_peer_id(addr: &Multiaddr) -> Result<PeerId, AddRelayError> {
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => Ok(peer),
        _ => Err(AddRelayError::MissingPeerId),
    }
}
