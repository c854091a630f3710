//! Pluggable swarm clients (libtorrent, p2pe) and the tracker they announce to.

use std::io;
use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The libtorrent peer script, written into each run's work directory.
pub const LT_PEER_PY: &str = include_str!("../../scripts/lt_peer.py");
/// The only Python from which Debian's python3-libtorrent imports.
pub const SYSTEM_PYTHON: &str = "/usr/bin/python3";

/// Where and what one peer process serves or fetches.
#[derive(Debug, Clone)]
pub struct PeerCtx<'a> {
    /// The .torrent (v1) all peers share; it names the tracker.
    pub torrent: &'a Path,
    /// Seeder: directory holding the data file. Leecher: empty output directory.
    pub dir: &'a Path,
    /// Address to listen on (the host's own address).
    pub listen: SocketAddrV4,
    /// Seconds after which the peer gives up on its own.
    pub timeout_s: u64,
    /// Leechers: every other swarm member's address, origin first, for
    /// clients told their peers directly instead of through the tracker.
    pub others: &'a [SocketAddrV4],
    /// Leechers: keep seeding after completion until terminated (the
    /// harness stops every peer once the last leecher completes), as a fleet
    /// does; false: leave the swarm at completion.
    pub stay: bool,
    /// Leechers: the rack label to announce (`--rack` of `p2pe get`; clients without
    /// rack labels ignore it). `None`: flat or rack-oblivious.
    pub rack: Option<&'a str>,
}

/// A peer's command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCommand {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// True if the program itself prints `{"event":"ready"}` and then waits
    /// for EOF on stdin (the start barrier); otherwise the harness wraps it.
    pub self_barrier: bool,
}

/// What the tracker needs to start.
#[derive(Debug, Clone)]
pub struct TrackerCtx<'a> {
    /// Address to listen on (TCP; UDP too where the tracker has it).
    pub listen: SocketAddrV4,
    /// A directory of its own (opentracker chroots here).
    pub dir: &'a Path,
    /// The torrent's info-hash, 40 lowercase hex digits (for whitelists).
    pub info_hash_hex: &'a str,
}

/// A BitTorrent implementation the swarm bench can run.
///
/// Seeder and leechers print JSON objects on stdout: a leecher's completion
/// line has `"event":"complete"` or `"complete":true`; `uploaded_bytes`
/// anywhere is taken as payload uploaded so far.
pub trait SwarmClient {
    /// Short name for reports (`libtorrent`, `p2pe`).
    fn name(&self) -> &str;
    /// The tracker's command line.
    ///
    /// # Errors
    /// Its files cannot be prepared.
    fn tracker_cmd(&self, ctx: &TrackerCtx) -> io::Result<Vec<String>>;
    /// The origin seeder's command line.
    fn seeder_cmd(&self, ctx: &PeerCtx) -> PeerCommand;
    /// A leecher's command line.
    fn leecher_cmd(&self, ctx: &PeerCtx) -> PeerCommand;
    /// Whether the harness should wait for the seeder to show up at the
    /// tracker (else it waits for the seeder's port to accept connections).
    fn seeder_announces(&self) -> bool {
        true
    }
    /// Payload bytes the origin sent in the row just run, when the origin
    /// does not print `uploaded_bytes` itself (an HTTP server: its access
    /// log). `None`: only the wire counter is reported.
    fn origin_payload_bytes(&self) -> Option<u64> {
        None
    }
}

/// Which tracker to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tracker {
    /// `p2pe tracker --listen IP:PORT` of this p2pe binary.
    P2pe(PathBuf),
    /// Debian's opentracker (whitelist mode, chrooted in the tracker dir).
    Opentracker,
}

impl Tracker {
    /// `p2pe tracker` if `p2pe_bin` has it, else opentracker if installed.
    ///
    /// # Errors
    /// Neither is available.
    pub fn detect(p2pe_bin: &Path) -> io::Result<Tracker> {
        if has_subcommand(p2pe_bin, "tracker") {
            return Ok(Tracker::P2pe(p2pe_bin.to_owned()));
        }
        let found = Command::new("opentracker")
            .arg("-h")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if found {
            return Ok(Tracker::Opentracker);
        }
        Err(io::Error::other(
            "no tracker: neither `p2pe tracker` nor opentracker is available",
        ))
    }

    /// Short name for reports.
    pub fn name(&self) -> &str {
        match self {
            Tracker::P2pe(_) => "p2pe tracker",
            Tracker::Opentracker => "opentracker",
        }
    }

    /// The tracker's command line.
    ///
    /// # Errors
    /// The opentracker whitelist cannot be written.
    pub fn command(&self, ctx: &TrackerCtx) -> io::Result<Vec<String>> {
        let listen = ctx.listen;
        match self {
            Tracker::P2pe(bin) => Ok(vec![
                path_str(bin),
                "tracker".into(),
                "--listen".into(),
                listen.to_string(),
            ]),
            Tracker::Opentracker => {
                // opentracker chroots into -d and reads -w relative to it.
                std::fs::write(
                    ctx.dir.join("whitelist.txt"),
                    format!("{}\n", ctx.info_hash_hex),
                )?;
                let port = listen.port().to_string();
                Ok([
                    "opentracker",
                    "-i",
                    &listen.ip().to_string(),
                    "-p",
                    &port,
                    "-P",
                    &port,
                    "-d",
                    &path_str(ctx.dir),
                    "-u",
                    "nobody",
                    "-w",
                    "whitelist.txt",
                ]
                .iter()
                .map(|s| (*s).to_owned())
                .collect())
            }
        }
    }
}

/// Whether `bin SUB --help` succeeds (the subcommand exists).
pub fn has_subcommand(bin: &Path, sub: &str) -> bool {
    Command::new(bin)
        .args([sub, "--help"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// python3-libtorrent through `bench/scripts/lt_peer.py`.
#[derive(Debug, Clone)]
pub struct Libtorrent {
    /// Where the script was written.
    pub script: PathBuf,
    /// The tracker to announce to.
    pub tracker: Tracker,
}

impl Libtorrent {
    /// Writes the peer script into `dir` and checks that libtorrent imports.
    ///
    /// # Errors
    /// The script cannot be written, or `/usr/bin/python3 -c 'import libtorrent'` fails.
    pub fn prepare(dir: &Path, tracker: Tracker) -> io::Result<Libtorrent> {
        let script = dir.join("lt_peer.py");
        std::fs::write(&script, LT_PEER_PY)?;
        let ok = Command::new(SYSTEM_PYTHON)
            .args(["-c", "import libtorrent"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err(io::Error::other(
                "python3-libtorrent does not import from /usr/bin/python3 (apt-get install python3-libtorrent)",
            ));
        }
        Ok(Libtorrent { script, tracker })
    }

    fn argv(&self, role: &str, ctx: &PeerCtx) -> Vec<String> {
        let mut argv = vec![
            SYSTEM_PYTHON.into(),
            path_str(&self.script),
            role.into(),
            "--torrent".into(),
            path_str(ctx.torrent),
            "--save".into(),
            path_str(ctx.dir),
            "--listen".into(),
            ctx.listen.to_string(),
            "--timeout".into(),
            ctx.timeout_s.to_string(),
        ];
        if ctx.stay {
            argv.push("--stay".into());
        }
        argv
    }
}

impl SwarmClient for Libtorrent {
    fn name(&self) -> &str {
        "libtorrent"
    }
    fn tracker_cmd(&self, ctx: &TrackerCtx) -> io::Result<Vec<String>> {
        self.tracker.command(ctx)
    }
    fn seeder_cmd(&self, ctx: &PeerCtx) -> PeerCommand {
        PeerCommand {
            argv: self.argv("seed", ctx),
            self_barrier: false,
        }
    }
    fn leecher_cmd(&self, ctx: &PeerCtx) -> PeerCommand {
        PeerCommand {
            argv: self.argv("leech", ctx),
            self_barrier: true,
        }
    }
}

/// The p2pe node: `p2pe seed` and `p2pe get --json`.
#[derive(Debug, Clone)]
pub struct P2pe {
    /// The p2pe binary.
    pub bin: PathBuf,
    /// The tracker to announce to.
    pub tracker: Tracker,
    /// Also pass every other member as `--peer HOST:PORT` (for a `p2pe get`
    /// that does not announce to trackers yet).
    pub static_peers: bool,
}

impl P2pe {
    /// Checks that `bin` has the `seed` and `get` subcommands.
    ///
    /// # Errors
    /// One of them is missing.
    pub fn prepare(bin: &Path, tracker: Tracker) -> io::Result<P2pe> {
        for sub in ["seed", "get"] {
            if !has_subcommand(bin, sub) {
                return Err(io::Error::other(format!(
                    "{} has no `{sub}` subcommand yet",
                    bin.display()
                )));
            }
        }
        Ok(P2pe {
            bin: bin.to_owned(),
            tracker,
            static_peers: false,
        })
    }
}

impl P2pe {
    /// `p2pe SUB TORRENT DIR_FLAG DIR --listen ADDR --json --workers 1`.
    fn argv(&self, sub: &str, dir_flag: &str, ctx: &PeerCtx) -> Vec<String> {
        vec![
            path_str(&self.bin),
            sub.into(),
            path_str(ctx.torrent),
            dir_flag.into(),
            path_str(ctx.dir),
            "--listen".into(),
            ctx.listen.to_string(),
            "--json".into(),
            // The emulated hosts share this machine's cores.
            "--workers".into(),
            "1".into(),
        ]
    }
}

impl SwarmClient for P2pe {
    fn name(&self) -> &str {
        "p2pe"
    }
    fn tracker_cmd(&self, ctx: &TrackerCtx) -> io::Result<Vec<String>> {
        self.tracker.command(ctx)
    }
    fn seeder_cmd(&self, ctx: &PeerCtx) -> PeerCommand {
        PeerCommand {
            argv: self.argv("seed", "--path", ctx),
            self_barrier: false,
        }
    }
    fn leecher_cmd(&self, ctx: &PeerCtx) -> PeerCommand {
        let mut argv = self.argv("get", "-o", ctx);
        if ctx.stay {
            argv.push("--seed-after".into());
        }
        if let Some(rack) = ctx.rack {
            argv.push("--rack".into());
            argv.push(rack.into());
        }
        if self.static_peers {
            for peer in ctx.others {
                argv.push("--peer".into());
                argv.push(peer.to_string());
            }
        }
        PeerCommand {
            argv,
            self_barrier: false,
        }
    }
    fn seeder_announces(&self) -> bool {
        !self.static_peers
    }
}

/// p2pe leechers whose only origin is an HTTP server: Debian's `nginx` on
/// the origin host serving the data directory, given to every `p2pe get` as
/// its web seed (BEP 19: `--web-seed http://ORIGIN:PORT/`; the single-file
/// torrent's name is appended). No `p2pe seed` runs: the origin's HTTP bytes
/// ÷ F are the copies the swarm took from the HTTP store (issue 14).
#[derive(Debug, Clone)]
pub struct P2peWebSeed {
    /// The p2pe leechers (announcing to the tracker to find each other).
    pub p2pe: P2pe,
    /// The nginx binary.
    pub nginx: PathBuf,
    /// nginx's prefix: config, pid, temp paths and the access log.
    pub dir: PathBuf,
}

impl P2peWebSeed {
    /// Finds nginx and creates its directory `work/nginx`.
    ///
    /// # Errors
    /// nginx is not installed, or the directory cannot be created.
    pub fn prepare(p2pe: P2pe, work: &Path) -> io::Result<P2peWebSeed> {
        let nginx = crate::nginx::binary()
            .ok_or_else(|| io::Error::other("nginx is not installed (apt-get install -y nginx)"))?;
        let dir = work.join("nginx");
        std::fs::create_dir_all(&dir)?;
        Ok(P2peWebSeed { p2pe, nginx, dir })
    }
}

impl SwarmClient for P2peWebSeed {
    fn name(&self) -> &str {
        "p2pe-web-seed"
    }
    fn tracker_cmd(&self, ctx: &TrackerCtx) -> io::Result<Vec<String>> {
        self.p2pe.tracker_cmd(ctx)
    }
    fn seeder_cmd(&self, ctx: &PeerCtx) -> PeerCommand {
        // A fresh config and access log per row; a write failure shows as
        // nginx failing to start (the harness names the row's logs).
        let conf = self.dir.join("nginx.conf");
        let config = crate::nginx::config(&self.dir, ctx.listen.into(), ctx.dir, None);
        let _ = std::fs::write(&conf, config);
        let _ = std::fs::write(crate::nginx::access_log(&self.dir), b"");
        PeerCommand {
            argv: vec![
                path_str(&self.nginx),
                "-p".into(),
                path_str(&self.dir),
                "-c".into(),
                path_str(&conf),
                "-e".into(),
                path_str(&self.dir.join("error.log")),
            ],
            self_barrier: false,
        }
    }
    fn leecher_cmd(&self, ctx: &PeerCtx) -> PeerCommand {
        let mut cmd = self.p2pe.leecher_cmd(ctx);
        if let Some(origin) = ctx.others.first() {
            cmd.argv.push("--web-seed".into());
            cmd.argv.push(format!("http://{origin}/"));
        }
        cmd
    }
    fn seeder_announces(&self) -> bool {
        false
    }
    fn origin_payload_bytes(&self) -> Option<u64> {
        let log = std::fs::read_to_string(crate::nginx::access_log(&self.dir)).ok()?;
        Some(log.lines().filter_map(crate::nginx::body_bytes).sum())
    }
}

/// Wraps a program that does not wait on the start barrier itself: a shell
/// prints the ready line, reads stdin to EOF, then execs the program (same pid).
pub fn barrier_wrap(argv: &[String]) -> Vec<String> {
    let mut out: Vec<String> = [
        "sh",
        "-c",
        "echo '{\"event\":\"ready\"}'; cat >/dev/null; exec \"$@\"",
        "sh",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    out.extend(argv.iter().cloned());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opentracker_command_writes_whitelist() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = TrackerCtx {
            listen: "198.18.0.1:6969".parse().unwrap(),
            dir: dir.path(),
            info_hash_hex: "00112233445566778899aabbccddeeff00112233",
        };
        let argv = Tracker::Opentracker.command(&ctx).unwrap();
        assert_eq!(argv.first().map(String::as_str), Some("opentracker"));
        assert!(argv.contains(&"whitelist.txt".to_owned()));
        let wl = std::fs::read_to_string(dir.path().join("whitelist.txt")).unwrap();
        assert_eq!(wl.trim(), ctx.info_hash_hex);
    }

    #[test]
    fn web_seed_origin_serves_the_data_dir_and_sums_its_access_log() {
        let work = tempfile::tempdir().unwrap();
        let p2pe = P2pe {
            bin: "/bin/p2pe".into(),
            tracker: Tracker::P2pe("/bin/p2pe".into()),
            static_peers: false,
        };
        let Ok(c) = P2peWebSeed::prepare(p2pe, work.path()) else {
            eprintln!("SKIP: nginx is not installed");
            return;
        };
        let origin: SocketAddrV4 = "198.18.0.2:6881".parse().unwrap();
        let me: SocketAddrV4 = "198.18.0.3:6881".parse().unwrap();
        let data = work.path().join("origin");
        let ctx = PeerCtx {
            torrent: Path::new("/t.torrent"),
            dir: &data,
            listen: origin,
            timeout_s: 60,
            others: &[origin, me],
            stay: true,
            rack: Some("r1"),
        };
        let seeder = c.seeder_cmd(&ctx);
        assert!(seeder.argv[0].ends_with("nginx"), "{:?}", seeder.argv);
        let conf = std::fs::read_to_string(c.dir.join("nginx.conf")).unwrap();
        assert!(conf.contains("listen 198.18.0.2:6881;"), "{conf}");
        assert!(
            conf.contains(&format!("root {};", data.display())),
            "{conf}"
        );
        let leecher = c.leecher_cmd(&PeerCtx { listen: me, ..ctx });
        let i = leecher.argv.iter().position(|a| a == "--web-seed").unwrap();
        assert_eq!(leecher.argv[i + 1], "http://198.18.0.2:6881/");
        assert!(leecher.argv.iter().any(|a| a == "get"));
        let i = leecher.argv.iter().position(|a| a == "--rack").unwrap();
        assert_eq!(leecher.argv[i + 1], "r1");
        assert_eq!(c.origin_payload_bytes(), Some(0));
        let log = "206 100 \"GET /a\"\n206 250 \"GET /a\"\n-\n";
        std::fs::write(c.dir.join("access.log"), log).unwrap();
        assert_eq!(c.origin_payload_bytes(), Some(350));
    }

    #[test]
    fn barrier_wrap_keeps_argv_after_the_script() {
        let argv = barrier_wrap(&["p2pe".into(), "get".into()]);
        assert_eq!(&argv[4..], &["p2pe".to_owned(), "get".to_owned()]);
    }
}
