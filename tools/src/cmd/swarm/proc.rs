//! Child `p2pe` processes of `p2pe swarm`: spawn, read their port, reap with
//! resource usage, kill by PID.
// libc calls (rusage, signals, statfs, poll, mmap): the workspace denies unsafe_code.
#![allow(unsafe_code)]

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// A running child with its stdout lines arriving on a channel.
pub(super) struct Child {
    pub pid: i32,
    lines: Receiver<String>,
    /// Lines read so far after the "listening on" line.
    pub output: Vec<String>,
    pub started: Instant,
    /// Exit status and CPU seconds (user + system), once reaped.
    pub exit: Option<(i32, f64)>,
    pub finished: Option<Instant>,
}

/// The address of a `listening on ADDR` line, or of the `{"event":"listening",
/// "addr":ADDR}` line a `--json` child prints instead.
fn listen_addr_of(line: &str) -> Option<String> {
    if let Some(a) = line.strip_prefix("listening on ") {
        return Some(a.trim().to_string());
    }
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    (v["event"] == "listening").then(|| v["addr"].as_str().map(str::to_string))?
}

impl Child {
    /// Spawns `exe args...` with stderr to `log`, and waits (bounded) for its
    /// "listening on ADDR" line.
    pub(super) fn spawn(
        exe: &Path,
        args: &[String],
        log: &Path,
        bound: Duration,
    ) -> anyhow::Result<(Child, SocketAddr)> {
        let err = File::create(log).with_context(|| format!("create {}", log.display()))?;
        let mut c = Command::new(exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .with_context(|| format!("spawn {}", exe.display()))?;
        let out = c.stdout.take().context("child stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut child = Child {
            pid: i32::try_from(c.id()).context("pid")?,
            lines: rx,
            output: Vec::new(),
            started: Instant::now(),
            exit: None,
            finished: None,
        };
        // `c` is dropped without waiting: the child is reaped with wait4 below.
        drop(c);
        let end = Instant::now() + bound;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match child.lines.recv_timeout(left.max(Duration::from_millis(1))) {
                Ok(line) => {
                    if let Some(a) = listen_addr_of(&line) {
                        let addr = a
                            .parse()
                            .with_context(|| format!("bad address line {line:?}"))?;
                        return Ok((child, addr));
                    }
                }
                Err(_) => {
                    child.kill_and_reap();
                    bail!(
                        "child did not report its address within {bound:?}; see {}",
                        log.display()
                    );
                }
            }
        }
    }

    /// Collects stdout lines that arrived.
    pub(super) fn drain_output(&mut self) {
        while let Ok(l) = self.lines.try_recv() {
            self.output.push(l);
        }
    }

    /// Reaps the child if it exited (non-blocking); true once reaped.
    pub(super) fn try_reap(&mut self) -> bool {
        if self.exit.is_some() {
            return true;
        }
        let mut status = 0;
        // SAFETY: rusage is plain old data; wait4 fills it.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: pid is our own unreaped child; pointers are to live locals.
        let r = unsafe { libc::wait4(self.pid, &mut status, libc::WNOHANG, &mut ru) };
        if r == self.pid {
            let cpu = tv(ru.ru_utime) + tv(ru.ru_stime);
            let code = if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                128 + libc::WTERMSIG(status)
            };
            self.exit = Some((code, cpu));
            self.finished = Some(Instant::now());
            self.drain_output();
            return true;
        }
        false
    }

    /// Sends `sig` to the child (by PID, only while not reaped).
    pub(super) fn signal(&self, sig: i32) {
        if self.exit.is_none() {
            // SAFETY: kill(2) on our own unreaped child's PID (cannot be recycled yet).
            unsafe { libc::kill(self.pid, sig) };
        }
    }

    /// SIGTERM, wait up to 10 s, then SIGKILL; always reaps.
    pub(super) fn stop(&mut self) {
        self.signal(libc::SIGTERM);
        let end = Instant::now() + Duration::from_secs(10);
        while !self.try_reap() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill_and_reap();
    }

    /// SIGKILL and reap (blocking; a killed process exits promptly).
    pub(super) fn kill_and_reap(&mut self) {
        if self.try_reap() {
            return;
        }
        self.signal(libc::SIGKILL);
        while !self.try_reap() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn tv(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}
