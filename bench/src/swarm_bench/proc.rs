//! Supervised child processes: stdout JSON lines stamped on the harness
//! clock, CPU time from `wait4`'s rusage, bounded termination.
//!
//! Invariant: a [`Proc`] is reaped exactly once, by `wait4` (never by
//! `std::process::Child::wait`), and once reaped it is never signalled, so a
//! recycled pid is never hit. Dropping an unreaped [`Proc`] kills and reaps it.
// libc calls (rusage, signals, statfs, poll, mmap): the workspace denies unsafe_code.
#![allow(unsafe_code)]

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How a process ended.
#[derive(Debug, Clone)]
pub struct Exit {
    /// Harness clock when `wait4` saw it exit.
    pub at: Instant,
    /// Exit code 0.
    pub success: bool,
    /// Exit status as text (`exit 1`, `signal 9`).
    pub status: String,
    /// User + system CPU seconds (its own and its reaped children's).
    pub cpu_s: f64,
}

/// A child process under the harness's watch.
#[derive(Debug)]
pub struct Proc {
    /// Role name for messages (`leecher 3`).
    pub name: String,
    child: Child,
    lines: mpsc::Receiver<(Instant, String)>,
    /// Every stdout line that parsed as a JSON object, stamped on arrival.
    pub json: Vec<(Instant, serde_json::Value)>,
    /// Set once reaped.
    pub exit: Option<Exit>,
}

impl Proc {
    /// Spawns `cmd` with stdout captured line by line, stderr to `log`.
    ///
    /// # Errors
    /// The log cannot be created or the program cannot be started.
    pub fn spawn(mut cmd: Command, name: &str, log: &Path, stdin: Stdio) -> io::Result<Proc> {
        let err = File::create(log)?;
        let mut child = cmd
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("no stdout"))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        Ok(Proc {
            name: name.to_owned(),
            child,
            lines: rx,
            json: Vec::new(),
            exit: None,
        })
    }

    /// Spawns `cmd` with stdout and stderr both written to `log`, for
    /// programs that print human lines on stdout (rqbit, aria2c); no JSON is
    /// captured ([`Proc::json`] stays empty).
    ///
    /// # Errors
    /// The log cannot be created or the program cannot be started.
    pub fn spawn_to_log(
        mut cmd: Command,
        name: &str,
        log: &Path,
        stdin: Stdio,
    ) -> io::Result<Proc> {
        let err = File::create(log)?;
        let out = err.try_clone()?;
        let child = cmd.stdin(stdin).stdout(out).stderr(err).spawn()?;
        // No sender: the channel reads as closed at once.
        let (_, lines) = mpsc::channel();
        Ok(Proc {
            name: name.to_owned(),
            child,
            lines,
            json: Vec::new(),
            exit: None,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Moves arrived stdout lines into [`Proc::json`]; non-JSON lines are dropped.
    pub fn pump(&mut self) {
        while let Ok((at, line)) = self.lines.try_recv() {
            if let Ok(v @ serde_json::Value::Object(_)) = serde_json::from_str(line.trim()) {
                self.json.push((at, v));
            }
        }
    }

    /// After exit: takes lines until the reader thread sees EOF (bounded, in
    /// case a grandchild still holds the pipe).
    fn drain(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while let Ok((at, line)) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            if let Ok(v @ serde_json::Value::Object(_)) = serde_json::from_str(line.trim()) {
                self.json.push((at, v));
            }
        }
    }

    /// The first JSON line satisfying `pred`, with its arrival time.
    pub fn find_json(
        &self,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<&(Instant, serde_json::Value)> {
        self.json.iter().find(|(_, v)| pred(v))
    }

    /// Reaps the process if it has exited (non-blocking).
    ///
    /// # Errors
    /// `wait4` fails (not our child: a harness bug).
    pub fn try_reap(&mut self) -> io::Result<Option<&Exit>> {
        if self.exit.is_none() {
            let mut status: libc::c_int = 0;
            // SAFETY: rusage is plain old data; all-zero is a valid value.
            let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
            let pid = self.child.id() as libc::pid_t;
            // SAFETY: pointers are to live locals; pid is our unreaped child.
            let rc = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
            if rc < 0 {
                return Err(io::Error::last_os_error());
            }
            if rc == pid {
                self.exit = Some(exit_of(status, &ru));
                self.drain(Duration::from_secs(1));
            }
        }
        self.pump();
        Ok(self.exit.as_ref())
    }

    /// Waits (bounded) until `pred` matches a JSON line or the process exits.
    /// Returns the matching line's arrival time, or `None`.
    ///
    /// # Errors
    /// `wait4` fails, or `stop` returned true (the run was interrupted).
    pub fn wait_json(
        &mut self,
        pred: impl Fn(&serde_json::Value) -> bool,
        timeout: Duration,
        stop: &dyn Fn() -> bool,
    ) -> io::Result<Option<Instant>> {
        let deadline = Instant::now() + timeout;
        loop {
            let exited = self.try_reap()?.is_some();
            if let Some((at, _)) = self.find_json(&pred) {
                return Ok(Some(*at));
            }
            if exited || Instant::now() >= deadline {
                return Ok(None);
            }
            if stop() {
                return Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits (bounded) for the process to exit by itself, polling `wait4`
    /// every millisecond (the resolution of a whole-process time). Returns
    /// its [`Exit`], or `None` at the deadline (it is left running).
    ///
    /// # Errors
    /// `wait4` fails, or `stop` returned true (the run was interrupted).
    pub fn wait_exit(
        &mut self,
        timeout: Duration,
        stop: &dyn Fn() -> bool,
    ) -> io::Result<Option<&Exit>> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.try_reap()?.is_some() || Instant::now() >= deadline {
                return Ok(self.exit.as_ref());
            }
            if stop() {
                return Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Sends `sig` unless already reaped.
    pub fn signal(&self, sig: libc::c_int) {
        if self.exit.is_none() {
            // SAFETY: the pid is our child and not yet reaped, so it cannot
            // have been recycled.
            unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        }
    }

    /// SIGTERM, then SIGKILL after `grace`; returns once reaped.
    ///
    /// # Errors
    /// `wait4` fails.
    pub fn terminate(&mut self, grace: Duration) -> io::Result<&Exit> {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + grace;
        let mut killed = false;
        loop {
            if self.try_reap()?.is_some() {
                break;
            }
            if !killed && Instant::now() >= deadline {
                self.signal(libc::SIGKILL);
                killed = true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.exit
            .as_ref()
            .ok_or_else(|| io::Error::other("not reaped"))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.exit.is_none() {
            self.signal(libc::SIGKILL);
            let _ = self.terminate(Duration::from_secs(5));
        }
    }
}

fn exit_of(status: libc::c_int, ru: &libc::rusage) -> Exit {
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    let (success, text) = if libc::WIFEXITED(status) {
        let code = libc::WEXITSTATUS(status);
        (code == 0, format!("exit {code}"))
    } else if libc::WIFSIGNALED(status) {
        (false, format!("signal {}", libc::WTERMSIG(status)))
    } else {
        (false, format!("status {status}"))
    };
    Exit {
        at: Instant::now(),
        success,
        status: text,
        cpu_s: tv(ru.ru_utime) + tv(ru.ru_stime),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_json_and_cpu_and_exit() {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "echo hello; echo '{\"event\":\"complete\",\"n\":1}'; exit 3",
        ]);
        let mut p = Proc::spawn(cmd, "t", &dir.path().join("log"), Stdio::null()).unwrap();
        let at = p
            .wait_json(
                |v| v["event"] == "complete",
                Duration::from_secs(10),
                &|| false,
            )
            .unwrap();
        assert!(at.is_some());
        let exit = p.terminate(Duration::from_secs(5)).unwrap();
        assert!(!exit.success);
        assert_eq!(exit.status, "exit 3");
        assert_eq!(p.json.len(), 1);
    }

    #[test]
    fn spawn_to_log_writes_both_streams_and_reaps() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo out; echo err >&2; echo '{\"a\":1}'"]);
        let mut p = Proc::spawn_to_log(cmd, "t", &log, Stdio::null()).unwrap();
        let exit = p
            .wait_exit(Duration::from_secs(10), &|| false)
            .unwrap()
            .cloned();
        assert_eq!(exit.map(|e| e.status), Some("exit 0".to_owned()));
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("out") && text.contains("err"), "{text}");
        assert!(p.json.is_empty());
    }

    #[test]
    fn terminate_kills_a_sleeper() {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("sleep");
        cmd.arg("100");
        let mut p = Proc::spawn(cmd, "s", &dir.path().join("log"), Stdio::null()).unwrap();
        let exit = p.terminate(Duration::from_secs(5)).unwrap();
        assert_eq!(exit.status, "signal 15");
    }
}
