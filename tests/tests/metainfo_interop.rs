//! `.torrent` interop with real BitTorrent software (BEP 3 metainfo):
//! - torrents made by `mktorrent` parse in `p2pe inspect` with the info-hash
//!   libtorrent reports;
//! - torrents made by `p2pe create` load in libtorrent (python3-libtorrent) with
//!   the same info-hash, file table and piece hashes (checked against SHA-1 of
//!   the data computed here), single file and nested multi-file directory.
//!
//! libtorrent and mktorrent are required: if missing these tests FAIL with a
//! clear message (CI installs them), they never pass silently.

use std::path::{Path, PathBuf};
use std::process::Command;

use p2pe_tests::{libtorrent_available, p2pe_bin, SYSTEM_PYTHON};
use serde_json::Value;
use sha1::{Digest, Sha1};

/// Dumps what libtorrent sees in a .torrent as JSON.
const LT_DUMP: &str = r#"
import json, sys, libtorrent as lt
ti = lt.torrent_info(sys.argv[1])
fs = ti.files()
print(json.dumps({
    "info_hash": str(ti.info_hashes().v1),
    "name": ti.name(),
    "total_size": ti.total_size(),
    "piece_length": ti.piece_length(),
    "num_pieces": ti.num_pieces(),
    "files": [[fs.file_path(i), fs.file_size(i)] for i in range(fs.num_files())],
    "piece_hashes": [bytes(ti.hash_for_piece(i)).hex() for i in range(ti.num_pieces())],
    "trackers": [[t.tier, t.url] for t in ti.trackers()],
    "private": bool(ti.priv()),
    "p2pe_blake3": lt.bdecode(ti.info_section()).get(b"p2pe blake3", b"").hex(),
}))
"#;

fn require_tools() {
    assert!(
        libtorrent_available(),
        "python3-libtorrent is not importable from {SYSTEM_PYTHON}; install it \
         (`apt-get install python3-libtorrent`) — these interop tests need it"
    );
    let mktorrent = Command::new("mktorrent").arg("-h").output();
    assert!(
        mktorrent.is_ok(),
        "mktorrent is not on PATH; install it (`apt-get install mktorrent`) — these interop tests need it"
    );
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

fn libtorrent_view(torrent: &Path) -> Value {
    let out = run_ok(
        Command::new(SYSTEM_PYTHON)
            .args(["-c", LT_DUMP])
            .arg(torrent),
    );
    serde_json::from_str(&out).expect("libtorrent dump is JSON")
}

fn p2pe_view(torrent: &Path) -> Value {
    let out = run_ok(
        Command::new(p2pe_bin())
            .args(["inspect", "--json"])
            .arg(torrent),
    );
    serde_json::from_str(&out).expect("p2pe inspect --json is JSON")
}

/// Deterministic pseudo-random bytes (SHA-1 in counter mode).
fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 20);
    let mut counter = 0_u64;
    while out.len() < len {
        let block = Sha1::new()
            .chain_update(seed.to_le_bytes())
            .chain_update(counter.to_le_bytes())
            .finalize();
        out.extend_from_slice(&block);
        counter += 1;
    }
    out.truncate(len);
    out
}

/// Writes files (relative path, length) below `root`; returns them in BEP 3 order
/// (sorted by path components) with their contents.
fn write_tree(root: &Path, files: &[(&str, usize)]) -> Vec<(String, Vec<u8>)> {
    let mut written: Vec<(String, Vec<u8>)> = files
        .iter()
        .enumerate()
        .map(|(i, (rel, len))| {
            let path = root.join(rel);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            let bytes = data(i as u64, *len);
            std::fs::write(&path, &bytes).expect("write");
            (rel.to_string(), bytes)
        })
        .collect();
    written.sort_by(|a, b| a.0.split('/').cmp(b.0.split('/')));
    written
}

/// SHA-1 of each piece of `payload`, hex.
fn piece_hashes(payload: &[u8], piece_len_bytes: usize) -> Vec<String> {
    payload
        .chunks(piece_len_bytes)
        .map(|piece| hex::encode(Sha1::digest(piece)))
        .collect()
}

/// Checks a p2pe-made torrent in libtorrent against the data it was made from.
fn check_in_libtorrent(torrent: &Path, name: &str, files: &[(String, Vec<u8>)], multi: bool) {
    let lt = libtorrent_view(torrent);
    let ours = p2pe_view(torrent);
    assert_eq!(lt["info_hash"], ours["info_hash"], "info-hash differs");
    assert_eq!(lt["name"], name);
    let expected_files: Vec<Value> = files
        .iter()
        .map(|(rel, bytes)| {
            let path = if multi {
                format!("{name}/{rel}")
            } else {
                name.to_string()
            };
            serde_json::json!([path, bytes.len()])
        })
        .collect();
    assert_eq!(
        lt["files"],
        Value::Array(expected_files),
        "file table differs"
    );
    let payload: Vec<u8> = files.iter().flat_map(|(_, b)| b.iter().copied()).collect();
    assert_eq!(lt["total_size"], payload.len());
    assert_eq!(lt["total_size"], ours["total_size_bytes"]);
    assert_eq!(lt["piece_length"], ours["piece_length_bytes"]);
    assert_eq!(lt["num_pieces"], ours["piece_count"]);
    let piece_len = lt["piece_length"].as_u64().expect("piece length") as usize;
    let expected = piece_hashes(&payload, piece_len);
    assert_eq!(
        lt["piece_hashes"],
        serde_json::json!(expected),
        "piece hashes differ"
    );
}

fn create(args: &[&str], input: &Path, out: &Path) {
    run_ok(
        Command::new(p2pe_bin())
            .arg("create")
            .arg(input)
            .arg("-o")
            .arg(out)
            .args(args),
    );
}

#[test]
fn p2pe_single_file_torrent_loads_in_libtorrent() {
    require_tools();
    let dir = tempfile::tempdir().expect("tempdir");
    let files = write_tree(dir.path(), &[("model.bin", 3 * 1024 * 1024 + 12_345)]);
    let torrent = dir.path().join("single.torrent");
    create(
        &["--tracker", "http://127.0.0.1:1/announce", "--private"],
        &dir.path().join("model.bin"),
        &torrent,
    );
    let single: Vec<(String, Vec<u8>)> = files.into_iter().collect();
    check_in_libtorrent(&torrent, "model.bin", &single, false);
    let lt = libtorrent_view(&torrent);
    assert_eq!(lt["private"], true);
    assert_eq!(
        lt["trackers"],
        serde_json::json!([[0, "http://127.0.0.1:1/announce"]])
    );
    assert_eq!(
        lt["piece_length"],
        256 * 1024,
        "auto piece length for 3 MiB"
    );
}

#[test]
fn p2pe_nested_directory_torrent_loads_in_libtorrent() {
    require_tools();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("model");
    let files = write_tree(
        &root,
        &[
            ("config.json", 517),
            ("shards/part-00002.safetensors", 100_003),
            ("shards/part-00001.safetensors", 70_000),
            ("shards/nested/deeper/tokenizer.model", 40_961),
            ("empty.txt", 0),
            ("README.md", 32_768),
            ("z-last", 1),
        ],
    );
    let torrent = dir.path().join("multi.torrent");
    create(
        &[
            "--piece-length",
            "16KiB",
            "-t",
            "http://a/1,http://b/1",
            "-t",
            "http://c/2",
        ],
        &root,
        &torrent,
    );
    check_in_libtorrent(&torrent, "model", &files, true);
    let lt = libtorrent_view(&torrent);
    // libtorrent shuffles URLs within a tier (BEP 12): compare sorted.
    let mut lt_trackers: Vec<(u64, String)> = lt["trackers"]
        .as_array()
        .expect("trackers")
        .iter()
        .map(|t| {
            (
                t[0].as_u64().expect("tier"),
                t[1].as_str().expect("url").to_owned(),
            )
        })
        .collect();
    lt_trackers.sort();
    let expected = [(0, "http://a/1"), (0, "http://b/1"), (1, "http://c/2")]
        .map(|(tier, url)| (tier, url.to_owned()));
    assert_eq!(lt_trackers, expected);
    let ours = p2pe_view(&torrent);
    let tiers = serde_json::json!([["http://a/1", "http://b/1"], ["http://c/2"]]);
    assert_eq!(ours["trackers"], tiers);
}

/// Makes a torrent with mktorrent and checks p2pe agrees with libtorrent on it.
fn check_mktorrent(input: &Path, torrent: &Path) -> (Value, Value) {
    run_ok(
        Command::new("mktorrent")
            .args([
                "-l",
                "15",
                "-a",
                "http://127.0.0.1:1/announce",
                "-c",
                "made by mktorrent",
                "-o",
            ])
            .arg(torrent)
            .arg(input),
    );
    let lt = libtorrent_view(torrent);
    let ours = p2pe_view(torrent);
    assert_eq!(
        ours["info_hash"], lt["info_hash"],
        "info-hash differs from libtorrent"
    );
    assert_eq!(ours["total_size_bytes"], lt["total_size"]);
    assert_eq!(ours["piece_length_bytes"], lt["piece_length"]);
    assert_eq!(ours["piece_count"], lt["num_pieces"]);
    assert_eq!(ours["comment"], "made by mktorrent");
    assert_eq!(
        ours["trackers"],
        serde_json::json!([["http://127.0.0.1:1/announce"]])
    );
    let our_files: Vec<Value> = ours["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| serde_json::json!([f["path"], f["length_bytes"]]))
        .collect();
    assert_eq!(
        Value::Array(our_files),
        lt["files"],
        "file table differs from libtorrent"
    );
    (ours, lt)
}

#[test]
fn mktorrent_torrents_parse_with_libtorrent_info_hash() {
    require_tools();
    let dir = tempfile::tempdir().expect("tempdir");
    let single = write_tree(dir.path(), &[("one.bin", 200_001)]);
    assert_eq!(single.len(), 1);
    check_mktorrent(&dir.path().join("one.bin"), &dir.path().join("one.torrent"));

    let root = dir.path().join("tree");
    write_tree(
        &root,
        &[
            ("b/c/d.bin", 70_000),
            ("a.bin", 33_000),
            ("b/e.bin", 1),
            ("f.bin", 99_999),
        ],
    );
    check_mktorrent(&root, &dir.path().join("tree.torrent"));
}

#[test]
fn p2pe_and_mktorrent_build_the_same_info_dictionary() {
    require_tools();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("tree");
    write_tree(
        &root,
        &[
            ("b/c/d.bin", 70_000),
            ("a.bin", 33_000),
            ("b/e.bin", 1),
            ("f.bin", 99_999),
        ],
    );
    let (theirs, _) = check_mktorrent(&root, &dir.path().join("mk.torrent"));
    let ours_torrent: PathBuf = dir.path().join("p2pe.torrent");
    // Without the p2pe BLAKE3 key (which is part of the info-hash).
    create(
        &["--piece-length", "32KiB", "--no-blake3"],
        &root,
        &ours_torrent,
    );
    let ours = p2pe_view(&ours_torrent);
    assert_eq!(
        ours["info_hash"], theirs["info_hash"],
        "same files, same info dictionary"
    );
}

#[test]
fn p2pe_blake3_key_sits_in_the_info_dictionary_libtorrent_loads() {
    require_tools();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("tree");
    let files = write_tree(&root, &[("a.bin", 100_000), ("b/c.bin", 70_001)]);
    let with_key = dir.path().join("b3.torrent");
    let without = dir.path().join("plain.torrent");
    create(&["--piece-length", "16KiB"], &root, &with_key);
    create(&["--piece-length", "16KiB", "--no-blake3"], &root, &without);
    // Both are valid v1 torrents of the same files and SHA-1 pieces.
    check_in_libtorrent(&with_key, "tree", &files, true);
    check_in_libtorrent(&without, "tree", &files, true);
    let (ours, plain) = (p2pe_view(&with_key), p2pe_view(&without));
    assert_eq!(
        (&ours["piece_hash"], &plain["piece_hash"]),
        (&"blake3".into(), &"sha1".into())
    );
    assert_ne!(
        ours["info_hash"], plain["info_hash"],
        "the key is part of the info-hash"
    );
    // libtorrent keeps the key in the info dictionary it hashes: one BLAKE3
    // per piece, of the same bytes as the SHA-1s.
    let payload: Vec<u8> = files.iter().flat_map(|(_, b)| b.iter().copied()).collect();
    let expected: String = payload
        .chunks(16 * 1024)
        .map(|piece| hex::encode(blake3::hash(piece).as_bytes()))
        .collect();
    assert_eq!(libtorrent_view(&with_key)["p2pe_blake3"], expected);
    assert_eq!(libtorrent_view(&without)["p2pe_blake3"], "");
}

#[test]
fn p2pe_refuses_a_torrent_with_path_traversal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let evil = dir.path().join("evil.torrent");
    let info = b"d5:filesld6:lengthi1e4:pathl2:..6:passwdeee4:name3:top12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaae";
    std::fs::write(&evil, [b"d4:info".as_slice(), info, b"e"].concat()).expect("write");
    let out = Command::new(p2pe_bin())
        .args(["inspect"])
        .arg(&evil)
        .output()
        .expect("run p2pe");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("path traversal"), "{stderr}");
}

/// Makes a torrent with libtorrent's own creator (2.0: a v1+v2 hybrid with
/// BEP 47 padding files and a BEP 52 `file tree`).
const LT_CREATE: &str = r#"
import sys, libtorrent as lt
fs = lt.file_storage()
lt.add_files(fs, sys.argv[1])
t = lt.create_torrent(fs, 32768)
t.add_tracker("http://127.0.0.1:1/announce")
lt.set_piece_hashes(t, sys.argv[2])
open(sys.argv[3], "wb").write(lt.bencode(t.generate()))
"#;

#[test]
fn libtorrent_hybrid_torrent_with_padding_parses() {
    require_tools();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("d");
    // Two files of the same length: libtorrent names both their pads `.pad/31072`.
    write_tree(
        &root,
        &[
            ("a.bin", 100_000),
            ("sub/b.bin", 100_000),
            ("sub/c.bin", 5_000),
        ],
    );
    let torrent = dir.path().join("lt.torrent");
    run_ok(
        Command::new(SYSTEM_PYTHON)
            .args(["-c", LT_CREATE])
            .arg(&root)
            .arg(dir.path())
            .arg(&torrent),
    );
    let lt = libtorrent_view(&torrent);
    let ours = p2pe_view(&torrent);
    assert_eq!(
        ours["info_hash"], lt["info_hash"],
        "v1 info-hash differs from libtorrent"
    );
    assert_eq!(ours["piece_count"], lt["num_pieces"]);
    let our_files: Vec<Value> = ours["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| serde_json::json!([f["path"], f["length_bytes"]]))
        .collect();
    assert_eq!(
        Value::Array(our_files),
        lt["files"],
        "file table differs from libtorrent"
    );
    let pads = ours["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter(|f| f["padding"] == true)
        .count();
    assert_eq!(pads, 3, "{ours}");
}
