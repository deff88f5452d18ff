//! Prometheus metrics of a [`RelayKeeper`](crate::RelayKeeper), registered under the `relay_keeper` prefix.
//! The engine reports to [`Metrics`] whatever the build; without the `metrics` feature it records nothing.

use std::time::{Duration, Instant};

#[cfg(feature = "metrics")]
use instruments::Instruments;
#[cfg(feature = "metrics")]
use prometheus_client::registry::Registry;

use crate::{Event, RelayStatus};

#[cfg(feature = "metrics")]
mod instruments;

/// What the engine reports its transitions, events and probe answers to.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    #[cfg(feature = "metrics")]
    instruments: Option<Instruments>,
}

#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
impl Metrics {
    /// Registers the instruments in `registry`; `relays` are the statuses of the relays kept already,
    /// `pool_target` the pool's slots (0 without a pool).
    #[cfg(feature = "metrics")]
    pub(crate) fn register(
        &mut self,
        registry: &mut Registry,
        relays: impl Iterator<Item = RelayStatus>,
        pool_target: usize,
        now: Instant,
    ) {
        let instruments = Instruments::new(registry, pool_target);
        for status in relays {
            instruments.on_transition(None, Some(status), None, now);
        }
        self.instruments = Some(instruments);
    }

    /// A relay changed status (`None`: it was not kept before, or is not kept any more). `restored_after`: the
    /// transition ended an outage that started then.
    pub(crate) fn on_transition(
        &self,
        before: Option<RelayStatus>,
        after: Option<RelayStatus>,
        restored_after: Option<Instant>,
        now: Instant,
    ) {
        #[cfg(feature = "metrics")]
        if let Some(instruments) = &self.instruments {
            instruments.on_transition(before, after, restored_after, now);
        }
    }

    pub(crate) fn on_event(&self, event: &Event) {
        #[cfg(feature = "metrics")]
        if let Some(instruments) = &self.instruments {
            instruments.on_event(event);
        }
    }

    /// The pool gave a relay's slot to a standby.
    pub(crate) fn on_failover(&self) {
        #[cfg(feature = "metrics")]
        if let Some(instruments) = &self.instruments {
            instruments.failovers.inc();
        }
    }

    /// The kept relays now, by where they came from.
    pub(crate) fn on_candidates(&self, given: usize, discovered: usize) {
        #[cfg(feature = "metrics")]
        if let Some(instruments) = &self.instruments {
            for (source, count) in [("given", given), ("discovered", discovered)] {
                instruments
                    .candidates
                    .get_or_create(&instruments::SourceLabel { source })
                    .set(i64::try_from(count).unwrap_or(i64::MAX));
            }
        }
    }

    pub(crate) fn on_probe_answered(&self, rtt: Duration) {
        #[cfg(feature = "metrics")]
        if let Some(instruments) = &self.instruments {
            instruments.probe_rtt.observe(rtt.as_secs_f64());
        }
    }
}
