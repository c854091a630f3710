//! Per-connection slots: the socket, its receive buffer, its send queue and
//! everything the kernel may be pointing into while an operation is in flight.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;

use socket2::{SockAddr, Socket};

use super::sys::Pipe;
use super::{ConnId, Region};

/// At most this many iovecs per gathered send (a header+block pair is two;
/// 128 covers 64 queued 16 KiB blocks, 1 MiB, per operation; the kernel's
/// limit is 1024).
pub(crate) const MAX_IOVECS: usize = 128;

/// Operation kinds, the low 8 bits of `user_data`.
pub(crate) mod op {
    pub(crate) const ACCEPT: u8 = 1;
    pub(crate) const EVENTFD: u8 = 2;
    pub(crate) const CANCEL: u8 = 3;
    pub(crate) const RECV: u8 = 4;
    pub(crate) const CONNECT: u8 = 5;
    pub(crate) const SEND: u8 = 6;
    pub(crate) const PIPE_WRITE: u8 = 7;
    pub(crate) const SPLICE_IN: u8 = 8;
    pub(crate) const SPLICE_OUT: u8 = 9;
}

/// Slot number used for worker-level operations (accept, eventfd, cancel).
pub(crate) const WORKER_SLOT: u32 = 0x00ff_ffff;

/// `user_data` = generation << 32 | slot << 8 | kind.
pub(crate) fn user_data(slot: u32, gen: u32, kind: u8) -> u64 {
    (u64::from(gen) << 32) | (u64::from(slot & WORKER_SLOT) << 8) | u64::from(kind)
}

/// Inverse of [`user_data`]: (slot, generation, kind).
pub(crate) fn split_user_data(ud: u64) -> (u32, u32, u8) {
    ((ud >> 8) as u32 & WORKER_SLOT, (ud >> 32) as u32, ud as u8)
}

/// One queued piece of outgoing bytes.
#[derive(Debug)]
pub(crate) enum Segment {
    /// An owned buffer; `pos` bytes of it already sent.
    Bytes { buf: Vec<u8>, pos: usize },
    /// A file region; `pos` bytes of it already sent.
    Region { region: Region, pos: u64 },
}

impl Segment {
    /// Bytes still to send.
    pub(crate) fn remaining(&self) -> u64 {
        match self {
            Segment::Bytes { buf, pos } => (buf.len() - pos) as u64,
            Segment::Region { region, pos } => region.len_bytes - pos,
        }
    }

    /// Marks `n` more bytes (at most `remaining()`) as sent.
    pub(crate) fn advance(&mut self, n: u64) {
        match self {
            Segment::Bytes { pos, .. } => *pos += n as usize,
            Segment::Region { pos, .. } => *pos += n,
        }
    }
}

/// Lifecycle of a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnState {
    /// Outbound connect in flight.
    Connecting,
    /// Established.
    Open,
    /// Closed towards the handler; waiting for the kernel to return buffers.
    Closing,
}

/// The send operation in flight, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InFlight {
    /// Nothing in flight.
    Idle,
    /// A (gathered) SEND/SENDMSG/SENDMSG_ZC of this many bytes.
    Gather,
    /// A linked splice chain; its outstanding operations are in
    /// `Conn::chain`.
    Splice,
}

/// Kernel-visible scratch of a connection, boxed so it never moves while the
/// slab grows.
pub(crate) struct IoScratch {
    pub(crate) msg: libc::msghdr,
    pub(crate) iov: [libc::iovec; MAX_IOVECS],
    /// Target of an outbound connect.
    pub(crate) addr: Option<SockAddr>,
}

/// A connection slot.
pub(crate) struct Conn {
    pub(crate) sock: Socket,
    pub(crate) peer: SocketAddr,
    pub(crate) state: ConnState,
    pub(crate) recv_buf: Box<[u8]>,
    pub(crate) recv_armed: bool,
    pub(crate) queue: VecDeque<Segment>,
    pub(crate) queued_bytes: u64,
    pub(crate) inflight: InFlight,
    pub(crate) scratch: Box<IoScratch>,
    /// Kernel operations still referencing this slot; it is freed at zero.
    pub(crate) ops: u32,
    /// Listed in `Ctx::dirty` (sends queued since the last flush).
    pub(crate) dirty: bool,
    /// Segments sent with SENDMSG_ZC whose pages the kernel may still read;
    /// released when `zc_notifs` drops back to zero.
    pub(crate) zc_hold: Vec<Segment>,
    pub(crate) zc_notifs: u32,
    /// Splice strategy: the pipe held while a chain runs and bytes in it.
    pub(crate) pipe: Option<Pipe>,
    pub(crate) pipe_fill: u32,
    /// Splice strategy: (kind, requested bytes) of each chain operation not
    /// yet completed, in chain order (completions of a chain arrive in order).
    pub(crate) chain: VecDeque<(u8, u32)>,
    /// An operation of the current chain came back short or cancelled; the
    /// kernel then cancels the rest of the chain.
    pub(crate) chain_broken: bool,
    /// The error to report if this connection fails.
    pub(crate) close_err: Option<io::Error>,
}

impl Conn {
    pub(crate) fn new(sock: Socket, peer: SocketAddr, state: ConnState, recv_bytes: usize) -> Self {
        Conn {
            sock,
            peer,
            state,
            recv_buf: vec![0u8; recv_bytes.max(1)].into_boxed_slice(),
            recv_armed: false,
            queue: VecDeque::new(),
            queued_bytes: 0,
            inflight: InFlight::Idle,
            scratch: Box::new(IoScratch {
                // SAFETY: msghdr and iovec are plain C structs for which all
                // zero bytes (null pointers, zero lengths) is a valid value.
                msg: unsafe { std::mem::zeroed() },
                iov: [libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                }; MAX_IOVECS],
                addr: None,
            }),
            ops: 0,
            dirty: false,
            zc_hold: Vec::new(),
            zc_notifs: 0,
            pipe: None,
            pipe_fill: 0,
            chain: VecDeque::new(),
            chain_broken: false,
            close_err: None,
        }
    }

    /// Removes `n` sent bytes from the front of the queue; fully sent
    /// segments are dropped, or kept in `zc_hold` when `hold` (zero-copy).
    pub(crate) fn consume(&mut self, mut n: u64, hold: bool) {
        self.queued_bytes -= n.min(self.queued_bytes);
        while n > 0 {
            let Some(front) = self.queue.front_mut() else {
                return;
            };
            let take = front.remaining().min(n);
            front.advance(take);
            n -= take;
            if front.remaining() == 0 {
                if let Some(done) = self.queue.pop_front() {
                    if hold {
                        self.zc_hold.push(done);
                    }
                }
            }
        }
        // Drop empty segments at the front (e.g. zero-length sends).
        while self.queue.front().is_some_and(|s| s.remaining() == 0) {
            self.queue.pop_front();
        }
    }
}

/// Slab of connection slots with generations; no allocation on reuse.
#[derive(Default)]
pub(crate) struct Slab {
    slots: Vec<(u32, Option<Conn>)>,
    free: Vec<u32>,
    pub(crate) live: usize,
}

impl Slab {
    /// Stores `conn`, returning its id.
    pub(crate) fn insert(&mut self, conn: Conn) -> ConnId {
        self.live += 1;
        if let Some(slot) = self.free.pop() {
            let entry = &mut self.slots[slot as usize];
            entry.1 = Some(conn);
            return ConnId { slot, gen: entry.0 };
        }
        let slot = self.slots.len() as u32;
        self.slots.push((0, Some(conn)));
        ConnId { slot, gen: 0 }
    }

    /// The connection `id` if it is still the one in its slot.
    pub(crate) fn get(&self, id: ConnId) -> Option<&Conn> {
        match self.slots.get(id.slot as usize) {
            Some((gen, Some(c))) if *gen == id.gen => Some(c),
            _ => None,
        }
    }

    /// The connection `id` if it is still the one in its slot.
    pub(crate) fn get_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        match self.slots.get_mut(id.slot as usize) {
            Some((gen, Some(c))) if *gen == id.gen => Some(c),
            _ => None,
        }
    }

    /// Frees the slot of `id` (bumping its generation), returning the
    /// connection.
    pub(crate) fn remove(&mut self, id: ConnId) -> Option<Conn> {
        match self.slots.get_mut(id.slot as usize) {
            Some((gen, conn @ Some(_))) if *gen == id.gen => {
                *gen = gen.wrapping_add(1);
                self.free.push(id.slot);
                self.live -= 1;
                conn.take()
            }
            _ => None,
        }
    }

    /// Ids of all live slots.
    pub(crate) fn ids(&self) -> Vec<ConnId> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, (_, c))| c.is_some())
            .map(|(i, (gen, _))| ConnId {
                slot: i as u32,
                gen: *gen,
            })
            .collect()
    }
}
