//! The handler on its own, for what the probe's clock cannot show: how the handler wires the stream's fate
//! into the clock. The probe's timing is tested on the clock's own time (`probe_clock::tests`).

use std::task::{Context, Poll};

use libp2p::{
    futures::task::noop_waker_ref,
    swarm::{
        handler::{ConnectionEvent, DialUpgradeError},
        ConnectionHandler, StreamUpgradeError,
    },
};

use super::*;

/// A remote that does not speak ping: the handler asks once, then leaves the probe's clock with no deadline
/// (so it is never probed again nor cut; `probe_clock::tests` shows that over an hour) while the connection
/// stays kept alive and the remote's pings are still answered. No time passes.
#[test]
fn a_remote_without_ping_is_asked_once_and_stays_kept() {
    let mut handler = Handler::new(
        true,
        Some(Probe::new(Duration::from_secs(3), Duration::from_secs(1))),
    );
    let mut cx = Context::from_waker(noop_waker_ref());
    assert!(
        matches!(
            handler.poll(&mut cx),
            Poll::Ready(ConnectionHandlerEvent::OutboundSubstreamRequest { .. })
        ),
        "the first probe asks for a stream at once"
    );
    handler.on_connection_event(ConnectionEvent::DialUpgradeError(DialUpgradeError {
        info: (),
        error: StreamUpgradeError::NegotiationFailed,
    }));
    assert!(handler.poll(&mut cx).is_pending(), "nothing more to do");
    let clock = &handler.prober.as_ref().expect("a probe").clock;
    assert_eq!(clock.poll_timeout(), None, "never probed again, never cut");
    assert!(handler.connection_keep_alive(), "still kept alive");
    assert!(
        matches!(handler.listen_protocol().upgrade(), Either::Left(_)),
        "the remote's pings still answered"
    );
}

/// A peer identify reported on before the keeper kept it (a discovered relay, or `add_relay` for a connected
/// peer): once kept, the handler says again what identify said, so the keeper need not wait for a report
/// that already came.
#[test]
fn a_peer_kept_after_identify_reported_it_hears_what_identify_said() {
    let mut cx = Context::from_waker(noop_waker_ref());
    for offers_hop in [true, false] {
        let mut handler = Handler::new(false, None);
        handler.remote_protocols_added(offers_hop);
        while handler.poll(&mut cx).is_ready() {}

        handler.on_behaviour_event(FromBehaviour::Kept(true));
        let Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(report)) = handler.poll(&mut cx) else {
            panic!("no report once kept (offers HOP: {offers_hop})");
        };
        assert_eq!(
            matches!(report, ToBehaviour::HopEnabled),
            offers_hop,
            "{report:?}"
        );
        assert_eq!(
            matches!(report, ToBehaviour::HopAbsent),
            !offers_hop,
            "{report:?}"
        );
    }
}
