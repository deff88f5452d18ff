//! How the keeper's costs grow with the number of kept relays, driving the behaviour directly (no network):
//! n relays that are all reserved lose their connection at once, then every retry fires.
//!
//! ```text
//! cargo bench --bench scale
//! ```
//!
//! Reports time per loss event, per timer firing and per `poll` with every relay waiting, for n = 100, 1k,
//! 10k and 100k, and prints the memory per kept relay (heap bytes, counted by a wrapping allocator).

use std::{
    alloc::{GlobalAlloc, Layout, System},
    hint::black_box,
    sync::atomic::{AtomicUsize, Ordering},
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode};
use libp2p::{core::ConnectedPoint, swarm::NetworkBehaviour, Multiaddr, PeerId};
use libp2p_relay_keeper::{Config, RelayKeeper};

#[path = "../tests/common/drive.rs"]
mod drive;

/// Counts the heap bytes in use, to report memory per kept relay.
struct Counting;

static IN_USE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        IN_USE.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const SIZES: [usize; 4] = [100, 1_000, 10_000, 100_000];

/// n relays, each reserved on its own connection (connection id = index).
struct Fleet {
    keeper: RelayKeeper,
    relays: Vec<(PeerId, Multiaddr)>,
    /// Each relay's connection as the swarm reports it, made once: a swarm has it already.
    endpoints: Vec<ConnectedPoint>,
}

fn relays(n: usize) -> Vec<(PeerId, Multiaddr)> {
    (0..n)
        .map(|i| {
            let peer = PeerId::random();
            let addr = format!(
                "/ip4/10.{}.{}.{}/tcp/4001/p2p/{peer}",
                i >> 16 & 255,
                i >> 8 & 255,
                i & 255
            );
            (peer, addr.parse().unwrap())
        })
        .collect()
}

/// A keeper holding a reservation on each of `relays`, through connection `index`.
fn reserved_keeper(relays: &[(PeerId, Multiaddr)], retry_after: Duration) -> RelayKeeper {
    // No re-checks: every relay is lost right after its reservation (a flap, presumed a restart), and the
    // re-checks every few seconds that follow would be timers of their own beside the waits measured here.
    let config = Config::default()
        .with_base_delay(retry_after)
        .with_max_delay(retry_after)
        .with_jitter(false)
        .with_max_attempts(None)
        .with_recheck(None);
    let mut keeper = RelayKeeper::new(config);
    for (i, (peer, addr)) in relays.iter().enumerate() {
        keeper.add_relay(addr.clone()).unwrap();
        drive::connect(&mut keeper, *peer, i, addr);
    }
    drive::accept_reservations(&mut keeper);
    keeper
}

impl Fleet {
    fn reserved(n: usize, retry_after: Duration) -> Self {
        Self::keep(relays(n), retry_after)
    }

    fn keep(relays: Vec<(PeerId, Multiaddr)>, retry_after: Duration) -> Self {
        let keeper = reserved_keeper(&relays, retry_after);
        let endpoints = relays.iter().map(|(_, address)| drive::dialer(address)).collect();
        Self {
            keeper,
            relays,
            endpoints,
        }
    }

    fn lose_all(&mut self) {
        for (i, ((peer, _), endpoint)) in self.relays.iter().zip(&self.endpoints).enumerate() {
            drive::disconnect(&mut self.keeper, *peer, i, endpoint);
        }
    }
}

/// Benchmarks `measure(n)`, the time per relay of one run on a fresh fleet of n, for every size; fleets are
/// built outside the timing.
fn per_relay(c: &mut Criterion, name: &str, measure: impl Fn(usize) -> Duration) {
    let mut group = c.benchmark_group(name);
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(200));
    for n in SIZES {
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter_custom(|iters| (0..iters).map(|_| measure(n)).sum())
        });
    }
    group.finish();
}

fn loss_events(c: &mut Criterion) {
    per_relay(c, "loss event", |n| {
        let mut fleet = Fleet::reserved(n, Duration::from_secs(3600));
        let start = Instant::now();
        fleet.lose_all();
        let elapsed = start.elapsed();
        black_box(&fleet.keeper);
        elapsed / n as u32
    });
    // As a swarm delivers them: it polls the behaviour until `Pending` after each event, so the keeper's queue
    // never holds more than one loss's work.
    per_relay(c, "loss event, polled", |n| {
        let mut fleet = Fleet::reserved(n, Duration::from_secs(3600));
        let mut cx = Context::from_waker(Waker::noop());
        let start = Instant::now();
        for (i, ((peer, _), endpoint)) in fleet.relays.iter().zip(&fleet.endpoints).enumerate() {
            drive::disconnect(&mut fleet.keeper, *peer, i, endpoint);
            while let Poll::Ready(action) = fleet.keeper.poll(&mut cx) {
                black_box(action);
            }
        }
        start.elapsed() / n as u32
    });
}

fn timer_firings(c: &mut Criterion) {
    per_relay(c, "timer firing", |n| {
        // Long enough that no retry is due before every loss has been fed.
        let retry_after = Duration::from_micros(10 * n as u64) + Duration::from_millis(5);
        let mut fleet = Fleet::reserved(n, retry_after);
        fleet.lose_all();
        drive::drain(&mut fleet.keeper);
        std::thread::sleep(retry_after);
        // Every retry is due: each poll fires one and raises its dial.
        let start = Instant::now();
        let dials = drive::drain(&mut fleet.keeper).len();
        let elapsed = start.elapsed();
        assert_eq!(dials, n);
        elapsed / n as u32
    });
}

fn idle_polls(c: &mut Criterion) {
    let mut group = c.benchmark_group("poll with every relay waiting");
    for n in SIZES {
        let mut fleet = Fleet::reserved(n, Duration::from_secs(3600));
        fleet.lose_all();
        drive::drain(&mut fleet.keeper);
        let mut cx = Context::from_waker(Waker::noop());
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| assert!(black_box(fleet.keeper.poll(&mut cx)).is_pending()))
        });
    }
    group.finish();
}

/// Heap bytes in use from `before` on, per one of `n`.
fn bytes_each(before: usize, n: usize) -> usize {
    IN_USE.load(Ordering::Relaxed).saturating_sub(before) / n
}

fn memory_per_relay(_: &mut Criterion) {
    for n in SIZES {
        // The addresses are the application's; the keeper shares them.
        let relays = relays(n);
        let before = IN_USE.load(Ordering::Relaxed);
        let mut fleet = Fleet::keep(relays, Duration::from_secs(3600));
        let endpoints = fleet.endpoints.len() * std::mem::size_of::<ConnectedPoint>();
        let reserved = bytes_each(before + endpoints, n);
        // A burst: every relay lost at once, each loss announced; what is left once the swarm took it all.
        fleet.lose_all();
        drive::drain(&mut fleet.keeper);
        let after_burst = bytes_each(before + endpoints, n);
        println!(
            "memory per kept relay, n = {n:>6}: reserved {reserved} bytes, waiting after a burst of losses {after_burst} bytes"
        );
        drop(fleet);
        // Peers the node is connected to that are not relays: the keeper remembers their connections, in case
        // one is added as a relay later.
        let peers = self::relays(n);
        let before = IN_USE.load(Ordering::Relaxed);
        let mut keeper = RelayKeeper::new(Config::default());
        for (i, (peer, addr)) in peers.iter().enumerate() {
            drive::connect(&mut keeper, *peer, i, addr);
        }
        println!(
            "memory per connected peer that is not a relay, n = {n:>6}: {} bytes",
            bytes_each(before, n)
        );
    }
}

criterion_group!(benches, loss_events, timer_firings, idle_polls, memory_per_relay);
criterion_main!(benches);
