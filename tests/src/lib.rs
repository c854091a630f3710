//! Helpers for p2pe's cross-crate tests (`tests/tests/*.rs`): real processes on
//! loopback and interop with real BitTorrent software.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// Path of the `p2pe` binary of this workspace, built (or brought up to date)
/// once per test process.
///
/// `cargo test --workspace` builds the `p2pe` binary before any test runs,
/// because `p2pe-tools` has integration tests; when a test of this crate is run
/// on its own (`cargo test -p p2pe-tests`) the binary might be missing or stale,
/// so the first call runs `cargo build -p p2pe-tools --bin p2pe` for the same
/// profile (a no-op when it is up to date).
///
/// # Panics
/// If the binary cannot be built (a test-setup failure, not a product error).
pub fn p2pe_bin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().expect("test executable path");
            // target/<profile>/deps/<test-exe> -> target/<profile>/p2pe
            let profile_dir = exe
                .parent()
                .and_then(|deps| deps.parent())
                .expect("target/<profile> directory")
                .to_path_buf();
            let release = profile_dir.file_name().is_some_and(|n| n == "release");
            let mut cmd = Command::new(env!("CARGO"));
            cmd.args(["build", "--quiet", "-p", "p2pe-tools", "--bin", "p2pe"]);
            if release {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("run cargo build");
            assert!(status.success(), "cargo build -p p2pe-tools failed");
            profile_dir.join("p2pe")
        })
        .clone()
}

/// The address a `p2pe seed|get|tracker` output line announces: `listening on
/// ADDR` (stdout, or stderr with `--json`) or `{"event":"listening","addr":"ADDR"}`
/// (stdout with `--json`); `None` for any other line.
pub fn listen_addr_in(line: &str) -> Option<std::net::SocketAddr> {
    if let Some(a) = line.strip_prefix("listening on ") {
        return a.trim().parse().ok();
    }
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v["event"] != "listening" {
        return None;
    }
    v["addr"].as_str()?.parse().ok()
}

/// `/usr/bin/python3`: Debian's python3-libtorrent is importable only from it.
pub const SYSTEM_PYTHON: &str = "/usr/bin/python3";

/// Whether Debian's `python3-libtorrent` can be imported (installed by `.ci/run`).
pub fn libtorrent_available() -> bool {
    Command::new(SYSTEM_PYTHON)
        .args(["-c", "import libtorrent"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Deterministic pseudo-random bytes (xorshift), `len` of them, from `seed`.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A free port number on 127.0.0.1 (TCP; opentracker binds UDP on the same number).
///
/// # Panics
/// If no loopback port can be bound (a test-setup failure).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Waits until something accepts TCP connections on `addr`, polling within `bound`.
///
/// # Panics
/// If nothing listens there within `bound`.
pub fn wait_for_tcp(addr: std::net::SocketAddr, bound: std::time::Duration) {
    let deadline = std::time::Instant::now() + bound;
    while std::time::Instant::now() < deadline {
        let probe = std::time::Duration::from_millis(200);
        if std::net::TcpStream::connect_timeout(&addr, probe).is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("nothing listening on {addr} within {bound:?}");
}
