//! What the example binaries share.

#![allow(dead_code)] // Each example uses its own part of this module.

use libp2p::identity::Keypair;

/// The key rust-libp2p's examples derive from `--secret-key-seed`: ed25519 from the 32 bytes
/// `[seed, 0, 0, ...]`, so peer ids match theirs.
pub fn keypair_from_seed(seed: u8) -> Keypair {
    let mut bytes = [0u8; 32];
    bytes[0] = seed;
    Keypair::ed25519_from_bytes(bytes).expect("32 bytes make an ed25519 key")
}

/// Logs to stderr, filtered by `RUST_LOG` (e.g. `RUST_LOG=libp2p_relay_keeper=debug`); without it warnings
/// and errors, so the keeper's line naming the fix for a mistake shows.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only on a terminal: a log redirected to a file carries no ANSI codes.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
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
