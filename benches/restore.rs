//! How fast the keeper restores a reservation once it can, over loopback TCP with a real relay (release build).
//!
//! ```text
//! cargo bench --bench restore
//! ```
//!
//! 1. Restore gap: from the moment the restarted relay accepts reservations, or the keeper's successful retry
//!    fires, whichever is later, until the circuit address is live again. Reported beside the scheduled wait,
//!    which is the backoff's doing, not the keeper's.
//! 2. HOP reaction: a freshly restarted relay refuses reservations until identify has told it its address;
//!    from the moment it starts accepting (offers HOP) until the circuit address is live again.
//! 3. Failover: a pool of one slot out of two relays; the relay holding it is killed; from the kill until
//!    the standby's circuit address is live. With the default promotion spread (a random wait of up to
//!    100 ms before the standby is dialed) and without one, which leaves the physical limit: the loss, one
//!    dial and one reservation.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{Client, External, Net, RelayServer};
use libp2p::{identity::Keypair, relay};
use libp2p_relay_keeper::{Config, Event};
use rand::{rngs::StdRng, RngExt, SeedableRng};

const RESTARTS: usize = 30;

/// What one restart measured.
struct Sample {
    /// Keeper-side latency: from "it can succeed" to "reservation live".
    gap: Duration,
    /// The wait the backoff scheduled before the last retry.
    scheduled: Duration,
    /// The relay refused a reservation on the restored connection (it did not offer HOP yet).
    refused: bool,
}

/// Kills and restarts the relay `RESTARTS` times with random down times; measures each restoration.
async fn restarts(external: External, identify: bool) -> Vec<Sample> {
    let mut rng = StdRng::seed_from_u64(1);
    let config = Config::default()
        .with_base_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_millis(400))
        .with_max_attempts(None);
    let mut client = Client::new(Net::Tcp, config, identify);
    let mut relay = RelayServer::start(
        Net::Tcp,
        Keypair::generate_ed25519(),
        None,
        external,
        relay::Config::default(),
    )
    .await;
    let relay_id = client.keeper().add_relay(relay.addr.clone()).unwrap();
    client.wait_reserved(relay_id).await;

    let mut samples = Vec::with_capacity(RESTARTS);
    for _ in 0..RESTARTS {
        let (key, addr) = relay.kill().await;
        let first_event = client.events.len();
        client
            .serve_for(Duration::from_millis(rng.random_range(0..300)))
            .await;
        relay = RelayServer::start(Net::Tcp, key, Some(addr), external, relay::Config::default()).await;
        client.wait_reserved(relay_id).await;
        let reserved_at = *client.event_times.last().unwrap();
        let accepting_at = relay
            .external_at
            .lock()
            .unwrap()
            .expect("the relay accepts reservations");
        // The successful retry is the last one scheduled before the reservation.
        let (scheduled_at, scheduled) = (first_event..client.events.len())
            .rev()
            .find_map(|i| match client.events[i] {
                Event::ReconnectScheduled { delay, .. } => Some((client.event_times[i], delay)),
                _ => None,
            })
            .expect("the loss scheduled a retry");
        let reconnected = (first_event..client.events.len())
            .find(|i| matches!(client.events[*i], Event::Connected { .. }))
            .expect("the connection came back");
        let refused = client.events[reconnected..]
            .iter()
            .any(|e| matches!(e, Event::ReconnectScheduled { .. }));
        // A refused reservation is retried when the relay announces HOP, not when the wait ends.
        let could_succeed_at = if refused {
            accepting_at
        } else {
            accepting_at.max(scheduled_at + scheduled)
        };
        samples.push(Sample {
            gap: reserved_at.saturating_duration_since(could_succeed_at),
            scheduled,
            refused,
        });
    }
    relay.kill().await;
    samples
}

/// Kills the relay holding the pool's one slot `RESTARTS` times, bringing it back as the standby each time;
/// returns, for each kill, how long until the other relay's circuit address was live.
async fn failovers(spread: Duration) -> Vec<Duration> {
    let config = Config::default()
        .with_base_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_millis(400))
        .with_max_attempts(None)
        .with_max_reservations(Some(1))
        .with_promotion_spread(spread);
    let mut client = Client::new(Net::Tcp, config, false);
    let mut relays = vec![
        RelayServer::spawn(Net::Tcp).await,
        RelayServer::spawn(Net::Tcp).await,
    ];
    for relay in &relays {
        client.keeper().add_relay(relay.addr.clone()).unwrap();
    }
    let mut holder = client
        .wait_for("the first reservation", |e| match e {
            Event::Reserved { relay, .. } => Some(*relay),
            _ => None,
        })
        .await;
    let mut samples = Vec::with_capacity(RESTARTS);
    for _ in 0..RESTARTS {
        let dead = relays.swap_remove(relays.iter().position(|r| r.peer_id == holder).unwrap());
        let standby = relays[0].peer_id;
        let killed_at = Instant::now();
        let (key, addr) = dead.kill().await;
        client.wait_reserved(standby).await;
        samples.push(
            client
                .event_times
                .last()
                .unwrap()
                .saturating_duration_since(killed_at),
        );
        // The dead relay comes back, and is a standby again once its backoff ran out.
        relays.push(
            RelayServer::start(
                Net::Tcp,
                key,
                Some(addr),
                External::AtStart,
                relay::Config::default(),
            )
            .await,
        );
        client.serve_for(Duration::from_millis(500)).await;
        holder = standby;
    }
    for relay in relays {
        relay.kill().await;
    }
    samples
}

fn report_failovers(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{name}: {} kills; from the kill to the standby's reservation live: median {:.2?} (p10 {:.2?}, p90 \
         {:.2?}, max {:.2?})",
        samples.len(),
        percentile(&samples, 50),
        percentile(&samples, 10),
        percentile(&samples, 90),
        samples[samples.len() - 1],
    );
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() - 1) * p / 100]
}

fn report(name: &str, samples: &[Sample]) {
    let mut gaps: Vec<Duration> = samples.iter().map(|s| s.gap).collect();
    let mut waits: Vec<Duration> = samples.iter().map(|s| s.scheduled).collect();
    gaps.sort();
    waits.sort();
    let refused = samples.iter().filter(|s| s.refused).count();
    println!(
        "{name}: {} restarts ({refused} with a refused first reservation); gap median {:.2?} (p10 {:.2?}, \
         p90 {:.2?}, max {:.2?}); scheduled wait median {:.1?}",
        samples.len(),
        percentile(&gaps, 50),
        percentile(&gaps, 10),
        percentile(&gaps, 90),
        gaps[gaps.len() - 1],
        percentile(&waits, 50),
    );
}

#[tokio::main]
async fn main() {
    // `cargo test --benches` runs bench targets in test mode: do a single quick round then.
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let start = Instant::now();
    report(
        "restore gap (relay accepts at once)",
        &restarts(External::AtStart, false).await,
    );
    report(
        "HOP reaction (relay learns its address from identify)",
        &restarts(External::FromIdentify, true).await,
    );
    report_failovers(
        "failover, promotion spread 100 ms (default)",
        failovers(Duration::from_millis(100)).await,
    );
    report_failovers("failover, no promotion spread", failovers(Duration::ZERO).await);
    println!("took {:.1?}", start.elapsed());
}
