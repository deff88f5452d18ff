//! The pool's decisions on their own: given where the relays stand and what the engine's view says of them,
//! the next move. The engine's carrying them out is in `engine::pool_tests`.

use std::time::Duration;

use super::*;

const SPREAD: Duration = Duration::from_millis(100);

fn pool(target: usize, seed: u64) -> Pool {
    let config = Config::default()
        .with_max_reservations(Some(target))
        .with_promotion_spread(SPREAD)
        .with_rng_seed(seed);
    Pool::new(&config).expect("a pool is configured")
}

/// The engine's view of the relays: which are connected and which were discovered.
#[derive(Default)]
struct Relays {
    connected: Vec<PeerId>,
    discovered: Vec<PeerId>,
}

impl View for Relays {
    fn connected(&self, relay: &PeerId) -> bool {
        self.connected.contains(relay)
    }

    fn discovered(&self, relay: &PeerId) -> bool {
        self.discovered.contains(relay)
    }
}

/// A relay the pool does not hold: removed, gave up, or paused.
const NOWHERE: Standing = Standing {
    holds_slot: false,
    eligible: false,
    gives_way: false,
    promoted: false,
    in_goal: false,
};
const STANDBY: Standing = Standing {
    eligible: true,
    ..NOWHERE
};
const RESERVED: Standing = Standing {
    holds_slot: true,
    in_goal: true,
    ..NOWHERE
};
const WAITING: Standing = Standing {
    holds_slot: true,
    gives_way: true,
    ..NOWHERE
};
/// A standby still waiting out its own backoff.
const STANDBY_WAITING: Standing = NOWHERE;
const PROMOTED: Standing = Standing {
    holds_slot: true,
    promoted: true,
    ..NOWHERE
};

/// `n` relays standing as `standing` in `pool`.
fn stand(pool: &mut Pool, n: usize, standing: Standing) -> Vec<PeerId> {
    let peers: Vec<PeerId> = (0..n).map(|_| PeerId::random()).collect();
    for peer in &peers {
        pool.update(*peer, standing);
    }
    peers
}

/// Nothing to decide: free slots but no eligible standby; or eligible standbys, but every slot is held by a
/// relay in its goal or dialing, which is never demoted.
#[test]
fn without_a_standby_to_promote_or_a_slot_to_give_nothing_is_decided() {
    let cases: [(usize, &[(usize, Standing)]); 2] = [
        (3, &[(1, RESERVED), (2, NOWHERE)]),
        (2, &[(1, RESERVED), (1, PROMOTED), (3, STANDBY)]),
    ];
    for (target, standings) in cases {
        let mut pool = pool(target, 1);
        for (n, standing) in standings {
            stand(&mut pool, *n, *standing);
        }
        assert_eq!(pool.decide(&Relays::default()), None, "{standings:?}");
    }
}

#[test]
fn a_free_slot_goes_to_a_connected_standby_at_once() {
    let mut pool = pool(2, 1);
    stand(&mut pool, 1, RESERVED);
    let standbys = stand(&mut pool, 3, STANDBY);
    let relays = Relays {
        connected: vec![standbys[2]],
        ..Relays::default()
    };
    assert_eq!(
        pool.decide(&relays),
        Some(Decision::Promote {
            relay: standbys[2],
            delay: Duration::ZERO,
            replaces: None,
        })
    );
}

#[test]
fn an_unconnected_standby_is_chosen_at_random_and_dialed_within_the_spread() {
    let mut chosen = Vec::new();
    for seed in 0..50 {
        let mut pool = pool(1, seed);
        let standbys = stand(&mut pool, 2, STANDBY);
        let Some(Decision::Promote { relay, delay, .. }) = pool.decide(&Relays::default()) else {
            panic!("a free slot and two eligible standbys: a promotion");
        };
        assert!(delay <= SPREAD, "{delay:?}");
        chosen.push(standbys.iter().position(|p| *p == relay).unwrap());
    }
    assert!(chosen.contains(&0) && chosen.contains(&1), "{chosen:?}");
}

#[test]
fn a_given_relay_goes_before_a_discovered_one_even_a_connected_one() {
    let mut pool = pool(1, 1);
    let standbys = stand(&mut pool, 2, STANDBY);
    let relays = Relays {
        connected: vec![standbys[0]],
        discovered: vec![standbys[0]],
    };
    assert!(matches!(
        pool.decide(&relays),
        Some(Decision::Promote { relay, .. }) if relay == standbys[1]
    ));
    // Discovered relays alone are promoted as given ones are.
    let mut pool = self::pool(1, 1);
    let standbys = stand(&mut pool, 1, STANDBY);
    let relays = Relays {
        discovered: standbys.clone(),
        ..Relays::default()
    };
    assert!(matches!(
        pool.decide(&relays),
        Some(Decision::Promote { relay, .. }) if relay == standbys[0]
    ));
}

#[test]
fn a_full_pool_gives_the_slot_of_a_relay_waiting_for_a_retry_to_a_standby() {
    let mut pool = pool(2, 1);
    stand(&mut pool, 1, RESERVED);
    let waiting = stand(&mut pool, 1, WAITING);
    stand(&mut pool, 1, STANDBY);
    assert_eq!(
        pool.decide(&Relays::default()),
        Some(Decision::Demote(waiting[0]))
    );
}

#[test]
fn a_removed_relay_frees_its_slot_for_a_standby() {
    let mut pool = pool(1, 1);
    let reserved = stand(&mut pool, 1, RESERVED);
    let standby = stand(&mut pool, 1, STANDBY);
    assert_eq!(pool.decide(&Relays::default()), None);
    pool.update(reserved[0], NOWHERE);
    assert_eq!(pool.held(), 0);
    assert!(matches!(
        pool.decide(&Relays::default()),
        Some(Decision::Promote { relay, .. }) if relay == standby[0]
    ));
}

/// With one slot promoted and not dialed yet, a candidate added next takes it with the chance 1/2, so the
/// slot goes to either as a uniform choice would, whatever order the application added them in.
#[test]
fn a_candidate_added_while_a_promotion_is_not_dialed_yet_replaces_it_half_the_time() {
    const NODES: u64 = 1_000;
    let mut swaps = 0;
    for seed in 0..NODES {
        let mut pool = pool(1, seed);
        let promoted = stand(&mut pool, 1, PROMOTED);
        let added = stand(&mut pool, 1, STANDBY);
        pool.added(added[0]);
        match pool.decide(&Relays::default()) {
            Some(Decision::Swap {
                demote,
                promote,
                delay,
            }) => {
                assert_eq!((demote, promote), (promoted[0], added[0]));
                assert!(delay <= SPREAD, "{delay:?}");
                swaps += 1;
            }
            None => {}
            other => panic!("a full pool decides a swap or nothing: {other:?}"),
        }
        assert_eq!(
            pool.decide(&Relays::default()),
            None,
            "the newcomer is decided on once"
        );
    }
    assert!((400..=600).contains(&swaps), "{swaps} swaps of {NODES}");
}

#[test]
fn a_candidate_added_to_a_pool_without_pending_promotions_displaces_nobody() {
    let mut pool = pool(1, 1);
    stand(&mut pool, 1, RESERVED);
    let added = stand(&mut pool, 1, STANDBY);
    pool.added(added[0]);
    assert_eq!(pool.decide(&Relays::default()), None);
}

#[test]
fn the_pool_says_short_once_per_relay_lost_below_its_target_and_full_when_it_is_back() {
    let mut pool = pool(2, 1);
    let reserved = stand(&mut pool, 2, RESERVED);
    assert_eq!(pool.report(), None, "filling the pool is no news");
    pool.update(reserved[0], WAITING);
    let short = |reserved| Some(Report::Short { reserved, target: 2 });
    assert_eq!(pool.report(), short(1));
    assert_eq!(pool.report(), None, "said once for that loss");
    pool.update(reserved[1], WAITING);
    assert_eq!(pool.report(), short(0), "and again for the next, down to none");
    pool.update(reserved[0], RESERVED);
    assert_eq!(pool.report(), None);
    pool.update(reserved[1], RESERVED);
    assert_eq!(pool.report(), Some(Report::Full { target: 2 }));
    assert_eq!(pool.report(), None);
}

#[test]
fn a_loss_a_standby_steps_in_for_is_no_shortage_and_the_promotion_names_the_lost_relay() {
    let mut pool = pool(2, 1);
    let reserved = stand(&mut pool, 2, RESERVED);
    let standby = stand(&mut pool, 1, STANDBY);
    pool.report();
    pool.update(reserved[0], WAITING);
    assert_eq!(
        pool.decide(&Relays::default()),
        Some(Decision::Demote(reserved[0]))
    );
    pool.update(reserved[0], STANDBY_WAITING);
    let Some(Decision::Promote { relay, replaces, .. }) = pool.decide(&Relays::default()) else {
        panic!("the standby takes the slot");
    };
    assert_eq!((relay, replaces), (standby[0], Some(reserved[0])));
    pool.update(standby[0], PROMOTED);
    assert_eq!(pool.report(), None);
    assert!(pool.announce(reserved[0]), "the loss is news once");
    assert!(!pool.announce(reserved[0]), "not twice in the same outage");
    pool.update(reserved[0], RESERVED);
    assert!(pool.announce(reserved[0]), "news again after the relay was back");
}
