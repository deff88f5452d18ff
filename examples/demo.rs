//! Zero-setup demo: a relay on loopback TCP, a client kept reachable by `RelayKeeper`, and a peer that reaches
//! the client through the relay. The relay is killed and restarted; the keeper restores the reservation by
//! itself, and the demo prints a timeline with the time it took. Exits 0 on success.
//!
//! ```text
//! cargo run --example demo
//! ```

mod common;

use std::{
    error::Error,
    time::{Duration, Instant},
};

use futures::StreamExt;
use libp2p::{
    identify, identity::Keypair, multiaddr::Protocol, noise, relay, swarm::NetworkBehaviour,
    swarm::SwarmEvent, tcp, yamux, Multiaddr, PeerId, Swarm, SwarmBuilder,
};
use libp2p_relay_keeper::{Config, Event, RelayKeeper};
use tokio::{sync::oneshot, task::JoinHandle};

/// The demo fails instead of hanging when a step takes longer than this.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the relay stays down.
const DOWN_TIME: Duration = Duration::from_millis(1500);

#[derive(NetworkBehaviour)]
struct RelayNode {
    relay: relay::Behaviour,
    identify: identify::Behaviour,
}

#[derive(NetworkBehaviour)]
struct ClientNode {
    relay: relay::client::Behaviour,
    identify: identify::Behaviour,
    keeper: RelayKeeper,
}

fn identify(key: &Keypair) -> identify::Behaviour {
    identify::Behaviour::new(identify::Config::new("/relay-keeper-demo/1".into(), key.public()))
}

fn tcp_swarm<B: NetworkBehaviour>(
    key: Keypair,
    behaviour: impl FnOnce(&Keypair, relay::client::Behaviour) -> B,
) -> Result<Swarm<B>, Box<dyn Error>> {
    Ok(SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_relay_client(noise::Config::new, yamux::Config::default)?
        .with_behaviour(|key, client| behaviour(key, client))?
        .build())
}

/// Prints one line of the timeline.
struct Timeline(Instant);

impl Timeline {
    fn log(&self, who: &str, what: impl std::fmt::Display) {
        common::say(format_args!(
            "[{:>8.3}s] {who:<7} {what}",
            self.0.elapsed().as_secs_f64()
        ));
    }
}

/// Runs a relay like rust-libp2p's relay-server example: it offers reservations once identify has told it its
/// external address, so a freshly restarted relay refuses the first reservation. Returns its address and a
/// switch that kills it.
async fn start_relay(
    key: Keypair,
    port: u16,
) -> Result<(Multiaddr, oneshot::Sender<()>, JoinHandle<()>), Box<dyn Error>> {
    let peer_id = key.public().to_peer_id();
    let mut swarm = tcp_swarm(key, |key, _| RelayNode {
        relay: relay::Behaviour::new(key.public().to_peer_id(), relay::Config::default()),
        identify: identify(key),
    })?;
    swarm.listen_on(format!("/ip4/127.0.0.1/tcp/{port}").parse()?)?;
    let addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            break address.with(Protocol::P2p(peer_id));
        }
    };
    let (kill, mut killed) = oneshot::channel();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut killed => return,
                event = swarm.select_next_some() => {
                    if let SwarmEvent::Behaviour(RelayNodeEvent::Identify(identify::Event::Received { info, .. })) = event {
                        swarm.add_external_address(info.observed_addr);
                    }
                }
            }
        }
    });
    Ok((addr, kill, task))
}

fn port_of(addr: &Multiaddr) -> u16 {
    addr.iter()
        .find_map(|p| match p {
            Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .unwrap_or(0)
}

/// A fresh peer dials the client through its circuit address; resolves when the relayed connection is up.
async fn reach(circuit: Multiaddr, client: PeerId) -> Result<(), String> {
    let mut peer = tcp_swarm(Keypair::generate_ed25519(), |_, relay| relay).map_err(|e| e.to_string())?;
    peer.dial(circuit.clone()).map_err(|e| e.to_string())?;
    loop {
        match peer.select_next_some().await {
            SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == client => return Ok(()),
            SwarmEvent::OutgoingConnectionError { error, .. } => {
                return Err(format!("dialing {circuit}: {error}"))
            }
            _ => {}
        }
    }
}

/// Drives the client until `done` picks something out of a keeper event, printing every keeper event.
async fn drive_client<T>(
    client: &mut Swarm<ClientNode>,
    timeline: &Timeline,
    what: &str,
    mut done: impl FnMut(&Event) -> Option<T>,
) -> Result<T, Box<dyn Error>> {
    let work = async {
        loop {
            if let SwarmEvent::Behaviour(ClientNodeEvent::Keeper(event)) = client.select_next_some().await {
                timeline.log("client", &event);
                if let Some(found) = done(&event) {
                    return found;
                }
            }
        }
    };
    tokio::time::timeout(STEP_TIMEOUT, work)
        .await
        .map_err(|_| format!("timed out after {STEP_TIMEOUT:?} waiting for {what}").into())
}

/// Drives the client while a peer reaches it through the relay, printing the keeper's events meanwhile.
async fn serve_peer(
    client: &mut Swarm<ClientNode>,
    timeline: &Timeline,
    circuit: Multiaddr,
) -> Result<(), Box<dyn Error>> {
    let target = *client.local_peer_id();
    let mut reached = std::pin::pin!(reach(circuit, target));
    let work = async {
        loop {
            tokio::select! {
                result = &mut reached => return result,
                event = client.select_next_some() => {
                    if let SwarmEvent::Behaviour(ClientNodeEvent::Keeper(event)) = event {
                        timeline.log("client", &event);
                    }
                }
            }
        }
    };
    Ok(tokio::time::timeout(STEP_TIMEOUT, work)
        .await
        .map_err(|_| "timed out reaching the client")??)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    common::init_logging();
    let timeline = Timeline(Instant::now());

    let relay_key = Keypair::generate_ed25519();
    let (relay_addr, kill, task) = start_relay(relay_key.clone(), 0).await?;
    timeline.log("relay", format!("listening on {relay_addr}"));

    let config = Config::default()
        .with_base_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(5));
    timeline.log(
        "client",
        "keeper: waits from 500 ms doubling up to 5 s, with jitter",
    );
    let mut client = tcp_swarm(Keypair::generate_ed25519(), |key, relay| ClientNode {
        relay,
        identify: identify(key),
        keeper: RelayKeeper::new(config),
    })?;
    let relay_id = client.behaviour_mut().keeper.add_relay(relay_addr.clone())?;

    let reserved = |e: &Event| match e {
        Event::Reserved { addr, .. } => Some(addr.clone()),
        _ => None,
    };
    let circuit = drive_client(&mut client, &timeline, "the first reservation", reserved).await?;
    serve_peer(&mut client, &timeline, circuit).await?;
    timeline.log("peer", "reached the client through the relay");

    let _ = kill.send(());
    task.await?;
    let killed_at = Instant::now();
    timeline.log("relay", "killed");
    let down = drive_client(&mut client, &timeline, "the loss", |e| {
        matches!(e, Event::ReconnectScheduled { .. }).then_some(())
    });
    down.await?;
    let until_restart = DOWN_TIME.saturating_sub(killed_at.elapsed());
    let _ = tokio::time::timeout(
        until_restart,
        drive_client(&mut client, &timeline, "", |_| None::<()>),
    )
    .await;

    let (_, kill, task) = start_relay(relay_key, port_of(&relay_addr)).await?;
    let restarted_at = Instant::now();
    timeline.log("relay", "restarted with the same key and address");
    let circuit = drive_client(&mut client, &timeline, "the restored reservation", reserved).await?;
    let restored_in = restarted_at.elapsed();
    serve_peer(&mut client, &timeline, circuit).await?;
    timeline.log("peer", "reached the client through the relay again");

    common::say(format_args!(""));
    common::say(format_args!(
        "relay {relay_id} was down for {:.2?}",
        restarted_at - killed_at
    ));
    common::say(format_args!(
        "reservation restored {restored_in:.2?} after the relay came back (includes the keeper's backoff wait)"
    ));
    let _ = kill.send(());
    task.await?;
    Ok(())
}
