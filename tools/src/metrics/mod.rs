//! `--metrics ADDR`: a Prometheus endpoint (`GET /metrics`, text format 0.0.4)
//! for `p2pe seed`, `get` and `tracker`.
//!
//! The numbers come from the engine's lock-free counters
//! ([`p2pe::node::NodeWatch`], [`p2pe::discovery::tracker_server::io::TrackerWatch`]):
//! the workers only add to relaxed atomics, as they did before; the metrics
//! thread reads them when a scrape comes (and once a second for the live
//! rates) and copies them into a [`prometheus::Registry`], whose
//! `TextEncoder` writes the exposition. So a scrape costs the data plane
//! nothing but a few atomic loads.
//!
//! The endpoint is one thread with a std `TcpListener`, built to be no way to
//! exhaust the process: connections are served one at a time (others wait in
//! the kernel's bounded accept backlog: no thread, buffer or descriptor per
//! waiting client here); a request head may be at most [`MAX_REQUEST_BYTES`]
//! and must arrive within [`REQUEST_TIMEOUT`] in total; the answer is written
//! with the same timeout, and the connection is then closed. Only `GET
//! /metrics` is served (404 otherwise, 405 for other methods). (A general HTTP
//! server crate was not used: the small ones spawn a thread per connection
//! without a bound.) Metric names and labels: see `docs/metrics.md`.

pub(crate) mod node;
pub(crate) mod tracker;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use prometheus::{Encoder, TextEncoder};

/// Longest request head read (request line and headers): a scrape's is
/// ~200 bytes; 8 KiB leaves room for proxies' headers.
pub(crate) const MAX_REQUEST_BYTES: usize = 8 * 1024;

/// Time a client has to send its request head, and again to take the answer
/// (a few KiB): a scrape over loopback or a LAN takes milliseconds, so a
/// client slower than this is stuck or hostile.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// How often the thread looks for a connection and at the stop flag.
const ACCEPT_POLL: Duration = Duration::from_millis(50);

/// How often [`Source::sample`] runs (the live rates' resolution).
pub(crate) const SAMPLE_PERIOD: Duration = Duration::from_secs(1);

/// What an endpoint exposes: sampled once per [`SAMPLE_PERIOD`], encoded per
/// scrape. Runs on the metrics thread only.
pub(crate) trait Source: Send + 'static {
    /// Takes a periodic sample (for rates); `now` is the sample's time.
    fn sample(&mut self, now: Instant);
    /// The exposition: Prometheus text format 0.0.4.
    fn encode(&mut self) -> String;
}

/// A running metrics endpoint; [`MetricsServer::stop`] ends its thread.
pub(crate) struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Binds `listen` (port 0 picks one) and serves `source` on a thread
    /// named `p2pe-metrics`.
    ///
    /// # Errors
    /// The address cannot be bound, or the thread cannot start.
    pub(crate) fn start(listen: SocketAddr, mut source: impl Source) -> anyhow::Result<Self> {
        let listener =
            TcpListener::bind(listen).with_context(|| format!("--metrics: bind {listen}"))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("p2pe-metrics".into())
            .spawn(move || serve(&listener, &mut source, &flag))
            .context("start the metrics thread")?;
        let server = MetricsServer {
            addr,
            stop,
            thread: Some(thread),
        };
        tracing::info!("metrics on http://{}/metrics", server.local_addr());
        Ok(server)
    }

    /// The bound address.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the thread (within about [`REQUEST_TIMEOUT`] x 2 if a client is
    /// being served, else [`ACCEPT_POLL`]).
    pub(crate) fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The metrics thread: samples every [`SAMPLE_PERIOD`], serves connections
/// one at a time, until `stop`.
fn serve(listener: &TcpListener, source: &mut impl Source, stop: &AtomicBool) {
    let mut next_sample = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= next_sample {
            source.sample(now);
            next_sample = now + SAMPLE_PERIOD;
        }
        match listener.accept() {
            Ok((stream, peer)) => {
                if let Err(e) = answer(stream, source) {
                    tracing::debug!("metrics: {peer}: {e}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(ACCEPT_POLL);
            }
            Err(e) => {
                // E.g. EMFILE: back off rather than spin.
                tracing::warn!("metrics: accept: {e}");
                std::thread::sleep(ACCEPT_POLL);
            }
        }
    }
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    /// `GET /metrics` (any query string ignored).
    Metrics,
    /// Another path.
    NotFound,
    /// Another method.
    BadMethod,
    /// No complete request head within [`MAX_REQUEST_BYTES`].
    TooLarge,
}

/// Reads one request head from `stream` (bounded in size and time) and
/// answers it.
fn answer(mut stream: TcpStream, source: &mut impl Source) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let request = read_head(&mut stream)?;
    let (status, body) = match request {
        Request::Metrics => ("200 OK", source.encode()),
        Request::NotFound => ("404 Not Found", "not found: try /metrics\n".to_string()),
        Request::BadMethod => ("405 Method Not Allowed", "only GET /metrics\n".to_string()),
        Request::TooLarge => (
            "431 Request Header Fields Too Large",
            "request head too large\n".to_string(),
        ),
    };
    let content_type = if request == Request::Metrics {
        TextEncoder::new().format_type().to_string()
    } else {
        "text/plain; charset=utf-8".to_string()
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

/// Reads until the end of the request head, at most [`MAX_REQUEST_BYTES`]
/// and [`REQUEST_TIMEOUT`] in all.
fn read_head(stream: &mut TcpStream) -> std::io::Result<Request> {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let mut buf = vec![0u8; MAX_REQUEST_BYTES];
    let mut len = 0;
    loop {
        if let Some(head) = buf.get(..len) {
            if head.windows(4).any(|w| w == b"\r\n\r\n") {
                return Ok(parse_request_line(head));
            }
        }
        let Some(free) = buf.get_mut(len..).filter(|f| !f.is_empty()) else {
            return Ok(Request::TooLarge);
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(left))?;
        let n = stream.read(free)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        len += n;
    }
}

/// Classifies a request head by its request line (`METHOD PATH VERSION`).
fn parse_request_line(head: &[u8]) -> Request {
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    if method != b"GET" {
        return Request::BadMethod;
    }
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    if path == b"/metrics" {
        Request::Metrics
    } else {
        Request::NotFound
    }
}

/// Encodes `registry` in the text format 0.0.4.
pub(crate) fn encode_registry(registry: &prometheus::Registry) -> String {
    let mut out = Vec::new();
    // Writing into a Vec fails only for inconsistent metrics, which the
    // sources never produce; an empty answer is then the fallback.
    if let Err(e) = TextEncoder::new().encode(&registry.gather(), &mut out) {
        tracing::warn!("metrics: encoding failed: {e}");
    }
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(u32);

    impl Source for Fixed {
        fn sample(&mut self, _now: Instant) {
            self.0 += 1;
        }
        fn encode(&mut self) -> String {
            format!("# TYPE t gauge\nt {}\n", self.0)
        }
    }

    fn get(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(request).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn request_lines_are_classified() {
        let p = |s: &str| parse_request_line(s.as_bytes());
        assert_eq!(p("GET /metrics HTTP/1.1\r\n\r\n"), Request::Metrics);
        assert_eq!(p("GET /metrics?x=1 HTTP/1.1\r\n\r\n"), Request::Metrics);
        assert_eq!(p("GET / HTTP/1.1\r\n\r\n"), Request::NotFound);
        assert_eq!(p("POST /metrics HTTP/1.1\r\n\r\n"), Request::BadMethod);
        assert_eq!(p(""), Request::BadMethod);
    }

    #[test]
    fn serves_metrics_and_refuses_the_rest_within_bounds() {
        let server = MetricsServer::start("127.0.0.1:0".parse().unwrap(), Fixed(0)).unwrap();
        let addr = server.local_addr();
        let ok = get(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("text/plain; version=0.0.4"), "{ok}");
        assert!(ok.contains("\r\n\r\n# TYPE t gauge\nt "), "{ok}");
        let missing = get(addr, b"GET /x HTTP/1.1\r\n\r\n");
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        let post = get(addr, b"POST /metrics HTTP/1.1\r\n\r\n");
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");
        // A head that never ends is cut at the size bound.
        let huge = vec![b'a'; MAX_REQUEST_BYTES + 100];
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(&huge);
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        assert!(out.starts_with("HTTP/1.1 431"), "{out}");
        // A client that sends nothing is dropped after the timeout, and the
        // endpoint then serves the next one.
        let idle = TcpStream::connect(addr).unwrap();
        let started = Instant::now();
        let next = get(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
        assert!(next.starts_with("HTTP/1.1 200"), "{next}");
        assert!(started.elapsed() < REQUEST_TIMEOUT * 3);
        drop(idle);
        server.stop();
    }
}
