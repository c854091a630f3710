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

/// Fills `c`'s iovec array from the front of its queue: at most
/// [`MAX_IOVECS`] entries and `chunk` bytes, stopping before the first region
/// if `bytes_only`. Returns the number of iovecs.
fn gather(c: &mut Conn, chunk: u64, bytes_only: bool) -> io::Result<usize> {
    let mut n = 0;
    let mut total = 0u64;
    for seg in c.queue.iter() {
        if n == MAX_IOVECS || total >= chunk {
            break;
        }
        let want = seg.remaining().min(chunk - total);
        let slice: &[u8] = match seg {
            Segment::Bytes { buf, pos } => buf.get(*pos..*pos + want as usize).unwrap_or(&[]),
            Segment::Region { .. } if bytes_only => break,
            Segment::Region { region, pos } => {
                let start = region.offset_bytes + pos;
                let range = usize::try_from(start).ok().and_then(|s| {
                    let e = s.checked_add(want as usize)?;
                    region.src.map.get(s..e)
                });
                range.ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidData, "region outside the mapping")
                })?
            }
        };
        c.scratch.iov[n] = libc::iovec {
            iov_base: slice.as_ptr() as *mut libc::c_void,
            iov_len: slice.len(),
        };
        n += 1;
        total += slice.len() as u64;
    }
    Ok(n)
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
        let n = gather(c, chunk, bytes_only)?;
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
        // iovecs point into queued segments (heap buffers and Arc'd mappings)
        // that stay in the queue until this operation completes, and for
        // zero-copy until its notification (`zc_hold`). The slot is freed
        // only when `ops` is back at zero.
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
                c.zc_hold.clear();
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

    /// Submits one splice chain: drain the pipe if it holds bytes, else
    /// [header write ->] file -> pipe -> socket, linked.
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
        let Some(pipe) = &c.pipe else {
            return Ok(());
        };
        let (pr, pw) = (pipe.read.as_raw_fd(), pipe.write.as_raw_fd());
        let sock = c.sock.as_raw_fd();
        let ud = |kind| user_data(id.slot, id.gen, kind);
        let mut entries: Vec<squeue::Entry> = Vec::with_capacity(3);
        if c.pipe_fill > 0 {
            let out = opcode::Splice::new(types::Fd(pr), -1, types::Fd(sock), -1, c.pipe_fill);
            entries.push(out.build().user_data(ud(op::SPLICE_OUT)));
        } else {
            let mut room = pipe.size_bytes;
            let mut header_len = 0;
            if let Some(Segment::Bytes { buf, pos }) = c.queue.front() {
                let h = buf.get(*pos..).unwrap_or(&[]);
                header_len = h.len() as u32;
                room = room.saturating_sub(header_len);
                let w = opcode::Write::new(types::Fd(pw), h.as_ptr(), header_len);
                entries.push(
                    w.build()
                        .flags(squeue::Flags::IO_LINK)
                        .user_data(ud(op::PIPE_WRITE)),
                );
            }
            let region_at = usize::from(header_len > 0);
            let Some(Segment::Region { region, pos }) = c.queue.get(region_at) else {
                return Err(io::Error::other("splice: no region queued"));
            };
            let n = (region.len_bytes - pos).min(u64::from(room.max(1))) as u32;
            let off = i64::try_from(region.offset_bytes + pos)
                .map_err(|_| io::Error::other("file offset overflows i64"))?;
            let file = types::Fd(region.src.file.as_raw_fd());
            let sp_in = opcode::Splice::new(file, off, types::Fd(pw), -1, n);
            entries.push(
                sp_in
                    .build()
                    .flags(squeue::Flags::IO_LINK)
                    .user_data(ud(op::SPLICE_IN)),
            );
            let sp_out =
                opcode::Splice::new(types::Fd(pr), -1, types::Fd(sock), -1, header_len + n);
            entries.push(sp_out.build().user_data(ud(op::SPLICE_OUT)));
        }
        c.inflight = InFlight::Splice {
            pending: entries.len() as u32,
        };
        c.ops += entries.len() as u32;
        for e in entries {
            // SAFETY: the descriptors (socket, pipe, Arc'd source file) and
            // the header buffer (front queued segment) stay owned by the slot
            // until the chain's completions have been reaped; the slot is
            // freed only when `ops` is back at zero.
            unsafe { self.push(e)? };
        }
        Ok(())
    }

    /// Completion of one operation of a splice chain.
    pub(crate) fn on_splice_done(&mut self, id: ConnId, kind: u8, res: i32) {
        let Some(c) = self.ctx.conns.get_mut(id) else {
            return;
        };
        let pending = match &mut c.inflight {
            InFlight::Splice { pending } => {
                *pending -= 1;
                *pending
            }
            _ => 0,
        };
        match (kind, u32::try_from(res)) {
            (op::PIPE_WRITE | op::SPLICE_IN, Ok(n)) if n > 0 => {
                c.pipe_fill += n;
                c.consume(u64::from(n), false);
            }
            (op::SPLICE_OUT, Ok(n)) => c.pipe_fill -= n.min(c.pipe_fill),
            (_, Ok(_)) => {
                let e = io::Error::new(io::ErrorKind::UnexpectedEof, "source file shrank");
                self.ctx.fail(id, Some(e));
            }
            // A link broken by a short predecessor: the chain is re-planned.
            (_, Err(_)) if res == -libc::ECANCELED => {}
            (_, Err(_)) => self.ctx.fail(id, Some(io::Error::from_raw_os_error(-res))),
        }
        let Some(c) = self.ctx.conns.get_mut(id) else {
            return;
        };
        if pending > 0 {
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
