//! What a peer that wants to reach a kept node sees: a fresh `dcutr --mode dial` process started at a fixed
//! pace, each trying for a while to reach the node through a relay. Dropping a [`Prober`] kills every dialer.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use tokio::task::JoinSet;

use super::{process::Host, AbortOnDrop};

/// When a dialer started, and when it reached the node if it did.
pub type ProbeResult = (Instant, Option<Instant>);

/// Dialers started one every `every` on `host`, each given `limit` to reach `target` through `relay`.
pub struct Prober {
    results: Arc<Mutex<Vec<ProbeResult>>>,
    stopping: Arc<AtomicBool>,
    limit: Duration,
    _task: AbortOnDrop,
}

impl Prober {
    pub fn start(
        host: Host<'static>,
        relay: String,
        target: String,
        every: Duration,
        limit: Duration,
    ) -> Self {
        let results = Arc::new(Mutex::new(Vec::new()));
        let stopping = Arc::new(AtomicBool::new(false));
        let (sink, stop) = (results.clone(), stopping.clone());
        let task = tokio::spawn(async move {
            // Dropped with the task: each dialer with it.
            let mut dialers = JoinSet::new();
            // Seeds no listener or relay of the tests uses: 0 and 1 are theirs, and 101 up.
            for seed in (2..100u8).cycle() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let (relay, target, sink) = (relay.clone(), target.clone(), sink.clone());
                dialers.spawn(async move {
                    let started = Instant::now();
                    let mut dialer =
                        host.dcutr("dial", &seed.to_string(), &relay, &["--remote-peer-id", &target]);
                    let connected = format!("connected peer={target} relayed=true");
                    let reached = tokio::time::timeout(limit, async {
                        while let Some(line) = dialer.next_line().await {
                            if line == connected {
                                return Some(Instant::now());
                            }
                        }
                        None
                    })
                    .await
                    .ok()
                    .flatten();
                    sink.lock().unwrap().push((started, reached));
                });
                while dialers.try_join_next().is_some() {}
                tokio::time::sleep(every).await;
            }
            while dialers.join_next().await.is_some() {}
        });
        Self {
            results,
            stopping,
            limit,
            _task: AbortOnDrop(task),
        }
    }

    /// When the first dialer started at or after `since` reached the node.
    pub fn reached_after(&self, since: Instant) -> Option<Instant> {
        let results = self.results.lock().unwrap();
        results
            .iter()
            .filter(|(started, _)| *started >= since)
            .filter_map(|(_, reached)| *reached)
            .min()
    }

    /// Starts no more dialers, lets those in flight finish, and returns every result.
    pub async fn stop(self) -> Vec<ProbeResult> {
        self.stopping.store(true, Ordering::Relaxed);
        tokio::time::sleep(self.limit).await;
        std::mem::take(&mut *self.results.lock().unwrap())
    }
}
