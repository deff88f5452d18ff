//! A relay that says "not now" (`RESOURCE_LIMIT_EXCEEDED`) is no broken link: the keeper asks it again once its
//! limiter may allow it, counts nothing and never gives up for it alone, and a restart (a refused dial) lifts
//! the hold. The real relay's side of these rules is in `tests/limits.rs`.

use std::time::Duration;

use libp2p::{swarm::ConnectionId, Multiaddr, PeerId};

use super::{
    harness::{dials, events, limit_refusal, listener, listens, refusal, relay_addr, Harness},
    Command,
};
use crate::{CauseKind, Config, Event, RelayStatus};

const INTERVAL: Duration = Duration::from_secs(120);

/// A keeper whose relay gives up after two failed retries, its relay connected and asked for a reservation.
fn asked() -> (Harness, PeerId, Multiaddr, Vec<Command>) {
    let config = Config::default()
        .with_max_attempts(Some(2))
        .with_limit_interval(INTERVAL)
        .with_rng_seed(3);
    let mut harness = Harness::new(config);
    let (_, addr) = relay_addr();
    let relay = harness.add_relay(&addr);
    harness.drain();
    harness.connect(relay, ConnectionId::new_unchecked(1), &addr);
    let commands = harness.drain();
    (harness, relay, addr, commands)
}

/// The relay refuses the request the `commands` made for its limits.
fn say_not_now(harness: &mut Harness, commands: &[Command]) -> Vec<Command> {
    let now = harness.now;
    harness
        .engine
        .on_listener_closed(listener(commands), Err(&limit_refusal()), now);
    harness.drain()
}

#[test]
fn a_relay_that_keeps_saying_not_now_is_asked_once_an_interval_on_its_connection_and_never_given_up() {
    let (mut harness, relay, _, mut asking) = asked();
    for round in 0..20 {
        let refused = say_not_now(&mut harness, &asking);
        let scheduled: Vec<_> = events(&refused)
            .into_iter()
            .filter_map(|event| match event {
                Event::ReconnectScheduled {
                    attempt,
                    delay,
                    cause,
                    ..
                } => Some((*attempt, *delay, cause.kind)),
                _ => None,
            })
            .collect();
        let [(1, hold, CauseKind::ResourceLimitExceeded)] = scheduled[..] else {
            panic!("round {round}: {scheduled:?}");
        };
        // No sooner than the relay's limiter allows, and spread by up to a tenth.
        assert!(
            hold >= INTERVAL && hold <= INTERVAL + INTERVAL / 10,
            "round {round}: {hold:?}"
        );
        assert_eq!(harness.advance_to_timeout(), hold, "round {round}");
        asking = harness.drain();
        assert_eq!(listens(&asking).len(), 1, "round {round}: asked again, once");
        assert!(dials(&asking).is_empty(), "round {round}: on the same connection");
    }
    assert_eq!(harness.engine.status(&relay), Some(RelayStatus::Connected));
}

#[test]
fn a_new_connection_waits_out_the_hold_unless_a_refused_dial_showed_a_restart() {
    for restarted in [false, true] {
        let (mut harness, relay, addr, asking) = asked();
        say_not_now(&mut harness, &asking);
        let held_until = harness.now + INTERVAL;
        // A rust-libp2p relay closes a connection without a reservation after 10 s: not dialed again for it.
        harness.advance(Duration::from_secs(10));
        harness.close(relay, ConnectionId::new_unchecked(1), &addr);
        assert!(dials(&harness.drain()).is_empty(), "restarted: {restarted}");
        // Something makes the keeper dial within the hold: here, a network change.
        let now = harness.now;
        harness.engine.network_changed(now);
        let dialed = dials(&harness.drain());
        assert_eq!(dialed.len(), 1, "restarted: {restarted}");
        let connection = if restarted {
            harness.fail_dial(relay, dialed[0], &refusal(&addr));
            harness.drain();
            // A restarting relay is re-checked soon.
            harness.advance_to_timeout();
            dials(&harness.drain())[0]
        } else {
            dialed[0]
        };
        assert!(harness.now < held_until, "still within the hold");
        harness.connect(relay, connection, &addr);
        let connected = harness.drain();
        assert_eq!(
            listens(&connected).len(),
            usize::from(restarted),
            "restarted: {restarted}: {connected:?}"
        );
    }
}
