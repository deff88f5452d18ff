//! Churn: a real relay process is killed (SIGKILL) and restarted over and over while a client keeps its
//! reservation; every cycle must end with the reservation restored and a peer reaching the client through it.
//!
//! `cargo test --test soak` runs 20 cycles; `cargo test --test soak -- --ignored` runs 200 and also checks that
//! the client's memory does not grow.

mod common;

use std::time::Duration;

use common::{
    process::{free_port, LOOPBACK},
    reach_through_relay, Client, Net,
};
use libp2p_relay_keeper::{CauseKind, Config, Event};
use rand::{rngs::StdRng, RngExt, SeedableRng};

const BASE: Duration = Duration::from_millis(20);
const CAP: Duration = Duration::from_millis(160);

/// The client's resident set size, from /proc.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc is mounted");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// Runs `cycles` kill/restart cycles; returns the client's RSS (KiB) after each cycle.
async fn churn(cycles: usize, seed: u64) -> Vec<u64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let port = free_port();
    let config = Config::default()
        .with_base_delay(BASE)
        .with_max_delay(CAP)
        .with_max_attempts(None)
        .with_rng_seed(seed);
    let mut client = Client::new(Net::Tcp, config.clone(), true);
    let (mut relay, relay_addr) = LOOPBACK.relay_server(port, &[]).await;
    let relay_id = client.keeper().add_relay(relay_addr.parse().unwrap()).unwrap();
    client.wait_reserved(relay_id).await;
    let mut rss = Vec::with_capacity(cycles);
    // The relay falls over again long before its reservation is forgiven (`Config::with_forgive_after`), so the
    // backoff level goes on across cycles, while each cycle's retries are counted from 1.
    let mut retries = 0;

    for cycle in 0..cycles {
        relay.kill().await;
        let events_before = client.events.len();
        let dials_before = client.dials.len();
        // Down for anything from well inside the first wait to several capped waits.
        let down = Duration::from_millis(rng.random_range(0..4 * CAP.as_millis() as u64));
        client.serve_for(down).await;
        let (restarted, _) = LOOPBACK.relay_server(port, &[]).await;
        relay = restarted;
        let circuit = client.wait_reserved(relay_id).await;
        client
            .serve_while(
                "a peer reaching the client",
                reach_through_relay(Net::Tcp, circuit, client.peer_id()),
            )
            .await;

        // A fresh relay's refusal waits for HOP (`cause=awaiting_hop`), announcing the retry its fallback would
        // make; if HOP comes first, the same try goes on, and its failure announces that number again.
        let attempts: Vec<(u32, Duration, bool)> = client.events[events_before..]
            .iter()
            .filter_map(|e| match e {
                Event::ReconnectScheduled {
                    attempt,
                    delay,
                    cause,
                    ..
                } => Some((*attempt, *delay, cause.kind == CauseKind::AwaitingHop)),
                _ => None,
            })
            .collect();
        assert!(!attempts.is_empty(), "cycle {cycle}: the loss was noticed");
        let mut previous: Option<(u32, bool)> = None;
        for &(attempt, delay, awaiting) in &attempts {
            let expected_next = previous.map_or(1, |(n, _)| n + 1);
            let repeat = previous.is_some_and(|(n, was_awaiting)| was_awaiting && attempt == n);
            assert!(
                attempt == expected_next || repeat,
                "cycle {cycle}: the outage's retries are numbered from 1 without gaps: {attempts:?}"
            );
            // The level can have risen by every retry counted so far, no more.
            assert!(
                delay < config.backoff_bound(retries + attempt),
                "cycle {cycle}: retry {attempt} waited {delay:?}"
            );
            previous = Some((attempt, awaiting));
        }
        let dials = client.dials[dials_before..]
            .iter()
            .filter(|p| **p == relay_id)
            .count();
        retries += previous.map_or(0, |(n, _)| n);
        assert!(
            dials <= attempts.len(),
            "cycle {cycle}: {dials} dials for {} scheduled retries",
            attempts.len()
        );
        rss.push(rss_kib());
    }
    relay.kill().await;
    rss
}

#[tokio::test]
async fn soak_20_relay_restarts() {
    let rss = churn(20, 20).await;
    assert_eq!(rss.len(), 20);
}

#[tokio::test]
#[ignore = "a few minutes: 200 relay restarts"]
async fn soak_200_relay_restarts_without_memory_growth() {
    let rss = churn(200, 200).await;
    let (at_20, at_200) = (rss[19], rss[199]);
    println!("client RSS: cycle 20 {at_20} KiB, cycle 200 {at_200} KiB");
    assert!(
        at_200 <= at_20 + 1024,
        "RSS grew from {at_20} KiB at cycle 20 to {at_200} KiB at cycle 200"
    );
}
