//! Rows of the line-rate benchmark: one per repetition, medians, markdown.

use std::io::Write;
use std::path::Path;

use serde::Serialize;

use super::Config;
use crate::swarm_bench::report::median;

const GIB: f64 = (1u64 << 30) as f64;
const MIB: f64 = (1u64 << 20) as f64;

/// One repetition.
#[derive(Debug, Clone, Serialize)]
pub struct Rep {
    /// Repetition number (from 1).
    pub rep: u32,
    /// Get processes.
    pub leechers: usize,
    /// File size in bytes.
    pub size_bytes: u64,
    /// Slowest get's `seconds` (node start to completion).
    pub seconds_max: f64,
    /// Payload Gbit/s: leechers × size / slowest `seconds` (the aggregate for
    /// M > 1).
    pub gbit_s: f64,
    /// iperf3 `-l 1M` Gbit/s measured right after this repetition.
    pub iperf_gbit_s: Option<f64>,
    /// `gbit_s / iperf_gbit_s`.
    pub ratio: Option<f64>,
    /// Seeder CPU seconds over the transfer per GiB it uploaded.
    pub seed_cpu_s_per_gib: f64,
    /// Median over gets of CPU seconds over its transfer per GiB downloaded.
    pub get_cpu_s_per_gib: f64,
    /// Largest `RssAnon` any get reached, bytes.
    pub get_rss_anon_peak_bytes: u64,
    /// Largest `VmHWM` (mapped file pages included) of any get, bytes.
    pub get_vm_hwm_bytes: u64,
    /// Largest first request a get sent, bytes (piece-sized between p2pe
    /// nodes), if logged.
    pub request_bytes: Option<u64>,
}

impl Rep {
    /// A row from the gets' `seconds` and CPU windows and the seeder's CPU
    /// window (seconds) and uploaded bytes (default: leechers × size).
    pub(super) fn new(
        config: &Config,
        rep: u32,
        seconds: &[f64],
        get_cpu_s: &[f64],
        seed_cpu_s: f64,
        uploaded_bytes: Option<u64>,
    ) -> Rep {
        let m = seconds.len().max(1);
        let seconds_max = seconds.iter().copied().fold(0.0, f64::max);
        let total = config.size_bytes as f64 * m as f64;
        let size_gib = config.size_bytes as f64 / GIB;
        let mut per_get: Vec<f64> = get_cpu_s.iter().map(|c| c / size_gib).collect();
        per_get.sort_by(f64::total_cmp);
        let up_gib = uploaded_bytes.map_or(total, |b| b as f64) / GIB;
        Rep {
            rep,
            leechers: m,
            size_bytes: config.size_bytes,
            seconds_max,
            gbit_s: total * 8.0 / seconds_max.max(1e-9) / 1e9,
            iperf_gbit_s: None,
            ratio: None,
            seed_cpu_s_per_gib: seed_cpu_s / up_gib.max(1e-9),
            get_cpu_s_per_gib: median(&per_get),
            get_rss_anon_peak_bytes: 0,
            get_vm_hwm_bytes: 0,
            request_bytes: None,
        }
    }

    pub(super) fn with_memory(mut self, rss_anon_peak_bytes: u64, vm_hwm_bytes: u64) -> Rep {
        self.get_rss_anon_peak_bytes = rss_anon_peak_bytes;
        self.get_vm_hwm_bytes = vm_hwm_bytes;
        self
    }

    pub(super) fn with_request_bytes(mut self, request_bytes: Option<u64>) -> Rep {
        self.request_bytes = request_bytes;
        self
    }

    pub(super) fn set_iperf(&mut self, gbit_s: f64) {
        self.iperf_gbit_s = Some(gbit_s);
        self.ratio = Some(self.gbit_s / gbit_s);
    }

    /// A one-line human summary.
    pub fn line(&self) -> String {
        format!(
            "rep {}: {:.2} Gbit/s in {:.2} s, iperf3 {}, ratio {}, CPU s/GiB seed {:.3} get {:.3}, get peak RssAnon {:.1} MiB, VmHWM {:.0} MiB, request {}",
            self.rep,
            self.gbit_s,
            self.seconds_max,
            opt(self.iperf_gbit_s, 2),
            opt(self.ratio, 3),
            self.seed_cpu_s_per_gib,
            self.get_cpu_s_per_gib,
            self.get_rss_anon_peak_bytes as f64 / MIB,
            self.get_vm_hwm_bytes as f64 / MIB,
            self.request_bytes.map_or("-".into(), |b| format!("{b} B")),
        )
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.digits$}"))
}

/// Medians over the repetitions.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Every repetition.
    pub reps: Vec<Rep>,
    /// File size in bytes.
    pub size_bytes: u64,
    /// Get processes.
    pub leechers: usize,
    /// Median payload Gbit/s.
    pub gbit_s: f64,
    /// Median iperf3 Gbit/s (`None`: not measured).
    pub iperf_gbit_s: Option<f64>,
    /// Median of the per-repetition ratios.
    pub ratio: Option<f64>,
    /// Median seeder CPU s/GiB.
    pub seed_cpu_s_per_gib: f64,
    /// Median get CPU s/GiB.
    pub get_cpu_s_per_gib: f64,
    /// Largest peak `RssAnon` over all repetitions, bytes.
    pub get_rss_anon_peak_bytes: u64,
    /// Largest `VmHWM` over all repetitions, bytes.
    pub get_vm_hwm_bytes: u64,
    /// Largest first request seen, bytes.
    pub request_bytes: Option<u64>,
}

fn med(reps: &[Rep], f: impl Fn(&Rep) -> f64) -> f64 {
    let mut v: Vec<f64> = reps.iter().map(f).filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    median(&v)
}

fn med_opt(reps: &[Rep], f: impl Fn(&Rep) -> Option<f64>) -> Option<f64> {
    let mut v: Vec<f64> = reps.iter().filter_map(f).collect();
    v.sort_by(f64::total_cmp);
    (!v.is_empty()).then(|| median(&v))
}

impl Summary {
    pub(super) fn of(config: &Config, reps: Vec<Rep>) -> Summary {
        Summary {
            size_bytes: config.size_bytes,
            leechers: config.leechers.max(1),
            gbit_s: med(&reps, |r| r.gbit_s),
            iperf_gbit_s: med_opt(&reps, |r| r.iperf_gbit_s),
            ratio: med_opt(&reps, |r| r.ratio),
            seed_cpu_s_per_gib: med(&reps, |r| r.seed_cpu_s_per_gib),
            get_cpu_s_per_gib: med(&reps, |r| r.get_cpu_s_per_gib),
            get_rss_anon_peak_bytes: reps
                .iter()
                .map(|r| r.get_rss_anon_peak_bytes)
                .max()
                .unwrap_or(0),
            get_vm_hwm_bytes: reps.iter().map(|r| r.get_vm_hwm_bytes).max().unwrap_or(0),
            request_bytes: reps.iter().filter_map(|r| r.request_bytes).max(),
            reps,
        }
    }

    /// The markdown table header matching [`Summary::markdown_row`].
    pub fn markdown_header() -> &'static str {
        "| when (UTC) | commit | size | gets | reps | Gbit/s | iperf3 Gbit/s | ratio | seed CPU s/GiB | get CPU s/GiB | get peak RssAnon MiB | get VmHWM MiB | request bytes | load avg |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    }

    /// One markdown row of the medians (`when`, `commit`, `load` as given).
    pub fn markdown_row(&self, when: &str, commit: &str, load: &str) -> String {
        format!(
            "| {when} | {commit} | {:.2} GiB | {} | {} | {:.2} | {} | {} | {:.3} | {:.3} | {:.1} | {:.0} | {} | {load} |",
            self.size_bytes as f64 / GIB,
            self.leechers,
            self.reps.len(),
            self.gbit_s,
            opt(self.iperf_gbit_s, 2),
            opt(self.ratio, 3),
            self.seed_cpu_s_per_gib,
            self.get_cpu_s_per_gib,
            self.get_rss_anon_peak_bytes as f64 / MIB,
            self.get_vm_hwm_bytes as f64 / MIB,
            self.request_bytes.map_or("-".into(), |b| b.to_string()),
        )
    }
}

/// Appends `row` to the transfer-window table of the markdown file `path`
/// (see [`insert_rows`]).
///
/// # Errors
/// The file cannot be read or written.
pub fn append_markdown(path: &Path, row: &str) -> std::io::Result<()> {
    insert_rows(
        path,
        "Runs (appended by `p2pe bench linerate`)",
        Summary::markdown_header(),
        &[row.to_owned()],
    )
}

/// Adds `rows` at the end of the table of `path` whose first header line is
/// that of `header`; if the file has no such table, appends a section
/// `## {title}` with the header and the rows. The other tables stay as
/// they are, so several tables can grow in one file.
///
/// # Errors
/// The file cannot be read (other than missing) or written.
pub fn insert_rows(path: &Path, title: &str, header: &str, rows: &[String]) -> std::io::Result<()> {
    let existing = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let text = with_rows(&existing, title, header, rows);
    // Write a sibling, then rename: a crash leaves the old or the new file.
    let tmp = path.with_extension("md.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

fn with_rows(existing: &str, title: &str, header: &str, rows: &[String]) -> String {
    let first = header.lines().next().unwrap_or(header);
    let lines: Vec<&str> = existing.lines().collect();
    let Some(h) = lines.iter().position(|l| *l == first) else {
        let mut out = existing.to_owned();
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&format!("\n## {title}\n\n{header}\n"));
        for r in rows {
            out.push_str(r);
            out.push('\n');
        }
        return out;
    };
    // The table runs from its header over every following `|` line.
    let end = lines
        .iter()
        .skip(h + 1)
        .position(|l| !l.starts_with('|'))
        .map_or(lines.len(), |n| h + 1 + n);
    let mut out: Vec<&str> = lines.get(..end).unwrap_or(&lines).to_vec();
    out.extend(rows.iter().map(String::as_str));
    out.extend(lines.get(end..).unwrap_or(&[]));
    let mut text = out.join("\n");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const HA: &str = "| a | b |\n|---|---|";
    const HB: &str = "| x |\n|---|";

    #[test]
    fn rows_go_to_the_end_of_their_own_table() {
        let t = with_rows("# T\n", "A", HA, &["| 1 | 2 |".into()]);
        assert_eq!(t, "# T\n\n## A\n\n| a | b |\n|---|---|\n| 1 | 2 |\n");
        let t = with_rows(&t, "B", HB, &["| 9 |".into()]);
        let t = with_rows(&t, "A", HA, &["| 3 | 4 |".into(), "| 5 | 6 |".into()]);
        assert_eq!(
            t,
            "# T\n\n## A\n\n| a | b |\n|---|---|\n| 1 | 2 |\n| 3 | 4 |\n| 5 | 6 |\n\n## B\n\n| x |\n|---|\n| 9 |\n"
        );
        let t = with_rows(&t, "B", HB, &["| 10 |".into()]);
        assert!(t.ends_with("| x |\n|---|\n| 9 |\n| 10 |\n"), "{t}");
    }

    #[test]
    fn insert_rows_creates_and_extends_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.md");
        insert_rows(&p, "A", HA, &["| 1 | 2 |".into()]).unwrap();
        insert_rows(&p, "A", HA, &["| 3 | 4 |".into()]).unwrap();
        let t = std::fs::read_to_string(&p).unwrap();
        assert_eq!(t.matches("| a | b |").count(), 1);
        assert!(t.ends_with("| 1 | 2 |\n| 3 | 4 |\n"));
    }
}
