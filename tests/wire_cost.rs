//! What liveness costs on the wire, with the examples as real processes: `relay_server` and a
//! `dcutr --mode listen` node in two network namespaces joined by a veth pair, idle, one reservation; bytes
//! and packets a minute on the listener's veth (both directions, Ethernet headers included) for each setup.
//! The figures in BENCHMARKS.md come from
//! `cargo build --release --examples && cargo test --release --test wire_cost -- --ignored --nocapture`
//! (about 2.5 minutes: the rows run side by side, each in namespaces of its own).

mod common;

use std::time::Duration;

use common::netns;

/// How long the link is left to settle after the reservation, then how long it is counted.
const SETTLE: Duration = Duration::from_secs(10);
const WINDOW: Duration = Duration::from_secs(120);

/// The listener veth's bytes and packets so far, both directions.
fn counters(lab: &netns::Lab) -> (u64, u64) {
    let read = |name| lab.client_counter(name);
    (
        read("rx_bytes") + read("tx_bytes"),
        read("rx_packets") + read("tx_packets"),
    )
}

/// Bytes and packets a minute on an idle relay link with these flags for the relay and the listener.
async fn per_minute(relay_flags: &[&str], listener_flags: &[&str]) -> (f64, f64) {
    let lab = netns::lab().expect("network namespaces (root and iproute2)");
    let (_relay, relay_addr) = lab.relay_host().relay_server(4001, relay_flags).await;
    let mut listener = lab
        .client_host()
        .dcutr("listen", "1", &relay_addr, listener_flags);
    listener.wait_prefix("keeper reserved relay=").await;
    // A fresh relay's first refusal (`awaiting_hop`) comes before the reservation; only later ones count.
    let retries_before = listener.count("keeper reconnect_scheduled");
    tokio::time::sleep(SETTLE).await;
    let (bytes, packets) = counters(&lab);
    tokio::time::sleep(WINDOW).await;
    let (bytes_after, packets_after) = counters(&lab);
    let minutes = WINDOW.as_secs_f64() / 60.0;
    listener.skip_printed();
    assert_eq!(
        listener.count("keeper reconnect_scheduled"),
        retries_before,
        "the idle link was never cut"
    );
    (
        (bytes_after - bytes) as f64 / minutes,
        (packets_after - packets) as f64 / minutes,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: about 2.5 minutes, needs root"]
async fn liveness_bytes_a_minute_on_an_idle_relay_link() {
    let rows: [(&str, &[&str], &[&str]); 8] = [
        (
            "keeper probe off, relay LinkProbe off (ping::Behaviour and renewals remain)",
            &["--no-probe"],
            &["--no-probe"],
        ),
        ("keeper defaults, relay LinkProbe off", &["--no-probe"], &[]),
        (
            "keeper probe every 2.4 s (a 5 s bound with the 1.3 s floor), relay LinkProbe off",
            &["--no-probe"],
            &["--probe-interval-ms", "2400"],
        ),
        (
            "keeper probe every 10 s, relay LinkProbe off",
            &["--no-probe"],
            &["--probe-interval-ms", "10000"],
        ),
        ("both examples' defaults", &[], &[]),
        (
            "without ping::Behaviour: keeper probe off, LinkProbe off (renewals alone; the relay answers pings only through LinkProbe)",
            &["--no-probe", "--no-ping"],
            &["--no-probe", "--no-ping"],
        ),
        (
            "without ping::Behaviour: LinkProbe's default, keeper probe off",
            &["--no-ping"],
            &["--no-probe", "--no-ping"],
        ),
        (
            "without ping::Behaviour: both defaults",
            &["--no-ping"],
            &["--no-ping"],
        ),
    ];
    let measured = futures::future::join_all(
        rows.iter()
            .map(|(_, relay, listener)| per_minute(relay, listener)),
    )
    .await;
    println!("| setup | bytes a minute | packets a minute |\n|---|---|---|");
    for ((setup, _, _), (bytes, packets)) in rows.iter().zip(measured) {
        println!("| {setup} | {:.1} KB | {packets:.0} |", bytes / 1000.0);
    }
}
