//! [`Ctx`]: what a [`Handler`](super::Handler) may ask of its worker.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::conn::{Conn, ConnState, Segment, Slab};
use super::handle::Mailboxes;
use super::sys::Pipe;
use super::{ConnId, Region, RuntimeConfig};

/// Why [`Ctx::post`] or [`RuntimeHandle::post`](super::RuntimeHandle::post)
/// failed.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    /// No worker with that index.
    #[error("no worker {0}")]
    NoSuchWorker(usize),
    /// The target's bounded control channel is full; retry later.
    #[error("control channel of worker {0} is full")]
    Full(usize),
    /// The target worker has exited.
    #[error("worker {0} has exited")]
    Exited(usize),
}

/// The worker's side of the handler interface: connections, send queues,
/// timer and control messages of type `M` (the handler's
/// [`Handler::Msg`](super::Handler::Msg)). Requests are applied when the
/// current callback returns.
pub struct Ctx<M> {
    pub(crate) index: usize,
    pub(crate) config: RuntimeConfig,
    pub(crate) conns: Slab,
    /// Connections with newly queued sends.
    pub(crate) dirty: Vec<ConnId>,
    /// Outbound connects to submit.
    pub(crate) connects: Vec<ConnId>,
    /// Close requests (from the handler or from errors) to process.
    pub(crate) closes: Vec<ConnId>,
    pub(crate) deadline: Option<Instant>,
    pub(crate) shared: Arc<Mailboxes<M>>,
    pub(crate) pipes: Vec<Pipe>,
}

impl<M> Ctx<M> {
    pub(crate) fn new(index: usize, config: RuntimeConfig, shared: Arc<Mailboxes<M>>) -> Self {
        Ctx {
            index,
            config,
            conns: Slab::default(),
            dirty: Vec::new(),
            connects: Vec::new(),
            closes: Vec::new(),
            deadline: None,
            shared,
            pipes: Vec::new(),
        }
    }

    /// Index of this worker, `0..workers()`.
    pub fn worker_index(&self) -> usize {
        self.index
    }

    /// Number of workers in the runtime.
    pub fn workers(&self) -> usize {
        self.shared.workers.len()
    }

    /// Queues `buf` on `conn` after everything queued before (FIFO).
    /// Ignored if `conn` is closed or closing (its `on_close` tells).
    pub fn send(&mut self, conn: ConnId, buf: Vec<u8>) {
        self.push(conn, Segment::Bytes { buf, pos: 0 });
    }

    /// Queues `header` (e.g. the 13-byte BEP 3 `piece` message header)
    /// followed by `region`; the runtime sends them gathered in one operation
    /// where the strategy allows, without copying the region through user
    /// space. Ignored if `conn` is closed or closing.
    pub fn send_region(&mut self, conn: ConnId, header: &[u8], region: Region) {
        if !header.is_empty() {
            self.push(
                conn,
                Segment::Bytes {
                    buf: header.to_vec(),
                    pos: 0,
                },
            );
        }
        self.push(conn, Segment::Region { region, pos: 0 });
    }

    fn push(&mut self, id: ConnId, seg: Segment) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if conn.state == ConnState::Closing || seg.remaining() == 0 {
            return;
        }
        conn.queued_bytes += seg.remaining();
        conn.queue.push_back(seg);
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(id);
        }
    }

    /// Bytes queued on `conn` and not yet handed to the kernel (0 for an
    /// unknown connection).
    pub fn queued_bytes(&self, conn: ConnId) -> u64 {
        self.conns.get(conn).map_or(0, |c| c.queued_bytes)
    }

    /// Opens an outbound TCP connection owned by this worker; `on_open`
    /// (inbound = false) or `on_close` with the error follows.
    ///
    /// # Errors
    /// Creating the socket failed (e.g. `EMFILE`).
    pub fn connect(&mut self, addr: SocketAddr) -> io::Result<ConnId> {
        let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        sock.set_cloexec(true)?;
        sock.set_tcp_nodelay(true)?;
        let mut conn = Conn::new(
            sock,
            addr,
            ConnState::Connecting,
            self.config.recv_buf_bytes,
        );
        conn.scratch.addr = Some(SockAddr::from(addr));
        let id = self.conns.insert(conn);
        self.connects.push(id);
        Ok(id)
    }

    /// Closes `conn`: queued sends are dropped, `on_close(conn, None)`
    /// follows. Ignored for unknown or already closing connections.
    pub fn close(&mut self, conn: ConnId) {
        if self.conns.get_mut(conn).is_some() {
            self.closes.push(conn);
        }
    }

    /// Calls `on_timer` once, `after` from now (or earlier if an earlier
    /// deadline is already set; the handler re-arms in `on_timer`).
    pub fn set_timer(&mut self, after: Duration) {
        let at = Instant::now() + after;
        self.deadline = Some(self.deadline.map_or(at, |d| d.min(at)));
    }

    /// Replaces the pending timer deadline (the earliest one asked for with
    /// [`Ctx::set_timer`] since the last `on_timer`) with `at`, and returns
    /// the one it replaced. A handler that multiplexes others (one per
    /// torrent) uses it to learn each one's deadline and to arm the earliest.
    pub fn replace_timer(&mut self, at: Option<Instant>) -> Option<Instant> {
        std::mem::replace(&mut self.deadline, at)
    }

    /// Connections opened with [`Ctx::connect`] and not submitted yet, oldest
    /// first: those of the current callback are at the end (they are submitted
    /// when it returns). A multiplexing handler attributes them to their owner.
    pub fn queued_connects(&self) -> &[ConnId] {
        &self.connects
    }

    /// Sends `msg` to worker `worker`'s `on_control` (this worker included).
    ///
    /// # Errors
    /// [`PostError::NoSuchWorker`], [`PostError::Full`] (bounded channel),
    /// [`PostError::Exited`].
    pub fn post(&self, worker: usize, msg: M) -> Result<(), PostError> {
        self.shared.post(worker, msg)
    }

    /// Records `err` (first one wins) and schedules the close of `id`.
    pub(crate) fn fail(&mut self, id: ConnId, err: Option<io::Error>) {
        if let Some(conn) = self.conns.get_mut(id) {
            if conn.close_err.is_none() {
                conn.close_err = err;
            }
            self.closes.push(id);
        }
    }
}
