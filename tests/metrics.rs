//! The `metrics` feature, scraped after one scripted outage of a real relay.
#![cfg(feature = "metrics")]

mod common;

use std::time::Duration;

use common::{fast_config, Client, External, Net, RelayServer};
use libp2p::ping;
use libp2p_relay_keeper::{Event, RelayKeeper};
use prometheus_client::{encoding::text::encode, registry::Registry};

/// The samples of `relay_keeper_*` metrics in the text exposition, without comments.
fn scrape(registry: &Registry) -> Vec<String> {
    let mut text = String::new();
    encode(&mut text, registry).unwrap();
    text.lines()
        .filter(|l| l.starts_with("relay_keeper_") && !l.contains("_bucket{"))
        .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .collect()
}

/// How many of the keeper's probes were answered.
fn probes_answered(registry: &Registry) -> u64 {
    scrape(registry)
        .iter()
        .find_map(|s| {
            s.strip_prefix("relay_keeper_probe_rtt_seconds_count ")?
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(0)
}

/// The probes a client sends in 2 s with a probe interval of 200 ms, on a relay whose `ping::Behaviour`
/// pings it as `relay_pings` says.
async fn probes_in_two_seconds(relay_pings: ping::Config) -> u64 {
    let mut registry = Registry::default();
    let config = fast_config().with_probe_interval(Duration::from_millis(200));
    let keeper = RelayKeeper::new(config).with_metrics(&mut registry);
    let mut client = Client::with_keeper(Net::Tcp, keeper, false);
    let relay = RelayServer::spawn_pinging(Net::Tcp, relay_pings).await;
    let relay_id = client.keeper().add_relay(relay.addr.clone()).unwrap();
    client.wait_reserved(relay_id).await;
    let before = probes_answered(&registry);
    client.serve_for(Duration::from_secs(2)).await;
    relay.kill().await;
    probes_answered(&registry) - before
}

/// When the relay pings more often than the keeper would, its pings (each on the stream the keeper echoed on)
/// show the link works both ways, and the keeper sends no probe of its own.
#[tokio::test]
async fn a_relay_that_pings_often_spares_the_keepers_probes() {
    let rare = ping::Config::new().with_interval(Duration::from_secs(3600));
    let often = ping::Config::new().with_interval(Duration::from_millis(50));
    let alone = probes_in_two_seconds(rare).await;
    let spared = probes_in_two_seconds(often).await;
    assert!(
        alone >= 5,
        "a relay that does not ping is probed every 200 ms: {alone} probes"
    );
    assert!(spared <= 1, "{spared} probes beside a relay pinging every 50 ms");
}

#[tokio::test]
async fn one_outage_is_counted_exactly() {
    let mut registry = Registry::default();
    // A wait long enough for the relay to be back before retry 1 fires, so the outage takes one retry.
    let config = fast_config()
        .with_base_delay(Duration::from_millis(500))
        .with_jitter(false)
        .with_probe_interval(Duration::from_millis(50))
        .with_probe_timeout(Duration::from_secs(2));
    let keeper = RelayKeeper::new(config).with_metrics(&mut registry);
    let mut client = Client::with_keeper(Net::Tcp, keeper, false);
    let relay = RelayServer::spawn(Net::Tcp).await;
    let relay_id = client.keeper().add_relay(relay.addr.clone()).unwrap();
    client.wait_reserved(relay_id).await;

    let relay = relay.restart(Net::Tcp, External::AtStart).await;
    client.wait_reserved(relay_id).await;
    assert_eq!(client.count(|e| matches!(e, Event::ReconnectScheduled { .. })), 1);

    common::within("a probe round trip", async {
        while probes_answered(&registry) == 0 {
            client.serve_for(Duration::from_millis(50)).await;
        }
    })
    .await;
    let samples = scrape(&registry);
    let expected = [
        "relay_keeper_relays{status=\"reserved\"} 1",
        "relay_keeper_reconnect_attempts_total{cause=\"connection_lost\"} 1",
        "relay_keeper_reconnects_total 1",
        "relay_keeper_reservations_restored_total 1",
        "relay_keeper_give_ups_total 0",
        "relay_keeper_restore_duration_seconds_count 1",
    ];
    for sample in expected {
        assert!(
            samples.iter().any(|s| s == sample),
            "missing `{sample}` in:\n{}",
            samples.join("\n")
        );
    }
    for status in ["connecting", "connected", "waiting", "gave_up", "stopped"] {
        let sample = format!("relay_keeper_relays{{status=\"{status}\"}} ");
        assert!(
            samples
                .iter()
                .filter(|s| s.starts_with(&sample))
                .all(|s| s.ends_with(" 0")),
            "{status}: {samples:?}"
        );
    }
    relay.kill().await;
}
