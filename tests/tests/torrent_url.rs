//! `p2pe get http://…/x.torrent`: the .torrent is fetched over HTTP, then
//! the payload from a `p2pe seed`; a 404 and a body that is no torrent are
//! clear errors. The HTTP server is a thread of this test (std sockets,
//! one request per connection); every child is killed by PID on drop.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::Duration;

use p2pe_tests::{data, p2pe_bin, Proc};

const BOUND: Duration = Duration::from_secs(120);

/// Serves `/x.torrent` (the bytes given) and `/junk` (not a torrent);
/// anything else is a 404. Detached: it ends with the test process.
fn http_server(torrent: Vec<u8>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let mut line = String::new();
            let mut r = BufReader::new(s.try_clone().unwrap());
            if r.read_line(&mut line).is_err() {
                continue;
            }
            // The rest of the head.
            let mut h = String::new();
            while r.read_line(&mut h).is_ok_and(|n| n > 2) {
                h.clear();
            }
            let path = line.split_whitespace().nth(1).unwrap_or("");
            let (status, body): (&str, &[u8]) = match path {
                "/x.torrent" => ("200 OK", &torrent),
                "/junk" => ("200 OK", b"<html>not a torrent</html>"),
                _ => ("404 Not Found", b"no"),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(body);
        }
    });
    addr
}

fn get(url: &str, out: &std::path::Path, extra: &[&str]) -> (bool, String) {
    let mut p = Proc::spawn_with(
        Command::new(p2pe_bin())
            .arg("get")
            .arg(url)
            .arg("-o")
            .arg(out)
            .args(["--listen", "127.0.0.1:0", "--json"])
            .args(extra),
        Stdio::piped(),
    );
    let mut err = p.child.stderr.take().unwrap();
    let t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    let (ok, _) = p.wait(BOUND);
    (ok, t.join().unwrap_or_default())
}

#[test]
fn get_takes_a_torrent_from_an_http_url() {
    let tmp = tempfile::tempdir().unwrap();
    let payload = data(3 << 20, 77);
    std::fs::write(tmp.path().join("p.bin"), &payload).unwrap();
    let torrent = tmp.path().join("p.torrent");
    let out = Command::new(p2pe_bin())
        .arg("create")
        .arg(tmp.path().join("p.bin"))
        .arg("-o")
        .arg(&torrent)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let server = http_server(std::fs::read(&torrent).unwrap());
    let mut seed = Proc::spawn(
        Command::new(p2pe_bin())
            .arg("seed")
            .arg(&torrent)
            .arg("--path")
            .arg(tmp.path())
            .args(["--listen", "127.0.0.1:0", "--no-tracker"]),
    );
    let seed_addr = seed.listen_addr().to_string();
    let dir = tmp.path().join("out");
    let url = format!("http://{server}/x.torrent");
    let (ok, stderr) = get(&url, &dir, &["--peer", &seed_addr]);
    assert!(ok, "{stderr}");
    assert!(std::fs::read(dir.join("p.bin")).unwrap() == payload);

    let (ok, stderr) = get(&format!("http://{server}/missing"), &dir, &[]);
    assert!(!ok && stderr.contains("HTTP status 404"), "{stderr}");
    let (ok, stderr) = get(&format!("http://{server}/junk"), &dir, &[]);
    assert!(!ok && stderr.contains("not a valid .torrent"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
