//! Whether a dial was refused: the relay's host answered a TCP connection attempt with a reset because nothing
//! listens on the port, which is what a relay that is restarting on a host that is up looks like. libp2p
//! offers no such classification of a [`DialError`], so it is read out of the error here.
//!
//! The swarm hands a dial's failure over as [`DialError::Transport`], one [`TransportError`] per address. A
//! swarm built with `SwarmBuilder` nests the refusal deeply: an [`io::Error`] of the boxed transport around
//! `either::Either`s (one per `with_quic`, `with_dns`, `with_relay_client`), libp2p-dns's error, the
//! transport time-out's and the upgrade's errors, and at the bottom the [`io::Error`] of the TCP transport,
//! whose kind is [`io::ErrorKind::ConnectionRefused`].
//!
//! Walking that chain with `source()` is not enough, and no walk can be: the upgrades libp2p puts on top of
//! the TCP transport (`and_then`) hold its [`io::Error`] directly in an `Either`, and `Either::source()`
//! answers with its inner error's source, skipping the inner error itself; nothing else reaches into a
//! `dyn Error` whose type is generic. What every layer does show is its `Debug`: `Either`, the libp2p errors
//! and [`DialError`] derive it, so it prints the inner error's `Debug`, down to the [`io::Error`], which
//! prints its [`io::ErrorKind`] (`Os { code: 111, kind: ConnectionRefused, .. }`, `Kind(ConnectionRefused)`,
//! `Custom { kind: ConnectionRefused, .. }`), whose derived `Debug` is the variant's name. So a refusal is
//! found as that kind, in the form `io::Error` prints it, in the `Debug` of the error of a TCP address.
//! Messages are left out of the search: `Debug` prints them as quoted strings, with every quote inside
//! escaped, so text from the network cannot pass for a kind. The tests build swarms as users do (TCP alone;
//! TCP, QUIC, DNS and the relay client) and dial a closed port.

use std::io;

use libp2p::{core::transport::TransportError, swarm::DialError};

use crate::address::is_tcp;

/// Whether `error` says that a TCP address of the dial was refused.
pub(crate) fn dial_refused(error: &DialError) -> bool {
    let DialError::Transport(failures) = error else {
        return false;
    };
    failures
        .iter()
        .any(|(addr, error)| is_tcp(addr) && matches!(error, TransportError::Other(error) if refused(error)))
}

/// Whether an [`io::Error`] of kind [`io::ErrorKind::ConnectionRefused`] is anywhere inside `error`.
fn refused(error: &io::Error) -> bool {
    let kind = format!("{:?}", io::ErrorKind::ConnectionRefused);
    let text = outside_strings(&format!("{error:?}"));
    [format!("kind: {kind}"), format!("Kind({kind})")]
        .iter()
        .any(|printed| text.contains(printed.as_str()))
}

/// `debug` without the strings in it: messages, which may say anything. `Debug` escapes every `"` and `\`
/// inside a string, so an unescaped `"` always opens or closes one.
fn outside_strings(debug: &str) -> String {
    let (mut outside, mut in_string, mut escaped) = (String::with_capacity(debug.len()), false, false);
    for c in debug.chars() {
        match (in_string, escaped, c) {
            (true, false, '\\') => escaped = true,
            (true, true, _) => escaped = false,
            (_, false, '"') => in_string = !in_string,
            (false, _, c) => outside.push(c),
            (true, false, _) => {}
        }
    }
    outside
}

#[cfg(test)]
mod tests;
