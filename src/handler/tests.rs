//! The handler on its own, polled on the real clock (its timer is futures-timer's).

use std::{future::poll_fn, task::Poll};

use libp2p::swarm::{
    handler::{ConnectionEvent, DialUpgradeError},
    ConnectionHandler, StreamUpgradeError,
};

use super::*;

/// A remote that does not speak ping is asked once and then left alone: never probed again, never cut, still
/// kept alive. Watched for longer than a first probe may go unanswered (twice the 5 s it waits before the
/// link's round trip is known), after which a probe that was never answered would cut the connection.
#[tokio::test]
async fn a_remote_without_ping_is_asked_once_and_never_cut() {
    let probe = Probe::new(Duration::from_millis(10), Duration::from_millis(20));
    let mut handler = Handler::new(true, Some(probe));
    let (mut requests, mut cut) = (0, false);
    let watch = poll_fn(|cx| {
        while let Poll::Ready(event) = handler.poll(cx) {
            match event {
                ConnectionHandlerEvent::OutboundSubstreamRequest { .. } => {
                    requests += 1;
                    handler.on_connection_event(ConnectionEvent::DialUpgradeError(DialUpgradeError {
                        info: (),
                        error: StreamUpgradeError::NegotiationFailed,
                    }));
                }
                ConnectionHandlerEvent::NotifyBehaviour(ToBehaviour::ProbeTimedOut) => cut = true,
                _ => {}
            }
        }
        Poll::<()>::Pending
    });
    let _ = tokio::time::timeout(Duration::from_secs(11), watch).await;
    assert_eq!(requests, 1, "asked once");
    assert!(!cut, "never cut");
    assert!(handler.connection_keep_alive(), "still kept alive");
}
