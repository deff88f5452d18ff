//! The example binaries, end to end, as real processes on loopback: the scenario the README walks through.

mod common;

use common::process::{example_binary, free_port, Process};

/// A relay_server on `port`, on loopback only; returns it with its `/ip4/127.0.0.1/tcp/<port>/p2p/<id>`.
async fn relay_server(port: u16) -> (Process, String) {
    let port = port.to_string();
    let mut relay = Process::spawn(
        "relay_server",
        &[
            "--port",
            &port,
            "--secret-key-seed",
            "0",
            "--listen-ip",
            "127.0.0.1",
        ],
    );
    let id = relay.wait_prefix("peer_id=").await;
    let tcp = format!("/ip4/127.0.0.1/tcp/{port}");
    relay
        .wait_line("its TCP address", |l| {
            (l == format!("listening addr={tcp}")).then_some(())
        })
        .await;
    (relay, format!("{tcp}/p2p/{id}"))
}

fn dcutr(mode: &str, seed: &str, relay: &str, extra: &[&str]) -> Process {
    let mut args = vec![
        "--mode",
        mode,
        "--secret-key-seed",
        seed,
        "--relay-address",
        relay,
        "--listen-ip",
        "127.0.0.1",
    ];
    args.extend_from_slice(extra);
    Process::spawn("dcutr", &args)
}

/// A fresh `dcutr --mode dial` reaches `listener` through the relay.
async fn reach(seed: &str, relay: &str, listener: &str) {
    let mut dialer = dcutr("dial", seed, relay, &["--remote-peer-id", listener]);
    let expected = format!("connected peer={listener} relayed=true");
    dialer
        .wait_line("a relayed connection to the listener", |l| {
            (l == expected).then_some(())
        })
        .await;
    dialer.kill().await;
}

#[tokio::test]
async fn listener_stays_reachable_across_a_killed_relay_then_gives_up() {
    let port = free_port();
    let (relay, relay_addr) = relay_server(port).await;
    let relay_id = relay_addr.rsplit('/').next().unwrap().to_owned();
    let backoff = [
        "--backoff-base-ms",
        "50",
        "--backoff-max-ms",
        "400",
        "--max-attempts",
        "5",
    ];
    let mut listener = dcutr("listen", "1", &relay_addr, &backoff);
    let listener_id = listener.wait_prefix("peer_id=").await;
    let reserved = format!("keeper reserved relay={relay_id} ");
    listener
        .wait_line("the reservation", |l| l.starts_with(&reserved).then_some(()))
        .await;
    reach("2", &relay_addr, &listener_id).await;

    relay.kill().await;
    listener.wait_prefix("keeper reconnect_scheduled").await;
    let (relay, _) = relay_server(port).await;
    listener
        .wait_line("the restored reservation", |l| {
            l.starts_with(&reserved).then_some(())
        })
        .await;
    reach("3", &relay_addr, &listener_id).await;

    relay.kill().await;
    let before = listener.count("keeper reconnect_scheduled");
    let attempts = listener
        .wait_prefix(&format!("keeper gave_up relay={relay_id} attempts="))
        .await;
    assert_eq!(attempts, "5");
    assert_eq!(
        listener.count("keeper reconnect_scheduled") - before,
        5,
        "one scheduled retry per attempt"
    );
    listener.kill().await;
}

#[test]
fn dcutr_rejects_a_relay_address_without_peer_id_with_a_clear_error() {
    let output = std::process::Command::new(example_binary("dcutr"))
        .args([
            "--mode",
            "listen",
            "--secret-key-seed",
            "4",
            "--relay-address",
            "/ip4/127.0.0.1/tcp/1",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("/ip4/127.0.0.1/tcp/1: relay address has no peer id: append /p2p/<relay peer id>"),
        "{stderr}"
    );
}

#[tokio::test]
async fn demo_restores_the_reservation_and_exits_zero() {
    let mut demo = Process::spawn("demo", &[]);
    demo.wait_line("the restored reservation", |l| {
        l.contains("reached the client through the relay again")
            .then_some(())
    })
    .await;
    assert!(demo.exits_successfully().await);
}
