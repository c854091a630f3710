//! The `p2pe` binary's command-line surface. (Also makes `cargo test --workspace`
//! build the `p2pe` binary before the cross-crate tests in `tests/` run.)

use std::process::Command;

fn p2pe() -> Command {
    Command::new(env!("CARGO_BIN_EXE_p2pe"))
}

#[test]
fn help_lists_every_subcommand() {
    let out = p2pe().arg("--help").output().expect("run p2pe --help");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for sub in [
        "create", "inspect", "sim", "seed", "get", "swarm", "tracker", "bench",
    ] {
        assert!(text.contains(sub), "`p2pe --help` lacks `{sub}`:\n{text}");
    }
}

#[test]
fn garbage_torrent_is_a_clear_error_not_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.torrent");
    std::fs::write(&path, b"d4:infod6:lengthi-5eee").expect("write");
    let out = p2pe()
        .arg("inspect")
        .arg(&path)
        .output()
        .expect("run p2pe inspect");
    assert_eq!(
        out.status.code(),
        Some(1),
        "exit status of a malformed torrent"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("error"), "stderr names the error: {err}");
    assert!(!err.contains("panicked"), "no panic: {err}");
}
