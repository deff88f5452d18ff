use std::time::Duration;

use super::*;
use libp2p::multiaddr::Protocol;

use crate::{engine::harness::relay_addr, CauseKind, GiveUpReason, MOVE_INTERVAL};

const MS: Duration = Duration::from_millis(1);

/// One relay driven by hand: the test owns the clock and reads every action.
struct Driver {
    relay: Relay,
    peer: PeerId,
    now: Instant,
    config: Config,
    backoff: Backoff,
    dials: usize,
    listens: usize,
    events: Vec<Event>,
    last_dial: Option<ConnectionId>,
    last_listener: Option<ListenerId>,
    /// Listeners the relay asked to remove.
    removed: Vec<ListenerId>,
    /// Listeners of the application's the relay adopted.
    adopted: Vec<ListenerId>,
    aborts: usize,
    /// Connections the relay asked to close.
    closed: Vec<ConnectionId>,
}

fn peer_of(addr: &Multiaddr) -> PeerId {
    crate::address::relay_peer_id(addr).unwrap()
}

impl Driver {
    fn new(config: Config, connected: bool) -> Self {
        let (_, addr) = relay_addr();
        let mut backoff = Backoff::new(&config);
        let mut actions = Vec::new();
        let now = Instant::now();
        let mut env = Env::new(peer_of(&addr), now, &config, &mut backoff, &mut actions);
        let links = if connected {
            vec![(ConnectionId::new_unchecked(0), Some(addr.clone()))]
        } else {
            Vec::new()
        };
        let peer = env.relay;
        let (relay, _) = Relay::new(addr, links, &mut env);
        let mut driver = Self {
            relay,
            peer,
            now,
            config,
            backoff,
            dials: 0,
            listens: 0,
            events: Vec::new(),
            last_dial: None,
            last_listener: None,
            removed: Vec::new(),
            adopted: Vec::new(),
            aborts: 0,
            closed: Vec::new(),
        };
        driver.record(actions);
        driver
    }

    /// A relay with millisecond backoff and no jitter, so that deadlines are exact, and no cool-down, so a
    /// give-up stays.
    fn exact(max_attempts: Option<u32>) -> Self {
        Self::new(
            Config::default()
                .with_base_delay(MS)
                .with_max_delay(100 * MS)
                .with_jitter(false)
                .with_max_attempts(max_attempts)
                .with_cooldown(None),
            false,
        )
    }

    fn peer_id(&self) -> PeerId {
        self.peer
    }

    /// When a dial made now is aborted.
    fn dial_deadline(&self) -> Option<Instant> {
        Some(self.now + self.config.dial_limit(0, None))
    }

    fn feed(&mut self, input: Input) {
        let mut actions = Vec::new();
        let mut env = Env::new(
            self.peer_id(),
            self.now,
            &self.config,
            &mut self.backoff,
            &mut actions,
        );
        self.relay.on(input, &mut env);
        self.record(actions);
    }

    fn record(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Dial(opts) => {
                    assert_eq!(opts.get_peer_id(), Some(self.peer_id()));
                    self.dials += 1;
                    self.last_dial = Some(opts.connection_id());
                }
                Action::Listen(opts) => {
                    assert_eq!(circuit_addr_relay(opts.address()), Some(self.peer_id()));
                    self.listens += 1;
                    self.last_listener = Some(opts.listener_id());
                }
                Action::RemoveListener(listener) => self.removed.push(listener),
                Action::Adopt { listener } => self.adopted.push(listener),
                Action::AbortDials => self.aborts += 1,
                Action::Close(connection) => self.closed.push(connection),
                Action::Emit(event) => self.events.push(event),
            }
        }
    }

    /// Lets the clock run to the relay's deadline and fires it.
    fn elapse(&mut self) -> Duration {
        let deadline = self.relay.deadline().expect("a retry is scheduled");
        let waited = deadline - self.now;
        self.now = deadline;
        self.feed(Input::TimerFired);
        waited
    }

    fn fail_dial(&mut self) {
        let connection = self.last_dial.expect("a dial was made");
        self.feed(dial_failed(connection));
    }

    fn connect(&mut self, connection: ConnectionId) {
        let dialed = Some(self.relay.addrs()[0].clone());
        self.feed(Input::ConnectionEstablished { connection, dialed });
    }

    fn connect_ours(&mut self) {
        self.connect(self.last_dial.expect("a dial was made"));
    }

    fn connect_other(&mut self) {
        self.connect(ConnectionId::new_unchecked(usize::MAX));
    }

    /// Every direct connection to the relay closes.
    fn disconnect(&mut self) {
        let links: Vec<ConnectionId> = self.relay.connections().iter().map(|(id, _)| *id).collect();
        for connection in links {
            self.feed(Input::ConnectionClosed {
                connection,
                cause: Cause::connection_lost(None),
            });
        }
    }

    fn reservation_accepted(&mut self) {
        let listener = self.last_listener.expect("a reservation was requested");
        let addr = self.relay.addrs()[0].clone().with(Protocol::P2pCircuit);
        self.feed(Input::ListenAddr { listener, addr });
    }

    fn reservation_closed(&mut self) {
        let listener = self.last_listener.expect("a reservation was requested");
        self.feed(Input::ListenerClosed {
            listener,
            refused: true,
            cause: Cause::new(CauseKind::ReservationRefused, "refused"),
        });
    }

    /// The relay refuses our request because it does not offer HOP yet.
    fn refused_for_hop(&mut self) {
        let listener = self.last_listener.expect("a reservation was requested");
        self.feed(Input::ListenerClosed {
            listener,
            refused: true,
            cause: Cause::new(CauseKind::HopUnsupported, "relay does not offer HOP (yet)"),
        });
    }

    /// Our listener closes without an error while connected: replaced, or its connection went.
    fn listener_replaced(&mut self) {
        let listener = self.last_listener.expect("a reservation was requested");
        self.feed(Input::ListenerClosed {
            listener,
            refused: false,
            cause: Cause::reservation_lost(),
        });
    }

    /// Lets the clock run for as long as it takes to forgive the relay's retries.
    fn hold(&mut self) {
        self.now += self.config.forgive_after();
    }

    /// How many retries the relay gave up after, and why; `None` while it has not given up.
    fn gave_up(&self) -> Option<(u32, GiveUpReason)> {
        match self.relay.status() {
            RelayStatus::GaveUp { attempts, reason, .. } => Some((attempts, reason)),
            _ => None,
        }
    }

    fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    fn reserved(config: Config) -> Self {
        let mut driver = Self::new(config, false);
        driver.connect_ours();
        driver.reservation_accepted();
        driver.take_events();
        driver
    }
}

/// A dial `connection` failed the way a dial to a host that is down does.
fn dial_failed(connection: ConnectionId) -> Input {
    Input::DialFailed {
        connection,
        cause: Cause::new(CauseKind::DialFailed, "no route to host"),
        mistake: None,
        refused: false,
    }
}

fn circuit_addr_relay(addr: &Multiaddr) -> Option<PeerId> {
    crate::address::circuit_relay(addr)
}

fn scheduled(events: &[Event]) -> Vec<u32> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ReconnectScheduled { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .collect()
}

#[test]
fn a_dial_past_its_time_limit_is_aborted_and_counted_with_its_cause() {
    let mut driver = Driver::exact(Some(3));
    let waited = driver.elapse();
    assert_eq!(waited, driver.config.dial_limit(0, None));
    assert_eq!(driver.aborts, 1);
    let events = driver.take_events();
    assert!(
        matches!(
            events.as_slice(),
            [Event::ReconnectScheduled { attempt: 1, cause, .. }] if cause.kind == CauseKind::DialTimeout
        ),
        "{events:?}"
    );
    // The aborted dial's failure arrives after the keeper moved on and changes nothing.
    driver.fail_dial();
    assert!(matches!(
        driver.relay.status(),
        RelayStatus::Waiting { attempt: 1, .. }
    ));
}

#[test]
fn a_mistaken_last_address_gives_up_at_once_and_only_revive_tries_again() {
    let mut driver = Driver::exact(Some(3));
    let found = PeerId::random();
    let connection = driver.last_dial.unwrap();
    driver.feed(Input::DialFailed {
        connection,
        cause: Cause::new(CauseKind::DialFailed, "wrong peer id"),
        mistake: Some(Mistake {
            reason: GiveUpReason::WrongPeerId { found },
            addrs: None,
        }),
        refused: false,
    });
    assert_eq!(driver.gave_up(), Some((0, GiveUpReason::WrongPeerId { found })));
    for input in [Input::NetworkChanged, Input::RetryNow] {
        driver.feed(input);
    }
    assert_eq!(
        (driver.dials, driver.gave_up()),
        (1, Some((0, GiveUpReason::WrongPeerId { found }))),
        "no address left to dial"
    );
    let fixed = format!("/ip4/127.0.0.1/tcp/4002/p2p/{}", driver.peer);
    driver.feed(Input::Added(fixed.parse().unwrap()));
    assert_eq!(
        (driver.dials, driver.relay.status()),
        (2, RelayStatus::Connecting)
    );
}

#[test]
fn add_relay_dials_once_without_counting_a_retry() {
    let driver = Driver::exact(Some(3));
    assert_eq!(driver.dials, 1);
    assert_eq!(driver.relay.status(), RelayStatus::Connecting);
    assert!(driver.events.is_empty());
    assert_eq!(
        driver.relay.deadline(),
        driver.dial_deadline(),
        "only the dial's time limit"
    );
}

#[test]
fn add_relay_on_a_live_connection_reserves_without_dialing() {
    let driver = Driver::new(Config::default(), true);
    assert_eq!((driver.dials, driver.listens), (0, 1));
    assert_eq!(driver.relay.status(), RelayStatus::Connected);
}

#[test]
fn connection_then_reservation_reaches_the_goal_once() {
    let mut driver = Driver::exact(Some(3));
    driver.connect_ours();
    assert_eq!(driver.listens, 1);
    driver.reservation_accepted();
    assert_eq!(driver.relay.status(), RelayStatus::Reserved);
    let events = driver.take_events();
    assert!(
        matches!(events.as_slice(), [Event::Reserved { .. }]),
        "{events:?}"
    );
    // A renewal repeats the address on the same listener: no second event, nothing scheduled.
    driver.reservation_accepted();
    assert!(driver.take_events().is_empty());
    assert_eq!(driver.relay.deadline(), None);
}

#[test]
fn backoff_doubles_to_the_cap_then_gives_up_after_max_attempts() {
    let config = Config::default()
        .with_jitter(false)
        .with_max_attempts(Some(10))
        .with_cooldown(None)
        .with_recheck(None);
    let mut driver = Driver::reserved(config);
    driver.disconnect();
    let mut waits = Vec::new();
    while driver.relay.deadline().is_some() {
        waits.push(driver.elapse().as_secs());
        driver.fail_dial();
    }
    assert_eq!(waits, [5, 10, 20, 40, 60, 60, 60, 60, 60, 60]);
    assert_eq!(
        driver.dials,
        1 + 10,
        "the first dial plus exactly max_attempts retries"
    );
    assert_eq!(driver.gave_up(), Some((10, GiveUpReason::MaxAttempts)));
    let events = driver.take_events();
    assert_eq!(scheduled(&events), (1..=10).collect::<Vec<_>>());
    assert!(matches!(events.last(), Some(Event::GaveUp { attempts: 10, .. })));
    // Given up means left alone.
    driver.feed(Input::TimerFired);
    driver.feed(Input::HopEnabled);
    assert_eq!(driver.dials, 11);
}

#[test]
fn jittered_waits_are_reproducible_with_a_seed_and_within_bounds() {
    let config = Config::default()
        .with_rng_seed(9)
        .with_max_attempts(Some(8))
        .with_cooldown(None);
    let run = || {
        let mut driver = Driver::reserved(config.clone());
        driver.disconnect();
        let mut waits = Vec::new();
        while driver.relay.deadline().is_some() {
            waits.push(driver.elapse());
            driver.fail_dial();
        }
        waits
    };
    let waits = run();
    assert_eq!(waits, run());
    for (n, wait) in (1..).zip(&waits) {
        assert!(*wait < config.backoff_bound(n));
    }
}

#[test]
fn a_successful_retry_ends_the_outage_and_leaves_no_timer() {
    let mut driver = Driver::exact(Some(10));
    driver.connect_ours();
    driver.reservation_accepted();
    driver.disconnect();
    driver.elapse();
    driver.fail_dial();
    driver.elapse();
    driver.fail_dial();
    driver.elapse();
    driver.connect_ours();
    assert_eq!(driver.dials, 1 + 3);
    assert_eq!(driver.relay.deadline(), None);
    let events = driver.take_events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Connected { attempts: 3, .. })),
        "{events:?}"
    );
    driver.reservation_accepted();
    assert_eq!(driver.relay.status(), RelayStatus::Reserved);
    // Once the reservation held for a while, the next outage counts from 1 again.
    driver.hold();
    driver.disconnect();
    assert!(matches!(
        driver.relay.status(),
        RelayStatus::Waiting { attempt: 1, .. }
    ));
}

#[test]
fn a_relay_that_falls_over_soon_after_coming_back_waits_longer_but_counts_from_one() {
    let mut driver = Driver::exact(Some(10));
    driver.connect_ours();
    driver.reservation_accepted();
    driver.disconnect();
    driver.elapse();
    driver.fail_dial();
    driver.elapse();
    driver.connect_ours();
    driver.reservation_accepted();
    // Back after retry 2, lost again before the reservation held for `forgive_after`.
    driver.now += driver.config.forgive_after() - MS;
    driver.disconnect();
    assert_eq!(
        driver.relay.status(),
        RelayStatus::Waiting {
            attempt: 1,
            next_try: driver.relay.deadline().unwrap()
        },
        "a new outage's retries count from 1"
    );
    assert_eq!(
        driver.elapse(),
        driver.config.backoff_bound(3),
        "the wait goes on from the level the last outage ended at"
    );
    driver.connect_ours();
    driver.reservation_accepted();
    driver.hold();
    driver.disconnect();
    assert!(matches!(
        driver.relay.status(),
        RelayStatus::Waiting { attempt: 1, .. }
    ));
    assert_eq!(driver.elapse(), driver.config.backoff_bound(1), "forgiven");
}

#[test]
fn flaps_shorter_than_forgive_after_never_add_up_to_a_give_up() {
    let mut driver = Driver::exact(Some(3));
    driver.connect_ours();
    driver.reservation_accepted();
    for flap in 0..20 {
        driver.now += driver.config.forgive_after() / 2;
        driver.disconnect();
        driver.elapse();
        driver.fail_dial();
        driver.elapse();
        driver.connect_ours();
        driver.reservation_accepted();
        assert_eq!(driver.relay.status(), RelayStatus::Reserved, "flap {flap}");
    }
    let events = driver.take_events();
    assert!(!events.iter().any(|e| matches!(e, Event::GaveUp { .. })));
    assert_eq!(
        scheduled(&events),
        [1, 2].repeat(20),
        "each outage counts its own retries"
    );
}

#[test]
fn a_connection_made_by_someone_else_counts_zero_retries_and_cancels_the_wait() {
    let mut driver = Driver::exact(Some(10));
    driver.connect_ours();
    driver.reservation_accepted();
    driver.disconnect();
    driver.take_events();
    driver.connect_other();
    let events = driver.take_events();
    assert!(
        matches!(events.as_slice(), [Event::Connected { attempts: 0, .. }]),
        "{events:?}"
    );
    assert_eq!(driver.relay.deadline(), None);
    assert_eq!(driver.listens, 2, "reserves at once on the new connection");
}

#[test]
fn the_first_connection_is_not_reported_as_reconnected() {
    let mut driver = Driver::exact(Some(10));
    driver.connect_ours();
    assert!(driver.take_events().is_empty());
}

#[test]
fn relay_down_at_start_is_retried_and_recovers() {
    let mut driver = Driver::exact(Some(10));
    driver.fail_dial();
    assert!(matches!(
        driver.relay.status(),
        RelayStatus::Waiting { attempt: 1, .. }
    ));
    driver.elapse();
    driver.fail_dial();
    driver.elapse();
    driver.connect_ours();
    driver.reservation_accepted();
    assert_eq!(driver.relay.status(), RelayStatus::Reserved);
    let events = driver.take_events();
    assert_eq!(scheduled(&events), [1, 2]);
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Connected { attempts: 2, .. })));
}

#[test]
fn a_refused_reservation_is_a_counted_retry_on_the_live_connection() {
    let mut driver = Driver::exact(Some(10));
    driver.connect_ours();
    driver.reservation_closed();
    assert!(matches!(
        driver.relay.status(),
        RelayStatus::Waiting { attempt: 1, .. }
    ));
    driver.elapse();
    assert_eq!(
        (driver.dials, driver.listens),
        (1, 2),
        "re-reserves, does not re-dial"
    );
    driver.reservation_closed();
    assert!(matches!(
        driver.relay.status(),
        RelayStatus::Waiting { attempt: 2, .. }
    ));
}

#[test]
fn retries_count_across_redials_and_rereservations_until_the_goal() {
    let mut driver = Driver::exact(Some(10));
    driver.connect_ours();
    driver.reservation_accepted();
    driver.disconnect(); // retry 1 scheduled
    driver.elapse();
    driver.connect_ours(); // retry 1 reconnected, reservation requested as part of it
    driver.reservation_closed(); // refused: retry 2
    assert!(matches!(
        driver.relay.status(),
        RelayStatus::Waiting { attempt: 2, .. }
    ));
    driver.elapse();
    driver.reservation_accepted();
    driver.hold();
    driver.disconnect();
    assert!(matches!(
        driver.relay.status(),
        RelayStatus::Waiting { attempt: 1, .. }
    ));
}

#[test]
fn a_connection_lost_while_waiting_to_reserve_dials_when_the_wait_ends() {
    let mut driver = Driver::exact(Some(10));
    driver.connect_ours();
    driver.reservation_closed();
    driver.disconnect();
    assert!(matches!(
        driver.relay.status(),
        RelayStatus::Waiting { attempt: 1, .. }
    ));
    driver.elapse();
    assert_eq!((driver.dials, driver.listens), (2, 1));
}

#[test]
fn hop_announced_while_waiting_reserves_at_once() {
    let mut driver = Driver::new(Config::default(), true);
    driver.reservation_closed();
    assert!(driver.relay.deadline().is_some());
    driver.feed(Input::HopEnabled);
    assert_eq!(driver.listens, 2);
    assert_eq!(driver.relay.deadline(), None);
    assert_eq!(driver.relay.status(), RelayStatus::Connected);
}

#[test]
fn hop_announced_while_a_request_is_in_flight_retries_its_refusal_without_waiting() {
    let mut driver = Driver::new(Config::default(), true);
    driver.feed(Input::HopEnabled);
    driver.reservation_closed();
    let events = driver.take_events();
    assert!(
        matches!(events.as_slice(), [Event::ReconnectScheduled { attempt: 1, delay, .. }] if delay.is_zero()),
        "{events:?}"
    );
    // The announcement is spent: a second refusal backs off as usual.
    driver.elapse();
    driver.reservation_closed();
    let events = driver.take_events();
    assert!(
        matches!(events.as_slice(), [Event::ReconnectScheduled { attempt: 2, delay, .. }] if !delay.is_zero())
    );
}

#[test]
fn hop_is_ignored_without_a_connection() {
    let mut driver = Driver::exact(Some(3));
    driver.fail_dial();
    driver.feed(Input::HopEnabled);
    assert!(matches!(
        driver.relay.status(),
        RelayStatus::Waiting { attempt: 1, .. }
    ));
}

#[test]
fn losing_the_listener_while_connected_is_a_counted_retry() {
    let mut driver = Driver::exact(Some(10));
    driver.connect_ours();
    driver.reservation_accepted();
    driver.reservation_closed();
    assert!(matches!(
        driver.relay.status(),
        RelayStatus::Waiting { attempt: 1, .. }
    ));
}

#[test]
fn the_applications_own_reservation_is_adopted_instead_of_replaced() {
    let mut driver = Driver::exact(Some(10));
    driver.connect_ours();
    driver.reservation_accepted();
    driver.take_events();
    // The application listens on the relay itself: ours closes, its address shows.
    driver.listener_replaced();
    let theirs = ListenerId::next();
    let addr = driver.relay.addrs()[0].clone().with(Protocol::P2pCircuit);
    driver.feed(Input::ForeignReservation {
        listener: theirs,
        addr,
    });
    assert_eq!(driver.relay.status(), RelayStatus::Reserved);
    assert_eq!(
        driver.adopted,
        [theirs],
        "the application's listener holds the reservation"
    );
    assert_eq!(driver.relay.deadline(), None, "the retry is cancelled");
    assert_eq!(
        driver.listens, 1,
        "never answers a replacement with a replacement"
    );
    // Losing the adopted listener is handled like losing our own.
    driver.hold();
    driver.feed(Input::ListenerClosed {
        listener: theirs,
        refused: false,
        cause: Cause::reservation_lost(),
    });
    assert!(matches!(
        driver.relay.status(),
        RelayStatus::Waiting { attempt: 1, .. }
    ));
}

#[test]
fn adopting_over_a_live_reservation_raises_no_second_event() {
    let mut driver = Driver::exact(Some(10));
    driver.connect_ours();
    driver.reservation_accepted();
    driver.take_events();
    let addr = driver.relay.addrs()[0].clone().with(Protocol::P2pCircuit);
    driver.feed(Input::ForeignReservation {
        listener: ListenerId::next(),
        addr,
    });
    assert!(driver.take_events().is_empty());
    assert_eq!(driver.relay.status(), RelayStatus::Reserved);
    // Our replaced listener closing afterwards is stale.
    driver.reservation_closed();
    assert_eq!(driver.relay.status(), RelayStatus::Reserved);
}

#[test]
fn a_stale_listener_closing_changes_nothing() {
    let mut driver = Driver::exact(Some(10));
    driver.connect_ours();
    let old = driver.last_listener;
    driver.disconnect();
    driver.elapse();
    driver.connect_ours();
    driver.feed(Input::ListenerClosed {
        listener: old.unwrap(),
        refused: false,
        cause: Cause::reservation_lost(),
    });
    assert_eq!(driver.relay.status(), RelayStatus::Connected);
    assert_eq!(driver.relay.deadline(), None);
}

#[test]
fn a_dial_that_keeps_running_out_of_time_is_given_twice_as_long_each_time_up_to_the_cap() {
    let config = Config::default().with_jitter(false).with_max_attempts(None);
    let mut driver = Driver::new(config, false);
    let mut limits = Vec::new();
    for _ in 0..4 {
        limits.push(driver.elapse().as_secs());
        driver.elapse();
    }
    assert_eq!(limits, [10, 20, 40, 60], "the cap on the waits bounds it");
    driver.connect_ours();
    driver.disconnect();
    driver.elapse();
    assert_eq!(
        driver.elapse().as_secs(),
        10,
        "a dial that connected starts the doubling over"
    );
}

#[test]
fn a_dial_to_a_relay_on_a_slow_link_may_take_the_round_trips_measured_on_it() {
    let config = Config::default().with_jitter(false);
    let mut driver = Driver::reserved(config);
    for _ in 0..10 {
        driver.relay.measured(Duration::from_secs(3));
    }
    driver.disconnect();
    driver.elapse();
    let limit = driver.elapse();
    assert!(
        limit >= Duration::from_secs(24) && limit < Duration::from_secs(30),
        "8 round trips of about 3 s: {limit:?}"
    );
}

#[test]
fn a_dial_skipped_for_another_dial_takes_that_dials_outcome() {
    let mut driver = Driver::exact(Some(10));
    driver.fail_dial();
    driver.elapse();
    let connection = driver.last_dial.unwrap();
    driver.feed(Input::DialSkipped { connection });
    assert_eq!(driver.relay.status(), RelayStatus::Connecting);
    // No retry is scheduled; only the other dial's time limit runs.
    let dial_timeout = driver.config.dial_limit(0, None);
    assert_eq!(driver.relay.deadline(), Some(driver.now + dial_timeout));
    driver.feed(dial_failed(ConnectionId::new_unchecked(usize::MAX)));
    assert!(matches!(
        driver.relay.status(),
        RelayStatus::Waiting { attempt: 2, .. }
    ));
}

#[test]
fn a_failure_of_a_foreign_dial_does_not_count_against_ours() {
    let mut driver = Driver::exact(Some(10));
    driver.feed(dial_failed(ConnectionId::new_unchecked(usize::MAX)));
    assert_eq!(driver.relay.status(), RelayStatus::Connecting);
}

#[test]
fn zero_max_attempts_gives_up_at_the_loss() {
    let mut driver = Driver::exact(Some(0));
    driver.connect_ours();
    driver.reservation_accepted();
    driver.disconnect();
    assert_eq!(driver.gave_up(), Some((0, GiveUpReason::MaxAttempts)));
    assert_eq!(driver.dials, 1);
}

#[test]
fn unlimited_attempts_never_give_up_and_stay_capped() {
    let mut driver = Driver::exact(None);
    for _ in 0..1000 {
        driver.fail_dial();
        assert!(driver.elapse() <= 100 * MS);
    }
    assert_eq!(driver.dials, 1001);
    assert_eq!(driver.relay.status(), RelayStatus::Connecting);
}

#[test]
fn retry_now_revives_a_relay_that_gave_up_with_a_fresh_backoff() {
    let mut driver = Driver::exact(Some(1));
    driver.fail_dial();
    driver.elapse();
    driver.fail_dial();
    assert_eq!(driver.gave_up(), Some((1, GiveUpReason::MaxAttempts)));
    driver.feed(Input::RetryNow);
    assert_eq!(driver.dials, 3);
    driver.fail_dial();
    assert!(matches!(
        driver.relay.status(),
        RelayStatus::Waiting { attempt: 1, .. }
    ));
}

#[test]
fn retry_now_skips_the_wait() {
    let mut driver = Driver::exact(Some(5));
    driver.fail_dial();
    driver.elapse();
    driver.fail_dial();
    assert!(matches!(
        driver.relay.status(),
        RelayStatus::Waiting { attempt: 2, .. }
    ));
    driver.feed(Input::RetryNow);
    assert_eq!(driver.dials, 3);
    assert_eq!(
        driver.relay.deadline(),
        driver.dial_deadline(),
        "no wait, only the dial's time limit"
    );
    driver.fail_dial();
    assert!(matches!(
        driver.relay.status(),
        RelayStatus::Waiting { attempt: 1, .. }
    ));
}

#[test]
fn a_swarm_without_relay_transport_gives_up_instead_of_retrying() {
    let mut driver = Driver::new(Config::default(), true);
    let listener = driver.last_listener.unwrap();
    driver.feed(Input::ListenerUnsupported { listener });
    assert_eq!(driver.gave_up(), Some((0, GiveUpReason::NoRelayTransport)));
    assert_eq!(driver.relay.deadline(), None);
}

#[test]
fn without_reservations_the_connection_is_the_goal() {
    let config = Config::default()
        .with_reservations(false)
        .with_base_delay(MS)
        .with_jitter(false);
    let mut driver = Driver::new(config, false);
    driver.connect_ours();
    assert_eq!(driver.listens, 0);
    assert_eq!(driver.relay.status(), RelayStatus::Connected);
    driver.disconnect();
    assert!(matches!(
        driver.relay.status(),
        RelayStatus::Waiting { attempt: 1, .. }
    ));
    driver.elapse();
    driver.connect_ours();
    assert_eq!(driver.relay.status(), RelayStatus::Connected);
    assert_eq!(driver.listens, 0);
    let events = driver.take_events();
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Connected { attempts: 1, .. })));
}

#[test]
fn a_second_disconnect_schedules_nothing_more() {
    let mut driver = Driver::exact(Some(10));
    driver.connect_ours();
    driver.reservation_accepted();
    driver.disconnect();
    let deadline = driver.relay.deadline();
    driver.disconnect();
    assert_eq!(driver.relay.deadline(), deadline);
    assert_eq!(scheduled(&driver.take_events()), [1]);
}

#[test]
fn a_cooldown_tries_again_after_giving_up_with_a_fresh_backoff() {
    let config = Config::default()
        .with_base_delay(MS)
        .with_jitter(false)
        .with_max_attempts(Some(2))
        .with_cooldown(Some(Duration::from_secs(600)));
    let mut driver = Driver::new(config, false);
    driver.fail_dial();
    driver.elapse();
    driver.fail_dial();
    driver.elapse();
    driver.fail_dial();
    assert_eq!(driver.gave_up(), Some((2, GiveUpReason::MaxAttempts)));
    let retry_at = match driver.relay.status() {
        RelayStatus::GaveUp { retry_at, .. } => retry_at,
        status => panic!("{status:?}"),
    };
    let cap = driver.config.backoff_bound(u32::MAX);
    assert_eq!(
        driver.elapse(),
        Duration::from_secs(600) + cap,
        "the cool-down and a wait at the cap (exact without jitter), not a backoff wait"
    );
    assert_eq!(Some(driver.now), retry_at, "the status says when");
    assert_eq!(driver.dials, 4);
    driver.fail_dial();
    assert!(matches!(
        driver.relay.status(),
        RelayStatus::Waiting { attempt: 1, .. }
    ));
    assert_eq!(driver.elapse(), MS, "the backoff starts over");
}

#[test]
fn without_a_cooldown_giving_up_is_final() {
    let mut driver = Driver::exact(Some(0));
    driver.fail_dial();
    assert_eq!(driver.gave_up(), Some((0, GiveUpReason::MaxAttempts)));
    assert_eq!(driver.relay.deadline(), None);
}

#[test]
fn a_network_change_retries_a_waiting_relay_at_once_with_the_backoff_reset() {
    let mut driver = Driver::exact(Some(10));
    for _ in 0..3 {
        driver.fail_dial();
        driver.elapse();
    }
    driver.fail_dial();
    assert!(matches!(
        driver.relay.status(),
        RelayStatus::Waiting { attempt: 4, .. }
    ));
    driver.feed(Input::NetworkChanged);
    assert_eq!(driver.dials, 5, "dialed at once");
    driver.fail_dial();
    assert!(matches!(
        driver.relay.status(),
        RelayStatus::Waiting { attempt: 1, .. }
    ));
}

#[test]
fn a_relay_that_keeps_failing_still_backs_off_however_often_the_network_changes() {
    let mut driver = Driver::exact(Some(10));
    driver.fail_dial();
    driver.feed(Input::NetworkChanged);
    driver.fail_dial();
    for _ in 0..5 {
        driver.feed(Input::NetworkChanged);
    }
    assert_eq!(driver.dials, 2, "one reset per outage");
    driver.elapse();
    driver.fail_dial();
    assert!(matches!(
        driver.relay.status(),
        RelayStatus::Waiting { attempt: 2, .. }
    ));
}

#[test]
fn a_network_change_revives_a_relay_that_gave_up_and_resets_for_the_next_outage() {
    let mut driver = Driver::exact(Some(0));
    driver.fail_dial();
    driver.feed(Input::NetworkChanged);
    assert_eq!(driver.dials, 2);
    driver.connect_ours();
    driver.reservation_accepted();
    driver.disconnect();
    assert_eq!(driver.gave_up(), Some((0, GiveUpReason::MaxAttempts)));
    driver.feed(Input::NetworkChanged);
    assert_eq!(driver.dials, 3, "a new outage gets its own reset");
}

/// The old connection closes (`ConnectionClosed`) and its listener with it (`Ok`), in either order.
fn old_link_closes(driver: &mut Driver, old: ConnectionId, listener: ListenerId, listener_first: bool) {
    let closed = Input::ConnectionClosed {
        connection: old,
        cause: Cause::connection_lost(None),
    };
    let listener_closed = Input::ListenerClosed {
        listener,
        refused: false,
        cause: Cause::reservation_lost(),
    };
    let (first, second) = if listener_first {
        (listener_closed, closed)
    } else {
        (closed, listener_closed)
    };
    driver.feed(first);
    driver.feed(second);
}

#[test]
fn a_network_change_moves_a_reserved_relay_to_a_new_connection_without_counting() {
    for listener_first in [false, true] {
        let mut driver = Driver::reserved(Config::default());
        let (old, old_listener) = (driver.last_dial.unwrap(), driver.last_listener.unwrap());
        driver.feed(Input::NetworkChanged);
        assert_eq!(driver.dials, 2, "dialed beside the old link at once");
        assert_eq!(
            driver.relay.status(),
            RelayStatus::Reserved,
            "the old reservation stands meanwhile"
        );
        driver.connect_ours();
        assert_eq!(
            driver.closed,
            [old],
            "the old connection is closed once the new one is up"
        );
        assert_eq!(
            driver.listens, 1,
            "not while the relay client would still reserve on the old one"
        );
        old_link_closes(&mut driver, old, old_listener, listener_first);
        assert_eq!(driver.listens, 2, "asked for on the new connection at once");
        assert_eq!(driver.relay.deadline(), None, "no wait");
        driver.reservation_accepted();
        assert_eq!(driver.relay.status(), RelayStatus::Reserved);
        let events = driver.take_events();
        assert!(
            matches!(events[..], [Event::Reserved { .. }]),
            "no retry counted or scheduled: {events:?}"
        );
    }
}

#[test]
fn a_move_dial_that_fails_or_is_not_made_counts_nothing_and_holds_nothing_back() {
    let mut driver = Driver::reserved(Config::default());
    driver.feed(Input::NetworkChanged);
    driver.fail_dial();
    driver.feed(Input::NetworkChanged);
    assert_eq!(
        driver.dials, 3,
        "the failed dial changed nothing, so the next change dials again"
    );
    // The application's dial to the relay is in flight: the keeper's is not made, and does not race it.
    let connection = driver.last_dial.unwrap();
    driver.feed(Input::DialSkipped { connection });
    driver.feed(Input::NetworkChanged);
    assert_eq!(driver.dials, 4);
    assert_eq!(driver.relay.status(), RelayStatus::Reserved);
    assert!(driver.take_events().is_empty());
}

/// Linux reports an address replaced as the old one expiring, then the new one appearing: the dial made for
/// the first may leave before the new address is there (a QUIC handshake then waits a second for its first
/// resend), so the second change dials once more, and the first dial to connect is the move's.
#[test]
fn a_change_while_the_move_dials_dials_once_more_and_the_first_to_connect_wins() {
    for earlier_wins in [true, false] {
        let mut driver = Driver::reserved(Config::default());
        let old = driver.last_dial.unwrap();
        driver.feed(Input::NetworkChanged);
        let first = driver.last_dial.unwrap();
        driver.feed(Input::NetworkChanged);
        let second = driver.last_dial.unwrap();
        driver.feed(Input::NetworkChanged);
        assert_eq!(driver.dials, 3, "one dial more for the burst, not one per change");
        let (winner, straggler) = if earlier_wins {
            (first, second)
        } else {
            (second, first)
        };
        driver.connect(winner);
        assert_eq!(driver.closed, [old]);
        driver.connect(straggler);
        assert_eq!(
            driver.closed,
            [old, straggler],
            "the other dial's connection is not kept"
        );
        assert!(driver.take_events().is_empty());
    }
}

#[test]
fn when_one_of_two_move_dials_fails_the_other_goes_on() {
    let mut driver = Driver::reserved(Config::default());
    let old = driver.last_dial.unwrap();
    driver.feed(Input::NetworkChanged);
    let first = driver.last_dial.unwrap();
    driver.feed(Input::NetworkChanged);
    driver.fail_dial();
    driver.connect(first);
    assert_eq!(driver.closed, [old]);
    assert!(driver.take_events().is_empty());
}

#[test]
fn a_burst_of_network_changes_moves_a_link_once_per_interval() {
    let mut driver = Driver::reserved(Config::default());
    let (old, old_listener) = (driver.last_dial.unwrap(), driver.last_listener.unwrap());
    for _ in 0..4 {
        driver.feed(Input::NetworkChanged);
    }
    assert_eq!(driver.dials, 3, "two dials for the burst");
    driver.connect_ours();
    old_link_closes(&mut driver, old, old_listener, false);
    driver.reservation_accepted();
    driver.now += MOVE_INTERVAL - Duration::from_millis(1);
    driver.feed(Input::NetworkChanged);
    assert_eq!(driver.dials, 3, "too soon after the last move: the probe decides");
    driver.now += Duration::from_millis(1);
    driver.feed(Input::NetworkChanged);
    assert_eq!(driver.dials, 4);
}

#[test]
fn an_old_link_that_dies_before_the_move_connects_is_a_loss_the_move_then_ends() {
    let mut driver = Driver::reserved(Config::default());
    driver.feed(Input::NetworkChanged);
    driver.disconnect();
    assert_eq!(
        scheduled(&driver.take_events()),
        [1],
        "the probe's verdict, as without a move"
    );
    driver.connect_ours();
    assert_eq!(driver.listens, 2, "reserved at once on the move's connection");
}

#[test]
fn a_replaced_listener_backs_off_even_after_hop_was_announced() {
    let mut driver = Driver::new(Config::default(), true);
    driver.feed(Input::HopEnabled);
    driver.listener_replaced();
    let events = driver.take_events();
    assert!(
        matches!(events.as_slice(), [Event::ReconnectScheduled { attempt: 1, delay, .. }] if !delay.is_zero()),
        "an immediate retry would answer the application's listener with a replacement: {events:?}"
    );
}

#[test]
fn adopting_while_our_request_is_in_flight_withdraws_it() {
    let mut driver = Driver::new(Config::default(), true);
    let ours = driver.last_listener.unwrap();
    let addr = driver.relay.addrs()[0].clone().with(Protocol::P2pCircuit);
    let theirs = ListenerId::next();
    driver.feed(Input::ForeignReservation {
        listener: theirs,
        addr,
    });
    assert_eq!(driver.removed, [ours]);
    assert_eq!(driver.adopted, [theirs]);
}

#[test]
fn the_retries_before_the_first_reservation_are_forgiven_when_it_is_reached() {
    let mut driver = Driver::exact(Some(10));
    driver.fail_dial();
    driver.elapse();
    driver.fail_dial();
    driver.elapse();
    driver.connect_ours();
    driver.reservation_accepted();
    driver.disconnect();
    assert!(matches!(
        driver.relay.status(),
        RelayStatus::Waiting { attempt: 1, .. }
    ));
}

/// The first retry of an outage that reaches a freshly restarted relay, which refuses until it offers HOP.
fn restarted_relay_refusing(max_attempts: Option<u32>) -> Driver {
    let mut driver = Driver::exact(max_attempts);
    driver.connect_ours();
    driver.reservation_accepted();
    driver.disconnect();
    driver.elapse();
    driver.connect_ours();
    driver.take_events();
    driver.refused_for_hop();
    driver
}

#[test]
fn a_refusal_for_lack_of_hop_waits_for_hop_and_is_not_counted_when_hop_comes() {
    let mut driver = restarted_relay_refusing(Some(10));
    let events = driver.take_events();
    let fallback = driver.config.backoff_bound(2);
    assert!(
        matches!(
            events.as_slice(),
            [Event::ReconnectScheduled { attempt: 2, delay, cause, .. }]
                if cause.kind == CauseKind::AwaitingHop && *delay == fallback
        ),
        "the fallback is announced as the retry it would be: {events:?}"
    );
    assert!(matches!(
        driver.relay.status(),
        RelayStatus::Waiting { attempt: 2, .. }
    ));
    driver.feed(Input::HopEnabled);
    assert_eq!(driver.listens, 3, "reserves again the moment HOP comes");
    driver.reservation_accepted();
    assert_eq!(driver.relay.status(), RelayStatus::Reserved);
    // The refusal raised neither the count nor the level: the next outage waits as the last one did.
    driver.disconnect();
    assert!(matches!(
        driver.relay.status(),
        RelayStatus::Waiting { attempt: 1, .. }
    ));
    assert_eq!(driver.elapse(), driver.config.backoff_bound(2));
}

#[test]
fn a_refusal_for_lack_of_hop_counts_once_its_fallback_fires_first() {
    let mut driver = restarted_relay_refusing(Some(10));
    assert_eq!(driver.elapse(), driver.config.backoff_bound(2), "the fallback");
    assert_eq!(driver.listens, 3, "retry 2 asks again on the live connection");
    // A second refusal on the same connection is counted: a relay whose HOP flaps cannot loop.
    driver.take_events();
    driver.refused_for_hop();
    let events = driver.take_events();
    assert!(
        matches!(
            events.as_slice(),
            [Event::ReconnectScheduled { attempt: 3, delay, cause, .. }]
                if cause.kind == CauseKind::HopUnsupported && *delay == driver.config.backoff_bound(3)
        ),
        "{events:?}"
    );
}

#[test]
fn each_connection_gets_one_uncounted_refusal() {
    let mut driver = restarted_relay_refusing(Some(10));
    driver.disconnect();
    assert_eq!(
        driver.relay.status(),
        RelayStatus::Waiting {
            attempt: 2,
            next_try: driver.relay.deadline().unwrap()
        },
        "the announced retry dials when it fires, as HOP cannot come on a closed connection"
    );
    driver.elapse();
    driver.connect_ours();
    driver.take_events();
    driver.refused_for_hop();
    let events = driver.take_events();
    assert!(
        matches!(events.as_slice(), [Event::ReconnectScheduled { attempt: 3, cause, .. }] if cause.kind == CauseKind::AwaitingHop),
        "a new connection waits for HOP again: {events:?}"
    );
}

#[test]
fn a_refusal_of_the_last_retry_still_waits_for_hop_and_gives_up_only_at_its_fallback() {
    let mut driver = restarted_relay_refusing(Some(1));
    assert_eq!(driver.take_events().len(), 0, "no retry is left to announce");
    assert_eq!(driver.relay.status(), RelayStatus::Connected);
    driver.feed(Input::HopEnabled);
    driver.reservation_accepted();
    assert_eq!(driver.relay.status(), RelayStatus::Reserved, "saved by HOP");

    let mut driver = restarted_relay_refusing(Some(1));
    assert_eq!(
        driver.elapse(),
        driver.config.backoff_bound(2),
        "the bound, without jitter"
    );
    assert_eq!(driver.gave_up(), Some((1, GiveUpReason::MaxAttempts)));
    assert_eq!(driver.listens, 2, "no retry beyond max_attempts");
}

#[test]
fn a_refusal_after_hop_was_announced_asks_again_at_once_without_an_event() {
    let mut driver = Driver::new(Config::default(), true);
    driver.feed(Input::HopEnabled);
    driver.refused_for_hop();
    assert_eq!(driver.take_events().len(), 0);
    assert_eq!(driver.listens, 2);
    assert_eq!(driver.relay.status(), RelayStatus::Connected);
}

#[test]
fn hop_on_a_live_connection_revives_a_relay_that_gave_up() {
    let mut driver = Driver::exact(Some(0));
    driver.connect_ours();
    driver.reservation_closed();
    assert_eq!(driver.gave_up(), Some((0, GiveUpReason::MaxAttempts)));
    driver.feed(Input::HopEnabled);
    assert_eq!(driver.listens, 2, "a fresh round reserves on the live connection");
    driver.reservation_accepted();
    assert_eq!(driver.relay.status(), RelayStatus::Reserved);
}

#[test]
fn the_applications_reservation_on_a_relay_that_gave_up_is_adopted() {
    let mut driver = Driver::exact(Some(0));
    driver.connect_ours();
    driver.reservation_closed();
    assert_eq!(driver.gave_up(), Some((0, GiveUpReason::MaxAttempts)));
    let addr = driver.relay.addrs()[0].clone().with(Protocol::P2pCircuit);
    driver.take_events();
    driver.feed(Input::ForeignReservation {
        listener: ListenerId::next(),
        addr,
    });
    assert_eq!(
        driver.relay.status(),
        RelayStatus::Reserved,
        "the status says what the node is"
    );
    assert!(matches!(
        driver.take_events().as_slice(),
        [Event::Reserved { .. }]
    ));
}

#[test]
fn by_default_a_give_up_starts_a_fresh_round_after_ten_minutes_and_a_jitter_below_the_cap() {
    let config = Config::default().with_rng_seed(3);
    let mut driver = Driver::reserved(config.clone());
    driver.disconnect();
    while driver.gave_up().is_none() {
        driver.elapse();
        driver.fail_dial();
    }
    let retry_in = match driver.take_events().last() {
        Some(Event::GaveUp { retry_in, .. }) => retry_in.expect("a cool-down by default"),
        other => panic!("{other:?}"),
    };
    let cooldown = Duration::from_secs(600);
    assert!(retry_in >= cooldown && retry_in < cooldown + config.backoff_bound(u32::MAX));
    assert_eq!(driver.elapse(), retry_in);
    assert_eq!(driver.relay.status(), RelayStatus::Connecting, "a fresh round");
    driver.fail_dial();
    assert!(matches!(
        driver.relay.status(),
        RelayStatus::Waiting { attempt: 1, .. }
    ));
    assert!(driver.elapse() < config.backoff_bound(1), "from the base");
}
