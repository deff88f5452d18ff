//! Network namespaces made by a test: the relay in one, the kept client in another, joined by a veth pair.
//! Needs root and iproute2; where they are missing the lab is `None` (with a message), but under `CI=true`
//! that fails instead.

use std::{
    os::fd::AsRawFd,
    process::Command,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use super::process::Host;

/// Addresses of this test's own hosts, inside its own namespaces (RFC 2544's benchmarking range).
pub const RELAY_IP: &str = "198.18.0.1";
pub const CLIENT_IP: &str = "198.18.0.2";

fn ip(args: &[&str]) -> Result<(), String> {
    run("ip", args)
}

/// Runs `program` with `args`; its stderr is the error when it fails.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program} {}: {e}", args.join(" ")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Two namespaces joined by a veth pair; deleted (with the pair) when dropped, on failure too.
pub struct Lab {
    pub relay_ns: String,
    pub client_ns: String,
    pub client_if: String,
}

impl Lab {
    fn new() -> Result<Self, String> {
        // Unique per lab, so tests in one binary can run side by side.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let id = (std::process::id() % 100_000) * 10
            + NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 10;
        let lab = Lab {
            relay_ns: format!("rk{id}r"),
            client_ns: format!("rk{id}c"),
            client_if: format!("rk{id}c0"),
        };
        let relay_if = format!("rk{id}r0");
        ip(&["netns", "add", &lab.relay_ns])?;
        ip(&["netns", "add", &lab.client_ns])?;
        ip(&[
            "link",
            "add",
            &relay_if,
            "type",
            "veth",
            "peer",
            "name",
            &lab.client_if,
        ])?;
        ip(&["link", "set", &relay_if, "netns", &lab.relay_ns])?;
        ip(&["link", "set", &lab.client_if, "netns", &lab.client_ns])?;
        for (ns, dev, addr) in [
            (&lab.relay_ns, &relay_if, RELAY_IP),
            (&lab.client_ns, &lab.client_if, CLIENT_IP),
        ] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(lab)
    }

    /// Where the relay's processes run.
    /// A counter of the client's veth so far (`rx_bytes`, `tx_packets`, ...: /sys/class/net/<if>/statistics),
    /// read inside its namespace.
    pub fn client_counter(&self, name: &str) -> u64 {
        let path = format!("/sys/class/net/{}/statistics/{name}", self.client_if);
        let output = std::process::Command::new("ip")
            .args(["netns", "exec", &self.client_ns, "cat", &path])
            .output()
            .expect("ip netns exec");
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{path}: {}", String::from_utf8_lossy(&output.stderr)))
    }

    pub fn relay_host(&self) -> Host<'_> {
        Host {
            netns: Some(&self.relay_ns),
            ip: RELAY_IP,
        }
    }

    /// Where the kept client's processes run.
    pub fn client_host(&self) -> Host<'_> {
        Host {
            netns: Some(&self.client_ns),
            ip: CLIENT_IP,
        }
    }

    /// Limits what the client sends to `rate` (a `tc` rate such as `1mbit`) with a queue holding up to
    /// `latency` of it (`tc`'s tbf qdisc), as a saturated uplink does once something fills the queue.
    pub fn bottleneck(&self, rate: &str, latency: Duration) -> Result<(), String> {
        let latency = format!("{}ms", latency.as_millis());
        let args = [
            "-n",
            &self.client_ns,
            "qdisc",
            "add",
            "dev",
            &self.client_if,
            "root",
            "tbf",
            "rate",
            rate,
            "burst",
            "16kb",
            "latency",
            &latency,
        ];
        run("tc", &args)
    }

    /// A bulk TCP flow from the client to the relay's host, beside whatever else runs: it fills the client's
    /// uplink until dropped.
    pub fn bulk_upload(&self) -> BulkFlow {
        let sink_addr: std::net::SocketAddr = (RELAY_IP.parse::<std::net::Ipv4Addr>().unwrap(), 5999).into();
        let (listening_tx, listening) = std::sync::mpsc::channel();
        in_namespace(&self.relay_ns, move || {
            let listener = std::net::TcpListener::bind(sink_addr).expect("the sink listens");
            let _ = listening_tx.send(());
            if let Ok((mut upload, _)) = listener.accept() {
                let _ = std::io::copy(&mut upload, &mut std::io::sink());
            }
        });
        listening.recv().expect("the sink listens");
        let (sender_tx, sender_rx) = std::sync::mpsc::channel();
        let sent = Arc::new(AtomicU64::new(0));
        let counted = sent.clone();
        in_namespace(&self.client_ns, move || {
            let mut upload = std::net::TcpStream::connect(sink_addr).expect("the bulk flow connects");
            let _ = sender_tx.send(upload.try_clone().unwrap());
            let block = [0u8; 16 * 1024];
            while let Ok(n) = std::io::Write::write(&mut upload, &block) {
                counted.fetch_add(n as u64, Ordering::Relaxed);
            }
        });
        BulkFlow {
            upload: sender_rx.recv().expect("the bulk flow started"),
            sent,
        }
    }

    /// Runs `ip <args>` inside the client's namespace.
    pub fn client(&self, args: &[&str]) -> Result<(), String> {
        let mut full = vec!["-n", self.client_ns.as_str()];
        full.extend_from_slice(args);
        ip(&full)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.relay_ns, &self.client_ns] {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// A bulk TCP flow made by [`Lab::bulk_upload`]; it stops when dropped.
pub struct BulkFlow {
    upload: std::net::TcpStream,
    sent: Arc<AtomicU64>,
}

impl BulkFlow {
    /// The bytes handed to the kernel so far: about the uplink's rate times the time, once the queue is full.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

impl Drop for BulkFlow {
    fn drop(&mut self) {
        let _ = self.upload.shutdown(std::net::Shutdown::Both);
    }
}

/// Runs `work` on a thread of its own inside namespace `netns`, so the sockets it opens live there.
/// (std has no `setns`; libc's is the system call itself.)
fn in_namespace(netns: &str, work: impl FnOnce() + Send + 'static) {
    let path = format!("/var/run/netns/{netns}");
    std::thread::spawn(move || {
        let namespace = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let entered = unsafe { libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(entered, 0, "setns {path}: {}", std::io::Error::last_os_error());
        work();
    });
}

/// The lab, or `None` (with a message) where namespaces cannot be made; under `CI=true` that fails instead.
pub fn lab() -> Option<Lab> {
    or_skip(Lab::new(), "root and iproute2")
}

fn or_skip<T>(made: Result<T, String>, needs: &str) -> Option<T> {
    match made {
        Ok(lab) => Some(lab),
        Err(error) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("network namespaces are needed in CI ({needs}): {error}")
        }
        Err(error) => {
            eprintln!("skipping: cannot create network namespaces ({needs}): {error}");
            None
        }
    }
}

/// Where the hosts of a [`NatLab`] are.
pub const NAT_RELAY_IP: &str = "198.18.10.1";
pub const NAT_LISTENER_IP: &str = "198.18.1.2";
pub const NAT_DIALER_IP: &str = "198.18.2.2";

/// Two private networks, each behind its own NAT router (nftables masquerade), and the relay on the
/// network between the routers, which has no route into either private network:
///
/// ```text
/// listener 198.18.1.2 ── nat1 ── relay 198.18.10.1 / 198.18.20.1 ── nat2 ── 198.18.2.2 dialer
/// ```
///
/// Needs root, iproute2 and nftables. Every namespace is deleted when dropped, on failure too.
pub struct NatLab {
    pub relay_ns: String,
    pub listener_ns: String,
    pub dialer_ns: String,
    namespaces: Vec<String>,
}

impl NatLab {
    pub fn new() -> Result<Self, String> {
        let id = std::process::id() % 100_000;
        let ns = |name: &str| format!("rk{id}{name}");
        let mut lab = NatLab {
            relay_ns: ns("w"),
            listener_ns: ns("l"),
            dialer_ns: ns("d"),
            namespaces: Vec::new(),
        };
        let (nat1, nat2) = (ns("n1"), ns("n2"));
        for name in [&lab.relay_ns, &lab.listener_ns, &lab.dialer_ns, &nat1, &nat2] {
            ip(&["netns", "add", name])?;
            lab.namespaces.push(name.clone());
            ip(&["-n", name, "link", "set", "lo", "up"])?;
        }
        let link = |a: (&str, &str, &str), b: (&str, &str, &str)| -> Result<(), String> {
            ip(&["link", "add", a.1, "type", "veth", "peer", "name", b.1])?;
            for (netns, dev, addr) in [a, b] {
                ip(&["link", "set", dev, "netns", netns])?;
                ip(&["-n", netns, "addr", "add", &format!("{addr}/24"), "dev", dev])?;
                ip(&["-n", netns, "link", "set", dev, "up"])?;
            }
            Ok(())
        };
        let dev = |name: &str| format!("rk{id}{name}");
        link(
            (&lab.listener_ns, &dev("l0"), NAT_LISTENER_IP),
            (&nat1, &dev("n1i"), "198.18.1.1"),
        )?;
        link(
            (&nat1, &dev("n1o"), "198.18.10.2"),
            (&lab.relay_ns, &dev("w1"), NAT_RELAY_IP),
        )?;
        link(
            (&nat2, &dev("n2o"), "198.18.20.2"),
            (&lab.relay_ns, &dev("w2"), "198.18.20.1"),
        )?;
        link(
            (&lab.dialer_ns, &dev("d0"), NAT_DIALER_IP),
            (&nat2, &dev("n2i"), "198.18.2.1"),
        )?;
        for (netns, via) in [
            (&lab.listener_ns, "198.18.1.1"),
            (&lab.dialer_ns, "198.18.2.1"),
            (&nat1, NAT_RELAY_IP),
            (&nat2, "198.18.20.1"),
        ] {
            ip(&["-n", netns, "route", "add", "default", "via", via])?;
        }
        for (router, outside) in [(&nat1, dev("n1o")), (&nat2, dev("n2o"))] {
            run_in(router, &["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"])?;
            let ruleset = format!(
                "table ip nat {{ chain post {{ type nat hook postrouting priority 100; oifname \"{outside}\" masquerade; }}; }}"
            );
            run_in(router, &["nft", &ruleset])?;
        }
        Ok(lab)
    }
}

impl Drop for NatLab {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// Runs a command inside namespace `netns`.
pub fn run_in(netns: &str, command: &[&str]) -> Result<(), String> {
    let mut args = vec!["netns", "exec", netns];
    args.extend_from_slice(command);
    ip(&args)
}

/// The NAT lab, or `None` (with a message) where it cannot be made; under `CI=true` that fails instead.
pub fn nat_lab() -> Option<NatLab> {
    or_skip(NatLab::new(), "root, iproute2 and nftables")
}
