//! Known relays across two runs of a real process: the `known_relays` example learns its relays from the
//! command line and stores the keeper's snapshot when it is stopped; its next run, given only the file (with
//! two bad entries added), reserves first on the relay that served it last.

mod common;

use std::path::{Path, PathBuf};

use common::process::{free_port, Process, LOOPBACK};
use libp2p::PeerId;
use libp2p_relay_keeper::KnownRelay;

/// The test's snapshot file, removed when the test ends, however it ends.
struct File(PathBuf);

impl File {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!("relay-keeper-known-{}.json", std::process::id()));
        let _ = std::fs::remove_file(&path);
        Self(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temp dir")
    }

    fn read(&self) -> Vec<serde_json::Value> {
        serde_json::from_slice(&std::fs::read(&self.0).expect("the snapshot was written")).unwrap()
    }
}

impl Drop for File {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let _ = std::fs::remove_file(Path::new(&format!("{}.partial", self.path())));
    }
}

/// The peer id of a `reserved relay=<id> addr=<addr>` line.
fn reserved(line: &str) -> Option<String> {
    let rest = line.strip_prefix("reserved relay=")?;
    rest.split(' ').next().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_reserves_first_on_the_relay_that_served_it_last() {
    let file = File::new();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut relays = Vec::new();
    for (seed, port) in ports.iter().enumerate() {
        let seed = seed.to_string();
        relays.push(Some(
            LOOPBACK
                .relay_server_keyed(*port, &seed, &["--no-rate-limits"])
                .await,
        ));
    }
    let addrs: Vec<String> = relays.iter().map(|r| r.as_ref().unwrap().1.clone()).collect();
    let index = |id: &str| addrs.iter().position(|a| a.ends_with(id)).unwrap();

    // The first run: three relays, one slot. The relay it reserves on goes down, and a standby takes over.
    let mut args = vec!["--file", file.path()];
    args.extend(addrs.iter().map(String::as_str));
    let mut first = Process::spawn("known_relays", &args);
    first.wait_prefix("no known relays yet").await;
    let served_first = first.wait_line("a reservation", reserved).await;
    let down = index(&served_first);
    relays[down].take().unwrap().0.kill().await;
    let served_last = first
        .wait_line("the failover's reservation", |l| {
            reserved(l).filter(|id| *id != served_first)
        })
        .await;
    first.terminate();
    first.wait_prefix("saved known_relays=3 ").await;
    assert!(first.exits_successfully().await, "SIGTERM is a clean exit");

    let stored: Vec<KnownRelay> = serde_json::from_value(file.read().into()).unwrap();
    let order: Vec<(String, bool)> = stored
        .iter()
        .map(|r| (r.peer_id.to_string(), r.last_reserved.is_some()))
        .collect();
    let never = &addrs[3 - down - index(&served_last)];
    let never = never.rsplit('/').next().unwrap().to_owned();
    assert_eq!(
        order,
        [
            (served_last.clone(), true),
            (served_first.clone(), true),
            (never, false)
        ],
        "the most recently reserved first"
    );

    // All three up again; the second run knows them only from the file, where two bad entries were added.
    let seed = down.to_string();
    relays[down] = Some(
        LOOPBACK
            .relay_server_keyed(ports[down], &seed, &["--no-rate-limits"])
            .await,
    );
    let mut entries = file.read();
    let mut circuit = entries[0].clone();
    let stranger = PeerId::random();
    circuit["peer_id"] = stranger.to_string().into();
    circuit["addrs"] = vec![format!("/ip4/127.0.0.1/tcp/1/p2p/{stranger}/p2p-circuit")].into();
    let mut unreadable = entries[0].clone();
    unreadable["addrs"] = vec!["not an address"].into();
    entries.extend([circuit, unreadable]);
    std::fs::write(&file.0, serde_json::to_vec(&entries).unwrap()).unwrap();

    let mut second = Process::spawn("known_relays", &["--file", file.path()]);
    let bad = format!("known relay {stranger} skipped: /ip4/127.0.0.1/tcp/1/p2p/{stranger}/p2p-circuit: ");
    second.wait_prefix(&bad).await;
    second.wait_prefix("loaded known_relays=3 ").await;
    assert_eq!(
        second.count("skipped entry 4 of "),
        1,
        "the entry that does not parse is named: {:#?}",
        second.seen
    );
    let reserved_first = second.wait_line("a reservation", reserved).await;
    assert_eq!(
        reserved_first, served_last,
        "the relay that served last comes first"
    );
    assert_eq!(
        second.stderr_count(&format!("WARN libp2p_relay_keeper::known: {bad}")),
        1,
        "the keeper logs the bad entry at warn"
    );
    second.kill().await;
    for (relay, _) in relays.into_iter().flatten() {
        relay.kill().await;
    }
}
