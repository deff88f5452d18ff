//! Real link faults between network namespaces: the relay in one, the kept client in another, joined by a veth
//! pair. Needs root and iproute2; skipped with a message elsewhere, but a skip fails when `CI=true`.
//!
//! The client closes a relay connection on its first failed ping (ping every 500 ms, 1 s timeout), as the
//! README recommends for half-open links; the keeper then restores the reservation.

mod common;

use std::process::Command;

use common::process::Host;

/// Addresses of this test's own hosts, inside its own namespaces (RFC 2544's benchmarking range).
const RELAY_IP: &str = "198.18.0.1";
const CLIENT_IP: &str = "198.18.0.2";

fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Two namespaces joined by a veth pair; deleted (with the pair) when dropped, on failure too.
struct Lab {
    relay_ns: String,
    client_ns: String,
    client_if: String,
}

impl Lab {
    fn new() -> Result<Self, String> {
        let id = std::process::id() % 100_000;
        let lab = Lab {
            relay_ns: format!("rk{id}r"),
            client_ns: format!("rk{id}c"),
            client_if: format!("rk{id}c0"),
        };
        let relay_if = format!("rk{id}r0");
        ip(&["netns", "add", &lab.relay_ns])?;
        ip(&["netns", "add", &lab.client_ns])?;
        ip(&[
            "link",
            "add",
            &relay_if,
            "type",
            "veth",
            "peer",
            "name",
            &lab.client_if,
        ])?;
        ip(&["link", "set", &relay_if, "netns", &lab.relay_ns])?;
        ip(&["link", "set", &lab.client_if, "netns", &lab.client_ns])?;
        for (ns, dev, addr) in [
            (&lab.relay_ns, &relay_if, RELAY_IP),
            (&lab.client_ns, &lab.client_if, CLIENT_IP),
        ] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(lab)
    }

    fn client(&self, args: &[&str]) -> Result<(), String> {
        let mut full = vec!["-n", self.client_ns.as_str()];
        full.extend_from_slice(args);
        ip(&full)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.relay_ns, &self.client_ns] {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// The lab, or `None` (with a message) where namespaces cannot be made; under `CI=true` that fails instead.
fn lab() -> Option<Lab> {
    match Lab::new() {
        Ok(lab) => Some(lab),
        Err(error) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("network namespaces are needed in CI (root and iproute2): {error}")
        }
        Err(error) => {
            eprintln!("skipping the link-fault test: cannot create network namespaces: {error}");
            None
        }
    }
}

#[tokio::test]
async fn reservation_survives_link_down_blackhole_and_a_relay_moving_address() {
    let Some(lab) = lab() else { return };
    let relay_id = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"; // --secret-key-seed 0
    let first = format!("/ip4/{RELAY_IP}/tcp/4001/p2p/{relay_id}");
    let second = format!("/ip4/{RELAY_IP}/tcp/4002/p2p/{relay_id}");

    let relay_host = Host {
        netns: Some(&lab.relay_ns),
        ip: RELAY_IP,
    };
    let client_host = Host {
        netns: Some(&lab.client_ns),
        ip: CLIENT_IP,
    };
    let relay_ping = ["--ping-interval-ms", "500", "--ping-timeout-ms", "1000"];
    let (mut relay, _) = relay_host.relay_server(4001, &relay_ping).await;
    let mut client = client_host.dcutr(
        "listen",
        "1",
        &first,
        &[
            "--relay-address",
            &second,
            "--backoff-base-ms",
            "100",
            "--backoff-max-ms",
            "1000",
            "--max-attempts",
            "1000",
            "--ping-interval-ms",
            "500",
            "--ping-timeout-ms",
            "1000",
        ],
    );
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
    // The relay's end of the old connection is half-open too; once its ping notices, the relay can no longer
    // route a circuit into the dead connection.
    let closed = format!("connection_closed peer={client_id}");
    relay
        .wait_line("the relay dropping the half-open connection", |l| {
            (l == closed).then_some(())
        })
        .await;
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
