//! Slow links with the examples as real processes: `dcutr --mode listen` kept on `relay_server`, both at
//! their defaults (keeper probe and dial limit, relay `LinkProbe`; the examples set the `SwarmBuilder`'s
//! connection timeout to 30 s as the docs advise for slow links), over TCP and QUIC, on two kinds of slow
//! link: a forwarder on 127.0.0.1 that delays every byte (TCP) or datagram (QUIC) by half the round trip in
//! each direction, and a bottleneck, the listener's uplink limited by a `tbf` qdisc in network namespaces
//! and filled by a bulk TCP upload started after the reservation and the settle. Per row: how long the first
//! connection to the relay took, the reservations taken and the links each side cut in a window after a
//! settle, and whether the node stayed reachable: a new `dcutr --mode dial` process dials it through the
//! circuit every 10 s, allowed 30 s. The figures in BENCHMARKS.md come from
//! `cargo build --release --examples && cargo test --release --test slow_links -- --ignored --nocapture`
//! (about 6 minutes: the rows run side by side; root, iproute2 and `tc` for the bottleneck rows).
//! `SLOW_LINKS_PROBE_FLOOR_MS=900` runs both probes with another floor, as before 1.3 s was the default.

mod common;

use std::time::{Duration, Instant};

use common::{
    netns,
    process::{free_port, quic_addr, Host, LOOPBACK},
    DelayLink,
};

/// How long a row settles after the first reservation, then how long it is watched.
const SETTLE: Duration = Duration::from_secs(10);
const WINDOW: Duration = Duration::from_secs(300);
/// How often a peer dials the node through the circuit, and how long each dial may take.
const REACH_EVERY: Duration = Duration::from_secs(10);
const REACH_LIMIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy)]
enum Link {
    /// The delay forwarder, with this round trip.
    Delay(Duration),
    /// The listener's uplink limited to this `tc` rate, with a queue of up to this much.
    Bottleneck(&'static str, Duration),
}

struct Row {
    first_connection: Duration,
    dial_timeouts_before: usize,
    reserved: usize,
    keeper_cuts: usize,
    relay_cuts: usize,
    reached: usize,
    dials: usize,
    /// What the bulk upload sent in the window, for a bottleneck.
    bulk_sent: Option<u64>,
}

/// Whether a new dialer on `host` (key seed `seed`) reaches `target` through `relay` within [`REACH_LIMIT`].
async fn reaches(host: Host<'static>, relay: String, seed: String, target: String) -> bool {
    let mut dialer = host.dcutr("dial", &seed, &relay, &["--remote-peer-id", &target]);
    let connected = format!("connected peer={target} relayed=true");
    let reached = tokio::time::timeout(REACH_LIMIT, async {
        while let Some(line) = dialer.next_line().await {
            if line == connected {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    dialer.kill().await;
    reached
}

async fn row(link: Link, quic: bool) -> Row {
    // The lab (for a bottleneck) and the forwarder (for a delay) live as long as the row.
    let lab = match link {
        Link::Bottleneck(..) => Some(netns::lab().expect("network namespaces (root, iproute2 and tc)")),
        Link::Delay(_) => None,
    };
    let (relay_host, listener_host) = match &lab {
        Some(lab) => (lab.relay_host(), lab.client_host()),
        None => (LOOPBACK, LOOPBACK),
    };
    // The dialers run in tasks of their own; the namespaces' names outlive the lab by a few bytes.
    let (relay_host, listener_host): (Host<'static>, Host<'static>) =
        (leak_host(relay_host), leak_host(listener_host));
    let port = if lab.is_some() { 4001 } else { free_port() };
    let floor = std::env::var("SLOW_LINKS_PROBE_FLOOR_MS").ok();
    let flags: Vec<&str> = floor
        .iter()
        .flat_map(|ms| ["--probe-timeout-ms", ms.as_str()])
        .collect();
    let (mut relay, relay_tcp) = relay_host.relay_server(port, &flags).await;
    let relay_given = if quic {
        quic_addr(&relay_tcp)
    } else {
        relay_tcp.clone()
    };
    let forwarder = match link {
        Link::Delay(rtt) => Some(DelayLink::to(&relay_given.parse().unwrap(), rtt / 2).await),
        Link::Bottleneck(..) => None,
    };
    let listener_given = forwarder.as_ref().map_or(relay_given, |f| f.addr.to_string());
    if let (Some(lab), Link::Bottleneck(rate, queue)) = (&lab, link) {
        lab.bottleneck(rate, queue).unwrap();
    }
    let started = Instant::now();
    let mut listener = listener_host.dcutr("listen", "1", &listener_given, &flags);
    let relay_id = relay_tcp.rsplit('/').next().unwrap().to_owned();
    let connected = format!("connected peer={relay_id} relayed=false");
    let mut first_connection = None;
    // A handshake and a reservation over a 3 s round trip take longer than a test's usual wait.
    let reserved = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = listener.next_line().await {
            if line == connected {
                first_connection.get_or_insert(started.elapsed());
            }
            if line.starts_with("keeper reserved relay=") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(reserved, Ok(true), "{link:?}, quic {quic}: no first reservation");
    let listener_id = listener.seen[0].strip_prefix("peer_id=").unwrap().to_owned();
    let dial_timeouts_before = listener
        .seen
        .iter()
        .filter(|l| l.ends_with("cause=dial_timeout"))
        .count();
    tokio::time::sleep(SETTLE).await;
    listener.skip_printed();
    relay.skip_printed();
    let (reserved_before, cuts_before, relay_cuts_before) = (
        listener.count("keeper reserved relay="),
        probe_cuts(&listener.seen),
        relay.count("dead_link"),
    );
    // The upload starts with the window, so the window sees the queue fill up: the moment a probe that
    // knows only the idle link's round trip meets a full queue.
    let bulk = lab.as_ref().map(netns::Lab::bulk_upload);
    let mut dials = Vec::new();
    let window_started = Instant::now();
    let mut seed = 10u8;
    while window_started.elapsed() < WINDOW {
        dials.push(tokio::spawn(reaches(
            relay_host,
            relay_tcp.clone(),
            seed.to_string(),
            listener_id.clone(),
        )));
        seed = seed.wrapping_add(1).max(10);
        tokio::time::sleep(REACH_EVERY).await;
    }
    let outcomes = futures::future::join_all(dials).await;
    listener.skip_printed();
    relay.skip_printed();
    Row {
        first_connection: first_connection.expect("connected before reserving"),
        dial_timeouts_before,
        reserved: listener.count("keeper reserved relay=") - reserved_before,
        keeper_cuts: probe_cuts(&listener.seen) - cuts_before,
        relay_cuts: relay.count("dead_link") - relay_cuts_before,
        reached: outcomes.iter().filter(|o| matches!(o, Ok(true))).count(),
        dials: outcomes.len(),
        bulk_sent: bulk.as_ref().map(netns::BulkFlow::sent),
    }
}

fn leak_host(host: Host<'_>) -> Host<'static> {
    let leak = |s: &str| &*Box::leak(s.to_owned().into_boxed_str());
    Host {
        netns: host.netns.map(leak),
        ip: leak(host.ip),
    }
}

/// The keeper's retries for a probe timeout among `lines`.
fn probe_cuts(lines: &[String]) -> usize {
    lines
        .iter()
        .filter(|l| l.starts_with("keeper reconnect_scheduled") && l.ends_with("cause=probe_timeout"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: about 6 minutes"]
async fn slow_links_are_never_cut() {
    let links = [
        Link::Delay(Duration::from_millis(1200)),
        Link::Delay(Duration::from_millis(2000)),
        Link::Delay(Duration::from_millis(3000)),
        Link::Bottleneck("1mbit", Duration::from_millis(2500)),
    ];
    let setups: Vec<(Link, bool)> = links.into_iter().flat_map(|l| [(l, false), (l, true)]).collect();
    let rows = futures::future::join_all(setups.iter().map(|(link, quic)| row(*link, *quic))).await;
    println!(
        "| link | transport | first connection after (dial timeouts before it) | reservations taken in the window | links the keeper cut | links the relay cut | dials through the circuit that reached the node |"
    );
    println!("|---|---|---|---|---|---|---|");
    for ((link, quic), row) in setups.iter().zip(&rows) {
        let link = match link {
            Link::Delay(rtt) => format!("round trip {:.1} s", rtt.as_secs_f64()),
            Link::Bottleneck(rate, queue) => format!(
                "uplink {rate}, queue up to {:.1} s, bulk upload ({:.1} MB sent in the window)",
                queue.as_secs_f64(),
                row.bulk_sent.unwrap_or(0) as f64 / 1e6
            ),
        };
        println!(
            "| {link} | {} | {:.1} s ({}) | {} | {} | {} | {} of {} |",
            if *quic { "QUIC" } else { "TCP" },
            row.first_connection.as_secs_f64(),
            row.dial_timeouts_before,
            row.reserved,
            row.keeper_cuts,
            row.relay_cuts,
            row.reached,
            row.dials
        );
    }
    for ((link, quic), row) in setups.iter().zip(&rows) {
        assert_eq!(
            (row.keeper_cuts, row.relay_cuts),
            (0, 0),
            "{link:?}, quic {quic}: a link that answers was cut"
        );
        assert!(
            row.reached * 10 >= row.dials * 9,
            "{link:?}, quic {quic}: reachable in only {} of {} dials",
            row.reached,
            row.dials
        );
    }
}
