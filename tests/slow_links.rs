//! Slow links with the examples as real processes: `dcutr --mode listen` kept on `relay_server` through a TCP
//! forwarder on 127.0.0.1 that delays every byte by half the round trip in each direction; both at their
//! defaults (keeper probe, relay `LinkProbe`), the dial limit and connection timeout at 30 s as the docs
//! advise for slow links. Counts, per round trip, the reservations taken and the links each side cut. The
//! figures in BENCHMARKS.md come from
//! `cargo build --release --examples && cargo test --release --test slow_links -- --ignored --nocapture`
//! (about 3 minutes: the rows run side by side).

mod common;

use std::time::Duration;

use common::{
    process::{free_port, LOOPBACK},
    DelayLink,
};

/// How long a row is watched once the first reservation is live.
const WINDOW: Duration = Duration::from_secs(150);

/// Reservations taken, links the keeper cut for a probe timeout and links the relay cut as dead, in the
/// window after the first reservation, on a link with round trip `rtt`.
async fn row(rtt: Duration) -> (usize, usize, usize) {
    let port = free_port();
    let (mut relay, relay_addr) = LOOPBACK.relay_server(port, &[]).await;
    let relay_id: libp2p::PeerId = relay_addr.rsplit('/').next().unwrap().parse().unwrap();
    let link = DelayLink::to(([127, 0, 0, 1], port).into(), relay_id, rtt / 2).await;
    let addr = link.addr.to_string();
    let mut listener = LOOPBACK.dcutr("listen", "1", &addr, &["--dial-timeout-ms", "30000"]);
    // A handshake and a reservation over a 3 s round trip take longer than a test's usual wait.
    let first = tokio::time::timeout(Duration::from_secs(90), async {
        while let Some(line) = listener.next_line().await {
            if line.starts_with("keeper reserved relay=") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(first, Ok(true), "round trip {rtt:?}: no first reservation");
    let reserved_before = listener.count("keeper reserved relay=");
    tokio::time::sleep(WINDOW).await;
    listener.skip_printed();
    relay.skip_printed();
    let cuts = listener
        .seen
        .iter()
        .filter(|l| l.starts_with("keeper reconnect_scheduled") && l.ends_with("cause=probe_timeout"))
        .count();
    (
        listener.count("keeper reserved relay=") - reserved_before + 1,
        cuts,
        relay.count("dead_link"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: about 3 minutes"]
async fn slow_links_are_never_cut() {
    let rtts = [1200, 2000, 3000].map(Duration::from_millis);
    let rows = futures::future::join_all(rtts.iter().map(|rtt| row(*rtt))).await;
    println!(
        "| round trip | reservations taken | links the keeper cut | links the relay cut |\n|---|---|---|---|"
    );
    for (rtt, (reserved, keeper, relay)) in rtts.iter().zip(&rows) {
        println!("| {rtt:?} | {reserved} | {keeper} | {relay} |");
    }
    for (rtt, (_, keeper, relay)) in rtts.iter().zip(&rows) {
        assert_eq!(
            (*keeper, *relay),
            (0, 0),
            "round trip {rtt:?}: a link that answers was cut"
        );
    }
}
