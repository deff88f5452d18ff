use std::{ops::Range, time::Duration};

/// The shortest wait the keeper schedules; a base delay of zero would turn a dead relay into a busy loop.
const MIN_DELAY: Duration = Duration::from_millis(1);

/// The longest wait the keeper schedules. Larger values are clamped so that adding a wait to an
/// [`Instant`](std::time::Instant) can never overflow.
const MAX_DELAY: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Configuration of a [`RelayKeeper`](crate::RelayKeeper).
///
/// By default waits start at 5 s and double up to 60 s, with full jitter, for at most 10 retries per outage,
/// then a 10 minute cool-down and a fresh round; a relay whose host refuses connections is re-checked every
/// 2-5 s meanwhile, and a reservation that held 10 s forgives the backoff. A circuit reservation is kept on
/// every relay, a dial may take 10 s, and each relay connection not heard from for 3 s is probed, with a
/// timeout of at least 1.3 s.
///
/// ```
/// use std::time::Duration;
/// use libp2p_relay_keeper::Config;
///
/// let config = Config::default()
///     .with_base_delay(Duration::from_secs(1))
///     .with_max_delay(Duration::from_secs(30))
///     .with_max_attempts(None);
/// assert_eq!(config.backoff_bound(3), Duration::from_secs(4));
/// assert_eq!(config.backoff_bound(10), Duration::from_secs(30));
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    base_delay: Duration,
    max_delay: Duration,
    max_attempts: Option<u32>,
    jitter: bool,
    rng_seed: Option<u64>,
    reservations: bool,
    cooldown: Option<Duration>,
    dial_timeout: Option<Duration>,
    probe: Probe,
    probing: bool,
    max_reservations: Option<usize>,
    promotion_spread: Duration,
    forgive_after: Duration,
    recheck: Option<Range<Duration>>,
    limit_interval: Duration,
    discovery: bool,
    pause_while_public: Option<Duration>,
    max_known_relays: usize,
    known_relay_max_age: Duration,
}

/// How often a relay link that was not heard from is probed, unless [`Config::with_probe_interval`] says
/// otherwise: with the 1.3 s floor on the timeout a silent death on a fast link is seen within 5.6 s, for 20
/// probes a minute on one idle link (their bytes: BENCHMARKS.md, wire cost). A shorter interval would see it
/// sooner only for more bytes than a phone should spend.
const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(3);

/// The floor of the probe's adaptive timeout unless [`Config::with_probe_timeout`] says otherwise. A fast link
/// whose uplink suddenly fills (an upload on a phone or a home line: `tbf` with a 2.5 s queue and a bulk
/// upload in BENCHMARKS.md) holds the next ping for up to that queue before the timeout has seen a slow
/// answer; twice the floor must outlast it. At 0.9 s the keeper and the relay each cut such a link in every
/// measured run.
const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_millis(1300);

/// The liveness probe's timing; see [`Config::with_probe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Probe {
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
}

impl Probe {
    /// Clamps both to [1 ms, one year], so a zero never spins and no `Instant` overflows.
    pub(crate) fn new(interval: Duration, timeout: Duration) -> Self {
        Self {
            interval: interval.clamp(MIN_DELAY, MAX_DELAY),
            timeout: timeout.clamp(MIN_DELAY, MAX_DELAY),
        }
    }
}

/// The longest a dial may take unless [`Config::with_dial_timeout`] says otherwise (or the cap on the waits is
/// shorter): a live relay answers within a few round trips, and a QUIC dial to a dead one would otherwise
/// resend its handshake until libp2p-quic gives up.
const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// How many of the round trips measured to a relay its dial may take: TCP's handshake, two protocol
/// negotiations and noise's handshake are four or five; the rest is room for a link slower than measured.
const DIAL_ROUND_TRIPS: u32 = 8;

/// The window over which promotions of standby relays are spread unless [`Config::with_promotion_spread`] says
/// otherwise: long enough that a thousand nodes failing over at once arrive at a relay a few per millisecond,
/// short next to the two milliseconds a reservation takes on top of it.
const DEFAULT_PROMOTION_SPREAD: Duration = Duration::from_millis(100);

/// How many relays discovered among connected peers ([`Config::with_discovery`]) the keeper keeps as candidates
/// at a time; further ones are ignored until one leaves. Enough to refill a pool of a few slots several times
/// over, few enough that a node connected to many relays keeps no state for most of them.
pub const MAX_DISCOVERED: usize = 8;

/// How many losses in a row, each before the goal held for [`Config::with_forgive_after`], the keeper takes for
/// a crash loop's restarts and re-checks after ([`Config::with_recheck`]) although no dial was refused yet: as
/// many as the seed's retries of one outage. A relay that keeps accepting the node and dropping it soon after is
/// not restarting; past this many it waits out its counted retries only, until a dial is refused or its goal
/// holds.
pub const MAX_PRESUMED_RESTARTS: u32 = 10;

/// How much further than the monotonic clock ([`Instant`](std::time::Instant)) the wall clock
/// ([`SystemTime`](std::time::SystemTime)) must move between two polls of the keeper for it to take the machine for
/// having slept, and treat the wake-up as a network change (docs/network-changes.md). On Linux and macOS the
/// monotonic clock stops during suspend; NTP slews the wall clock by far less than this, and a wall clock that
/// steps backwards is never taken for a sleep.
pub const SLEEP_THRESHOLD: Duration = Duration::from_secs(5);

/// The least time between two of the keeper's dials of one relay made to move its live link to the node's new
/// network (docs/network-changes.md). Listen addresses change in bursts (each listener reports each address, at
/// start, on IPv6 address rotation, when container bridges come and go): one dial answers a burst, and a node
/// whose addresses keep changing does not churn its reservations. A few seconds are many bursts long and short
/// beside the liveness probe, which still catches a link that a later change broke. A move dial that fails does
/// not count: it changed nothing, so the next change may dial again. A change while the move's dial is in flight
/// dials once more: an address replaced is the old one going, then the new one coming, and the first dial may
/// have left while the node had no address.
pub const MOVE_INTERVAL: Duration = Duration::from_secs(5);

/// How long a relay must hold its goal before its backoff level is forgiven, unless [`Config::with_forgive_after`]
/// says otherwise. A crash loop keeps a relay up for a few seconds at a time (the process starts, serves until
/// it falls over again, and is restarted): 3 s up and 1 s down is the bad day's case, and those goals must not
/// be forgiven, or the loop is retried at the base rate forever. A relay that served for longer than a restart
/// cycle did serve: a rolling restart or a deploy that holds it up for 20 s must not leave its clients on the
/// waits of a crash loop.
const DEFAULT_FORGIVE_AFTER: Duration = Duration::from_secs(10);

/// How long the keeper waits before it asks a relay again that refused with `RESOURCE_LIMIT_EXCEEDED`, unless
/// [`Config::with_limit_interval`] says otherwise: rust-libp2p's relay lets a peer reserve again once every 2
/// minutes after its first 30 (an IP address every minute after 60), and asking sooner only spends the next
/// token, or is refused again.
const DEFAULT_LIMIT_INTERVAL: Duration = Duration::from_secs(120);

/// The window the waits between re-checks of a refusing relay are drawn from, unless [`Config::with_recheck`]
/// says otherwise. A refused TCP dial costs the relay nothing (its kernel answers), so looking every few seconds
/// is free until the relay listens again; the 3 s width spreads the clients of a relay that comes back over
/// seconds instead of one instant (no 100 ms holds more than 3 % of them).
const DEFAULT_RECHECK: Range<Duration> = Duration::from_secs(2)..Duration::from_secs(5);

/// How long a relay that gave up after [`Config::with_max_attempts`] is left alone before a fresh round of
/// retries, unless [`Config::with_cooldown`] says otherwise: go-libp2p's autorelay, rust-libp2p's autorelay
/// proposal and iroh never give up for good, and an unattended node must not stay unreachable because its
/// relay had a bad quarter of an hour; ten minutes keeps the load a dead relay sees from a herd negligible.
const DEFAULT_COOLDOWN: Duration = Duration::from_secs(10 * 60);

/// How many relays a snapshot of known relays holds unless [`Config::with_max_known_relays`] says otherwise: as
/// many as ocap-kernel keeps, enough to refill a pool of a few slots several times over.
const DEFAULT_MAX_KNOWN_RELAYS: usize = 20;

/// How long a known relay may go unseen before a snapshot's entry for it is dropped, unless
/// [`Config::with_known_relay_max_age`] says otherwise: a relay that served within a month is likely still up,
/// and a node that was off for longer is better off with the relays its application names.
const DEFAULT_KNOWN_RELAY_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 60 * 60);

impl Default for Config {
    fn default() -> Self {
        Self {
            base_delay: Duration::from_secs(5),
            max_delay: Duration::from_secs(60),
            max_attempts: Some(10),
            jitter: true,
            rng_seed: None,
            reservations: true,
            cooldown: Some(DEFAULT_COOLDOWN),
            dial_timeout: None,
            probe: Probe {
                interval: DEFAULT_PROBE_INTERVAL,
                timeout: DEFAULT_PROBE_TIMEOUT,
            },
            probing: true,
            max_reservations: None,
            promotion_spread: DEFAULT_PROMOTION_SPREAD,
            forgive_after: DEFAULT_FORGIVE_AFTER,
            limit_interval: DEFAULT_LIMIT_INTERVAL,
            recheck: Some(DEFAULT_RECHECK),
            discovery: false,
            pause_while_public: None,
            max_known_relays: DEFAULT_MAX_KNOWN_RELAYS,
            known_relay_max_age: DEFAULT_KNOWN_RELAY_MAX_AGE,
        }
    }
}

impl Config {
    /// Sets the bound of the wait before the first retry of an outage; each further retry doubles it.
    ///
    /// Zero is clamped to 1 ms, values above one year to one year.
    pub fn with_base_delay(mut self, base_delay: Duration) -> Self {
        self.base_delay = base_delay.clamp(MIN_DELAY, MAX_DELAY);
        self
    }

    /// Sets the cap on the wait between two retries.
    ///
    /// A cap below the base delay acts as the base delay (whichever setter is called first); values above one
    /// year are clamped to one year.
    pub fn with_max_delay(mut self, max_delay: Duration) -> Self {
        self.max_delay = max_delay.min(MAX_DELAY);
        self
    }

    /// Sets how many failed retries of one outage the keeper makes before it gives up on the relay.
    ///
    /// `None` never gives up. `Some(0)` gives up as soon as the relay is lost, without a retry.
    pub fn with_max_attempts(mut self, max_attempts: Option<u32>) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// With jitter (the default) the wait before retry `n` is uniform in `[0, backoff_bound(n))`, so that many
    /// nodes losing the same relay do not all dial it at the same instant. Without, it is exactly
    /// [`backoff_bound(n)`](Config::backoff_bound).
    pub fn with_jitter(mut self, jitter: bool) -> Self {
        self.jitter = jitter;
        self
    }

    /// Seeds the jitter's random number generator, so that the sequence of waits is reproducible.
    ///
    /// Meant for tests and simulations; in production leave it unset so that nodes spread out.
    pub fn with_rng_seed(mut self, seed: u64) -> Self {
        self.rng_seed = Some(seed);
        self
    }

    /// With reservations on (the default) the keeper keeps a circuit reservation on every relay, so the node is
    /// reachable through it. Off, it keeps only the connection (e.g. for a relay used to dial out through).
    pub fn with_reservations(mut self, reservations: bool) -> Self {
        self.reservations = reservations;
        self
    }

    /// After giving up on a relay for [`with_max_attempts`](Self::with_max_attempts), start a fresh round of
    /// retries (count and backoff from the start) once `cooldown` has passed and a further wait, drawn like a
    /// retry at the cap ([`with_max_delay`](Self::with_max_delay)), so that a herd that gave up together
    /// does not come back in one instant; and again after each further give-up.
    ///
    /// Default: 10 minutes, so an unattended node is never unreachable for good: a relay down for half an
    /// hour is reserved on again at most the cool-down and the cap after it is back. `None` leaves a relay
    /// that gave up alone until [`RelayKeeper::retry_now`](crate::RelayKeeper::retry_now),
    /// [`RelayKeeper::add_relay`](crate::RelayKeeper::add_relay), a network change or the relay offering HOP
    /// on a live connection:
    ///
    /// ```
    /// use libp2p_relay_keeper::Config;
    ///
    /// // Give up for good after 10 failed retries, as the seed project does.
    /// let config = Config::default().with_cooldown(None);
    /// ```
    ///
    /// A give-up for a mistake in the relay's address is never retried by the cool-down. Values above one
    /// year are clamped to one year.
    pub fn with_cooldown(mut self, cooldown: Option<Duration>) -> Self {
        self.cooldown = cooldown.map(|c| c.min(MAX_DELAY));
        self
    }

    /// Bounds how long one dial to a relay may take; a dial still pending then is aborted and counts as a
    /// failed retry (`cause=dial_timeout`). Clamped to at least 1 ms and at most one year.
    ///
    /// Without it the limit follows what the keeper knows of the relay: 10 s, doubled after each dial in a row
    /// that ran out of time (a slow link's first dial is not cut for good) up to the cap on the waits
    /// ([`with_max_delay`](Self::with_max_delay)), so a dial to a dead relay holds the next retry back by no
    /// more than the longest wait; and at least 8 round trips as the probe measured them on the relay's last
    /// connection (`srtt + 4 x rttvar`; a dial is four or five), even above a short cap. So a dial over a link
    /// with a steady 3 s round trip may take 24 s. A network change or a new address starts the doubling over.
    ///
    /// Why it matters: a TCP dial into a black hole resends its SYN for minutes, and a QUIC dial to a relay
    /// that is down is not failed by an ICMP error; it resends its handshake until libp2p-quic's handshake
    /// timeout. On slow links also raise the `SwarmBuilder`'s own limit on connection upgrades
    /// (`with_connection_timeout`, 10 s by default), which cuts a dial whatever the keeper allows.
    pub fn with_dial_timeout(mut self, timeout: Duration) -> Self {
        self.dial_timeout = Some(timeout.clamp(MIN_DELAY, MAX_DELAY));
        self
    }

    /// Turns the liveness probe on direct connections to kept relays on (the default) or off.
    ///
    /// The probe sends the `/ipfs/ping/1.0.0` echo on one stream per connection, kept open and reused (about
    /// 380 bytes and 4-5 packets on the wire per probe over TCP, measured on a veth), once the relay has not
    /// been heard from for [`with_probe_interval`](Self::with_probe_interval). The rule: each ping has a
    /// timeout `T = max(floor, srtt + 4 x rttvar)`, from the round trips measured on the connection (5 s
    /// before the first answer) and the floor [`with_probe_timeout`](Self::with_probe_timeout). An answer
    /// within `T` is on time, one later than `T` is only late; the connection is closed
    /// (`cause=probe_timeout`, and the usual restore) only when a ping stays unanswered for `2 x T`. So a
    /// slow link that still answers is never cut, and a silent death is reported within `interval + 2 x
    /// max(floor, srtt + 4 x rttvar)`: 5.6 s by default on a fast link, 3 + 2 x 3 s on a link with a steady 3
    /// s round trip. Without a probe libp2p notices such a death only when TCP gives up (many minutes) or, on
    /// QUIC, after its 10 s idle timeout.
    ///
    /// A reset of a stream opened for the probe answers it too; a reset of the stream kept open between probes
    /// only makes the probe ask on a new one (libp2p's ping responder keeps one stream per connection and resets
    /// the older, so the application's own `ping::Behaviour` and the probe evict each other on a relay that has
    /// no `LinkProbe`). A ping from the relay on a stream where this node echoed one before shows that the echo
    /// arrived: it moves the next probe back, so when both ends probe, mostly the one with the shorter interval
    /// pays. It never answers a probe under way, and a relay's first ping on a stream counts for nothing: each
    /// shows only that the relay's packets arrive, not that this node's do (a one-way black hole is a dead link
    /// too). The echo such a ping vouches for may be one of the relay's intervals old, so a link that stops
    /// carrying this node's packets right after it is seen up to that much later. A relay that does not speak
    /// ping is never probed.
    ///
    /// ```
    /// use std::time::Duration;
    /// use libp2p_relay_keeper::Config;
    ///
    /// // A phone on a data plan: a probe every 15 s (its bytes: BENCHMARKS.md, wire cost), a silent loss seen
    /// // within 15 s and twice the probe's timeout.
    /// let phone = Config::default().with_probe_interval(Duration::from_secs(15));
    /// let off = Config::default().with_probe(false);
    /// ```
    pub fn with_probe(mut self, on: bool) -> Self {
        self.probing = on;
        self
    }

    /// How long a kept relay's connection may go unheard before the probe pings it (default 3 s). Clamped to
    /// [1 ms, one year]. See [`with_probe`](Self::with_probe).
    pub fn with_probe_interval(mut self, interval: Duration) -> Self {
        self.probe = Probe::new(interval, self.probe.timeout);
        self
    }

    /// The floor of the probe's adaptive timeout (default 1.3 s): a ping is late only after
    /// `max(floor, srtt + 4 x rttvar)`, and the connection is closed after twice that. Clamped to
    /// [1 ms, one year]. See [`with_probe`](Self::with_probe).
    pub fn with_probe_timeout(mut self, floor: Duration) -> Self {
        self.probe = Probe::new(self.probe.interval, floor);
        self
    }

    /// Hold reservations on at most `n` kept relays at a time; the others are standby candidates
    /// ([`RelayStatus::Standby`](crate::RelayStatus::Standby)), left undialed until the pool needs them.
    /// `None` (the default): a reservation on every kept relay. `Some(0)` acts as `Some(1)`.
    ///
    /// When a held relay loses its reservation (or a promotion fails) and a standby is eligible, the standby is
    /// promoted at once, without waiting for any backoff, and the lost relay becomes a standby that waits out
    /// its own backoff before it is eligible again. A standby is eligible when its backoff has run out and it
    /// has not given up; one already connected for other reasons is preferred and used at once, the others are
    /// chosen at random (so nodes given the same list do not all pick the same relays) and dialed after a
    /// random wait within [`with_promotion_spread`](Self::with_promotion_spread). A working reservation is never
    /// dropped for another relay, so the node's circuit addresses stay put, and a relay that recovers after a
    /// failover stays a standby. Use a pool when the node is given more relays than it needs to be reachable
    /// through: a handful of relays, two of them held.
    ///
    /// ```
    /// use libp2p_relay_keeper::Config;
    ///
    /// let config = Config::default().with_max_reservations(Some(2));
    /// ```
    pub fn with_max_reservations(mut self, n: Option<usize>) -> Self {
        self.max_reservations = n.map(|n| n.max(1));
        self
    }

    /// Peers the node is connected to that offer the relay HOP protocol become candidates too, after the relays
    /// given to [`RelayKeeper::add_relay`](crate::RelayKeeper::add_relay). Default `false`. Discovery only fills
    /// up to [`with_max_reservations`](Self::with_max_reservations); with `None` it is off.
    ///
    /// A peer becomes a candidate when a direct connection the node dialed (its address is the one the keeper
    /// reserves through) reports HOP among the peer's protocols, as identify fills them in; relayed and inbound
    /// connections never count. It stops being one, and is no longer kept, when it stops offering HOP or its
    /// last connection closes; the keeper never dials a discovered relay of its own accord, so the
    /// application's own dials and connections are left as they are. At most
    /// [`MAX_DISCOVERED`](crate::MAX_DISCOVERED) discovered candidates are kept at a time.
    ///
    /// A free slot goes to an eligible relay given to `add_relay` before a discovered one. A discovered relay's
    /// reservation is released only when it is lost, its relay stops offering HOP, or its last connection
    /// closes, never for a given relay that becomes eligible later, so slots cannot pass back and forth
    /// between the two.
    pub fn with_discovery(mut self, discovery: bool) -> Self {
        self.discovery = discovery;
        self
    }

    /// Releases the reservations while the node is publicly reachable, and takes them again when it no longer
    /// is. `Some(hold)`: once the swarm has had a confirmed external address that is not a circuit address for
    /// `hold` without a break, every reservation the keeper holds is released (the relays'
    /// [`RelayStatus::Paused`](crate::RelayStatus::Paused)); as soon as no such address is left, the keeper
    /// reserves again (in a pool, it refills it). `hold` is the hysteresis: an address that comes and goes
    /// does not release and retake the reservations each time; 60 s is a good value. `None` (the default):
    /// never pause. [`Event::Unreachable`](crate::Event::Unreachable) does not fire for a pause.
    ///
    /// Only turn it on if the swarm's confirmed external addresses mean what they say: a node that confirms
    /// the addresses identify observed for it (`swarm.add_external_address` for every observed address) would
    /// confirm its NAT's address while unreachable behind it, and lose its relays for nothing. AutoNAT's
    /// confirmations are what this is meant for. Values above one year are clamped.
    pub fn with_pause_while_public(mut self, hold: Option<Duration>) -> Self {
        self.pause_while_public = hold.map(|hold| hold.min(MAX_DELAY));
        self
    }

    /// Spreads the promotions of standby relays (see [`with_max_reservations`](Self::with_max_reservations))
    /// uniformly over `[0, spread]`, so that many nodes failing over from the same relay at the same instant do
    /// not all dial the same standby in that instant. Default 100 ms; values above one year are clamped.
    pub fn with_promotion_spread(mut self, spread: Duration) -> Self {
        self.promotion_spread = spread.min(MAX_DELAY);
        self
    }

    /// Flap protection: the waits of a new outage go on from the backoff level where the last outage left
    /// them until the relay's goal (the reservation, or the connection with reservations off) has held for
    /// `after`; then they start from the base again. So a relay that keeps falling over right after coming
    /// back is retried less and less often (and in a pool, [`with_max_reservations`](Self::with_max_reservations),
    /// loses its slot to a standby), while each outage's retries are counted from 1 and
    /// [`with_max_attempts`](Self::with_max_attempts) applies to them alone: forgiveness shapes the waits,
    /// never the give-up. The level is also back at the base after the relay's first goal, a network change
    /// and a cool-down. Default 10 s, longer than a crash loop keeps a relay up; `Duration::ZERO` forgives as
    /// soon as the goal is reached. Values above one year are clamped.
    pub fn with_forgive_after(mut self, after: Duration) -> Self {
        self.forgive_after = after.min(MAX_DELAY);
        self
    }

    /// How long the keeper waits before it asks a relay again that refused a reservation, or its renewal, with
    /// `RESOURCE_LIMIT_EXCEEDED` (the relay is full, or this node or its IP address asked too often). Such a
    /// "not now" is no failure of the link: it counts toward no [`with_max_attempts`](Self::with_max_attempts)
    /// and raises no backoff, so the keeper never gives up on a relay for it alone. The keeper asks again once
    /// `interval` has passed (with [`with_jitter`](Self::with_jitter), up to a tenth later, so that the clients
    /// a full relay refused together do not ask again together): on the same connection if the relay kept it,
    /// else on one it dials then. A new connection asks no sooner either, unless a dial to the relay was
    /// refused meanwhile (the relay restarted, and its limits with it);
    /// [`RelayKeeper::retry_now`](crate::RelayKeeper::retry_now) asks at once. In a pool
    /// ([`with_max_reservations`](Self::with_max_reservations)) a standby takes the relay's slot at once.
    ///
    /// Default 2 minutes: rust-libp2p's relay lets a peer reserve again every 2 minutes once it spent its first
    /// 30 reservations, the longest interval of its default limits; choose the longest interval of the relays
    /// you use. Clamped to [1 ms, one year].
    pub fn with_limit_interval(mut self, interval: Duration) -> Self {
        self.limit_interval = interval.clamp(MIN_DELAY, MAX_DELAY);
        self
    }

    /// Quick re-checks of a relay that is restarting. While dials to the relay are refused (TCP
    /// `ConnectionRefused`: its host is up, its relay process is not listening), the keeper also dials the
    /// relay's TCP addresses again after a wait drawn uniformly from `window`, between the counted retries, so
    /// a relay that listens again is used within seconds, however far the backoff has grown. Re-checks are not
    /// retries: they count toward no [`with_max_attempts`](Self::with_max_attempts), raise no backoff, emit no
    /// [`Event::ReconnectScheduled`](crate::Event::ReconnectScheduled), and go on through a give-up and its
    /// cool-down for as long as the host refuses; a re-check that connects revives the relay. A dial that
    /// fails any other way (time-out, no route) ends them until a dial is refused again, and so does a
    /// connection that closes before the reservation. A relay that loses its reservation again before
    /// [`with_forgive_after`](Self::with_forgive_after) (a crash loop) is re-checked from the loss on, as if
    /// refused, for at most [`MAX_PRESUMED_RESTARTS`](crate::MAX_PRESUMED_RESTARTS) losses in a row.
    ///
    /// Relays with only QUIC addresses are never re-checked: QUIC has no refusal to tell a restarting relay
    /// from a dead host. A pool's standbys and relays that gave up in a pool are not re-checked either: they
    /// are not dialed until the pool promotes them.
    ///
    /// Default `Some(2 s..5 s)`; `None` turns re-checks off. Both ends are clamped to [1 ms, one year], and an
    /// end below the start is raised to it.
    pub fn with_recheck(mut self, window: Option<Range<Duration>>) -> Self {
        self.recheck = window.map(|window| {
            let start = window.start.clamp(MIN_DELAY, MAX_DELAY);
            start..window.end.clamp(start, MAX_DELAY)
        });
        self
    }

    /// Upper bound of the wait before retry `attempt` (1-based) of an outage:
    /// `min(max_delay, base_delay * 2^(attempt - 1))`, saturating instead of overflowing.
    /// Attempt 0 is treated as attempt 1.
    pub fn backoff_bound(&self, attempt: u32) -> Duration {
        let cap = self.max_delay.max(self.base_delay);
        1u32.checked_shl(attempt.saturating_sub(1))
            .and_then(|factor| self.base_delay.checked_mul(factor))
            .map_or(cap, |bound| bound.min(cap))
    }

    pub(crate) fn max_reservations(&self) -> Option<usize> {
        self.max_reservations
    }

    /// Whether connected peers offering HOP become candidates: asked for, and a pool to fill.
    pub(crate) fn discovery(&self) -> bool {
        self.discovery && self.max_reservations.is_some()
    }

    pub(crate) fn pause_while_public(&self) -> Option<Duration> {
        self.pause_while_public
    }

    pub(crate) fn forgive_after(&self) -> Duration {
        self.forgive_after
    }

    pub(crate) fn limit_interval(&self) -> Duration {
        self.limit_interval
    }

    pub(crate) fn recheck(&self) -> Option<Range<Duration>> {
        self.recheck.clone()
    }

    pub(crate) fn promotion_spread(&self) -> Duration {
        self.promotion_spread
    }

    pub(crate) fn max_attempts(&self) -> Option<u32> {
        self.max_attempts
    }

    pub(crate) fn jitter(&self) -> bool {
        self.jitter
    }

    pub(crate) fn rng_seed(&self) -> Option<u64> {
        self.rng_seed
    }

    pub(crate) fn reservations(&self) -> bool {
        self.reservations
    }

    pub(crate) fn cooldown(&self) -> Option<Duration> {
        self.cooldown
    }

    /// The time limit of a dial to a relay after `timed_out` dials in a row to it ran out of time, and with
    /// `rtt` the longest round trip its probe made likely (see [`Config::with_dial_timeout`]).
    pub(crate) fn dial_limit(&self, timed_out: u32, rtt: Option<Duration>) -> Duration {
        if let Some(set) = self.dial_timeout {
            return set;
        }
        let cap = self.max_delay.max(self.base_delay);
        let doubled = DEFAULT_DIAL_TIMEOUT
            .saturating_mul(1 << timed_out.min(16))
            .min(cap);
        // Not capped: with a short cap a dial over a slow link would otherwise run out of time on every try.
        let measured = rtt.map_or(Duration::ZERO, |rtt| rtt.saturating_mul(DIAL_ROUND_TRIPS));
        doubled.max(measured).min(MAX_DELAY)
    }

    pub(crate) fn probe(&self) -> Option<Probe> {
        self.probing.then_some(self.probe)
    }

    /// How many relays [`RelayKeeper::known_relays`](crate::RelayKeeper::known_relays) reports at most, and
    /// [`RelayKeeper::add_known_relays`](crate::RelayKeeper::add_known_relays) takes at most from a snapshot:
    /// the most useful ones, the most recently reserved first. Default 20; 0 turns snapshots off.
    pub fn with_max_known_relays(mut self, n: usize) -> Self {
        self.max_known_relays = n;
        self
    }

    /// How long a relay may have gone unseen (not reserved, or, if it never was, not known) before
    /// [`RelayKeeper::add_known_relays`](crate::RelayKeeper::add_known_relays) drops its entry, with a log
    /// line. Default 30 days.
    pub fn with_known_relay_max_age(mut self, max_age: Duration) -> Self {
        self.known_relay_max_age = max_age;
        self
    }

    pub(crate) fn max_known_relays(&self) -> usize {
        self.max_known_relays
    }

    pub(crate) fn known_relay_max_age(&self) -> Duration {
        self.known_relay_max_age
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_bounds_follow_the_seed() {
        let config = Config::default();
        let bounds: Vec<u64> = (1..=7).map(|n| config.backoff_bound(n).as_secs()).collect();
        assert_eq!(bounds, [5, 10, 20, 40, 60, 60, 60]);
    }

    #[test]
    fn bound_saturates_instead_of_overflowing() {
        let config = Config::default().with_max_delay(Duration::MAX);
        assert_eq!(config.backoff_bound(u32::MAX), MAX_DELAY);
        assert_eq!(config.backoff_bound(40), MAX_DELAY);
        assert_eq!(Config::default().backoff_bound(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn zero_base_is_clamped_to_one_millisecond() {
        let config = Config::default().with_base_delay(Duration::ZERO);
        assert_eq!(config.backoff_bound(1), MIN_DELAY);
        assert_eq!(config.backoff_bound(2), 2 * MIN_DELAY);
    }

    #[test]
    fn max_below_base_acts_as_base_in_either_order() {
        let base = Duration::from_secs(10);
        let low = Duration::from_secs(1);
        let a = Config::default().with_base_delay(base).with_max_delay(low);
        let b = Config::default().with_max_delay(low).with_base_delay(base);
        for attempt in [1, 2, 9] {
            assert_eq!(a.backoff_bound(attempt), base);
            assert_eq!(b.backoff_bound(attempt), base);
        }
    }

    #[test]
    fn the_dial_limit_follows_timeouts_and_round_trips_up_to_the_cap_unless_set() {
        let defaults = Config::default();
        assert_eq!(defaults.dial_limit(0, None), DEFAULT_DIAL_TIMEOUT);
        assert_eq!(defaults.dial_limit(1, None), 2 * DEFAULT_DIAL_TIMEOUT);
        assert_eq!(
            defaults.dial_limit(9, None),
            defaults.max_delay,
            "never past the cap"
        );
        let slow = Some(Duration::from_secs(3));
        assert_eq!(defaults.dial_limit(0, slow), Duration::from_secs(24));
        let fast = Some(Duration::from_millis(5));
        assert_eq!(defaults.dial_limit(0, fast), DEFAULT_DIAL_TIMEOUT);
        let short = Config::default()
            .with_base_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(1));
        assert_eq!(short.dial_limit(3, None), Duration::from_secs(1));
        assert_eq!(
            short.dial_limit(3, slow),
            Duration::from_secs(24),
            "a short cap does not cut a slow link's dials"
        );
        let set = short.with_dial_timeout(Duration::from_secs(3));
        assert_eq!(set.dial_limit(3, slow), Duration::from_secs(3));
        assert_eq!(
            Config::default()
                .with_dial_timeout(Duration::ZERO)
                .dial_limit(0, None),
            MIN_DELAY
        );
    }

    #[test]
    fn a_recheck_window_is_clamped_and_never_runs_backwards() {
        let second = Duration::from_secs(1);
        let window = |w| Config::default().with_recheck(Some(w)).recheck();
        assert_eq!(window(Duration::ZERO..second), Some(MIN_DELAY..second));
        assert_eq!(window(2 * second..second), Some(2 * second..2 * second));
        assert_eq!(window(second..Duration::MAX), Some(second..MAX_DELAY));
        assert_eq!(Config::default().with_recheck(None).recheck(), None);
        assert_eq!(Config::default().recheck(), Some(DEFAULT_RECHECK));
    }

    #[test]
    fn attempt_zero_is_treated_as_the_first() {
        let config = Config::default();
        assert_eq!(config.backoff_bound(0), config.backoff_bound(1));
    }
}
