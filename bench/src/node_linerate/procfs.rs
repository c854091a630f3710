//! What the harness reads about its children from `/proc`: CPU time
//! (`/proc/PID/stat` utime + stime, all threads) and memory
//! (`/proc/PID/status` `RssAnon`, `VmHWM`).
// libc calls (rusage, signals, statfs, poll, mmap): the workspace denies unsafe_code.
#![allow(unsafe_code)]

use std::path::Path;
use std::time::Duration;

/// Clock ticks per second of `/proc/PID/stat` times.
fn ticks_per_s() -> f64 {
    // SAFETY: sysconf takes no pointers.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// User + system CPU seconds of process `pid` (all its threads), `None` if it
/// is gone or the file is malformed.
pub fn cpu_s(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    cpu_s_of_stat(&text)
}

/// utime + stime (fields 14 and 15) of a `/proc/PID/stat` line, in seconds.
/// The command name (field 2) may hold spaces and parentheses, so fields are
/// counted after its last `)`.
fn cpu_s_of_stat(text: &str) -> Option<f64> {
    let rest = text.get(text.rfind(')')? + 1..)?;
    let mut fields = rest.split_whitespace();
    // After ")": field 3 (state) is the first; utime is field 14.
    let utime: f64 = fields.nth(11)?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / ticks_per_s())
}

/// Memory figures of `/proc/PID/status`, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// `RssAnon`: resident anonymous memory (heap, stacks; not the mapped
    /// file).
    pub rss_anon_bytes: u64,
    /// `VmHWM`: peak resident set, file-backed mapped pages included.
    pub vm_hwm_bytes: u64,
}

/// `RssAnon` and `VmHWM` of process `pid`, `None` if it is gone.
pub fn memory(pid: u32) -> Option<Memory> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(memory_of_status(&text))
}

fn memory_of_status(text: &str) -> Memory {
    let kib = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |k| k * 1024)
    };
    Memory {
        rss_anon_bytes: kib("RssAnon:"),
        vm_hwm_bytes: kib("VmHWM:"),
    }
}

/// Samples a process's [`Memory`] every [`SAMPLE_EVERY`] on a thread of its
/// own, keeping the peak of each figure, until [`PeakSampler::finish`] or the
/// process is gone.
#[derive(Debug)]
pub struct PeakSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Memory>,
}

impl PeakSampler {
    /// Starts sampling process `pid`.
    pub fn start(pid: u32) -> PeakSampler {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut peak = Memory::default();
            while !flag.load(Ordering::Acquire) {
                let Some(m) = memory(pid) else { break };
                peak.rss_anon_bytes = peak.rss_anon_bytes.max(m.rss_anon_bytes);
                peak.vm_hwm_bytes = peak.vm_hwm_bytes.max(m.vm_hwm_bytes);
                std::thread::sleep(SAMPLE_EVERY);
            }
            peak
        });
        PeakSampler { stop, thread }
    }

    /// Stops sampling and returns the peaks (zero if the process was never
    /// seen).
    pub fn finish(self) -> Memory {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        self.thread.join().unwrap_or_default()
    }
}

/// Whether `needle` occurs in the file at `path` (a child's stderr log).
pub fn log_contains(path: &Path, needle: &str) -> bool {
    std::fs::read_to_string(path).is_ok_and(|t| t.contains(needle))
}

/// Interval of the memory and progress sampling loop.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(20);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_the_command_name() {
        let line = "123 (p2pe (x) y) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 3 0";
        let s = cpu_s_of_stat(line).unwrap();
        assert!((s - 300.0 / ticks_per_s()).abs() < 1e-9);
    }

    #[test]
    fn status_fields_in_bytes() {
        let text = "Name:\tp2pe\nVmHWM:\t  2048 kB\nRssAnon:\t    512 kB\n";
        assert_eq!(
            memory_of_status(text),
            Memory {
                rss_anon_bytes: 512 * 1024,
                vm_hwm_bytes: 2048 * 1024
            }
        );
    }
}
