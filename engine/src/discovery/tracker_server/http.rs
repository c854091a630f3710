//! The tracker's HTTP/1.1 endpoint (BEP 3 announce, BEP 48 scrape) on the
//! project's io_uring runtime ([`crate::rt`]): one [`HttpHandler`] per
//! worker, requests parsed with `httparse`, answered from the shared swarms.
//!
//! - Keep-alive (RFC 9112 §9.3): HTTP/1.1 connections stay open unless the
//!   client sends `Connection: close`; HTTP/1.0 ones close unless it sends
//!   `Connection: keep-alive`. Pipelined requests are answered in order. An
//!   idle connection costs a slot and no thread, so it stalls nobody.
//! - Bounds (every one a client can grow): at most [`MAX_CONNS`] open
//!   connections per server (split over the workers; at the bound the
//!   connection idle the longest is closed to make room), a request head of at
//!   most [`MAX_REQUEST_BYTES`], at most [`MAX_QUEUED_BYTES`] of answers queued
//!   to a client that does not read (past it the connection is closed), and
//!   [`IDLE_TIMEOUT`] to send each complete request (bytes of a partial one
//!   do not extend it, so a slow-loris client is closed too).
//! - Descriptor exhaustion (`EMFILE`/`ENFILE`) is the runtime's: its accept
//!   rests and retries (see `rt::worker::ACCEPT_BACKOFF`), so the endpoint
//!   serves again as soon as descriptors come back.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::io::{answer_http, ServerState};
use crate::rt::{ConnId, Ctx, Handler};

/// Open HTTP connections per server (all workers together). Sized for a
/// fleet of 10,000 nodes that announce every interval and keep their
/// connection open, with room to spare. Memory bound (anonymous memory, the
/// process's `RssAnon`): an idle keep-alive connection costs about 7.5 KiB
/// (measured at 10,000: the runtime's 4 KiB receive buffer (`RECV_BUF_BYTES`),
/// its slot, this endpoint's state and the allocator's share; perf/tracker.md),
/// and one receiving a request at most [`MAX_REQUEST_BYTES`] more: 16,384 ×
/// 7.5 KiB ≈ 120 MiB idle, 16,384 × 15.5 KiB ≈ **250 MiB at worst**, on top of
/// the swarms' own bound (`TrackerConfig`). Kernel socket buffers are not
/// `RssAnon`. Each connection is a descriptor: `p2pe tracker` raises its soft
/// `RLIMIT_NOFILE` to the hard limit at start and warns when that is below
/// this bound.
pub const MAX_CONNS: usize = 16_384;
/// Longest request head (request line and headers) in bytes; an announce
/// with its 20-byte percent-encoded ids is well under 1 KiB.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// Most answer bytes queued to one connection (a client pipelining requests
/// and not reading its answers is closed past it).
pub const MAX_QUEUED_BYTES: u64 = 64 * 1024;
/// Time a connection has for each complete request (from its opening or its
/// previous answer); past it the connection is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often idle connections are looked for.
const SWEEP_PERIOD: Duration = Duration::from_secs(1);
/// Receive buffer of each connection in the runtime (bytes per `recv`).
pub(super) const RECV_BUF_BYTES: usize = 4096;
/// Most request headers parsed; more is a 431 and a close.
const MAX_HEADERS: usize = 32;

/// One open connection.
struct HttpConn {
    peer: SocketAddr,
    /// Bytes received and not yet parsed into a request (at most
    /// [`MAX_REQUEST_BYTES`]).
    buf: Vec<u8>,
    /// Closed if no further complete request arrives by then.
    deadline: Instant,
    /// The last answer asked for a close: sent, then closed; input ignored.
    closing: bool,
}

/// The HTTP side of one runtime worker.
pub(super) struct HttpHandler {
    shared: Arc<ServerState>,
    conns: HashMap<ConnId, HttpConn>,
    /// This worker's share of [`MAX_CONNS`].
    max_conns: usize,
    timer_armed: bool,
}

/// What to do with a connection after its buffered input was handled.
enum Next {
    KeepReading,
    CloseAfterSend,
    CloseNow,
}

impl HttpHandler {
    pub(super) fn new(shared: Arc<ServerState>, workers: usize) -> Self {
        Self {
            shared,
            conns: HashMap::new(),
            max_conns: MAX_CONNS.div_ceil(workers.max(1)),
            timer_armed: false,
        }
    }

    /// Answers every complete request in `conn`'s buffer.
    fn serve(&mut self, ctx: &mut Ctx<()>, id: ConnId) -> Next {
        let Some(conn) = self.conns.get_mut(&id) else {
            return Next::CloseNow;
        };
        loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut headers);
            let (used, status, body, keep_alive) = match req.parse(&conn.buf) {
                Ok(httparse::Status::Partial) => {
                    if conn.buf.len() >= MAX_REQUEST_BYTES {
                        let answer = response(431, b"request too large\n", false);
                        ctx.send(id, answer);
                        return Next::CloseAfterSend;
                    }
                    return Next::KeepReading;
                }
                Err(httparse::Error::TooManyHeaders) => {
                    ctx.send(id, response(431, b"too many headers\n", false));
                    return Next::CloseAfterSend;
                }
                Err(_) => {
                    ctx.send(id, response(400, b"bad request\n", false));
                    return Next::CloseAfterSend;
                }
                Ok(httparse::Status::Complete(used)) => {
                    let keep_alive = wants_keep_alive(&req);
                    // A request body (unexpected on GET) would be read as the
                    // next request: refuse it and close.
                    let has_body = req.headers.iter().any(|h| {
                        (h.name.eq_ignore_ascii_case("content-length") && h.value != b"0")
                            || h.name.eq_ignore_ascii_case("transfer-encoding")
                    });
                    let (status, body) = match (req.method, req.path) {
                        (_, _) if has_body => (400, b"request body not supported\n".to_vec()),
                        (Some("GET"), Some(path)) => {
                            answer_http(&self.shared, path, Some(conn.peer.ip()))
                        }
                        _ => (405, b"only GET\n".to_vec()),
                    };
                    (used, status, body, keep_alive && !has_body)
                }
            };
            conn.buf.drain(..used);
            ctx.send(id, response(status, &body, keep_alive));
            if !keep_alive {
                return Next::CloseAfterSend;
            }
            if ctx.queued_bytes(id) > MAX_QUEUED_BYTES {
                return Next::CloseNow;
            }
            conn.deadline = Instant::now() + IDLE_TIMEOUT;
            if conn.buf.is_empty() {
                return Next::KeepReading;
            }
        }
    }

    /// At the connection bound: closes the connection whose deadline comes
    /// first (idle the longest).
    fn make_room(&mut self, ctx: &mut Ctx<()>) {
        if self.conns.len() < self.max_conns {
            return;
        }
        if let Some((&oldest, _)) = self.conns.iter().min_by_key(|(_, c)| c.deadline) {
            self.conns.remove(&oldest);
            ctx.close(oldest);
        }
    }
}

impl Handler for HttpHandler {
    /// The HTTP endpoint's workers exchange no messages.
    type Msg = ();

    fn on_open(&mut self, ctx: &mut Ctx<()>, conn: ConnId, peer: SocketAddr, _inbound: bool) {
        self.make_room(ctx);
        self.conns.insert(
            conn,
            HttpConn {
                peer,
                buf: Vec::new(),
                deadline: Instant::now() + IDLE_TIMEOUT,
                closing: false,
            },
        );
        if !self.timer_armed {
            self.timer_armed = true;
            ctx.set_timer(SWEEP_PERIOD);
        }
    }

    fn on_recv(&mut self, ctx: &mut Ctx<()>, conn: ConnId, data: &[u8]) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.closing {
            return;
        }
        // Bounded: at most MAX_REQUEST_BYTES stay buffered (serve answers 431
        // past it), plus one receive buffer.
        c.buf.extend_from_slice(data);
        match self.serve(ctx, conn) {
            Next::KeepReading => {}
            Next::CloseAfterSend => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.closing = true;
                    c.buf = Vec::new();
                }
                if ctx.queued_bytes(conn) == 0 {
                    ctx.close(conn);
                }
            }
            Next::CloseNow => ctx.close(conn),
        }
    }

    fn on_sent(&mut self, ctx: &mut Ctx<()>, conn: ConnId) {
        let closing = self.conns.get(&conn).is_some_and(|c| c.closing);
        if closing && ctx.queued_bytes(conn) == 0 {
            ctx.close(conn);
        }
    }

    fn on_close(&mut self, _ctx: &mut Ctx<()>, conn: ConnId, _err: Option<io::Error>) {
        self.conns.remove(&conn);
    }

    fn on_timer(&mut self, ctx: &mut Ctx<()>, now: Instant) {
        let expired: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.deadline <= now)
            .map(|(&id, _)| id)
            .collect();
        for id in expired {
            self.conns.remove(&id);
            ctx.close(id);
        }
        self.timer_armed = !self.conns.is_empty();
        if self.timer_armed {
            ctx.set_timer(SWEEP_PERIOD);
        }
    }

    fn is_done(&self) -> bool {
        false
    }
}

/// Whether the connection stays open after answering `req` (RFC 9112 §9.3).
fn wants_keep_alive(req: &httparse::Request<'_, '_>) -> bool {
    let connection = |token: &str| {
        req.headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("connection")
                && std::str::from_utf8(h.value)
                    .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    match req.version {
        Some(1) => !connection("close"),
        _ => connection("keep-alive"),
    }
}

/// An HTTP/1.1 answer with a `text/plain` body.
fn response(status: u16, body: &[u8], keep_alive: bool) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Request Header Fields Too Large",
    };
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: {connection}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8]) -> bool {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        assert!(req.parse(raw).unwrap().is_complete());
        wants_keep_alive(&req)
    }

    #[test]
    fn keep_alive_follows_version_and_connection_header() {
        assert!(parse(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"));
        assert!(!parse(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"));
        assert!(!parse(b"GET / HTTP/1.1\r\nConnection: x, Close\r\n\r\n"));
        assert!(!parse(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(parse(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    }

    #[test]
    fn response_has_length_and_connection() {
        let r = String::from_utf8(response(404, b"nope", false)).unwrap();
        assert!(r.starts_with("HTTP/1.1 404 Not Found\r\n"), "{r}");
        assert!(r.contains("Content-Length: 4\r\n"));
        assert!(r.contains("Connection: close\r\n"));
        assert!(r.ends_with("\r\n\r\nnope"));
    }
}
