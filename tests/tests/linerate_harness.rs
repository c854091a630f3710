//! `p2pe bench linerate` end to end at a tiny size (functional, not timed):
//! every client of the whole-process comparison runs its pair on 127.0.0.1
//! and reports a time, or is reported as not installed with its install
//! command; the transfer-window repetition still runs; the record goes to the
//! tables it names.
//!
//! Needs python3-libtorrent (like the other interop tests); rqbit and aria2
//! are optional: without them their rows must say `not_installed`.

use std::process::Command;

use p2pe_tests::{command_available, libtorrent_available, p2pe_bin};

#[test]
fn whole_process_rows_for_every_client_and_a_transfer_window_row() {
    assert!(
        libtorrent_available(),
        "python3-libtorrent does not import from /usr/bin/python3 (apt-get install python3-libtorrent)"
    );
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record.md");
    let out = Command::new(p2pe_bin())
        .args(["bench", "linerate", "--size", "4MiB", "--reps", "1"])
        .args(["--iperf-secs", "0", "--timeout", "120", "--json"])
        .args(["--clients", "p2pe,rqbit,libtorrent,aria2"])
        .arg("--work-dir")
        .arg(dir.path().join("work"))
        .arg("--dir")
        .arg(dir.path().join("out"))
        .arg("--record")
        .arg(&record)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed: {stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    let h = &v["headline"];
    assert_ne!(h["dirs"][0]["fs_type"], "?", "{h}");
    let rows = h["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "{h}");
    for (client, installed) in [
        ("p2pe", true),
        ("rqbit", command_available("rqbit")),
        ("libtorrent", true),
        ("aria2", command_available("aria2c")),
    ] {
        let row = rows.iter().find(|r| r["client"] == client).unwrap();
        if installed {
            assert_eq!(row["status"]["state"], "ok", "{client}: {row}\n{stderr}");
            let s = row["seconds"][0].as_f64().unwrap();
            assert!(s > 0.0 && s < 120.0, "{client}: {row}");
            assert!(row["cpu_s_per_gib"].as_f64().unwrap() > 0.0, "{row}");
        } else {
            assert_eq!(row["status"]["state"], "not_installed", "{row}");
            assert!(row["status"]["detail"]
                .as_str()
                .unwrap()
                .contains("install"));
        }
    }
    let p2pe = rows.iter().find(|r| r["client"] == "p2pe").unwrap();
    assert_eq!(p2pe["best_other"], fastest_other(rows), "{h}");
    // The pairs clean up their output directories.
    let left: Vec<_> = std::fs::read_dir(dir.path().join("out")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    let w = &v["window"];
    assert_eq!(w["reps"].as_array().map(Vec::len), Some(1), "{w}");
    assert!(w["gbit_s"].as_f64().unwrap() > 0.0);
    assert!(v["machine"]["vcpus"].as_u64().unwrap() >= 1);
    let text = std::fs::read_to_string(&record).unwrap();
    assert!(text.contains("## Whole-process runs"), "{text}");
    assert!(
        text.contains("## Runs (appended by `p2pe bench linerate`)"),
        "{text}"
    );
    assert_eq!(text.matches("| p2pe |").count(), 1, "{text}");
}

/// The client other than p2pe with the smallest median, or null.
fn fastest_other(rows: &[serde_json::Value]) -> serde_json::Value {
    rows.iter()
        .filter(|r| r["client"] != "p2pe")
        .filter_map(|r| Some((r["client"].clone(), r["median_s"].as_f64()?)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(serde_json::Value::Null, |(c, _)| c)
}
