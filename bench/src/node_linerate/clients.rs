//! The clients of the whole-process comparison and their command lines: each
//! client seeds the one data file to itself on 127.0.0.1, from the same
//! `.torrent` (made by `p2pe create`, no tracker in it).
//!
//! How a downloader finds its seeder: p2pe `--peer`, rqbit
//! `--initial-peers`, libtorrent `connect_peer` (`lt_peer.py --peer`); aria2
//! has no such option, so its pair announces to a `p2pe tracker` the harness
//! runs (`--bt-tracker`). Every client runs without DHT, LSD, UPnP and PEX
//! where it has a switch for them; everything else is the client's default,
//! as a user would run it. Command lines are pure functions of
//! [`SeedSpec`]/[`GetSpec`] so they are unit-tested.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::swarm_bench::client::SYSTEM_PYTHON;

/// One client of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Client {
    /// `p2pe seed` / `p2pe get` (the binary under test).
    P2pe,
    /// rqbit (`rqbit download`), a Rust client.
    Rqbit,
    /// python3-libtorrent (rasterbar) through `bench/scripts/lt_peer.py`.
    Libtorrent,
    /// aria2 (`aria2c`).
    Aria2,
}

impl Client {
    /// Every client, in the order a repetition runs them.
    pub const ALL: [Client; 4] = [
        Client::P2pe,
        Client::Rqbit,
        Client::Libtorrent,
        Client::Aria2,
    ];

    /// The name used in tables, JSON and `--clients`.
    pub fn name(self) -> &'static str {
        match self {
            Client::P2pe => "p2pe",
            Client::Rqbit => "rqbit",
            Client::Libtorrent => "libtorrent",
            Client::Aria2 => "aria2",
        }
    }

    /// The client named `s` (as [`Client::name`] prints it).
    ///
    /// # Errors
    /// An unknown name (the message lists the known ones).
    pub fn parse(s: &str) -> Result<Client, String> {
        Client::ALL
            .into_iter()
            .find(|c| c.name() == s.trim())
            .ok_or_else(|| format!("unknown client {s:?} (p2pe, rqbit, libtorrent, aria2)"))
    }

    /// How to install it (reported when it is missing).
    pub fn install_hint(self) -> &'static str {
        match self {
            Client::P2pe => "cargo build --release -p p2pe-tools",
            Client::Rqbit => "cargo install rqbit --locked",
            Client::Libtorrent => "apt-get install -y python3-libtorrent",
            Client::Aria2 => "apt-get install -y aria2",
        }
    }

    /// Whether the client can run here: its program starts (`--version`, or
    /// `import libtorrent` in `/usr/bin/python3`).
    pub fn installed(self, p2pe_bin: &Path) -> bool {
        let mut cmd = match self {
            Client::P2pe => Command::new(p2pe_bin),
            Client::Rqbit => Command::new("rqbit"),
            Client::Aria2 => Command::new("aria2c"),
            Client::Libtorrent => {
                let mut c = Command::new(SYSTEM_PYTHON);
                c.args(["-c", "import libtorrent"]);
                c
            }
        };
        if self != Client::Libtorrent {
            cmd.arg("--version");
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Whether its programs print human lines on stdout (logged with stderr)
    /// rather than JSON the harness reads.
    pub fn stdout_is_log(self) -> bool {
        matches!(self, Client::Rqbit | Client::Aria2)
    }
}

/// Programs and files the command lines name.
#[derive(Debug, Clone)]
pub struct Programs {
    /// The p2pe executable.
    pub p2pe_bin: PathBuf,
    /// `lt_peer.py`, written into the work directory.
    pub lt_script: PathBuf,
    /// Announce URL of the harness's `p2pe tracker` (aria2 pairs only).
    pub tracker_url: String,
}

/// A seeder: serves `data_dir/<torrent name>` on `127.0.0.1:port`.
#[derive(Debug, Clone)]
pub struct SeedSpec<'a> {
    /// The shared `.torrent`.
    pub torrent: &'a Path,
    /// Directory holding the complete data file.
    pub data_dir: &'a Path,
    /// Listen port on 127.0.0.1.
    pub port: u16,
    /// Seconds after which a seeder that has its own bound gives up.
    pub timeout_s: u64,
}

/// A downloader: fetches into the empty `out_dir` from the seeder on
/// `127.0.0.1:seed_port` and exits at completion.
#[derive(Debug, Clone)]
pub struct GetSpec<'a> {
    /// The shared `.torrent`.
    pub torrent: &'a Path,
    /// Empty output directory.
    pub out_dir: &'a Path,
    /// The seeder's port on 127.0.0.1.
    pub seed_port: u16,
    /// The downloader's own listen port on 127.0.0.1.
    pub listen_port: u16,
    /// Seconds after which a downloader that has its own bound gives up.
    pub timeout_s: u64,
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// aria2c switches shared by seeder and downloader: no DHT, LPD or PEX; the
/// torrent's own trackers replaced by the harness's (it names none anyway).
fn aria2_common(programs: &Programs, port: u16) -> Vec<String> {
    vec![
        "aria2c".into(),
        "--enable-dht=false".into(),
        "--enable-dht6=false".into(),
        "--bt-enable-lpd=false".into(),
        "--enable-peer-exchange=false".into(),
        "--bt-exclude-tracker=*".into(),
        format!("--bt-tracker={}", programs.tracker_url),
        "--bt-external-ip=127.0.0.1".into(),
        format!("--listen-port={port}"),
        "--summary-interval=0".into(),
        "--console-log-level=notice".into(),
        "--bt-save-metadata=false".into(),
    ]
}

/// rqbit switches shared by seeder and downloader (global options, before
/// the subcommand): no DHT (nor its state file), UPnP, LSD or trackers;
/// listen on 127.0.0.1.
fn rqbit_common() -> Vec<String> {
    [
        "rqbit",
        "--disable-dht",
        "--disable-dht-persistence",
        "--disable-upnp-port-forward",
        "--disable-lsd",
        "--disable-trackers",
        "--listen-ip",
        "127.0.0.1",
    ]
    .map(String::from)
    .to_vec()
}

/// The seeder's program and arguments.
pub fn seed_argv(client: Client, programs: &Programs, spec: &SeedSpec) -> Vec<String> {
    let listen = format!("127.0.0.1:{}", spec.port);
    match client {
        Client::P2pe => vec![
            s(&programs.p2pe_bin),
            "seed".into(),
            s(spec.torrent),
            "--path".into(),
            s(spec.data_dir),
            "--listen".into(),
            listen,
            // The resume record makes the next run's start-up check fast.
            "--write-resume".into(),
        ],
        Client::Rqbit => {
            let mut v = rqbit_common();
            v.extend([
                "--listen-port".into(),
                spec.port.to_string(),
                "download".into(),
                "--disable-http-api".into(),
                // The data file exists: check it and serve it (no
                // --exit-on-finish: serve until killed).
                "--overwrite".into(),
                "-o".into(),
                s(spec.data_dir),
                s(spec.torrent),
            ]);
            v
        }
        Client::Libtorrent => vec![
            SYSTEM_PYTHON.into(),
            s(&programs.lt_script),
            "seed".into(),
            "--torrent".into(),
            s(spec.torrent),
            "--save".into(),
            s(spec.data_dir),
            "--listen".into(),
            listen,
            "--timeout".into(),
            spec.timeout_s.to_string(),
        ],
        Client::Aria2 => {
            let mut v = aria2_common(programs, spec.port);
            v.extend([
                format!("--dir={}", s(spec.data_dir)),
                // Hash-check the existing file, then seed it forever.
                "--check-integrity=true".into(),
                "--seed-ratio=0.0".into(),
                s(spec.torrent),
            ]);
            v
        }
    }
}

/// The downloader's program and arguments: it exits once complete.
pub fn get_argv(client: Client, programs: &Programs, spec: &GetSpec) -> Vec<String> {
    let seed = format!("127.0.0.1:{}", spec.seed_port);
    let listen = format!("127.0.0.1:{}", spec.listen_port);
    match client {
        Client::P2pe => vec![
            s(&programs.p2pe_bin),
            "get".into(),
            s(spec.torrent),
            "-o".into(),
            s(spec.out_dir),
            "--peer".into(),
            seed,
            "--listen".into(),
            listen,
            "--json".into(),
        ],
        Client::Rqbit => {
            let mut v = rqbit_common();
            v.extend([
                "--listen-port".into(),
                spec.listen_port.to_string(),
                "download".into(),
                "--disable-http-api".into(),
                "--exit-on-finish".into(),
                "--initial-peers".into(),
                seed,
                "-o".into(),
                s(spec.out_dir),
                s(spec.torrent),
            ]);
            v
        }
        Client::Libtorrent => vec![
            SYSTEM_PYTHON.into(),
            s(&programs.lt_script),
            "leech".into(),
            "--torrent".into(),
            s(spec.torrent),
            "--save".into(),
            s(spec.out_dir),
            "--listen".into(),
            listen,
            "--timeout".into(),
            spec.timeout_s.to_string(),
            "--peer".into(),
            seed,
        ],
        Client::Aria2 => {
            let mut v = aria2_common(programs, spec.listen_port);
            v.extend([
                format!("--dir={}", s(spec.out_dir)),
                // Leave at completion (the swarm's tracker hands out the
                // seeder).
                "--seed-time=0".into(),
                s(spec.torrent),
            ]);
            v
        }
    }
}

/// What in a seeder's output says it serves (a log needle, or a JSON event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    /// This text appears in its log (stderr, and stdout for
    /// [`Client::stdout_is_log`] clients).
    Log(&'static str),
    /// It printed `{"event":"ready"}` on stdout.
    JsonReady,
    /// The harness's tracker counts it as a seeder (aria2).
    TrackerSeeder,
}

/// How the harness knows the seeder of `client` serves.
pub fn seed_ready(client: Client) -> Ready {
    match client {
        Client::P2pe => Ready::Log("seeding "),
        // rqbit's once-a-second stats line of a live, complete torrent.
        Client::Rqbit => Ready::Log("100.00%"),
        Client::Libtorrent => Ready::JsonReady,
        Client::Aria2 => Ready::TrackerSeeder,
    }
}

/// A command from an argv (program first).
///
/// # Panics
/// Never: an empty argv gives a command for the empty program, which fails
/// to spawn.
pub fn command(argv: &[String]) -> Command {
    let mut cmd = Command::new(argv.first().map_or("", String::as_str));
    cmd.args(argv.iter().skip(1));
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    fn programs() -> Programs {
        Programs {
            p2pe_bin: "/bin/p2pe".into(),
            lt_script: "/w/lt_peer.py".into(),
            tracker_url: "http://127.0.0.1:7000/announce".into(),
        }
    }

    fn seed(client: Client) -> Vec<String> {
        seed_argv(
            client,
            &programs(),
            &SeedSpec {
                torrent: Path::new("/w/t.torrent"),
                data_dir: Path::new("/w/data"),
                port: 6001,
                timeout_s: 900,
            },
        )
    }

    fn get(client: Client) -> Vec<String> {
        get_argv(
            client,
            &programs(),
            &GetSpec {
                torrent: Path::new("/w/t.torrent"),
                out_dir: Path::new("/shm/get"),
                seed_port: 6001,
                listen_port: 6002,
                timeout_s: 900,
            },
        )
    }

    /// The index of `arg` in `v`, asserting it is there.
    fn at(v: &[String], arg: &str) -> usize {
        v.iter()
            .position(|a| a == arg)
            .unwrap_or_else(|| panic!("{arg} not in {v:?}"))
    }

    #[test]
    fn p2pe_get_exits_at_completion_and_dials_the_seed() {
        let v = get(Client::P2pe);
        assert_eq!(&v[..3], ["/bin/p2pe", "get", "/w/t.torrent"]);
        assert_eq!(v[at(&v, "-o") + 1], "/shm/get");
        assert_eq!(v[at(&v, "--peer") + 1], "127.0.0.1:6001");
        assert!(v.contains(&"--json".into()));
        // Whole-process mode: the get must exit, so no --seed-after.
        assert!(!v.contains(&"--seed-after".into()));
        let s = seed(Client::P2pe);
        assert_eq!(s[at(&s, "--path") + 1], "/w/data");
        assert_eq!(s[at(&s, "--listen") + 1], "127.0.0.1:6001");
    }

    #[test]
    fn rqbit_global_options_come_before_the_subcommand() {
        for v in [seed(Client::Rqbit), get(Client::Rqbit)] {
            let sub = at(&v, "download");
            for global in [
                "--disable-dht",
                "--listen-ip",
                "--listen-port",
                "--disable-trackers",
            ] {
                assert!(at(&v, global) < sub, "{global} after the subcommand: {v:?}");
            }
            assert_eq!(v.last().map(String::as_str), Some("/w/t.torrent"));
            assert!(at(&v, "--disable-http-api") > sub);
        }
        let g = get(Client::Rqbit);
        assert_eq!(g[at(&g, "--initial-peers") + 1], "127.0.0.1:6001");
        assert_eq!(g[at(&g, "--listen-port") + 1], "6002");
        assert_eq!(g[at(&g, "-o") + 1], "/shm/get");
        assert!(g.contains(&"--exit-on-finish".into()));
        let s = seed(Client::Rqbit);
        assert!(!s.contains(&"--exit-on-finish".into()));
        assert!(s.contains(&"--overwrite".into()));
        assert_eq!(s[at(&s, "--listen-port") + 1], "6001");
    }

    #[test]
    fn libtorrent_runs_the_script_in_system_python() {
        let g = get(Client::Libtorrent);
        assert_eq!(&g[..3], [SYSTEM_PYTHON, "/w/lt_peer.py", "leech"]);
        assert_eq!(g[at(&g, "--peer") + 1], "127.0.0.1:6001");
        assert_eq!(g[at(&g, "--save") + 1], "/shm/get");
        assert!(!g.contains(&"--stay".into()));
        let s = seed(Client::Libtorrent);
        assert_eq!(s[2], "seed");
        assert_eq!(s[at(&s, "--listen") + 1], "127.0.0.1:6001");
    }

    #[test]
    fn aria2_pairs_meet_at_the_harness_tracker() {
        let g = get(Client::Aria2);
        let s = seed(Client::Aria2);
        for v in [&g, &s] {
            assert_eq!(v[0], "aria2c");
            assert!(v.contains(&"--bt-tracker=http://127.0.0.1:7000/announce".into()));
            assert!(v.contains(&"--enable-dht=false".into()));
            assert_eq!(v.last().map(String::as_str), Some("/w/t.torrent"));
        }
        assert!(g.contains(&"--seed-time=0".into()));
        assert!(g.contains(&"--dir=/shm/get".into()));
        assert!(g.contains(&"--listen-port=6002".into()));
        assert!(s.contains(&"--seed-ratio=0.0".into()));
        assert!(s.contains(&"--check-integrity=true".into()));
        assert!(s.contains(&"--listen-port=6001".into()));
    }

    #[test]
    fn names_round_trip_and_unknown_names_fail() {
        for c in Client::ALL {
            assert_eq!(Client::parse(c.name()), Ok(c));
        }
        assert!(Client::parse("transmission").is_err());
        assert_eq!(Client::Rqbit.install_hint(), "cargo install rqbit --locked");
    }
}
