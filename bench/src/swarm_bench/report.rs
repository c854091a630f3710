//! Rows of the swarm bench and how they are printed and recorded.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::Command;

/// The `p2pe sim` prediction for a scenario (`p2pe sim --json` fields).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct SimPrediction {
    /// Simulated total time, seconds.
    pub total_s: f64,
    /// Simulated total / the row's `D_p2p` (at the shaped link rates, like the measured
    /// ratio; the simulation runs at the TCP goodput, see `scenario::TCP_GOODPUT`).
    pub ratio: f64,
    /// Simulated origin upload in copies of the file.
    pub origin_upload_copies: f64,
}

/// One measured swarm distribution.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    /// Client name (`libtorrent`, `p2pe`).
    pub client: String,
    /// Tracker name.
    pub tracker: String,
    /// Scenario label (`uniform`, `slow-origin`, `slow-peers`).
    pub scenario: String,
    /// Repetition, from 1.
    pub rep: u32,
    /// Hosts N (tracker + origin + leechers).
    pub hosts: usize,
    /// Leechers (N - 2).
    pub leechers: usize,
    /// File size F, bytes.
    pub size_bytes: u64,
    /// Per-leecher completion since the start barrier, seconds, sorted.
    pub completion_s: Vec<f64>,
    /// Fastest leecher, seconds.
    pub min_s: f64,
    /// Median leecher, seconds.
    pub median_s: f64,
    /// Slowest leecher = total distribution time, seconds.
    pub max_s: f64,
    /// Origin payload upload ÷ F, when the client reports it.
    pub origin_upload_copies: Option<f64>,
    /// Bytes the origin put on its link (payload + headers) ÷ F.
    pub origin_wire_copies: f64,
    /// Leecher payload received (L·F) per CPU-second of seeder + leechers, MB/s.
    pub payload_mb_per_cpu_s: f64,
    /// CPU seconds of seeder + leechers.
    pub cpu_s: f64,
    /// D_cs = max(L·F/u_s, F/d_min), seconds.
    pub d_cs_s: f64,
    /// D_p2p = max(F/u_s, F/d_min, L·F/(u_s+Σu_i)), seconds.
    pub d_p2p_s: f64,
    /// max_s / D_p2p (≈1.046 is the TCP goodput floor at 1500 MTU).
    pub ratio: f64,
    /// Racks: the topology bound `D_topo` of the simulator (`docs/topology.md`), seconds.
    pub d_topo_s: Option<f64>,
    /// Racks: wire bytes that crossed rack uplinks into the core ÷ F.
    pub cross_rack_copies: Option<f64>,
    /// Every copy matched the origin's bytes.
    pub verified: bool,
    /// Who got their payload from whom, in figures (`None`: the client
    /// reports no per-peer sources); the matrix is in the row's
    /// `from-whom.tsv`.
    pub from_whom: Option<super::from_whom::FromWhomFigures>,
    /// `p2pe sim` for the same scenario, if available.
    pub sim: Option<SimPrediction>,
}

/// Median of a sorted, non-empty slice (mean of the middle two if even); 0 if empty.
pub fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => sorted.get(n / 2).copied().unwrap_or(0.0),
        _ => {
            let a = sorted.get(n / 2 - 1).copied().unwrap_or(0.0);
            let b = sorted.get(n / 2).copied().unwrap_or(0.0);
            (a + b) / 2.0
        }
    }
}

/// Table header matching [`table_line`].
pub fn table_header() -> String {
    "| client | scenario | rep | N | F | min s | median s | max s | D_cs s | D_p2p s | ratio | \
     origin copies (payload/wire) | MB per CPU-s | sim s (ratio) | verified | \
     from origin med/max | slow from origin/fast/slow | received excess med/max |\n\
     |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        .to_owned()
}

/// Table header for rows with racks: [`table_header`] plus `D_topo` and the
/// cross-rack copies (matching [`table_line`] of a racked row).
pub fn table_header_racked() -> String {
    let flat = table_header();
    let mut lines = flat.lines();
    let (head, rule) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
    format!("{head} D_topo s | max/D_topo | cross-rack copies (wire) |\n{rule}---|---|---|")
}

/// One markdown table line for a row (with racks, three more cells: `D_topo`,
/// max/`D_topo`, cross-rack copies).
pub fn table_line(r: &Row) -> String {
    let flat = table_line_flat(r);
    match (r.d_topo_s, r.cross_rack_copies) {
        (Some(d), Some(c)) => format!("{flat} {d:.2} | {:.3} | {c:.2} |", r.max_s / d),
        _ => flat,
    }
}

fn table_line_flat(r: &Row) -> String {
    let payload = r
        .origin_upload_copies
        .map_or_else(|| "n/a".to_owned(), |c| format!("{c:.2}"));
    let sim = r.sim.map_or_else(
        || "n/a".to_owned(),
        |s| format!("{:.2} ({:.3})", s.total_s, s.ratio),
    );
    let (from_origin, slow_from) = from_whom_cells(r.from_whom.as_ref());
    let excess = r.from_whom.as_ref().map_or_else(
        || "n/a".to_owned(),
        |f| {
            format!(
                "{:.3} / {:.3}",
                f.received_excess_median, f.received_excess_max
            )
        },
    );
    format!(
        "| {} | {} | {} | {} | {} MiB | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.3} | {} / {:.2} | {:.1} | {} | {} | {} | {} | {} |",
        r.client,
        r.scenario,
        r.rep,
        r.hosts,
        r.size_bytes as f64 / (1u64 << 20) as f64,
        r.min_s,
        r.median_s,
        r.max_s,
        r.d_cs_s,
        r.d_p2p_s,
        r.ratio,
        payload,
        r.origin_wire_copies,
        r.payload_mb_per_cpu_s,
        sim,
        if r.verified { "yes" } else { "NO" },
        from_origin,
        slow_from,
        excess,
    )
}

/// The table's from-whom cells: the origin's share (median / max over
/// leechers) and what slow leechers got from the origin / fast / slow ones.
fn from_whom_cells(f: Option<&super::from_whom::FromWhomFigures>) -> (String, String) {
    let Some(f) = f else {
        return ("n/a".to_owned(), "n/a".to_owned());
    };
    let origin = format!(
        "{:.2} / {:.2}",
        f.from_origin_share_median, f.from_origin_share_max
    );
    let slow = match (
        f.slow_share_from_origin,
        f.slow_share_from_fast,
        f.slow_share_from_slow,
    ) {
        (Some(o), Some(fa), Some(s)) => format!("{o:.2} / {fa:.2} / {s:.2}"),
        _ => "-".to_owned(),
    };
    (origin, slow)
}

/// Output of a shell command, trimmed ("?" if it fails).
fn sh(cmd: &str) -> String {
    Command::new("sh")
        .args(["-c", cmd])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "?".to_owned())
}

/// Appends a markdown section (machine, kernel, commit, command, table) to `path`.
///
/// # Errors
/// The file cannot be opened or written.
pub fn append_markdown(
    path: &Path,
    command_line: &str,
    setup: &str,
    rows: &[Row],
    failures: &[String],
) -> std::io::Result<()> {
    let mut s = String::new();
    let date = sh("date -u '+%Y-%m-%d %H:%M UTC'");
    let _ = writeln!(s, "\n## {date}: `{command_line}`\n");
    let _ = writeln!(
        s,
        "- machine: {}",
        sh("lscpu | grep 'Model name' | sed 's/.*: *//'")
    );
    let _ = writeln!(s, "- cores: {}", sh("nproc"));
    let _ = writeln!(s, "- kernel: {}", sh("uname -r"));
    let _ = writeln!(s, "- commit: {}", sh("git rev-parse --short HEAD"));
    // The machine may be shared: the load says how much the figures can be trusted.
    let _ = writeln!(
        s,
        "- load average at the end (1/5/15 min): {}",
        sh("cut -d' ' -f1-3 /proc/loadavg")
    );
    let _ = writeln!(s, "- setup: {setup}\n");
    let racked = rows.iter().any(|r| r.d_topo_s.is_some());
    let header = if racked {
        table_header_racked()
    } else {
        table_header()
    };
    let _ = writeln!(s, "{header}");
    for r in rows {
        let _ = writeln!(s, "{}", table_line(r));
    }
    for f in failures {
        let _ = writeln!(s, "\nFAILED: {f}");
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(s.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&[]), 0.0);
        assert_eq!(median(&[1.0, 2.0, 9.0]), 2.0);
        assert_eq!(median(&[1.0, 2.0, 4.0, 9.0]), 3.0);
    }
}
