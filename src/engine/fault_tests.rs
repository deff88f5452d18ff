//! Transient trouble on the engine's clock: a simulated relay that restarts (and refuses its first
//! reservation until identify, as upstream's does), falls into a black hole, has its live link cut by a false
//! alarm of the probe, or refuses a reservation, in random sequences at the defaults. Whatever happened, once
//! the relay is up and stays up, its reservation is live again within the cap on the waits and a second,
//! or the cool-down on top when a round of retries ran out; and a relay that keeps falling over is dialed
//! no more often than one that stays down.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use libp2p::{
    core::transport::ListenerId,
    swarm::{CloseConnection, ConnectionId, DialError},
    Multiaddr, PeerId,
};
use proptest::prelude::*;

use super::{
    harness::{circuit, hop_refusal, refusal, relay_addr, Harness},
    Command,
};
use crate::{handler::ToBehaviour, Config, Event, MAX_PRESUMED_RESTARTS};

/// How long a relay takes to tell a new client the protocols it offers: identify's round trip.
const IDENTIFY: Duration = Duration::from_millis(5);
/// How long a black-holed link stays up before the probe gives up on it (at most 3 s + 2 x 1.3 s by default).
const PROBE_CUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy)]
enum Fault {
    /// The relay goes away with every connection and is back after this long, freshly started: it refuses
    /// reservations until identify told it its address. Its host stays up and refuses dials meanwhile.
    Restart(Duration),
    /// Like a restart, but the relay's host is down: dials fail without a refusal.
    HostDown(Duration),
    /// Nothing passes for this long: the live link falls silent (the probe cuts it), dials hang until the
    /// black hole ends or their time limit.
    BlackHole(Duration),
    /// The probe cuts a link that still works.
    FalseCut,
    /// The relay refuses the next reservation request (its limits, say).
    Refusal,
}

/// What the simulated network does at a later instant.
#[derive(Debug, Clone, Copy)]
enum Later {
    /// Identify ran on connection: a relay that was freshly started offers HOP from now on.
    Identified(ConnectionId),
    /// The relay is back after a restart.
    Up,
    /// The black hole is over.
    Light,
    /// The probe of the black-holed link gives up.
    ProbeCut(ConnectionId),
}

/// One kept relay and the network around it, answering the engine's commands as a real relay would.
struct Sim {
    harness: Harness,
    relay: PeerId,
    addr: Multiaddr,
    up: bool,
    /// While the relay is down, its host refuses dials (it is up; the relay process is not).
    host_refuses: bool,
    /// Until when the relay is down: restarts that overlap end with the last of them.
    down_until: Instant,
    black_hole: bool,
    /// Until when nothing passes: black holes that overlap end with the last of them.
    dark_until: Instant,
    offers_hop: bool,
    refuse_next: bool,
    link: Option<ConnectionId>,
    /// The keeper's listener on the relay: its request in flight, or the live reservation.
    listener: Option<ListenerId>,
    hung_dial: Option<ConnectionId>,
    agenda: BTreeMap<(Instant, u64), Later>,
    sequence: u64,
    /// When the keeper dialed the relay, each time.
    dialed_at: Vec<Instant>,
    gave_up: bool,
    reserved_at: Option<Instant>,
    /// The counted retries announced: their number and wait.
    scheduled: Vec<(u32, Duration)>,
}

impl Sim {
    fn new(config: Config) -> Self {
        let (relay, addr) = relay_addr();
        let harness = Harness::new(config);
        let now = harness.now;
        let mut sim = Self {
            harness,
            relay,
            addr,
            up: true,
            host_refuses: true,
            down_until: now,
            black_hole: false,
            dark_until: now,
            offers_hop: true,
            refuse_next: false,
            link: None,
            listener: None,
            hung_dial: None,
            agenda: BTreeMap::new(),
            sequence: 0,
            dialed_at: Vec::new(),
            gave_up: false,
            reserved_at: None,
            scheduled: Vec::new(),
        };
        let addr = sim.addr.clone();
        sim.harness.add_relay(&addr);
        sim.settle();
        sim
    }

    fn later(&mut self, after: Duration, what: Later) {
        self.sequence += 1;
        self.agenda
            .insert((self.harness.now + after, self.sequence), what);
    }

    /// Answers every command the engine has, and what those answers lead to, at the current instant.
    fn settle(&mut self) {
        loop {
            let commands = self.harness.drain();
            if commands.is_empty() {
                return;
            }
            for command in commands {
                self.answer(command);
            }
        }
    }

    fn answer(&mut self, command: Command) {
        let now = self.harness.now;
        match command {
            Command::Dial(opts) => {
                self.dialed_at.push(now);
                let id = opts.connection_id();
                if self.black_hole {
                    self.hung_dial = Some(id);
                } else if self.up {
                    self.connect(id);
                } else {
                    self.fail_dial(id);
                }
            }
            Command::Listen(opts) => {
                let listener = opts.listener_id();
                let engine = &mut self.harness.engine;
                if self.refuse_next {
                    self.refuse_next = false;
                    let refusal = std::io::Error::other("reservation refused");
                    engine.on_listener_closed(listener, Err(&refusal), now);
                } else if !self.offers_hop {
                    engine.on_listener_closed(listener, Err(&hop_refusal()), now);
                } else {
                    self.listener = Some(listener);
                    engine.on_new_listen_addr(listener, &circuit(&self.addr), now);
                }
            }
            Command::Close {
                connection: CloseConnection::One(id),
                ..
            } if self.link == Some(id) => self.disconnect(),
            Command::Close {
                connection: CloseConnection::All,
                ..
            } => {
                if let Some(id) = self.hung_dial.take() {
                    self.harness.fail_dial(self.relay, id, &DialError::Aborted);
                }
            }
            Command::RemoveListener(id) if self.listener == Some(id) => self.listener = None,
            Command::Emit(Event::Reserved { .. }) => self.reserved_at = Some(now),
            Command::Emit(Event::GaveUp { .. }) => self.gave_up = true,
            Command::Emit(Event::ReconnectScheduled { attempt, delay, .. }) => {
                self.scheduled.push((attempt, delay))
            }
            Command::Close { .. }
            | Command::RemoveListener(_)
            | Command::KeepAlive { .. }
            | Command::ProbeNow { .. }
            | Command::Emit(_) => {}
        }
    }

    /// A dial to the relay while it is down fails: refused, or unanswered if its host is down too.
    fn fail_dial(&mut self, id: ConnectionId) {
        let error = if self.host_refuses {
            refusal(&self.addr)
        } else {
            DialError::Aborted
        };
        self.harness.fail_dial(self.relay, id, &error);
    }

    fn connect(&mut self, id: ConnectionId) {
        self.link = Some(id);
        let addr = self.addr.clone();
        self.harness.connect(self.relay, id, &addr);
        self.later(IDENTIFY, Later::Identified(id));
    }

    /// The link closes, and the relay client's listener with it.
    fn disconnect(&mut self) {
        let Some(id) = self.link.take() else {
            return;
        };
        let addr = self.addr.clone();
        self.harness.close(self.relay, id, &addr);
        if let Some(listener) = self.listener.take() {
            let now = self.harness.now;
            self.harness.engine.on_listener_closed(listener, Ok(()), now);
        }
    }

    fn happen(&mut self, what: Later) {
        let now = self.harness.now;
        match what {
            Later::Identified(id) if self.link == Some(id) && self.up && !self.black_hole => {
                self.offers_hop = true;
                self.harness
                    .engine
                    .on_handler_event(self.relay, id, ToBehaviour::HopEnabled, now);
            }
            Later::Up if now >= self.down_until => {
                self.up = true;
                self.offers_hop = false;
            }
            Later::Light if now >= self.dark_until => {
                self.black_hole = false;
                // The dial's handshake, resent, now gets through, or finds the relay down.
                if let Some(id) = self.hung_dial.take() {
                    if self.up {
                        self.connect(id);
                    } else {
                        self.fail_dial(id);
                    }
                }
            }
            Later::ProbeCut(id) if self.link == Some(id) => {
                self.harness
                    .engine
                    .on_handler_event(self.relay, id, ToBehaviour::ProbeTimedOut, now);
            }
            Later::Identified(_) | Later::ProbeCut(_) | Later::Up | Later::Light => {}
        }
        self.settle();
    }

    fn fault(&mut self, fault: Fault) {
        let now = self.harness.now;
        match fault {
            Fault::Restart(down) | Fault::HostDown(down) => {
                self.host_refuses = matches!(fault, Fault::Restart(_));
                self.down_until = self.down_until.max(now + down);
                self.up = false;
                self.offers_hop = false;
                self.disconnect();
                self.later(down, Later::Up);
            }
            Fault::BlackHole(length) => {
                self.dark_until = self.dark_until.max(now + length);
                self.black_hole = true;
                if let Some(id) = self.link {
                    self.later(PROBE_CUT.min(length), Later::ProbeCut(id));
                }
                self.later(length, Later::Light);
            }
            Fault::FalseCut => {
                if let Some(id) = self.link {
                    self.harness
                        .engine
                        .on_handler_event(self.relay, id, ToBehaviour::ProbeTimedOut, now);
                }
            }
            Fault::Refusal => self.refuse_next = true,
        }
        self.settle();
    }

    /// Runs the clock to `until`, through the engine's deadlines and the network's agenda.
    fn run_until(&mut self, until: Instant) {
        loop {
            let agenda = self.agenda.keys().next().map(|(at, _)| *at);
            let next = [agenda, self.harness.engine.poll_timeout()]
                .into_iter()
                .flatten()
                .min()
                .filter(|at| *at <= until);
            let Some(next) = next else {
                self.harness.now = self.harness.now.max(until);
                self.settle();
                return;
            };
            self.harness.now = self.harness.now.max(next);
            if agenda == Some(next) {
                let (_, what) = self.agenda.pop_first().expect("the agenda's first entry");
                self.happen(what);
            } else {
                self.settle();
            }
        }
    }

    fn run_for(&mut self, length: Duration) {
        let until = self.harness.now + length;
        self.run_until(until);
    }

    /// When the relay is up and stays up: once the last fault is over.
    fn quiet_from(&self) -> Instant {
        self.down_until.max(self.dark_until).max(self.harness.now)
    }
}

fn fault() -> impl Strategy<Value = Fault> {
    let ms = |range: std::ops::Range<u64>| range.prop_map(Duration::from_millis);
    prop_oneof![
        4 => ms(0..300_000).prop_map(Fault::Restart),
        2 => ms(0..300_000).prop_map(Fault::HostDown),
        2 => ms(0..120_000).prop_map(Fault::BlackHole),
        3 => Just(Fault::FalseCut),
        1 => Just(Fault::Refusal),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(256),
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_relay_that_is_back_is_kept_again_after_any_faults(
        seed in any::<u64>(),
        faults in prop::collection::vec((0u64..90_000, fault()), 1..30),
    ) {
        let config = Config::default().with_rng_seed(seed);
        let cap = config.backoff_bound(u32::MAX);
        let cooldown = config.cooldown().expect("a cool-down by default");
        let mut sim = Sim::new(config);
        for (gap, fault) in faults {
            sim.run_for(Duration::from_millis(gap));
            sim.fault(fault);
        }
        let quiet = sim.quiet_from();
        sim.run_until(quiet);
        // The relay stays up from now on: a refusal not yet spent is no longer coming.
        sim.refuse_next = false;
        let gave_up = sim.gave_up;
        sim.reserved_at = None;
        let bound = if gave_up { cooldown + cap } else { cap } + Duration::from_secs(1);
        // The reservation may be live already; then it stays.
        sim.run_for(bound);
        let live = sim.listener.is_some() && sim.link.is_some();
        prop_assert!(
            live,
            "not reserved {:?} after the relay was back (gave up: {}): {:?}",
            bound,
            gave_up,
            sim.harness.engine.status(&sim.relay)
        );
    }
}

/// Dials a relay sees in `minutes` simulated minutes from a keeper with `config` while it `flaps` (dies 2 s
/// after every reservation and is back at once) or stays down.
fn dials_in(config: Config, minutes: u64, flaps: bool) -> (usize, bool) {
    let mut sim = Sim::new(config);
    let start = sim.harness.now;
    let end = start + Duration::from_secs(60 * minutes);
    if !flaps {
        sim.fault(Fault::HostDown(end - start));
    }
    let dials_at_start = sim.dialed_at.len();
    while sim.harness.now < end {
        if flaps {
            if let Some(reserved) = sim.reserved_at.take() {
                sim.run_until((reserved + Duration::from_secs(2)).min(end));
                sim.fault(Fault::Restart(Duration::ZERO));
                continue;
            }
        }
        let next = sim.harness.engine.poll_timeout().unwrap_or(end).min(end);
        let agenda = sim.agenda.keys().next().map_or(end, |(at, _)| *at);
        sim.run_until(next.min(agenda).max(sim.harness.now + Duration::from_millis(1)));
    }
    (sim.dialed_at.len() - dials_at_start, sim.gave_up)
}

/// A crash loop is presumed to be restarts for [`MAX_PRESUMED_RESTARTS`] losses in a row and re-checked after
/// each; past them, its counted retries are damped like those of a relay that stays down.
#[test]
fn a_relay_that_keeps_falling_over_is_dialed_no_more_often_than_one_that_stays_down() {
    let presumed = MAX_PRESUMED_RESTARTS as usize;
    for seed in 0..20 {
        let config = || Config::default().with_rng_seed(seed);
        let (flapping, flapping_gave_up) = dials_in(config(), 5, true);
        let (down, _) = dials_in(config().with_max_attempts(None), 5, false);
        assert!(
            flapping <= down + presumed,
            "seed {seed}: {flapping} dials to a flapping relay, {down} to one that stays down"
        );
        assert!(
            !flapping_gave_up,
            "seed {seed}: a relay that keeps coming back is never given up"
        );
        assert!(
            flapping >= 3,
            "seed {seed}: the flapping relay is retried ({flapping} dials)"
        );
    }
}

/// The bad day's crash loop: the relay is up 3 s and down 1 s, five times, then up for good.
fn crash_loop(config: Config) -> (Sim, Instant) {
    let mut sim = Sim::new(config);
    sim.run_for(Duration::from_secs(30));
    for _ in 0..5 {
        sim.run_for(Duration::from_secs(3));
        sim.fault(Fault::Restart(Duration::from_secs(1)));
    }
    sim.reserved_at = None;
    let stays_up = sim.harness.now + Duration::from_secs(1);
    (sim, stays_up)
}

#[test]
fn a_crash_loop_is_never_given_up_and_is_reserved_within_ten_seconds_of_staying_up() {
    for seed in 0..200 {
        let (mut sim, stays_up) = crash_loop(Config::default().with_rng_seed(seed));
        sim.run_until(stays_up + Duration::from_secs(10));
        assert!(!sim.gave_up, "seed {seed}");
        assert!(
            sim.reserved_at.is_some(),
            "seed {seed}: not reserved 10 s after the relay stayed up: {:?}",
            sim.harness.engine.status(&sim.relay)
        );
    }
}

#[test]
fn a_crash_loops_counted_retries_are_damped() {
    let (mut sim, stays_up) = crash_loop(Config::default().with_jitter(false).with_rng_seed(1));
    sim.run_until(stays_up + Duration::from_secs(10));
    let first_waits: Vec<Duration> = sim
        .scheduled
        .iter()
        .filter(|(attempt, _)| *attempt == 1)
        .map(|(_, wait)| *wait)
        .collect();
    assert!(first_waits.len() >= 2, "{:?}", sim.scheduled);
    assert!(
        first_waits.windows(2).all(|pair| pair[0] < pair[1]),
        "each loss in the loop waits longer than the one before: {first_waits:?}"
    );
}

/// 1,000 clients of one relay that restarts and is down for `down`, its host refusing, each client with its own
/// seed on the same clock: when the first of each dials after the relay listens again.
fn herd_arrivals(down: Duration) -> Vec<Duration> {
    (0..1_000)
        .map(|client| {
            let mut sim = Sim::new(Config::default().with_rng_seed(client));
            sim.run_for(Duration::from_secs(30));
            let back = sim.harness.now + down;
            sim.fault(Fault::Restart(down));
            sim.run_until(back + Duration::from_secs(10));
            let arrival = sim.dialed_at.iter().find(|at| **at >= back);
            *arrival.expect("a dial after the relay is back") - back
        })
        .collect()
}

#[test]
fn a_herd_comes_back_within_the_recheck_window_and_spread_over_it() {
    let window = Config::default().recheck().expect("re-checks by default");
    for down in [Duration::from_secs(30), Duration::from_secs(150)] {
        let arrivals = herd_arrivals(down);
        let last = arrivals.iter().max().unwrap();
        assert!(
            *last <= window.end,
            "down {down:?}: the last client came after {last:?}"
        );
        let mut per_100_ms = BTreeMap::new();
        for arrival in &arrivals {
            *per_100_ms.entry(arrival.as_millis() / 100).or_insert(0) += 1;
        }
        let busiest = per_100_ms.values().max().unwrap();
        assert!(
            *busiest <= arrivals.len() / 20,
            "down {down:?}: {busiest} of {} clients in one 100 ms: {per_100_ms:?}",
            arrivals.len()
        );
    }
}

/// What a relay sees of a herd of 1,000 nodes, each with one of the README's settings profiles, when it is down
/// for 30 s and back for good: dials while it is down, then the busiest second of dials once it is back and
/// when the last node holds a reservation again. A measurement for the README, not a check:
/// `cargo test --release --lib herd_per_profile -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement; see its docs"]
fn herd_per_profile() {
    const NODES: u64 = 1_000;
    const DOWN: Duration = Duration::from_secs(30);
    let profiles = [
        ("defaults", Config::default()),
        (
            "quick return",
            Config::default()
                .with_base_delay(Duration::from_millis(500))
                .with_max_delay(Duration::from_secs(5))
                .with_max_attempts(None),
        ),
        (
            "quick return, giving up after 10 retries",
            Config::default()
                .with_base_delay(Duration::from_millis(500))
                .with_max_delay(Duration::from_secs(5)),
        ),
    ];
    println!("| profile | dials while down ({DOWN:?}) | busiest second once back | last node reserved again after |");
    println!("|---|---|---|---|");
    for (name, config) in profiles {
        let mut down_dials = 0;
        let mut back_dials = Vec::new();
        let mut last_reserved = Duration::ZERO;
        for node in 0..NODES {
            let mut sim = Sim::new(config.clone().with_rng_seed(node));
            sim.run_for(Duration::from_secs(1));
            let fault_at = sim.harness.now;
            sim.fault(Fault::Restart(DOWN));
            let back = fault_at + DOWN;
            sim.reserved_at = None;
            sim.run_until(back);
            let give_up_by = back + Duration::from_secs(3600);
            while sim.reserved_at.is_none() {
                assert!(
                    sim.harness.now < give_up_by,
                    "node {node} reserved within an hour"
                );
                let next = sim.harness.now + Duration::from_secs(1);
                sim.run_until(next);
            }
            let reserved = sim.reserved_at.expect("reserved again");
            last_reserved = last_reserved.max(reserved - back);
            down_dials += sim
                .dialed_at
                .iter()
                .filter(|at| **at >= fault_at && **at < back)
                .count();
            back_dials.extend(
                sim.dialed_at
                    .iter()
                    .filter(|at| **at >= back)
                    .map(|at| (*at - back).as_secs()),
            );
        }
        let mut per_second = BTreeMap::new();
        for second in back_dials {
            *per_second.entry(second).or_insert(0) += 1;
        }
        let (second, busiest) = per_second.into_iter().max_by_key(|(_, n)| *n).unwrap_or_default();
        println!(
            "| {name} | {down_dials} | {busiest} (second {second}) | {:.1} s |",
            last_reserved.as_secs_f64()
        );
    }
}
