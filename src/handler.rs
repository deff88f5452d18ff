//! The keeper's connection handler: keeps direct connections to kept relays alive, probes that they still
//! carry traffic, and reports when a relay starts offering the HOP protocol.

use std::{
    io,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use either::Either;
use futures_timer::Delay;
use libp2p::{
    core::upgrade::{DeniedUpgrade, ReadyUpgrade},
    futures::{future::BoxFuture, AsyncReadExt, AsyncWriteExt, FutureExt},
    relay::HOP_PROTOCOL_NAME,
    swarm::{
        handler::{
            ConnectionEvent, DialUpgradeError, FullyNegotiatedInbound, FullyNegotiatedOutbound,
            ProtocolsChange,
        },
        ConnectionHandlerEvent, StreamProtocol, StreamUpgradeError, SubstreamProtocol,
    },
    Stream,
};

use crate::config::Probe;

/// The ping protocol's name. The probe speaks `/ipfs/ping/1.0.0` itself rather than through
/// `libp2p::ping::Behaviour`: that behaviour hides the first failure of every connection (detection would
/// take twice as long) and pings every peer, while the keeper needs to probe only its relays.
const PING_PROTOCOL: StreamProtocol = StreamProtocol::new("/ipfs/ping/1.0.0");

/// identify's protocol: a swarm that runs identify offers it on every connection.
const IDENTIFY_PROTOCOL: &str = "/ipfs/id/1.0.0";

/// The size of a ping payload, as the ping protocol defines it.
const PING_SIZE: usize = 32;

/// Tells the handler of a relay connection whether the keeper keeps that relay.
#[derive(Debug, Clone, Copy)]
pub enum FromBehaviour {
    /// The relay is kept (`true`): keep the connection alive and probe it. `false`: let the swarm's idle
    /// timeout apply again and stop probing.
    Kept(bool),
}

/// Reports from a connection to the keeper.
#[derive(Debug, Clone, Copy)]
pub enum ToBehaviour {
    /// The remote started offering the relay HOP protocol, so a reservation request can succeed now.
    HopEnabled,
    /// The remote stopped offering the relay HOP protocol.
    HopDisabled,
    /// This node runs identify, so a relay learns its external address from this connection.
    IdentifyRuns,
    /// The probe got its echo after this round trip.
    ProbeAnswered(Duration),
    /// The probe got no answer in time: the connection is silent and should be closed.
    ProbeTimedOut,
}

/// Where the liveness probe of one connection is.
enum ProbeState {
    /// Not probing: the relay is not kept, the probe is off, or the remote does not speak ping.
    Off,
    /// The next probe starts when the delay elapses.
    Idle(Delay),
    /// A ping stream is being opened; the probe fails when `timeout` elapses first.
    Opening { timeout: Delay },
    /// The ping is on its way; the probe fails when `timeout` elapses before the echo.
    Echoing {
        timeout: Delay,
        echo: BoxFuture<'static, io::Result<Duration>>,
    },
}

/// Connection handler of [`RelayKeeper`](crate::RelayKeeper).
pub struct Handler {
    /// Probe the connection; for the keeper, while the relay is kept.
    probing: bool,
    /// Keep the connection alive: the keeper's relay connections are, a [`LinkProbe`](crate::LinkProbe)'s not.
    keep_alive: bool,
    probe: Option<Probe>,
    probe_state: ProbeState,
    /// The remote answered a ping stream with "unsupported"; it is never probed again.
    ping_unsupported: bool,
    /// The echo of the remote's ping on a kept relay's connection; one at a time, as libp2p-ping answers.
    answering: Option<BoxFuture<'static, io::Result<()>>>,
    hop: bool,
    hop_enabled: bool,
    /// The remote stopped offering HOP; to be reported to the behaviour.
    hop_disabled: bool,
    /// This swarm offers identify; to be reported to the behaviour.
    report_identify: bool,
}

impl Handler {
    pub(crate) fn new(kept: bool, probe: Option<Probe>) -> Self {
        let mut handler = Self::unkept(probe);
        handler.set_kept(kept);
        handler
    }

    /// A handler that probes the connection but does not keep it alive, for [`LinkProbe`](crate::LinkProbe).
    pub(crate) fn probe_only(probe: Probe) -> Self {
        let mut handler = Self::unkept(Some(probe));
        handler.set_probing(true);
        handler
    }

    fn unkept(probe: Option<Probe>) -> Self {
        Self {
            probing: false,
            keep_alive: false,
            probe,
            probe_state: ProbeState::Off,
            ping_unsupported: false,
            answering: None,
            hop: false,
            hop_enabled: false,
            hop_disabled: false,
            report_identify: false,
        }
    }

    fn set_kept(&mut self, kept: bool) {
        self.keep_alive = kept;
        self.set_probing(kept);
    }

    fn set_probing(&mut self, probing: bool) {
        self.probing = probing;
        match (probing, self.probe, &self.probe_state) {
            (true, Some(probe), ProbeState::Off) if !self.ping_unsupported => {
                self.probe_state = ProbeState::Idle(Delay::new(probe.interval))
            }
            (false, ..) => self.probe_state = ProbeState::Off,
            _ => {}
        }
    }

    /// Schedules the next probe after an answer (or a reset, which proves the remote alive just as well).
    fn next_probe(&mut self) {
        self.probe_state = match self.probe {
            Some(probe) if self.probing => ProbeState::Idle(Delay::new(probe.interval)),
            _ => ProbeState::Off,
        };
    }
}

impl libp2p::swarm::ConnectionHandler for Handler {
    type FromBehaviour = FromBehaviour;
    type ToBehaviour = ToBehaviour;
    type InboundProtocol = Either<ReadyUpgrade<StreamProtocol>, DeniedUpgrade>;
    type OutboundProtocol = ReadyUpgrade<StreamProtocol>;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = ();

    /// On a kept relay's connection the keeper answers pings itself. A relay's `ping::Behaviour` that found
    /// this node without ping stops answering pings too (libp2p-ping 0.48 goes inactive both ways), which
    /// would starve the probe; answering keeps it active, whether the application runs ping or not.
    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol> {
        let upgrade = if self.keep_alive {
            Either::Left(ReadyUpgrade::new(PING_PROTOCOL))
        } else {
            Either::Right(DeniedUpgrade)
        };
        SubstreamProtocol::new(upgrade, ())
    }

    fn on_behaviour_event(&mut self, event: Self::FromBehaviour) {
        match event {
            FromBehaviour::Kept(kept) => self.set_kept(kept),
        }
    }

    fn connection_keep_alive(&self) -> bool {
        self.keep_alive
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Self::OutboundProtocol, (), Self::ToBehaviour>> {
        if std::mem::take(&mut self.hop_enabled) {
            return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(ToBehaviour::HopEnabled));
        }
        if std::mem::take(&mut self.hop_disabled) {
            return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(ToBehaviour::HopDisabled));
        }
        if std::mem::take(&mut self.report_identify) {
            return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(ToBehaviour::IdentifyRuns));
        }
        if let Some(answering) = &mut self.answering {
            if answering.poll_unpin(cx).is_ready() {
                self.answering = None;
            }
        }
        let timeout = self.probe.map_or(Duration::ZERO, |probe| probe.timeout);
        match &mut self.probe_state {
            ProbeState::Off => {}
            ProbeState::Idle(delay) => {
                if delay.poll_unpin(cx).is_ready() {
                    let mut timer = Delay::new(timeout);
                    // Registers the timer's waker, so its expiry polls the handler again.
                    let _ = timer.poll_unpin(cx);
                    self.probe_state = ProbeState::Opening { timeout: timer };
                    return Poll::Ready(ConnectionHandlerEvent::OutboundSubstreamRequest {
                        protocol: SubstreamProtocol::new(ReadyUpgrade::new(PING_PROTOCOL), ())
                            .with_timeout(timeout),
                    });
                }
            }
            ProbeState::Opening { timeout } => {
                if timeout.poll_unpin(cx).is_ready() {
                    self.probe_state = ProbeState::Off;
                    return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(
                        ToBehaviour::ProbeTimedOut,
                    ));
                }
            }
            ProbeState::Echoing { timeout, echo } => match echo.poll_unpin(cx) {
                Poll::Ready(Ok(rtt)) => {
                    self.next_probe();
                    return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(
                        ToBehaviour::ProbeAnswered(rtt),
                    ));
                }
                Poll::Ready(Err(error)) => {
                    tracing::debug!(%error, "probe stream failed; the remote answered, so the link is alive");
                    self.next_probe();
                    return self.poll(cx);
                }
                Poll::Pending => {
                    if timeout.poll_unpin(cx).is_ready() {
                        self.probe_state = ProbeState::Off;
                        return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(
                            ToBehaviour::ProbeTimedOut,
                        ));
                    }
                }
            },
        }
        Poll::Pending
    }

    fn on_connection_event(&mut self, event: ConnectionEvent<Self::InboundProtocol, Self::OutboundProtocol>) {
        match event {
            ConnectionEvent::RemoteProtocolsChange(ProtocolsChange::Added(added))
                if !self.hop && added.clone().any(|p| *p == HOP_PROTOCOL_NAME) =>
            {
                self.hop = true;
                self.hop_enabled = true;
            }
            ConnectionEvent::RemoteProtocolsChange(ProtocolsChange::Removed(removed))
                if self.hop && removed.clone().any(|p| *p == HOP_PROTOCOL_NAME) =>
            {
                self.hop = false;
                self.hop_disabled = true;
            }
            ConnectionEvent::LocalProtocolsChange(ProtocolsChange::Added(added))
                if added.clone().any(|p| p.as_ref() == IDENTIFY_PROTOCOL) =>
            {
                self.report_identify = true;
            }
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound {
                protocol: mut stream,
                ..
            }) => {
                // The probe must not keep a connection alive that the keeper does not keep.
                stream.ignore_for_keep_alive();
                let state = std::mem::replace(&mut self.probe_state, ProbeState::Off);
                if let ProbeState::Opening { timeout } = state {
                    self.probe_state = ProbeState::Echoing {
                        timeout,
                        echo: echo(stream).boxed(),
                    };
                } else {
                    self.probe_state = state;
                }
            }
            ConnectionEvent::DialUpgradeError(DialUpgradeError { error, .. }) => match error {
                StreamUpgradeError::NegotiationFailed => {
                    tracing::debug!("the relay does not speak ping; not probing this connection");
                    self.ping_unsupported = true;
                    self.probe_state = ProbeState::Off;
                }
                // The stream could not even be negotiated in time: leave the verdict to the probe's timer,
                // which ran as long.
                StreamUpgradeError::Timeout => {}
                StreamUpgradeError::Io(error) => {
                    tracing::debug!(%error, "probe stream failed to open");
                    self.next_probe();
                }
                StreamUpgradeError::Apply(never) => libp2p::core::util::unreachable(never),
            },
            ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound { protocol, .. }) => {
                match protocol {
                    // The negotiated output is the futures crate's `Either`, though the upgrade is `either`'s.
                    libp2p::futures::future::Either::Left(mut stream) => {
                        stream.ignore_for_keep_alive();
                        self.answering = Some(answer(stream).boxed());
                    }
                    libp2p::futures::future::Either::Right(never) => libp2p::core::util::unreachable(never),
                }
            }
            _ => {}
        }
    }
}

/// One ping on a fresh stream: sends a random payload, waits for it to come back and closes the stream, so
/// the remote's ping responder (which serves one stream per connection) is free again for the application's.
async fn echo(mut stream: Stream) -> io::Result<Duration> {
    let payload: [u8; PING_SIZE] = rand::random();
    let sent = Instant::now();
    stream.write_all(&payload).await?;
    stream.flush().await?;
    let mut echoed = [0u8; PING_SIZE];
    stream.read_exact(&mut echoed).await?;
    let rtt = sent.elapsed();
    if echoed != payload {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "ping echo differs from the payload",
        ));
    }
    let _ = stream.close().await;
    Ok(rtt)
}

/// Answers the remote's pings on `stream` until it closes: every payload goes straight back.
async fn answer(mut stream: Stream) -> io::Result<()> {
    let mut payload = [0u8; PING_SIZE];
    loop {
        stream.read_exact(&mut payload).await?;
        stream.write_all(&payload).await?;
        stream.flush().await?;
    }
}
