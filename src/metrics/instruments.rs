//! The Prometheus instruments behind [`Metrics`](super::Metrics).

use std::time::Instant;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::Registry,
};

use crate::{Event, RelayStatus};

/// The `status` label: the [`RelayStatus`] variant without its fields, in Prometheus' lower snake case.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
struct Status(&'static str);

impl From<RelayStatus> for Status {
    fn from(status: RelayStatus) -> Self {
        Status(match status {
            RelayStatus::Connecting => "connecting",
            RelayStatus::Connected => "connected",
            RelayStatus::Reserved => "reserved",
            RelayStatus::Waiting { .. } => "waiting",
            RelayStatus::GaveUp { .. } => "gave_up",
            RelayStatus::Stopped => "stopped",
            RelayStatus::Standby => "standby",
            RelayStatus::Paused => "paused",
        })
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: &'static str,
}

/// The `source` label of the pool's candidates: `given` to `add_relay`, or `discovered`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct SourceLabel {
    pub(super) source: &'static str,
}

/// The `cause` label: [`CauseKind::as_str`](crate::CauseKind::as_str).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabel {
    cause: &'static str,
}

/// The keeper's instruments; updated from the transitions and events of its relays.
#[derive(Debug)]
pub(super) struct Instruments {
    relays: Family<StatusLabel, Gauge>,
    reconnect_attempts: Family<CauseLabel, Counter>,
    reconnects: Counter,
    reservations_restored: Counter,
    give_ups: Counter,
    restore_duration: Histogram,
    pub(super) probe_rtt: Histogram,
    pool_target: Gauge,
    pub(super) failovers: Counter,
    pub(super) candidates: Family<SourceLabel, Gauge>,
}

impl Instruments {
    /// `pool_target`: the pool's slots ([`Config::with_max_reservations`](crate::Config::with_max_reservations)),
    /// 0 without a pool.
    pub(super) fn new(registry: &mut Registry, pool_target: usize) -> Self {
        let registry = registry.sub_registry_with_prefix("relay_keeper");
        let metrics = Self {
            relays: Family::default(),
            reconnect_attempts: Family::default(),
            reconnects: Counter::default(),
            reservations_restored: Counter::default(),
            give_ups: Counter::default(),
            // 10 ms to about 45 min.
            restore_duration: Histogram::new(exponential_buckets(0.01, 2.0, 18)),
            // 100 µs to about 3 s.
            probe_rtt: Histogram::new(exponential_buckets(0.0001, 2.0, 15)),
            pool_target: Gauge::default(),
            failovers: Counter::default(),
            candidates: Family::default(),
        };
        metrics
            .pool_target
            .set(i64::try_from(pool_target).unwrap_or(i64::MAX));
        registry.register(
            "relays",
            "Kept relays, by what the keeper is doing about them",
            metrics.relays.clone(),
        );
        registry.register(
            "reconnect_attempts",
            "Retries scheduled, re-dials and re-reservations alike, by the cause of the loss or failure \
             (awaiting_hop: a fallback, used only if the relay never offers HOP)",
            metrics.reconnect_attempts.clone(),
        );
        registry.register(
            "reconnects",
            "Connections to a relay restored after a loss",
            metrics.reconnects.clone(),
        );
        registry.register(
            "reservations_restored",
            "Reservations live again after an outage",
            metrics.reservations_restored.clone(),
        );
        registry.register(
            "give_ups",
            "Relays given up on after max_attempts retries",
            metrics.give_ups.clone(),
        );
        registry.register(
            "restore_duration_seconds",
            "Time from a relay leaving its goal state to being back in it",
            metrics.restore_duration.clone(),
        );
        registry.register(
            "probe_rtt_seconds",
            "Round trip of the liveness probe on relay connections",
            metrics.probe_rtt.clone(),
        );
        registry.register(
            "pool_target",
            "Reservations the relay pool holds at most (with_max_reservations); 0 without a pool",
            metrics.pool_target.clone(),
        );
        registry.register(
            "pool_candidates",
            "Kept relays by where they came from: given to add_relay, or discovered among connected peers",
            metrics.candidates.clone(),
        );
        registry.register(
            "failovers",
            "Slots of the relay pool given to a standby after the relay holding it lost its goal",
            metrics.failovers.clone(),
        );
        metrics
    }

    pub(super) fn on_transition(
        &self,
        before: Option<RelayStatus>,
        after: Option<RelayStatus>,
        restored_after: Option<Instant>,
        now: Instant,
    ) {
        let before = before.map(Status::from);
        let after = after.map(Status::from);
        if before != after {
            if let Some(status) = before {
                self.relays.get_or_create(&StatusLabel { status: status.0 }).dec();
            }
            if let Some(status) = after {
                self.relays.get_or_create(&StatusLabel { status: status.0 }).inc();
            }
        }
        if let Some(since) = restored_after {
            self.restore_duration
                .observe(now.saturating_duration_since(since).as_secs_f64());
            if after == Some(Status::from(RelayStatus::Reserved)) {
                self.reservations_restored.inc();
            }
        }
    }

    pub(super) fn on_event(&self, event: &Event) {
        let counter = match event {
            Event::ReconnectScheduled { cause, .. } => self
                .reconnect_attempts
                .get_or_create(&CauseLabel {
                    cause: cause.kind.as_str(),
                })
                .clone(),
            Event::Connected { .. } => self.reconnects.clone(),
            Event::GaveUp { .. } => self.give_ups.clone(),
            Event::Reserved { .. }
            | Event::Reachable { .. }
            | Event::Unreachable { .. }
            | Event::FailedOver { .. }
            | Event::PoolShort { .. }
            | Event::PoolFull { .. } => return,
        };
        counter.inc();
    }
}
