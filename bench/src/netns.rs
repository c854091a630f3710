//! Emulated hosts on one machine: network namespaces joined by a Linux bridge.
//!
//! Each host `i` is a network namespace `{prefix}{i}` with one veth pair:
//! `{prefix}{i}h` inside the namespace (address `198.18.0.0 + i + 1`/15, the
//! RFC 2544 benchmarking range) and `{prefix}{i}b` in the root namespace,
//! enslaved to the bridge `{prefix}br`. Upload is shaped by a `tbf` qdisc on the
//! egress of `{prefix}{i}h` (inside the namespace), download by a `tbf` on the
//! egress of `{prefix}{i}b` (bridge side).
//!
//! Invariants: every namespace and link this module creates carries the run's
//! prefix; [`Lan::teardown`] (also run on drop) deletes all of them and then
//! checks that none is left. The prefix includes the creating process's pid, so
//! [`reap_stale`] can remove what a killed earlier run left behind.
//!
//! Needs root (CAP_NET_ADMIN and `ip netns`); uses `ip` and `tc` from iproute2.

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

/// Longest Linux interface name (IFNAMSIZ - 1).
const IFNAME_MAX_LEN: usize = 15;
/// Smallest tbf burst. veth hands over GSO segments of up to 64 KiB; a bucket
/// smaller than two of them makes tbf drop or spin, which eats CPU.
const MIN_BURST_BYTES: u64 = 128 * 1024;
/// Queue bound of each tbf, as the time a full queue takes to drain. 50 ms
/// keeps a TCP flow at the shaped rate (measured: 95.6 Mbit/s goodput at
/// 100 Mbit/s) without hiding a slow peer behind seconds of queue.
const TBF_LATENCY: &str = "50ms";
/// First address of the benchmarking range 198.18.0.0/15 (RFC 2544).
const BASE_ADDR: u32 = u32::from_be_bytes([198, 18, 0, 0]);
/// Hosts a /15 holds after the network address, less the broadcast address.
const MAX_HOSTS: usize = (1 << 17) - 2;

/// Errors of namespace set-up and teardown.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The process is not root; namespaces and qdiscs need CAP_NET_ADMIN.
    #[error("needs root (CAP_NET_ADMIN) to create network namespaces; run as root")]
    NotRoot,
    /// A command could not be started (iproute2 missing?).
    #[error("cannot run `{cmd}`: {source}")]
    Spawn {
        /// The command line.
        cmd: String,
        /// Why.
        source: io::Error,
    },
    /// A command exited non-zero.
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        cmd: String,
        /// Exit status as text.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// The prefix leaves no room for host link names within 15 characters.
    #[error("prefix {0:?} too long for {1} hosts (interface names are at most 15 characters)")]
    PrefixTooLong(String, usize),
    /// More hosts than the /15 holds, or none.
    #[error("{0} hosts: need 1..={MAX_HOSTS}")]
    HostCount(usize),
    /// A rate of zero.
    #[error("host {0}: rates must be > 0 bit/s")]
    ZeroRate(usize),
    /// Teardown finished but namespaces or links with the prefix remain.
    #[error("teardown left behind: {0:?}")]
    Leftover(Vec<String>),
}

/// Shaped rates of one host's link, bits per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LinkSpec {
    /// Upload (host → bridge) rate in bit/s.
    pub up_bits_per_s: u64,
    /// Download (bridge → host) rate in bit/s.
    pub down_bits_per_s: u64,
}

impl LinkSpec {
    /// A symmetric link of `mbit` Mbit/s (10⁶ bit/s) each way.
    pub fn symmetric_mbit(mbit: f64) -> Self {
        let bits = (mbit * 1e6).round() as u64;
        Self {
            up_bits_per_s: bits,
            down_bits_per_s: bits,
        }
    }
}

/// One emulated host.
#[derive(Debug, Clone)]
pub struct Host {
    /// Network namespace name (`ip netns exec NAME ...`).
    pub netns: String,
    /// Its address in 198.18.0.0/15.
    pub addr: Ipv4Addr,
    /// The veth inside the namespace (upload shaped here).
    pub host_veth: String,
    /// The veth on the bridge (download shaped here).
    pub bridge_veth: String,
    /// Its shaped rates.
    pub link: LinkSpec,
}

/// N hosts on one bridge. Torn down on [`Lan::teardown`] or drop.
#[derive(Debug)]
pub struct Lan {
    prefix: String,
    bridge: String,
    hosts: Vec<Host>,
    torn_down: bool,
}

/// The run prefix for this process: `{tag}{pid}-` (e.g. `p2pb4242-`).
pub fn run_prefix(tag: &str) -> String {
    format!("{tag}{}-", std::process::id())
}

/// Whether this process runs with effective uid 0.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Runs a command and maps failure to [`NetnsError`].
fn run(args: &[&str]) -> Result<String, NetnsError> {
    let cmd = args.join(" ");
    let (program, rest) = args.split_first().ok_or_else(|| NetnsError::Spawn {
        cmd: cmd.clone(),
        source: io::Error::other("empty command"),
    })?;
    let out = Command::new(program)
        .args(rest)
        .output()
        .map_err(|source| NetnsError::Spawn {
            cmd: cmd.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(NetnsError::Command {
            cmd,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// tbf burst for a rate: at least [`MIN_BURST_BYTES`], and at least 4 ms of
/// traffic so the bucket never limits below the rate at HZ=250.
fn burst_bytes(rate_bits_per_s: u64) -> u64 {
    (rate_bits_per_s / 8 / 250).max(MIN_BURST_BYTES)
}

/// Address of host `index` (0-based): 198.18.0.1, 198.18.0.2, ...
pub fn host_addr(index: usize) -> Ipv4Addr {
    Ipv4Addr::from(BASE_ADDR + index as u32 + 1)
}

impl Lan {
    /// Creates one host per entry of `links` on a fresh bridge.
    ///
    /// On failure everything created so far is torn down before returning.
    ///
    /// # Errors
    /// [`NetnsError::NotRoot`], [`NetnsError::HostCount`], [`NetnsError::ZeroRate`],
    /// [`NetnsError::PrefixTooLong`], or the first failing `ip`/`tc` command
    /// ([`NetnsError::Spawn`], [`NetnsError::Command`]).
    pub fn create(prefix: &str, links: &[LinkSpec]) -> Result<Lan, NetnsError> {
        if !is_root() {
            return Err(NetnsError::NotRoot);
        }
        if links.is_empty() || links.len() > MAX_HOSTS {
            return Err(NetnsError::HostCount(links.len()));
        }
        let longest = format!("{prefix}{}h", links.len() - 1);
        if longest.len() > IFNAME_MAX_LEN || format!("{prefix}br").len() > IFNAME_MAX_LEN {
            return Err(NetnsError::PrefixTooLong(prefix.to_owned(), links.len()));
        }
        if let Some(i) = links
            .iter()
            .position(|l| l.up_bits_per_s == 0 || l.down_bits_per_s == 0)
        {
            return Err(NetnsError::ZeroRate(i));
        }
        let mut lan = Lan {
            prefix: prefix.to_owned(),
            bridge: format!("{prefix}br"),
            hosts: Vec::new(),
            torn_down: false,
        };
        // On any error `lan` is dropped here, which tears down what exists.
        run(&["ip", "link", "add", &lan.bridge, "type", "bridge"])?;
        run(&["ip", "link", "set", &lan.bridge, "up"])?;
        for (i, link) in links.iter().enumerate() {
            let host = Host {
                netns: format!("{prefix}{i}"),
                addr: host_addr(i),
                host_veth: format!("{prefix}{i}h"),
                bridge_veth: format!("{prefix}{i}b"),
                link: *link,
            };
            lan.hosts.push(host.clone());
            add_host(&lan.bridge, &host)?;
        }
        Ok(lan)
    }

    /// The hosts, in creation order.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// The run prefix of every name this LAN created.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A command that runs `program` inside host `index`'s namespace
    /// (`ip netns exec`, which execs, so the child's pid is the program's).
    ///
    /// # Panics
    /// If `index` is out of range (a harness bug, not input).
    pub fn command(&self, index: usize, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.hosts[index].netns, program]);
        cmd
    }

    /// Opens a TCP connection to `addr` from inside host `index`'s namespace.
    ///
    /// # Errors
    /// The namespace cannot be entered, or the connection fails within `timeout`.
    pub fn connect_from(
        &self,
        index: usize,
        addr: SocketAddr,
        timeout: Duration,
    ) -> io::Result<TcpStream> {
        self.run_in(index, move || TcpStream::connect_timeout(&addr, timeout))
    }

    /// Binds a TCP listener to `addr` inside host `index`'s namespace.
    ///
    /// # Errors
    /// The namespace cannot be entered, or the bind fails.
    pub fn listen_in(&self, index: usize, addr: SocketAddr) -> io::Result<TcpListener> {
        self.run_in(index, move || TcpListener::bind(addr))
    }

    /// Runs `f` on a thread inside host `index`'s network namespace. Sockets
    /// keep the namespace they were made in, so they can be used from any thread.
    fn run_in<T: Send + 'static>(
        &self,
        index: usize,
        f: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let netns = self
            .hosts
            .get(index)
            .map(|h| h.netns.clone())
            .ok_or_else(|| io::Error::other("no such host"))?;
        // setns(CLONE_NEWNET) moves only the calling thread: a thread of its own.
        std::thread::spawn(move || {
            enter_netns(&netns)?;
            f()
        })
        .join()
        .map_err(|_| io::Error::other("netns thread panicked"))?
    }

    /// Bytes the bridge has received from host `index` (what it sent, with
    /// headers), from the bridge-side veth's `rx_bytes` counter.
    ///
    /// # Errors
    /// The counter cannot be read or parsed.
    pub fn sent_wire_bytes(&self, index: usize) -> io::Result<u64> {
        let host = self
            .hosts
            .get(index)
            .ok_or_else(|| io::Error::other("no such host"))?;
        let path = format!("/sys/class/net/{}/statistics/rx_bytes", host.bridge_veth);
        std::fs::read_to_string(path)?
            .trim()
            .parse()
            .map_err(io::Error::other)
    }

    /// Deletes every link and namespace of this LAN, then checks none is left.
    /// Idempotent; also run on drop (errors then only printed).
    ///
    /// # Errors
    /// [`NetnsError::Leftover`] if names with the prefix remain after a bounded wait.
    pub fn teardown(&mut self) -> Result<(), NetnsError> {
        if self.torn_down {
            return Ok(());
        }
        self.torn_down = true;
        delete_prefixed(&self.prefix)
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            eprintln!("netns teardown: {e}");
        }
    }
}

/// Creates one host's namespace, veth pair, address and shaping.
fn add_host(bridge: &str, h: &Host) -> Result<(), NetnsError> {
    let ns = h.netns.as_str();
    run(&["ip", "netns", "add", ns])?;
    run(&[
        "ip",
        "link",
        "add",
        &h.host_veth,
        "type",
        "veth",
        "peer",
        "name",
        &h.bridge_veth,
    ])?;
    run(&["ip", "link", "set", &h.host_veth, "netns", ns])?;
    run(&["ip", "link", "set", &h.bridge_veth, "master", bridge, "up"])?;
    let cidr = format!("{}/15", h.addr);
    run(&["ip", "-n", ns, "addr", "add", &cidr, "dev", &h.host_veth])?;
    run(&["ip", "-n", ns, "link", "set", &h.host_veth, "up"])?;
    run(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
    let up = tbf_args(h.link.up_bits_per_s);
    let down = tbf_args(h.link.down_bits_per_s);
    let mut cmd = vec![
        "ip",
        "netns",
        "exec",
        ns,
        "tc",
        "qdisc",
        "add",
        "dev",
        &h.host_veth,
    ];
    cmd.extend(up.iter().map(String::as_str));
    run(&cmd)?;
    let mut cmd = vec!["tc", "qdisc", "add", "dev", &h.bridge_veth];
    cmd.extend(down.iter().map(String::as_str));
    run(&cmd)?;
    Ok(())
}

/// `root tbf rate R burst B latency L` for a rate in bit/s.
fn tbf_args(rate_bits_per_s: u64) -> Vec<String> {
    vec![
        "root".into(),
        "tbf".into(),
        "rate".into(),
        format!("{rate_bits_per_s}bit"),
        "burst".into(),
        format!("{}b", burst_bytes(rate_bits_per_s)),
        "latency".into(),
        TBF_LATENCY.into(),
    ]
}

/// Moves the calling thread into the named network namespace.
fn enter_netns(netns: &str) -> io::Result<()> {
    let file = File::open(format!("/run/netns/{netns}"))?;
    // SAFETY: the fd is valid for the call (owned by `file`); setns with
    // CLONE_NEWNET only changes this thread's network namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Namespaces and links whose names start with `prefix`.
///
/// # Errors
/// `ip` cannot be run or fails.
pub fn leftovers(prefix: &str) -> Result<Vec<String>, NetnsError> {
    let mut names = Vec::new();
    for line in run(&["ip", "netns", "list"])?.lines() {
        if let Some(name) = line.split_whitespace().next() {
            if name.starts_with(prefix) {
                names.push(format!("netns {name}"));
            }
        }
    }
    for line in run(&["ip", "-o", "link", "show"])?.lines() {
        // "8: name@if9: <...>": the name is the second field up to '@' or ':'.
        let name = line.split(": ").nth(1).unwrap_or("");
        let name = name.split('@').next().unwrap_or(name);
        if name.starts_with(prefix) {
            names.push(format!("link {name}"));
        }
    }
    Ok(names)
}

/// Deletes every link and namespace named with `prefix`, waiting (bounded)
/// for the kernel's asynchronous cleanup of veths in deleted namespaces.
fn delete_prefixed(prefix: &str) -> Result<(), NetnsError> {
    // Links first: deleting a bridge-side veth removes its peer at once,
    // whereas a deleted namespace frees its veths later, from a workqueue.
    for entry in leftovers(prefix)? {
        if let Some(link) = entry.strip_prefix("link ") {
            let _ = run(&["ip", "link", "del", link]);
        }
    }
    for entry in leftovers(prefix)? {
        if let Some(ns) = entry.strip_prefix("netns ") {
            let _ = run(&["ip", "netns", "del", ns]);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = leftovers(prefix)?;
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(NetnsError::Leftover(left));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Removes namespaces and links left by earlier runs tagged `tag` whose
/// process (the pid in the name) no longer exists. Returns the prefixes reaped.
///
/// # Errors
/// `ip` cannot be run, or a reaped prefix leaves names behind.
pub fn reap_stale(tag: &str) -> Result<Vec<String>, NetnsError> {
    let mut stale = Vec::new();
    for entry in leftovers(tag)? {
        let name = entry.split(' ').nth(1).unwrap_or("");
        let rest = name.strip_prefix(tag).unwrap_or("");
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let Ok(pid) = digits.parse::<u32>() else {
            continue;
        };
        let alive = std::path::Path::new(&format!("/proc/{pid}")).exists();
        let prefix = format!("{tag}{pid}-");
        if !alive && name.starts_with(&prefix) && !stale.contains(&prefix) {
            stale.push(prefix);
        }
    }
    for prefix in &stale {
        delete_prefixed(prefix)?;
    }
    Ok(stale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_in_the_benchmarking_range() {
        assert_eq!(host_addr(0), Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(host_addr(255), Ipv4Addr::new(198, 18, 1, 0));
        assert_eq!(host_addr(MAX_HOSTS - 1), Ipv4Addr::new(198, 19, 255, 254));
    }

    #[test]
    fn burst_is_at_least_128_kib() {
        assert_eq!(burst_bytes(1_000_000), MIN_BURST_BYTES);
        assert_eq!(burst_bytes(10_000_000_000), 5_000_000);
    }

    #[test]
    fn prefix_names_fit_ifnamsiz() {
        let prefix = "p2pb32768-";
        assert!(format!("{prefix}9999h").len() <= IFNAME_MAX_LEN);
        assert!(format!("{prefix}br").len() <= IFNAME_MAX_LEN);
    }
}
