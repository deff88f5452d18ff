//! Known relays on the engine's clock: what it remembers of each relay's service, and the pool's preference
//! for the relays that served last, whatever order they come in and whatever the seed.

use std::time::{Duration, UNIX_EPOCH};

use libp2p::swarm::ConnectionId;

use super::{
    harness::{circuit, dials, events, fast, hop_refusal, listener, refusal, relay_addr, Harness},
    *,
};
use crate::known::{snapshot, Clocks};

const SPREAD: Duration = Duration::from_millis(100);
const HOUR: Duration = Duration::from_secs(3600);

/// A relay from a snapshot: never reserved if `served_ago` is `None`.
fn known(served_ago: Option<Duration>, now: Instant) -> Known {
    let (peer, addr) = relay_addr();
    let mut history = History::new(now);
    history.known_since = Moment::ago(now, 1000 * HOUR);
    history.served = served_ago.map(|ago| Moment::ago(now, ago));
    Known {
        peer,
        addrs: vec![addr],
        history,
    }
}

/// A pool of one slot, seeded.
fn pool(seed: u64) -> Harness {
    Harness::new(
        fast()
            .with_max_reservations(Some(1))
            .with_promotion_spread(SPREAD)
            .with_rng_seed(seed),
    )
}

/// The relays dialed once the promotion spread is over.
fn dialed_after_spread(harness: &mut Harness) -> Vec<PeerId> {
    harness.drain();
    harness.advance(SPREAD);
    harness
        .drain()
        .iter()
        .filter_map(|command| match command {
            Command::Dial(opts) => opts.get_peer_id(),
            _ => None,
        })
        .collect()
}

#[test]
fn a_pool_activates_the_relay_that_served_last_whatever_the_order_and_seed() {
    for seed in 0..16 {
        let mut harness = pool(seed);
        let now = harness.now;
        let never = known(None, now);
        let long_ago = known(Some(240 * HOUR), now);
        let lately = known(Some(HOUR), now);
        let never_either = known(None, now);
        let last = lately.peer;
        for relay in [never, long_ago, lately, never_either] {
            harness.engine.add_known(relay, now).unwrap();
        }
        assert_eq!(dialed_after_spread(&mut harness), [last], "seed {seed}");
    }
}

#[test]
fn a_relay_that_served_takes_the_slot_of_an_undialed_one_the_application_added_first() {
    for seed in 0..16 {
        let mut harness = pool(seed);
        let (_, given) = relay_addr();
        harness.add_relay(&given);
        let served = known(Some(HOUR), harness.now);
        let peer = served.peer;
        harness.engine.add_known(served, harness.now).unwrap();
        assert_eq!(dialed_after_spread(&mut harness), [peer], "seed {seed}");
    }
}

#[test]
fn a_relay_known_again_from_a_snapshot_gains_its_addresses_and_service() {
    let mut harness = pool(1);
    let (_, given) = relay_addr();
    let peer = harness.add_relay(&given);
    let quic: Multiaddr = format!("/ip4/127.0.0.1/udp/4001/quic-v1/p2p/{peer}")
        .parse()
        .unwrap();
    let mut again = known(Some(HOUR), harness.now);
    again.peer = peer;
    again.addrs = vec![given.clone(), quic.clone()];
    harness.engine.add_known(again, harness.now).unwrap();
    assert_eq!(harness.engine.addrs_of(&peer), [given, quic]);
    let [known] = &harness.engine.known(harness.now)[..] else {
        panic!("one relay")
    };
    assert_eq!(known.history.served, Some(Moment::ago(harness.now, HOUR)));
    assert_eq!(known.history.known_since, Moment::ago(harness.now, 1000 * HOUR));
}

#[test]
fn a_promoted_relay_known_again_keeps_its_slot_and_takes_no_other() {
    for seed in 0..8 {
        let mut harness = pool(seed);
        let served = known(Some(HOUR), harness.now);
        let peer = served.peer;
        harness.engine.add_known(served.clone(), harness.now).unwrap();
        harness
            .engine
            .add_known(known(None, harness.now), harness.now)
            .unwrap();
        let mut again = served;
        again.history.served = Some(Moment::at(harness.now));
        harness.engine.add_known(again, harness.now).unwrap();
        assert_eq!(dialed_after_spread(&mut harness), [peer], "seed {seed}");
    }
}

/// Reserves the relay at `addr`, just added and dialed, on connection `id`.
fn reserve(harness: &mut Harness, addr: &Multiaddr, id: usize) -> PeerId {
    let peer = harness.add_relay(addr);
    harness.drain();
    harness.connect(peer, ConnectionId::new_unchecked(id), addr);
    let listener = listener(&harness.drain());
    harness
        .engine
        .on_new_listen_addr(listener, &circuit(addr), harness.now);
    harness.drain();
    peer
}

#[test]
fn the_snapshot_says_when_each_relay_was_last_reserved_and_why_it_last_failed_on_the_wall_clock() {
    let mut harness = Harness::new(fast().with_max_attempts(None));
    let (_, lost_addr) = relay_addr();
    let lost = reserve(&mut harness, &lost_addr, 1);
    let (_, kept_addr) = relay_addr();
    let kept = reserve(&mut harness, &kept_addr, 2);
    harness.advance(5 * HOUR);
    harness.close(lost, ConnectionId::new_unchecked(1), &lost_addr);
    let (_, never_addr) = relay_addr();
    let never = harness.add_relay(&never_addr);
    let dial = dials(&harness.drain());
    harness.fail_dial(never, dial[0], &refusal(&never_addr));
    harness.drain();
    harness.advance(HOUR);

    let wall = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let clocks = Clocks {
        now: harness.now,
        wall,
    };
    let relays = harness.engine.known(harness.now);
    let taken = snapshot(relays, harness.engine.config(), clocks);
    let order: Vec<PeerId> = taken.iter().map(|relay| relay.peer_id).collect();
    assert_eq!(order, [kept, lost, never], "the most recently reserved first");
    let [kept, lost, never] = &taken[..] else {
        unreachable!()
    };
    assert_eq!(kept.last_reserved, Some(wall), "reserved now");
    assert_eq!(kept.known_since, wall - 6 * HOUR);
    assert_eq!(lost.last_reserved, Some(wall - HOUR), "reserved until its loss");
    let failure = lost.last_failure.as_ref().unwrap();
    assert_eq!(
        (failure.cause.kind, failure.at),
        (CauseKind::ConnectionLost, wall - HOUR)
    );
    assert_eq!(never.last_reserved, None);
    assert_eq!(never.addrs, [never_addr]);
    let failure = never.last_failure.as_ref().unwrap();
    assert_eq!(
        (failure.cause.kind, failure.at),
        (CauseKind::DialFailed, wall - HOUR)
    );

    let limited = Config::default().with_max_known_relays(1);
    let relays = harness.engine.known(harness.now);
    assert_eq!(snapshot(relays, &limited, clocks).len(), 1);
}

#[test]
fn a_fresh_relays_not_yet_is_no_failure() {
    let mut harness = Harness::new(fast());
    let (peer, addr) = relay_addr();
    harness.add_relay(&addr);
    harness.drain();
    harness.connect(peer, ConnectionId::new_unchecked(1), &addr);
    let refused = listener(&harness.drain());
    harness
        .engine
        .on_listener_closed(refused, Err(&hop_refusal()), harness.now);
    let scheduled = harness.drain();
    assert!(
        events(&scheduled).iter().any(|e| matches!(
            e,
            Event::ReconnectScheduled { cause, .. } if cause.kind == CauseKind::AwaitingHop
        )),
        "{scheduled:?}"
    );
    let [relay] = &harness.engine.known(harness.now)[..] else {
        panic!("one relay")
    };
    assert_eq!(relay.history.failure, None);
}

#[test]
fn a_stopped_keeper_remembers_its_reservations_until_the_stop() {
    let mut harness = Harness::new(fast());
    let (_, addr) = relay_addr();
    reserve(&mut harness, &addr, 1);
    harness.advance(HOUR);
    harness.engine.stop(harness.now);
    harness.advance(HOUR);
    let [relay] = &harness.engine.known(harness.now)[..] else {
        panic!("one relay")
    };
    assert_eq!(relay.history.served.map(|s| s.age(harness.now)), Some(HOUR));
    let again = known(None, harness.now);
    assert_eq!(
        harness.engine.add_known(again, harness.now),
        Err(AddRelayError::Stopped)
    );
}
