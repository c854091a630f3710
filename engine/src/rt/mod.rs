//! io_uring thread-per-core runtime: the byte-moving layer of a p2pe node.
//!
//! One worker thread per core (optionally pinned with `core_affinity`), each
//! owning its own `io_uring` (`SINGLE_ISSUER | DEFER_TASKRUN`), its own
//! `SO_REUSEPORT` listener with a multishot accept, and every connection it
//! accepted or opened. A connection never moves between workers and the hot
//! path takes no lock. Workers talk to each other only through bounded
//! `crossbeam` channels ([`Ctx::post`]); the sender wakes the target ring by
//! writing its eventfd, on which each ring keeps one read posted.
//!
//! Protocol logic plugs in through [`Handler`]: one instance per worker, built
//! by a factory closure, called back with a [`Ctx`] through which it queues
//! sends, opens and closes connections and arms its timer.
//!
//! # Invariants
//!
//! - Every buffer, iovec array, `msghdr`, socket address and pipe handed to the
//!   kernel lives in a per-connection slot owned by the worker (boxed, so it
//!   never moves) and stays there until the kernel's last completion for that
//!   slot has been reaped. A slot is only reused after that, with a new
//!   generation, so stale completions and stale [`ConnId`]s are rejected.
//! - Sends are queued per connection (FIFO) with at most one send operation
//!   (or one linked splice chain) in flight per socket, so bytes never reorder.
//!   Partial sends are resubmitted for the remainder.
//! - Each [`ConnId`] gets exactly one [`Handler::on_open`] (unless its connect
//!   fails) and exactly one [`Handler::on_close`].
//! - All `unsafe` of the engine's I/O lives in this module; each block says why
//!   it is sound. The runtime maps no file: a [`Region`] points into a mapping
//!   owned by its maker (in the engine, `store`, the only owner of the data
//!   files' mappings, which makes regions of verified pieces alone).
//!
//! # Send strategies
//!
//! Buffers ([`Ctx::send`]) and file regions ([`Ctx::send_region`]) leave in
//! the order queued. With `Send` and `SendZc`, consecutive queued items are
//! gathered into one `SENDMSG` (`SENDMSG_ZC`) of up to 128 iovecs, so a
//! 13-byte piece header and its block always go out in the same operation.
//! With `Splice`, headers (at most 64 bytes) are written into the pipe between
//! the region splices and leave in the same splice to the socket; larger
//! buffers go out with `SENDMSG`.
//!
//! The default is [`SendStrategy::Send`], chosen from the loopback measurement
//! in `perf/send-path.md` (2 GiB served as 16 KiB BEP 3 blocks, each behind its
//! 13-byte header): it was at or near the top in throughput (0.59-0.66 of the
//! iperf3 ceiling on a loaded 2-vCPU VM; `SendZc` within the noise) with the
//! lowest sender CPU (0.26-0.33 s/GiB). `Splice` pays one io-wq operation per
//! header and block (1.3-1.7 CPU s/GiB at 16 KiB blocks) and only wins with
//! large regions (1 MiB blocks: 0.89 of iperf3); `SendZc` only pays on a real
//! NIC.

mod conn;
mod ctx;
mod handle;
mod region;
mod send;
mod sys;
mod worker;

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub use ctx::{Ctx, PostError};
pub use handle::{run, Poster, RuntimeHandle};
pub use region::Region;

/// Raises this process's soft `RLIMIT_NOFILE` (open descriptors) to its hard limit, so
/// that a server holding many sockets (the tracker's keep-alive connections, a seed's
/// peers) is not stopped by a low default soft limit (often 1,024). Returns the soft
/// limit now in force (`u64::MAX`: unlimited).
///
/// # Errors
/// The `setrlimit(2)` error, if the kernel refuses the raise (the limit is then
/// unchanged).
pub fn raise_nofile_limit() -> std::io::Result<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let now = getrlimit(Resource::Nofile);
    if now.current == now.maximum {
        return Ok(now.current.unwrap_or(u64::MAX));
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: now.maximum,
            maximum: now.maximum,
        },
    )?;
    Ok(now.maximum.unwrap_or(u64::MAX))
}

/// How file regions queued with [`Ctx::send_region`] are moved to the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SendStrategy {
    /// `IORING_OP_SENDMSG` straight from the memory mapping, gathering queued
    /// headers and regions into up to 128 iovecs and
    /// [`RuntimeConfig::send_chunk_bytes`] per operation. The default: fastest
    /// on the loopback measurement (see the module docs).
    #[default]
    Send,
    /// `splice(2)` file -> pipe -> socket through a per-worker pool of pipes
    /// (pipe size 1 MiB clamped to `/proc/sys/fs/pipe-max-size`): one linked
    /// chain (`IOSQE_IO_LINK`) writes small headers and splices regions into
    /// the pipe until it is full, then splices the pipe into the socket. No
    /// user-space copy of the regions.
    Splice,
    /// `IORING_OP_SENDMSG_ZC` from the memory mapping (opt-in): pages are
    /// pinned instead of copied; the mapping is kept alive until the kernel's
    /// notification. Only pays on a real NIC.
    SendZc,
}

/// Configuration of [`run`].
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Number of worker threads (one ring each); default: available cores.
    pub workers: usize,
    /// Address every worker listens on (`SO_REUSEPORT`); port 0 picks one
    /// port shared by all workers. `None`: outbound connections only.
    pub listen: Option<SocketAddr>,
    /// How file regions are sent; see [`SendStrategy`].
    pub send_strategy: SendStrategy,
    /// Size of each connection's receive buffer in bytes (default 256 KiB).
    pub recv_buf_bytes: usize,
    /// Upper bound of bytes per send operation (default 4 MiB); splice chunks
    /// are bounded by the pipe size instead.
    pub send_chunk_bytes: usize,
    /// Pin worker `i` to core `i % cores` (default true).
    pub pin_cores: bool,
    /// Capacity of each worker's control channel ([`Ctx::post`]), in messages
    /// (default 1024).
    pub control_capacity: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            listen: None,
            send_strategy: SendStrategy::default(),
            recv_buf_bytes: 256 * 1024,
            send_chunk_bytes: 4 * 1024 * 1024,
            pin_cores: true,
            control_capacity: 1024,
        }
    }
}

/// Identifies a connection within the worker that owns it.
///
/// Valid only on that worker; a stale id (its connection closed and the slot
/// reused) is recognised by its generation and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub(crate) slot: u32,
    pub(crate) gen: u32,
}

/// The protocol side of a worker: one instance per worker, created by the
/// factory passed to [`run`], called only from that worker's thread.
pub trait Handler: Send + 'static {
    /// The control messages of [`Ctx::post`], [`RuntimeHandle::post`] and
    /// [`Poster::post`] (one type per runtime: no downcasting).
    type Msg: Send + 'static;

    /// A connection is established: accepted (`inbound`) or a
    /// [`Ctx::connect`] that succeeded.
    fn on_open(&mut self, ctx: &mut Ctx<Self::Msg>, conn: ConnId, peer: SocketAddr, inbound: bool);
    /// Bytes received on `conn`, in order. `data` is never empty.
    fn on_recv(&mut self, ctx: &mut Ctx<Self::Msg>, conn: ConnId, data: &[u8]);
    /// A send operation on `conn` completed; [`Ctx::queued_bytes`] tells how
    /// much is still queued, so more may be queued now.
    fn on_sent(&mut self, ctx: &mut Ctx<Self::Msg>, conn: ConnId);
    /// `conn` is closed (by the peer, an error, or [`Ctx::close`]); `err` is
    /// `None` for an orderly close. Called exactly once per connection; the id
    /// is dead afterwards.
    fn on_close(&mut self, ctx: &mut Ctx<Self::Msg>, conn: ConnId, err: Option<io::Error>);
    /// The deadline set with [`Ctx::set_timer`] passed.
    fn on_timer(&mut self, ctx: &mut Ctx<Self::Msg>, now: Instant);
    /// A message from [`Ctx::post`] or [`RuntimeHandle::post`].
    fn on_control(&mut self, ctx: &mut Ctx<Self::Msg>, msg: Self::Msg) {
        let _ = (ctx, msg);
    }
    /// The worker exits (closing its connections, without further callbacks)
    /// once this returns true.
    fn is_done(&self) -> bool;
}

/// Longest time a worker waits on its teardown for the kernel to give back
/// buffers (cancelled operations complete within microseconds; io-wq splices
/// are woken by the socket shutdown). Past it the buffers are leaked rather
/// than freed under the kernel.
pub(crate) const TEARDOWN_BOUND: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests;
