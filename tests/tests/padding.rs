//! libtorrent's default torrents (issue 15 item 4): hybrid v1+v2 with BEP 47
//! padding files. Padding is never written and never required: `p2pe seed`
//! serves the original folder (no `.pad/`), `p2pe get` writes no `.pad/`. A
//! v2-only torrent is refused by name.
//!
//! The seeder is killed by PID when its guard drops; every wait is bounded.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use p2pe_tests::{data, libtorrent_available, listen_addr_in, p2pe_bin, SYSTEM_PYTHON};

/// Bound on any one wait (small payloads on loopback).
const BOUND: Duration = Duration::from_secs(60);

/// `make.py DIR OUT [v2only]`: a torrent of DIR by libtorrent's defaults
/// (hybrid v1+v2, padding files), 64 KiB pieces.
const MAKE_TORRENT: &str = r#"
import os, sys
import libtorrent as lt
fs = lt.file_storage()
lt.add_files(fs, sys.argv[1])
flags = lt.create_torrent.v2_only if len(sys.argv) > 3 else 0
t = lt.create_torrent(fs, 65536, flags=flags)
lt.set_piece_hashes(t, os.path.dirname(sys.argv[1]))
open(sys.argv[2], 'wb').write(lt.bencode(t.generate()))
"#;

/// Files of the payload `model/` (sizes not aligned to pieces).
fn model(dir: &Path) -> Vec<(&'static str, Vec<u8>)> {
    let files = vec![
        ("a.bin", data(100_001, 1)),
        ("c.txt", data(5, 2)),
        ("sub/b.bin", data(70_000, 3)),
    ];
    for (p, bytes) in &files {
        let path = dir.join("model").join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    files
}

fn make_torrent(dir: &Path, out: &Path, v2_only: bool) {
    assert!(
        libtorrent_available(),
        "python3-libtorrent is not importable from {SYSTEM_PYTHON}: install python3-libtorrent"
    );
    let mut cmd = Command::new(SYSTEM_PYTHON);
    cmd.arg("-c")
        .arg(MAKE_TORRENT)
        .arg(dir.join("model"))
        .arg(out);
    if v2_only {
        cmd.arg("v2only");
    }
    let r = cmd.output().expect("run python3");
    assert!(r.status.success(), "libtorrent create_torrent: {r:?}");
}

/// A `p2pe seed` child, killed by PID on drop.
struct Seeder(Child);

impl Drop for Seeder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn seed(torrent: &Path, data_dir: &Path) -> (Seeder, SocketAddr) {
    let mut child = Command::new(p2pe_bin())
        .arg("seed")
        .arg(torrent)
        .arg("--path")
        .arg(data_dir)
        .args(["--listen", "127.0.0.1:0", "--no-tracker", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn p2pe seed");
    let out = child.stdout.take().expect("stdout");
    let seeder = Seeder(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let line = rx.recv_timeout(BOUND).expect("seed printed its address");
    let addr = listen_addr_in(&line).unwrap_or_else(|| panic!("not an address: {line:?}"));
    (seeder, addr)
}

#[test]
fn libtorrent_hybrid_torrent_with_padding_files_seeds_and_downloads_without_pad() {
    let tmp = tempfile::tempdir().unwrap();
    let files = model(tmp.path());
    let torrent = tmp.path().join("model.torrent");
    make_torrent(tmp.path(), &torrent, false);
    let raw = std::fs::read(&torrent).unwrap();
    assert!(
        raw.windows(6).any(|w| w == b"4:.pad"),
        "libtorrent made no padding files"
    );
    // The original folder, as libtorrent hashed it: no `.pad/`.
    assert!(!tmp.path().join("model/.pad").exists());
    let (_seeder, addr) = seed(&torrent, tmp.path());
    let out = tmp.path().join("out");
    let r = Command::new(p2pe_bin())
        .arg("get")
        .arg(&torrent)
        .arg("-o")
        .arg(&out)
        .args(["--listen", "127.0.0.1:0", "--no-tracker", "--json"])
        .args(["--connect-timeout", "60", "--peer", &addr.to_string()])
        .stdin(Stdio::null())
        .output()
        .expect("run p2pe get");
    assert!(r.status.success(), "p2pe get: {r:?}");
    assert!(
        !out.join("model/.pad").exists(),
        "p2pe get wrote padding files"
    );
    for (p, bytes) in &files {
        let got = std::fs::read(out.join("model").join(p)).unwrap_or_default();
        assert!(got == *bytes, "{p}: copy differs");
    }
}

#[test]
fn v2_only_torrent_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    model(tmp.path());
    let torrent = tmp.path().join("v2.torrent");
    make_torrent(tmp.path(), &torrent, true);
    let r = Command::new(p2pe_bin())
        .arg("inspect")
        .arg(&torrent)
        .output()
        .expect("run p2pe inspect");
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("BitTorrent v2-only torrents are not supported"),
        "{err}"
    );
}
