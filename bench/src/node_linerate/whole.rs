//! The whole-process comparison: each client's downloader timed as a user
//! sees it, from spawn to exit, on an empty output directory (preallocation,
//! hashing and the final flush included), against a seeder of the same
//! client that runs for the whole benchmark.
//!
//! Per pair: the output directory `DIR/p2pe-linerate-CLIENT` is emptied, the
//! downloader is spawned (clock starts just before the fork) and reaped with
//! `wait4` (clock stops there; CPU = its rusage user + system, children
//! included), then the downloaded file's length is checked and the directory
//! removed. A pair that fails (non-zero exit, timeout, short file) stops that
//! client for the rest of the run and is reported with its log; a client
//! that is not installed is reported as such. Nothing is skipped silently.
//!
//! Bounds: each seeder must be serving within `rep_timeout`, each
//! downloader must exit within `rep_timeout`; every child is a [`Proc`],
//! killed and reaped by PID on every exit path.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::clients::{self, Client, GetSpec, Programs, Ready, SeedSpec};
use super::{io_err, iperf, procfs, Config, LinerateError, Payload};
use crate::swarm_bench::client::LT_PEER_PY;
use crate::swarm_bench::proc::Proc;

/// One timed download.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Repetition (from 1).
    pub rep: u32,
    /// Index into [`Config::dirs`].
    pub dir_index: usize,
    /// Which client.
    pub client: Client,
    /// Spawn to exit, seconds.
    pub seconds: f64,
    /// User + system CPU seconds of the downloader process (wait4 rusage).
    pub cpu_s: f64,
}

/// Whether a client ran, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "detail")]
pub enum Status {
    /// Every pair so far completed.
    Ok,
    /// Its program is missing; the text is the install command.
    NotInstalled(String),
    /// Its seeder or a pair failed; the text says what and where the log is.
    Failed(String),
}

/// A client's running seeder.
struct Seeder {
    proc: Proc,
    port: u16,
}

/// The running seeders (and the tracker the aria2 pair meets at).
pub(super) struct Whole {
    programs: Programs,
    seeders: Vec<(Client, Option<Seeder>)>,
    status: Vec<(Client, Status)>,
    tracker: Option<Proc>,
    logs: PathBuf,
}

impl Whole {
    /// Starts a seeder per installed client of `config.clients` (and, for
    /// aria2, a `p2pe tracker`) and waits until each serves.
    ///
    /// # Errors
    /// The log directory or the script cannot be written, or a stop was
    /// requested. A seeder that fails marks its client [`Status::Failed`].
    pub(super) fn start(config: &Config, payload: &Payload) -> Result<Whole, LinerateError> {
        let logs = config.work_dir.join("whole");
        let _ = std::fs::remove_dir_all(&logs);
        std::fs::create_dir_all(&logs).map_err(io_err("create the whole-process log dir"))?;
        let lt_script = logs.join("lt_peer.py");
        std::fs::write(&lt_script, LT_PEER_PY).map_err(io_err("write lt_peer.py"))?;
        let mut whole = Whole {
            programs: Programs {
                p2pe_bin: config.p2pe_bin.clone(),
                lt_script,
                tracker_url: String::new(),
            },
            seeders: Vec::new(),
            status: Vec::new(),
            tracker: None,
            logs,
        };
        for &client in &config.clients {
            let status = if client.installed(&config.p2pe_bin) {
                match whole.start_seeder(config, payload, client) {
                    Ok(s) => {
                        whole.seeders.push((client, Some(s)));
                        Status::Ok
                    }
                    Err(SeedError::Interrupted) => return Err(LinerateError::Interrupted),
                    Err(SeedError::Failed(d)) => Status::Failed(d),
                }
            } else {
                Status::NotInstalled(client.install_hint().to_owned())
            };
            if status != Status::Ok {
                eprintln!(
                    "p2pe bench linerate: {}: {}",
                    client.name(),
                    status_text(&status)
                );
            }
            whole.status.push((client, status));
        }
        Ok(whole)
    }

    /// The status of every client of the run, in run order.
    pub(super) fn status(&self) -> &[(Client, Status)] {
        &self.status
    }

    fn set_failed(&mut self, client: Client, detail: String) {
        eprintln!("p2pe bench linerate: {}: {detail}", client.name());
        for (c, s) in &mut self.status {
            if *c == client {
                *s = Status::Failed(detail.clone());
            }
        }
        for (c, s) in &mut self.seeders {
            if *c == client {
                if let Some(mut seeder) = s.take() {
                    let _ = seeder.proc.terminate(Duration::from_secs(10));
                }
            }
        }
    }

    fn start_seeder(
        &mut self,
        config: &Config,
        payload: &Payload,
        client: Client,
    ) -> Result<Seeder, SeedError> {
        let failed = |d: String| SeedError::Failed(d);
        if client == Client::Aria2 && self.tracker.is_none() {
            self.start_tracker(config)?;
        }
        let port = iperf::free_port().map_err(|e| failed(format!("pick a port: {e}")))?;
        let data_dir = payload.data.parent().unwrap_or(Path::new("."));
        let argv = clients::seed_argv(
            client,
            &self.programs,
            &SeedSpec {
                torrent: &payload.torrent,
                data_dir,
                port,
                timeout_s: 24 * 3600,
            },
        );
        let log = self.logs.join(format!("seed-{}.log", client.name()));
        let mut proc = spawn(client, &argv, &format!("{} seeder", client.name()), &log)
            .map_err(|e| failed(format!("start {:?}: {e}", argv.first())))?;
        let deadline = Instant::now() + config.rep_timeout;
        let ready = clients::seed_ready(client);
        loop {
            let up = match ready {
                Ready::Log(needle) => procfs::log_contains(&log, needle),
                Ready::JsonReady => proc.find_json(|v| v["event"] == "ready").is_some(),
                Ready::TrackerSeeder => self
                    .tracker_addr()
                    .and_then(|a| tracker_seeders(&a, &payload.info_hash_hex))
                    .is_some_and(|n| n >= 1),
            };
            if up {
                return Ok(Seeder { proc, port });
            }
            match proc.try_reap() {
                Ok(Some(e)) => {
                    return Err(failed(format!(
                        "seeder exited ({}), log {}",
                        e.status,
                        log.display()
                    )))
                }
                Ok(None) => {}
                Err(e) => return Err(failed(e.to_string())),
            }
            if config.stop.load(Ordering::Relaxed) {
                return Err(SeedError::Interrupted);
            }
            if Instant::now() >= deadline {
                return Err(failed(format!(
                    "seeder not serving within {:?}, log {}",
                    config.rep_timeout,
                    log.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn start_tracker(&mut self, config: &Config) -> Result<(), SeedError> {
        let mut cmd = std::process::Command::new(&config.p2pe_bin);
        cmd.args([
            "tracker",
            "--listen",
            "127.0.0.1:0",
            "--interval",
            "5",
            "--json",
        ]);
        let log = self.logs.join("tracker.log");
        let mut p = Proc::spawn(cmd, "tracker", &log, Stdio::null())
            .map_err(|e| SeedError::Failed(format!("start p2pe tracker: {e}")))?;
        let stop = || config.stop.load(Ordering::Relaxed);
        match p.wait_json(
            |v| v["event"] == "listening",
            Duration::from_secs(30),
            &stop,
        ) {
            Ok(Some(_)) => {}
            Ok(None) => {
                return Err(SeedError::Failed(format!(
                    "p2pe tracker did not start, log {}",
                    log.display()
                )))
            }
            Err(_) => return Err(SeedError::Interrupted),
        }
        self.tracker = Some(p);
        let addr = self.tracker_addr().unwrap_or_default();
        self.programs.tracker_url = format!("http://{addr}/announce");
        Ok(())
    }

    fn tracker_addr(&self) -> Option<String> {
        let t = self.tracker.as_ref()?;
        let (_, v) = t.find_json(|v| v["event"] == "listening")?;
        v["addr"].as_str().map(str::to_owned)
    }

    /// One timed download of `client` into `dir`; `None` if the client is
    /// not running (not installed or failed earlier).
    ///
    /// # Errors
    /// [`LinerateError::Io`] (the output directory), or
    /// [`LinerateError::Interrupted`]. A failing pair marks its client
    /// [`Status::Failed`] and returns `Ok(None)`.
    pub(super) fn run_pair(
        &mut self,
        config: &Config,
        payload: &Payload,
        rep: u32,
        dir_index: usize,
        client: Client,
    ) -> Result<Option<Sample>, LinerateError> {
        let Some(seed_port) = self
            .seeders
            .iter()
            .find(|(c, s)| *c == client && s.is_some())
            .and_then(|(_, s)| s.as_ref().map(|s| s.port))
        else {
            return Ok(None);
        };
        let base = config.dirs.get(dir_index).unwrap_or(&config.work_dir);
        let out = base.join(format!("p2pe-linerate-{}", client.name()));
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&out).map_err(io_err("create the output directory"))?;
        let listen_port = iperf::free_port().map_err(io_err("pick a port"))?;
        let argv = clients::get_argv(
            client,
            &self.programs,
            &GetSpec {
                torrent: &payload.torrent,
                out_dir: &out,
                seed_port,
                listen_port,
                timeout_s: config.rep_timeout.as_secs().max(1),
            },
        );
        let log = self
            .logs
            .join(format!("rep{rep}-dir{dir_index}-{}.log", client.name()));
        let started = Instant::now();
        let mut proc = spawn(client, &argv, &format!("{} get", client.name()), &log)
            .map_err(io_err(format!("start the {} downloader", client.name())))?;
        let stop = || config.stop.load(Ordering::Relaxed);
        let waited = proc
            .wait_exit(config.rep_timeout, &stop)
            .map(|e| e.cloned());
        let exit = match waited {
            Ok(e) => e,
            Err(e) => {
                // Kill it and free the directory (gigabytes of RAM on tmpfs).
                drop(proc);
                let _ = std::fs::remove_dir_all(&out);
                return Err(match e.kind() {
                    std::io::ErrorKind::Interrupted => LinerateError::Interrupted,
                    _ => io_err("wait for the downloader")(e),
                });
            }
        };
        let verdict = match &exit {
            None => Err(format!("no exit within {:?}", config.rep_timeout)),
            Some(e) if !e.success => Err(format!("downloader exited ({})", e.status)),
            Some(e) => check_file(&out.join(&payload.name), config.size_bytes)
                .map(|()| (e.at.duration_since(started).as_secs_f64(), e.cpu_s)),
        };
        drop(proc); // killed and reaped if still running
        let _ = std::fs::remove_dir_all(&out);
        match verdict {
            Ok((seconds, cpu_s)) => Ok(Some(Sample {
                rep,
                dir_index,
                client,
                seconds,
                cpu_s,
            })),
            Err(d) => {
                self.set_failed(
                    client,
                    format!(
                        "rep {rep}, dir {}: {d}, log {}",
                        base.display(),
                        log.display()
                    ),
                );
                Ok(None)
            }
        }
    }

    /// Stops every seeder and the tracker (SIGTERM, then SIGKILL).
    pub(super) fn stop(&mut self) {
        for (_, s) in &mut self.seeders {
            if let Some(mut seeder) = s.take() {
                let _ = seeder.proc.terminate(Duration::from_secs(10));
            }
        }
        if let Some(mut t) = self.tracker.take() {
            let _ = t.terminate(Duration::from_secs(5));
        }
    }
}

impl Drop for Whole {
    fn drop(&mut self) {
        self.stop();
    }
}

enum SeedError {
    Interrupted,
    Failed(String),
}

/// The text of a [`Status`] for tables and messages.
pub fn status_text(s: &Status) -> String {
    match s {
        Status::Ok => "ok".into(),
        Status::NotInstalled(hint) => format!("not installed ({hint})"),
        Status::Failed(d) => format!("failed: {d}"),
    }
}

fn spawn(client: Client, argv: &[String], name: &str, log: &Path) -> std::io::Result<Proc> {
    let mut cmd = clients::command(argv);
    // rqbit's log lines are matched as text: no colour codes.
    cmd.env("NO_COLOR", "1");
    if client.stdout_is_log() {
        Proc::spawn_to_log(cmd, name, log, Stdio::null())
    } else {
        Proc::spawn(cmd, name, log, Stdio::null())
    }
}

/// The downloaded file is there with the torrent's length (each client
/// verified every piece's SHA-1 before it exited 0).
fn check_file(path: &Path, size_bytes: u64) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(m) if m.len() == size_bytes => Ok(()),
        Ok(m) => Err(format!(
            "{} has {} of {size_bytes} bytes",
            path.display(),
            m.len()
        )),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Seeders the tracker at `addr` counts for the info-hash (HTTP scrape), or
/// `None` if it does not answer.
fn tracker_seeders(addr: &str, info_hash_hex: &str) -> Option<u64> {
    use std::io::{Read, Write};
    let ih = (0..info_hash_hex.len())
        .step_by(2)
        .map(|i| Some(format!("%{}", info_hash_hex.get(i..i + 2)?)))
        .collect::<Option<String>>()?;
    let sock: std::net::SocketAddr = addr.parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let req =
        format!("GET /scrape?info_hash={ih} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut resp = Vec::new();
    // The server may keep the connection open: read until the body is in.
    let mut buf = [0u8; 1024];
    for _ in 0..64 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => resp.extend_from_slice(buf.get(..n)?),
        }
        if let Some(n) = scrape_complete(&resp) {
            return Some(n);
        }
    }
    scrape_complete(&resp)
}

/// The `complete` count of a scrape response (head and bencoded body).
fn scrape_complete(resp: &[u8]) -> Option<u64> {
    let text = String::from_utf8_lossy(resp);
    let at = text.find("8:completei")? + "8:completei".len();
    let digits = text.get(at..)?.split('e').next()?;
    // Incomplete digits (no `e` yet) are not a count.
    text.get(at + digits.len()..)?
        .starts_with('e')
        .then_some(())?;
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrape_counts_seeders_only_when_the_number_is_whole() {
        let body = b"HTTP/1.1 200 OK\r\n\r\nd5:filesd20:aaaaaaaaaaaaaaaaaaaad8:completei3e10:downloadedi0e10:incompletei1eeee";
        assert_eq!(scrape_complete(body), Some(3));
        assert_eq!(
            scrape_complete(b"d5:filesd20:aaaaaaaaaaaaaaaaaaaad8:completei1"),
            None
        );
        assert_eq!(scrape_complete(b"HTTP/1.1 200 OK\r\n\r\nd5:filesdee"), None);
    }

    #[test]
    fn a_short_or_missing_file_fails_the_pair() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.bin");
        assert!(check_file(&f, 4).is_err());
        std::fs::write(&f, b"abc").unwrap();
        assert!(check_file(&f, 4).unwrap_err().contains("3 of 4 bytes"));
        std::fs::write(&f, b"abcd").unwrap();
        assert_eq!(check_file(&f, 4), Ok(()));
    }

    #[test]
    fn status_texts_name_the_install_command() {
        let s = Status::NotInstalled(Client::Rqbit.install_hint().into());
        assert_eq!(
            status_text(&s),
            "not installed (cargo install rqbit --locked)"
        );
        assert_eq!(status_text(&Status::Ok), "ok");
    }
}
