//! The thundering herd: 1,000 nodes lose the same relay at the same instant. With full jitter their first
//! retries spread over the first backoff window; without, they all dial at once. And 1,000 nodes given the
//! same list of relays in the same order, each with a pool of two slots: they spread over the relays, and when
//! one relay dies its nodes fail over to the others, spread as evenly.
//!
//! ```text
//! cargo test --release --test herd -- --nocapture
//! ```
//!
//! Simulated with real `RelayKeeper`s driven by hand (no network); the waits are the keepers' own.

mod common;

use std::time::Duration;

use common::drive::{accept_reservations, connect, dialer, disconnect};
use libp2p::{Multiaddr, PeerId};
use libp2p_relay_keeper::{Config, Event, RelayKeeper, RelayStatus};

const NODES: usize = 1_000;
const SEEDS: u64 = 100;
const WINDOW: Duration = Duration::from_millis(500);

/// The waits before the first retry of `NODES` keepers that lose `relay` together.
fn first_retry_waits(config: impl Fn(usize) -> Config) -> Vec<Duration> {
    let relay = PeerId::random();
    let addr: Multiaddr = format!("/ip4/198.51.100.7/tcp/4001/p2p/{relay}").parse().unwrap();
    (0..NODES)
        .map(|node| {
            let mut keeper = RelayKeeper::new(config(node));
            keeper.add_relay(addr.clone()).unwrap();
            connect(&mut keeper, relay, 1, &addr);
            accept_reservations(&mut keeper);
            disconnect(&mut keeper, relay, 1, &dialer(&addr));
            accept_reservations(&mut keeper)
                .into_iter()
                .find_map(|action| match action {
                    libp2p::swarm::ToSwarm::GenerateEvent(Event::ReconnectScheduled {
                        attempt: 1,
                        delay,
                        ..
                    }) => Some(delay),
                    _ => None,
                })
                .expect("every keeper schedules its first retry")
        })
        .collect()
}

/// The most dials that land in any `WINDOW`.
fn busiest_window(mut waits: Vec<Duration>) -> usize {
    waits.sort();
    let mut start = 0;
    (0..waits.len())
        .map(|end| {
            while waits[end] - waits[start] >= WINDOW {
                start += 1;
            }
            end - start + 1
        })
        .max()
        .unwrap_or(0)
}

#[test]
fn full_jitter_spreads_a_herd_over_the_first_backoff_window() {
    let bound = Config::default().backoff_bound(1);
    let uniform = NODES as f64 * WINDOW.as_secs_f64() / bound.as_secs_f64();
    let mut peaks: Vec<usize> = (0..SEEDS)
        .map(|seed| {
            busiest_window(first_retry_waits(|node| {
                Config::default().with_rng_seed(seed * 10_000 + node as u64)
            }))
        })
        .collect();
    peaks.sort();
    let within = peaks.iter().filter(|p| **p as f64 <= 1.5 * uniform).count();
    let no_jitter = busiest_window(first_retry_waits(|_| Config::default().with_jitter(false)));
    println!(
        "{NODES} nodes, first retry within {bound:?}: busiest {WINDOW:?} window over {SEEDS} seeds: median {}, worst {} \
         (uniform {uniform:.0}); {within}/{SEEDS} seeds within 1.5x; without jitter: {no_jitter}",
        peaks[peaks.len() / 2],
        peaks[peaks.len() - 1],
    );
    assert!(
        within >= 99,
        "only {within} of {SEEDS} seeds stay within 1.5x of a uniform spread: {peaks:?}"
    );
    assert_eq!(
        no_jitter, NODES,
        "without jitter every node dials at the same instant"
    );
}

const POOL_RELAYS: usize = 10;
const SLOTS: usize = 2;

/// How many of `NODES` keepers hold each relay (index), each given the same `POOL_RELAYS` relays in the same
/// order and `SLOTS` slots: once they are all reserved, and again after relay 0 died and they failed over.
/// Also how many failed over to each relay.
fn pool_loads(seed: u64) -> [Vec<usize>; 3] {
    let relays: Vec<(PeerId, Multiaddr)> = (0..POOL_RELAYS)
        .map(|i| {
            let peer = PeerId::random();
            let addr = format!("/ip4/198.51.100.{i}/tcp/4001/p2p/{peer}")
                .parse()
                .unwrap();
            (peer, addr)
        })
        .collect();
    let (mut reserved, mut after, mut orphans) =
        (vec![0; POOL_RELAYS], vec![0; POOL_RELAYS], vec![0; POOL_RELAYS]);
    let holding = |keeper: &RelayKeeper| -> Vec<usize> {
        (0..POOL_RELAYS)
            .filter(|i| {
                matches!(
                    keeper.status(&relays[*i].0),
                    Some(RelayStatus::Reserved | RelayStatus::Connecting)
                )
            })
            .collect()
    };
    for node in 0..NODES {
        let config = Config::default()
            .with_max_reservations(Some(SLOTS))
            .with_rng_seed(seed * 10_000 + node as u64);
        let mut keeper = RelayKeeper::new(config);
        for (_, addr) in &relays {
            keeper.add_relay(addr.clone()).unwrap();
        }
        // The promoted relays connect and take their reservations.
        for i in holding(&keeper) {
            connect(&mut keeper, relays[i].0, i, &relays[i].1);
        }
        accept_reservations(&mut keeper);
        let held = holding(&keeper);
        assert_eq!(held.len(), SLOTS);
        held.iter().for_each(|i| reserved[*i] += 1);
        if held.contains(&0) {
            disconnect(&mut keeper, relays[0].0, 0, &dialer(&relays[0].1));
            accept_reservations(&mut keeper);
        }
        let now = holding(&keeper);
        now.iter().for_each(|i| after[*i] += 1);
        now.iter()
            .filter(|i| !held.contains(i))
            .for_each(|i| orphans[*i] += 1);
    }
    [reserved, after, orphans]
}

/// The busiest relay's load over the average load of the relays that can be held.
fn busiest_share(loads: &[usize], relays: usize) -> f64 {
    let total: usize = loads.iter().sum();
    *loads.iter().max().unwrap() as f64 / (total as f64 / relays as f64)
}

#[test]
fn a_pool_spreads_nodes_over_their_relays_and_fails_over_as_evenly() {
    let (mut steady, mut failed_over, mut orphans) = (Vec::new(), Vec::new(), Vec::new());
    for seed in 0..SEEDS {
        let [reserved, after, moved] = pool_loads(seed);
        assert_eq!(after[0], 0, "nobody holds the dead relay");
        steady.push(busiest_share(&reserved, POOL_RELAYS));
        failed_over.push(busiest_share(&after, POOL_RELAYS - 1));
        orphans.push(busiest_share(&moved, POOL_RELAYS - 1));
    }
    let summary = |shares: &mut Vec<f64>| {
        shares.sort_by(f64::total_cmp);
        let within = shares.iter().filter(|s| **s <= 1.3).count();
        (shares[shares.len() / 2], shares[shares.len() - 1], within)
    };
    let (steady_median, steady_worst, steady_within) = summary(&mut steady);
    let (after_median, after_worst, after_within) = summary(&mut failed_over);
    let (orphans_median, orphans_worst, _) = summary(&mut orphans);
    println!(
        "{NODES} nodes, {POOL_RELAYS} relays in one order, {SLOTS} slots, {SEEDS} seeds: busiest relay's share of \
         the average: steady median {steady_median:.2}x, worst {steady_worst:.2}x ({steady_within}/{SEEDS} within \
         1.3x); after relay 0 died median {after_median:.2}x, worst {after_worst:.2}x ({after_within}/{SEEDS} \
         within 1.3x); the orphans alone median {orphans_median:.2}x, worst {orphans_worst:.2}x"
    );
    assert!(steady_within >= 99, "steady state: {steady:?}");
    assert!(after_within >= 99, "after the failover: {failed_over:?}");
}
