//! A node behind NAT, as the keeper is meant for: the `dcutr` listener behind one NAT router, a dialer behind
//! another, the relay between them (network namespaces, nftables masquerade; see `common::netns::NatLab`).
//! The listener is reachable only through the circuit, and stays reachable across a relay restart. Whether
//! DCUtR then upgraded to a direct connection is printed as a fact, not asserted.

mod common;

use common::{
    netns::{nat_lab, run_in, NAT_DIALER_IP, NAT_LISTENER_IP, NAT_RELAY_IP},
    process::{Host, Process},
};

/// Reaches the listener from behind the other NAT; returns whether DCUtR upgraded the connection.
async fn reach_and_report(dialer: &Host<'_>, relay: &str, seed: &str, listener: &str) -> bool {
    let mut process = dialer.dcutr(
        "dial",
        seed,
        relay,
        &["--remote-peer-id", listener, "--wait-direct-ms", "3000"],
    );
    let relayed = format!("connected peer={listener} relayed=true");
    process
        .wait_line("a relayed connection to the listener", |l| {
            (l == relayed).then_some(())
        })
        .await;
    process
        .wait_line("DCUtR's outcome", |l| {
            l.strip_prefix("dcutr upgraded=").map(|v| v == "true")
        })
        .await
}

async fn wait_reserved(listener: &mut Process, relay: &str) {
    let relay_id = relay.rsplit('/').next().unwrap();
    let reserved = format!("keeper reserved relay={relay_id} ");
    listener
        .wait_line("the reservation", |l| l.starts_with(&reserved).then_some(()))
        .await;
}

#[tokio::test]
async fn a_node_behind_nat_stays_reachable_across_a_relay_restart() {
    let Some(lab) = nat_lab() else { return };
    let relay_host = Host {
        netns: Some(&lab.relay_ns),
        ip: NAT_RELAY_IP,
    };
    let listener_host = Host {
        netns: Some(&lab.listener_ns),
        ip: NAT_LISTENER_IP,
    };
    let dialer_host = Host {
        netns: Some(&lab.dialer_ns),
        ip: NAT_DIALER_IP,
    };
    let (relay, relay_addr) = relay_host.relay_server(4001, &[]).await;
    let mut listener = listener_host.dcutr(
        "listen",
        "1",
        &relay_addr,
        &["--backoff-base-ms", "100", "--backoff-max-ms", "1000"],
    );
    let listener_id = listener.wait_prefix("peer_id=").await;
    let direct_prefix = format!("listening addr=/ip4/{NAT_LISTENER_IP}/tcp/");
    let direct_port = listener.wait_prefix(&direct_prefix).await;
    wait_reserved(&mut listener, &relay_addr).await;

    // Behind its NAT the listener cannot be dialed directly from the other network.
    let connect = format!("exec 3<>/dev/tcp/{NAT_LISTENER_IP}/{direct_port}");
    let direct = run_in(&lab.dialer_ns, &["timeout", "2", "bash", "-c", &connect]);
    assert!(direct.is_err(), "the listener was reachable directly");

    let upgraded = reach_and_report(&dialer_host, &relay_addr, "2", &listener_id).await;
    println!("nat: reached through the relay; DCUtR upgraded to a direct connection: {upgraded}");

    relay.kill().await;
    let (relay, _) = relay_host.relay_server(4001, &[]).await;
    wait_reserved(&mut listener, &relay_addr).await;
    let upgraded = reach_and_report(&dialer_host, &relay_addr, "3", &listener_id).await;
    println!("nat: reached again after the relay restart; DCUtR upgraded: {upgraded}");

    relay.kill().await;
    listener.kill().await;
}
