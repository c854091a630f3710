//! The TCP ceiling of the same run: `iperf3 -c 127.0.0.1 -l 1M -t N [-P K]`
//! against a one-off `iperf3 -s -1` the harness starts and stops by PID.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The one-off server: killed and reaped by PID when dropped.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        // `Child::kill` signals the pid only while it is unreaped.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether an `iperf3` executable is on `PATH`.
pub fn available() -> bool {
    Command::new("iperf3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A free TCP port on 127.0.0.1 (bound and released; a small race with other
/// processes is accepted).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One `iperf3` run of `secs` seconds with `streams` parallel TCP streams
/// (`-P`; 1 gives a plain single-stream run): receiver Gbit/s, summed over
/// the streams.
///
/// # Errors
/// A process cannot be started, the client fails, or its JSON lacks
/// `end.sum_received.bits_per_second`.
pub fn measure(secs: u32, streams: usize, log_dir: &Path) -> std::io::Result<f64> {
    let port = free_port()?.to_string();
    let log = log_dir.join(format!("iperf3-server-P{streams}.log"));
    let server = Server(
        Command::new("iperf3")
            .args(["-s", "-1", "--forceflush", "-p", &port])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(Stdio::null())
            .spawn()?,
    );
    // Wait (bounded) until it listens: a probe connection would use up `-1`.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(&log).is_ok_and(|t| t.contains("listening")) {
        if Instant::now() >= deadline {
            return Err(std::io::Error::other("iperf3 server did not start"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = Command::new("iperf3")
        .args(client_args(&port, secs, streams))
        .stdin(Stdio::null())
        .output()?;
    drop(server);
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "iperf3 client failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| std::io::Error::other(format!("iperf3 JSON: {e}")))?;
    v.pointer("/end/sum_received/bits_per_second")
        .and_then(serde_json::Value::as_f64)
        .map(|b| b / 1e9)
        .ok_or_else(|| std::io::Error::other("iperf3 JSON: no end.sum_received"))
}

/// The client's arguments: `-l 1M`, JSON, `-t secs`, and `-P streams` when
/// more than one.
fn client_args(port: &str, secs: u32, streams: usize) -> Vec<String> {
    let mut v: Vec<String> = ["-c", "127.0.0.1", "-p", port, "-l", "1M", "-J", "-t"]
        .map(String::from)
        .to_vec();
    v.push(secs.max(1).to_string());
    if streams > 1 {
        v.push("-P".into());
        v.push(streams.to_string());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_streams_only_when_more_than_one() {
        let one = client_args("5201", 5, 1);
        assert_eq!(one.join(" "), "-c 127.0.0.1 -p 5201 -l 1M -J -t 5");
        let two = client_args("5201", 0, 2);
        assert_eq!(two.join(" "), "-c 127.0.0.1 -p 5201 -l 1M -J -t 1 -P 2");
    }
}
