// A node that stays reachable through one relay. Run a relay, then this with the relay's address:
//   cargo run --example relay_server -- --port 4001 --secret-key-seed 0
//   cargo run --example minimal -- /ip4/127.0.0.1/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN
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

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    // Logs on stderr, `info` and `warn` unless RUST_LOG says otherwise: the keeper's warnings name the fix
    // for a mistake.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())) // no colour codes in a log file
        .init();
    let relay: Multiaddr = std::env::args()
        .nth(1)
        .ok_or("usage: minimal <relay address ending in /p2p/<relay peer id>>")?
        .parse()?;

    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)?
        .with_relay_client(noise::Config::new, yamux::Config::default)?
        .with_behaviour(|key, relay| Behaviour {
            relay,
            identify: identify::Behaviour::new(identify::Config::new("/my-app/1.0.0".into(), key.public())),
            keeper: RelayKeeper::new(Config::default()),
        })?
        .build();
    swarm.behaviour_mut().keeper.add_relay(relay)?;

    loop {
        match swarm.select_next_some().await {
            SwarmEvent::Behaviour(BehaviourEvent::Keeper(event)) => {
                println!("{event}");
                if let Event::Reachable { .. } | Event::Unreachable { .. } = event {
                    let addrs: Vec<_> = swarm.behaviour().keeper.circuit_addrs().collect();
                    println!("circuit addresses now: {addrs:?}");
                }
            }
            // Safe to ignore for a kept relay: a reservation's listener closes with its connection, and a
            // relay that does not offer HOP yet refuses (`Reservation(Unsupported)`; with identify, as here,
            // the keeper waits for HOP before asking, except on the node's very first connection). The
            // keeper reserves again by itself; its events above say what it does.
            SwarmEvent::ListenerClosed { .. } | SwarmEvent::ListenerError { .. } => {}
            _ => {}
        }
    }
}
