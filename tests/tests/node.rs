//! `p2pe seed` / `p2pe get` / `p2pe swarm` as real processes on 127.0.0.1,
//! and interop with libtorrent (python3-libtorrent) in both directions.
//!
//! Every child is killed by PID when its guard drops; every wait is bounded.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use p2pe_tests::{data, libtorrent_available, p2pe_bin, Proc, SYSTEM_PYTHON};

/// Bound on any one transfer in these tests (small payloads on loopback).
const BOUND: Duration = Duration::from_secs(120);

/// A multi-file payload `dir/name/...` (sizes not aligned to pieces) and its
/// torrent made by mktorrent with 64 KiB pieces (SHA-1 only, no p2pe key).
fn multi_file(dir: &Path, name: &str) -> (PathBuf, Vec<(String, Vec<u8>)>) {
    let files = write_payload(dir, name);
    let torrent = dir.join(format!("{name}.torrent"));
    let out = Command::new("mktorrent")
        .args(["-l", "16", "-a", "http://127.0.0.1:1/announce", "-o"])
        .arg(&torrent)
        .arg(dir.join(name))
        .output()
        .expect("run mktorrent");
    assert!(out.status.success(), "mktorrent: {out:?}");
    (torrent, files)
}

/// The payload of [`multi_file`] and its torrent made by `p2pe create`, which
/// carries the p2pe BLAKE3 key beside the SHA-1 `pieces`.
fn multi_file_blake3(dir: &Path, name: &str) -> (PathBuf, Vec<(String, Vec<u8>)>) {
    let files = write_payload(dir, name);
    let torrent = dir.join(format!("{name}.torrent"));
    let out = Command::new(p2pe_bin())
        .args(["create", "--piece-length", "64KiB", "-o"])
        .arg(&torrent)
        .arg(dir.join(name))
        .output()
        .expect("run p2pe create");
    assert!(out.status.success(), "p2pe create: {out:?}");
    let inspect = Command::new(p2pe_bin())
        .args(["inspect", "--json"])
        .arg(&torrent)
        .output()
        .expect("run p2pe inspect");
    let view: serde_json::Value = serde_json::from_slice(&inspect.stdout).expect("inspect JSON");
    assert_eq!(view["piece_hash"], "blake3", "{view}");
    (torrent, files)
}

/// Writes the files of [`multi_file`] below `dir/name/`.
fn write_payload(dir: &Path, name: &str) -> Vec<(String, Vec<u8>)> {
    let files = vec![
        ("a.bin".to_string(), data(300_001, 1)),
        ("sub/b.bin".to_string(), data(777_777, 2)),
        ("sub/empty".to_string(), Vec::new()),
        ("z.bin".to_string(), data(65_536 * 3 + 5, 3)),
    ];
    for (p, bytes) in &files {
        let path = dir.join(name).join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    files
}

/// Asserts the `p2pe get --json` summary verified every piece with `kind`
/// (`"sha1"` or `"blake3"`), each hashed on arrival or read back once.
fn assert_hashed_with(summary: &serde_json::Value, kind: &str) {
    assert_eq!(summary["piece_hash"], kind, "{summary}");
    let on_arrival = summary["hashed_on_arrival"].as_u64().unwrap_or(0);
    let read_back = summary["hashed_read_back"].as_u64().unwrap_or(0);
    assert_eq!(
        Some(on_arrival + read_back),
        summary["verified_pieces"].as_u64(),
        "{summary}"
    );
}

/// Waits (bounded by [`BOUND`]) until every file of `files` below
/// `root/name` holds its bytes: a `--seed-after` get's copy is complete.
///
/// # Panics
/// If it is not within the bound (`who` names the get).
fn wait_copy(root: &Path, name: &str, files: &[(String, Vec<u8>)], who: &str) {
    let end = Instant::now() + BOUND;
    while !files
        .iter()
        .all(|(p, bytes)| std::fs::read(root.join(name).join(p)).is_ok_and(|got| got == *bytes))
    {
        assert!(Instant::now() < end, "{who} did not complete");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn assert_copy(root: &Path, name: &str, files: &[(String, Vec<u8>)]) {
    for (p, bytes) in files {
        let got = std::fs::read(root.join(name).join(p)).unwrap_or_default();
        assert!(
            got == *bytes,
            "{p}: copy differs ({} vs {} bytes)",
            got.len(),
            bytes.len()
        );
    }
}

fn seed(torrent: &Path, data_dir: &Path) -> (Proc, SocketAddr) {
    seed_with(torrent, data_dir, &[])
}

/// [`seed`] with `extra` options.
fn seed_with(torrent: &Path, data_dir: &Path, extra: &[&str]) -> (Proc, SocketAddr) {
    let mut p = Proc::spawn(
        Command::new(p2pe_bin())
            .arg("seed")
            .arg(torrent)
            .arg("--path")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra),
    );
    let addr = p.listen_addr();
    (p, addr)
}

fn get(torrent: &Path, out: &Path, peer: SocketAddr) -> (bool, serde_json::Value) {
    let mut p = Proc::spawn(
        Command::new(p2pe_bin())
            .arg("get")
            .arg(torrent)
            .arg("-o")
            .arg(out)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--json",
                "--connect-timeout",
                "60",
            ])
            .args(["--peer", &peer.to_string()]),
    );
    let (ok, lines) = p.wait(BOUND);
    let json = lines
        .iter()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or(serde_json::Value::Null);
    (ok, json)
}

#[test]
fn seed_then_get_multi_file_is_byte_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let (torrent, files) = multi_file(tmp.path(), "payload");
    let (_seeder, addr) = seed(&torrent, tmp.path());
    let out = tmp.path().join("out");
    let (ok, summary) = get(&torrent, &out, addr);
    assert!(ok, "p2pe get failed: {summary}");
    assert_copy(&out, "payload", &files);
    let total: usize = files.iter().map(|(_, b)| b.len()).sum();
    assert_eq!(summary["bytes"].as_u64(), Some(total as u64), "{summary}");
    assert_eq!(summary["peers"].as_u64(), Some(1), "{summary}");
    // A torrent made by another tool: verified with SHA-1.
    assert_hashed_with(&summary, "sha1");
}

#[test]
fn seed_then_get_a_blake3_torrent_hashes_pieces_on_arrival() {
    let tmp = tempfile::tempdir().unwrap();
    let (torrent, files) = multi_file_blake3(tmp.path(), "payload");
    let (_seeder, addr) = seed(&torrent, tmp.path());
    let out = tmp.path().join("out");
    let (ok, summary) = get(&torrent, &out, addr);
    assert!(ok, "p2pe get failed: {summary}");
    assert_copy(&out, "payload", &files);
    assert_hashed_with(&summary, "blake3");
    // Whole pieces from one p2pe peer arrive in order: hashed as they land.
    assert!(summary["hashed_on_arrival"].as_u64() > Some(0), "{summary}");
}

/// The last stdout line that parses as a JSON object.
fn last_json(lines: &[String]) -> serde_json::Value {
    lines
        .iter()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// Sum of `key` over the objects of a JSON array.
fn sum_of(list: &serde_json::Value, key: &str) -> u64 {
    list.as_array()
        .map(|a| a.iter().filter_map(|o| o[key].as_u64()).sum())
        .unwrap_or(0)
}

#[test]
fn get_and_seed_report_payload_per_peer() {
    let tmp = tempfile::tempdir().unwrap();
    let (torrent, files) = multi_file(tmp.path(), "payload");
    // Several workers on both sides: the totals are summed over workers.
    let (mut seeder, seed_addr) = seed_with(&torrent, tmp.path(), &["--json", "--workers", "3"]);
    let mut get = Proc::spawn(
        Command::new(p2pe_bin())
            .arg("get")
            .arg(&torrent)
            .arg("-o")
            .arg(tmp.path().join("out"))
            .args(["--listen", "127.0.0.1:0", "--json", "--workers", "2"])
            .args(["--connect-timeout", "60", "--peer", &seed_addr.to_string()]),
    );
    let get_addr = get.listen_addr();
    let (ok, lines) = get.wait(BOUND);
    let summary = last_json(&lines);
    assert!(ok, "p2pe get failed: {summary}");
    assert_copy(&tmp.path().join("out"), "payload", &files);
    let total: u64 = files.iter().map(|(_, b)| b.len() as u64).sum();
    // One source, the seeder (dialled: booked under the address we dialled),
    // which sent every piece whole. Its bytes are every `piece` payload it
    // sent us: the file, plus duplicates of re-requested blocks if any.
    let sources = &summary["sources"];
    assert_eq!(sources.as_array().map(Vec::len), Some(1), "{summary}");
    assert_eq!(sources[0]["addr"], seed_addr.to_string(), "{summary}");
    assert!(
        sources[0]["peer_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("-PE")),
        "{summary}"
    );
    let down = sum_of(sources, "downloaded_bytes");
    assert!(down >= total && down < 2 * total, "{summary}");
    assert_eq!(sources[0]["pieces"], summary["piece_count"], "{summary}");
    assert_eq!(summary["uploaded_to"], serde_json::json!([]), "{summary}");
    // The seeder booked the same bytes under the leecher's listen address
    // (the BEP 10 `p` of an inbound peer).
    let pid = seeder.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let (ok, seed_lines) = seeder.wait(BOUND);
    assert!(ok, "seed did not exit 0 on SIGTERM");
    let seed_summary = last_json(&seed_lines);
    let up = &seed_summary["uploaded_to"];
    assert_eq!(up.as_array().map(Vec::len), Some(1), "{seed_summary}");
    assert_eq!(up[0]["addr"], get_addr.to_string(), "{seed_summary}");
    assert_eq!(sum_of(up, "uploaded_bytes"), down, "{seed_summary}");
    assert_eq!(seed_summary["uploaded_bytes"].as_u64(), Some(down));
}

#[test]
fn seeds_with_splice_and_send_zc_serve_byte_exact_copies() {
    let tmp = tempfile::tempdir().unwrap();
    let (torrent, files) = multi_file(tmp.path(), "payload");
    for strategy in ["splice", "send-zc"] {
        let (_seeder, addr) = seed_with(&torrent, tmp.path(), &["--send-strategy", strategy]);
        let out = tmp.path().join(format!("out-{strategy}"));
        let (ok, summary) = get(&torrent, &out, addr);
        assert!(ok, "p2pe get from a {strategy} seed failed: {summary}");
        assert_copy(&out, "payload", &files);
    }
}

/// Every entry below `dir` (recursively, sorted): path, length, mtime.
fn tree(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                todo.push(e.path());
            }
            out.push((e.path(), meta.len(), meta.modified().unwrap()));
        }
    }
    out.sort();
    out
}

/// Sends SIGTERM to `p` by PID and waits (bounded) for a clean exit.
fn terminate(p: &mut Proc) -> bool {
    let pid = p.child.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(sent.success());
    p.wait(BOUND).0
}

#[test]
fn leecher_seeds_after_and_seed_exits_cleanly_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let (torrent, files) = multi_file(tmp.path(), "payload");
    let payload_before = tree(&tmp.path().join("payload"));
    let (mut seeder, addr) = seed(&torrent, tmp.path());
    // A downloads from the seeder and keeps serving.
    let a_out = tmp.path().join("a");
    let mut a = Proc::spawn(
        Command::new(p2pe_bin())
            .arg("get")
            .arg(&torrent)
            .arg("-o")
            .arg(&a_out)
            .args(["--listen", "127.0.0.1:0", "--seed-after"])
            .args(["--peer", &addr.to_string()]),
    );
    let a_addr = a.listen_addr();
    // Wait (bounded) until A's copy is complete: its resume record lists all
    // pieces only after it verified them, so poll the data itself.
    wait_copy(&a_out, "payload", &files, "A");
    // The original seeder leaves cleanly and writes nothing into its --path
    // (issue 11: no resume record unless --write-resume).
    assert!(terminate(&mut seeder), "seed did not exit 0 on SIGTERM");
    assert_eq!(tree(&tmp.path().join("payload")), payload_before);
    let records: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with(".p2pe"))
        .collect();
    assert!(records.is_empty(), "seed wrote {records:?} into its --path");
    // B can only get the data from A.
    let b_out = tmp.path().join("b");
    let (ok, summary) = get(&torrent, &b_out, a_addr);
    assert!(ok, "get from a --seed-after leecher failed: {summary}");
    assert_copy(&b_out, "payload", &files);
    // A was never told to stop: SIGTERM ends it; its exit is 0 (complete).
    assert!(
        terminate(&mut a),
        "get --seed-after did not exit 0 on SIGTERM"
    );
}

#[test]
fn get_resumes_fetching_only_missing_pieces() {
    let tmp = tempfile::tempdir().unwrap();
    let (torrent, files) = multi_file(tmp.path(), "payload");
    let (_seeder, addr) = seed(&torrent, tmp.path());
    // Pre-populate: every file but sub/b.bin, which is absent.
    let out = tmp.path().join("out");
    for (p, bytes) in &files {
        if p != "sub/b.bin" {
            let path = out.join("payload").join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
    }
    let (ok, summary) = get(&torrent, &out, addr);
    assert!(ok, "p2pe get failed: {summary}");
    assert_copy(&out, "payload", &files);
    // b.bin is 777,777 bytes; with 64 KiB pieces at most two extra partial
    // pieces at its edges are fetched.
    let fetched = summary["bytes"].as_u64().unwrap();
    assert!(
        (777_777..=777_777 + 2 * 65_536).contains(&fetched),
        "{summary}"
    );
    // A second run has nothing to fetch.
    let (ok, summary) = get(&torrent, &out, addr);
    assert!(ok, "second get failed: {summary}");
    assert_eq!(summary["bytes"].as_u64(), Some(0), "{summary}");
}

#[test]
fn get_without_reachable_peer_fails_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let (torrent, _) = multi_file(tmp.path(), "payload");
    // A port nobody listens on: bind, read the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out: Output = Command::new(p2pe_bin())
        .arg("get")
        .arg(&torrent)
        .arg("-o")
        .arg(tmp.path().join("out"))
        .args(["--listen", "127.0.0.1:0", "--connect-timeout", "2"])
        .args(["--peer", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no peer reachable"), "{err}");
}

#[test]
fn swarm_of_four_all_copies_match() {
    let mut p = Proc::spawn(Command::new(p2pe_bin()).args([
        "swarm",
        "--peers",
        "4",
        "--size",
        "32MiB",
        "--json",
        "--timeout",
        "300",
    ]));
    let (ok, lines) = p.wait(Duration::from_secs(400));
    assert!(ok, "p2pe swarm failed: {lines:?}");
    let j: serde_json::Value = lines
        .iter()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .expect("json summary");
    assert_eq!(j["all_copies_match"], serde_json::Value::Bool(true), "{j}");
    assert_eq!(j["peers"].as_u64(), Some(4), "{j}");
}

/// Runs libtorrent: `leech TORRENT SAVE PORT` downloads from 127.0.0.1:PORT
/// and exits 0 when seeding; `seed TORRENT SAVE` prints "listening on ADDR"
/// and serves until killed.
const LT_SCRIPT: &str = r#"
import sys, time
import libtorrent as lt
mode, torrent, save = sys.argv[1], sys.argv[2], sys.argv[3]
s = lt.session({
    'listen_interfaces': '127.0.0.1:0',
    'enable_dht': False, 'enable_lsd': False, 'enable_upnp': False, 'enable_natpmp': False,
    'allow_multiple_connections_per_ip': True,
    'enable_outgoing_utp': False, 'enable_incoming_utp': False,
    'alert_mask': lt.alert.category_t.error_notification,
})
h = s.add_torrent({'ti': lt.torrent_info(torrent), 'save_path': save})
if mode == 'seed':
    end = time.time() + 60
    while not h.status().is_seeding:
        if time.time() > end:
            sys.exit('libtorrent seeder did not verify its data')
        time.sleep(0.05)
    print('listening on 127.0.0.1:%d' % s.listen_port(), flush=True)
    while True:
        time.sleep(1)
else:
    h.connect_peer(('127.0.0.1', int(sys.argv[4])))
    end = time.time() + float(sys.argv[5])
    while not h.status().is_seeding:
        if time.time() > end:
            st = h.status()
            sys.exit('libtorrent leecher incomplete: %.3f, %d peers' % (st.progress, st.num_peers))
        time.sleep(0.05)
    print('done', flush=True)
"#;

fn lt_script(dir: &Path) -> PathBuf {
    assert!(
        libtorrent_available(),
        "python3-libtorrent is not importable from {SYSTEM_PYTHON}: install python3-libtorrent"
    );
    let path = dir.join("lt.py");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(LT_SCRIPT.as_bytes()).unwrap();
    path
}

/// Makes a torrent of the test payload: (torrent, expected files).
type MakeTorrent = fn(&Path, &str) -> (PathBuf, Vec<(String, Vec<u8>)>);

/// A libtorrent leecher downloads `make`'s torrent from a `p2pe seed`.
fn libtorrent_leeches_from_p2pe_seed(make: MakeTorrent) {
    let tmp = tempfile::tempdir().unwrap();
    let script = lt_script(tmp.path());
    let (torrent, files) = make(tmp.path(), "payload");
    let (_seeder, addr) = seed(&torrent, tmp.path());
    let out = tmp.path().join("lt-out");
    std::fs::create_dir_all(&out).unwrap();
    let mut lt = Proc::spawn(
        Command::new(SYSTEM_PYTHON)
            .arg(&script)
            .arg("leech")
            .arg(&torrent)
            .arg(&out)
            .arg(addr.port().to_string())
            .arg(BOUND.as_secs().to_string()),
    );
    let (ok, lines) = lt.wait(BOUND + Duration::from_secs(30));
    assert!(ok, "libtorrent leecher failed: {lines:?}");
    assert_copy(&out, "payload", &files);
}

/// `p2pe get` downloads `make`'s torrent from a libtorrent seed; its summary
/// says it verified pieces with `hash` (`"sha1"` or `"blake3"`).
fn p2pe_gets_from_libtorrent_seed(make: MakeTorrent, hash: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let script = lt_script(tmp.path());
    let (torrent, files) = make(tmp.path(), "payload");
    let mut lt = Proc::spawn(
        Command::new(SYSTEM_PYTHON)
            .arg(&script)
            .arg("seed")
            .arg(&torrent)
            .arg(tmp.path()),
    );
    let addr = lt.listen_addr();
    let out = tmp.path().join("out");
    let (ok, summary) = get(&torrent, &out, addr);
    assert!(ok, "p2pe get from libtorrent failed: {summary}");
    assert_copy(&out, "payload", &files);
    assert_hashed_with(&summary, hash);
}

#[test]
fn libtorrent_leecher_downloads_from_p2pe_seed() {
    libtorrent_leeches_from_p2pe_seed(multi_file);
}

#[test]
fn libtorrent_leecher_downloads_a_blake3_torrent_from_p2pe_seed() {
    // libtorrent ignores the p2pe key and checks SHA-1; the p2pe seed checked
    // its data with BLAKE3.
    libtorrent_leeches_from_p2pe_seed(multi_file_blake3);
}

#[test]
fn p2pe_get_downloads_a_blake3_torrent_from_libtorrent_seed() {
    p2pe_gets_from_libtorrent_seed(multi_file_blake3, "blake3");
}

#[test]
fn p2pe_get_downloads_from_libtorrent_seed() {
    // mktorrent's torrent has no p2pe key: verified with SHA-1.
    p2pe_gets_from_libtorrent_seed(multi_file, "sha1");
}

#[test]
fn rate_limited_seed_and_get_still_complete_byte_exact() {
    // Functional only (tests never assert timings): limits on both sides,
    // given in the two accepted forms, must not break the transfer.
    let tmp = tempfile::tempdir().unwrap();
    let (torrent, files) = multi_file(tmp.path(), "payload");
    // The seed takes both limits too (one set of flags for both commands).
    let limits = ["--upload-limit", "40Mbit", "--download-limit", "40Mbit"];
    let (mut seeder, addr) = seed_with(&torrent, tmp.path(), &limits);
    let out = tmp.path().join("out");
    let mut p = Proc::spawn(
        Command::new(p2pe_bin())
            .arg("get")
            .arg(&torrent)
            .arg("-o")
            .arg(&out)
            .args(["--listen", "127.0.0.1:0", "--download-limit", "4MB"])
            .args(["--peer", &addr.to_string()]),
    );
    let (ok, lines) = p.wait(BOUND);
    assert!(ok, "rate-limited get failed: {lines:?}");
    assert_copy(&out, "payload", &files);
    assert!(terminate(&mut seeder));
}

/// `--rack`: B's rack-mate A already has every piece, so B takes (nearly) everything from
/// A and not from S2, a seed of another rack (docs/topology.md). One worker each, so every
/// core sees all its connections.
///
/// Ordered by events, not by time: B dials only A; S2 dials B once B has verified a piece,
/// which it can only have taken from A after A's bitfield arrived. From then on every piece
/// has a rack-mate source, so B imports nothing from S2 (when both are dialled at once, B
/// may take pieces from the remote seed until A's bitfield arrives: on a loaded machine
/// that was most of the file). A and S2 upload at most `UPLOAD_LIMIT` (about 10 s for
/// the file from A alone), so B is still busy when S2 connects and an unlabelled B would
/// take about half of the rest from S2; the test checks that S2 was connected while B
/// still lacked pieces, so that the bound is tested and not vacuous.
#[test]
fn rack_mates_take_pieces_from_each_other_not_from_another_rack() {
    const UPLOAD_LIMIT: &str = "128kB";
    let tmp = tempfile::tempdir().unwrap();
    let (torrent, files) = multi_file(tmp.path(), "payload");
    let total: u64 = files.iter().map(|(_, b)| b.len() as u64).sum();
    let (_seeder, seed_addr) = seed_with(&torrent, tmp.path(), &["--rack", "r0", "--workers", "1"]);
    let a_out = tmp.path().join("a");
    let mut a = Proc::spawn(
        Command::new(p2pe_bin())
            .arg("get")
            .arg(&torrent)
            .arg("-o")
            .arg(&a_out)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--seed-after",
                "--workers",
                "1",
                "--json",
            ])
            .args(["--upload-limit", UPLOAD_LIMIT])
            .args(["--rack", "r1", "--peer", &seed_addr.to_string()]),
    );
    let a_addr = a.listen_addr();
    // The summary: A's node holds every piece verified (not just written).
    a.line("A's summary", |l| summary_in(l).map(drop), drop);
    let b_log = tmp.path().join("b.stderr");
    let mut b = Proc::spawn_with(
        Command::new(p2pe_bin())
            .arg("get")
            .arg(&torrent)
            .arg("-o")
            .arg(tmp.path().join("b"))
            .args(["--listen", "127.0.0.1:0", "--json", "--workers", "1"])
            .args(["--progress-interval", "0.1"])
            .args(["--rack", "r1", "--connect-timeout", "60"])
            .args(["--peer", &a_addr.to_string()]),
        std::fs::File::create(&b_log).unwrap().into(),
    );
    let b_addr = b.listen_addr();
    let progress = |l: &str| -> Option<(u64, u64, u64)> {
        let v: serde_json::Value = serde_json::from_str(l).ok()?;
        (v["event"] == "progress").then_some(())?;
        let field = |k: &str| v[k].as_u64();
        Some((
            field("verified_pieces")?,
            field("piece_count")?,
            field("peers")?,
        ))
    };
    let (verified, count, _) = b.line(
        "B's first verified piece",
        |l| progress(l).filter(|p| p.0 >= 1),
        drop,
    );
    assert!(
        verified < count,
        "B finished before S2 started (lower UPLOAD_LIMIT)"
    );
    // S2: a seed of rack r0 (its own copy) that dials B.
    let s2_dir = tmp.path().join("s2");
    write_payload(&s2_dir, "payload");
    let mut s2 = Proc::spawn(
        Command::new(p2pe_bin())
            .arg("get")
            .arg(&torrent)
            .arg("-o")
            .arg(&s2_dir)
            .args(["--listen", "127.0.0.1:0", "--seed-after", "--workers", "1"])
            .args(["--upload-limit", UPLOAD_LIMIT])
            .args(["--rack", "r0", "--peer", &b_addr.to_string()]),
    );
    let (verified, count, _) = b.line(
        "a progress line of B with S2 connected",
        |l| {
            let done = || summary_in(l).map(|_| (1, 1, 0));
            progress(l).filter(|p| p.2 >= 2).or_else(done)
        },
        drop,
    );
    let log = || std::fs::read_to_string(&b_log).unwrap_or_default();
    assert!(
        verified < count,
        "S2 connected only after B had every piece (lower UPLOAD_LIMIT); B's log:\n{}",
        log()
    );
    let (ok, lines) = b.wait(BOUND);
    let summary = last_json(&lines);
    assert!(ok, "p2pe get failed: {summary}; B's log:\n{}", log());
    assert_copy(&tmp.path().join("b"), "payload", &files);
    // Every byte not from A came from a peer of another rack (S2, or S learnt by PEX).
    let from = |rack_mate: bool| -> u64 {
        summary["sources"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| (s["addr"] == a_addr.to_string()) == rack_mate)
            .filter_map(|s| s["downloaded_bytes"].as_u64())
            .sum()
    };
    let (from_seed, from_a) = (from(false), from(true));
    assert!(from_a + from_seed >= total, "{summary}");
    assert!(
        from_seed <= total / 4,
        "another rack sent {from_seed} of {total} bytes: {summary}; B's log:\n{}",
        log()
    );
    assert!(
        terminate(&mut a),
        "get --seed-after did not exit 0 on SIGTERM"
    );
    assert!(
        terminate(&mut s2),
        "get --seed-after did not exit 0 on SIGTERM"
    );
}

/// The final summary of `p2pe get --json` (the object without `event`).
fn summary_in(line: &str) -> Option<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    (v.get("event").is_none() && v.get("sources").is_some()).then_some(v)
}
