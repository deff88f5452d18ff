//! A node kept reachable through a relay, with the keeper's Prometheus metrics served over HTTP.
//!
//! ```text
//! cargo run --example relay_server -- --port 4001 --secret-key-seed 0 --listen-ip 127.0.0.1
//! cargo run --example metrics --features metrics -- \
//!     --relay-address /ip4/127.0.0.1/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN
//! curl http://127.0.0.1:9464/metrics
//! ```

mod common;

use std::{error::Error, net::SocketAddr, sync::Arc};

use clap::Parser;
use futures::StreamExt;
use libp2p::{identify, noise, relay, swarm::NetworkBehaviour, swarm::SwarmEvent, tcp, yamux, Multiaddr};
use libp2p_relay_keeper::{Config, RelayKeeper};
use prometheus_client::{encoding::text::encode, registry::Registry};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    sync::Mutex,
};

#[derive(Debug, Parser)]
#[command(
    name = "metrics",
    about = "A relay client with the keeper's metrics on /metrics"
)]
struct Opts {
    /// A relay, `/<transport address>/p2p/<relay peer id>`. May be given more than once.
    #[arg(long, required = true)]
    relay_address: Vec<Multiaddr>,

    /// Where to serve the metrics.
    #[arg(long, default_value = "127.0.0.1:9464")]
    metrics_addr: SocketAddr,
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    relay: relay::client::Behaviour,
    // Tells a freshly started relay its address, without which it refuses reservations.
    identify: identify::Behaviour,
    keeper: RelayKeeper,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    common::init_logging();
    let opts = Opts::parse();

    let mut registry = Registry::default();
    let keeper = RelayKeeper::new(Config::default()).with_metrics(&mut registry);
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)?
        .with_relay_client(noise::Config::new, yamux::Config::default)?
        .with_behaviour(|key, relay| Behaviour {
            relay,
            identify: identify::Behaviour::new(identify::Config::new(
                "/relay-keeper/metrics/1".into(),
                key.public(),
            )),
            keeper,
        })?
        .build();
    for addr in opts.relay_address {
        swarm
            .behaviour_mut()
            .keeper
            .add_relay(addr.clone())
            .map_err(|e| format!("--relay-address {addr}: {e}"))?;
    }

    let listener = TcpListener::bind(opts.metrics_addr).await?;
    common::say(format_args!(
        "metrics addr=http://{}/metrics",
        listener.local_addr()?
    ));
    tokio::spawn(serve_metrics(listener, Arc::new(Mutex::new(registry))));

    loop {
        if let SwarmEvent::Behaviour(BehaviourEvent::Keeper(event)) = swarm.select_next_some().await {
            common::say(format_args!("keeper {event}"));
        }
    }
}

/// Answers every HTTP request with the registry in Prometheus' text format; enough for a scraper and curl.
async fn serve_metrics(listener: TcpListener, registry: Arc<Mutex<Registry>>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            // The request itself does not matter: there is one page.
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request).await;
            let mut body = String::new();
            if encode(&mut body, &*registry.lock().await).is_err() {
                return;
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body.as_bytes()).await;
        });
    }
}
