//! What the example binaries share.

#![allow(dead_code)] // Each example uses its own part of this module.

use std::time::Duration;

use libp2p::{identity::Keypair, ping, swarm::NetworkBehaviour, Swarm};

/// The key rust-libp2p's examples derive from `--secret-key-seed`: ed25519 from the 32 bytes
/// `[seed, 0, 0, ...]`, so peer ids match theirs.
pub fn keypair_from_seed(seed: u8) -> Keypair {
    let mut bytes = [0u8; 32];
    bytes[0] = seed;
    Keypair::ed25519_from_bytes(bytes).expect("32 bytes make an ed25519 key")
}

/// Logs to stderr, filtered by `RUST_LOG` (e.g. `RUST_LOG=libp2p_relay_keeper=debug`).
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
}

/// Prints one line to stdout. If stdout is gone (e.g. piped into `head`), nobody reads the output any more,
/// so the process exits quietly instead of panicking as `println!` would.
pub fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    if writeln!(std::io::stdout().lock(), "{line}").is_err() {
        std::process::exit(0);
    }
}

/// The relay's ping flags. A failed ping closes the connection: libp2p's ping never does, and without that a
/// client's half-open link looks up until TCP gives up, minutes later, while the relay routes new circuits
/// into it. libp2p's ping reports the second failure in a row, so with these defaults the relay notices a
/// dead link within about 3 s, no slower than the keeper's default probe on the client's side (4 s).
#[derive(Debug, clap::Args)]
pub struct PingOpts {
    /// How often to ping each peer, in milliseconds.
    #[arg(long, default_value_t = 500)]
    pub ping_interval_ms: u64,

    /// How long a ping may take before it counts as failed, in milliseconds.
    #[arg(long, default_value_t = 1_000)]
    pub ping_timeout_ms: u64,
}

/// A ping that times out or fails closes its connection, and prints `dead_link peer=<id>`. `Unsupported`
/// only says the peer lacks ping; the link may be fine.
pub fn close_dead_link<B: NetworkBehaviour>(swarm: &mut Swarm<B>, event: ping::Event) {
    if let Err(failure @ (ping::Failure::Timeout | ping::Failure::Other { .. })) = event.result {
        say(format_args!("dead_link peer={}", event.peer));
        tracing::info!(peer = %event.peer, %failure, "ping failed, closing the connection");
        swarm.close_connection(event.connection);
    }
}

impl PingOpts {
    pub fn behaviour(&self) -> ping::Behaviour {
        ping::Behaviour::new(
            ping::Config::new()
                .with_interval(Duration::from_millis(self.ping_interval_ms))
                .with_timeout(Duration::from_millis(self.ping_timeout_ms)),
        )
    }
}
