//! The thundering herd: 1,000 nodes lose the same relay at the same instant. With full jitter their first
//! retries spread over the first backoff window; without, they all dial at once.
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
use libp2p_relay_keeper::{Config, Event, RelayKeeper};

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
