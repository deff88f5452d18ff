//! How long a node stays unreachable, end to end, measured with the examples as real processes: a
//! `relay_server`, a `dcutr --mode listen` node kept by the keeper, and a new `dcutr --mode dial` process
//! every 250 ms that tries to reach the listener through the relay. Faults: the relay SIGKILLed and restarted
//! 2 s later on loopback; its route black-holed for 6 s between two network namespaces (root and iproute2).
//!
//! A measurement, not a check: it prints the table in BENCHMARKS.md and draws `docs/time-unreachable.svg`.
//! A second one keeps a listener with a pool of two reservations out of three relays and kills a held relay:
//! a prober keeps reaching the listener through the other held relay, and the standby takes the dead one's
//! slot.
//!
//! ```text
//! cargo build --release --examples && cargo test --release --test unreachable -- --ignored --nocapture
//! ```

mod common;

use std::time::{Duration, Instant};

use common::{
    netns::{lab, Lab, CLIENT_IP, RELAY_IP},
    prober::Prober,
    process::{free_port, quic_addr, Host, LOOPBACK},
    recorded::Recorded,
};
use plotters::prelude::*;

/// The listener's settings besides the setup's own: the issue's backoff, and never giving up.
const LISTENER: [&str; 6] = [
    "--backoff-base-ms",
    "200",
    "--backoff-max-ms",
    "1000",
    "--max-attempts",
    "1000",
];

/// What is compared: the keeper with its default probe, with a faster one, without a probe, and no keeper;
/// each with the listener's flags and the relay's. Without the keeper the node would never reserve on a fresh
/// upstream relay at all (it refuses until identify told it its address, and nothing retries), so for that
/// baseline the relay takes its listen address as external at once.
struct Setup {
    name: &'static str,
    /// The listener's backoff and give-up flags.
    backoff: &'static [&'static str],
    listener: &'static [&'static str],
    relay: &'static [&'static str],
    /// How long after the fault ended the node gets to be reachable again before the round counts as "never".
    observe: Duration,
}

const SETUPS: [Setup; 5] = [
    Setup {
        backoff: &LISTENER,
        observe: OBSERVE,
        name: "keeper, probe 3 s / floor 1.3 s (default)",
        listener: &[],
        relay: &["--no-rate-limits"],
    },
    // The interval a 5 s bound needs with the default floor (2.4 s + 2 x 1.3 s); its cost: tests/wire_cost.rs.
    Setup {
        backoff: &LISTENER,
        observe: OBSERVE,
        name: "keeper, probe 2.4 s / floor 1.3 s",
        listener: &["--probe-interval-ms", "2400"],
        relay: &["--no-rate-limits"],
    },
    Setup {
        backoff: &LISTENER,
        observe: OBSERVE,
        name: "keeper, probe 0.5 s / floor 1 s",
        listener: &["--probe-interval-ms", "500", "--probe-timeout-ms", "1000"],
        relay: &["--no-rate-limits"],
    },
    Setup {
        backoff: &LISTENER,
        observe: OBSERVE,
        name: "keeper, no probe",
        listener: &["--no-probe"],
        relay: &["--no-rate-limits"],
    },
    Setup {
        backoff: &LISTENER,
        observe: OBSERVE,
        name: "no keeper",
        listener: &["--no-keeper"],
        relay: &["--no-rate-limits", "--assume-reachable"],
    },
];

const ROUNDS: usize = 3;
const PROBE_EVERY: Duration = Duration::from_millis(250);
/// How long a probe may take; a circuit on loopback takes milliseconds.
const PROBE_LIMIT: Duration = Duration::from_secs(3);
const RESTART_AFTER: Duration = Duration::from_secs(2);
const BLACK_HOLE_FOR: Duration = Duration::from_secs(6);
/// How long after the fault ended the node gets to be reachable again before the round counts as "never",
/// with the issue's backoff.
const OBSERVE: Duration = Duration::from_secs(12);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    Restart,
    SilentDeath,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Transport {
    Tcp,
    Quic,
}

/// What one round showed, in seconds after the fault began (`loss`, `relay_noticed`) or ended (`reachable`).
#[derive(Debug, Default)]
struct Round {
    loss: Option<f64>,
    relay_noticed: Option<f64>,
    reachable: Option<f64>,
    /// Every probe, in seconds after the fault began: when it reached the listener, or when it started if it
    /// did not.
    probes: Vec<(f64, bool)>,
    fault_lasted: f64,
}

/// Where the processes of one round run.
struct Place<'a> {
    relay: Host<'static>,
    listener: Host<'static>,
    lab: Option<&'a Lab>,
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

async fn round(place: &Place<'_>, fault: Fault, transport: Transport, setup: &Setup) -> Round {
    let port = match place.lab {
        Some(_) => 4001,
        None => free_port(),
    };
    let relay_flags = setup.relay;
    let (relay, relay_tcp) = place.relay.relay_server(port, relay_flags).await;
    let relay_given = match transport {
        Transport::Tcp => relay_tcp.clone(),
        Transport::Quic => quic_addr(&relay_tcp),
    };
    let mut args: Vec<&str> = setup.backoff.to_vec();
    args.extend_from_slice(setup.listener);
    let mut listener = place.listener.dcutr("listen", "1", &relay_given, &args);
    let listener_id = listener.wait_prefix("peer_id=").await;
    let listener = Recorded::new("dcutr --mode listen", listener);
    let mut relay = Recorded::new("relay_server", relay);
    let reserved = listener
        .wait(Duration::from_secs(10), |lines| {
            lines
                .iter()
                .any(|(_, l)| l.contains("/p2p-circuit"))
                .then_some(())
        })
        .await
        .is_some();
    assert!(reserved, "the listener reserved a circuit before the fault");
    let prober = Prober::start(
        place.relay,
        relay_tcp.clone(),
        listener_id.clone(),
        PROBE_EVERY,
        PROBE_LIMIT,
    );
    for _ in 0..40 {
        if prober
            .reached_after(Instant::now() - Duration::from_secs(5))
            .is_some()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let began = Instant::now();
    match fault {
        Fault::Restart => {
            relay.stop();
            tokio::time::sleep(RESTART_AFTER).await;
            relay = Recorded::new(
                "relay_server",
                place.relay.relay_server(port, relay_flags).await.0,
            );
        }
        Fault::SilentDeath => {
            let lab = place.lab.expect("a silent death needs the namespaces");
            let route = format!("{RELAY_IP}/32");
            lab.client(&["route", "add", "blackhole", &route]).unwrap();
            tokio::time::sleep(BLACK_HOLE_FOR).await;
            lab.client(&["route", "del", "blackhole", &route]).unwrap();
        }
    }
    let ended = Instant::now();
    while ended.elapsed() < setup.observe && prober.reached_after(ended).is_none() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let secs = |at: Instant, from: Instant| at.saturating_duration_since(from).as_secs_f64();
    let mut result = Round {
        loss: listener
            .first("keeper reconnect_scheduled", began)
            .map(|at| secs(at, began)),
        relay_noticed: relay
            .first(&format!("dead_link peer={listener_id}"), began)
            .map(|at| secs(at, began)),
        reachable: prober.reached_after(ended).map(|at| secs(at, ended)),
        probes: Vec::new(),
        fault_lasted: secs(ended, began),
    };
    result.probes = prober
        .stop()
        .await
        .into_iter()
        .map(|(started, reached)| match reached {
            Some(at) => (secs(at, began), true),
            None => (secs(started, began), false),
        })
        .collect();
    listener.stop();
    relay.stop();
    result
}

fn figures(values: impl Iterator<Item = Option<f64>>) -> String {
    values
        .map(|v| v.map_or("never".to_owned(), |s| format!("{s:.2}")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One panel per fault and transport; one row of probes per setup, green where the listener was reached.
fn draw(panels: &[(String, Vec<(&str, Round)>)]) -> Result<(), Box<dyn std::error::Error>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/time-unreachable.svg");
    std::fs::create_dir_all(concat!(env!("CARGO_MANIFEST_DIR"), "/docs"))?;
    let root = SVGBackend::new(path, (1200, 200 + 180 * panels.len() as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let areas = root.split_evenly((panels.len(), 1));
    for ((title, rows), area) in panels.iter().zip(areas) {
        let end = rows
            .iter()
            .flat_map(|(_, r)| r.probes.iter().map(|(t, _)| *t))
            .fold(0.0, f64::max);
        let mut chart = ChartBuilder::on(&area)
            .caption(title, ("sans-serif", 18))
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(230)
            .build_cartesian_2d(-0.5..end + 0.5, -0.5..(rows.len() as f64 - 0.5))?;
        let names: Vec<&str> = rows.iter().map(|(name, _)| *name).collect();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(rows.len())
            .y_label_formatter(&|y| {
                let i = y.round() as usize;
                names.get(i).map_or(String::new(), |n| n.to_string())
            })
            .x_desc("seconds since the fault began: green, a peer reached the node through the relay; red, a try failed")
            .draw()?;
        for (i, (_, round)) in rows.iter().enumerate() {
            chart.draw_series(round.probes.iter().map(|(t, ok)| {
                let colour = if *ok { GREEN.filled() } else { RED.filled() };
                Circle::new((*t, i as f64), 4, colour)
            }))?;
            chart.draw_series(std::iter::once(PathElement::new(
                vec![
                    (round.fault_lasted, i as f64 - 0.4),
                    (round.fault_lasted, i as f64 + 0.4),
                ],
                BLACK.stroke_width(2),
            )))?;
        }
    }
    root.present()?;
    println!("picture: {path}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement of several minutes; see the module docs"]
async fn time_unreachable() {
    let netns = lab();
    let mut places = vec![(
        Fault::Restart,
        Place {
            relay: LOOPBACK,
            listener: LOOPBACK,
            lab: None,
        },
    )];
    if let Some(lab) = &netns {
        places.push((
            Fault::SilentDeath,
            Place {
                relay: Host {
                    netns: Some(leak(&lab.relay_ns)),
                    ip: RELAY_IP,
                },
                listener: Host {
                    netns: Some(leak(&lab.client_ns)),
                    ip: CLIENT_IP,
                },
                lab: Some(lab),
            },
        ));
    }
    println!("| fault | transport | setup | loss reported after (s) | relay noticed after (s) | reachable again after (s) |");
    println!("|---|---|---|---|---|---|");
    let mut panels = Vec::new();
    for (fault, place) in &places {
        for transport in [Transport::Tcp, Transport::Quic] {
            let mut rows = Vec::new();
            for setup in &SETUPS {
                let mut rounds = Vec::new();
                for _ in 0..ROUNDS {
                    rounds.push(round(place, *fault, transport, setup).await);
                }
                println!(
                    "| {fault:?} | {transport:?} | {} | {} | {} | {} |",
                    setup.name,
                    figures(rounds.iter().map(|r| r.loss)),
                    match fault {
                        Fault::Restart => "(killed)".to_owned(),
                        Fault::SilentDeath => figures(rounds.iter().map(|r| r.relay_noticed)),
                    },
                    figures(rounds.iter().map(|r| r.reachable)),
                );
                rows.push((setup.name, rounds.swap_remove(0)));
            }
            let what = match fault {
                Fault::Restart => "relay SIGKILLed, restarted 2 s later (black line)",
                Fault::SilentDeath => "relay's route black-holed for 6 s (until the black line)",
            };
            panels.push((format!("{transport:?}: {what}"), rows));
        }
    }
    draw(&panels).unwrap();
}

/// The relay ids of the listener's `keeper reserved relay=<id> ...` lines at or after `since`.
fn reserved_relays(listener: &Recorded, since: Instant) -> Vec<String> {
    listener
        .snapshot()
        .iter()
        .filter(|(at, _)| *at >= since)
        .filter_map(|(_, line)| line.strip_prefix("keeper reserved relay="))
        .filter_map(|rest| rest.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// The README's settings profiles without a pool, as `dcutr` flags (100,000 retries stand for `None`).
const PROFILES: [Setup; 3] = [
    Setup {
        name: "defaults: waits from 5 s doubling to 60 s, probe after 3 s unheard",
        backoff: &[],
        listener: &[],
        relay: &["--no-rate-limits"],
        observe: Duration::from_secs(75),
    },
    Setup {
        name: "quick return: waits from 0.5 s doubling to 5 s, never giving up",
        backoff: &[
            "--backoff-base-ms",
            "500",
            "--backoff-max-ms",
            "5000",
            "--max-attempts",
            "100000",
        ],
        listener: &[],
        relay: &["--no-rate-limits"],
        observe: Duration::from_secs(20),
    },
    Setup {
        name: "phone: defaults, probe after 10 s unheard",
        backoff: &[],
        listener: &["--probe-interval-ms", "10000"],
        relay: &["--no-rate-limits"],
        observe: Duration::from_secs(75),
    },
];

/// How many restarts each profile is measured over.
const PROFILE_ROUNDS: usize = 10;

/// Time unreachable after a relay restart (SIGKILL, back 2 s later, loopback TCP) per settings profile, for
/// "Choosing settings" in docs/configuration.md:
/// `cargo build --release --examples && cargo test --release --test unreachable -- --ignored --nocapture settings_profiles`
/// (about 8 minutes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement of about 8 minutes; see its docs"]
async fn settings_profiles() {
    let place = Place {
        relay: LOOPBACK,
        listener: LOOPBACK,
        lab: None,
    };
    println!("| profile | reachable again after a relay restart (s, {PROFILE_ROUNDS} rounds): median, max | all rounds |");
    println!("|---|---|---|");
    for setup in &PROFILES {
        let mut rounds = Vec::new();
        for _ in 0..PROFILE_ROUNDS {
            rounds.push(
                round(&place, Fault::Restart, Transport::Tcp, setup)
                    .await
                    .reachable,
            );
        }
        let mut reached: Vec<f64> = rounds.iter().flatten().copied().collect();
        reached.sort_by(f64::total_cmp);
        let never = rounds.iter().filter(|r| r.is_none()).count();
        let summary = if never > 0 {
            format!("never in {never} of {PROFILE_ROUNDS}")
        } else {
            format!(
                "{:.2}, {:.2}",
                reached[reached.len() / 2],
                reached[reached.len() - 1]
            )
        };
        println!("| {} | {summary} | {} |", setup.name, figures(rounds.into_iter()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement of about a minute; see the module docs"]
async fn a_pool_keeps_the_node_reachable_while_a_held_relay_dies() {
    println!("| round | probes through the other held relay during the 5 s after the kill | standby reserved after (ms) |");
    println!("|---|---|---|");
    for round in 0..ROUNDS {
        let mut relays = Vec::new();
        // Not the listener's seed (1): a relay with the node's own identity is a mistake the keeper refuses.
        for seed in ["101", "102", "103"] {
            let (process, addr) = LOOPBACK
                .relay_server_keyed(free_port(), seed, &["--no-rate-limits"])
                .await;
            relays.push((Recorded::new("relay_server", process), addr));
        }
        let mut args: Vec<&str> = LISTENER.to_vec();
        args.extend_from_slice(&["--max-reservations", "2"]);
        for (_, addr) in &relays[1..] {
            args.extend_from_slice(&["--relay-address", addr]);
        }
        let mut listener = LOOPBACK.dcutr("listen", "1", &relays[0].1, &args);
        let listener_id = listener.wait_prefix("peer_id=").await;
        let listener = Recorded::new("dcutr --mode listen", listener);
        let start = Instant::now();
        while reserved_relays(&listener, start).len() < 2 {
            assert!(start.elapsed() < Duration::from_secs(10), "two reservations");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let held = reserved_relays(&listener, start);
        let index_of = |id: &str| relays.iter().position(|(_, addr)| addr.ends_with(id)).unwrap();
        let (dead, survivor) = (index_of(&held[0]), index_of(&held[1]));
        let prober = Prober::start(
            LOOPBACK,
            relays[survivor].1.clone(),
            listener_id.clone(),
            PROBE_EVERY,
            PROBE_LIMIT,
        );
        tokio::time::sleep(Duration::from_secs(1)).await;

        let killed = Instant::now();
        let (dead_relay, _) = relays.remove(dead);
        dead_relay.stop();
        tokio::time::sleep(Duration::from_secs(5)).await;
        let results = prober.stop().await;
        let during: Vec<bool> = results
            .iter()
            .filter(|(started, _)| *started >= killed && *started < killed + Duration::from_secs(5))
            .map(|(_, reached)| reached.is_some())
            .collect();
        let standby_reserved = listener
            .first("keeper reserved relay=", killed)
            .map(|at| at.saturating_duration_since(killed).as_secs_f64());
        println!(
            "| {round} | {} of {} reached the listener | {} |",
            during.iter().filter(|ok| **ok).count(),
            during.len(),
            standby_reserved.map_or("never".to_owned(), |s| format!("{:.1}", s * 1000.0)),
        );
        listener.stop();
        for (relay, _) in relays {
            relay.stop();
        }
    }
}
