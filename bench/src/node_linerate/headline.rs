//! The headline table: per output directory and client, the median
//! whole-process time of a get, its Gbit/s and CPU-s/GiB, and the speed-up
//! over the fastest other client on the same directory; then the TCP ceiling
//! (iperf3 with one stream and with one per get worker).

use serde::Serialize;

use super::clients::Client;
use super::whole::{status_text, Sample, Status};
use crate::swarm_bench::report::median;

const GIB: f64 = (1u64 << 30) as f64;

/// One output directory of the run.
#[derive(Debug, Clone, Serialize)]
pub struct DirInfo {
    /// The directory as given (`--dir`).
    pub path: String,
    /// Its filesystem type (`tmpfs`, `ext4`, ...).
    pub fs_type: String,
}

/// One client on one directory.
#[derive(Debug, Clone, Serialize)]
pub struct ClientRow {
    /// Index into [`Headline::dirs`].
    pub dir_index: usize,
    /// Which client.
    pub client: Client,
    /// Whether it ran.
    pub status: Status,
    /// Spawn-to-exit seconds of each repetition, in run order.
    pub seconds: Vec<f64>,
    /// CPU seconds (user + system) of each repetition's downloader.
    pub cpu_s: Vec<f64>,
    /// Median of [`ClientRow::seconds`] (`None`: no repetition completed).
    pub median_s: Option<f64>,
    /// size × 8 / median, Gbit/s.
    pub gbit_s: Option<f64>,
    /// Median CPU seconds per GiB downloaded.
    pub cpu_s_per_gib: Option<f64>,
    /// The fastest other client on this directory (by median), if any ran.
    pub best_other: Option<Client>,
    /// The best other's median over this client's median: above 1 means this
    /// client is faster (target for p2pe: 2).
    pub speedup_vs_best_other: Option<f64>,
}

/// The TCP ceiling of the run: medians over the repetitions.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Ceiling {
    /// `iperf3 -l 1M`, Gbit/s.
    pub one_stream_gbit_s: Option<f64>,
    /// `iperf3 -l 1M -P K`, Gbit/s.
    pub parallel_gbit_s: Option<f64>,
    /// K: the get's workers (`p2pe::node::default_workers`).
    pub streams: usize,
}

/// The whole-process results of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Headline {
    /// File size in bytes.
    pub size_bytes: u64,
    /// Repetitions run.
    pub reps: u32,
    /// The output directories, in `--dir` order.
    pub dirs: Vec<DirInfo>,
    /// One row per directory × client, directory-major, clients in run order.
    pub rows: Vec<ClientRow>,
    /// iperf3 medians.
    pub ceiling: Ceiling,
}

/// A size for tables: GiB with two decimals from 1 GiB up, else MiB.
pub fn size_text(size_bytes: u64) -> String {
    if size_bytes as f64 >= GIB {
        format!("{:.2} GiB", size_bytes as f64 / GIB)
    } else {
        format!("{:.0} MiB", size_bytes as f64 / (1u64 << 20) as f64)
    }
}

fn sorted_median(v: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    (!v.is_empty()).then(|| median(&v))
}

impl Headline {
    /// Builds the rows from the samples and each client's final status.
    pub fn of(
        size_bytes: u64,
        reps: u32,
        dirs: Vec<DirInfo>,
        status: &[(Client, Status)],
        samples: &[Sample],
        ceiling: Ceiling,
    ) -> Headline {
        let size_gib = size_bytes as f64 / GIB;
        let mut rows = Vec::new();
        for dir_index in 0..dirs.len() {
            for (client, st) in status {
                let mine: Vec<&Sample> = samples
                    .iter()
                    .filter(|s| s.dir_index == dir_index && s.client == *client)
                    .collect();
                let seconds: Vec<f64> = mine.iter().map(|s| s.seconds).collect();
                let cpu_s: Vec<f64> = mine.iter().map(|s| s.cpu_s).collect();
                let median_s = sorted_median(&seconds);
                let per_gib: Vec<f64> = cpu_s.iter().map(|c| c / size_gib.max(1e-12)).collect();
                rows.push(ClientRow {
                    dir_index,
                    client: *client,
                    status: st.clone(),
                    gbit_s: median_s.map(|s| size_bytes as f64 * 8.0 / s.max(1e-9) / 1e9),
                    cpu_s_per_gib: sorted_median(&per_gib),
                    median_s,
                    seconds,
                    cpu_s,
                    best_other: None,
                    speedup_vs_best_other: None,
                });
            }
        }
        let medians: Vec<(usize, Client, Option<f64>)> = rows
            .iter()
            .map(|r| (r.dir_index, r.client, r.median_s))
            .collect();
        for r in &mut rows {
            let best = medians
                .iter()
                .filter(|(d, c, _)| *d == r.dir_index && *c != r.client)
                .filter_map(|(_, c, m)| m.map(|m| (*c, m)))
                .min_by(|a, b| a.1.total_cmp(&b.1));
            if let (Some((c, m)), Some(mine)) = (best, r.median_s) {
                r.best_other = Some(c);
                r.speedup_vs_best_other = Some(m / mine.max(1e-9));
            }
        }
        Headline {
            size_bytes,
            reps,
            dirs,
            rows,
            ceiling,
        }
    }

    fn dir_label(&self, i: usize) -> String {
        self.dirs
            .get(i)
            .map_or("?".into(), |d| format!("{} ({})", d.path, d.fs_type))
    }

    /// The table header matching [`Headline::table_rows`] (extra leading
    /// columns `lead` are prepended to both, e.g. for the perf record).
    pub fn table_header(lead: &[&str]) -> String {
        let mut cols: Vec<&str> = lead.to_vec();
        cols.extend([
            "dir (fs)",
            "client",
            "whole s (median)",
            "Gbit/s",
            "CPU-s/GiB",
            "vs best other",
            "whole s per rep",
        ]);
        let align: Vec<&str> = cols
            .iter()
            .map(|c| match *c {
                "whole s (median)" | "Gbit/s" | "CPU-s/GiB" => "---:",
                _ => "---",
            })
            .collect();
        format!("| {} |\n|{}|", cols.join(" | "), align.join("|"))
    }

    /// Markdown rows: every client on every directory, then the iperf3
    /// ceiling; each row starts with the cells `lead`.
    pub fn table_rows(&self, lead: &[&str]) -> Vec<String> {
        let lead: String = lead.iter().map(|c| format!("| {c} ")).collect();
        let mut out = Vec::new();
        for r in &self.rows {
            let dir = self.dir_label(r.dir_index);
            let name = r.client.name();
            let line = match (&r.status, r.median_s) {
                (_, Some(s)) => {
                    let vs = match (r.speedup_vs_best_other, r.best_other) {
                        (Some(x), Some(c)) => format!("{x:.2}x ({})", c.name()),
                        _ => "-".into(),
                    };
                    let per_rep: Vec<String> =
                        r.seconds.iter().map(|s| format!("{s:.2}")).collect();
                    let note = match &r.status {
                        Status::Ok => String::new(),
                        other => format!("; then {}", status_text(other)),
                    };
                    format!(
                        "{lead}| {dir} | {name} | {s:.2} | {:.2} | {} | {vs} | {}{note} |",
                        r.gbit_s.unwrap_or(f64::NAN),
                        r.cpu_s_per_gib.map_or("-".into(), |c| format!("{c:.3}")),
                        per_rep.join(", "),
                    )
                }
                (st, None) => format!(
                    "{lead}| {dir} | {name} | - | - | - | - | {} |",
                    status_text(st)
                ),
            };
            out.push(line);
        }
        let c = &self.ceiling;
        let gbit = |g: Option<f64>| g.map_or("not measured".into(), |g| format!("{g:.2}"));
        out.push(format!(
            "{lead}| TCP ceiling | iperf3 -l 1M | - | {} | - | - | - |",
            gbit(c.one_stream_gbit_s)
        ));
        out.push(format!(
            "{lead}| TCP ceiling | iperf3 -l 1M -P {} | - | {} | - | - | - |",
            c.streams,
            gbit(c.parallel_gbit_s)
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(rep: u32, dir_index: usize, client: Client, seconds: f64) -> Sample {
        Sample {
            rep,
            dir_index,
            client,
            seconds,
            cpu_s: seconds / 2.0,
        }
    }

    fn headline() -> Headline {
        let dirs = vec![
            DirInfo {
                path: "/dev/shm".into(),
                fs_type: "tmpfs".into(),
            },
            DirInfo {
                path: "/var/tmp".into(),
                fs_type: "ext4".into(),
            },
        ];
        let status = vec![
            (Client::P2pe, Status::Ok),
            (
                Client::Rqbit,
                Status::NotInstalled("cargo install rqbit --locked".into()),
            ),
            (Client::Libtorrent, Status::Ok),
            (Client::Aria2, Status::Failed("rep 2: exit 7".into())),
        ];
        let mut samples = Vec::new();
        for rep in 1..=3 {
            samples.push(sample(rep, 0, Client::P2pe, 1.0 + f64::from(rep) * 0.1));
            samples.push(sample(rep, 0, Client::Libtorrent, 4.0));
            samples.push(sample(rep, 1, Client::P2pe, 2.0));
            samples.push(sample(rep, 1, Client::Libtorrent, 3.0));
        }
        samples.push(sample(1, 0, Client::Aria2, 2.4));
        let ceiling = Ceiling {
            one_stream_gbit_s: Some(20.0),
            parallel_gbit_s: None,
            streams: 2,
        };
        Headline::of(1 << 30, 3, dirs, &status, &samples, ceiling)
    }

    #[test]
    fn medians_rates_and_speedups_per_directory() {
        let h = headline();
        assert_eq!(h.rows.len(), 8);
        let row = |d: usize, c: Client| {
            h.rows
                .iter()
                .find(|r| r.dir_index == d && r.client == c)
                .unwrap()
        };
        let p = row(0, Client::P2pe);
        assert!((p.median_s.unwrap() - 1.2).abs() < 1e-9);
        // 1 GiB in 1.2 s.
        assert!((p.gbit_s.unwrap() - 8.0 * (1u64 << 30) as f64 / 1.2 / 1e9).abs() < 1e-9);
        assert!((p.cpu_s_per_gib.unwrap() - 0.6).abs() < 1e-9);
        // On tmpfs aria2's one completed rep (2.4 s) is the best other.
        assert_eq!(p.best_other, Some(Client::Aria2));
        assert!((p.speedup_vs_best_other.unwrap() - 2.0).abs() < 1e-9);
        // On ext4 only libtorrent ran besides p2pe.
        let p1 = row(1, Client::P2pe);
        assert_eq!(p1.best_other, Some(Client::Libtorrent));
        assert!((p1.speedup_vs_best_other.unwrap() - 1.5).abs() < 1e-9);
        let lt = row(1, Client::Libtorrent);
        assert!((lt.speedup_vs_best_other.unwrap() - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(row(0, Client::Rqbit).median_s, None);
        assert_eq!(row(0, Client::Rqbit).best_other, None);
    }

    #[test]
    fn table_names_missing_and_failed_clients_and_the_ceiling() {
        let h = headline();
        let header = Headline::table_header(&["when"]);
        let cols = header.lines().next().unwrap().matches('|').count();
        let rows = h.table_rows(&["2026-12-02 16:00"]);
        assert_eq!(rows.len(), 10);
        for r in &rows {
            assert_eq!(r.matches('|').count(), cols, "{r}");
        }
        let text = rows.join("\n");
        assert!(text.contains("| /dev/shm (tmpfs) | p2pe | 1.20 | 7.16 | 0.600 | 2.00x (aria2) | 1.10, 1.20, 1.30 |"), "{text}");
        assert!(text.contains("| /dev/shm (tmpfs) | rqbit | - | - | - | - | not installed (cargo install rqbit --locked) |"));
        assert!(text.contains("| aria2 | 2.40 |") && text.contains("then failed: rep 2: exit 7"));
        assert!(
            text.contains("| /var/tmp (ext4) | aria2 | - | - | - | - | failed: rep 2: exit 7 |")
        );
        assert!(text.contains("| TCP ceiling | iperf3 -l 1M | - | 20.00 |"));
        assert!(text.contains("| TCP ceiling | iperf3 -l 1M -P 2 | - | not measured |"));
    }

    #[test]
    fn sizes_in_gib_from_one_gib_up() {
        assert_eq!(size_text(2 << 30), "2.00 GiB");
        assert_eq!(size_text(64 << 20), "64 MiB");
    }
}
