//! A blocking driver for [`TrackerClient`] on std sockets, for a node's control
//! thread (tracker traffic is a few packets a minute: no io_uring here).
//!
//! - HTTP(S): `ureq` (TLS by rustls with the platform's certificates, see
//!   [`super::tls_config`]; a tracker failing TLS fails over to the next
//!   tracker like any other failure), a global timeout of the client's `http_timeout`, bodies
//!   capped at [`MAX_HTTP_RESPONSE_BYTES`], at most 2 redirects. `ureq` over a
//!   hand-rolled GET: it handles chunked bodies, redirects and proxies-correct
//!   HTTP/1.1 framing, which lying trackers and middleboxes exercise.
//! - UDP: one std `UdpSocket` per address family, bound lazily to port 0 (on
//!   loopback when the tracker is on loopback); only datagrams from the
//!   tracker's address are passed on.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use super::tracker_client::{Request, TrackerClient, TrackerId};
use crate::core::time::Time;
use crate::wire::tracker::udp::MAX_PACKET_BYTES;
use crate::wire::tracker::MAX_HTTP_RESPONSE_BYTES;

/// Runs a [`TrackerClient`] over real sockets; call [`TrackerDriver::step`] in a loop.
pub struct TrackerDriver {
    client: TrackerClient,
    epoch: Instant,
    agent: ureq::Agent,
    udp4: Option<UdpSocket>,
    udp6: Option<UdpSocket>,
    /// The tracker a UDP answer is awaited from.
    udp_target: Option<(TrackerId, SocketAddr)>,
    buf: Vec<u8>,
}

/// Bound on the TCP connect of an HTTP announce (Linux retransmits a SYN
/// after 1 s and 3 s, so three SYNs fit).
const HTTP_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl TrackerDriver {
    /// Wraps `client`; `http_timeout` bounds each HTTP exchange (connect to last byte).
    pub fn new(client: TrackerClient, http_timeout: Duration) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(http_timeout))
            // A connect that is not done after a few SYN retransmits is
            // given up early so the next tracker (or round) is tried.
            .timeout_connect(Some(http_timeout.min(HTTP_CONNECT_TIMEOUT)))
            .http_status_as_error(false)
            .max_redirects(2)
            .user_agent("p2pe")
            .tls_config(super::tls_config())
            .build()
            .into();
        Self {
            client,
            epoch: Instant::now(),
            agent,
            udp4: None,
            udp6: None,
            udp_target: None,
            buf: vec![0; MAX_PACKET_BYTES],
        }
    }

    /// The sans-IO client (for progress, events, peers and warnings).
    pub fn client_mut(&mut self) -> &mut TrackerClient {
        &mut self.client
    }

    /// The driver's clock, as [`Time`] since its creation.
    pub fn now(&self) -> Time {
        Time::from_nanos(u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    /// Does everything due now, sends what the client wants sent (an HTTP
    /// exchange blocks for up to its timeout), then waits at most `max_wait`
    /// for a UDP answer or the client's next timer; returns at once after an
    /// HTTP exchange, so its peers reach the caller without a poll's delay.
    /// Errors are handed to the client as tracker failures; this never fails
    /// itself.
    pub fn step(&mut self, max_wait: Duration) {
        self.client.handle_timeout(self.now());
        let mut answered = false;
        while let Some((id, request)) = self.client.poll_request() {
            match request {
                Request::Http { url } => {
                    answered = true;
                    let result = self.http_get(&url);
                    let now = self.now();
                    match result {
                        Ok(body) => self.client.handle_response(now, id, &body),
                        Err(reason) => self.client.handle_error(now, id, &reason),
                    }
                }
                Request::Udp { host_port, payload } => {
                    if let Err(e) = self.udp_send(id, &host_port, &payload) {
                        self.udp_target = None;
                        let reason = format!("UDP send to {host_port}: {e}");
                        self.client.handle_error(self.now(), id, &reason);
                    }
                }
            }
            self.client.handle_timeout(self.now());
        }
        if answered {
            return;
        }
        let until_timer = self
            .client
            .poll_timeout()
            .saturating_duration_since(self.now());
        let wait = max_wait.min(until_timer).max(Duration::from_millis(1));
        self.wait(wait);
    }

    fn http_get(&self, url: &str) -> Result<Vec<u8>, String> {
        // HTTP/1.1 keep-alive through ureq's connection pool: a tracker
        // announced to more often than the pool's idle age (15 s) reuses its
        // connection; past it a fresh one is opened, so a connection the
        // tracker closed while idle is never reused. (p2pe's tracker serves
        // keep-alive on io_uring; the client once sent `Connection: close`
        // to dodge tiny_http parking new connections behind idle ones.)
        let mut response = self.agent.get(url).call().map_err(|e| e.to_string())?;
        let status = response.status();
        if status != 200 {
            return Err(format!("HTTP status {status}"));
        }
        response
            .body_mut()
            .with_config()
            .limit(MAX_HTTP_RESPONSE_BYTES as u64)
            .read_to_vec()
            .map_err(|e| format!("reading the body: {e}"))
    }

    fn udp_send(&mut self, id: TrackerId, host_port: &str, payload: &[u8]) -> io::Result<()> {
        let addrs: Vec<SocketAddr> = host_port.to_socket_addrs()?.collect();
        let addr = addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or(addrs.first())
            .copied()
            .ok_or_else(|| io::Error::other("no address"))?;
        let socket = self.socket_for(addr)?;
        socket.send_to(payload, addr)?;
        self.udp_target = Some((id, addr));
        Ok(())
    }

    fn socket_for(&mut self, to: SocketAddr) -> io::Result<&UdpSocket> {
        let slot = if to.is_ipv4() {
            &mut self.udp4
        } else {
            &mut self.udp6
        };
        if slot.is_none() {
            let local: IpAddr = match (to.ip().is_loopback(), to.is_ipv4()) {
                (true, true) => Ipv4Addr::LOCALHOST.into(),
                (true, false) => Ipv6Addr::LOCALHOST.into(),
                (false, true) => Ipv4Addr::UNSPECIFIED.into(),
                (false, false) => Ipv6Addr::UNSPECIFIED.into(),
            };
            *slot = Some(UdpSocket::bind(SocketAddr::new(local, 0))?);
        }
        slot.as_ref().ok_or_else(|| io::Error::other("socket"))
    }

    /// Waits up to `wait` for the awaited UDP answer; sleeps when none is awaited.
    fn wait(&mut self, wait: Duration) {
        let Some((id, from)) = self.udp_target else {
            std::thread::sleep(wait);
            return;
        };
        let socket = if from.is_ipv4() {
            &self.udp4
        } else {
            &self.udp6
        };
        let Some(socket) = socket else {
            std::thread::sleep(wait);
            return;
        };
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || socket.set_read_timeout(Some(left)).is_err() {
                return;
            }
            match socket.recv_from(&mut self.buf) {
                Ok((len, sender)) if sender == from => {
                    let now = self.now();
                    let packet = self.buf.get(..len).unwrap_or_default();
                    self.client.handle_response(now, id, packet);
                    return;
                }
                Ok(_) => continue, // not from the tracker: drop
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return
                }
                Err(e) => {
                    // e.g. ICMP port unreachable: the tracker is not there.
                    let now = self.now();
                    self.udp_target = None;
                    self.client
                        .handle_error(now, id, &format!("UDP receive: {e}"));
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, UdpSocket};

    use super::*;
    use crate::base::{InfoHash, PeerId};
    use crate::discovery::tracker_client::ClientConfig;
    use crate::discovery::tracker_server::io::{ServerConfig, TrackerServer};
    use crate::discovery::tracker_server::TrackerConfig;

    /// Serves one HTTP connection: reads the request head, then answers `reply`
    /// (or, with `None`, holds the connection open until the client hangs up).
    fn fake_http(reply: Option<Vec<u8>>) -> SocketAddr {
        fake_http_seen(reply).0
    }

    /// As [`fake_http`], also handing over the request head it read.
    fn fake_http_seen(reply: Option<Vec<u8>>) -> (SocketAddr, std::sync::mpsc::Receiver<Vec<u8>>) {
        let (tx, rx) = std::sync::mpsc::channel();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let Ok((mut conn, _)) = listener.accept() else {
                return;
            };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let _ = tx.send(head);
            match reply {
                Some(body) => {
                    let _ = write!(
                        conn,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    );
                    let _ = conn.write_all(&body);
                }
                None => while conn.read(&mut byte).unwrap_or(0) == 1 {},
            }
        });
        (addr, rx)
    }

    #[test]
    fn http_announces_keep_the_connection_alive() {
        // Issue 10: HTTP/1.1 keep-alive (no `Connection: close`); ureq's pool reuses the
        // connection within its idle age.
        let (addr, head) = fake_http_seen(Some(
            b"d8:completei1e10:incompletei0e8:intervali60e5:peers0:e".to_vec(),
        ));
        let mut d = driver(vec![vec![format!("http://{addr}/announce")]], 3333);
        run(&mut d);
        let head = String::from_utf8(head.recv().unwrap())
            .unwrap()
            .to_lowercase();
        assert!(head.starts_with("get /announce?"), "{head}");
        assert!(head.contains(" http/1.1\r\n"), "{head}");
        assert!(!head.contains("connection: close"), "{head}");
    }

    fn driver(tiers: Vec<Vec<String>>, port: u16) -> TrackerDriver {
        let config = ClientConfig {
            http_timeout: Duration::from_millis(500),
            udp_timeout: Duration::from_millis(100),
            udp_max_retries: 1,
            ..ClientConfig::default()
        };
        let client = TrackerClient::new(
            config,
            &tiers,
            InfoHash([5; 20]),
            PeerId([port as u8; 20]),
            port,
            9,
        );
        TrackerDriver::new(client, Duration::from_millis(500))
    }

    /// Steps until an announce succeeds; returns (peers, warnings).
    fn run(d: &mut TrackerDriver) -> (Vec<SocketAddr>, Vec<String>) {
        let (mut peers, mut warnings) = (Vec::new(), Vec::new());
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            d.step(Duration::from_millis(20));
            peers.extend(d.client_mut().poll_peers());
            while let Some(w) = d.client_mut().poll_warning() {
                warnings.push(w);
            }
            if d.client_mut().swarm_counts().is_some() {
                return (peers, warnings);
            }
        }
        panic!("no announce succeeded; warnings: {warnings:?}");
    }

    #[test]
    fn dead_slow_and_lying_trackers_fail_over_to_a_good_one() {
        let good = TrackerServer::bind(ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            tracker: TrackerConfig::with_interval(Duration::from_secs(60)),
            udp_threads: 1,
            http_threads: 1,
        })
        .unwrap();
        let good_url = format!("http://{}/announce", good.local_addr());
        run(&mut driver(vec![vec![good_url.clone()]], 1111));

        let dead_udp = UdpSocket::bind("127.0.0.1:0").unwrap(); // bound, never answers
        let huge = fake_http(Some(vec![
            b'x';
            crate::wire::tracker::MAX_HTTP_RESPONSE_BYTES + 1
        ]));
        let garbage = fake_http(Some(b"<html>502 Bad Gateway</html>".to_vec()));
        let slow = fake_http(None);
        let refused = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap(); // closed
        let bad_tier = vec![
            format!("udp://{}/announce", dead_udp.local_addr().unwrap()),
            format!("http://{huge}/announce"),
            format!("http://{garbage}/announce"),
            format!("http://{slow}/announce"),
            format!("http://{refused}/announce"),
        ];
        let mut d = driver(vec![bad_tier, vec![good_url]], 2222);
        let (peers, warnings) = run(&mut d);
        assert_eq!(peers, vec!["127.0.0.1:1111".parse().unwrap()]);
        assert_eq!(warnings.len(), 5, "{warnings:#?}");
        // One failure per bad tracker, then the good one accepted (metrics).
        assert_eq!(d.client_mut().announces_failed(), 5);
        assert_eq!(d.client_mut().announces_ok(), 1);
        let stats = good.watch().stats();
        assert_eq!(stats.announces_http, 2, "{stats:?}");
        assert_eq!((stats.peers, stats.swarms), (2, 1), "{stats:?}");
        good.shutdown();
    }
}
