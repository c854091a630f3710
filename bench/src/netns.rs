//! Emulated hosts on one machine: network namespaces joined by a Linux bridge.
//!
//! Each host `i` is a network namespace `{prefix}{i}` with one veth pair:
//! `{prefix}{i}h` inside the namespace (address `198.18.0.0 + i + 1`/15, the
//! RFC 2544 benchmarking range) and `{prefix}{i}b` in the root namespace,
//! enslaved to the bridge `{prefix}br`. Upload is shaped by a `tbf` qdisc on the
//! egress of `{prefix}{i}h` (inside the namespace), download by a `tbf` on the
//! egress of `{prefix}{i}b` (bridge side).
//!
//! Racks ([`Lan::create_racked`]): the bridge `{prefix}br` becomes the core; rack `k`
//! is a bridge `{prefix}r{k}` joined to the core by a veth pair, `{prefix}r{k}u` on the
//! rack bridge and `{prefix}r{k}c` on the core. The rack's uplink (rack → core) is a
//! `tbf` on the egress of `{prefix}r{k}u`, its downlink (core → rack) a `tbf` on the
//! egress of `{prefix}r{k}c`; a racked host's bridge-side veth is enslaved to its rack
//! bridge, an unracked one (tracker, origin) to the core, as in the simulator's model
//! (`engine/src/sim/racks.rs`, `docs/topology.md`).
//!
//! Invariants: every namespace and link this module creates carries the run's
//! prefix; [`Lan::teardown`] (also run on drop) deletes all of them and then
//! checks that none is left. The prefix includes the creating process's pid, so
//! [`reap_stale`] can remove what a killed earlier run left behind.
//!
//! Needs root (CAP_NET_ADMIN and `ip netns`); uses `ip` and `tc` from iproute2.
// libc calls (rusage, signals, statfs, poll, mmap): the workspace denies unsafe_code.
#![allow(unsafe_code)]

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

/// How the hosts of a LAN are racked.
#[derive(Debug, Clone, PartialEq)]
pub struct RackPlan {
    /// Racks R (at least 1).
    pub racks: usize,
    /// Rack of each host, by host index (`None`: on the core bridge); as long as the
    /// hosts, every rack below `racks`.
    pub rack_of: Vec<Option<usize>>,
    /// Each rack's link to the core: `up` is rack → core, `down` core → rack.
    pub link: LinkSpec,
}

/// N hosts on one bridge, or on rack bridges joined to a core bridge. Torn down on
/// [`Lan::teardown`] or drop.
#[derive(Debug)]
pub struct Lan {
    prefix: String,
    bridge: String,
    hosts: Vec<Host>,
    /// Racks created (0: flat).
    racks: usize,
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
        Self::create_with(prefix, links, None)
    }

    /// Creates one host per entry of `links` on rack bridges joined through shaped
    /// links to a core bridge (see the module docs), as `plan` says.
    ///
    /// On failure everything created so far is torn down before returning.
    ///
    /// # Errors
    /// As [`Lan::create`]; [`NetnsError::PrefixTooLong`] also when a rack's link names
    /// do not fit, [`NetnsError::ZeroRate`] (with the host count as index) for a zero
    /// rack rate, [`NetnsError::HostCount`] when `plan.rack_of` does not match `links`.
    pub fn create_racked(
        prefix: &str,
        links: &[LinkSpec],
        plan: &RackPlan,
    ) -> Result<Lan, NetnsError> {
        Self::create_with(prefix, links, Some(plan))
    }

    fn create_with(
        prefix: &str,
        links: &[LinkSpec],
        plan: Option<&RackPlan>,
    ) -> Result<Lan, NetnsError> {
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
        if let Some(plan) = plan {
            check_plan(prefix, links.len(), plan)?;
        }
        let mut lan = Lan {
            prefix: prefix.to_owned(),
            bridge: format!("{prefix}br"),
            hosts: Vec::new(),
            racks: 0,
            torn_down: false,
        };
        // On any error `lan` is dropped here, which tears down what exists.
        run(&["ip", "link", "add", &lan.bridge, "type", "bridge"])?;
        run(&["ip", "link", "set", &lan.bridge, "up"])?;
        if let Some(plan) = plan {
            for k in 0..plan.racks {
                lan.racks = k + 1;
                for cmd in rack_commands(prefix, k, plan.link) {
                    let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
                    run(&args)?;
                }
            }
        }
        for (i, link) in links.iter().enumerate() {
            let host = Host {
                netns: format!("{prefix}{i}"),
                addr: host_addr(i),
                host_veth: format!("{prefix}{i}h"),
                bridge_veth: format!("{prefix}{i}b"),
                link: *link,
            };
            lan.hosts.push(host.clone());
            let bridge = match plan.and_then(|p| p.rack_of.get(i).copied().flatten()) {
                Some(k) => rack_bridge(prefix, k),
                None => lan.bridge.clone(),
            };
            add_host(&bridge, &host)?;
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

    /// Racks of this LAN (0: flat, one bridge).
    pub fn racks(&self) -> usize {
        self.racks
    }

    /// Bytes that crossed rack `rack`'s uplink into the core (wire bytes, headers
    /// included), from the core-side veth's `rx_bytes` counter: what the shaper let
    /// through, not what was offered to it.
    ///
    /// # Errors
    /// No such rack, or the counter cannot be read or parsed.
    pub fn rack_uplink_wire_bytes(&self, rack: usize) -> io::Result<u64> {
        if rack >= self.racks {
            return Err(io::Error::other("no such rack"));
        }
        let (_, core_side) = rack_trunk(&self.prefix, rack);
        let path = format!("/sys/class/net/{core_side}/statistics/rx_bytes");
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

/// Name of rack `k`'s bridge.
fn rack_bridge(prefix: &str, k: usize) -> String {
    format!("{prefix}r{k}")
}

/// Rack `k`'s trunk veth pair: (on the rack bridge, on the core bridge).
fn rack_trunk(prefix: &str, k: usize) -> (String, String) {
    (format!("{prefix}r{k}u"), format!("{prefix}r{k}c"))
}

/// Checks a rack plan against the host count and the name length limit.
fn check_plan(prefix: &str, hosts: usize, plan: &RackPlan) -> Result<(), NetnsError> {
    if plan.rack_of.len() != hosts || plan.racks == 0 {
        return Err(NetnsError::HostCount(hosts));
    }
    if plan.rack_of.iter().flatten().any(|&k| k >= plan.racks) {
        return Err(NetnsError::HostCount(hosts));
    }
    if plan.link.up_bits_per_s == 0 || plan.link.down_bits_per_s == 0 {
        return Err(NetnsError::ZeroRate(hosts));
    }
    let (longest, _) = rack_trunk(prefix, plan.racks - 1);
    if longest.len() > IFNAME_MAX_LEN {
        return Err(NetnsError::PrefixTooLong(prefix.to_owned(), hosts));
    }
    Ok(())
}

/// The commands that create rack `k`: its bridge, the trunk veth pair to the core
/// bridge `{prefix}br`, and the two tbf shapers (uplink on the rack side's egress,
/// downlink on the core side's egress).
fn rack_commands(prefix: &str, k: usize, link: LinkSpec) -> Vec<Vec<String>> {
    let bridge = rack_bridge(prefix, k);
    let core = format!("{prefix}br");
    let (up, down) = rack_trunk(prefix, k);
    let argv = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<String>>();
    let tbf = |dev: &str, bits: u64| {
        let mut v = argv(&["tc", "qdisc", "add", "dev", dev]);
        v.extend(tbf_args(bits));
        v
    };
    vec![
        argv(&["ip", "link", "add", &bridge, "type", "bridge"]),
        argv(&["ip", "link", "set", &bridge, "up"]),
        argv(&[
            "ip", "link", "add", &up, "type", "veth", "peer", "name", &down,
        ]),
        argv(&["ip", "link", "set", &up, "master", &bridge, "up"]),
        argv(&["ip", "link", "set", &down, "master", &core, "up"]),
        tbf(&up, link.up_bits_per_s),
        tbf(&down, link.down_bits_per_s),
    ]
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
    fn rack_commands_shape_both_ways() {
        let cmds = rack_commands("p2pb42-", 1, LinkSpec::symmetric_mbit(50.0));
        let lines: Vec<String> = cmds.iter().map(|c| c.join(" ")).collect();
        assert_eq!(
            lines,
            [
                "ip link add p2pb42-r1 type bridge",
                "ip link set p2pb42-r1 up",
                "ip link add p2pb42-r1u type veth peer name p2pb42-r1c",
                "ip link set p2pb42-r1u master p2pb42-r1 up",
                "ip link set p2pb42-r1c master p2pb42-br up",
                "tc qdisc add dev p2pb42-r1u root tbf rate 50000000bit burst 131072b latency 50ms",
                "tc qdisc add dev p2pb42-r1c root tbf rate 50000000bit burst 131072b latency 50ms",
            ]
        );
        // Every name carries the run prefix, so teardown and reap_stale find it.
        for c in &cmds {
            for name in c.iter().filter(|a| a.contains("r1")) {
                assert!(name.starts_with("p2pb42-"), "{name}");
            }
        }
    }

    #[test]
    fn rack_plan_is_checked() {
        let link = LinkSpec::symmetric_mbit(50.0);
        let plan = |rack_of: Vec<Option<usize>>, racks| RackPlan {
            racks,
            rack_of,
            link,
        };
        let ok = plan(vec![None, None, Some(0), Some(1)], 2);
        assert!(check_plan("p2pb32768-", 4, &ok).is_ok());
        assert!(check_plan("p2pb32768-", 5, &ok).is_err());
        assert!(check_plan("p2pb32768-", 4, &plan(vec![None, None, Some(2), None], 2)).is_err());
        // 7-digit pid and 10 racks: "p2pb4194304-r9u" is 15 characters, r10u would be 16.
        let ten = plan(vec![Some(9)], 10);
        assert!(check_plan("p2pb4194304-", 1, &ten).is_ok());
        let eleven = plan(vec![Some(10)], 11);
        assert!(check_plan("p2pb4194304-", 1, &eleven).is_err());
    }

    #[test]
    fn prefix_names_fit_ifnamsiz() {
        let prefix = "p2pb32768-";
        assert!(format!("{prefix}9999h").len() <= IFNAME_MAX_LEN);
        assert!(format!("{prefix}br").len() <= IFNAME_MAX_LEN);
    }
}
