//! The liveness probe's clock, sans-IO in the style of quinn-proto: it takes what happened on the connection
//! with the current `Instant` and says when it next needs the time and what to do then, with no timer or
//! stream inside. The handler owns the one timer and the streams; tests drive the clock on their own time.
//!
//! Every method matches over every state, with no catch-all arm, so a new state is handled on purpose.

use std::time::{Duration, Instant};

use crate::{config::Probe, rtt::RttEstimator};

/// Where the probe of one connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not probing: the connection is not watched, or it went silent.
    Off,
    /// The next probe goes out at `at`: `interval` after the remote was last heard from (at once when
    /// turned on or asked to).
    Due { at: Instant },
    /// A probe is out; without an answer by `late_at` it is late.
    Sent { late_at: Instant },
    /// The probe is late: one timeout passed without an answer, and a second one, at `silent_at`, means the
    /// link is silent.
    Late { silent_at: Instant },
    /// The remote does not speak ping, so it is never probed again; `on` only says whether the connection
    /// is watched, as the handler answers the remote's pings while it is.
    Unsupported { on: bool },
}

/// What the clock asks of the handler when one of its deadlines passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProbeAction {
    /// Send a probe now, on the open stream or on one opened for it.
    Send,
    /// The probe got no answer for two timeouts: the link is silent and the clock went off.
    Silent,
}

/// The liveness probe's clock for one connection.
#[derive(Debug)]
pub(crate) struct ProbeClock {
    probe: Probe,
    rtt: RttEstimator,
    state: State,
}

impl ProbeClock {
    /// A clock that is off until [`turn_on`](Self::turn_on).
    pub(crate) fn new(probe: Probe) -> Self {
        Self {
            probe,
            rtt: RttEstimator::default(),
            state: State::Off,
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) has something to do: `None` while the probe does not
    /// run, so the handler's one timer serves both the next probe and the deadline of the one out.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Due { at } => Some(at),
            State::Sent { late_at } => Some(late_at),
            State::Late { silent_at } => Some(silent_at),
            State::Off | State::Unsupported { .. } => None,
        }
    }

    /// Moves on once the deadline passed: sends the probe that is due, makes the one out late, or calls the
    /// link silent.
    pub(crate) fn handle_timeout(&mut self, now: Instant) -> Option<ProbeAction> {
        match self.state {
            State::Due { at } if now >= at => {
                self.state = State::Sent {
                    late_at: now + self.timeout(),
                };
                Some(ProbeAction::Send)
            }
            State::Sent { late_at } if now >= late_at => {
                // One late answer is no death: wait another timeout before calling the link silent.
                tracing::debug!(timeout = ?self.timeout(), "probe late; waiting one more timeout");
                self.state = State::Late {
                    silent_at: now + self.timeout(),
                };
                None
            }
            State::Late { silent_at } if now >= silent_at => {
                self.state = State::Off;
                Some(ProbeAction::Silent)
            }
            State::Due { .. }
            | State::Sent { .. }
            | State::Late { .. }
            | State::Off
            | State::Unsupported { .. } => None,
        }
    }

    /// The connection is watched: the first probe goes out at once, as until it is answered the timeout knows
    /// nothing of the link (5 s), so a death in the first interval would take that long to see.
    pub(crate) fn turn_on(&mut self, now: Instant) {
        match self.state {
            State::Off => self.state = State::Due { at: now },
            State::Due { .. } | State::Sent { .. } | State::Late { .. } => {}
            State::Unsupported { .. } => self.state = State::Unsupported { on: true },
        }
    }

    /// The connection is no longer watched; a probe out is forgotten.
    pub(crate) fn turn_off(&mut self) {
        match self.state {
            State::Off | State::Due { .. } | State::Sent { .. } | State::Late { .. } => {
                self.state = State::Off
            }
            State::Unsupported { .. } => self.state = State::Unsupported { on: false },
        }
    }

    /// Someone wants the link checked now; a probe already out will tell soon enough.
    pub(crate) fn probe_now(&mut self, now: Instant) {
        match self.state {
            State::Due { .. } => self.state = State::Due { at: now },
            State::Off | State::Sent { .. } | State::Late { .. } | State::Unsupported { .. } => {}
        }
    }

    /// The probe's echo came back after `rtt`: the link works, the timeout learns its round trip, and the next
    /// probe is due a whole interval from now.
    pub(crate) fn answered(&mut self, rtt: Duration, now: Instant) {
        match self.state {
            State::Due { .. } | State::Sent { .. } | State::Late { .. } => {
                self.rtt.sample(rtt);
                self.heard(now);
            }
            State::Off | State::Unsupported { .. } => {}
        }
    }

    /// The remote reset the probe's stream or refused to open it: an answer too, though without a round trip
    /// to learn from.
    pub(crate) fn stream_failed(&mut self, now: Instant) {
        match self.state {
            State::Due { .. } | State::Sent { .. } | State::Late { .. } => self.heard(now),
            State::Off | State::Unsupported { .. } => {}
        }
    }

    /// The remote pinged again on a stream this end had echoed on, so that echo reached it: the link carried
    /// traffic both ways lately, and the next probe is due a whole interval from now (when both ends probe,
    /// mostly the one with the shorter interval pays). A probe out stays unanswered, as that echo may have
    /// left before it. A remote's first ping on a stream is no input at all: it shows only that the remote's
    /// packets arrive, and a link that carries them one way only (a broken uplink, a one-way black hole) is as
    /// dead to a relay client as a silent one.
    pub(crate) fn vouched(&mut self, now: Instant) {
        match self.state {
            State::Due { .. } => self.heard(now),
            State::Off | State::Sent { .. } | State::Late { .. } | State::Unsupported { .. } => {}
        }
    }

    /// The remote answered the probe's stream with "unsupported": it is never probed again, and never cut
    /// for not answering.
    pub(crate) fn unsupported(&mut self) {
        match self.state {
            State::Off => self.state = State::Unsupported { on: false },
            State::Due { .. } | State::Sent { .. } | State::Late { .. } => {
                self.state = State::Unsupported { on: true }
            }
            State::Unsupported { .. } => {}
        }
    }

    /// Whether the connection is watched, whether or not it can be probed: the handler answers the remote's
    /// pings while it is.
    pub(crate) fn is_on(&self) -> bool {
        match self.state {
            State::Off => false,
            State::Due { .. } | State::Sent { .. } | State::Late { .. } => true,
            State::Unsupported { on } => on,
        }
    }

    /// Whether the probe runs: only then does its stream deserve polling.
    pub(crate) fn is_running(&self) -> bool {
        match self.state {
            State::Due { .. } | State::Sent { .. } | State::Late { .. } => true,
            State::Off | State::Unsupported { .. } => false,
        }
    }

    /// Whether a probe is out, so a stream that opens now carries it at once.
    pub(crate) fn awaits_answer(&self) -> bool {
        match self.state {
            State::Sent { .. } | State::Late { .. } => true,
            State::Off | State::Due { .. } | State::Unsupported { .. } => false,
        }
    }

    /// How long a probe sent now may go unanswered before it is late; the link is silent after twice that.
    pub(crate) fn timeout(&self) -> Duration {
        self.rtt.timeout(self.probe.timeout)
    }

    /// The remote answered what this end sent: the next probe is due a whole interval from now.
    fn heard(&mut self, now: Instant) {
        self.state = State::Due {
            at: now + self.probe.interval,
        };
    }
}

#[cfg(test)]
mod tests;
