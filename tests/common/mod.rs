//! Real swarms for the integration tests: a relay server, a client with the keeper, and a peer that dials the
//! client through the relay. Every wait is bounded; every spawned task ends with its handle.

#![allow(dead_code)] // Each test binary uses its own part of this module.

pub mod drive;
pub mod netns;
pub mod prober;
pub mod process;
pub mod recorded;

use std::{
    future::Future,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::StreamExt;
use libp2p::{
    core::{muxing::StreamMuxerBox, transport::MemoryTransport, upgrade::Version},
    identify,
    identity::Keypair,
    multiaddr::Protocol,
    noise, ping, plaintext, relay,
    swarm::{behaviour::toggle::Toggle, NetworkBehaviour, SwarmEvent},
    tcp, yamux, Multiaddr, PeerId, Swarm, SwarmBuilder, Transport,
};
use libp2p_relay_keeper::{Config, Event, RelayKeeper};
use tokio::task::JoinHandle;

/// How long any one wait in a test may take before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// The transport under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Net {
    Tcp,
    Memory,
}

impl Net {
    fn any_addr(self) -> Multiaddr {
        match self {
            Net::Tcp => "/ip4/127.0.0.1/tcp/0".parse().unwrap(),
            Net::Memory => Multiaddr::empty().with(Protocol::Memory(0)),
        }
    }
}

pub fn swarm<B: NetworkBehaviour>(
    net: Net,
    key: Keypair,
    behaviour: impl FnOnce(&Keypair, relay::client::Behaviour) -> B,
) -> Swarm<B> {
    swarm_with(net, key, None, behaviour)
}

/// [`swarm`], its outbound streams negotiated with `negotiation` instead of libp2p's default.
fn swarm_with<B: NetworkBehaviour>(
    net: Net,
    key: Keypair,
    negotiation: Option<Version>,
    behaviour: impl FnOnce(&Keypair, relay::client::Behaviour) -> B,
) -> Swarm<B> {
    let builder = SwarmBuilder::with_existing_identity(key).with_tokio();
    let config = |c: libp2p::swarm::Config| {
        let c = c.with_idle_connection_timeout(Duration::from_secs(10));
        match negotiation {
            Some(version) => c.with_substream_upgrade_protocol_override(version),
            None => c,
        }
    };
    match net {
        Net::Tcp => builder
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .unwrap()
            .with_relay_client(noise::Config::new, yamux::Config::default)
            .unwrap()
            .with_behaviour(|key, client| behaviour(key, client))
            .unwrap()
            .with_swarm_config(config)
            .build(),
        Net::Memory => builder
            .with_other_transport(|key| {
                MemoryTransport::default()
                    .upgrade(Version::V1)
                    .authenticate(plaintext::Config::new(key))
                    .multiplex(yamux::Config::default())
                    .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
            })
            .unwrap()
            .with_relay_client(
                |key: &Keypair| Ok::<_, std::convert::Infallible>(plaintext::Config::new(key)),
                yamux::Config::default,
            )
            .unwrap()
            .with_behaviour(|key, client| behaviour(key, client))
            .unwrap()
            .with_swarm_config(config)
            .build(),
    }
}

fn identify(key: &Keypair) -> identify::Behaviour {
    identify::Behaviour::new(identify::Config::new("/relay-keeper-test/1".into(), key.public()))
}

#[derive(NetworkBehaviour)]
pub struct RelayBehaviour {
    relay: relay::Behaviour,
    identify: identify::Behaviour,
    ping: Toggle<ping::Behaviour>,
}

/// How a relay learns the external address it needs before it offers HOP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum External {
    /// Set at start: reservations are accepted at once.
    AtStart,
    /// From identify's observed address, as rust-libp2p's relay-server example does: a freshly started relay
    /// refuses reservations until a peer has told it its address.
    FromIdentify,
}

/// A relay server running in its own task.
pub struct RelayServer {
    pub key: Keypair,
    pub peer_id: PeerId,
    /// The relay's address, ending in `/p2p/<peer id>`.
    pub addr: Multiaddr,
    /// When the relay got its external address, i.e. started to accept reservations.
    pub external_at: Arc<Mutex<Option<Instant>>>,
    /// Every answer the relay gave to a reservation request, in order.
    answers: tokio::sync::watch::Receiver<Vec<Answered>>,
    /// Peers whose connections the relay is to close.
    disconnect: tokio::sync::mpsc::UnboundedSender<PeerId>,
    kill: tokio::sync::oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// What a relay answered a reservation request with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Accepted, a renewal included.
    Accepted,
    /// Refused with `RESOURCE_LIMIT_EXCEEDED`: the relay is full, or the peer or its IP asked too often.
    ResourceLimitExceeded,
    /// Refused with another status.
    OtherRefusal,
}

/// A relay's answer to a reservation request of `peer`, when the relay's swarm reported it.
#[derive(Debug, Clone, Copy)]
pub struct Answered {
    pub peer: PeerId,
    pub answer: Answer,
    pub at: Instant,
}

impl Answered {
    /// The answer, if the relay's swarm `event` reports one.
    #[allow(deprecated)] // `relay::Event` has deprecated variants, matched by `_` only.
    fn read(event: &relay::Event) -> Option<Self> {
        let (peer, answer) = match event {
            relay::Event::ReservationReqAccepted { src_peer_id, .. } => (*src_peer_id, Answer::Accepted),
            relay::Event::ReservationReqDenied {
                src_peer_id,
                status: relay::StatusCode::ResourceLimitExceeded,
            } => (*src_peer_id, Answer::ResourceLimitExceeded),
            relay::Event::ReservationReqDenied { src_peer_id, .. } => (*src_peer_id, Answer::OtherRefusal),
            _ => return None,
        };
        Some(Self {
            peer,
            answer,
            at: Instant::now(),
        })
    }
}

impl RelayServer {
    /// Starts a relay at `listen` (an ephemeral address when `None`) with the given identity; it answers
    /// pings, as rust-libp2p's relay-server example does.
    pub async fn start(
        net: Net,
        key: Keypair,
        listen: Option<Multiaddr>,
        external: External,
        config: relay::Config,
    ) -> Self {
        Self::launch(
            net,
            key,
            listen,
            external,
            config,
            Some(ping::Config::new()),
            None,
        )
        .await
    }

    /// Starts a relay that does not speak ping, with a fresh identity, accepting reservations at once.
    pub async fn spawn_without_ping(net: Net) -> Self {
        let key = Keypair::generate_ed25519();
        Self::launch_with(net, key, None, None).await
    }

    async fn launch_with(
        net: Net,
        key: Keypair,
        ping: Option<ping::Config>,
        negotiation: Option<Version>,
    ) -> Self {
        Self::launch(
            net,
            key,
            None,
            External::AtStart,
            relay::Config::default(),
            ping,
            negotiation,
        )
        .await
    }

    /// Starts a relay whose `ping::Behaviour` pings every client as `ping` says, with a fresh identity,
    /// accepting reservations at once. Its streams are negotiated lazily, so each new ping stream carries its
    /// ping at once instead of waiting for the client's confirmation.
    pub async fn spawn_pinging(net: Net, ping: ping::Config) -> Self {
        let key = Keypair::generate_ed25519();
        Self::launch_with(net, key, Some(ping), Some(Version::V1Lazy)).await
    }

    async fn launch(
        net: Net,
        key: Keypair,
        listen: Option<Multiaddr>,
        external: External,
        config: relay::Config,
        ping: Option<ping::Config>,
        negotiation: Option<Version>,
    ) -> Self {
        let peer_id = key.public().to_peer_id();
        let mut swarm = swarm_with(net, key.clone(), negotiation, |key, _| RelayBehaviour {
            relay: relay::Behaviour::new(key.public().to_peer_id(), config),
            identify: identify(key),
            ping: ping.map(ping::Behaviour::new).into(),
        });
        let listener = swarm.listen_on(listen.unwrap_or_else(|| net.any_addr())).unwrap();
        let transport_addr = within("relay listening", async {
            loop {
                if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                    break address;
                }
            }
        })
        .await;
        // A second address, as real relays have several (upstream's listens on TCP and QUIC); identify tells
        // clients about both, and the keeper must still dial only the one it was given.
        if net == Net::Tcp {
            swarm.listen_on(net.any_addr()).unwrap();
        }
        let external_at = Arc::new(Mutex::new(None));
        if external == External::AtStart {
            swarm.add_external_address(transport_addr.clone());
            *external_at.lock().unwrap() = Some(Instant::now());
        }
        let external_set = external_at.clone();
        let (kill, mut killed) = tokio::sync::oneshot::channel();
        let (answered, answers) = tokio::sync::watch::channel(Vec::new());
        let (disconnect, mut to_disconnect) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut killed => break,
                    Some(peer) = to_disconnect.recv() => {
                        let _ = swarm.disconnect_peer_id(peer);
                    }
                    event = swarm.select_next_some() => match event {
                        SwarmEvent::Behaviour(RelayBehaviourEvent::Identify(identify::Event::Received {
                            info, ..
                        })) if external == External::FromIdentify => {
                            swarm.add_external_address(info.observed_addr);
                            external_set.lock().unwrap().get_or_insert_with(Instant::now);
                        }
                        SwarmEvent::Behaviour(RelayBehaviourEvent::Relay(event)) => {
                            if let Some(answer) = Answered::read(&event) {
                                answered.send_modify(|all| all.push(answer));
                            }
                        }
                        _ => {}
                    },
                }
            }
            // A memory port is freed only by removing its listener; connections still drop with the swarm,
            // without any goodbye to the peers.
            swarm.remove_listener(listener);
        });
        Self {
            key,
            peer_id,
            addr: transport_addr.with(Protocol::P2p(peer_id)),
            external_at,
            answers,
            disconnect,
            kill,
            task,
        }
    }

    /// Starts a relay with a fresh identity on an ephemeral address as rust-libp2p's relay-server example runs:
    /// it refuses reservations until identify told it its address.
    pub async fn like_upstream(net: Net) -> Self {
        Self::start(
            net,
            Keypair::generate_ed25519(),
            None,
            External::FromIdentify,
            relay::Config::default(),
        )
        .await
    }

    /// Starts a relay with a fresh identity on an ephemeral address, accepting reservations at once.
    pub async fn spawn(net: Net) -> Self {
        Self::start(
            net,
            Keypair::generate_ed25519(),
            None,
            External::AtStart,
            relay::Config::default(),
        )
        .await
    }

    /// Starts a relay with a fresh identity on an ephemeral address, accepting reservations at once, with
    /// `config`'s limits.
    pub async fn spawn_with(net: Net, config: relay::Config) -> Self {
        Self::start(net, Keypair::generate_ed25519(), None, External::AtStart, config).await
    }

    /// The relay's answers to `peer`'s reservation requests so far, in order.
    pub fn answers_to(&self, peer: PeerId) -> Vec<Answered> {
        self.answers
            .borrow()
            .iter()
            .filter(|a| a.peer == peer)
            .copied()
            .collect()
    }

    /// When the relay refused `peer`'s reservation requests with `RESOURCE_LIMIT_EXCEEDED`, in order.
    pub fn limit_refusals_of(&self, peer: PeerId) -> Vec<Instant> {
        let answers = self.answers_to(peer).into_iter();
        answers
            .filter(|a| a.answer == Answer::ResourceLimitExceeded)
            .map(|a| a.at)
            .collect()
    }

    /// Resolves once the relay's answers to `peer` satisfy `done` (drive the peer meanwhile, e.g. with
    /// [`Client::serve_while`]).
    pub async fn answered(&self, peer: PeerId, mut done: impl FnMut(&[Answered]) -> bool) {
        let mut answers = self.answers.clone();
        let mine = |all: &Vec<Answered>| all.iter().filter(|a| a.peer == peer).copied().collect::<Vec<_>>();
        // The sender lives as long as the relay's task, which outlives any wait of a test.
        let _ = answers.wait_for(|all| done(&mine(all))).await;
    }

    /// The relay closes every connection to `peer`, as a relay that sheds a peer or a link that drops does.
    pub fn disconnect(&self, peer: PeerId) {
        let _ = self.disconnect.send(peer);
    }

    /// The address the relay listens on, without its peer id.
    pub fn transport_addr(&self) -> Multiaddr {
        let mut addr = self.addr.clone();
        addr.pop();
        addr
    }

    /// Kills the relay: its swarm, with every connection, is dropped at once.
    pub async fn kill(self) -> (Keypair, Multiaddr) {
        let transport_addr = self.transport_addr();
        let _ = self.kill.send(());
        let _ = self.task.await;
        (self.key, transport_addr)
    }

    /// Kills the relay and starts it again with the same identity and address.
    pub async fn restart(self, net: Net, external: External) -> Self {
        let (key, addr) = self.kill().await;
        Self::start(net, key, Some(addr), external, relay::Config::default()).await
    }
}

#[derive(NetworkBehaviour)]
pub struct ClientBehaviour {
    pub relay: relay::client::Behaviour,
    pub keeper: RelayKeeper,
    pub identify: Toggle<identify::Behaviour>,
    /// The application's own ping, as the `dcutr` example runs it.
    pub ping: Toggle<ping::Behaviour>,
}

/// A node behind "NAT": reachable only through the relays its keeper keeps.
pub struct Client {
    pub swarm: Swarm<ClientBehaviour>,
    /// Every keeper event so far, in order.
    pub events: Vec<Event>,
    /// When each of `events` came out of the swarm.
    pub event_times: Vec<Instant>,
    /// Every reservation renewal the relay client reported.
    pub renewals: usize,
    /// Dials the swarm started to each peer.
    pub dials: Vec<PeerId>,
    /// Failed dials to each peer, with the addresses each one tried.
    pub dial_errors: Vec<(PeerId, Vec<Multiaddr>)>,
    /// Every error the application's event loop saw on a listener (a refused reservation closes its circuit
    /// listener with one), as `Debug` text.
    pub listener_errors: Vec<String>,
}

/// A keeper config with millisecond backoff and a seeded jitter, for tests.
pub fn fast_config() -> Config {
    Config::default()
        .with_base_delay(Duration::from_millis(20))
        .with_max_delay(Duration::from_millis(200))
        .with_rng_seed(1)
}

impl Client {
    pub fn new(net: Net, config: Config, with_identify: bool) -> Self {
        Self::with_keeper(net, RelayKeeper::new(config), with_identify)
    }

    pub fn with_keeper(net: Net, keeper: RelayKeeper, with_identify: bool) -> Self {
        let swarm = swarm(net, Keypair::generate_ed25519(), |key, relay| ClientBehaviour {
            relay,
            keeper,
            identify: with_identify.then(|| identify(key)).into(),
            ping: None.into(),
        });
        Self {
            swarm,
            events: Vec::new(),
            event_times: Vec::new(),
            renewals: 0,
            dials: Vec::new(),
            dial_errors: Vec::new(),
            listener_errors: Vec::new(),
        }
    }

    pub fn peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    pub fn keeper(&mut self) -> &mut RelayKeeper {
        &mut self.swarm.behaviour_mut().keeper
    }

    fn record(&mut self, event: SwarmEvent<ClientBehaviourEvent>) -> Option<Event> {
        match event {
            SwarmEvent::Behaviour(ClientBehaviourEvent::Keeper(event)) => {
                self.events.push(event.clone());
                self.event_times.push(Instant::now());
                return Some(event);
            }
            SwarmEvent::Behaviour(ClientBehaviourEvent::Relay(
                relay::client::Event::ReservationReqAccepted { renewal: true, .. },
            )) => self.renewals += 1,
            SwarmEvent::Dialing {
                peer_id: Some(peer), ..
            } => self.dials.push(peer),
            SwarmEvent::ListenerClosed {
                reason: Err(error), ..
            }
            | SwarmEvent::ListenerError { error, .. } => self.listener_errors.push(format!("{error:?}")),
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer),
                error,
                ..
            } => {
                let tried = match error {
                    libp2p::swarm::DialError::Transport(errors) => {
                        errors.into_iter().map(|(addr, _)| addr).collect()
                    }
                    _ => Vec::new(),
                };
                self.dial_errors.push((peer, tried));
            }
            _ => {}
        }
        None
    }

    /// Drives the swarm until the keeper emits an event `pick` returns something for.
    pub async fn wait_for<T>(&mut self, what: &str, mut pick: impl FnMut(&Event) -> Option<T>) -> T {
        within(what, async {
            loop {
                let event = self.swarm.select_next_some().await;
                if let Some(found) = self.record(event).as_ref().and_then(&mut pick) {
                    return found;
                }
            }
        })
        .await
    }

    /// Drives the swarm until a direct connection to `peer` is established.
    pub async fn wait_connection(&mut self, peer: PeerId) {
        within("a connection", async {
            loop {
                let event = self.swarm.select_next_some().await;
                let hit =
                    matches!(&event, SwarmEvent::ConnectionEstablished { peer_id, .. } if *peer_id == peer);
                self.record(event);
                if hit {
                    return;
                }
            }
        })
        .await
    }

    /// Drives the swarm until the keeper reports a live reservation on `relay`.
    pub async fn wait_reserved(&mut self, relay: PeerId) -> Multiaddr {
        self.wait_for("reservation", |e| match e {
            Event::Reserved { relay: r, addr } if *r == relay => Some(addr.clone()),
            _ => None,
        })
        .await
    }

    /// Drives the swarm while `work` runs, so that the client answers it.
    pub async fn serve_while<F: Future>(&mut self, what: &str, work: F) -> F::Output {
        let mut work = std::pin::pin!(work);
        within(what, async {
            loop {
                tokio::select! {
                    output = &mut work => return output,
                    event = self.swarm.select_next_some() => { self.record(event); }
                }
            }
        })
        .await
    }

    /// Drives the swarm for `duration`, for tests that check that something does *not* happen.
    pub async fn serve_for(&mut self, duration: Duration) {
        let _ = tokio::time::timeout(duration, async {
            loop {
                let event = self.swarm.select_next_some().await;
                self.record(event);
            }
        })
        .await;
    }

    /// The keeper's events so far, one line each, for a failing assertion's message.
    pub fn event_lines(&self) -> String {
        self.events.iter().map(|e| format!("\n  {e}")).collect()
    }

    pub fn count(&self, pick: impl Fn(&Event) -> bool) -> usize {
        self.events.iter().filter(|e| pick(e)).count()
    }
}

/// A fresh peer dials `target` at its circuit address `addr` (as the keeper reported it, ending in
/// `/p2p-circuit/p2p/<target>`); resolves once the relayed connection is up.
pub async fn reach_through_relay(net: Net, addr: Multiaddr, target: PeerId) {
    let mut dialer = swarm(net, Keypair::generate_ed25519(), |_, relay| relay);
    dialer.dial(addr.clone()).unwrap();
    loop {
        match dialer.select_next_some().await {
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } if peer_id == target => {
                assert!(endpoint.is_relayed(), "reached {target} through the relay");
                return;
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer),
                error,
                ..
            } if peer == target => {
                panic!("dialing {addr} failed: {error}")
            }
            _ => {}
        }
    }
}

/// Awaits `work`, failing the test with `what` if it takes longer than [`TIMEOUT`].
pub async fn within<F: Future>(what: &str, work: F) -> F::Output {
    tokio::time::timeout(TIMEOUT, work)
        .await
        .unwrap_or_else(|_| panic!("timed out after {TIMEOUT:?} waiting for {what}"))
}

/// A TCP forwarder on 127.0.0.1 in front of a relay that can fall silent: every connection through it stays
/// open, but no byte passes any more, in either direction (as when the relay's host vanished or its route
/// became a black hole) or only toward the relay (a broken uplink). (Stopping the relay's swarm would not
/// do: libp2p runs each connection in a task of its own, which keeps answering.)
pub struct SilentLink {
    /// The relay's address through the forwarder, ending in `/p2p/<relay id>`.
    pub addr: Multiaddr,
    toward_relay: Arc<std::sync::atomic::AtomicBool>,
    from_relay: Arc<std::sync::atomic::AtomicBool>,
    _task: AbortOnDrop,
}

impl SilentLink {
    pub async fn in_front_of(relay: &RelayServer) -> Self {
        Self::to(&relay.addr).await
    }

    /// A forwarder to the relay at `relay`, a TCP address on 127.0.0.1 ending in `/p2p/<relay id>`.
    pub async fn to(relay: &Multiaddr) -> Self {
        let (target, peer) = socket_and_peer(relay);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let toward_relay = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let from_relay = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (up, down) = (toward_relay.clone(), from_relay.clone());
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let Ok(outbound) = tokio::net::TcpStream::connect(target).await else {
                    continue;
                };
                let (in_read, in_write) = inbound.into_split();
                let (out_read, out_write) = outbound.into_split();
                tokio::spawn(forward(in_read, out_write, up.clone()));
                tokio::spawn(forward(out_read, in_write, down.clone()));
            }
        });
        Self {
            addr: format!("/ip4/127.0.0.1/tcp/{port}/p2p/{peer}").parse().unwrap(),
            toward_relay,
            from_relay,
            _task: AbortOnDrop(task),
        }
    }

    /// From now on nothing passes; the connections stay open.
    pub fn silence(&self) {
        self.silence_toward_relay();
        self.from_relay.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// From now on nothing the client sends reaches the relay, while the relay's bytes still arrive.
    pub fn silence_toward_relay(&self) {
        self.toward_relay.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Copies bytes until either side closes, or holds both sides open without copying once `silent` is set.
async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    silent: Arc<std::sync::atomic::AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if silent.load(std::sync::atomic::Ordering::SeqCst) {
            // Hold both halves: the peer sees an open connection that never answers.
            std::future::pending::<()>().await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// A forwarder on 127.0.0.1 in front of a relay that delays every byte by `one_way` in each direction, order
/// kept, as a slow link does (a congested mobile uplink, a satellite hop): the round trip through it is twice
/// `one_way` more than the relay's own. TCP (bytes delayed in order) or UDP for QUIC (each datagram delayed;
/// one client per forwarder), after the relay's address.
pub struct DelayLink {
    /// The relay's address through the forwarder, ending in `/p2p/<relay id>`.
    pub addr: Multiaddr,
    /// The delay each way, in microseconds; it may change while the link is up.
    one_way: Arc<std::sync::atomic::AtomicU64>,
    _task: AbortOnDrop,
}

impl DelayLink {
    pub async fn in_front_of(relay: &RelayServer, one_way: Duration) -> Self {
        Self::to(&relay.addr, one_way).await
    }

    /// A delayed link to the relay at `relay`, a TCP or QUIC address on 127.0.0.1 ending in
    /// `/p2p/<relay id>`, such as a `relay_server` process's.
    pub async fn to(relay: &Multiaddr, one_way: Duration) -> Self {
        let (target, peer) = socket_and_peer(relay);
        let one_way = Arc::new(std::sync::atomic::AtomicU64::new(one_way.as_micros() as u64));
        let quic = relay.iter().any(|p| matches!(p, Protocol::QuicV1));
        let (addr, task) = if quic {
            let (port, task) = delay_datagrams(target, one_way.clone()).await;
            (format!("/ip4/127.0.0.1/udp/{port}/quic-v1/p2p/{peer}"), task)
        } else {
            let (port, task) = delay_connections(target, one_way.clone()).await;
            (format!("/ip4/127.0.0.1/tcp/{port}/p2p/{peer}"), task)
        };
        Self {
            addr: addr.parse().unwrap(),
            one_way,
            _task: AbortOnDrop(task),
        }
    }

    /// From now on every byte is delayed by `one_way` in each direction.
    pub fn set_one_way(&self, one_way: Duration) {
        self.one_way
            .store(one_way.as_micros() as u64, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Accepts TCP connections on an ephemeral port of 127.0.0.1 and forwards each to `target`, delayed.
async fn delay_connections(
    target: std::net::SocketAddr,
    by: Arc<std::sync::atomic::AtomicU64>,
) -> (u16, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let Ok(outbound) = tokio::net::TcpStream::connect(target).await else {
                continue;
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let (in_read, in_write) = inbound.into_split();
            let (out_read, out_write) = outbound.into_split();
            tokio::spawn(delay(in_read, out_write, by.clone()));
            tokio::spawn(delay(out_read, in_write, by.clone()));
        }
    });
    (port, task)
}

/// Forwards the datagrams of one client on an ephemeral UDP port of 127.0.0.1 to `target` and the answers
/// back, each datagram `by` after it arrived.
async fn delay_datagrams(
    target: std::net::SocketAddr,
    by: Arc<std::sync::atomic::AtomicU64>,
) -> (u16, JoinHandle<()>) {
    type Due = (tokio::time::Instant, Vec<u8>);
    let front = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let back = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    back.connect(target).await.unwrap();
    let port = front.local_addr().unwrap().port();
    let (client_tx, client) = tokio::sync::watch::channel(None::<std::net::SocketAddr>);
    let task = tokio::spawn(async move {
        let (to_relay, mut due_at_relay) = tokio::sync::mpsc::unbounded_channel::<Due>();
        let (to_client, mut due_at_client) = tokio::sync::mpsc::unbounded_channel::<Due>();
        let sender = back.clone();
        let _relay_writer = AbortOnDrop(tokio::spawn(async move {
            while let Some((at, datagram)) = due_at_relay.recv().await {
                tokio::time::sleep_until(at).await;
                let _ = sender.send(&datagram).await;
            }
        }));
        let sender = front.clone();
        let _client_writer = AbortOnDrop(tokio::spawn(async move {
            while let Some((at, datagram)) = due_at_client.recv().await {
                tokio::time::sleep_until(at).await;
                let client = *client.borrow();
                if let Some(client) = client {
                    let _ = sender.send_to(&datagram, client).await;
                }
            }
        }));
        let (mut from_client, mut from_relay) = (vec![0u8; 65_536], vec![0u8; 65_536]);
        loop {
            let due = || {
                tokio::time::Instant::now()
                    + Duration::from_micros(by.load(std::sync::atomic::Ordering::SeqCst))
            };
            // An error (the relay's port refusing while it restarts) drops nothing but that datagram.
            tokio::select! {
                received = front.recv_from(&mut from_client) => if let Ok((n, source)) = received {
                    client_tx.send_replace(Some(source));
                    let _ = to_relay.send((due(), from_client[..n].to_vec()));
                },
                received = back.recv(&mut from_relay) => if let Ok(n) = received {
                    let _ = to_client.send((due(), from_relay[..n].to_vec()));
                },
            }
        }
    });
    (port, task)
}

/// A task that ends with its owner.
pub struct AbortOnDrop(pub JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Copies bytes, each chunk `by` (in microseconds, as it is when the chunk is read) after it was read, in
/// order, until either side closes.
async fn delay(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    by: Arc<std::sync::atomic::AtomicU64>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (chunks, mut due) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((at, chunk)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
    });
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let by = Duration::from_micros(by.load(std::sync::atomic::Ordering::SeqCst));
        if chunks
            .send((tokio::time::Instant::now() + by, buf[..n].to_vec()))
            .is_err()
        {
            break;
        }
    }
    drop(chunks);
    let _ = writer.await;
}

/// The socket address and the peer id of a relay's address (`/ip4/.../tcp/.../p2p/...` or
/// `/ip4/.../udp/.../quic-v1/p2p/...`).
fn socket_and_peer(relay: &Multiaddr) -> (std::net::SocketAddr, PeerId) {
    let (mut ip, mut port, mut peer) = (std::net::Ipv4Addr::LOCALHOST, 0, None);
    for protocol in relay {
        match protocol {
            Protocol::Ip4(at) => ip = at,
            Protocol::Tcp(at) | Protocol::Udp(at) => port = at,
            Protocol::P2p(id) => peer = Some(id),
            _ => {}
        }
    }
    let peer = peer.unwrap_or_else(|| panic!("{relay} ends in /p2p/<relay id>"));
    ((ip, port).into(), peer)
}

/// The log lines the code under test writes on this thread while the capture lives: a test's own subscriber,
/// so tests running beside it do not mix in. Works on tokio's current-thread runtime, where the swarm is
/// polled on the test's thread.
pub struct LogCapture {
    buffer: Arc<Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

impl LogCapture {
    pub fn start() -> Self {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || CaptureWriter(sink.clone()))
            .finish();
        Self {
            buffer,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    /// How many captured lines contain `text`.
    pub fn count(&self, text: &str) -> usize {
        String::from_utf8_lossy(&self.buffer.lock().unwrap())
            .lines()
            .filter(|l| l.contains(text))
            .count()
    }
}

struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for CaptureWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
