//! The bad day's rules on the engine's clock: a relay that refuses (its host is up, its process restarting)
//! is re-checked between the counted retries, which keep the seed's schedule and give-up; a host that does
//! not answer keeps today's schedule alone; a reservation that held forgives the backoff level.

use std::time::{Duration, Instant};

use libp2p::{
    swarm::{ConnectionId, DialError},
    Multiaddr, PeerId,
};

use super::{
    harness::{circuit, listener, refusal, relay_addr, Harness},
    Command,
};
use crate::{Config, Event, RelayStatus};

/// The seed's schedule without jitter, so counted waits are exact; re-checks keep their own seeded jitter.
fn exact() -> Config {
    Config::default().with_jitter(false).with_rng_seed(7)
}

/// One dial the keeper made: when, its `Debug` (which names its addresses), and whether its failure was
/// announced, as a counted retry's (or the first try's) is and a re-check's is not.
#[derive(Debug, Clone)]
struct Dialed {
    at: Instant,
    opts: String,
    announced: bool,
}

/// A keeper of one relay and every dial it made.
struct Keeper {
    harness: Harness,
    relay: PeerId,
    addr: Multiaddr,
    dials: Vec<Dialed>,
    events: Vec<Event>,
}

impl Keeper {
    fn new(config: Config) -> Self {
        let (_, addr) = relay_addr();
        Self::at(config, &[addr])
    }

    /// A relay at every one of `addrs`, which name the same peer.
    fn at(config: Config, addrs: &[Multiaddr]) -> Self {
        let mut harness = Harness::new(config);
        let relay = addrs.iter().map(|addr| harness.add_relay(addr)).last().unwrap();
        Self {
            harness,
            relay,
            addr: addrs[0].clone(),
            dials: Vec::new(),
            events: Vec::new(),
        }
    }

    /// Reads the engine's commands; returns the dials among them.
    fn read(&mut self) -> Vec<(ConnectionId, String)> {
        let mut dials = Vec::new();
        for command in self.harness.drain() {
            match command {
                Command::Dial(opts) => dials.push((opts.connection_id(), format!("{opts:?}"))),
                Command::Emit(event) => self.events.push(event),
                _ => {}
            }
        }
        dials
    }

    /// Runs the clock until the keeper dials, and returns that dial, unanswered.
    fn next_dial(&mut self) -> ConnectionId {
        loop {
            if let Some((id, _)) = self.read().pop() {
                return id;
            }
            self.harness.advance_to_timeout();
        }
    }

    /// Fails every dial with `error` until `until`.
    fn fail_until(&mut self, until: Instant, error: fn(&Multiaddr) -> DialError) {
        loop {
            for (id, opts) in self.read() {
                let before = self.events.len();
                self.harness.fail_dial(self.relay, id, &error(&self.addr));
                self.read();
                let announced = self.events[before..]
                    .iter()
                    .any(|e| matches!(e, Event::ReconnectScheduled { .. } | Event::GaveUp { .. }));
                let at = self.harness.now;
                self.dials.push(Dialed { at, opts, announced });
            }
            match self.harness.engine.poll_timeout() {
                Some(deadline) if deadline <= until => self.harness.now = self.harness.now.max(deadline),
                _ => return,
            }
        }
    }

    fn fail_for(&mut self, length: Duration, error: fn(&Multiaddr) -> DialError) {
        let until = self.harness.now + length;
        self.fail_until(until, error);
    }

    /// The counted retries announced so far: their number and wait.
    fn scheduled(&self) -> Vec<(u32, Duration)> {
        self.events
            .iter()
            .filter_map(|event| match event {
                Event::ReconnectScheduled { attempt, delay, .. } => Some((*attempt, *delay)),
                _ => None,
            })
            .collect()
    }

    /// When the counted tries (the first and the retries) were dialed.
    fn counted_at(&self) -> Vec<Instant> {
        self.dials.iter().filter(|d| d.announced).map(|d| d.at).collect()
    }

    /// The re-checks dialed after `since`.
    fn rechecks_after(&self, since: Instant) -> Vec<&Dialed> {
        self.dials
            .iter()
            .filter(|d| !d.announced && d.at > since)
            .collect()
    }

    /// The longest time between two dials.
    fn longest_gap(&self) -> Duration {
        self.dials
            .windows(2)
            .map(|pair| pair[1].at - pair[0].at)
            .max()
            .unwrap_or_default()
    }

    fn gave_up(&self) -> Option<u32> {
        self.events.iter().find_map(|event| match event {
            Event::GaveUp { attempts, .. } => Some(*attempts),
            _ => None,
        })
    }
}

/// How a dial fails when the relay's host is down: not refused.
fn unanswered(_: &Multiaddr) -> DialError {
    DialError::Aborted
}

const RECHECK_MAX: Duration = Duration::from_secs(5);

#[test]
fn a_refused_relay_is_rechecked_between_counted_retries_that_keep_the_seeds_schedule() {
    let mut keeper = Keeper::new(exact());
    keeper.fail_for(Duration::from_secs(150), refusal);
    let scheduled = keeper.scheduled();
    let seed: Vec<(u32, Duration)> = (1..=scheduled.len() as u32)
        .map(|n| (n, exact().backoff_bound(n)))
        .collect();
    assert_eq!(scheduled, seed, "re-checks neither count nor raise the backoff");
    assert!(scheduled.len() >= 5, "{scheduled:?}");
    let start = keeper.dials[0].at;
    assert!(keeper.rechecks_after(start).len() >= 20, "{:?}", keeper.dials);
    assert!(
        keeper.longest_gap() <= RECHECK_MAX,
        "the relay is looked at every few seconds: {:?}",
        keeper.longest_gap()
    );
}

#[test]
fn a_dial_that_fails_otherwise_ends_the_rechecks_until_a_dial_is_refused_again() {
    let mut keeper = Keeper::new(exact());
    let start = keeper.harness.now;
    keeper.fail_until(start, refusal);
    // The re-check comes before retry 1 (due at 5 s) and finds the host silent.
    keeper.fail_until(start + Duration::from_millis(4_999), unanswered);
    assert_eq!(keeper.rechecks_after(start).len(), 1, "{:?}", keeper.dials);
    // Retry 1 at 5 s fails the same way: nothing until retry 2 at 15 s.
    keeper.fail_until(start + Duration::from_millis(14_999), unanswered);
    assert_eq!(keeper.rechecks_after(start).len(), 1, "{:?}", keeper.dials);
    assert_eq!(keeper.counted_at(), [start, start + Duration::from_secs(5)]);
    // Retry 2 is refused: the host is up again, and so are the re-checks.
    let refused_at = start + Duration::from_secs(15);
    keeper.fail_until(refused_at + Duration::from_secs(15), refusal);
    assert!(keeper.rechecks_after(refused_at).len() >= 3, "{:?}", keeper.dials);
}

#[test]
fn rechecks_dial_only_tcp_addresses_and_a_quic_only_relay_keeps_the_counted_schedule() {
    let (relay, tcp) = relay_addr();
    let quic: Multiaddr = format!("/ip4/127.0.0.1/udp/4001/quic-v1/p2p/{relay}")
        .parse()
        .unwrap();
    let mut both = Keeper::at(exact(), &[tcp, quic.clone()]);
    both.fail_for(Duration::from_secs(30), refusal);
    let start = both.dials[0].at;
    let retry = both.dials.iter().filter(|d| d.announced).nth(1).unwrap();
    assert!(
        retry.opts.contains("quic-v1"),
        "a counted retry dials every address"
    );
    let rechecks = both.rechecks_after(start);
    assert!(!rechecks.is_empty());
    for recheck in rechecks {
        assert!(
            recheck.opts.contains("/tcp/") && !recheck.opts.contains("quic-v1"),
            "{}",
            recheck.opts
        );
    }
    // QUIC has no refusal: its dials to a relay that is down fail some other way.
    let mut quic_only = Keeper::at(exact(), &[quic]);
    quic_only.fail_for(Duration::from_secs(60), refusal);
    let start = quic_only.dials[0].at;
    assert!(
        quic_only.rechecks_after(start).is_empty(),
        "{:?}",
        quic_only.dials
    );
}

#[test]
fn rechecks_go_on_through_a_give_up_that_comes_when_the_seed_says_and_one_that_connects_revives() {
    let mut keeper = Keeper::new(exact());
    let mut seed = Keeper::new(exact().with_recheck(None));
    // 5 + 10 + 20 + 40 + 6 x 60 s: the 10th retry fails at 435 s; then a minute of the cool-down.
    let outage = Duration::from_secs(500);
    keeper.fail_for(outage, refusal);
    seed.fail_for(outage, refusal);
    let counted = |k: &Keeper| {
        let start = k.dials[0].at;
        k.counted_at().iter().map(|at| *at - start).collect::<Vec<_>>()
    };
    assert_eq!(counted(&keeper), counted(&seed), "the same counted tries");
    assert_eq!((keeper.gave_up(), seed.gave_up()), (Some(10), Some(10)));
    let gave_up_at = *keeper.counted_at().last().unwrap();
    assert!(
        keeper.rechecks_after(gave_up_at).len() >= 10,
        "{:?}",
        keeper.dials
    );
    assert_eq!(seed.dials.len(), 11, "the seed dials nothing in its cool-down");
    // The relay listens again: the next re-check connects, and a fresh round reserves.
    let id = keeper.next_dial();
    keeper.reserve(id);
    assert_eq!(
        keeper.harness.engine.status(&keeper.relay),
        Some(RelayStatus::Reserved)
    );
}

#[test]
fn a_recheck_is_connecting_and_unannounced_and_its_connection_counts_only_counted_retries() {
    let mut keeper = Keeper::new(exact());
    // The first try and retries 1 and 2 (at 5 s and 15 s) are refused; retry 3 is due at 35 s.
    keeper.fail_for(Duration::from_millis(15_001), refusal);
    assert_eq!(keeper.scheduled().len(), 3);
    let id = keeper.next_dial();
    assert_eq!(
        keeper.harness.engine.status(&keeper.relay),
        Some(RelayStatus::Connecting)
    );
    assert_eq!(keeper.scheduled().len(), 3, "a re-check announces nothing");
    let addr = keeper.addr.clone();
    keeper.harness.connect(keeper.relay, id, &addr);
    keeper.read();
    let reconnected = keeper.events.iter().find_map(|e| match e {
        Event::Connected { attempts, .. } => Some(*attempts),
        _ => None,
    });
    assert_eq!(reconnected, Some(2));
}

#[test]
fn a_host_that_does_not_answer_keeps_the_seeds_schedule_alone() {
    let mut keeper = Keeper::new(exact());
    let mut seed = Keeper::new(exact().with_recheck(None));
    let outage = Duration::from_secs(700);
    keeper.fail_for(outage, unanswered);
    seed.fail_for(outage, unanswered);
    assert_eq!(
        keeper.dials.len(),
        11,
        "the first try and 10 retries: {:?}",
        keeper.dials
    );
    assert_eq!(keeper.counted_at().len(), 11);
    assert_eq!(keeper.gave_up(), Some(10));
    let start = |k: &Keeper| k.dials[0].at;
    let relative = |k: &Keeper| k.dials.iter().map(|d| d.at - start(k)).collect::<Vec<_>>();
    assert_eq!(relative(&keeper), relative(&seed));
}

impl Keeper {
    /// Connects the relay through dial `id` and accepts its reservation.
    fn reserve(&mut self, id: ConnectionId) {
        let addr = self.addr.clone();
        self.harness.connect(self.relay, id, &addr);
        let requested = listener(&self.harness.drain());
        let now = self.harness.now;
        self.harness
            .engine
            .on_new_listen_addr(requested, &circuit(&addr), now);
    }

    /// The reservation, on connection `id`, held for `held`; then the connection closes.
    fn lose_after(&mut self, id: ConnectionId, held: Duration) {
        self.harness.advance(held);
        let addr = self.addr.clone();
        self.harness.close(self.relay, id, &addr);
        self.read();
    }
}

/// A relay that served, then failed `failures` dials in a row, then held its reservation for `held` and lost
/// it: the first wait of the new outage.
fn first_wait_after(held: Duration, failures: usize) -> Duration {
    let mut keeper = Keeper::new(exact().with_recheck(None));
    let id = keeper.next_dial();
    keeper.reserve(id);
    keeper.lose_after(id, Duration::from_secs(60));
    while keeper.counted_at().len() < failures {
        keeper.harness.advance_to_timeout();
        let until = keeper.harness.now;
        keeper.fail_until(until, unanswered);
    }
    let id = keeper.next_dial();
    keeper.reserve(id);
    keeper.events.clear();
    keeper.lose_after(id, held);
    let [(1, wait)] = keeper.scheduled()[..] else {
        panic!("retry 1 scheduled: {:?}", keeper.events)
    };
    wait
}

#[test]
fn a_reservation_that_held_ten_seconds_forgives_the_backoff_and_a_crash_loops_does_not() {
    let base = exact().backoff_bound(1);
    assert_eq!(first_wait_after(Duration::from_secs(10), 4), base);
    assert_eq!(first_wait_after(Duration::from_secs(20), 4), base);
    let damped = first_wait_after(Duration::from_secs(3), 4);
    assert!(damped > base, "a crash loop's 3 s up is not forgiven: {damped:?}");
}

#[test]
fn a_waiting_relay_says_when_it_tries_next_a_recheck_included() {
    let mut keeper = Keeper::new(exact());
    let start = keeper.harness.now;
    keeper.fail_until(start, refusal);
    let Some(RelayStatus::Waiting { attempt: 1, next_try }) = keeper.harness.engine.status(&keeper.relay)
    else {
        panic!("waiting for retry 1")
    };
    let retry_at = start + exact().backoff_bound(1);
    assert!(next_try < retry_at, "the re-check comes first: {next_try:?}");
    assert_eq!(Some(next_try), keeper.harness.engine.poll_timeout());
    keeper.harness.now = next_try;
    let id = keeper.next_dial();
    assert_eq!(
        keeper.harness.now, next_try,
        "a dial at the instant the status named"
    );
    keeper
        .harness
        .fail_dial(keeper.relay, id, &unanswered(&keeper.addr));
    let status = keeper.harness.engine.status(&keeper.relay);
    assert_eq!(
        status,
        Some(RelayStatus::Waiting {
            attempt: 1,
            next_try: retry_at
        }),
        "without re-checks, the retry is next"
    );
}
