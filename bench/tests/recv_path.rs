//! The receive-path benchmark stores every byte right on every path, the io_uring
//! ones included (the binary checks each stored byte against the source and exits
//! non-zero on a difference or a short stream).

use std::process::Command;

#[test]
fn every_receive_path_stores_every_byte() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("recv-path.bin");
    let out = Command::new(env!("CARGO_BIN_EXE_recv_path"))
        .args([
            "--size-gib",
            "0.03125", // 32 MiB: 8 pieces of 4 MiB
            "--reps",
            "1",
            "--block-bytes",
            "16384,1048576",
            "--variants",
            "copy,pwrite,uring-pwrite,uring-write,uring-fixed,uring-pbuf",
        ])
        .arg("--file")
        .arg(&file)
        .output()
        .expect("run recv_path");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "recv_path failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    for v in ["| uring-write |", "| uring-pbuf |", "| uring-fixed |"] {
        assert_eq!(stdout.matches(v).count(), 2, "{v} missing from:\n{stdout}");
    }
    assert!(
        !file.exists(),
        "the destination file is removed after each run"
    );
}
