//! The example binaries, end to end, as real processes on loopback: the scenario the README walks through.

mod common;

use common::process::{example_binary, free_port, quic_addr, Process, LOOPBACK};
use futures::future::join_all;

#[tokio::test]
async fn listener_stays_reachable_across_a_killed_relay_then_gives_up() {
    let port = free_port();
    let (relay, relay_addr) = LOOPBACK.relay_server(port, &[]).await;
    let relay_id = relay_addr.rsplit('/').next().unwrap().to_owned();
    // Each outage counts its own retries: the relay's reservation is forgiven as soon as it is back.
    let backoff = [
        "--backoff-base-ms",
        "50",
        "--backoff-max-ms",
        "400",
        "--max-attempts",
        "5",
        "--forgive-after-ms",
        "0",
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
    assert!(
        attempts.starts_with("5 reason=max_attempts retry_in_ms="),
        "gives up after max_attempts, until the cool-down is over: {attempts}"
    );
    assert_eq!(
        listener.count("keeper reconnect_scheduled") - before,
        5,
        "one scheduled retry per attempt"
    );
    listener.kill().await;
}

/// A restarted QUIC relay never resets the old connection (its new process does not recognise it), so only
/// the keeper's probe notices that it is gone.
#[tokio::test]
async fn a_listener_kept_on_a_quic_relay_is_reachable_again_after_a_restart() {
    let port = free_port();
    let (relay, relay_tcp) = LOOPBACK.relay_server(port, &[]).await;
    let relay_quic = quic_addr(&relay_tcp);
    let relay_id = relay_tcp.rsplit('/').next().unwrap().to_owned();
    let flags = [
        "--backoff-base-ms",
        "50",
        "--backoff-max-ms",
        "400",
        // Only the probe sees the restart; a timeout well above what a loaded machine takes to answer, so
        // the test waits for the loss, not for a false alarm.
        "--probe-interval-ms",
        "500",
        "--probe-timeout-ms",
        "2000",
    ];
    let mut listener = LOOPBACK.dcutr("listen", "1", &relay_quic, &flags);
    let listener_id = listener.wait_prefix("peer_id=").await;
    let reserved = format!("keeper reserved relay={relay_id} addr={}/p2p-circuit", relay_quic);
    listener
        .wait_line("the reservation over QUIC", |l| {
            l.starts_with(&reserved).then_some(())
        })
        .await;

    relay.kill().await;
    let began = std::time::Instant::now();
    let (relay, _) = LOOPBACK.relay_server(port, &[]).await;
    assert_eq!(listener.next_cause().await, "probe_timeout");
    println!(
        "QUIC restart: loss reported {:.2?} after the fault",
        began.elapsed()
    );
    listener
        .wait_line("the restored reservation over QUIC", |l| {
            l.starts_with(&reserved).then_some(())
        })
        .await;
    LOOPBACK.reach(&relay_tcp, "3", &listener_id).await;
    relay.kill().await;
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
async fn demo_restores_the_reservation_exits_zero_and_prints_what_the_readme_shows() {
    let mut demo = Process::spawn("demo", &[]);
    demo.wait_line("the restored reservation", |l| {
        l.contains("reached the client through the relay again")
            .then_some(())
    })
    .await;
    let printed: Vec<String> = demo.seen.iter().map(|l| shape(l)).collect();
    assert!(demo.exits_successfully().await);

    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let sample = readme
        .split("```text\n")
        .nth(1)
        .and_then(|block| block.split("```").next())
        .expect("README.md shows the demo's output in its first text block");
    for line in sample.lines() {
        assert!(
            printed.contains(&shape(line)),
            "README.md shows a line the demo does not print:\n{line}\nThe demo printed:\n{}",
            printed.join("\n")
        );
    }
}

/// The programs the README and docs/one-relay.md show are `examples/pool.rs` and `examples/minimal.rs`,
/// whole: what a new user copies is what `cargo test` builds.
#[test]
fn the_readme_shows_its_examples_whole() {
    let read =
        |path: &str| std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    for (page, fence, example) in [
        (
            "README.md",
            "```rust title=examples/pool.rs\n",
            "examples/pool.rs",
        ),
        ("docs/one-relay.md", "```rust\n", "examples/minimal.rs"),
    ] {
        let shown = read(page)
            .split(fence)
            .nth(1)
            .and_then(|block| block.split("```").next())
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("{page} shows {example} after `{fence}`"));
        assert!(
            shown == read(example),
            "{page}'s block after `{fence}` differs from {example}; copy the file into {page}"
        );
    }
}

/// The README's program against a relay as a new user runs it: reachable through the relay, and again once
/// the relay was killed and restarted.
#[tokio::test]
async fn the_minimal_example_becomes_reachable_and_stays_so_across_a_restart() {
    let port = free_port();
    let (relay, relay_addr) = LOOPBACK.relay_server(port, &[]).await;
    let mut node = Process::spawn("minimal", &[&relay_addr]);
    let reachable = |l: &str| l.starts_with("reachable relay=").then_some(());
    node.wait_line("reachable", reachable).await;
    node.wait_prefix("circuit addresses now: [/ip4/127.0.0.1/").await;
    relay.kill().await;
    node.wait_prefix("unreachable relay=").await;
    let (relay, _) = LOOPBACK.relay_server(port, &[]).await;
    // The defaults' waits: the first retry within 5 s, and more if it met the relay still down.
    node.wait_line("reachable again", reachable).await;
    relay.kill().await;
    node.kill().await;
}

/// A line with its peer ids, numbers and cause made generic, so a sample from one run
/// matches another run's line of the same kind.
fn shape(line: &str) -> String {
    let mut shaped = String::new();
    let mut rest = line.trim_end();
    while let Some(c) = rest.chars().next() {
        if rest.starts_with("12D3KooW") {
            shaped.push_str("<id>");
            rest = rest.trim_start_matches(|c: char| c.is_ascii_alphanumeric());
        } else if let Some(after) = rest.strip_prefix("cause=") {
            // Whether the relay client or the swarm reports a killed relay first varies from run to run.
            shaped.push_str("cause=<cause>");
            rest = after.trim_start_matches(|c: char| c.is_ascii_lowercase() || c == '_');
        } else if c.is_ascii_digit() {
            shaped.push('N');
            rest = rest.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.');
        } else if c == ' ' && rest.trim_start().starts_with(|c: char| c.is_ascii_digit()) {
            // Right-aligned numbers are padded to different widths.
            shaped.push(' ');
            rest = rest.trim_start();
        } else {
            shaped.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    shaped
}

/// A relay with 50 listeners kept on it restarts after 8 s down, its host refusing meanwhile: the listeners'
/// re-checks bring them back spread over the re-check window, not in one burst. Prints when each came back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_listeners_come_back_spread_over_the_recheck_window() {
    const LISTENERS: u32 = 50;
    let port = free_port();
    let (relay, relay_addr) = LOOPBACK.relay_server(port, &["--no-rate-limits"]).await;
    let mut listeners: Vec<Process> = (0..LISTENERS)
        .map(|i| LOOPBACK.dcutr("listen", &(100 + i).to_string(), &relay_addr, &[]))
        .collect();
    let reserved = |l: &str| l.starts_with("keeper reserved ").then_some(());
    join_all(
        listeners
            .iter_mut()
            .map(|l| l.wait_line("a reservation", reserved)),
    )
    .await;

    relay.kill().await;
    // The fault's length: long enough that every listener's first retry is refused.
    tokio::time::sleep(std::time::Duration::from_secs(8)).await;
    let (relay, _) = LOOPBACK.relay_server(port, &["--no-rate-limits"]).await;
    let back = std::time::Instant::now();
    let came_back = join_all(listeners.iter_mut().map(|l| async {
        l.wait_line("the reservation again", reserved).await;
        back.elapsed()
    }))
    .await;
    let mut per_100_ms = std::collections::BTreeMap::new();
    for after in &came_back {
        *per_100_ms.entry(after.as_millis() / 100).or_insert(0u32) += 1;
    }
    println!("listeners reserved again, per 100 ms after the relay listened: {per_100_ms:?}");
    let busiest = per_100_ms.values().max().copied().unwrap_or_default();
    assert!(
        busiest <= LISTENERS / 5 && per_100_ms.len() >= 10,
        "the herd came back in a burst: {per_100_ms:?}"
    );
    relay.kill().await;
}

/// Each event the examples print (its `Display` token) and the message of the `tracing` line it logs.
const EVENT_LOGS: [(&str, &str); 9] = [
    ("reconnect_scheduled", "relay retry scheduled"),
    ("connected", "relay connected again"),
    ("reserved", "relay reservation live"),
    ("gave_up", "gave up on relay"),
    ("reachable", "node reachable through a relay"),
    ("unreachable", "node no longer reachable"),
    ("failed_over", "a standby relay takes the pool slot"),
    ("pool_short", "the relay pool is short"),
    ("pool_full", "the relay pool is full again"),
];

/// The keeper events among `pool`'s stdout lines read so far, as printed.
fn events_printed(pool: &Process) -> Vec<String> {
    let token = |line: &String| line.split(' ').next().map(str::to_owned);
    pool.seen
        .iter()
        .filter(|line| token(line).is_some_and(|t| EVENT_LOGS.iter().any(|(e, _)| *e == t)))
        .cloned()
        .collect()
}

/// The events the keeper logged at `info` or `warn` on `pool`'s stderr, as tokens; panics on a keeper line
/// at those levels that is no event's.
fn events_logged(pool: &Process) -> Vec<&'static str> {
    pool.stderr_lines()
        .iter()
        .filter(|line| {
            line.contains("libp2p_relay_keeper") && (line.contains(" INFO ") || line.contains(" WARN "))
        })
        .map(|line| {
            EVENT_LOGS
                .iter()
                .find(|(_, message)| line.contains(message))
                .map(|(event, _)| *event)
                .unwrap_or_else(|| panic!("a keeper log line that is no event's: {line}"))
        })
        .collect()
}

/// The README's pool program (`examples/pool.rs`, library defaults) through a failover and then an outage of
/// all three relays: it says what the pool does, once, and its log says the same in the same order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_says_what_it_does_through_a_failover_and_a_total_outage() {
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut relays = Vec::new();
    for (seed, port) in ports.iter().enumerate() {
        relays.push(
            LOOPBACK
                .relay_server_keyed(*port, &seed.to_string(), &["--no-rate-limits"])
                .await,
        );
    }
    let addrs: Vec<String> = relays.iter().map(|(_, addr)| addr.clone()).collect();
    let id_of = |addr: &String| addr.rsplit('/').next().unwrap().to_owned();
    let mut pool = Process::spawn("pool", &[&addrs[0], &addrs[1], &addrs[2]]);
    let mut held = Vec::new();
    while held.len() < 2 {
        let relay = pool.wait_prefix("reserved relay=").await;
        held.push(relay.split(' ').next().unwrap().to_owned());
    }
    let index = |id: &str| addrs.iter().position(|a| id_of(a) == id).unwrap();
    let (lost, kept) = (index(&held[0]), index(&held[1]));
    let standby = 3 - lost - kept;

    // The failover: the standby takes the lost relay's slot, and nothing else is said.
    let before = events_printed(&pool).len();
    relays.remove(lost).0.kill().await;
    let standby_reserved = format!("reserved relay={}", id_of(&addrs[standby]));
    pool.wait_line("the standby's reservation", |l| {
        l.starts_with(&standby_reserved).then_some(())
    })
    .await;
    let failover: Vec<String> = events_printed(&pool)[before..]
        .iter()
        .map(|l| l.split(" addr=").next().unwrap().to_owned())
        .collect();
    assert_eq!(
        failover,
        [
            format!(
                "failed_over relay={} from={}",
                id_of(&addrs[standby]),
                id_of(&addrs[lost])
            ),
            format!("reserved relay={}", id_of(&addrs[standby])),
        ]
    );

    // Every relay down for 8 s, then back on the same ports.
    let before = events_printed(&pool).len();
    for (relay, _) in relays.drain(..) {
        relay.kill().await;
    }
    pool.wait_prefix("unreachable relay=").await;
    tokio::time::sleep(std::time::Duration::from_secs(8)).await;
    for (seed, port) in ports.iter().enumerate() {
        relays.push(
            LOOPBACK
                .relay_server_keyed(*port, &seed.to_string(), &["--no-rate-limits"])
                .await,
        );
    }
    pool.wait_prefix("pool_full relay=").await;
    pool.skip_printed();
    pool.wait_stderr("the relay pool is full again").await;
    let outage = &events_printed(&pool)[before..];
    let shorts: Vec<&String> = outage.iter().filter(|l| l.starts_with("pool_short")).collect();
    assert!(
        shorts.len() <= 2 && shorts.last().is_some_and(|l| l.contains(" reserved=0 target=2")),
        "once per relay lost, down to none: {outage:#?}"
    );
    let count = |token: &str| outage.iter().filter(|l| l.starts_with(token)).count();
    assert_eq!(
        (count("unreachable "), count("reachable "), count("pool_full ")),
        (1, 1, 1),
        "{outage:#?}"
    );
    let mut named = Vec::new();
    for from in outage.iter().filter_map(|l| l.split(" from=").nth(1)) {
        assert!(
            !named.contains(&from),
            "a lost relay named once per outage: {outage:#?}"
        );
        named.push(from);
    }
    let printed: Vec<String> = events_printed(&pool)
        .iter()
        .map(|l| l.split(' ').next().unwrap().to_owned())
        .collect();
    assert_eq!(
        events_logged(&pool),
        printed,
        "the log says what the events say, in order"
    );
}
