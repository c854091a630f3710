//! `--metrics` of `p2pe tracker`, `seed` and `get` (issue 14 item 4): a small
//! swarm on 127.0.0.1 (tracker, seed, get that keeps seeding), its endpoints
//! scraped directly and linted by `promtool check metrics`, and scraped by a
//! real Prometheus (Debian's `prometheus`, installed by `.ci/run`) whose HTTP
//! query API must return the series.
//!
//! Every child is killed by PID when its guard drops; every wait is bounded.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use p2pe_tests::{command_available, data, free_port, p2pe_bin, wait_for_tcp, Proc};

/// Bound on querying Prometheus until every series arrived (it scrapes every
/// second).
const QUERY_BOUND: Duration = Duration::from_secs(30);
const FILE_LEN: usize = 3 << 20;
/// `--link-rate` of the seed: 1 Gbit/s in bytes per second.
const LINK_RATE_BYTES_PER_S: f64 = 125_000_000.0;

/// A running swarm: tracker, seed, and a get that completed and keeps
/// seeding; each with a metrics endpoint.
struct Swarm {
    _children: Vec<Proc>,
    tracker_metrics: SocketAddr,
    seed_metrics: SocketAddr,
    get_metrics: SocketAddr,
    info_hash: String,
}

fn metrics_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

fn p2pe() -> Command {
    Command::new(p2pe_bin())
}

/// Starts the swarm in `dir` and waits (bounded) until the get completed.
fn swarm(dir: &Path) -> Swarm {
    let tracker_metrics = metrics_addr();
    let mut tracker = Proc::spawn(
        p2pe()
            .args(["tracker", "--listen", "127.0.0.1:0", "--interval", "2"])
            .arg("--metrics")
            .arg(tracker_metrics.to_string()),
    );
    let tracker_addr = tracker.listen_addr();
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("payload.bin"), data(FILE_LEN, 7)).unwrap();
    let torrent = dir.join("payload.torrent");
    let out = p2pe()
        .arg("create")
        .arg(src.join("payload.bin"))
        .arg("-o")
        .arg(&torrent)
        .args(["--piece-length", "65536", "--tracker"])
        .arg(format!("http://{tracker_addr}/announce"))
        .output()
        .expect("run p2pe create");
    assert!(out.status.success(), "p2pe create: {out:?}");
    let info_hash = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("info-hash ").map(str::to_string))
        .expect("info-hash line");
    let seed_metrics = metrics_addr();
    let mut seed = Proc::spawn(
        p2pe()
            .arg("seed")
            .arg(&torrent)
            .arg("--path")
            .arg(&src)
            .args(["--listen", "127.0.0.1:0", "--link-rate", "1Gbit"])
            .arg("--metrics")
            .arg(seed_metrics.to_string()),
    );
    let seed_addr = seed.listen_addr();
    let get_metrics = metrics_addr();
    let mut get = Proc::spawn(
        p2pe()
            .arg("get")
            .arg(&torrent)
            .arg("-o")
            .arg(dir.join("out"))
            .args(["--listen", "127.0.0.1:0", "--json", "--seed-after"])
            .args(["--peer", &seed_addr.to_string()])
            .arg("--metrics")
            .arg(get_metrics.to_string()),
    );
    let summary: serde_json::Value = get.line(
        "JSON summary",
        |l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .filter(|v| v.get("event").is_none())
        },
        drop,
    );
    assert_eq!(summary["complete"], true, "{summary}");
    Swarm {
        _children: vec![tracker, seed, get],
        tracker_metrics,
        seed_metrics,
        get_metrics,
        info_hash,
    }
}

/// `GET path` from `addr` (HTTP/1.1, `Connection: close`): (status line, body).
fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read the answer");
    let (head, body) = resp.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head.lines().next().unwrap_or_default().to_string();
    (status, body.to_string())
}

/// The value of the sample `name{labels}` in a text exposition, where
/// `labels` is the exact label set as the encoder writes it (sorted).
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Scrapes `addr` until `pred` holds for the body (bounded by
/// [`QUERY_BOUND`]); returns that body.
///
/// # Panics
/// If it never holds (`what` names the expectation).
fn scrape_until(addr: SocketAddr, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let end = Instant::now() + QUERY_BOUND;
    loop {
        let (status, body) = http_get(addr, "/metrics");
        assert!(status.contains(" 200 "), "{status}");
        if pred(&body) {
            return body;
        }
        assert!(
            Instant::now() < end,
            "{what} within {QUERY_BOUND:?}:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs `promtool check metrics` on `body`: (success, its output).
fn promtool_check(body: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().expect("promtool output");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// The endpoints report what the swarm did, and `promtool check metrics`
/// accepts every one of them.
#[test]
fn metrics_endpoints_report_the_swarm_and_pass_promtool() {
    let tmp = tempfile::tempdir().unwrap();
    let s = swarm(tmp.path());
    let t = &s.info_hash;
    let (status, seed) = http_get(s.seed_metrics, "/metrics");
    assert!(status.contains(" 200 "), "{status}");
    let up = sample(
        &seed,
        &format!("p2pe_uploaded_bytes_total{{kind=\"peer\",torrent=\"{t}\"}}"),
    );
    assert!(
        up.is_some_and(|v| v >= FILE_LEN as f64),
        "the seed uploaded the file:\n{seed}"
    );
    let copies = sample(
        &seed,
        &format!("p2pe_copies_uploaded_ratio{{torrent=\"{t}\"}}"),
    );
    assert!(copies.is_some_and(|v| v >= 1.0), "{seed}");
    assert_eq!(
        sample(&seed, "p2pe_link_rate_bytes_per_second"),
        Some(LINK_RATE_BYTES_PER_S),
        "{seed}"
    );
    for dir in ["up", "down"] {
        let series = format!("p2pe_link_utilization_ratio{{direction=\"{dir}\",torrent=\"{t}\"}}");
        assert!(sample(&seed, &series).is_some(), "{series}:\n{seed}");
    }
    // The get announced to the tracker (`started`; it may still be in flight
    // at completion).
    let ok_series = format!("p2pe_announces_total{{result=\"ok\",torrent=\"{t}\"}}");
    let get = scrape_until(s.get_metrics, "an accepted announce", |b| {
        sample(b, &ok_series).is_some_and(|v| v >= 1.0)
    });
    let down = sample(
        &get,
        &format!("p2pe_downloaded_bytes_total{{kind=\"peer\",torrent=\"{t}\"}}"),
    );
    assert!(
        down.is_some_and(|v| v >= FILE_LEN as f64),
        "the get downloaded the file:\n{get}"
    );
    let pieces = (FILE_LEN / 65536) as f64;
    assert_eq!(
        sample(
            &get,
            &format!("p2pe_pieces_verified_total{{torrent=\"{t}\"}}")
        ),
        Some(pieces),
        "{get}"
    );
    assert_eq!(
        sample(
            &get,
            &format!("p2pe_torrent_progress_ratio{{torrent=\"{t}\"}}")
        ),
        Some(1.0),
        "{get}"
    );
    assert_eq!(
        sample(
            &get,
            &format!("p2pe_hash_failures_total{{torrent=\"{t}\"}}")
        ),
        Some(0.0),
        "{get}"
    );
    for series in [
        format!("p2pe_peers_connected{{torrent=\"{t}\"}}"),
        format!("p2pe_peers_choked{{torrent=\"{t}\"}}"),
        format!("p2pe_peers_banned_total{{torrent=\"{t}\"}}"),
        format!("p2pe_announces_total{{result=\"failed\",torrent=\"{t}\"}}"),
    ] {
        assert!(sample(&get, &series).is_some(), "{series}:\n{get}");
    }
    // Seed and get announced.
    let tracker = scrape_until(s.tracker_metrics, "two announces", |b| {
        sample(b, "p2pe_tracker_announces_total{protocol=\"http\"}").is_some_and(|v| v >= 2.0)
    });
    assert!(
        sample(&tracker, "p2pe_tracker_swarms").is_some_and(|v| v >= 1.0),
        "{tracker}"
    );
    let (status, _) = http_get(s.seed_metrics, "/other");
    assert!(status.contains(" 404 "), "{status}");
    if !command_available("promtool") {
        eprintln!("SKIP promtool check: promtool not found (apt-get install prometheus)");
        return;
    }
    for (what, body) in [("seed", &seed), ("get", &get), ("tracker", &tracker)] {
        let (ok, out) = promtool_check(body);
        assert!(ok, "promtool check metrics on the {what}'s: {out}\n{body}");
    }
}

/// Percent-encodes `s` for a URL query value.
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The result vector of an instant query to Prometheus at `addr`, or `None`
/// when it failed.
fn query(addr: SocketAddr, promql: &str) -> Option<Vec<serde_json::Value>> {
    let (status, body) = http_get(addr, &format!("/api/v1/query?query={}", url_encode(promql)));
    if !status.contains(" 200 ") {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    (v["status"] == "success").then(|| v["data"]["result"].as_array().cloned())?
}

/// The values of an instant query's series.
fn values(result: &[serde_json::Value]) -> Vec<f64> {
    result
        .iter()
        .filter_map(|r| r["value"][1].as_str()?.parse().ok())
        .collect()
}

/// An instant query, what every value it returns must satisfy, and how many
/// series it must return at least.
type Check = (String, fn(f64) -> bool, usize);

/// A real Prometheus scrapes the swarm every second; its query API returns
/// the series of all three endpoints.
#[test]
fn prometheus_scrapes_a_running_swarm() {
    if !command_available("prometheus") {
        eprintln!(
            "SKIP prometheus_scrapes_a_running_swarm: the prometheus binary is not on PATH \
             (apt-get install prometheus)"
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = swarm(tmp.path());
    let config: PathBuf = tmp.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: p2pe\n    static_configs:\n      \
             - targets: ['{}', '{}', '{}']\n",
            s.tracker_metrics, s.seed_metrics, s.get_metrics
        ),
    )
    .unwrap();
    let web = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let log = std::fs::File::create(tmp.path().join("prometheus.log")).unwrap();
    let _prometheus = Proc::spawn_with(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                tmp.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={web}")),
        Stdio::from(log),
    );
    wait_for_tcp(web, QUERY_BOUND);
    let t = &s.info_hash;
    let checks: Vec<Check> = vec![
        ("up{job=\"p2pe\"}".into(), |v| v == 1.0, 3),
        (
            format!("p2pe_uploaded_bytes_total{{kind=\"peer\",torrent=\"{t}\"}}"),
            |v| v >= 0.0,
            2,
        ),
        (
            format!("p2pe_downloaded_bytes_total{{kind=\"peer\",torrent=\"{t}\"}}"),
            |v| v >= 0.0,
            2,
        ),
        (
            format!("p2pe_torrent_complete{{torrent=\"{t}\"}}"),
            |v| v == 1.0,
            2,
        ),
        (
            format!("max(p2pe_copies_uploaded_ratio{{torrent=\"{t}\"}})"),
            |v| v >= 1.0,
            1,
        ),
        ("p2pe_link_utilization_ratio".into(), |v| v >= 0.0, 2),
        ("p2pe_peers_connected".into(), |v| v >= 0.0, 2),
        ("p2pe_hash_failures_total".into(), |v| v == 0.0, 2),
        (
            "sum(p2pe_announces_total{result=\"ok\"})".into(),
            |v| v >= 2.0,
            1,
        ),
        ("sum(p2pe_tracker_announces_total)".into(), |v| v >= 2.0, 1),
        ("p2pe_tracker_swarms".into(), |v| v >= 1.0, 1),
    ];
    let end = Instant::now() + QUERY_BOUND;
    let mut pending: Vec<String> = checks.iter().map(|c| c.0.clone()).collect();
    while !pending.is_empty() && Instant::now() < end {
        pending.clear();
        for (q, ok, min_series) in &checks {
            let good = query(web, q).is_some_and(|r| {
                let v = values(&r);
                v.len() >= *min_series && v.iter().all(|&x| ok(x))
            });
            if !good {
                pending.push(q.clone());
            }
        }
        if !pending.is_empty() {
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    eprintln!(
        "prometheus: every series after {:.1}s of querying",
        (QUERY_BOUND - end.saturating_duration_since(Instant::now())).as_secs_f64()
    );
    let log = std::fs::read_to_string(tmp.path().join("prometheus.log")).unwrap_or_default();
    assert!(
        pending.is_empty(),
        "series missing in Prometheus after {QUERY_BOUND:?}: {pending:?}\nprometheus log:\n{log}"
    );
}

/// `p2pe create FILE -o TORRENT` (64 KiB pieces, no tracker) for `dir/name`
/// of `len` seeded bytes; returns the info-hash (hex).
fn create_in(dir: &Path, name: &str, len: usize, seed: u64) -> String {
    let file = dir.join(name);
    std::fs::write(&file, data(len, seed)).unwrap();
    let out = p2pe()
        .arg("create")
        .arg(&file)
        .arg("-o")
        .arg(dir.join(format!("{name}.torrent")))
        .args(["--piece-length", "65536"])
        .output()
        .expect("run p2pe create");
    assert!(out.status.success(), "p2pe create: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("info-hash ").map(str::to_string))
        .expect("info-hash line")
}

/// `p2pe seed --dir --metrics`: one `torrent` label per served torrent, a
/// torrent added to the directory appears and a removed one leaves the
/// exposition, and `promtool check metrics` accepts it.
#[test]
fn seed_dir_metrics_follow_the_served_torrents() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("seeds");
    std::fs::create_dir_all(&dir).unwrap();
    let a = create_in(&dir, "a.bin", 300_000, 1);
    let b = create_in(&dir, "b.bin", 200_000, 2);
    let addr = metrics_addr();
    let mut seed = Proc::spawn(
        p2pe()
            .arg("seed")
            .arg("--dir")
            .arg(&dir)
            .args(["--listen", "127.0.0.1:0", "--workers", "1", "--no-tracker"])
            .arg("--metrics")
            .arg(addr.to_string()),
    );
    let _ = seed.listen_addr();
    wait_for_tcp(addr, QUERY_BOUND);
    let size = |ih: &str| format!("p2pe_torrent_size_bytes{{torrent=\"{ih}\"}}");
    let body = scrape_until(addr, "both torrents exposed", |b_| {
        sample(b_, &size(&a)).is_some() && sample(b_, &size(&b)).is_some()
    });
    assert_eq!(sample(&body, &size(&a)), Some(300_000.0));
    assert_eq!(sample(&body, &size(&b)), Some(200_000.0));
    let complete = format!("p2pe_torrent_complete{{torrent=\"{a}\"}}");
    assert_eq!(sample(&body, &complete), Some(1.0), "{body}");
    if command_available("promtool") {
        let (ok, out) = promtool_check(&body);
        assert!(ok, "promtool check metrics: {out}\n{body}");
    }
    // Added while running: exposed; removed: its series leave.
    let c = create_in(&dir, "c.bin", 100_000, 3);
    scrape_until(addr, "the added torrent exposed", |b_| {
        sample(b_, &size(&c)).is_some()
    });
    std::fs::remove_file(dir.join("a.bin.torrent")).unwrap();
    let body = scrape_until(addr, "the removed torrent gone", |b_| {
        sample(b_, &size(&a)).is_none()
    });
    assert!(!body.contains(&a), "series of the removed torrent: {body}");
    assert_eq!(sample(&body, &size(&b)), Some(200_000.0));
    assert_eq!(sample(&body, &size(&c)), Some(100_000.0));
}
