//! Transition tables for the state machines' tests: a machine's every (state, input) pair, one row each, kept in
//! a text file beside its tests (`state input -> what it did`), and compared whole with what the machine does.

/// Fails unless `seen` (one row per line) is `table` without its `#` comment lines; names `machine` and shows
/// every row that differs, then the whole table as the machine runs, to copy once the difference is intended.
pub(crate) fn assert_table(machine: &str, seen: &str, table: &str) {
    let expected: String = table
        .lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| format!("{line}\n"))
        .collect();
    if seen == expected {
        return;
    }
    for (got, want) in seen.lines().zip(expected.lines()) {
        if got != want {
            eprintln!("got  {got}\nwant {want}");
        }
    }
    panic!(
        "the table and the {machine} disagree (rows above); the whole table as the {machine} runs:\n{seen}"
    );
}
