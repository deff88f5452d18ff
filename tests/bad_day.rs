//! A bad day for a kept node, end to end with the examples as real processes: a `relay_server` SIGKILLed and
//! restarted with the same command (same key, same port), and a `dcutr --mode listen` node kept on it. What is
//! measured is the time from the relay listening again (its `listening addr=` lines for TCP and QUIC after the
//! restart) to the first fresh `dcutr --mode dial` process that reaches the listener through the relay
//! (`connected peer=<listener> relayed=true`); a dialer is started every 500 ms from the restart on, always
//! through the relay's TCP address (the dialer's own transport is not what is measured), and each gets 5 s.
//! Beside it, the listener's own `keeper reserved` line after the restart, which the dialers lag by their
//! start-up and by up to one probe period.
//!
//! A measurement, not a check: the timings are printed, never asserted; only the setup is (the listener held
//! its reservation for 20 s before the first fault). Each scenario is a test of its own, to be run alone:
//!
//! ```text
//! cargo build --release --examples && cargo test --release --test bad_day -- --ignored --nocapture
//! cargo test --release --test bad_day -- --ignored --nocapture --exact a_outage_3s_tcp_defaults
//! ```
//!
//! Scenarios (names `<scenario>_<transport of the listener's relay address>_<listener settings>`, settings
//! `defaults` = no backoff flags, `examples` = `--backoff-base-ms 500 --backoff-max-ms 5000 --max-attempts 10`):
//! - `a_outage_<n>s`: the relay down 3 s, 30 s, 150 s or 600 s (10 runs for the short two, 3 for the others).
//! - `b_five_restarts`: kill, restart 1 s later, wait until a dialer reaches the listener, hold 20 s; 5 times.
//! - `c_crash_loop`: the relay killed, then five short lives (down 1 s, up 3 s, killed), then down 1 s and up
//!   for good; measured from the last restart.
//! - `d_pool`: three relays, `--max-reservations 2`: one held relay down 30 s, then all three down 90 s and
//!   restarted together; time to reachable (dialers through each of the three relays) and to a full pool (two
//!   relays in the listener's `keeper reserved relay=` lines after the restart).
//! - `e_dead_relay_cost`: a relay that stays down 600 s, in network namespaces (root): the listener's dials to
//!   it a minute (its `dialing relay` debug lines) and the bytes on its veth.
//!
//! The runs of one scenario go side by side, each with its own relays, listener and ports; the tests of this
//! file take turns (a lock), so running them all at once measures one scenario at a time.

mod common;

use std::{
    future::Future,
    sync::atomic::{AtomicU16, Ordering},
    time::{Duration, Instant},
};

use common::{
    netns::{lab, Lab},
    prober::Prober,
    process::{quic_addr, Process, LOOPBACK},
    recorded::Recorded,
};
use tokio::task::JoinSet;

const RELAY_FLAGS: &[&str] = &["--no-rate-limits"];
/// The listener's seed; relays and dialers use others (a peer with its relay's key cannot use it).
const LISTENER_SEED: &str = "1";
const RELAY_SEEDS: [&str; 3] = ["101", "102", "103"];
/// How long the reservation holds before a fault, so the keeper's history is not a fresh one's.
const HOLD: Duration = Duration::from_secs(20);
const PROBE_EVERY: Duration = Duration::from_millis(500);
/// How long one dialer may take; a circuit on loopback takes milliseconds.
const PROBE_LIMIT: Duration = Duration::from_secs(5);
/// How long the first reservations may take (a fresh relay refuses the first one until identify told it its
/// address; the retry waits up to the base delay).
const SETUP_LIMIT: Duration = Duration::from_secs(60);
/// How long after a restart the node gets to be reachable before the run counts as "never": the cap on the
/// default waits (60 s) after a give-up's 10 minute cool-down, and some.
const OBSERVE: Duration = Duration::from_secs(12 * 60);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Transport {
    Tcp,
    Quic,
}

#[derive(Debug, Clone, Copy)]
enum Settings {
    /// No backoff flags: the library's defaults (5 s doubling to 60 s, 10 retries, 10 minute cool-down).
    Defaults,
    /// The README's example command's.
    Examples,
}

impl Settings {
    fn flags(self) -> &'static [&'static str] {
        match self {
            Settings::Defaults => &[],
            Settings::Examples => &[
                "--backoff-base-ms",
                "500",
                "--backoff-max-ms",
                "5000",
                "--max-attempts",
                "10",
            ],
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Scenario {
    Outage(Duration),
    FiveRestarts,
    CrashLoop,
    Pool,
}

impl Scenario {
    fn runs(self) -> usize {
        match self {
            Scenario::Outage(down) if down <= Duration::from_secs(30) => 10,
            Scenario::Outage(_) | Scenario::Pool => 3,
            Scenario::FiveRestarts | Scenario::CrashLoop => 10,
        }
    }

    fn describe(self) -> String {
        match self {
            Scenario::Outage(down) => format!("relay down {} s", down.as_secs()),
            Scenario::FiveRestarts => "5 restarts (down 1 s, reachable, held 20 s)".into(),
            Scenario::CrashLoop => "crash loop (5 lives of 3 s, 1 s apart)".into(),
            Scenario::Pool => "pool of 3 relays, 2 reservations".into(),
        }
    }

    /// One run; the figures it measured, by name, in seconds (`None`: not within [`OBSERVE`]).
    async fn run(self, transport: Transport, settings: Settings) -> Vec<(String, Option<f64>)> {
        match self {
            Scenario::Outage(down) => {
                let mut node = Node::up(1, None, transport, settings).await;
                node.relays[0].kill().await;
                tokio::time::sleep(down).await;
                let back = node.relays[0].restart().await;
                node.back_after(back, "").await
            }
            Scenario::FiveRestarts => {
                let mut node = Node::up(1, None, transport, settings).await;
                let mut figures = Vec::new();
                for restart in 1..=5 {
                    node.relays[0].kill().await;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let back = node.relays[0].restart().await;
                    let measured = node.back_after(back, &format!("restart {restart}: ")).await;
                    let reached = measured[0].1.map_or(Instant::now(), |s| back + secs(s));
                    figures.extend(measured);
                    sleep_until(reached + HOLD).await;
                }
                figures
            }
            Scenario::CrashLoop => {
                let mut node = Node::up(1, None, transport, settings).await;
                node.relays[0].kill().await;
                for _ in 0..5 {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    node.relays[0].restart().await;
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    node.relays[0].kill().await;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                let back = node.relays[0].restart().await;
                node.back_after(back, "").await
            }
            Scenario::Pool => pool_run(transport, settings).await,
        }
    }
}

/// Scenario d: a partial outage (one held relay down 30 s), then a total one (all three down 90 s).
async fn pool_run(transport: Transport, settings: Settings) -> Vec<(String, Option<f64>)> {
    let mut node = Node::up(3, Some(2), transport, settings).await;
    let mut figures = Vec::new();

    let held = reserved(&node.listener.snapshot(), node.started);
    let dead = node.index_of(&held[0].1);
    let killed = Instant::now();
    node.relays[dead].kill().await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    let back = node.relays[dead].restart().await;
    figures.push((
        "partial: reachable".to_owned(),
        node.reachable(back).await.map(|at| seconds(back, at)),
    ));
    let dead_id = node.relays[dead].id().to_owned();
    let refilled = node
        .listener
        .wait(OBSERVE, |lines| {
            reserved(lines, killed)
                .into_iter()
                .find(|(_, relay)| *relay != dead_id)
                .map(|(at, _)| at)
        })
        .await;
    figures.push((
        "partial: pool full again, from the kill".to_owned(),
        refilled.map(|at| seconds(killed, at)),
    ));
    sleep_until(Instant::now() + HOLD).await;

    for relay in &mut node.relays {
        relay.kill().await;
    }
    tokio::time::sleep(Duration::from_secs(90)).await;
    let listening = futures::future::join_all(node.relays.iter_mut().map(Relay::restart)).await;
    let back = listening.into_iter().max().expect("three relays");
    figures.push((
        "total: reachable".to_owned(),
        node.reachable(back).await.map(|at| seconds(back, at)),
    ));
    let full = node
        .listener
        .wait(OBSERVE, |lines| reserved(lines, back).get(1).map(|(at, _)| *at))
        .await;
    figures.push((
        "total: pool full (2 reserved)".to_owned(),
        full.map(|at| seconds(back, at)),
    ));
    figures
}

/// A relay on loopback that can be killed and started again with the same command.
struct Relay {
    seed: &'static str,
    port: u16,
    /// Its TCP address, `/ip4/127.0.0.1/tcp/<port>/p2p/<id>`.
    addr: String,
    process: Option<Process>,
}

impl Relay {
    async fn start(seed: &'static str) -> Self {
        let port = relay_port();
        let (process, addr) = LOOPBACK.relay_server_keyed(port, seed, RELAY_FLAGS).await;
        Self {
            seed,
            port,
            addr,
            process: Some(process),
        }
    }

    /// The address the listener is given.
    fn given(&self, transport: Transport) -> String {
        match transport {
            Transport::Tcp => self.addr.clone(),
            Transport::Quic => quic_addr(&self.addr),
        }
    }

    fn id(&self) -> &str {
        self.addr
            .rsplit("/p2p/")
            .next()
            .expect("an address ending in /p2p/<id>")
    }

    /// SIGKILL; returns once the process is gone.
    async fn kill(&mut self) {
        if let Some(process) = self.process.take() {
            process.kill().await;
        }
    }

    /// Starts it again, same key and port; returns when it listens again (its TCP and QUIC lines came).
    async fn restart(&mut self) -> Instant {
        let (process, addr) = LOOPBACK
            .relay_server_keyed(self.port, self.seed, RELAY_FLAGS)
            .await;
        let listening = Instant::now();
        assert_eq!(addr, self.addr, "the restarted relay has its old key and port");
        self.process = Some(process);
        listening
    }
}

/// A port below the kernel's ephemeral range (32768 up) that is free for TCP and UDP on 127.0.0.1: while its
/// relay is down no outgoing connection or `/tcp/0` listener takes it, and a dial to it cannot connect to
/// itself (a loopback TCP dial whose source port is its destination does).
fn relay_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = (std::process::id() % 40) as u16 * 300;
    loop {
        let port = 20_000 + (base + NEXT.fetch_add(1, Ordering::Relaxed)) % 12_000;
        let tcp = std::net::TcpListener::bind(("127.0.0.1", port));
        let udp = std::net::UdpSocket::bind(("127.0.0.1", port));
        if tcp.is_ok() && udp.is_ok() {
            return port;
        }
    }
}

/// The distinct relays of the listener's `keeper reserved relay=<id> ...` lines at or after `since`, each with
/// the instant of its first such line, in order.
fn reserved(lines: &[(Instant, String)], since: Instant) -> Vec<(Instant, String)> {
    let mut relays: Vec<(Instant, String)> = Vec::new();
    for (at, line) in lines.iter().filter(|(at, _)| *at >= since) {
        let Some(rest) = line.strip_prefix("keeper reserved relay=") else {
            continue;
        };
        let relay = rest.split_whitespace().next().unwrap_or_default();
        if !relays.iter().any(|(_, r)| r == relay) {
            relays.push((*at, relay.to_owned()));
        }
    }
    relays
}

/// A listener kept on its relays, which the test kills and restarts.
struct Node {
    relays: Vec<Relay>,
    listener: Recorded,
    id: String,
    /// When the listener was started.
    started: Instant,
}

impl Node {
    /// `relays` relays and a listener given all of them (holding at most `pool` reservations), once it has
    /// held its reservations for [`HOLD`].
    async fn up(relays: usize, pool: Option<usize>, transport: Transport, settings: Settings) -> Self {
        let mut started_relays = Vec::new();
        for seed in &RELAY_SEEDS[..relays] {
            started_relays.push(Relay::start(seed).await);
        }
        let relays = started_relays;
        let mut args: Vec<String> = settings.flags().iter().map(|f| f.to_string()).collect();
        if let Some(pool) = pool {
            args.extend(["--max-reservations".to_owned(), pool.to_string()]);
        }
        for relay in &relays[1..] {
            args.extend(["--relay-address".to_owned(), relay.given(transport)]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let started = Instant::now();
        let mut listener = LOOPBACK.dcutr("listen", LISTENER_SEED, &relays[0].given(transport), &args);
        let id = listener.wait_prefix("peer_id=").await;
        let listener = Recorded::new("dcutr --mode listen", listener);
        let want = pool.unwrap_or(relays.len());
        let reserved_at = listener
            .expect(
                &format!("`keeper reserved` for {want} relays"),
                SETUP_LIMIT,
                |lines| reserved(lines, started).get(want - 1).map(|(at, _)| *at),
            )
            .await;
        sleep_until(reserved_at + HOLD).await;
        let lost = listener.snapshot().into_iter().find(|(at, line)| {
            *at >= reserved_at
                && (line.starts_with("keeper reconnect_scheduled") || line.starts_with("keeper unreachable"))
        });
        assert!(
            lost.is_none(),
            "the reservations held {HOLD:?} before the fault, but the listener lost one; {}",
            listener.printed()
        );
        Self {
            relays,
            listener,
            id,
            started,
        }
    }

    fn index_of(&self, relay_id: &str) -> usize {
        self.relays
            .iter()
            .position(|r| r.id() == relay_id)
            .expect("a relay of this node")
    }

    /// When a fresh dialer, one started every [`PROBE_EVERY`] through each relay from now on, first reached the
    /// listener; `None` if none did within [`OBSERVE`] of `since`.
    async fn reachable(&self, since: Instant) -> Option<Instant> {
        let probers: Vec<Prober> = self
            .relays
            .iter()
            .map(|relay| {
                Prober::start(
                    LOOPBACK,
                    relay.addr.clone(),
                    self.id.clone(),
                    PROBE_EVERY,
                    PROBE_LIMIT,
                )
            })
            .collect();
        loop {
            if let Some(first) = probers.iter().filter_map(|p| p.reached_after(since)).min() {
                return Some(first);
            }
            if since.elapsed() >= OBSERVE {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// After a restart that listened at `back`: seconds to the first dialer that reached the listener, and to
    /// the listener's own `keeper reserved` line.
    async fn back_after(&self, back: Instant, label: &str) -> Vec<(String, Option<f64>)> {
        let reached = self.reachable(back).await.map(|at| seconds(back, at));
        let reserved_line = reserved(&self.listener.snapshot(), back)
            .first()
            .map(|(at, _)| seconds(back, *at));
        vec![
            (format!("{label}reachable (dialer)"), reached),
            (format!("{label}`keeper reserved` line"), reserved_line),
        ]
    }
}

fn seconds(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64()
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

async fn sleep_until(at: Instant) {
    tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
}

/// Runs `runs` runs side by side, started 100 ms apart; a run that fails fails the test at once.
async fn side_by_side<T, F>(runs: usize, run: impl Fn() -> F) -> Vec<T>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    let mut set = JoinSet::new();
    for _ in 0..runs {
        set.spawn(run());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut results = Vec::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(result) => results.push(result),
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => panic!("a run did not finish: {error}"),
        }
    }
    results
}

/// The tests of this file take turns, so that each scenario's runs have the machine to themselves.
async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    TURN.lock().await
}

const HEADER: &str = "| scenario | transport | settings | figure | n | median (s) | p95 (s) | max (s) | raw (s) |\n|---|---|---|---|---|---|---|---|---|";

/// One table row: median, p95 (nearest rank) and max over the runs that got there, and every run's value.
fn row(
    scenario: &str,
    transport: Transport,
    settings: Settings,
    figure: &str,
    values: &[Option<f64>],
) -> String {
    let mut got: Vec<f64> = values.iter().flatten().copied().collect();
    got.sort_by(f64::total_cmp);
    let never = values.len() - got.len();
    let at = |i: usize| got.get(i).map_or("-".to_owned(), |v| format!("{v:.2}"));
    let median = match got.len() {
        0 => "-".to_owned(),
        n if n % 2 == 1 => at(n / 2),
        n => format!("{:.2}", (got[n / 2 - 1] + got[n / 2]) / 2.0),
    };
    let p95 = at(((got.len() as f64 * 0.95).ceil() as usize).saturating_sub(1));
    let max = at(got.len().saturating_sub(1));
    let n = match never {
        0 => values.len().to_string(),
        _ => format!("{} ({never} never within {} s)", values.len(), OBSERVE.as_secs()),
    };
    let raw: Vec<String> = values
        .iter()
        .map(|v| v.map_or("never".to_owned(), |s| format!("{s:.2}")))
        .collect();
    format!(
        "| {scenario} | {transport:?} | {settings:?} | {figure} | {n} | {median} | {p95} | {max} | {} |",
        raw.join(", ")
    )
}

async fn scenario(scenario: Scenario, transport: Transport, settings: Settings) {
    let _turn = one_at_a_time().await;
    let runs = scenario.runs();
    eprintln!(
        "{}, listener on {transport:?} with {settings:?} ({:?}): {runs} runs side by side",
        scenario.describe(),
        settings.flags()
    );
    let started = Instant::now();
    let results = side_by_side(runs, || scenario.run(transport, settings)).await;
    // Every figure, in the order the runs measured them.
    let mut figures: Vec<(String, Vec<Option<f64>>)> = Vec::new();
    for run in results {
        for (name, value) in run {
            match figures.iter_mut().find(|(n, _)| *n == name) {
                Some((_, values)) => values.push(value),
                None => figures.push((name, vec![value])),
            }
        }
    }
    println!("{HEADER}");
    for (figure, values) in &figures {
        println!(
            "{}",
            row(&scenario.describe(), transport, settings, figure, values)
        );
    }
    println!("(wall time {:.0} s)", started.elapsed().as_secs_f64());
}

/// One `#[ignore]`d test per scenario, transport and settings.
macro_rules! scenarios {
    ($($name:ident: $scenario:expr, $transport:ident, $settings:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[ignore = "a measurement of minutes; see the module docs"]
        async fn $name() {
            scenario($scenario, Transport::$transport, Settings::$settings).await
        }
    )*};
}

const fn outage(secs: u64) -> Scenario {
    Scenario::Outage(Duration::from_secs(secs))
}

scenarios! {
    a_outage_3s_tcp_defaults: outage(3), Tcp, Defaults;
    a_outage_3s_tcp_examples: outage(3), Tcp, Examples;
    a_outage_3s_quic_defaults: outage(3), Quic, Defaults;
    a_outage_3s_quic_examples: outage(3), Quic, Examples;
    a_outage_30s_tcp_defaults: outage(30), Tcp, Defaults;
    a_outage_30s_tcp_examples: outage(30), Tcp, Examples;
    a_outage_30s_quic_defaults: outage(30), Quic, Defaults;
    a_outage_30s_quic_examples: outage(30), Quic, Examples;
    a_outage_150s_tcp_defaults: outage(150), Tcp, Defaults;
    a_outage_150s_tcp_examples: outage(150), Tcp, Examples;
    a_outage_150s_quic_defaults: outage(150), Quic, Defaults;
    a_outage_150s_quic_examples: outage(150), Quic, Examples;
    a_outage_600s_tcp_defaults: outage(600), Tcp, Defaults;
    a_outage_600s_tcp_examples: outage(600), Tcp, Examples;
    a_outage_600s_quic_defaults: outage(600), Quic, Defaults;
    a_outage_600s_quic_examples: outage(600), Quic, Examples;
    b_five_restarts_tcp_defaults: Scenario::FiveRestarts, Tcp, Defaults;
    b_five_restarts_tcp_examples: Scenario::FiveRestarts, Tcp, Examples;
    b_five_restarts_quic_defaults: Scenario::FiveRestarts, Quic, Defaults;
    b_five_restarts_quic_examples: Scenario::FiveRestarts, Quic, Examples;
    c_crash_loop_tcp_defaults: Scenario::CrashLoop, Tcp, Defaults;
    c_crash_loop_tcp_examples: Scenario::CrashLoop, Tcp, Examples;
    c_crash_loop_quic_defaults: Scenario::CrashLoop, Quic, Defaults;
    c_crash_loop_quic_examples: Scenario::CrashLoop, Quic, Examples;
    d_pool_tcp_defaults: Scenario::Pool, Tcp, Defaults;
    d_pool_tcp_examples: Scenario::Pool, Tcp, Examples;
    d_pool_quic_defaults: Scenario::Pool, Quic, Defaults;
    d_pool_quic_examples: Scenario::Pool, Quic, Examples;
}

/// The line the keeper logs at `debug` for each dial of a relay.
const DIAL_LINE: &str = "dialing relay";
/// How long the relay stays down in scenario e.
const DEAD_FOR: Duration = Duration::from_secs(600);

/// The listener veth's bytes so far, both directions (Ethernet headers included).
fn veth_bytes(lab: &Lab) -> u64 {
    lab.client_counter("rx_bytes") + lab.client_counter("tx_bytes")
}

/// Starts a process with the examples' log filter `RUST_LOG=libp2p_relay_keeper=debug` (their log goes to
/// stderr), which [`Process`] has no setting for: set for the spawn only (the tests here take turns).
fn with_keeper_debug_log(spawn: impl FnOnce() -> Process) -> Process {
    let before = std::env::var_os("RUST_LOG");
    std::env::set_var("RUST_LOG", "libp2p_relay_keeper=debug");
    let process = spawn();
    match before {
        Some(value) => std::env::set_var("RUST_LOG", value),
        None => std::env::remove_var("RUST_LOG"),
    }
    process
}

/// Scenario e: what a relay that stays down costs its kept node, a minute at a time: the relay in one network
/// namespace, the listener (library defaults, the relay's TCP address) in another, joined by a veth pair.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement of 11 minutes; needs root and iproute2"]
async fn e_dead_relay_cost() {
    let _turn = one_at_a_time().await;
    let lab = lab().expect("network namespaces: root and iproute2");
    let (relay, relay_addr) = lab.relay_host().relay_server(4001, RELAY_FLAGS).await;
    let mut listener =
        with_keeper_debug_log(|| lab.client_host().dcutr("listen", LISTENER_SEED, &relay_addr, &[]));
    listener.wait_prefix("keeper reserved relay=").await;
    let retries_before_hold = listener.count("keeper reconnect_scheduled");
    tokio::time::sleep(HOLD).await;
    listener.skip_printed();
    assert_eq!(
        listener.count("keeper reconnect_scheduled"),
        retries_before_hold,
        "the reservation held {HOLD:?} before the relay was killed"
    );
    assert!(
        listener.stderr_count(DIAL_LINE) > 0,
        "the listener logs `{DIAL_LINE}` at debug (RUST_LOG=libp2p_relay_keeper=debug)"
    );

    let killed = Instant::now();
    relay.kill().await;
    let sample = |listener: &mut Process| {
        listener.skip_printed();
        [
            listener.stderr_count(DIAL_LINE) as u64,
            veth_bytes(&lab),
            listener.count("keeper reconnect_scheduled") as u64,
            listener.count("keeper gave_up") as u64,
        ]
    };
    let first = sample(&mut listener);
    let mut last = first;
    println!(
        "relay SIGKILLed and left down {} s; listener with library defaults on its TCP address, namespaces {} / {}",
        DEAD_FOR.as_secs(),
        lab.relay_ns,
        lab.client_ns
    );
    println!("| minute after the kill | dials (`{DIAL_LINE}` lines) | bytes on the listener's veth | `keeper reconnect_scheduled` | `keeper gave_up` |");
    println!("|---|---|---|---|---|");
    let minutes = DEAD_FOR.as_secs() / 60;
    for minute in 1..=minutes {
        sleep_until(killed + Duration::from_secs(60 * minute)).await;
        let now = sample(&mut listener);
        println!(
            "| {minute} | {} | {} | {} | {} |",
            now[0] - last[0],
            now[1] - last[1],
            now[2] - last[2],
            now[3] - last[3]
        );
        last = now;
    }
    println!(
        "| total ({minutes} min) | {} | {} | {} | {} |",
        last[0] - first[0],
        last[1] - first[1],
        last[2] - first[2],
        last[3] - first[3]
    );
    let gave_up: Vec<&String> = listener
        .seen
        .iter()
        .filter(|l| l.starts_with("keeper gave_up"))
        .collect();
    println!("give-ups: {gave_up:?}");
}
