//! The swarm bench's emulated hosts: three network namespaces on a bridge,
//! shaped with tbf, talk TCP to each other, and teardown leaves nothing with
//! the run's prefix. Needs root (CI runs as root); fails clearly otherwise.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use p2pe_bench::netns::{self, Lan, LinkSpec};

const IO_TIMEOUT: Duration = Duration::from_secs(5);

fn qdiscs(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run tc");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Host `from` connects to host 0's listener, says its index, gets it echoed.
fn exchange(lan: &Lan, listener: &std::net::TcpListener, to: SocketAddr, from: usize) {
    let mut client = lan
        .connect_from(from, to, IO_TIMEOUT)
        .expect("connect across the bridge");
    client.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    client.write_all(&[from as u8]).unwrap();
    let (mut server, peer) = listener.accept().expect("accept");
    assert_eq!(
        peer.ip(),
        std::net::IpAddr::V4(lan.hosts()[from].addr),
        "source address"
    );
    server.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut b = [0u8; 1];
    server.read_exact(&mut b).unwrap();
    server.write_all(&b).unwrap();
    let mut echo = [0u8; 1];
    client.read_exact(&mut echo).unwrap();
    assert_eq!(echo[0], from as u8);
}

#[test]
fn three_shaped_hosts_talk_and_teardown_leaves_nothing() {
    assert!(
        netns::is_root(),
        "tests/netbench.rs needs root: it creates network namespaces, veths, a bridge and tc qdiscs \
         (CI runs as root; run `sudo cargo test -p p2pe-tests --test netbench`)"
    );
    let prefix = netns::run_prefix("p2pt");
    let links = [
        LinkSpec::symmetric_mbit(100.0),
        LinkSpec::symmetric_mbit(50.0),
        LinkSpec::symmetric_mbit(10.0),
    ];
    let mut lan = Lan::create(&prefix, &links).expect("create 3 hosts");
    assert_eq!(lan.hosts().len(), 3);
    for (h, link) in lan.hosts().iter().zip(&links) {
        assert!(h.netns.starts_with(&prefix) && h.host_veth.starts_with(&prefix));
        let down = qdiscs(&["tc", "qdisc", "show", "dev", &h.bridge_veth]);
        assert!(
            down.contains("tbf"),
            "download shaping on {}: {down}",
            h.bridge_veth
        );
        let up = qdiscs(&[
            "ip",
            "netns",
            "exec",
            &h.netns,
            "tc",
            "qdisc",
            "show",
            "dev",
            &h.host_veth,
        ]);
        assert!(
            up.contains("tbf"),
            "upload shaping on {}: {up}",
            h.host_veth
        );
        let mbit = link.up_bits_per_s / 1_000_000;
        assert!(
            up.contains(&format!("{mbit}Mbit")),
            "rate {mbit}Mbit in {up}"
        );
    }

    let to = SocketAddr::new(lan.hosts()[0].addr.into(), 0);
    let listener = lan.listen_in(0, to).expect("listen in host 0");
    let to = listener.local_addr().unwrap();
    exchange(&lan, &listener, to, 1);
    exchange(&lan, &listener, to, 2);
    drop(listener);

    lan.teardown().expect("teardown");
    assert_eq!(netns::leftovers(&prefix).unwrap(), Vec::<String>::new());
}
