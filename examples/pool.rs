// A node that stays reachable through a pool: three relays given, two held, one standby. Run three relays,
// then this with their addresses (each must end in /p2p/<relay peer id>):
//   cargo run --example relay_server -- --port 4001 --secret-key-seed 0 --listen-ip 127.0.0.1
//   cargo run --example relay_server -- --port 4002 --secret-key-seed 1 --listen-ip 127.0.0.1
//   cargo run --example relay_server -- --port 4003 --secret-key-seed 2 --listen-ip 127.0.0.1
//   cargo run --example pool -- <relay address 1> <relay address 2> <relay address 3>
use std::error::Error;

use libp2p::{
    futures::StreamExt,
    identify, noise, relay,
    swarm::{NetworkBehaviour, SwarmEvent},
    tcp, yamux, Multiaddr,
};
use libp2p_relay_keeper::{Config, Event, RelayKeeper};
use tracing_subscriber::EnvFilter;

#[derive(NetworkBehaviour)]
struct Behaviour {
    relay: relay::client::Behaviour,
    // Needed: a rust-libp2p relay offers reservations only once it knows its own external address, which it
    // learns from its clients' identify. Without identify here, a fresh relay refuses every reservation.
    identify: identify::Behaviour,
    keeper: RelayKeeper,
}

/// The `n`th command-line argument as a relay address.
fn relay_arg(n: usize) -> Result<Multiaddr, Box<dyn Error>> {
    let usage = "usage: pool <relay 1> <relay 2> <relay 3>, each address ending in /p2p/<relay peer id>";
    Ok(std::env::args().nth(n).ok_or(usage)?.parse()?)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    // Logs on stderr, `info` and `warn` unless RUST_LOG says otherwise; coloured only on a terminal.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())) // no colour codes in a log file
        .init();

    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)?
        .with_relay_client(noise::Config::new, yamux::Config::default)?
        .with_behaviour(|key, relay| Behaviour {
            relay,
            identify: identify::Behaviour::new(identify::Config::new("/my-app/1.0.0".into(), key.public())),
            // Hold reservations on two relays; the third is a standby, dialed only when a held one fails.
            keeper: RelayKeeper::new(Config::default().with_max_reservations(Some(2))),
        })?
        .build();
    let keeper = &mut swarm.behaviour_mut().keeper;
    keeper.add_relay(relay_arg(1)?)?;
    keeper.add_relay(relay_arg(2)?)?;
    keeper.add_relay(relay_arg(3)?)?;

    loop {
        // Every other swarm event is the application's. For kept relays, `ListenerClosed` and `ListenerError`
        // are safe to ignore: a reservation's listener closes with its connection, and the keeper reserves
        // again by itself; its events say what it does.
        if let SwarmEvent::Behaviour(BehaviourEvent::Keeper(event)) = swarm.select_next_some().await {
            println!("{event}");
            if let Event::Reserved { .. } | Event::Unreachable { .. } = event {
                let addrs: Vec<_> = swarm.behaviour().keeper.circuit_addrs().collect();
                println!("circuit addresses now: {addrs:?}");
            }
        }
    }
}
