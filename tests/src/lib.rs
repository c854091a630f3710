//! Helpers for p2pe's cross-crate tests (`tests/tests/*.rs`): real processes on
//! loopback and interop with real BitTorrent software.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

/// Bound on waiting for a child's line (listen address) in [`Proc`].
pub const PROC_LINE_BOUND: Duration = Duration::from_secs(120);

/// A child process killed (by PID) and reaped on drop; its stdout lines are
/// read by a thread onto `lines`.
pub struct Proc {
    /// The child.
    pub child: Child,
    /// Its stdout, line by line.
    pub lines: mpsc::Receiver<String>,
}

impl Proc {
    /// Spawns `cmd` (stdin null, stdout piped, stderr inherited).
    ///
    /// # Panics
    /// If the child cannot be spawned (a test-setup failure).
    pub fn spawn(cmd: &mut Command) -> Proc {
        Self::spawn_with(cmd, Stdio::inherit())
    }

    /// As [`Proc::spawn`], with `stderr` as given.
    ///
    /// # Panics
    /// If the child cannot be spawned (a test-setup failure).
    pub fn spawn_with(cmd: &mut Command, stderr: Stdio) -> Proc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Proc { child, lines }
    }

    /// Waits (at most [`PROC_LINE_BOUND`]) for a line `pick` accepts; lines
    /// passed over go to `skipped`.
    ///
    /// # Panics
    /// If no such line comes in time (`what` names it).
    pub fn line<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&str) -> Option<T>,
        mut skipped: impl FnMut(String),
    ) -> T {
        let end = Instant::now() + PROC_LINE_BOUND;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("child printed no {what} in time"));
            if let Some(t) = pick(&line) {
                return t;
            }
            skipped(line);
        }
    }

    /// Waits for the listen address the child prints ([`listen_addr_in`]).
    pub fn listen_addr(&mut self) -> std::net::SocketAddr {
        self.line("listen address", listen_addr_in, drop)
    }

    /// Waits (bounded) for exit; returns success and the remaining stdout lines.
    ///
    /// # Panics
    /// If the child does not exit within `bound`.
    pub fn wait(&mut self, bound: Duration) -> (bool, Vec<String>) {
        let end = Instant::now() + bound;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // The reader thread ends at EOF; give it a bound too.
                let mut out = Vec::new();
                while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(5)) {
                    out.push(l);
                }
                return (status.success(), out);
            }
            assert!(Instant::now() < end, "child did not exit within {bound:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Path of the `p2pe` binary of this workspace, in the profile the tests were
/// built in (`target/<profile>/p2pe`, next to the test executable's `deps/`).
///
/// `cargo test --workspace` builds that binary itself before any test runs
/// (`p2pe-tools` has integration tests), in the same profile and with the same
/// features as everything else, so then nothing is built here: the binary is
/// newer than every source it is made of. Only when it is missing or older
/// than a source (e.g. `cargo test -p p2pe-tests` after an edit) does the
/// first call run `cargo build --profile test -p p2pe-tools --bin p2pe`
/// (`--release` for release test builds). It never builds in another profile
/// (the dev profile would mean a second full compile of every dependency).
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
            let bin = profile_dir.join("p2pe");
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
            if is_fresh(&bin, &root) {
                return bin;
            }
            let release = profile_dir.file_name().is_some_and(|n| n == "release");
            let mut cmd = Command::new(env!("CARGO"));
            cmd.args(["build", "--quiet", "-p", "p2pe-tools", "--bin", "p2pe"]);
            if release {
                cmd.arg("--release");
            } else {
                cmd.args(["--profile", "test"]);
            }
            eprintln!(
                "p2pe-tests: {} is missing or stale; building it",
                bin.display()
            );
            let status = cmd.status().expect("run cargo build");
            assert!(status.success(), "cargo build -p p2pe-tools failed");
            bin
        })
        .clone()
}

/// Whether `bin` exists and is newer than every source of the `p2pe` binary
/// in the workspace at `root`: its `Cargo.toml`s and `Cargo.lock`, and the
/// `src/` trees of the crates it is made of.
fn is_fresh(bin: &Path, root: &Path) -> bool {
    let Ok(built) = std::fs::metadata(bin).and_then(|m| m.modified()) else {
        return false;
    };
    let mut stack = vec![root.join("Cargo.toml"), root.join("Cargo.lock")];
    for krate in ["engine", "tools", "bench"] {
        stack.push(root.join(krate).join("Cargo.toml"));
        stack.push(root.join(krate).join("src"));
    }
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::metadata(&p) else {
            return false;
        };
        if meta.is_dir() {
            if p.ends_with("bench/src/bin") {
                continue; // the bench's own binaries: not part of `p2pe`
            }
            let Ok(entries) = std::fs::read_dir(&p) else {
                return false;
            };
            stack.extend(entries.filter_map(|e| e.ok().map(|e| e.path())));
        } else if meta.modified().map_or(true, |m| m > built) {
            return false;
        }
    }
    true
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

/// Whether `program` is an executable file in a directory of `$PATH` (e.g.
/// `aria2c`, `transmission-daemon`; `.ci/run` installs them).
pub fn command_available(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(program))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// `complete` (seeders) of one torrent in the HTTP scrape of the tracker at
/// `tracker` (`GET /scrape?info_hash=…`, BEP 48), or `None` if the scrape
/// failed or does not list the torrent. `info_hash_hex`: 40 hex digits.
pub fn tracker_seeders(tracker: std::net::SocketAddr, info_hash_hex: &str) -> Option<u64> {
    use std::io::{Read, Write};
    use std::time::Duration;
    let ih = (0..info_hash_hex.len())
        .step_by(2)
        .map(|i| Some(format!("%{}", info_hash_hex.get(i..i + 2)?)))
        .collect::<Option<String>>()?;
    let mut s = std::net::TcpStream::connect_timeout(&tracker, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let req = format!(
        "GET /scrape?info_hash={ih} HTTP/1.1\r\nHost: {tracker}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut resp = Vec::new();
    let mut buf = [0u8; 1024];
    // Read the head, then Content-Length bytes of body (the connection may
    // be kept alive).
    let body = loop {
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        resp.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&resp);
        let Some(head_end) = text.find("\r\n\r\n") else {
            continue;
        };
        let len: usize = text[..head_end].lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })?;
        if resp.len() >= head_end + 4 + len {
            break text[head_end + 4..].to_string();
        }
    };
    let at = body.find("8:completei")? + "8:completei".len();
    body[at..].split('e').next()?.parse().ok()
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn touch(path: &Path, at: SystemTime) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let f = std::fs::File::create(path).unwrap();
        f.set_modified(at).unwrap();
    }

    /// The binary `cargo test --workspace` built is used as it is unless a
    /// source of it is newer (then, and only then, it is rebuilt).
    #[test]
    fn a_binary_is_fresh_until_a_source_of_it_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let t0 = SystemTime::now() - Duration::from_secs(100);
        for f in [
            "Cargo.toml",
            "Cargo.lock",
            "engine/Cargo.toml",
            "tools/Cargo.toml",
        ] {
            touch(&root.join(f), t0);
        }
        touch(&root.join("bench/Cargo.toml"), t0);
        touch(&root.join("engine/src/lib.rs"), t0);
        touch(&root.join("tools/src/main.rs"), t0);
        touch(&root.join("bench/src/lib.rs"), t0);
        let bin = root.join("target/debug/p2pe");
        assert!(!is_fresh(&bin, root), "missing");
        touch(&bin, t0 + Duration::from_secs(10));
        assert!(is_fresh(&bin, root));
        // The bench's own binaries and the tests crate are not part of `p2pe`.
        touch(
            &root.join("bench/src/bin/x.rs"),
            t0 + Duration::from_secs(20),
        );
        touch(&root.join("tests/src/lib.rs"), t0 + Duration::from_secs(20));
        assert!(is_fresh(&bin, root));
        touch(
            &root.join("engine/src/core/a.rs"),
            t0 + Duration::from_secs(20),
        );
        assert!(!is_fresh(&bin, root), "a newer engine source");
    }
}
