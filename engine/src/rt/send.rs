//! The send path: gathered SENDMSG / SENDMSG_ZC, and linked splice chains.

use std::io;
use std::os::fd::AsRawFd;

use io_uring::{cqueue, opcode, squeue, types};

use super::conn::{op, user_data, Conn, ConnState, InFlight, Segment, MAX_IOVECS};
use super::worker::Worker;
use super::{sys, ConnId, Handler, SendStrategy};

/// A header at most this long, queued right before a region, is written into
/// the pipe ahead of the region so both leave in one splice (a BEP 3 `piece`
/// header is 13 bytes).
const INLINE_HEADER_MAX_BYTES: u64 = 64;

/// Most fully sent segments kept for pending zero-copy notifications before
/// new zero-copy sends pause (512 header+block pairs, 8 MiB of 16 KiB blocks).
const ZC_HOLD_MAX: usize = 1024;

/// Most operations filling the pipe in one chain: 64 header+block pairs fill a
/// 1 MiB pipe with 16 KiB blocks.
const MAX_CHAIN_OPS: usize = 128;

/// Fills `c`'s iovec array from the front of its queue: at most
/// [`MAX_IOVECS`] entries and `chunk` bytes, stopping before the first region
/// if `bytes_only`. Returns the number of iovecs.
fn gather(c: &mut Conn, chunk: u64, bytes_only: bool) -> usize {
    let mut n = 0;
    let mut total = 0u64;
    for seg in c.queue.iter() {
        if n == MAX_IOVECS || total >= chunk {
            break;
        }
        let want = seg.remaining().min(chunk - total);
        // Fits: `want` is at most `chunk`, a `usize`.
        let want_len = usize::try_from(want).unwrap_or(usize::MAX);
        let (base, len) = match seg {
            Segment::Bytes { buf, pos } => {
                let slice = buf.get(*pos..*pos + want_len).unwrap_or(&[]);
                (slice.as_ptr(), slice.len())
            }
            Segment::Region { .. } if bytes_only => break,
            // `want` is at most what remains of the region, so the range lies
            // within it (the region's maker vouches for the mapping).
            Segment::Region { region, pos } => (region.addr(*pos), want_len),
        };
        c.scratch.iov[n] = libc::iovec {
            iov_base: base as *mut libc::c_void,
            iov_len: len,
        };
        n += 1;
        total += len as u64;
    }
    n
}

/// The operations of the next splice chain on `c` (which holds a pipe):
/// (kind, requested bytes, entry), the last one draining the pipe into the
/// socket.
fn splice_plan(c: &Conn, id: ConnId) -> io::Result<Vec<(u8, u32, squeue::Entry)>> {
    let Some(pipe) = &c.pipe else {
        return Err(io::Error::other("splice: no pipe"));
    };
    let page = u64::from(pipe.page_bytes);
    let (pr, pw) = (
        types::Fd(pipe.read.as_raw_fd()),
        types::Fd(pipe.write.as_raw_fd()),
    );
    let ud = |kind| user_data(id.slot, id.gen, kind);
    let mut plan: Vec<(u8, u32, squeue::Entry)> = Vec::new();
    let mut filled = c.pipe_fill;
    // A pipe holds size/PAGE buffers, not size bytes: a header write takes
    // one buffer, a splice one per page (or folio) it spans. Filling past
    // that would block the chain before the draining splice could run.
    let mut slots = pipe.slots;
    let fill_ops = if filled > 0 { 0 } else { MAX_CHAIN_OPS };
    for seg in c.queue.iter().take(fill_ops) {
        if slots == 0 {
            break;
        }
        let (kind, n, entry) = match seg {
            Segment::Bytes { buf, pos } => {
                let h = buf.get(*pos..).unwrap_or(&[]);
                if h.len() as u64 > INLINE_HEADER_MAX_BYTES {
                    break;
                }
                slots -= 1;
                let n = h.len() as u32;
                (
                    op::PIPE_WRITE,
                    n,
                    opcode::Write::new(pw, h.as_ptr(), n).build(),
                )
            }
            Segment::Region { region, pos } => {
                let start = region.file_offset_bytes + pos;
                let lead = start % page;
                let fits = u64::from(slots) * page - lead;
                let n = (region.len_bytes - pos).min(fits) as u32;
                slots -= (lead + u64::from(n)).div_ceil(page) as u32;
                let off = i64::try_from(start)
                    .map_err(|_| io::Error::other("file offset overflows i64"))?;
                let file = types::Fd(region.fd);
                (
                    op::SPLICE_IN,
                    n,
                    opcode::Splice::new(file, off, pw, -1, n).build(),
                )
            }
        };
        plan.push((
            kind,
            n,
            entry.flags(squeue::Flags::IO_LINK).user_data(ud(kind)),
        ));
        filled += n;
    }
    if filled == 0 {
        return Err(io::Error::other("splice: nothing to move"));
    }
    let sock = types::Fd(c.sock.as_raw_fd());
    let out = opcode::Splice::new(pr, -1, sock, -1, filled).build();
    plan.push((op::SPLICE_OUT, filled, out.user_data(ud(op::SPLICE_OUT))));
    Ok(plan)
}

impl<H: Handler> Worker<H> {
    /// Starts the next send on `id` if it is open and has none in flight.
    pub(crate) fn start_send(&mut self, id: ConnId) -> io::Result<()> {
        let strategy = self.ctx.config.send_strategy;
        let Some(c) = self.ctx.conns.get_mut(id) else {
            return Ok(());
        };
        if c.state != ConnState::Open || c.inflight != InFlight::Idle {
            return Ok(());
        }
        if c.queue.is_empty() && c.pipe_fill == 0 {
            return Ok(());
        }
        let r = match strategy {
            SendStrategy::Send => self.start_gather(id, false, false),
            // Notifications may keep overlapping under a steady stream, so
            // the held segments are bounded by pausing until they drain.
            SendStrategy::SendZc if c.zc_hold.len() >= ZC_HOLD_MAX => return Ok(()),
            SendStrategy::SendZc => self.start_gather(id, true, false),
            SendStrategy::Splice => {
                let front_is_bytes = matches!(c.queue.front(), Some(Segment::Bytes { .. }));
                let header_then_region = front_is_bytes
                    && c.queue
                        .front()
                        .is_some_and(|s| s.remaining() <= INLINE_HEADER_MAX_BYTES)
                    && matches!(c.queue.get(1), Some(Segment::Region { .. }));
                if c.pipe_fill == 0 && front_is_bytes && !header_then_region {
                    self.start_gather(id, false, true)
                } else {
                    self.start_splice(id)
                }
            }
        };
        if let Err(e) = r {
            self.ctx.fail(id, Some(e));
        }
        Ok(())
    }

    fn start_gather(&mut self, id: ConnId, zc: bool, bytes_only: bool) -> io::Result<()> {
        let chunk = self.ctx.config.send_chunk_bytes.max(1) as u64;
        let Some(c) = self.ctx.conns.get_mut(id) else {
            return Ok(());
        };
        let n = gather(c, chunk, bytes_only);
        let s = &mut *c.scratch;
        s.msg.msg_name = std::ptr::null_mut();
        s.msg.msg_namelen = 0;
        s.msg.msg_iov = s.iov.as_mut_ptr();
        s.msg.msg_iovlen = n;
        s.msg.msg_control = std::ptr::null_mut();
        s.msg.msg_controllen = 0;
        s.msg.msg_flags = 0;
        let fd = types::Fd(c.sock.as_raw_fd());
        let flags = libc::MSG_NOSIGNAL as u32;
        let entry = if zc {
            opcode::SendMsgZc::new(fd, &s.msg).flags(flags).build()
        } else {
            opcode::SendMsg::new(fd, &s.msg).flags(flags).build()
        };
        c.inflight = InFlight::Gather;
        c.ops += 1;
        // SAFETY: the msghdr and iovecs live in the slot's boxed scratch; the
        // iovecs point into queued segments (heap buffers, and mappings kept
        // alive by their regions' owners) that stay in the queue until this
        // operation completes, and for zero-copy until its notification
        // (`zc_hold`). The slot is freed only when `ops` is back at zero.
        unsafe { self.push(entry.user_data(user_data(id.slot, id.gen, op::SEND))) }
    }

    /// Completion of a gathered send (or of its zero-copy notification).
    pub(crate) fn on_send_done(&mut self, id: ConnId, res: i32, flags: u32) {
        let Some(c) = self.ctx.conns.get_mut(id) else {
            return;
        };
        if cqueue::notif(flags) {
            c.zc_notifs -= 1;
            if c.zc_notifs == 0 {
                let paused = c.zc_hold.len() >= ZC_HOLD_MAX;
                c.zc_hold.clear();
                if paused && c.inflight == InFlight::Idle && !c.dirty {
                    c.dirty = true;
                    self.ctx.dirty.push(id);
                }
            }
            return;
        }
        if cqueue::more(flags) {
            c.zc_notifs += 1;
        }
        c.inflight = InFlight::Idle;
        if c.state == ConnState::Closing {
            return;
        }
        match u64::try_from(res) {
            Ok(0) if c.queued_bytes > 0 => {
                self.ctx.fail(id, Some(io::ErrorKind::WriteZero.into()));
                return;
            }
            Ok(n) => {
                let hold = c.zc_notifs > 0;
                c.consume(n, hold);
            }
            Err(_) => {
                self.ctx.fail(id, Some(io::Error::from_raw_os_error(-res)));
                return;
            }
        }
        self.after_send(id);
    }

    /// Marks `id` for its next send and tells the handler.
    fn after_send(&mut self, id: ConnId) {
        if let Some(c) = self.ctx.conns.get_mut(id) {
            if (!c.queue.is_empty() || c.pipe_fill > 0) && !c.dirty {
                c.dirty = true;
                self.ctx.dirty.push(id);
            }
        }
        self.handler.on_sent(&mut self.ctx, id);
    }

    /// Submits one splice chain: drain the pipe if it still holds bytes, else
    /// write small headers and splice regions into the pipe until it is full,
    /// then splice the pipe into the socket, all linked.
    fn start_splice(&mut self, id: ConnId) -> io::Result<()> {
        let pool = &mut self.ctx.pipes;
        let Some(c) = self.ctx.conns.get_mut(id) else {
            return Ok(());
        };
        if c.pipe.is_none() {
            c.pipe = Some(match pool.pop() {
                Some(p) => p,
                None => sys::pipe()?,
            });
        }
        let plan = splice_plan(c, id)?;
        c.chain.clear();
        c.chain.extend(plan.iter().map(|(k, n, _)| (*k, *n)));
        c.chain_broken = false;
        c.inflight = InFlight::Splice;
        c.ops += plan.len() as u32;
        for (_, _, e) in plan {
            // SAFETY: the descriptors (socket, pipe, the region's file, kept
            // open by the region's owner) and the header buffers (queued
            // segments, consumed only on their own completion) stay owned by
            // the slot until the chain's completions have been reaped; the
            // slot is freed only when `ops` is back at zero.
            unsafe { self.push(e)? };
        }
        Ok(())
    }

    /// Completion of one operation of a splice chain.
    pub(crate) fn on_splice_done(&mut self, id: ConnId, kind: u8, res: i32) {
        let Some(c) = self.ctx.conns.get_mut(id) else {
            return;
        };
        let want = c.chain.pop_front().map_or(0, |(_, n)| n);
        let into_pipe = kind == op::PIPE_WRITE || kind == op::SPLICE_IN;
        match u32::try_from(res) {
            // The kernel cancels the rest of a chain after a short result, so
            // bytes entering the pipe after one would be out of order.
            Ok(n) if into_pipe && n > 0 && c.chain_broken => {
                let e = io::Error::other("splice chain continued after a short result");
                self.ctx.fail(id, Some(e));
            }
            Ok(n) if into_pipe && n > 0 => {
                c.pipe_fill += n;
                c.consume(u64::from(n), false);
                c.chain_broken |= n != want;
            }
            Ok(0) if kind == op::SPLICE_OUT && want > 0 => {
                self.ctx.fail(id, Some(io::ErrorKind::WriteZero.into()));
            }
            Ok(n) if kind == op::SPLICE_OUT => {
                c.pipe_fill -= n.min(c.pipe_fill);
                c.chain_broken |= n != want;
            }
            Ok(_) => {
                let e = io::Error::new(io::ErrorKind::UnexpectedEof, "source file shrank");
                self.ctx.fail(id, Some(e));
            }
            // A link broken by a short predecessor: the next chain re-plans.
            Err(_) if res == -libc::ECANCELED => c.chain_broken = true,
            Err(_) => self.ctx.fail(id, Some(io::Error::from_raw_os_error(-res))),
        }
        let Some(c) = self.ctx.conns.get_mut(id) else {
            return;
        };
        if !c.chain.is_empty() {
            return;
        }
        c.inflight = InFlight::Idle;
        if c.state == ConnState::Closing {
            return;
        }
        if c.pipe_fill == 0 {
            if let Some(p) = c.pipe.take() {
                self.ctx.pipes.push(p);
            }
        }
        self.after_send(id);
    }
}
