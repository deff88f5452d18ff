//! Every way to call the API wrongly, and what the caller gets: the README's "Bad input" table, row by row.
//! Nothing here may panic, and a rejected call changes nothing.

use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use libp2p_relay_keeper::{AddRelayError, Config, RelayKeeper, RelayStatus};

const RELAY: &str = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";

fn add(keeper: &mut RelayKeeper, addr: &str) -> Result<PeerId, AddRelayError> {
    keeper.add_relay(addr.parse::<Multiaddr>().unwrap())
}

fn assert_rejected(addr: &str, expected: AddRelayError, text: &str) {
    let mut keeper = RelayKeeper::default();
    let error = add(&mut keeper, addr).unwrap_err();
    assert_eq!(error, expected);
    assert!(error.to_string().contains(text), "{error}");
    assert_eq!(keeper.relays().count(), 0, "a rejected address changes nothing");
}

#[test]
fn address_without_peer_id() {
    assert_rejected(
        "/ip4/198.51.100.7/tcp/4001",
        AddRelayError::MissingPeerId,
        "append /p2p/<relay peer id>",
    );
}

#[test]
fn peer_id_only() {
    assert_rejected(
        &format!("/p2p/{RELAY}"),
        AddRelayError::MissingTransport,
        "no transport part",
    );
}

#[test]
fn circuit_address() {
    assert_rejected(
        &format!("/ip4/198.51.100.7/tcp/4001/p2p/{RELAY}/p2p-circuit"),
        AddRelayError::CircuitAddress,
        "the keeper adds /p2p-circuit itself",
    );
}

#[test]
fn peer_id_not_at_the_end() {
    for addr in [
        format!("/ip4/198.51.100.7/tcp/4001/p2p/{RELAY}/tcp/1"),
        format!("/p2p/{RELAY}/ip4/198.51.100.7/tcp/4001"),
    ] {
        assert_rejected(&addr, AddRelayError::PeerIdNotLast, "must come last");
    }
}

#[test]
fn add_relay_after_stop() {
    let mut keeper = RelayKeeper::default();
    keeper.stop();
    let error = add(&mut keeper, &format!("/ip4/198.51.100.7/tcp/4001/p2p/{RELAY}")).unwrap_err();
    assert_eq!(error, AddRelayError::Stopped);
    assert!(error.to_string().contains("create a new RelayKeeper"));
}

#[test]
fn the_same_relay_twice_adds_its_address_once() {
    let mut keeper = RelayKeeper::default();
    let addr = format!("/ip4/198.51.100.7/tcp/4001/p2p/{RELAY}");
    let first = add(&mut keeper, &addr).unwrap();
    assert_eq!(add(&mut keeper, &addr), Ok(first));
    assert_eq!(keeper.relays().count(), 1);
}

#[test]
fn unknown_relay() {
    let mut keeper = RelayKeeper::default();
    let unknown = PeerId::random();
    assert!(!keeper.remove_relay(&unknown));
    assert!(!keeper.retry_now(&unknown));
    assert_eq!(keeper.status(&unknown), None);
}

#[test]
fn retry_now_and_network_changed_after_stop() {
    let mut keeper = RelayKeeper::default();
    let relay = add(&mut keeper, &format!("/ip4/198.51.100.7/tcp/4001/p2p/{RELAY}")).unwrap();
    keeper.stop();
    keeper.stop();
    assert!(!keeper.retry_now(&relay));
    assert_eq!(keeper.network_changed(), 0);
    assert_eq!(keeper.status(&relay), Some(RelayStatus::Stopped));
}

#[test]
fn config_values_out_of_range_are_clamped() {
    let zero_base = Config::default().with_base_delay(Duration::ZERO);
    assert_eq!(zero_base.backoff_bound(1), Duration::from_millis(1));
    let max_below_base = Config::default()
        .with_base_delay(Duration::from_secs(10))
        .with_max_delay(Duration::from_secs(1));
    assert_eq!(max_below_base.backoff_bound(5), Duration::from_secs(10));
    let huge = Config::default().with_max_delay(Duration::MAX);
    assert_eq!(
        huge.backoff_bound(u32::MAX),
        Duration::from_secs(365 * 24 * 60 * 60)
    );
}
