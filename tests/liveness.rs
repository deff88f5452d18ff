//! How fast a dead relay is noticed, with real swarms on loopback TCP: the keeper's liveness probe, the time
//! limit on dials, and dials that go only where the user said.

mod common;

use std::time::Duration;

use common::{fast_config, within, AbortOnDrop, Client, External, Net, RelayServer, SilentLink};
use either::Either;
use libp2p::{
    futures::StreamExt,
    identity::Keypair,
    ping, relay,
    swarm::{NetworkBehaviour, SwarmEvent},
    Multiaddr, PeerId, Swarm,
};
use libp2p_relay_keeper::{CauseKind, Event, RelayKeeper, RelayStatus};
use libp2p_swarm_test::SwarmExt;

/// The cause of the next scheduled retry.
async fn next_cause(client: &mut Client, what: &str) -> CauseKind {
    client
        .wait_for(what, |e| match e {
            Event::ReconnectScheduled { cause, .. } => Some(cause.kind),
            _ => None,
        })
        .await
}

/// A forwarder in front of `relay` and a client reserved through it, probing after 100 ms unheard with a
/// 300 ms floor.
async fn probed_through_a_link(relay: &RelayServer) -> (SilentLink, Client, PeerId) {
    let link = SilentLink::in_front_of(relay).await;
    let config = fast_config()
        .with_probe_interval(Duration::from_millis(100))
        .with_probe_timeout(Duration::from_millis(300));
    let mut client = Client::new(Net::Tcp, config, false);
    let relay_id = client.keeper().add_relay(link.addr.clone()).unwrap();
    client.wait_reserved(relay_id).await;
    (link, client, relay_id)
}

#[tokio::test]
async fn a_relay_that_falls_silent_is_noticed_by_the_probe_and_restored() {
    let relay = RelayServer::spawn(Net::Tcp).await;
    let (link, mut client, relay_id) = probed_through_a_link(&relay).await;

    // The connection stays open and TCP keeps acknowledging, but nothing answers: only a probe can tell.
    link.silence();
    assert_eq!(next_cause(&mut client, "the loss").await, CauseKind::ProbeTimeout);

    // The relay is still there at its own address.
    client.keeper().add_relay(relay.addr.clone()).unwrap();
    client.wait_reserved(relay_id).await;
    relay.kill().await;
}

#[tokio::test]
async fn a_relay_that_still_pings_but_no_longer_hears_the_node_is_noticed() {
    // The relay's pings time out fast and each next one goes on a new stream, so they keep arriving: every
    // one is answered, and every answer is lost on the way back.
    let pings = ping::Config::new()
        .with_interval(Duration::from_millis(20))
        .with_timeout(Duration::from_millis(50));
    let relay = RelayServer::spawn_pinging(Net::Tcp, pings).await;
    let (link, mut client, _) = probed_through_a_link(&relay).await;

    link.silence_toward_relay();
    assert_eq!(next_cause(&mut client, "the loss").await, CauseKind::ProbeTimeout);
    relay.kill().await;
}

#[tokio::test]
async fn without_the_probe_a_silent_relay_goes_unnoticed() {
    let relay = RelayServer::spawn(Net::Tcp).await;
    let link = SilentLink::in_front_of(&relay).await;
    let mut client = Client::new(Net::Tcp, fast_config().with_probe(false), false);
    let relay_id = client.keeper().add_relay(link.addr.clone()).unwrap();
    client.wait_reserved(relay_id).await;

    link.silence();
    client.serve_for(Duration::from_secs(1)).await;
    assert_eq!(client.keeper().status(&relay_id), Some(RelayStatus::Reserved));
    relay.kill().await;
}

/// libp2p-ping 0.48 stops answering pings on a connection whose other end does not answer its own, so a
/// relay running `ping::Behaviour` would starve the probe of a client that runs none; the keeper answers.
#[tokio::test]
async fn a_client_without_ping_is_still_answered_by_a_relay_that_pings() {
    let relay = RelayServer::spawn(Net::Tcp).await;
    let config = fast_config()
        .with_probe_interval(Duration::from_millis(100))
        .with_probe_timeout(Duration::from_millis(300));
    let mut client = Client::new(Net::Tcp, config, false);
    let relay_id = client.keeper().add_relay(relay.addr.clone()).unwrap();
    client.wait_reserved(relay_id).await;

    client.serve_for(Duration::from_secs(2)).await;
    assert_eq!(client.count(|e| matches!(e, Event::ReconnectScheduled { .. })), 0);
    relay.kill().await;
}

#[tokio::test]
async fn a_dial_that_hangs_is_aborted_and_retried() {
    // Accepts TCP connections and never says a word: the security handshake hangs, as a dial to a relay
    // behind a black hole (or a QUIC dial to a dead one) would.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut connections = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            connections.push(stream);
        }
    });
    let relay_id = Keypair::generate_ed25519().public().to_peer_id();
    let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}/p2p/{relay_id}")
        .parse()
        .unwrap();
    let config = fast_config().with_dial_timeout(Duration::from_millis(200));
    let mut client = Client::new(Net::Tcp, config, false);
    client.keeper().add_relay(addr).unwrap();

    assert_eq!(
        next_cause(&mut client, "the first timeout").await,
        CauseKind::DialTimeout
    );
    assert_eq!(
        next_cause(&mut client, "the retry's timeout").await,
        CauseKind::DialTimeout
    );
    assert!(
        client.dials.len() >= 2,
        "the retry dialed again: {:?}",
        client.dials
    );
    held.abort();
}

#[tokio::test]
async fn the_keeper_dials_only_the_address_it_was_given() {
    let key = Keypair::generate_ed25519();
    let relay = RelayServer::start(Net::Tcp, key, None, External::AtStart, relay::Config::default()).await;
    // identify tells the client about the relay's second address; the keeper must not dial it.
    let mut client = Client::new(Net::Tcp, fast_config().with_max_attempts(Some(3)), true);
    let relay_id = client.keeper().add_relay(relay.addr.clone()).unwrap();
    client.wait_reserved(relay_id).await;
    let given: Multiaddr = relay.transport_addr();

    relay.kill().await;
    client
        .wait_for("giving up", |e| matches!(e, Event::GaveUp { .. }).then_some(()))
        .await;
    let tried: Vec<&Multiaddr> = client
        .dial_errors
        .iter()
        .filter(|(peer, _)| *peer == relay_id)
        .flat_map(|(_, addrs)| addrs)
        .collect();
    assert!(!tried.is_empty());
    for addr in tried {
        assert!(addr.to_string().starts_with(&given.to_string()), "dialed {addr}");
    }
}

#[tokio::test]
async fn a_dial_that_is_refused_fails_fast() {
    let relay = RelayServer::spawn(Net::Tcp).await;
    let mut client = Client::new(Net::Tcp, fast_config(), false);
    let relay_id = client.keeper().add_relay(relay.addr.clone()).unwrap();
    client.wait_reserved(relay_id).await;
    relay.kill().await;
    assert_eq!(
        next_cause(&mut client, "the loss").await,
        CauseKind::ConnectionLost
    );
    let cause = within("a refused retry", async {
        next_cause(&mut client, "the refused retry").await
    })
    .await;
    assert_eq!(cause, CauseKind::DialFailed);
}

/// A link with a round trip of `rtt` that still answers: with the default probe, and a dial limit and
/// connection timeout that fit the link, the keeper reserves once and never cuts it.
async fn a_slow_link_is_never_cut(rtt: Duration) {
    let relay = RelayServer::spawn(Net::Tcp).await;
    let link = common::DelayLink::in_front_of(&relay, rtt / 2).await;
    let config = fast_config().with_dial_timeout(Duration::from_secs(30));
    let mut client = Client::new(Net::Tcp, config, false);
    let relay_id = client.keeper().add_relay(link.addr.clone()).unwrap();
    client.wait_reserved(relay_id).await;
    // Long enough for a handful of probes at the default interval, the first ones while the estimate forms.
    client.serve_for(Duration::from_secs(20)).await;
    assert_eq!(
        client.count(|e| matches!(e, Event::ReconnectScheduled { .. })),
        0,
        "round trip {rtt:?}: {:?}",
        client.events
    );
    assert_eq!(client.keeper().status(&relay_id), Some(RelayStatus::Reserved));
    relay.kill().await;
}

#[tokio::test]
async fn a_link_with_a_1_2_s_round_trip_is_never_cut() {
    a_slow_link_is_never_cut(Duration::from_millis(1200)).await;
}

#[tokio::test]
async fn a_link_with_a_2_s_round_trip_is_never_cut() {
    a_slow_link_is_never_cut(Duration::from_secs(2)).await;
}

/// The keeper before the application's `ping::Behaviour` in the derived behaviour, as the docs advise: it gets
/// the peer's pings, answers them and is spared probes by them.
#[derive(NetworkBehaviour)]
struct KeeperFirst {
    keeper: RelayKeeper,
    ping: ping::Behaviour,
}

/// The other order: the application's ping gets the peer's pings. Both still work, the probe on its stream
/// and the application's ping on its own.
#[derive(NetworkBehaviour)]
struct PingFirst {
    ping: ping::Behaviour,
    keeper: RelayKeeper,
}

/// A swarm with the keeper, and perhaps the application's ping, as the tests below drive it.
trait Probed: NetworkBehaviour + Send
where
    Self::ToSwarm: std::fmt::Debug,
{
    fn keeper(&mut self) -> &mut RelayKeeper;
    /// What an event of the swarm's is: a result of the application's ping, or the keeper's.
    fn split(event: Self::ToSwarm) -> Either<Result<Duration, ping::Failure>, Event>;
}

/// The two orders' [`Probed`], alike but for their names.
macro_rules! probed {
    ($behaviour:ident, $event:ident) => {
        impl Probed for $behaviour {
            fn keeper(&mut self) -> &mut RelayKeeper {
                &mut self.keeper
            }

            fn split(event: $event) -> Either<Result<Duration, ping::Failure>, Event> {
                match event {
                    $event::Keeper(event) => Either::Right(event),
                    $event::Ping(event) => Either::Left(event.result),
                }
            }
        }
    };
}

probed!(KeeperFirst, KeeperFirstEvent);
probed!(PingFirst, PingFirstEvent);

fn keeper_of<B: Probed>(swarm: &mut Swarm<B>) -> &mut RelayKeeper
where
    B::ToSwarm: std::fmt::Debug,
{
    swarm.behaviour_mut().keeper()
}

/// What a [`Probed`] swarm reported.
#[derive(Debug, Default)]
struct Seen {
    pings: usize,
    ping_failures: usize,
    causes: Vec<CauseKind>,
}

impl Seen {
    /// Drives the swarm for one event, counting it.
    async fn next<B: Probed>(&mut self, swarm: &mut Swarm<B>) -> Option<Event>
    where
        B::ToSwarm: std::fmt::Debug,
    {
        let SwarmEvent::Behaviour(event) = swarm.select_next_some().await else {
            return None;
        };
        match B::split(event) {
            Either::Left(Ok(_)) => self.pings += 1,
            Either::Left(Err(_)) => self.ping_failures += 1,
            Either::Right(event) => {
                if let Event::ReconnectScheduled { cause, .. } = &event {
                    self.causes.push(cause.kind);
                }
                return Some(event);
            }
        }
        None
    }

    async fn drive_for<B: Probed>(&mut self, swarm: &mut Swarm<B>, duration: Duration)
    where
        B::ToSwarm: std::fmt::Debug,
    {
        let _ = tokio::time::timeout(duration, async {
            loop {
                self.next(swarm).await;
            }
        })
        .await;
    }

    async fn until_status<B: Probed>(&mut self, swarm: &mut Swarm<B>, peer: PeerId, status: RelayStatus)
    where
        B::ToSwarm: std::fmt::Debug,
    {
        while keeper_of(swarm).status(&peer) != Some(status) {
            self.next(swarm).await;
        }
    }

    /// Drives the swarm until the keeper schedules a retry.
    async fn until_loss<B: Probed>(&mut self, swarm: &mut Swarm<B>)
    where
        B::ToSwarm: std::fmt::Debug,
    {
        while !matches!(self.next(swarm).await, Some(Event::ReconnectScheduled { .. })) {}
    }
}

/// A peer running `peer_side` on libp2p-swarm-test's transport, kept by a keeper with reservations off (so no
/// relay client is needed) and the given probe, through a [`SilentLink`] over TCP; returns once the keeper is
/// connected, with the peer's swarm driven in a task of its own.
async fn kept_through_a_link<B: Probed, P>(
    probe_interval: Duration,
    probe_timeout: Duration,
    peer_side: P,
    node: impl FnOnce(RelayKeeper) -> B,
) -> (Swarm<B>, PeerId, Seen, (SilentLink, AbortOnDrop))
where
    B::ToSwarm: std::fmt::Debug,
    P: NetworkBehaviour + Send,
    P::ToSwarm: std::fmt::Debug,
{
    let mut peer = Swarm::new_ephemeral_tokio(|_| peer_side);
    let (_, tcp) = peer.listen().with_tcp_addr_external().await;
    let peer_id = *peer.local_peer_id();
    let peer_task = AbortOnDrop(tokio::spawn(peer.loop_on_next()));
    let link = SilentLink::to(&tcp.with_p2p(peer_id).unwrap()).await;
    let config = fast_config()
        .with_reservations(false)
        .with_probe_interval(probe_interval)
        .with_probe_timeout(probe_timeout);
    let mut swarm = Swarm::new_ephemeral_tokio(|_| node(RelayKeeper::new(config)));
    keeper_of(&mut swarm).add_relay(link.addr.clone()).unwrap();
    let mut seen = Seen::default();
    within(
        "the connection",
        seen.until_status(&mut swarm, peer_id, RelayStatus::Connected),
    )
    .await;
    (swarm, peer_id, seen, (link, peer_task))
}

/// The keeper's probe and the application's `ping::Behaviour` on one connection to a peer that runs
/// `ping::Behaviour`, whose responder serves one stream per connection and resets the older one: the probe
/// and the application's ping reset each other's streams, and neither may take that for a dead link. Over
/// TCP through a [`SilentLink`], so that the probe must still see a silent death afterwards.
async fn the_probe_and_the_applications_ping_live_side_by_side<B: Probed>(
    node: impl FnOnce(RelayKeeper, ping::Behaviour) -> B,
) where
    B::ToSwarm: std::fmt::Debug,
{
    let every_second = || ping::Behaviour::new(ping::Config::new().with_interval(Duration::from_secs(1)));
    let (mut swarm, peer_id, mut seen, (link, _peer_task)) = kept_through_a_link(
        Duration::from_millis(300),
        Duration::from_secs(1),
        every_second(),
        |keeper| node(keeper, every_second()),
    )
    .await;
    seen.drive_for(&mut swarm, Duration::from_secs(5)).await;
    // Each eviction costs the application's ping one silent round (libp2p-ping forgives one failure in a
    // row), so it succeeds less often than every second, but it never reports a failure.
    assert!(seen.pings >= 1, "the application's ping works: {seen:?}");
    assert_eq!(seen.ping_failures, 0, "{seen:?}");
    assert!(seen.causes.is_empty(), "nothing cut the live link: {seen:?}");
    assert_eq!(
        keeper_of(&mut swarm).status(&peer_id),
        Some(RelayStatus::Connected)
    );
    // And the probe still sees a silent death.
    link.silence();
    within("the probe noticing the silent link", seen.until_loss(&mut swarm)).await;
    assert_eq!(seen.causes, [CauseKind::ProbeTimeout]);
}

#[tokio::test]
async fn the_probe_and_the_applications_ping_work_with_the_keeper_first_in_the_behaviour() {
    the_probe_and_the_applications_ping_live_side_by_side(|keeper, ping| KeeperFirst { keeper, ping }).await;
}

#[tokio::test]
async fn the_probe_and_the_applications_ping_work_with_ping_first_in_the_behaviour() {
    the_probe_and_the_applications_ping_live_side_by_side(|keeper, ping| PingFirst { ping, keeper }).await;
}

/// The rule the probe follows: a ping answered after its timeout (late) is no death; only twice the timeout
/// of silence is. The link's round trip jumps from loopback's to 1.8 s, between the timeout the probe has
/// settled on (its 1.3 s floor) and twice that: the answers come late, and the link is not cut.
#[tokio::test]
async fn a_late_answer_is_not_a_dead_link() {
    let relay = RelayServer::spawn(Net::Tcp).await;
    let link = common::DelayLink::in_front_of(&relay, Duration::ZERO).await;
    let config = fast_config()
        .with_probe_interval(Duration::from_millis(300))
        .with_dial_timeout(Duration::from_secs(30));
    let mut client = Client::new(Net::Tcp, config, false);
    let relay_id = client.keeper().add_relay(link.addr.clone()).unwrap();
    client.wait_reserved(relay_id).await;
    // A few answers on loopback: the timeout settles on its floor.
    client.serve_for(Duration::from_secs(2)).await;
    link.set_one_way(Duration::from_millis(900));
    client.serve_for(Duration::from_secs(8)).await;
    assert_eq!(
        client.count(|e| matches!(e, Event::ReconnectScheduled { .. })),
        0,
        "{:?}",
        client.events
    );
    assert_eq!(client.keeper().status(&relay_id), Some(RelayStatus::Reserved));
    relay.kill().await;
}
