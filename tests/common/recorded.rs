//! A process's stdout lines, each with the instant it arrived, for measurements that need to know when.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use super::{process::Process, AbortOnDrop};

/// A process's stdout lines, each with the instant it arrived, read by a task that owns the process: dropping
/// this kills it.
pub struct Recorded {
    name: String,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
    _task: AbortOnDrop,
}

impl Recorded {
    pub fn new(name: &str, mut process: Process) -> Self {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let task = tokio::spawn(async move {
            while let Some(line) = process.next_line().await {
                sink.lock().unwrap().push((Instant::now(), line));
            }
        });
        Self {
            name: name.to_owned(),
            lines,
            _task: AbortOnDrop(task),
        }
    }

    pub fn snapshot(&self) -> Vec<(Instant, String)> {
        self.lines.lock().unwrap().clone()
    }

    /// Looks at the lines every 20 ms until `pick` finds something, at most `limit`.
    pub async fn wait<T>(
        &self,
        limit: Duration,
        mut pick: impl FnMut(&[(Instant, String)]) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(found) = pick(&self.snapshot()) {
                return Some(found);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// [`wait`](Self::wait), failing the test with what the process printed if nothing comes.
    pub async fn expect<T>(
        &self,
        what: &str,
        limit: Duration,
        pick: impl FnMut(&[(Instant, String)]) -> Option<T>,
    ) -> T {
        match self.wait(limit, pick).await {
            Some(found) => found,
            None => panic!("no {what} within {limit:?}; {}", self.printed()),
        }
    }

    pub fn printed(&self) -> String {
        let lines: Vec<String> = self.snapshot().into_iter().map(|(_, l)| l).collect();
        format!("`{}` printed:\n{}", self.name, lines.join("\n"))
    }
}

impl Recorded {
    /// When a line starting with `prefix` first came at or after `since`.
    pub fn first(&self, prefix: &str, since: Instant) -> Option<Instant> {
        self.snapshot()
            .into_iter()
            .find(|(at, line)| *at >= since && line.starts_with(prefix))
            .map(|(at, _)| at)
    }

    /// Kills the process, as dropping this does.
    pub fn stop(self) {}
}
