//! The probe's clock on a clock of the tests' own: every input in every state, and the probe's timing, with
//! no time passing.

use super::*;

const MS: Duration = Duration::from_millis(1);
const SECOND: Duration = Duration::from_secs(1);

/// A 3 s interval and a 1 s floor under the adaptive timeout.
fn probe() -> Probe {
    Probe::new(3 * SECOND, SECOND)
}

fn clock_in(state: State) -> ProbeClock {
    ProbeClock {
        state,
        ..ProbeClock::new(probe())
    }
}

/// Every input the clock takes, each a method of its own.
#[derive(Debug, Clone, Copy)]
enum Input {
    /// `handle_timeout` before the state's deadline.
    Early,
    /// `handle_timeout` at the state's deadline.
    Timeout,
    TurnOn,
    TurnOff,
    ProbeNow,
    Answered,
    StreamFailed,
    Vouched,
    Unsupported,
}

impl Input {
    /// The table's columns, in order.
    const ALL: [Input; 9] = [
        Input::Early,
        Input::Timeout,
        Input::TurnOn,
        Input::TurnOff,
        Input::ProbeNow,
        Input::Answered,
        Input::StreamFailed,
        Input::Vouched,
        Input::Unsupported,
    ];

    /// Its column: a new input fails to compile here until the table has a column for it.
    fn column(self) -> usize {
        match self {
            Input::Early => 0,
            Input::Timeout => 1,
            Input::TurnOn => 2,
            Input::TurnOff => 3,
            Input::ProbeNow => 4,
            Input::Answered => 5,
            Input::StreamFailed => 6,
            Input::Vouched => 7,
            Input::Unsupported => 8,
        }
    }

    /// Feeds the input at `now`, or at `deadline` for [`Input::Timeout`]; an answer's round trip is 100 ms.
    fn apply(self, clock: &mut ProbeClock, now: Instant, deadline: Instant) -> Option<ProbeAction> {
        match self {
            Input::Early => return clock.handle_timeout(now),
            Input::Timeout => return clock.handle_timeout(deadline),
            Input::TurnOn => clock.turn_on(now),
            Input::TurnOff => clock.turn_off(),
            Input::ProbeNow => clock.probe_now(now),
            Input::Answered => clock.answered(100 * MS, now),
            Input::StreamFailed => clock.stream_failed(now),
            Input::Vouched => clock.vouched(now),
            Input::Unsupported => clock.unsupported(),
        }
        None
    }
}

/// Its row: a new state fails to compile here until the table has a row for it.
fn row(state: State) -> usize {
    match state {
        State::Off => 0,
        State::Due { .. } => 1,
        State::Sent { .. } => 2,
        State::Late { .. } => 3,
        State::Unsupported { on: false } => 4,
        State::Unsupported { on: true } => 5,
    }
}

/// What an input leaves: the clock's state, and what it asked for.
type Outcome = (State, Option<ProbeAction>);

/// Every input in every state: the state it leaves, what it asks for, and whether the timeout learned a round
/// trip. Inputs come at `now`, `handle_timeout` also at the deadline 2 s later; before any answer the timeout
/// is 5 s, and the interval 3 s.
#[test]
fn every_input_in_every_state() {
    let now = Instant::now();
    let at = |ms: u64| now + Duration::from_millis(ms);
    let deadline = at(2000);
    let (off, send, silent) = (State::Off, Some(ProbeAction::Send), Some(ProbeAction::Silent));
    let due = |ms| State::Due { at: at(ms) };
    let sent = |ms| State::Sent { late_at: at(ms) };
    let late = |ms| State::Late { silent_at: at(ms) };
    let unsupported = |on| State::Unsupported { on };
    let [never, waiting, out, late_out, mute, mute_on] = [
        off,
        due(2000),
        sent(2000),
        late(2000),
        unsupported(false),
        unsupported(true),
    ];
    let rows: [(State, [Outcome; 9]); 6] = [
        // Early, Timeout, TurnOn, TurnOff, ProbeNow, Answered, StreamFailed, Vouched, Unsupported
        (
            never,
            [
                (off, None),
                (off, None),
                (due(0), None),
                (off, None),
                (off, None),
                (off, None),
                (off, None),
                (off, None),
                (mute, None),
            ],
        ),
        (
            waiting,
            [
                (waiting, None),
                (sent(7000), send),
                (waiting, None),
                (off, None),
                (due(0), None),
                (due(3000), None),
                (due(3000), None),
                (due(3000), None),
                (mute_on, None),
            ],
        ),
        (
            out,
            [
                (out, None),
                (late(7000), None),
                (out, None),
                (off, None),
                (out, None),
                (due(3000), None),
                (due(3000), None),
                (out, None),
                (mute_on, None),
            ],
        ),
        (
            late_out,
            [
                (late_out, None),
                (off, silent),
                (late_out, None),
                (off, None),
                (late_out, None),
                (due(3000), None),
                (due(3000), None),
                (late_out, None),
                (mute_on, None),
            ],
        ),
        (
            mute,
            [
                (mute, None),
                (mute, None),
                (mute_on, None),
                (mute, None),
                (mute, None),
                (mute, None),
                (mute, None),
                (mute, None),
                (mute, None),
            ],
        ),
        (
            mute_on,
            [
                (mute_on, None),
                (mute_on, None),
                (mute_on, None),
                (mute, None),
                (mute_on, None),
                (mute_on, None),
                (mute_on, None),
                (mute_on, None),
                (mute_on, None),
            ],
        ),
    ];
    for (number, (state, _)) in rows.iter().enumerate() {
        assert_eq!(row(*state), number, "the rows in order, each state once");
    }
    for (number, input) in Input::ALL.into_iter().enumerate() {
        assert_eq!(input.column(), number, "the columns in order, each input once");
    }
    for (state, expected) in rows {
        for input in Input::ALL {
            let mut clock = clock_in(state);
            let action = input.apply(&mut clock, now, deadline);
            let (next, asked) = expected[input.column()];
            assert_eq!((clock.state, action), (next, asked), "{input:?} in {state:?}");
            let learned = matches!(input, Input::Answered) && clock.is_running();
            let timeout = if learned { SECOND } else { 5 * SECOND };
            assert_eq!(
                clock.timeout(),
                timeout,
                "{input:?} in {state:?}: only an answer teaches it"
            );
        }
    }
}

/// What the handler reads off each state.
#[test]
fn what_each_state_tells_the_handler() {
    let now = Instant::now();
    // poll_timeout, is_on, is_running, awaits_answer
    let rows = [
        (State::Off, None, false, false, false),
        (State::Due { at: now }, Some(now), true, true, false),
        (State::Sent { late_at: now }, Some(now), true, true, true),
        (State::Late { silent_at: now }, Some(now), true, true, true),
        (State::Unsupported { on: false }, None, false, false, false),
        (State::Unsupported { on: true }, None, true, false, false),
    ];
    for (number, (state, deadline, on, running, awaits)) in rows.into_iter().enumerate() {
        assert_eq!(row(state), number, "each state once");
        let clock = clock_in(state);
        let told = (
            clock.poll_timeout(),
            clock.is_on(),
            clock.is_running(),
            clock.awaits_answer(),
        );
        assert_eq!(told, (deadline, on, running, awaits), "{state:?}");
    }
}

/// Feeds `handle_timeout` at each deadline until `until`, and returns what it asked for, with when.
fn run_until(clock: &mut ProbeClock, until: Instant) -> Vec<(Instant, ProbeAction)> {
    let mut asked = Vec::new();
    while let Some(at) = clock.poll_timeout().filter(|at| *at <= until) {
        asked.extend(clock.handle_timeout(at).map(|action| (at, action)));
    }
    asked
}

/// Turned on, the first probe goes out at once; unanswered, it is late after 5 s (nothing is known of the link
/// yet), and the link is silent after twice that, when the clock goes off.
#[test]
fn an_unanswered_first_probe_makes_the_link_silent_after_twice_five_seconds() {
    let start = Instant::now();
    let mut clock = ProbeClock::new(probe());
    clock.turn_on(start);
    let asked = run_until(&mut clock, start + 60 * SECOND);
    assert_eq!(
        asked,
        [
            (start, ProbeAction::Send),
            (start + 10 * SECOND, ProbeAction::Silent)
        ]
    );
    assert!(!clock.is_on());
}

/// Once answered, the timeout is `max(floor, srtt + 4 rttvar)` of the answers, and the link is silent after
/// twice that; the next probe is due an interval after the answer, not after the probe.
#[test]
fn the_timeout_follows_the_answers_and_the_interval_the_last_answer() {
    let start = Instant::now();
    let mut clock = ProbeClock::new(probe());
    clock.turn_on(start);
    assert_eq!(clock.handle_timeout(start), Some(ProbeAction::Send));
    // A slow link: 400 ms, so 400 + 4 x 200 = 1.2 s, above the 1 s floor.
    clock.answered(400 * MS, start + 400 * MS);
    assert_eq!(
        clock.poll_timeout(),
        Some(start + 3400 * MS),
        "an interval after the answer"
    );
    let asked = run_until(&mut clock, start + 60 * SECOND);
    let sent = start + 3400 * MS;
    assert_eq!(
        asked,
        [(sent, ProbeAction::Send), (sent + 2400 * MS, ProbeAction::Silent)]
    );

    let mut fast = ProbeClock::new(probe());
    fast.turn_on(start);
    fast.handle_timeout(start);
    fast.answered(MS, start + MS);
    assert_eq!(fast.timeout(), SECOND, "the floor");
}

/// An answer in the second timeout still counts: late is not dead.
#[test]
fn a_late_answer_keeps_the_link() {
    let start = Instant::now();
    let mut clock = ProbeClock::new(probe());
    clock.turn_on(start);
    clock.handle_timeout(start);
    assert_eq!(clock.handle_timeout(start + 5 * SECOND), None, "late");
    clock.answered(9 * SECOND, start + 9 * SECOND);
    assert_eq!(clock.poll_timeout(), Some(start + 12 * SECOND));
    assert!(clock.is_running());
}

/// A relay's ping that vouches for this end's echo moves the next probe back, but never answers a probe out.
#[test]
fn a_vouching_ping_postpones_the_next_probe_but_answers_none() {
    let start = Instant::now();
    let mut clock = ProbeClock::new(probe());
    clock.turn_on(start);
    clock.handle_timeout(start);
    clock.answered(10 * MS, start + 10 * MS);
    clock.vouched(start + 2 * SECOND);
    assert_eq!(
        clock.poll_timeout(),
        Some(start + 5 * SECOND),
        "an interval after the vouching ping"
    );
    assert_eq!(clock.handle_timeout(start + 5 * SECOND), Some(ProbeAction::Send));
    clock.vouched(start + 5500 * MS);
    assert!(clock.awaits_answer(), "the probe out stays unanswered");
    assert_eq!(
        run_until(&mut clock, start + 60 * SECOND),
        [(start + 7 * SECOND, ProbeAction::Silent)]
    );
}

/// Asked to probe now, the clock does so at once, unless a probe is out.
#[test]
fn probe_now_sends_at_once_unless_a_probe_is_out() {
    let start = Instant::now();
    let mut clock = ProbeClock::new(probe());
    clock.turn_on(start);
    clock.handle_timeout(start);
    clock.answered(10 * MS, start + 10 * MS);
    clock.probe_now(start + SECOND);
    assert_eq!(clock.handle_timeout(start + SECOND), Some(ProbeAction::Send));
    let late_at = clock.poll_timeout();
    clock.probe_now(start + 1500 * MS);
    assert_eq!(clock.poll_timeout(), late_at, "the probe out keeps its deadline");
}

/// A remote that does not speak ping is asked once and then left alone: never probed again and never cut, for
/// an hour, turned off and on again, whatever else happens; it stays on, so its own pings are still answered.
#[test]
fn a_remote_without_ping_is_asked_once_and_never_cut() {
    let start = Instant::now();
    let mut clock = ProbeClock::new(probe());
    clock.turn_on(start);
    assert_eq!(clock.handle_timeout(start), Some(ProbeAction::Send), "asked once");
    clock.unsupported();
    let mut asked = Vec::new();
    for second in 0..3600 {
        let now = start + second * SECOND;
        match second % 5 {
            0 => clock.probe_now(now),
            1 => clock.vouched(now),
            2 => clock.stream_failed(now),
            3 => {
                clock.turn_off();
                clock.turn_on(now);
            }
            _ => clock.answered(10 * MS, now),
        }
        asked.extend(clock.handle_timeout(now));
        assert_eq!(clock.poll_timeout(), None, "no deadline at {second} s");
    }
    assert!(asked.is_empty(), "never asked again, never cut: {asked:?}");
    assert!(clock.is_on(), "still watched");
}
