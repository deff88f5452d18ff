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

use crate::{
    config::Probe,
    probe_clock::{ProbeAction, ProbeClock},
};

/// The ping protocol's name. The probe speaks `/ipfs/ping/1.0.0` itself rather than through
/// `libp2p::ping::Behaviour`: that behaviour hides the first failure of every connection (detection would
/// take twice as long) and pings every peer, while the keeper needs to probe only its relays.
const PING_PROTOCOL: StreamProtocol = StreamProtocol::new("/ipfs/ping/1.0.0");

/// How many of the remote's ping streams are answered at once; a further one replaces the oldest, so a remote
/// that keeps opening streams cannot make the handler hold more.
const MAX_ANSWERING: usize = 2;

/// Identify's protocol. libp2p names it only behind its `identify` feature, which would build identify into
/// every user's swarm for one constant.
const IDENTIFY_PROTOCOL_NAME: StreamProtocol = StreamProtocol::new("/ipfs/id/1.0.0");

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
    /// Identify reported the remote's protocols for the first time, and HOP is not among them.
    HopAbsent,
    /// The node offers identify on this connection, so the remote's protocols will be reported: the keeper
    /// can wait for HOP before it asks for a reservation.
    IdentifyRuns,
    /// The probe got its echo after this round trip.
    ProbeAnswered(Duration),
    /// The probe got no answer for twice its timeout: the connection is silent and should be closed.
    ProbeTimedOut,
}

/// What the handler hands the swarm: reports for the behaviour and requests for the probe's stream.
type Event = ConnectionHandlerEvent<ReadyUpgrade<StreamProtocol>, (), ToBehaviour>;

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

/// The handler's one timer, armed at the probe clock's deadline and re-armed only when that moves: each
/// arming wakes futures-timer's thread, and that is most of what an idle probe costs (BENCHMARKS.md, CPU per
/// probe).
#[derive(Default)]
struct Alarm {
    /// Made at the first arming, so a connection that is never probed arms nothing.
    delay: Option<Delay>,
    /// The deadline `delay` is armed at; `None` before the first and after it fired.
    armed: Option<Instant>,
}

impl Alarm {
    /// Ready once `at` passed; a deadline that passed already needs no timer.
    fn poll(&mut self, at: Instant, cx: &mut Context<'_>) -> Poll<()> {
        if self.armed != Some(at) {
            let wait = at.saturating_duration_since(Instant::now());
            if wait.is_zero() {
                self.armed = None;
                return Poll::Ready(());
            }
            match &mut self.delay {
                Some(delay) => delay.reset(wait),
                None => self.delay = Some(Delay::new(wait)),
            }
            self.armed = Some(at);
        }
        let fired = self
            .delay
            .as_mut()
            .map_or(Poll::Pending, |delay| delay.poll_unpin(cx));
        if fired.is_ready() {
            self.armed = None;
        }
        fired
    }
}

/// The probe's side of a connection: the clock says when to probe and when the link is silent, this opens
/// the stream, sends the pings and reads their answers.
struct Prober {
    clock: ProbeClock,
    outbound: Outbound,
    alarm: Alarm,
}

impl Prober {
    fn new(probe: Probe) -> Self {
        Self {
            clock: ProbeClock::new(probe),
            outbound: Outbound::Closed,
            alarm: Alarm::default(),
        }
    }

    /// Watches the connection or stops; a stopped probe leaves no ping behind.
    fn set_on(&mut self, on: bool) {
        if on {
            self.clock.turn_on(Instant::now());
            return;
        }
        self.clock.turn_off();
        // A ping left unpolled would come back with the whole time as its round trip.
        if let Outbound::Pinging { .. } = self.outbound {
            self.outbound = Outbound::Closed;
        }
    }

    /// Moves the probe on; true if it did, and maybe queued an event.
    fn poll(&mut self, cx: &mut Context<'_>, events: &mut VecDeque<Event>) -> bool {
        self.clock.is_running() && (self.poll_ping(cx, events) || self.poll_alarm(cx, events))
    }

    /// Reads the answer to the ping under way; true if it came.
    fn poll_ping(&mut self, cx: &mut Context<'_>, events: &mut VecDeque<Event>) -> bool {
        let Outbound::Pinging { ping, fresh } = &mut self.outbound else {
            return false;
        };
        let fresh = *fresh;
        let Poll::Ready(result) = ping.poll_unpin(cx) else {
            return false;
        };
        match result {
            Ok((stream, rtt)) => {
                self.outbound = Outbound::Idle(stream);
                self.clock.answered(rtt, Instant::now());
                events.push_back(ConnectionHandlerEvent::NotifyBehaviour(
                    ToBehaviour::ProbeAnswered(rtt),
                ));
            }
            // A stream that sat idle may have been dropped long ago (libp2p-ping's responder drops the older of
            // two streams): that says nothing of the link now, so the probe asks on a new one.
            Err(error) if !fresh => {
                tracing::debug!(%error, "the probe's idle stream was closed; probing on a new one");
                events.push_back(self.open_stream());
            }
            Err(error) => {
                // A reset of a stream opened for this probe is an answer too.
                tracing::debug!(%error, "probe stream failed; the remote answered, so the link is alive");
                self.outbound = Outbound::Closed;
                self.clock.stream_failed(Instant::now());
            }
        }
        true
    }

    /// Hands the clock the time once its deadline passed and does what it asks; true if the deadline passed.
    fn poll_alarm(&mut self, cx: &mut Context<'_>, events: &mut VecDeque<Event>) -> bool {
        let Some(at) = self.clock.poll_timeout() else {
            return false;
        };
        if self.alarm.poll(at, cx).is_pending() {
            return false;
        }
        match self.clock.handle_timeout(Instant::now()) {
            Some(ProbeAction::Send) => self.send_probe(events),
            Some(ProbeAction::Silent) => events.push_back(ConnectionHandlerEvent::NotifyBehaviour(
                ToBehaviour::ProbeTimedOut,
            )),
            None => {}
        }
        true
    }

    /// Sends a probe: a ping on the open stream, or a stream to ping on.
    fn send_probe(&mut self, events: &mut VecDeque<Event>) {
        match std::mem::replace(&mut self.outbound, Outbound::Closed) {
            Outbound::Idle(stream) => {
                self.outbound = Outbound::Pinging {
                    ping: ping(stream).boxed(),
                    fresh: false,
                }
            }
            Outbound::Closed => events.push_back(self.open_stream()),
            busy @ (Outbound::Opening | Outbound::Pinging { .. }) => self.outbound = busy,
        }
    }

    /// Asks for a new ping stream, for the probe under way.
    fn open_stream(&mut self) -> Event {
        self.outbound = Outbound::Opening;
        // The negotiation may take as long as the probe may wait in all.
        ConnectionHandlerEvent::OutboundSubstreamRequest {
            protocol: SubstreamProtocol::new(ReadyUpgrade::new(PING_PROTOCOL), ())
                .with_timeout(self.clock.timeout() * 2),
        }
    }

    /// The probe's stream is open: it carries the probe out at once, or waits for the next.
    fn opened(&mut self, mut stream: Stream) {
        // The probe must not keep a connection alive that the keeper does not keep.
        stream.ignore_for_keep_alive();
        self.outbound = if self.clock.awaits_answer() {
            Outbound::Pinging {
                ping: ping(stream).boxed(),
                fresh: true,
            }
        } else {
            Outbound::Idle(stream)
        };
    }

    /// The probe's stream did not open: why tells whether the remote answered, cannot, or was not heard.
    fn open_failed(&mut self, error: StreamUpgradeError<std::convert::Infallible>) {
        self.outbound = Outbound::Closed;
        match error {
            StreamUpgradeError::NegotiationFailed => {
                tracing::debug!("the remote does not speak ping; not probing this connection");
                self.clock.unsupported();
            }
            // The stream could not even be negotiated in time: leave the verdict to the probe's clock, whose
            // deadline is as far.
            StreamUpgradeError::Timeout => {}
            StreamUpgradeError::Io(error) => {
                tracing::debug!(%error, "probe stream failed to open");
                self.clock.stream_failed(Instant::now());
            }
            StreamUpgradeError::Apply(never) => libp2p::core::util::unreachable(never),
        }
    }
}

/// Connection handler of [`RelayKeeper`](crate::RelayKeeper).
pub struct Handler {
    /// Keep the connection alive: the keeper's relay connections are, a [`LinkProbe`](crate::LinkProbe)'s not.
    keep_alive: bool,
    /// The probe; `None` when the keeper's config turns it off.
    prober: Option<Prober>,
    /// The remote's ping streams being answered, oldest first. More than one, unlike libp2p-ping's responder,
    /// which keeps one and drops the older: the remote's probe and its application's `ping::Behaviour` each
    /// keep a stream open and would otherwise evict each other on every reopen.
    answering: VecDeque<Answering>,
    /// Whether the remote offers the relay HOP protocol; `None` until identify reported its protocols. One
    /// flag rather than libp2p's `SupportedProtocols`, which keeps a set of every protocol the remote offers on
    /// every connection, when the keeper needs to know of one; the change that adds or removes it is what the
    /// handler reports either way.
    hop: Option<bool>,
    /// What `poll` hands out next, oldest first.
    events: VecDeque<Event>,
}

impl Handler {
    /// A handler for the keeper, which keeps and probes the connection while it keeps the relay.
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
            keep_alive: false,
            prober: probe.map(Prober::new),
            answering: VecDeque::new(),
            hop: None,
            events: VecDeque::new(),
        }
    }

    fn notify(&mut self, report: ToBehaviour) {
        self.events
            .push_back(ConnectionHandlerEvent::NotifyBehaviour(report));
    }

    /// Identify reported protocols the remote offers now: the first report says whether HOP is among them,
    /// later ones only when HOP appears.
    fn remote_protocols_added(&mut self, offers_hop: bool) {
        match (self.hop, offers_hop) {
            (Some(true), _) => {}
            (_, true) => {
                self.hop = Some(true);
                self.notify(ToBehaviour::HopEnabled);
            }
            (None, false) => {
                self.hop = Some(false);
                self.notify(ToBehaviour::HopAbsent);
            }
            (Some(false), false) => {}
        }
    }

    fn set_kept(&mut self, kept: bool) {
        self.keep_alive = kept;
        self.set_probing(kept);
    }

    fn set_probing(&mut self, probing: bool) {
        if let Some(prober) = &mut self.prober {
            prober.set_on(probing);
        }
    }

    /// Echoes the remote's pings; true if one was echoed, as its stream then waits for the next.
    fn poll_answering(&mut self, cx: &mut Context<'_>) -> bool {
        let (mut answered, mut heard_us) = (false, false);
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
        if let Some(prober) = self.prober.as_mut().filter(|_| heard_us) {
            prober.clock.vouched(Instant::now());
        }
        answered
    }

    fn answer_on(&mut self, mut stream: Stream) {
        stream.ignore_for_keep_alive();
        if self.answering.len() == MAX_ANSWERING {
            self.answering.pop_front();
        }
        self.answering.push_back(Answering::new(stream, false));
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
        let probing = self.prober.as_ref().is_some_and(|prober| prober.clock.is_on());
        let upgrade = if self.keep_alive || probing {
            Either::Left(ReadyUpgrade::new(PING_PROTOCOL))
        } else {
            Either::Right(DeniedUpgrade)
        };
        SubstreamProtocol::new(upgrade, ())
    }

    fn on_behaviour_event(&mut self, event: Self::FromBehaviour) {
        match event {
            FromBehaviour::Kept(kept) => {
                self.set_kept(kept);
                // The keeper starts keeping a relay it may have heard from before: tell it what identify said.
                match (kept, self.hop) {
                    (true, Some(true)) => self.notify(ToBehaviour::HopEnabled),
                    (true, Some(false)) => self.notify(ToBehaviour::HopAbsent),
                    (true, None) | (false, _) => {}
                }
            }
            FromBehaviour::ProbeNow => {
                if let Some(prober) = &mut self.prober {
                    prober.clock.probe_now(Instant::now());
                }
            }
        }
    }

    fn connection_keep_alive(&self) -> bool {
        self.keep_alive
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        loop {
            if let Some(event) = self.events.pop_front() {
                return Poll::Ready(event);
            }
            // The answers re-armed go on being polled.
            let progress = self.poll_answering(cx)
                || self
                    .prober
                    .as_mut()
                    .is_some_and(|prober| prober.poll(cx, &mut self.events));
            if !progress {
                return Poll::Pending;
            }
        }
    }

    fn on_connection_event(&mut self, event: ConnectionEvent<Self::InboundProtocol, Self::OutboundProtocol>) {
        match event {
            ConnectionEvent::RemoteProtocolsChange(ProtocolsChange::Added(added)) => {
                let offers_hop = added.clone().any(|p| *p == HOP_PROTOCOL_NAME);
                self.remote_protocols_added(offers_hop);
            }
            ConnectionEvent::RemoteProtocolsChange(ProtocolsChange::Removed(removed))
                if self.hop == Some(true) && removed.clone().any(|p| *p == HOP_PROTOCOL_NAME) =>
            {
                self.hop = Some(false);
                self.notify(ToBehaviour::HopDisabled);
            }
            ConnectionEvent::LocalProtocolsChange(ProtocolsChange::Added(added))
                if added.clone().any(|p| *p == IDENTIFY_PROTOCOL_NAME) =>
            {
                self.notify(ToBehaviour::IdentifyRuns);
            }
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound { protocol, .. }) => {
                if let Some(prober) = &mut self.prober {
                    prober.opened(protocol);
                }
            }
            ConnectionEvent::DialUpgradeError(DialUpgradeError { error, .. }) => {
                if let Some(prober) = &mut self.prober {
                    prober.open_failed(error);
                }
            }
            // The negotiated output is the futures crate's `Either`, though the upgrade is `either`'s.
            ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound { protocol, .. }) => {
                match protocol {
                    libp2p::futures::future::Either::Left(stream) => self.answer_on(stream),
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
