//! What `LinkProbe` costs a relay with many idle clients, and how fast it still sees one of them die: a real
//! `relay::Behaviour` with the `relay_server` example's behaviours (`LinkProbe` 3.5 s / floor 1.3 s before
//! `ping::Behaviour`, identify) on a thread of its own, and `CLIENTS` in-process clients over loopback TCP,
//! each holding a reservation through its keeper, idle. Per setup: the relay thread's CPU time (from
//! `/proc`) and the bytes its TCP connections carried (a counting wrapper around the transport: noise and
//! yamux framing included, IP and TCP headers not), per client per minute. Then a few clients behind a
//! forwarder fall silent one after the other, and the relay's `SilentLinkClosed` for each is timed.
//!
//! A measurement, not a check. The figures in BENCHMARKS.md come from
//! `cargo test --release --test relay_scale -- --ignored --nocapture` (about 6 minutes; `RELAY_SCALE_CLIENTS`
//! sets the number of clients, 500 by default).

mod common;

use std::{
    io,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use common::{ClientBehaviour, Net, SilentLink};
use futures::{AsyncRead, AsyncWrite, StreamExt};
use libp2p::{
    core::{muxing::StreamMuxerBox, transport::Transport as _, upgrade::Version},
    identify, noise, ping, relay,
    swarm::{behaviour::toggle::Toggle, NetworkBehaviour, SwarmEvent},
    tcp, yamux, Multiaddr, PeerId, SwarmBuilder,
};
use libp2p_relay_keeper::{Config, Event, LinkProbe, RelayKeeper, SilentLinkClosed};
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
};

/// How long the clients are left to settle after the last reservation, then how long they are counted.
const SETTLE: Duration = Duration::from_secs(10);
const WINDOW: Duration = Duration::from_secs(60);
/// Clients behind a forwarder that fall silent, one after the other, once the counting is done.
const SILENT_DEATHS: usize = 5;

#[derive(NetworkBehaviour)]
struct RelayBehaviour {
    relay: relay::Behaviour,
    probe: Toggle<LinkProbe>,
    ping: ping::Behaviour,
    identify: identify::Behaviour,
}

/// A stream that adds every byte it carries, both ways, to a shared counter.
struct Counted<S> {
    inner: S,
    bytes: Arc<AtomicU64>,
}

impl<S> Counted<S> {
    fn count(&self, done: &Poll<io::Result<usize>>) {
        if let Poll::Ready(Ok(n)) = done {
            self.bytes.fetch_add(*n as u64, Ordering::Relaxed);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let done = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.count(&done);
        done
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let done = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.count(&done);
        done
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

/// The relay, running on a thread of its own (a current-thread runtime, so every connection task of its
/// swarm runs there too and the thread's CPU time is the relay's).
struct Relay {
    addr: Multiaddr,
    bytes: Arc<AtomicU64>,
    /// The relay thread's id, to read its CPU time.
    tid: u32,
    closed: mpsc::UnboundedReceiver<(PeerId, Instant)>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Relay {
    async fn start(probe: bool) -> Self {
        let bytes = Arc::new(AtomicU64::new(0));
        let counted = bytes.clone();
        let (ready_tx, ready) = oneshot::channel();
        let (closed_tx, closed) = mpsc::unbounded_channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(run_relay(probe, counted, ready_tx, closed_tx, stopped));
        });
        let (addr, tid) = ready.await.expect("the relay started");
        Self {
            addr,
            bytes,
            tid,
            closed,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The relay thread's CPU time so far.
    fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{}/stat", self.tid)).unwrap();
        cpu_of(&stat)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.stop.take().map(|stop| stop.send(()));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// User plus system time from a `/proc/.../stat` line (fields 14 and 15, in clock ticks).
fn cpu_of(stat: &str) -> Duration {
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // std does not say how long a clock tick is; libc's sysconf does.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_secs_f64(ticks as f64 / per_second as f64)
}

async fn run_relay(
    probe: bool,
    bytes: Arc<AtomicU64>,
    ready: oneshot::Sender<(Multiaddr, u32)>,
    closed: mpsc::UnboundedSender<(PeerId, Instant)>,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut swarm = SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_other_transport(|key| {
            let noise = noise::Config::new(key).unwrap();
            tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
                .map(move |stream, _| Counted {
                    inner: stream,
                    bytes: bytes.clone(),
                })
                .upgrade(Version::V1)
                .authenticate(noise)
                .multiplex(yamux::Config::default())
                .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
        })
        .unwrap()
        .with_behaviour(|key| RelayBehaviour {
            relay: relay::Behaviour::new(
                key.public().to_peer_id(),
                relay::Config {
                    max_reservations: 100_000,
                    reservation_rate_limiters: Vec::new(),
                    circuit_src_rate_limiters: Vec::new(),
                    ..relay::Config::default()
                },
            ),
            probe: probe
                .then(|| LinkProbe::new(Duration::from_millis(3500), Duration::from_millis(1300)))
                .into(),
            ping: ping::Behaviour::default(),
            identify: identify::Behaviour::new(identify::Config::new("/relay-scale/1".into(), key.public())),
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap()).unwrap();
    let addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            break address;
        }
    };
    swarm.add_external_address(addr.clone());
    let tid = std::fs::read_to_string("/proc/thread-self/stat")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let _ = ready.send((addr.with_p2p(*swarm.local_peer_id()).unwrap(), tid));
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            event = swarm.select_next_some() => {
                if let SwarmEvent::Behaviour(RelayBehaviourEvent::Probe(SilentLinkClosed { peer, .. })) = event {
                    let _ = closed.send((peer, Instant::now()));
                }
            }
        }
    }
}

/// Starts a client like the `dcutr` example's listener (keeper, identify, ping) that reserves on `relay`
/// and reports on `reserved` each time it did; it runs until aborted.
fn client(relay: Multiaddr, probe: bool, reserved: mpsc::UnboundedSender<PeerId>) -> JoinHandle<()> {
    let key = libp2p::identity::Keypair::generate_ed25519();
    let mut swarm = common::swarm(Net::Tcp, key.clone(), |key, client| ClientBehaviour {
        relay: client,
        keeper: RelayKeeper::new(Config::default().with_probe(probe)),
        identify: Some(identify::Behaviour::new(identify::Config::new(
            "/relay-scale/1".into(),
            key.public(),
        )))
        .into(),
        ping: Some(ping::Behaviour::default()).into(),
    });
    swarm.behaviour_mut().keeper.add_relay(relay).unwrap();
    tokio::spawn(async move {
        let peer = *swarm.local_peer_id();
        loop {
            if let SwarmEvent::Behaviour(common::ClientBehaviourEvent::Keeper(Event::Reserved { .. })) =
                swarm.select_next_some().await
            {
                let _ = reserved.send(peer);
            }
        }
    })
}

struct Row {
    cpu_per_client_minute: Duration,
    bytes_per_client_minute: f64,
}

/// A relay with its clients, all reserved.
struct Fleet {
    relay: Relay,
    clients: Vec<JoinHandle<()>>,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for client in &self.clients {
            client.abort();
        }
    }
}

/// Starts the relay and `clients` clients, waits for every reservation, settles, then counts.
async fn measure(clients: usize, relay_probe: bool, client_probe: bool) -> (Fleet, Row) {
    let relay = Relay::start(relay_probe).await;
    let (reserved_tx, mut reserved) = mpsc::unbounded_channel();
    let fleet = Fleet {
        clients: (0..clients)
            .map(|_| client(relay.addr.clone(), client_probe, reserved_tx.clone()))
            .collect(),
        relay,
    };
    let relay = &fleet.relay;
    let mut holding = std::collections::HashSet::new();
    tokio::time::timeout(Duration::from_secs(120), async {
        while holding.len() < clients {
            holding.insert(reserved.recv().await.unwrap());
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {} of {clients} clients reserved", holding.len()));
    tokio::time::sleep(SETTLE).await;
    let (cpu, bytes) = (relay.cpu(), relay.bytes.load(Ordering::Relaxed));
    tokio::time::sleep(WINDOW).await;
    let minutes = WINDOW.as_secs_f64() / 60.0;
    let per_client_minute = minutes * clients as f64;
    let row = Row {
        cpu_per_client_minute: (relay.cpu() - cpu).div_f64(per_client_minute),
        bytes_per_client_minute: (relay.bytes.load(Ordering::Relaxed) - bytes) as f64 / per_client_minute,
    };
    assert_eq!(
        reserved.try_recv().ok(),
        None,
        "no client lost its reservation while idle"
    );
    (fleet, row)
}

/// Clients behind forwarders fall silent one by one; how long until the relay closed each one's link.
async fn silent_deaths(fleet: &mut Fleet) -> Vec<Duration> {
    let mut detections = Vec::new();
    for _ in 0..SILENT_DEATHS {
        let link = SilentLink::to(&fleet.relay.addr).await;
        let (reserved_tx, mut reserved) = mpsc::unbounded_channel();
        fleet.clients.push(client(link.addr.clone(), true, reserved_tx));
        let peer = tokio::time::timeout(Duration::from_secs(30), reserved.recv())
            .await
            .expect("the client behind the forwarder reserved")
            .unwrap();
        // Past the first probes, so the relay's timeout follows the measured round trip.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let silenced = Instant::now();
        link.silence();
        let closed = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let (closed, at) = fleet.relay.closed.recv().await.unwrap();
                if closed == peer {
                    break at;
                }
            }
        })
        .await
        .expect("the relay closed the silent client's link");
        detections.push(closed - silenced);
    }
    detections
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
#[ignore = "a measurement of about 6 minutes; see the module docs"]
async fn relay_cost_per_idle_client() {
    let clients = std::env::var("RELAY_SCALE_CLIENTS")
        .ok()
        .map_or(500, |n| n.parse().expect("RELAY_SCALE_CLIENTS is a number"));
    println!("{clients} idle clients, each with a reservation; relay thread's CPU and TCP payload bytes");
    println!("| relay `LinkProbe` | clients' keeper probe | CPU per client per minute | bytes per client per minute |");
    println!("|---|---|---|---|");
    let mut detections = Vec::new();
    for (relay_probe, client_probe) in [(false, true), (true, true), (false, false), (true, false)] {
        let (mut fleet, row) = measure(clients, relay_probe, client_probe).await;
        println!(
            "| {} | {} | {:.1} µs | {:.0} B |",
            if relay_probe { "3.5 s / 1.3 s" } else { "off" },
            if client_probe { "3 s (default)" } else { "off" },
            row.cpu_per_client_minute.as_secs_f64() * 1e6,
            row.bytes_per_client_minute
        );
        if relay_probe && client_probe {
            detections = silent_deaths(&mut fleet).await;
        }
    }
    println!(
        "relay saw a client's silent death after (s, with {clients} clients idle): {}",
        detections
            .iter()
            .map(|d| format!("{:.2}", d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    );
}
