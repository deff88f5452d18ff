//! The node's own network addresses, as its listeners report them: a network change is a change of this set,
//! not each listener's report of it. A listener on all interfaces reports every address of every interface
//! (TCP and QUIC each: one address appearing is two reports, one replaced is four), so counting the reports
//! per address turns a burst into the changes it stands for.

use std::collections::HashMap;

use libp2p::Multiaddr;

/// How many listen addresses each network address (the first component of a listen address, e.g. `/ip4/…`)
/// has.
#[derive(Debug, Default)]
pub(crate) struct ListenIps {
    reports: HashMap<Multiaddr, usize>,
}

/// The network address a listen address is on.
fn network(addr: &Multiaddr) -> Multiaddr {
    addr.iter().take(1).collect()
}

impl ListenIps {
    /// A listener reports `addr`; says whether the node gained a network address.
    pub(crate) fn appeared(&mut self, addr: &Multiaddr) -> bool {
        let reports = self.reports.entry(network(addr)).or_default();
        *reports += 1;
        *reports == 1
    }

    /// A listener no longer reports `addr`; says whether the node lost a network address. One never reported
    /// (a listener that failed, say) changes nothing.
    pub(crate) fn expired(&mut self, addr: &Multiaddr) -> bool {
        let network = network(addr);
        let Some(reports) = self.reports.get_mut(&network) else {
            return false;
        };
        *reports -= 1;
        if *reports > 0 {
            return false;
        }
        self.reports.remove(&network);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_address_replaced_under_two_listeners_is_two_changes_not_four() {
        let mut ips = ListenIps::default();
        assert!(ips.appeared(&addr("/ip4/198.18.0.2/tcp/4001")));
        assert!(!ips.appeared(&addr("/ip4/198.18.0.2/udp/4001/quic-v1")));
        assert!(
            !ips.expired(&addr("/ip4/198.18.0.2/tcp/4001")),
            "QUIC still has it"
        );
        assert!(
            ips.expired(&addr("/ip4/198.18.0.2/udp/4001/quic-v1")),
            "the address is gone"
        );
        assert!(ips.appeared(&addr("/ip4/198.18.0.3/tcp/4001")), "the new one");
        assert!(!ips.appeared(&addr("/ip4/198.18.0.3/udp/4001/quic-v1")));
    }

    #[test]
    fn an_expiry_never_reported_changes_nothing() {
        let mut ips = ListenIps::default();
        assert!(!ips.expired(&addr("/ip4/198.18.0.2/tcp/4001")));
        assert!(ips.appeared(&addr("/ip4/198.18.0.2/tcp/4001")));
    }
}
