//! Real link faults between network namespaces: the relay in one, the kept client in another, joined by a veth
//! pair. Needs root and iproute2; skipped with a message elsewhere, but a skip fails when `CI=true`.
//!
//! The keeper probes the relay connection (every 500 ms, 1 s timeout) and closes it when the probe goes
//! unanswered; then it restores the reservation. The relay probes its clients likewise (`LinkProbe`).

mod common;

use common::{
    netns::{lab, RELAY_IP},
    process::quic_addr,
};

/// The kept client's settings in both tests: a quick backoff and probe.
const CLIENT_FLAGS: [&str; 8] = [
    "--backoff-base-ms",
    "100",
    "--backoff-max-ms",
    "1000",
    "--probe-interval-ms",
    "500",
    "--probe-timeout-ms",
    "1000",
];

#[tokio::test]
async fn reservation_survives_link_down_blackhole_and_a_relay_moving_address() {
    let Some(lab) = lab() else { return };
    let relay_id = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"; // --secret-key-seed 0
    let first = format!("/ip4/{RELAY_IP}/tcp/4001/p2p/{relay_id}");
    let second = format!("/ip4/{RELAY_IP}/tcp/4002/p2p/{relay_id}");

    let (relay_host, client_host) = (lab.relay_host(), lab.client_host());
    let relay_ping = ["--probe-interval-ms", "500", "--probe-timeout-ms", "1000"];
    let (mut relay, _) = relay_host.relay_server(4001, &relay_ping).await;
    let mut args = vec!["--relay-address", &second, "--max-attempts", "1000"];
    args.extend(CLIENT_FLAGS);
    let mut client = client_host.dcutr("listen", "1", &first, &args);
    let client_id = client.wait_prefix("peer_id=").await;
    let reserved = format!("keeper reserved relay={relay_id} ");
    let reserved_on = |port: u16| {
        let prefix = format!("{reserved}addr=/ip4/{RELAY_IP}/tcp/{port}/");
        move |l: &str| l.starts_with(&prefix).then_some(())
    };
    client.wait_line("the first reservation", reserved_on(4001)).await;
    relay_host.reach(&first, "2", &client_id).await;

    // (a) The client's link goes down and comes back.
    lab.client(&["link", "set", &lab.client_if, "down"]).unwrap();
    client.wait_prefix("keeper reconnect_scheduled").await;
    lab.client(&["link", "set", &lab.client_if, "up"]).unwrap();
    client
        .wait_line("the reservation after the link came back", reserved_on(4001))
        .await;
    relay_host.reach(&first, "3", &client_id).await;

    // (b) Packets to the relay vanish: the connection is half-open until a ping fails.
    let route = format!("{RELAY_IP}/32");
    lab.client(&["route", "add", "blackhole", &route]).unwrap();
    relay.skip_printed();
    client.wait_prefix("keeper reconnect_scheduled").await;
    lab.client(&["route", "del", "blackhole", &route]).unwrap();
    client
        .wait_line("the reservation after the black hole", reserved_on(4001))
        .await;
    // The relay's end of the old connection is half-open too; once its probe notices, the relay can no longer
    // route a circuit into the dead connection.
    relay.wait_connection_closed(&client_id).await;
    relay_host.reach(&first, "4", &client_id).await;

    // (c) The relay comes back on its other address.
    relay.kill().await;
    client.wait_prefix("keeper reconnect_scheduled").await;
    let (relay, _) = relay_host.relay_server(4002, &relay_ping).await;
    client
        .wait_line("the reservation on the relay's other address", reserved_on(4002))
        .await;
    relay_host.reach(&second, "5", &client_id).await;

    relay.kill().await;
    client.kill().await;
}

#[tokio::test]
async fn a_black_holed_quic_relay_is_noticed_by_the_probe_and_restored() {
    let Some(lab) = lab() else { return };
    let (relay_host, client_host) = (lab.relay_host(), lab.client_host());
    let (mut relay, relay_tcp) = relay_host.relay_server(4001, &[]).await;
    let relay_quic = quic_addr(&relay_tcp);
    let mut client = client_host.dcutr("listen", "1", &relay_quic, &CLIENT_FLAGS);
    let client_id = client.wait_prefix("peer_id=").await;
    let reserved = format!(
        "keeper reserved relay={} addr={relay_quic}/p2p-circuit",
        relay_tcp.rsplit('/').next().unwrap()
    );
    client
        .wait_line("the reservation over QUIC", |l| {
            l.starts_with(&reserved).then_some(())
        })
        .await;

    let route = format!("{RELAY_IP}/32");
    relay.skip_printed();
    lab.client(&["route", "add", "blackhole", &route]).unwrap();
    let began = std::time::Instant::now();
    assert_eq!(client.next_cause().await, "probe_timeout");
    println!(
        "QUIC black hole: loss reported {:.2?} after the fault",
        began.elapsed()
    );
    lab.client(&["route", "del", "blackhole", &route]).unwrap();
    client
        .wait_line("the reservation after the black hole", |l| {
            l.starts_with(&reserved).then_some(())
        })
        .await;
    relay.wait_connection_closed(&client_id).await;
    relay_host.reach(&relay_tcp, "3", &client_id).await;
    relay.kill().await;
    client.kill().await;
}
