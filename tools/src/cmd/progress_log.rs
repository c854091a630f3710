//! Download progress for logs: when stderr is not a terminal (ansible,
//! systemd, CI), `p2pe get` prints one progress line per interval instead of
//! the progress bar: text on stderr, or with `--json` one JSON object per line
//! on stdout (`{"event":"progress",…}`; the final summary stays a separate
//! object without `event`).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, HumanDuration};
use p2pe::node::Progress;

/// Periodic progress lines; inactive on a terminal (the bar shows it there).
pub(crate) struct ProgressLog {
    interval: Duration,
    json: bool,
    total_bytes: u64,
    started: Instant,
    next_at: Instant,
    /// `downloaded_bytes` and time at the previous line (for the rate).
    last: (u64, Instant),
}

impl ProgressLog {
    /// A log of a download of `total_bytes`, one line every `interval`; `None`
    /// when stderr is a terminal.
    pub(crate) fn new(total_bytes: u64, interval: Duration, json: bool) -> Option<Self> {
        if std::io::stderr().is_terminal() {
            return None;
        }
        let now = Instant::now();
        let interval = interval.max(Duration::from_millis(100));
        Some(ProgressLog {
            interval,
            json,
            total_bytes,
            started: now,
            next_at: now + interval,
            last: (0, now),
        })
    }

    /// Prints a line if the interval has passed since the last one.
    ///
    /// # Errors
    /// Writing to stdout fails (closed pipe).
    pub(crate) fn tick(&mut self, p: &Progress) -> std::io::Result<()> {
        let now = Instant::now();
        if now < self.next_at {
            return Ok(());
        }
        self.next_at = now + self.interval;
        // Payload from peers and web seeds alike.
        let received = p.downloaded_bytes + p.web_seed_bytes;
        let (last_bytes, last_at) = std::mem::replace(&mut self.last, (received, now));
        let secs = now
            .saturating_duration_since(last_at)
            .as_secs_f64()
            .max(1e-3);
        let rate = received.saturating_sub(last_bytes) as f64 / secs;
        let have = have_bytes(self.total_bytes, p);
        let left = self.total_bytes.saturating_sub(have);
        let eta_s = (rate > 0.0).then(|| left as f64 / rate);
        let elapsed_s = now.saturating_duration_since(self.started).as_secs_f64();
        if self.json {
            let line = serde_json::json!({
                "event": "progress",
                "elapsed_s": elapsed_s,
                "have_bytes": have,
                "total_bytes": self.total_bytes,
                "downloaded_bytes": p.downloaded_bytes,
                "web_seed_bytes": p.web_seed_bytes,
                "rate_bytes_per_s": rate,
                "peers": p.peers,
                "verified_pieces": p.verified_pieces,
                "piece_count": p.piece_count,
                "eta_s": eta_s,
            });
            let mut out = std::io::stdout();
            writeln!(out, "{line}")?;
            out.flush()
        } else {
            let pct = 100.0 * have as f64 / self.total_bytes.max(1) as f64;
            let eta = eta_s.map_or_else(
                || "unknown".to_string(),
                |s| HumanDuration(Duration::from_secs_f64(s.min(1e9))).to_string(),
            );
            tracing::info!(
                "[{elapsed_s:7.1}s] progress: {} of {} ({pct:.0}%), {}/s, {} peers, ETA {eta}",
                HumanBytes(have),
                HumanBytes(self.total_bytes),
                HumanBytes(rate as u64),
                p.peers
            );
            Ok(())
        }
    }
}

/// Payload bytes of the verified pieces (pieces are equal but the last, so
/// proportional to the count, as the bar shows).
fn have_bytes(total_bytes: u64, p: &Progress) -> u64 {
    let have = u128::from(total_bytes) * u128::from(p.verified_pieces);
    (have / u128::from(p.piece_count.max(1))) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn have_bytes_is_proportional_and_exact_at_the_ends() {
        let p = |verified| Progress {
            verified_pieces: verified,
            piece_count: 3,
            ..Progress::default()
        };
        assert_eq!(have_bytes(1000, &p(0)), 0);
        assert_eq!(have_bytes(1000, &p(1)), 333);
        assert_eq!(have_bytes(1000, &p(3)), 1000);
        assert_eq!(have_bytes(u64::MAX, &p(3)), u64::MAX);
    }
}
