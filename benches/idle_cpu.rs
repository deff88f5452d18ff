//! What a healthy keeper costs: the CPU a client spends in 30 s while it holds reservations on 100 relays
//! and nothing happens: the keeper with its default probe (after 3 s unheard, so 10 probes per relay in the
//! 30 s), the keeper without the probe, the same client with hand-written `listen_on` calls, and for scale
//! the keeper without the probe beside libp2p's own `ping::Behaviour` pinging every 3 s. The relays' own
//! pings are an hour apart, so every ping in the window is one of the client's; the CPU per probe is the
//! difference of the first two medians over the probes sent, and the CPU per libp2p ping the difference of
//! the last and the second.
//!
//! ```text
//! cargo bench --bench idle_cpu
//! ```
//!
//! The relays run in this process; each client runs in a child process (this binary again), so its CPU time
//! is its own. CPU time is the sum of `/proc/<pid>/task/*/schedstat` run times, in nanoseconds.

#[path = "../tests/common/mod.rs"]
mod common;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use common::{Net, RelayServer};
use futures::StreamExt;
use libp2p::{
    multiaddr::Protocol, noise, ping, relay, swarm::NetworkBehaviour, swarm::SwarmEvent, tcp, yamux,
    Multiaddr, Swarm, SwarmBuilder,
};
use libp2p_relay_keeper::{Config, RelayKeeper};

const RELAYS: usize = 100;
const RUNS: usize = 3;
const IDLE: Duration = Duration::from_secs(30);
/// The keeper's default probe interval.
const PROBE_EVERY: Duration = Duration::from_secs(3);
const CHILD: &str = "RELAY_KEEPER_IDLE_CLIENT";

#[derive(NetworkBehaviour)]
struct Kept {
    relay: relay::client::Behaviour,
    keeper: RelayKeeper,
}

/// The keeper without its probe, and libp2p's ping instead.
#[derive(NetworkBehaviour)]
struct KeptAndPinged {
    relay: relay::client::Behaviour,
    keeper: RelayKeeper,
    ping: ping::Behaviour,
}

fn cpu_ns() -> u64 {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc is mounted")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn client<B: NetworkBehaviour>(behaviour: impl FnOnce(relay::client::Behaviour) -> B) -> Swarm<B> {
    SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
        .unwrap()
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .unwrap()
        .with_behaviour(|_, relay| behaviour(relay))
        .unwrap()
        .build()
}

/// Drives the swarm until every relay has a circuit address, then for `IDLE`; returns the CPU time of the
/// idle part.
async fn hold<B: NetworkBehaviour>(mut swarm: Swarm<B>) -> Duration {
    let mut reserved = 0;
    while reserved < RELAYS {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            reserved += usize::from(address.iter().any(|p| p == Protocol::P2pCircuit));
        }
    }
    let before = cpu_ns();
    let _ = tokio::time::timeout(IDLE, async {
        loop {
            swarm.select_next_some().await;
        }
    })
    .await;
    Duration::from_nanos(cpu_ns() - before)
}

async fn run_child(variant: &str, relays: Vec<Multiaddr>) {
    let cpu = match variant {
        "keeper" | "keeper without probe" => {
            let config = match variant {
                "keeper" => Config::default(),
                _ => Config::default().with_probe(false),
            };
            let mut swarm = client(|relay| Kept {
                relay,
                keeper: RelayKeeper::new(config),
            });
            for addr in relays {
                swarm.behaviour_mut().keeper.add_relay(addr).unwrap();
            }
            hold(swarm).await
        }
        "keeper without probe, libp2p ping" => {
            let mut swarm = client(|relay| KeptAndPinged {
                relay,
                keeper: RelayKeeper::new(Config::default().with_probe(false)),
                ping: ping::Behaviour::new(ping::Config::new().with_interval(PROBE_EVERY)),
            });
            for addr in relays {
                swarm.behaviour_mut().keeper.add_relay(addr).unwrap();
            }
            hold(swarm).await
        }
        _ => {
            let mut swarm = client(|relay| relay);
            for addr in relays {
                swarm.listen_on(addr.with(Protocol::P2pCircuit)).unwrap();
            }
            hold(swarm).await
        }
    };
    println!("cpu_ns={}", cpu.as_nanos());
}

fn median_and_spread(mut values: Vec<Duration>) -> String {
    values.sort();
    format!(
        "median {:.2?} (min {:.2?}, max {:.2?})",
        values[values.len() / 2],
        values[0],
        values[values.len() - 1]
    )
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if let Ok(variant) = std::env::var(CHILD) {
        let relays = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
        return run_child(&variant, relays).await;
    }
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let start = Instant::now();
    let mut servers = Vec::with_capacity(RELAYS);
    for _ in 0..RELAYS {
        let rare = ping::Config::new().with_interval(Duration::from_secs(3600));
        servers.push(RelayServer::spawn_pinging(Net::Tcp, rare).await);
    }
    let addrs: Vec<String> = servers.iter().map(|s| s.addr.to_string()).collect();
    let mut results: [(&str, Vec<Duration>); 4] = [
        ("keeper", Vec::new()),
        ("keeper without probe", Vec::new()),
        ("listen_on by hand", Vec::new()),
        ("keeper without probe, libp2p ping", Vec::new()),
    ];
    for _ in 0..RUNS {
        for (variant, samples) in &mut results {
            let exe = std::env::current_exe().unwrap();
            let child = tokio::process::Command::from(Command::new(exe))
                .env(CHILD, *variant)
                .args(&addrs)
                .output()
                .await
                .unwrap();
            let stdout = String::from_utf8_lossy(&child.stdout);
            let ns: u64 = stdout
                .lines()
                .find_map(|l| l.strip_prefix("cpu_ns="))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("the {variant} client reported no CPU time: {stdout}"));
            samples.push(Duration::from_nanos(ns));
        }
    }
    let median = |samples: &[Duration]| {
        let mut sorted = samples.to_vec();
        sorted.sort();
        sorted[sorted.len() / 2]
    };
    let probes = RELAYS as u32 * (IDLE.as_millis() / PROBE_EVERY.as_millis()) as u32;
    let probing = median(&results[0].1).saturating_sub(median(&results[1].1));
    let pinging = median(&results[3].1).saturating_sub(median(&results[1].1));
    for (variant, samples) in results {
        println!(
            "idle CPU in {IDLE:?} with {RELAYS} reservations, {variant}: {}",
            median_and_spread(samples)
        );
    }
    println!("CPU per probe: {:.1?} ({probes} probes)", probing / probes);
    println!(
        "CPU per libp2p ping, for scale: {:.1?} (as many pings)",
        pinging / probes
    );
    for server in servers {
        server.kill().await;
    }
    println!("took {:.1?}", start.elapsed());
}
