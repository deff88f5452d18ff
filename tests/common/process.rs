//! The example binaries as real processes: started from the build `cargo test` made, read line by line,
//! killed with SIGKILL when the test is done with them or fails. Their stdout and stderr are captured, and a
//! test that fails (a timeout included) prints both for every process it still holds.

use std::{
    cell::RefCell,
    path::PathBuf,
    process::Stdio,
    sync::{Arc, Mutex, Once},
};

use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
    sync::{mpsc, Notify},
};

use super::within;

/// A running example binary. Dropping it kills the process.
pub struct Process {
    name: String,
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    /// Every stdout line read so far.
    pub seen: Vec<String>,
    transcript: Transcript,
    /// Told of every stderr line: the log is read on its own, and may trail what stdout said.
    stderr_grew: Arc<Notify>,
}

/// The path of an example binary built by this `cargo test` run, or in `EXAMPLES_DIR` if set (to measure
/// another build of the examples, e.g. an earlier commit's, with this run's harness).
pub fn example_binary(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("EXAMPLES_DIR") {
        return PathBuf::from(dir).join(name);
    }
    // The test runs as target/<profile>/deps/<test>-<hash>; examples sit in target/<profile>/examples.
    let exe = std::env::current_exe().expect("the test knows its own path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary is in target/<profile>/deps");
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: `cargo test` builds the examples; build them with `cargo build --examples`",
        path.display()
    );
    path
}

impl Process {
    /// Starts example `name` with `args`.
    pub fn spawn(name: &str, args: &[&str]) -> Self {
        Self::start(Command::new(example_binary(name)), name, args)
    }

    /// Starts example `name` inside network namespace `netns` (`ip netns exec`, which execs it in place, so
    /// killing the process kills the example).
    pub fn spawn_in(netns: &str, name: &str, args: &[&str]) -> Self {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", netns]).arg(example_binary(name));
        Self::start(command, name, args)
    }

    fn start(mut command: Command, name: &str, args: &[&str]) -> Self {
        let mut child = command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let transcript = Arc::new(Mutex::new(Vec::new()));
        let (tx, lines) = mpsc::unbounded_channel();
        let log = transcript.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                log.lock().unwrap().push(format!("[out] {line}"));
                // The test may have stopped reading; the transcript still wants the rest.
                let _ = tx.send(line);
            }
        });
        let log = transcript.clone();
        let stderr_grew = Arc::new(Notify::new());
        let grew = stderr_grew.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                log.lock().unwrap().push(format!("[err] {line}"));
                grew.notify_waiters();
            }
        });
        let name = format!("{name} {}", args.join(" "));
        keep_for_failure(&name, &transcript);
        Self {
            name,
            child,
            lines,
            seen: Vec::new(),
            transcript,
            stderr_grew,
        }
    }

    /// Reads lines until `pick` returns something for one; fails the test after the timeout or if the process
    /// exits first, showing what it printed.
    pub async fn wait_line<T>(&mut self, what: &str, mut pick: impl FnMut(&str) -> Option<T>) -> T {
        let name = self.name.clone();
        let seen_before = self.seen.len();
        let found = within(&format!("{what} from `{name}`"), async {
            while let Some(line) = self.lines.recv().await {
                self.seen.push(line);
                if let Some(found) = pick(self.seen.last().unwrap()) {
                    return Some(found);
                }
            }
            None
        })
        .await;
        found.unwrap_or_else(|| {
            panic!(
                "`{name}` exited before {what}; it printed:\n{}",
                self.seen[seen_before..].join("\n")
            )
        })
    }

    /// The next line the process prints; `None` once it exited.
    pub async fn next_line(&mut self) -> Option<String> {
        let line = self.lines.recv().await?;
        self.seen.push(line.clone());
        Some(line)
    }

    /// Reads every line printed so far without looking at it, so that the next wait sees only what comes after.
    pub fn skip_printed(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
    }

    /// Waits for a line that starts with `prefix` and returns the rest of it.
    pub async fn wait_prefix(&mut self, prefix: &str) -> String {
        self.wait_line(prefix, |line| line.strip_prefix(prefix).map(str::to_owned))
            .await
    }

    /// Waits for the keeper's next `reconnect_scheduled` line and returns its cause.
    pub async fn next_cause(&mut self) -> String {
        self.wait_line("the keeper's next scheduled retry", |l| {
            l.starts_with("keeper reconnect_scheduled")
                .then(|| l.rsplit("cause=").next().unwrap_or_default().to_owned())
        })
        .await
    }

    /// Waits until a relay says its connection to `peer` closed: until then it may route circuits into a
    /// dead one.
    pub async fn wait_connection_closed(&mut self, peer: &str) {
        let closed = format!("connection_closed peer={peer}");
        self.wait_line("the relay dropping the old connection", |l| {
            (l == closed).then_some(())
        })
        .await
    }

    /// How many lines the process wrote to stderr so far contain `part` (its `RUST_LOG` log goes there).
    pub fn stderr_count(&self, part: &str) -> usize {
        let transcript = self.transcript.lock().unwrap();
        transcript
            .iter()
            .filter(|l| l.strip_prefix("[err] ").is_some_and(|l| l.contains(part)))
            .count()
    }

    /// Waits until a stderr line contains `part`; fails the test after the timeout.
    pub async fn wait_stderr(&self, part: &str) {
        within(&format!("`{part}` on the stderr of `{}`", self.name), async {
            loop {
                let grew = self.stderr_grew.notified();
                if self.stderr_count(part) > 0 {
                    return;
                }
                grew.await;
            }
        })
        .await
    }

    /// Every line the process wrote to stderr so far, in order.
    pub fn stderr_lines(&self) -> Vec<String> {
        let transcript = self.transcript.lock().unwrap();
        transcript
            .iter()
            .filter_map(|l| l.strip_prefix("[err] ").map(str::to_owned))
            .collect()
    }

    /// How many lines read so far start with `prefix`.
    pub fn count(&self, prefix: &str) -> usize {
        self.seen.iter().filter(|l| l.starts_with(prefix)).count()
    }

    /// SIGTERM, the polite shutdown: the process may print on its way out (read it with the waits), then
    /// [`exits_successfully`](Self::exits_successfully) says how it ended.
    pub fn terminate(&self) {
        let pid = self.child.id().expect("the process has not been reaped");
        let pid = libc::pid_t::try_from(pid).expect("a pid fits pid_t");
        // SAFETY: kill(2) takes no pointers; the process is this test's child and not reaped yet, so the pid
        // is still its own.
        let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(
            sent,
            0,
            "SIGTERM to `{}`: {}",
            self.name,
            std::io::Error::last_os_error()
        );
    }

    /// SIGKILL, no polite shutdown; returns once the process is gone.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }

    /// Waits for the process to exit by itself; true on success.
    pub async fn exits_successfully(mut self) -> bool {
        let name = self.name.clone();
        within(&format!("`{name}` to exit"), self.child.wait())
            .await
            .is_ok_and(|status| status.success())
    }
}

thread_local! {
    /// The transcripts of every process this thread started, killed ones included.
    static TRANSCRIPTS: RefCell<Vec<(String, Transcript)>> = const { RefCell::new(Vec::new()) };
}

type Transcript = Arc<Mutex<Vec<String>>>;

/// Keeps `transcript` of process `name` for the thread's test, and makes sure a panic on this thread (a failed
/// assertion or a timeout) prints every transcript the thread kept before the panic's own message.
fn keep_for_failure(name: &str, transcript: &Transcript) {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _ = TRANSCRIPTS.try_with(|kept| {
                let Ok(kept) = kept.try_borrow() else { return };
                for (name, transcript) in kept.iter() {
                    let lines = transcript.lock().map(|t| t.join("\n")).unwrap_or_default();
                    eprintln!("---- `{name}` wrote (stdout [out], stderr [err]) ----\n{lines}\n---- end of `{name}` ----");
                }
            });
            default(info);
        }));
    });
    TRANSCRIPTS.with(|kept| kept.borrow_mut().push((name.to_owned(), transcript.clone())));
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Where example processes run: on this machine's loopback, or inside a network namespace, at `ip`.
#[derive(Debug, Clone, Copy)]
pub struct Host<'a> {
    pub netns: Option<&'a str>,
    pub ip: &'a str,
}

/// This machine's loopback.
pub const LOOPBACK: Host<'static> = Host {
    netns: None,
    ip: "127.0.0.1",
};

impl Host<'_> {
    pub fn spawn(&self, name: &str, args: &[&str]) -> Process {
        match self.netns {
            Some(netns) => Process::spawn_in(netns, name, args),
            None => Process::spawn(name, args),
        }
    }

    /// `relay_server --secret-key-seed 0` on `port`, listening on this host's address only; returns it with its
    /// address, `/ip4/<ip>/tcp/<port>/p2p/<id>`, once it listens.
    pub async fn relay_server(&self, port: u16, extra: &[&str]) -> (Process, String) {
        self.relay_server_keyed(port, "0", extra).await
    }

    /// [`relay_server`](Self::relay_server) with its key derived from `seed`, for several relays at once.
    pub async fn relay_server_keyed(&self, port: u16, seed: &str, extra: &[&str]) -> (Process, String) {
        let port = port.to_string();
        let mut args = vec!["--port", &port, "--secret-key-seed", seed, "--listen-ip", self.ip];
        args.extend_from_slice(extra);
        let mut relay = self.spawn("relay_server", &args);
        let id = relay.wait_prefix("peer_id=").await;
        let tcp = format!("/ip4/{}/tcp/{port}", self.ip);
        let quic = format!("/ip4/{}/udp/{port}/quic-v1", self.ip);
        let mut missing = vec![format!("listening addr={tcp}"), format!("listening addr={quic}")];
        relay
            .wait_line("its TCP and QUIC addresses", |l| {
                missing.retain(|m| m != l);
                missing.is_empty().then_some(())
            })
            .await;
        (relay, format!("{tcp}/p2p/{id}"))
    }

    /// The `dcutr` example in `mode` with key seed `seed`, kept on `relay`, listening on this host's address.
    pub fn dcutr(&self, mode: &str, seed: &str, relay: &str, extra: &[&str]) -> Process {
        let mut args = vec![
            "--mode",
            mode,
            "--secret-key-seed",
            seed,
            "--relay-address",
            relay,
            "--listen-ip",
            self.ip,
        ];
        args.extend_from_slice(extra);
        self.spawn("dcutr", &args)
    }

    /// A fresh `dcutr --mode dial` on this host reaches `target` through `relay`.
    pub async fn reach(&self, relay: &str, seed: &str, target: &str) {
        let mut dialer = self.dcutr("dial", seed, relay, &["--remote-peer-id", target]);
        let connected = format!("connected peer={target} relayed=true");
        dialer
            .wait_line("a relayed connection to the target", |l| {
                (l == connected).then_some(())
            })
            .await;
        dialer.kill().await;
    }
}

/// The QUIC address of a relay started by [`Host::relay_server`], from its TCP address (same port).
pub fn quic_addr(tcp: &str) -> String {
    let (transport, id) = tcp
        .split_once("/p2p/")
        .expect("a relay address ends in /p2p/<id>");
    format!("{}/quic-v1/p2p/{id}", transport.replace("/tcp/", "/udp/"))
}
