//! The keeper's connection handler: keeps direct connections to kept relays alive, probes that they still
//! carry traffic, and reports when a relay starts offering the HOP protocol.

use std::{
    collections::VecDeque,
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

use crate::{config::Probe, rtt::RttEstimator};

/// The ping protocol's name. The probe speaks `/ipfs/ping/1.0.0` itself rather than through
/// `libp2p::ping::Behaviour`: that behaviour hides the first failure of every connection (detection would
/// take twice as long) and pings every peer, while the keeper needs to probe only its relays.
const PING_PROTOCOL: StreamProtocol = StreamProtocol::new("/ipfs/ping/1.0.0");

/// How many of the remote's ping streams are answered at once; a further one replaces the oldest, so a remote
/// that keeps opening streams cannot make the handler hold more.
const MAX_ANSWERING: usize = 2;

/// The size of a ping payload, as the ping protocol defines it.
const PING_SIZE: usize = 32;

/// Tells the handler of a relay connection whether the keeper keeps that relay.
#[derive(Debug, Clone, Copy)]
pub enum FromBehaviour {
    /// The relay is kept (`true`): keep the connection alive and probe it. `false`: let the swarm's idle
    /// timeout apply again and stop probing.
    Kept(bool),
    /// Probe now, unless a probe is under way.
    ProbeNow,
}

/// Reports from a connection to the keeper.
#[derive(Debug, Clone, Copy)]
pub enum ToBehaviour {
    /// The remote started offering the relay HOP protocol, so a reservation request can succeed now.
    HopEnabled,
    /// The remote stopped offering the relay HOP protocol.
    HopDisabled,
    /// The probe got its echo after this round trip.
    ProbeAnswered(Duration),
    /// The probe got no answer for twice its timeout: the connection is silent and should be closed.
    ProbeTimedOut,
}

/// The probe's outbound ping stream: opened once, reused for every probe, reopened only when it fails.
enum Outbound {
    /// No stream: the next probe opens one.
    Closed,
    /// A stream is being opened and negotiated.
    Opening,
    /// Open, between probes.
    Idle(Stream),
    /// A ping is on its way on the stream; `fresh`: the stream was opened for this probe.
    Pinging {
        ping: BoxFuture<'static, io::Result<(Stream, Duration)>>,
        fresh: bool,
    },
}

/// A probe waiting for its answer.
struct Outstanding {
    /// One timeout passed without an answer: when the timer fires again, the link is silent.
    late: bool,
}

/// One of the remote's ping streams, waiting for a ping to echo; the stream comes back for the next, as
/// libp2p-ping answers.
struct Answering {
    echo: BoxFuture<'static, io::Result<Stream>>,
    /// This stream carried an echo back before: the remote pings again only once that echo arrived.
    echoed_before: bool,
}

impl Answering {
    fn new(stream: Stream, echoed_before: bool) -> Self {
        Self {
            echo: answer(stream).boxed(),
            echoed_before,
        }
    }
}

/// Connection handler of [`RelayKeeper`](crate::RelayKeeper).
pub struct Handler {
    /// Probe the connection; for the keeper, while the relay is kept.
    probing: bool,
    /// Keep the connection alive: the keeper's relay connections are, a [`LinkProbe`](crate::LinkProbe)'s not.
    keep_alive: bool,
    probe: Option<Probe>,
    rtt: RttEstimator,
    outbound: Outbound,
    /// When the probe under way becomes late, then silent; with none under way, when the next probe is due
    /// (`interval` after the remote was last heard from). One timer for both: each arming of a timer wakes
    /// futures-timer's thread, and that is most of what an idle probe costs (BENCHMARKS.md, CPU per probe).
    timer: Delay,
    /// The probe sent and not answered yet.
    outstanding: Option<Outstanding>,
    /// The remote answered a ping stream with "unsupported"; it is never probed again.
    ping_unsupported: bool,
    /// The remote's ping streams being answered, oldest first. More than one, unlike libp2p-ping's responder,
    /// which keeps one and drops the older: the remote's probe and its application's `ping::Behaviour` each
    /// keep a stream open and would otherwise evict each other on every reopen.
    answering: VecDeque<Answering>,
    hop: bool,
    /// Reports for the behaviour, oldest first.
    reports: VecDeque<ToBehaviour>,
}

impl Handler {
    pub(crate) fn new(kept: bool, probe: Option<Probe>) -> Self {
        let mut handler = Self::unkept(probe);
        handler.set_kept(kept);
        handler
    }

    /// A handler that probes the connection and answers its pings but does not keep it alive, for
    /// [`LinkProbe`](crate::LinkProbe).
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
            rtt: RttEstimator::default(),
            outbound: Outbound::Closed,
            timer: Delay::new(probe.map_or(Duration::ZERO, |probe| probe.interval)),
            outstanding: None,
            ping_unsupported: false,
            answering: VecDeque::new(),
            hop: false,
            reports: VecDeque::new(),
        }
    }

    fn set_kept(&mut self, kept: bool) {
        self.keep_alive = kept;
        self.set_probing(kept);
    }

    fn set_probing(&mut self, probing: bool) {
        if probing && !self.probing {
            self.outstanding = None;
            // The first probe goes out at once: until it is answered the timeout knows nothing of the link
            // (5 s), so a death in the first interval would take that long to see.
            self.timer.reset(Duration::ZERO);
        }
        if !probing {
            self.outstanding = None;
            // A ping left unpolled would come back with the whole time as its round trip.
            if let Outbound::Pinging { .. } = self.outbound {
                self.outbound = Outbound::Closed;
            }
        }
        self.probing = probing;
    }

    /// Whether the probe runs on this connection.
    fn probe_on(&self) -> Option<Probe> {
        self.probe.filter(|_| self.probing && !self.ping_unsupported)
    }

    /// The remote answered what this end sent (an echo, a reset of the probe's stream): the probe under way
    /// is answered and the next one is due a whole interval from now.
    fn heard(&mut self) {
        self.outstanding = None;
        self.postpone_probe();
    }

    /// The remote pinged again on a stream this end had echoed on, so that echo reached it: the link carried
    /// traffic both ways lately, and the next probe is due a whole interval from now (when both ends probe,
    /// mostly the one with the shorter interval pays). A probe under way stays unanswered, as that echo may
    /// have left before it. A remote's first ping on a stream counts for nothing: it shows only that the
    /// remote's packets arrive, and a link that carries them one way only (a broken uplink, a one-way black
    /// hole) is as dead to a relay client as a silent one.
    fn remote_heard_us(&mut self) {
        if self.outstanding.is_none() {
            self.postpone_probe();
        }
    }

    fn postpone_probe(&mut self) {
        if let Some(probe) = self.probe {
            self.timer.reset(probe.interval);
        }
    }

    /// The timeout of a probe sent now.
    fn timeout(&self) -> Duration {
        self.rtt
            .timeout(self.probe.map_or(Duration::ZERO, |probe| probe.timeout))
    }

    /// Starts a probe now: a ping on the open stream, or a stream to ping on.
    fn start_probe(
        &mut self,
    ) -> Option<ConnectionHandlerEvent<ReadyUpgrade<StreamProtocol>, (), ToBehaviour>> {
        self.timer.reset(self.timeout());
        self.outstanding = Some(Outstanding { late: false });
        match std::mem::replace(&mut self.outbound, Outbound::Closed) {
            Outbound::Idle(stream) => {
                self.outbound = Outbound::Pinging {
                    ping: ping(stream).boxed(),
                    fresh: false,
                };
                None
            }
            Outbound::Closed => Some(self.open_stream()),
            busy @ (Outbound::Opening | Outbound::Pinging { .. }) => {
                self.outbound = busy;
                None
            }
        }
    }

    /// Asks for a new ping stream, for the probe under way.
    fn open_stream(&mut self) -> ConnectionHandlerEvent<ReadyUpgrade<StreamProtocol>, (), ToBehaviour> {
        self.outbound = Outbound::Opening;
        // The negotiation may take as long as the probe may wait in all.
        ConnectionHandlerEvent::OutboundSubstreamRequest {
            protocol: SubstreamProtocol::new(ReadyUpgrade::new(PING_PROTOCOL), ())
                .with_timeout(self.timeout() * 2),
        }
    }
}

impl libp2p::swarm::ConnectionHandler for Handler {
    type FromBehaviour = FromBehaviour;
    type ToBehaviour = ToBehaviour;
    type InboundProtocol = Either<ReadyUpgrade<StreamProtocol>, DeniedUpgrade>;
    type OutboundProtocol = ReadyUpgrade<StreamProtocol>;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = ();

    /// On a kept relay's connection (and on every connection of a [`LinkProbe`](crate::LinkProbe)) the
    /// handler answers pings itself, and each further ping on a stream it echoed on shows the link works both
    /// ways, which moves its own next probe back. A relay's `ping::Behaviour` that found this node without
    /// ping stops answering pings too (libp2p-ping 0.48 goes inactive both ways), which would starve the
    /// probe; answering keeps it active. Only the first handler of a derived behaviour that offers ping gets
    /// the remote's pings, so the keeper (and `LinkProbe`) go before `ping::Behaviour` in the struct; in the
    /// other order both still work, but the remote's pings no longer spare this end's probes.
    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol> {
        let upgrade = if self.keep_alive || self.probing {
            Either::Left(ReadyUpgrade::new(PING_PROTOCOL))
        } else {
            Either::Right(DeniedUpgrade)
        };
        SubstreamProtocol::new(upgrade, ())
    }

    fn on_behaviour_event(&mut self, event: Self::FromBehaviour) {
        match event {
            FromBehaviour::Kept(kept) => self.set_kept(kept),
            FromBehaviour::ProbeNow if self.outstanding.is_none() => self.timer.reset(Duration::ZERO),
            FromBehaviour::ProbeNow => {}
        }
    }

    fn connection_keep_alive(&self) -> bool {
        self.keep_alive
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Self::OutboundProtocol, (), Self::ToBehaviour>> {
        loop {
            if let Some(report) = self.reports.pop_front() {
                return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(report));
            }
            let mut answered = false;
            let mut heard_us = false;
            self.answering
                .retain_mut(|answering| match answering.echo.poll_unpin(cx) {
                    Poll::Ready(Ok(stream)) => {
                        answered = true;
                        heard_us |= answering.echoed_before;
                        *answering = Answering::new(stream, true);
                        true
                    }
                    Poll::Ready(Err(_)) => false,
                    Poll::Pending => true,
                });
            if answered {
                // The answers re-armed go on being polled.
                if heard_us && self.probe_on().is_some() {
                    self.remote_heard_us();
                }
                continue;
            }
            if self.probe_on().is_none() {
                return Poll::Pending;
            }
            if let Outbound::Pinging { ping: pinging, fresh } = &mut self.outbound {
                let fresh = *fresh;
                match pinging.poll_unpin(cx) {
                    Poll::Ready(Ok((stream, rtt))) => {
                        self.outbound = Outbound::Idle(stream);
                        self.rtt.sample(rtt);
                        self.heard();
                        self.reports.push_back(ToBehaviour::ProbeAnswered(rtt));
                        continue;
                    }
                    // A stream that sat idle may have been dropped long ago (libp2p-ping's responder drops the
                    // older of two streams): that says nothing of the link now, so the probe asks on a new one.
                    Poll::Ready(Err(error)) if !fresh => {
                        tracing::debug!(%error, "the probe's idle stream was closed; probing on a new one");
                        return Poll::Ready(self.open_stream());
                    }
                    Poll::Ready(Err(error)) => {
                        // A reset of a stream opened for this probe is an answer too.
                        tracing::debug!(%error, "probe stream failed; the remote answered, so the link is alive");
                        self.outbound = Outbound::Closed;
                        self.heard();
                        continue;
                    }
                    Poll::Pending => {}
                }
            }
            if self.timer.poll_unpin(cx).is_pending() {
                return Poll::Pending;
            }
            let timeout = self.timeout();
            match &mut self.outstanding {
                Some(Outstanding { late: true }) => {
                    self.outstanding = None;
                    self.probing = false;
                    return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(
                        ToBehaviour::ProbeTimedOut,
                    ));
                }
                Some(outstanding) => {
                    // One late answer is no death: wait another timeout before calling the link silent.
                    tracing::debug!(?timeout, "probe late; waiting one more timeout");
                    outstanding.late = true;
                    self.timer.reset(timeout);
                }
                None => {
                    if let Some(request) = self.start_probe() {
                        return Poll::Ready(request);
                    }
                }
            }
        }
    }

    fn on_connection_event(&mut self, event: ConnectionEvent<Self::InboundProtocol, Self::OutboundProtocol>) {
        match event {
            ConnectionEvent::RemoteProtocolsChange(ProtocolsChange::Added(added))
                if !self.hop && added.clone().any(|p| *p == HOP_PROTOCOL_NAME) =>
            {
                self.hop = true;
                self.reports.push_back(ToBehaviour::HopEnabled);
            }
            ConnectionEvent::RemoteProtocolsChange(ProtocolsChange::Removed(removed))
                if self.hop && removed.clone().any(|p| *p == HOP_PROTOCOL_NAME) =>
            {
                self.hop = false;
                self.reports.push_back(ToBehaviour::HopDisabled);
            }
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound {
                protocol: mut stream,
                ..
            }) => {
                // The probe must not keep a connection alive that the keeper does not keep.
                stream.ignore_for_keep_alive();
                self.outbound = if self.outstanding.is_some() {
                    Outbound::Pinging {
                        ping: ping(stream).boxed(),
                        fresh: true,
                    }
                } else {
                    Outbound::Idle(stream)
                };
            }
            ConnectionEvent::DialUpgradeError(DialUpgradeError { error, .. }) => match error {
                StreamUpgradeError::NegotiationFailed => {
                    tracing::debug!("the remote does not speak ping; not probing this connection");
                    self.ping_unsupported = true;
                    self.outbound = Outbound::Closed;
                    self.outstanding = None;
                }
                // The stream could not even be negotiated in time: leave the verdict to the probe's timer,
                // which ran as long.
                StreamUpgradeError::Timeout => self.outbound = Outbound::Closed,
                StreamUpgradeError::Io(error) => {
                    tracing::debug!(%error, "probe stream failed to open");
                    self.outbound = Outbound::Closed;
                    self.heard();
                }
                StreamUpgradeError::Apply(never) => libp2p::core::util::unreachable(never),
            },
            ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound { protocol, .. }) => {
                match protocol {
                    // The negotiated output is the futures crate's `Either`, though the upgrade is `either`'s.
                    libp2p::futures::future::Either::Left(mut stream) => {
                        stream.ignore_for_keep_alive();
                        if self.answering.len() == MAX_ANSWERING {
                            self.answering.pop_front();
                        }
                        self.answering.push_back(Answering::new(stream, false));
                    }
                    libp2p::futures::future::Either::Right(never) => libp2p::core::util::unreachable(never),
                }
            }
            _ => {}
        }
    }
}

/// One ping on the probe's stream: sends a random payload and waits for it to come back; the stream stays
/// open for the next probe.
async fn ping(mut stream: Stream) -> io::Result<(Stream, Duration)> {
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
    Ok((stream, rtt))
}

/// Answers one of the remote's pings on `stream`: the payload goes straight back, and the stream is handed
/// back for the next.
async fn answer(mut stream: Stream) -> io::Result<Stream> {
    let mut payload = [0u8; PING_SIZE];
    stream.read_exact(&mut payload).await?;
    stream.write_all(&payload).await?;
    stream.flush().await?;
    Ok(stream)
}

#[cfg(test)]
mod tests;
