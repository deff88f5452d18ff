//! A node that remembers its relays across restarts: it starts from the relays stored in `--file` (JSON), adds
//! the ones given on the command line, and when it exits (SIGTERM or Ctrl-C) stores the keeper's snapshot of
//! known relays there for the next run, whose pool then reserves first on the relay that served last.
//!
//! ```text
//! cargo run --example relay_server -- --port 4001 --secret-key-seed 0 --listen-ip 127.0.0.1
//! cargo run --example relay_server -- --port 4002 --secret-key-seed 1 --listen-ip 127.0.0.1
//! cargo run --example known_relays -- --file relays.json <relay address 1> <relay address 2>
//! # Ctrl-C, then again, without naming the relays:
//! cargo run --example known_relays -- --file relays.json
//! ```
//!
//! Stdout: a line for each bad entry (`known relay <id> skipped: <why>`, or `skipped entry <n> of <path>: <why>`
//! for one that does not parse), `loaded known_relays=<n> file=<path>` (after `no known relays yet
//! file=<path>` on a first start), the keeper's events in their `Display` form (`reserved relay=<id> addr=<addr>`, ...), and
//! `saved known_relays=<n> file=<path>` on exit. Needs the crate's `serde` feature, which `cargo test` and
//! `cargo run --example` turn on through the crate's dev-dependency on itself.

mod common;

use std::{error::Error, io::ErrorKind, path::PathBuf};

use clap::Parser;
use common::{init_logging, say};
use futures::StreamExt;
use libp2p::{
    identify, noise, relay,
    swarm::{NetworkBehaviour, SwarmEvent},
    tcp, yamux, Multiaddr,
};
use libp2p_relay_keeper::{Config, KnownRelay, RelayKeeper};
use tokio::signal::unix::{signal, SignalKind};

#[derive(Debug, Parser)]
#[command(
    name = "known_relays",
    about = "A node that starts from the relays that served it last"
)]
struct Opts {
    /// Where the known relays are stored: read at start (if it exists), written at exit.
    #[arg(long, default_value = "known-relays.json")]
    file: PathBuf,

    /// How many relays hold a reservation at a time; the others stand by.
    #[arg(long, default_value_t = 1)]
    max_reservations: usize,

    /// Relays to keep besides the known ones, each `/<transport address>/p2p/<relay peer id>`.
    relays: Vec<Multiaddr>,
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    relay: relay::client::Behaviour,
    // A rust-libp2p relay offers reservations only once its clients' identify told it its address.
    identify: identify::Behaviour,
    keeper: RelayKeeper,
}

/// The stored relays, each entry read on its own so that one that does not parse (an address this libp2p
/// cannot read, say) costs only itself. A missing file is a first start.
fn load(opts: &Opts) -> Result<Vec<KnownRelay>, Box<dyn Error>> {
    let file = opts.file.display();
    let text = match std::fs::read_to_string(&opts.file) {
        Ok(text) => text,
        Err(error) if error.kind() == ErrorKind::NotFound => {
            say(format_args!("no known relays yet file={file}"));
            return Ok(Vec::new());
        }
        Err(error) => return Err(error.into()),
    };
    let entries: Vec<serde_json::Value> = serde_json::from_str(&text)?;
    let mut relays = Vec::new();
    for (n, entry) in entries.into_iter().enumerate() {
        match serde_json::from_value(entry) {
            Ok(relay) => relays.push(relay),
            Err(error) => say(format_args!("skipped entry {n} of {file}: {error}")),
        }
    }
    Ok(relays)
}

/// Writes the snapshot next to the file and renames it over, so a crash mid-write leaves the old file whole.
fn save(opts: &Opts, relays: &[KnownRelay]) -> Result<(), Box<dyn Error>> {
    let mut partial = opts.file.clone().into_os_string();
    partial.push(".partial");
    std::fs::write(&partial, serde_json::to_vec_pretty(relays)?)?;
    std::fs::rename(&partial, &opts.file)?;
    say(format_args!(
        "saved known_relays={} file={}",
        relays.len(),
        opts.file.display()
    ));
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    init_logging();
    let opts = Opts::parse();
    let config = Config::default().with_max_reservations(Some(opts.max_reservations));
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)?
        .with_relay_client(noise::Config::new, yamux::Config::default)?
        .with_behaviour(|key, relay| Behaviour {
            relay,
            identify: identify::Behaviour::new(identify::Config::new("/my-app/1.0.0".into(), key.public())),
            keeper: RelayKeeper::new(config),
        })?
        .build();

    // The known relays first, so the pool's first choice is the relay that served last; a bad snapshot
    // never stops the node from starting.
    let keeper = &mut swarm.behaviour_mut().keeper;
    let known = load(&opts).unwrap_or_else(|error| {
        say(format_args!("skipped {}: {error}", opts.file.display()));
        Vec::new()
    });
    let errors = keeper.add_known_relays(known);
    for error in &errors {
        say(format_args!("{error}"));
    }
    say(format_args!(
        "loaded known_relays={} file={}",
        keeper.relays().count(),
        opts.file.display()
    ));
    for relay in &opts.relays {
        keeper.add_relay(relay.clone())?;
    }

    let mut terminate = signal(SignalKind::terminate())?;
    loop {
        tokio::select! {
            event = swarm.select_next_some() => {
                if let SwarmEvent::Behaviour(BehaviourEvent::Keeper(event)) = event {
                    say(format_args!("{event}"));
                }
            }
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    save(&opts, &swarm.behaviour().keeper.known_relays())
}
