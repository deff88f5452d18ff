//! The example binaries, end to end, as real processes on loopback: the scenario the README walks through.

mod common;

use common::process::{example_binary, free_port, Process, LOOPBACK};

#[tokio::test]
async fn listener_stays_reachable_across_a_killed_relay_then_gives_up() {
    let port = free_port();
    let (relay, relay_addr) = LOOPBACK.relay_server(port, &[]).await;
    let relay_id = relay_addr.rsplit('/').next().unwrap().to_owned();
    let backoff = [
        "--backoff-base-ms",
        "50",
        "--backoff-max-ms",
        "400",
        "--max-attempts",
        "5",
    ];
    let mut listener = LOOPBACK.dcutr("listen", "1", &relay_addr, &backoff);
    let listener_id = listener.wait_prefix("peer_id=").await;
    let reserved = format!("keeper reserved relay={relay_id} ");
    listener
        .wait_line("the reservation", |l| l.starts_with(&reserved).then_some(()))
        .await;
    LOOPBACK.reach(&relay_addr, "2", &listener_id).await;

    relay.kill().await;
    listener.wait_prefix("keeper reconnect_scheduled").await;
    let (relay, _) = LOOPBACK.relay_server(port, &[]).await;
    listener
        .wait_line("the restored reservation", |l| {
            l.starts_with(&reserved).then_some(())
        })
        .await;
    LOOPBACK.reach(&relay_addr, "3", &listener_id).await;

    relay.kill().await;
    let before = listener.count("keeper reconnect_scheduled");
    let attempts = listener
        .wait_prefix(&format!("keeper gave_up relay={relay_id} attempts="))
        .await;
    assert_eq!(attempts, "5 reason=max_attempts");
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
