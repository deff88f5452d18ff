//! A snapshot's entries as the keeper takes them back: errors for bad ones, drops for stale and surplus ones,
//! wall times that survive clocks that step.

use super::*;
use crate::{CauseKind, RelayKeeper, RelayStatus};

const DAY: Duration = Duration::from_secs(86_400);

fn addr(s: &str) -> Multiaddr {
    s.parse().unwrap()
}

/// The clocks at a fixed wall time.
fn clocks() -> Clocks {
    Clocks {
        now: Instant::now(),
        wall: UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    }
}

/// A relay at a TCP address ending in its peer id, reserved `served_ago` before `clocks`, known for 60 days.
fn entry(clocks: Clocks, served_ago: Option<Duration>) -> KnownRelay {
    let peer = PeerId::random();
    let mut relay = KnownRelay::new(
        peer,
        vec![addr(&format!("/ip4/198.51.100.1/tcp/4001/p2p/{peer}"))],
        clocks.wall - 60 * DAY,
    );
    relay.last_reserved = served_ago.map(|ago| clocks.wall - ago);
    relay
}

#[test]
fn each_bad_entry_gets_its_own_error_and_the_good_ones_are_kept() {
    let clocks = clocks();
    let good = entry(clocks, Some(DAY));
    // Reserved before `good`, so it comes second.
    let mut bare = entry(clocks, Some(2 * DAY));
    bare.addrs = vec![addr("/ip4/198.51.100.2/udp/4001/quic-v1")];
    let mut no_address = entry(clocks, Some(DAY));
    no_address.addrs.clear();
    let mut circuit = entry(clocks, Some(DAY));
    circuit.addrs[0] = circuit.addrs[0].clone().with(Protocol::P2pCircuit);
    let mut other_peer = entry(clocks, Some(DAY));
    let other = PeerId::random();
    other_peer
        .addrs
        .push(addr(&format!("/ip4/198.51.100.3/tcp/1/p2p/{other}")));
    let mut no_transport = entry(clocks, Some(DAY));
    no_transport.addrs = vec![Multiaddr::empty()];
    let duplicate = good.clone();
    let relays = [
        good.clone(),
        bare.clone(),
        no_address.clone(),
        circuit.clone(),
        other_peer.clone(),
        no_transport.clone(),
        duplicate,
    ];
    let (kept, errors) = check(relays, &Config::default(), clocks);

    let kept: Vec<(PeerId, Vec<Multiaddr>)> = kept.into_iter().map(|k| (k.peer, k.addrs)).collect();
    let bare_addr = bare.addrs[0].clone().with(Protocol::P2p(bare.peer_id));
    assert_eq!(
        kept,
        [
            (good.peer_id, good.addrs.clone()),
            (bare.peer_id, vec![bare_addr])
        ],
        "an address without /p2p is taken as the relay's"
    );
    assert_eq!(
        errors,
        [
            KnownRelayError::NoAddress {
                relay: no_address.peer_id
            },
            KnownRelayError::BadAddress {
                relay: circuit.peer_id,
                addr: circuit.addrs[0].clone(),
                error: AddRelayError::CircuitAddress
            },
            KnownRelayError::PeerIdMismatch {
                relay: other_peer.peer_id,
                addr: other_peer.addrs[1].clone()
            },
            KnownRelayError::BadAddress {
                relay: no_transport.peer_id,
                addr: Multiaddr::empty().with(Protocol::P2p(no_transport.peer_id)),
                error: AddRelayError::MissingTransport
            },
            KnownRelayError::Duplicate { relay: good.peer_id },
        ]
    );
    let mismatch = errors[2].to_string();
    assert!(
        mismatch.contains(&other.to_string()) && mismatch.contains("must end in"),
        "{mismatch}"
    );
}

#[test]
fn entries_unseen_for_longer_than_the_maximum_age_are_dropped() {
    let clocks = clocks();
    let lately = entry(clocks, Some(29 * DAY));
    let stale = entry(clocks, Some(31 * DAY));
    let mut never_served_lately = entry(clocks, None);
    never_served_lately.known_since = clocks.wall - DAY;
    let never_served_long = entry(clocks, None);
    let relays = [
        lately.clone(),
        stale,
        never_served_lately.clone(),
        never_served_long,
    ];
    let (kept, errors) = check(relays.clone(), &Config::default(), clocks);
    let kept: Vec<PeerId> = kept.iter().map(|k| k.peer).collect();
    assert_eq!(kept, [lately.peer_id, never_served_lately.peer_id]);
    assert!(errors.is_empty(), "a stale entry is no error: {errors:?}");

    let a_week = Config::default().with_known_relay_max_age(7 * DAY);
    let (kept, _) = check(relays, &a_week, clocks);
    assert_eq!(kept.len(), 1);
}

#[test]
fn beyond_the_limit_the_most_recently_reserved_are_kept_first() {
    let clocks = clocks();
    let relays: Vec<KnownRelay> = [None, Some(3 * DAY), Some(DAY), None, Some(2 * DAY)]
        .into_iter()
        .map(|ago| entry(clocks, ago))
        .collect();
    let config = Config::default().with_max_known_relays(3);
    let (kept, _) = check(relays.clone(), &config, clocks);
    let kept: Vec<PeerId> = kept.iter().map(|k| k.peer).collect();
    assert_eq!(kept, [relays[2].peer_id, relays[4].peer_id, relays[1].peer_id]);
}

#[test]
fn wall_times_survive_a_clock_that_stepped_and_one_before_the_epoch() {
    let clocks = clocks();
    let mut future = entry(clocks, None);
    future.known_since = clocks.wall + DAY;
    future.last_reserved = Some(clocks.wall + DAY);
    let (kept, _) = check([future], &Config::default(), clocks);
    assert_eq!(
        kept[0].history.served.map(|served| served.age(clocks.now)),
        Some(Duration::ZERO),
        "a time after now is now"
    );

    let early = Clocks {
        now: clocks.now,
        wall: UNIX_EPOCH + DAY,
    };
    let before_epoch = Clocks {
        now: clocks.now,
        wall: UNIX_EPOCH - DAY,
    };
    for clocks in [early, before_epoch] {
        let mut history = History::new(clocks.now);
        history.known_since = Moment::ago(clocks.now, 10 * DAY);
        let relay = Known {
            peer: PeerId::random(),
            addrs: Vec::new(),
            history,
        };
        let taken = snapshot(vec![relay], &Config::default(), clocks);
        assert_eq!(taken[0].known_since, UNIX_EPOCH, "never before the epoch");
    }
}

#[test]
fn a_snapshot_taken_back_later_keeps_every_age() {
    let taken_at = clocks();
    let mut history = History::new(taken_at.now);
    history.known_since = Moment::ago(taken_at.now, 20 * DAY);
    history.served = Some(Moment::ago(taken_at.now, DAY));
    let cause = Cause::new(CauseKind::ResourceLimitExceeded, "relay full");
    history.failure = Some(Box::new((cause, Moment::ago(taken_at.now, 2 * DAY))));
    let peer = PeerId::random();
    let relay = Known {
        peer,
        addrs: vec![addr(&format!("/ip4/198.51.100.1/tcp/4001/p2p/{peer}"))],
        history: history.clone(),
    };
    let taken = snapshot(vec![relay], &Config::default(), taken_at);
    // Restarted three days later, after a reboot: its monotonic clock starts over.
    let later = Clocks {
        now: taken_at.now,
        wall: taken_at.wall + 3 * DAY,
    };
    let (back, _) = check(taken, &Config::default(), later);
    let ago = |moment: Moment| moment.age(later.now);
    let back = &back[0].history;
    assert_eq!(ago(back.known_since), 23 * DAY);
    assert_eq!(back.served.map(ago), Some(4 * DAY));
    assert_eq!(back.failure.as_ref().map(|failure| ago(failure.1)), Some(5 * DAY));
    assert_eq!(
        back.failure.as_ref().map(|failure| failure.0.kind),
        Some(CauseKind::ResourceLimitExceeded)
    );
}

#[test]
fn a_keeper_starts_from_the_good_entries_and_a_stopped_one_from_none() {
    let clocks = Clocks::read();
    let good = entry(clocks, Some(DAY));
    let mut bad = entry(clocks, Some(DAY));
    bad.addrs.clear();
    let mut keeper = RelayKeeper::new(Config::default().with_max_reservations(Some(1)));
    let errors = keeper.add_known_relays([good.clone(), bad.clone()]);
    assert_eq!(errors, [KnownRelayError::NoAddress { relay: bad.peer_id }]);
    assert_eq!(keeper.status(&good.peer_id), Some(RelayStatus::Connecting));
    let taken = keeper.known_relays();
    assert_eq!(taken.len(), 1);
    let drift = |a: SystemTime, b: SystemTime| a.duration_since(b).or_else(|e| Ok::<_, ()>(e.duration()));
    let (then, now) = (good.last_reserved.unwrap(), taken[0].last_reserved.unwrap());
    assert!(
        drift(then, now).unwrap() < Duration::from_secs(1),
        "the wall time it was given back, up to how the clocks moved apart meanwhile"
    );

    keeper.stop();
    let errors = keeper.add_known_relays([entry(clocks, Some(DAY))]);
    assert!(
        matches!(errors[..], [KnownRelayError::Stopped { .. }]),
        "{errors:?}"
    );
}

#[cfg(feature = "serde")]
#[test]
fn a_snapshot_goes_through_json_and_back() {
    let clocks = clocks();
    let mut relay = entry(clocks, Some(DAY));
    relay.last_failure = Some(RelayFailure {
        cause: Cause::new(CauseKind::ResourceLimitExceeded, "relay full"),
        at: clocks.wall - 2 * DAY,
    });
    let json = serde_json::to_string(&[relay.clone()]).unwrap();
    assert!(
        json.contains(&format!("\"{}\"", relay.peer_id))
            && json.contains(&format!("\"{}\"", relay.addrs[0]))
            && json.contains("\"resource_limit_exceeded\""),
        "peer ids, addresses and causes as people read them: {json}"
    );
    let back: Vec<KnownRelay> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, [relay]);
}
