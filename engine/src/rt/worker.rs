//! The per-core loop: one ring, its listener, its connections, its handler.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use io_uring::{cqueue, opcode, squeue, types, IoUring};
use socket2::Socket;

use super::conn::{op, split_user_data, user_data, Conn, ConnState, WORKER_SLOT};
use super::ctx::Ctx;
use super::handle::Mailboxes;
use super::{sys, ConnId, Handler, RuntimeConfig, TEARDOWN_BOUND};

/// Submission queue entries per ring: enough for a send, a recv and a splice
/// chain on a few hundred connections between two `io_uring_enter`s; a full
/// queue is flushed and retried.
const SQ_ENTRIES: u32 = 1024;
/// Completion queue entries (the kernel keeps overflow with `NODROP`, this
/// only sizes the fast path).
const CQ_ENTRIES: u32 = 8192;
/// How long the listener rests after `accept` failed for want of descriptors
/// or memory (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`). Re-arming at once
/// would spin: the pending connection stays queued and fails again at once.
/// 100 ms bounds the wasted wake-ups at 10 per second and adds at most that
/// much to a connect once descriptors come back.
pub(crate) const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// One worker: owns everything it touches; nothing in here is shared.
pub(crate) struct Worker<H: Handler> {
    pub(crate) ring: IoUring,
    pub(crate) ctx: Ctx<H::Msg>,
    pub(crate) handler: H,
    listener: Option<Socket>,
    /// The accept is not armed and will be at this time (after a
    /// descriptor-exhaustion error, see [`ACCEPT_BACKOFF`]).
    accept_retry_at: Option<Instant>,
    inbox: Receiver<H::Msg>,
    /// Target of the read posted on this worker's eventfd.
    efd_buf: Box<u64>,
    /// Operations submitted and not finally completed (teardown waits on it).
    pub(crate) inflight: u64,
    cqes: Vec<(u64, i32, u32)>,
    /// `teardown` ran (it also runs from `Drop`, e.g. when a handler panics).
    torn_down: bool,
}

impl<H: Handler> Drop for Worker<H> {
    fn drop(&mut self) {
        // Never free buffers the kernel may still write, even when unwinding
        // from a panicking handler.
        self.teardown();
    }
}

impl<H: Handler> Worker<H> {
    /// Thread body of worker `index`.
    pub(crate) fn run(
        index: usize,
        config: RuntimeConfig,
        shared: Arc<Mailboxes<H::Msg>>,
        inbox: Receiver<H::Msg>,
        listener: Option<Socket>,
        handler: H,
    ) -> io::Result<()> {
        if config.pin_cores {
            if let Some(ids) = core_affinity::get_core_ids().filter(|ids| !ids.is_empty()) {
                core_affinity::set_for_current(ids[index % ids.len()]);
            }
        }
        // Created on the worker thread: with SINGLE_ISSUER the creating task
        // is the only one allowed to submit.
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_cqsize(CQ_ENTRIES)
            .build(SQ_ENTRIES)?;
        let mut w = Worker {
            ring,
            ctx: Ctx::new(index, config, shared),
            handler,
            listener,
            accept_retry_at: None,
            inbox,
            efd_buf: Box::new(0),
            inflight: 0,
            cqes: Vec::with_capacity(CQ_ENTRIES as usize),
            torn_down: false,
        };
        w.event_loop()
        // `w` is dropped here: teardown.
    }

    fn event_loop(&mut self) -> io::Result<()> {
        self.arm_accept()?;
        self.arm_eventfd()?;
        loop {
            self.apply()?;
            if self.ctx.shared.stop.load(Ordering::Acquire) || self.handler.is_done() {
                return Ok(());
            }
            self.wait()?;
            self.reap()?;
            self.fire_timer();
            if self.accept_retry_at.is_some_and(|t| t <= Instant::now()) {
                self.accept_retry_at = None;
                self.arm_accept()?;
            }
        }
    }

    /// Queues `entry` on the submission ring, flushing it to the kernel first
    /// if it is full.
    ///
    /// # Safety
    /// Every pointer in `entry` must stay valid and unmoved until the
    /// operation's last completion has been reaped.
    pub(crate) unsafe fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
        self.inflight += 1;
        loop {
            // SAFETY: forwarded from the caller's contract.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return Ok(());
            }
            self.ring.submit()?;
        }
    }

    fn arm_accept(&mut self) -> io::Result<()> {
        let Some(l) = &self.listener else {
            return Ok(());
        };
        let entry = opcode::AcceptMulti::new(types::Fd(l.as_raw_fd()))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(user_data(WORKER_SLOT, 0, op::ACCEPT));
        // SAFETY: multishot accept without an address references no memory.
        unsafe { self.push(entry) }
    }

    fn arm_eventfd(&mut self) -> io::Result<()> {
        let fd = self.ctx.shared.workers[self.ctx.index].efd.as_raw_fd();
        let buf: *mut u64 = &mut *self.efd_buf;
        let entry = opcode::Read::new(types::Fd(fd), buf.cast(), 8)
            .build()
            .user_data(user_data(WORKER_SLOT, 0, op::EVENTFD));
        // SAFETY: `efd_buf` is boxed, owned by the worker and only freed
        // after teardown drained every operation (or leaked).
        unsafe { self.push(entry) }
    }

    /// Posts a receive into `id`'s buffer unless one is posted.
    pub(crate) fn arm_recv(&mut self, id: ConnId) -> io::Result<()> {
        let Some(c) = self.ctx.conns.get_mut(id) else {
            return Ok(());
        };
        if c.recv_armed || c.state != ConnState::Open || c.recv_buf.is_empty() {
            return Ok(());
        }
        c.recv_armed = true;
        c.ops += 1;
        let len = c.recv_buf.len().min(u32::MAX as usize) as u32;
        let entry = opcode::Recv::new(types::Fd(c.sock.as_raw_fd()), c.recv_buf.as_mut_ptr(), len)
            .build()
            .user_data(user_data(id.slot, id.gen, op::RECV));
        // SAFETY: `recv_buf` is a boxed slice owned by the slot, which is only
        // freed once `ops` is back at zero, and it is never taken out while
        // `recv_armed`.
        unsafe { self.push(entry) }
    }

    /// Applies the handler's requests: closes, connects, then sends, until
    /// none are left (closing calls `on_close`, which may request more).
    fn apply(&mut self) -> io::Result<()> {
        loop {
            if let Some(id) = self.ctx.closes.pop() {
                self.close_now(id)?;
            } else if let Some(id) = self.ctx.connects.pop() {
                self.submit_connect(id)?;
            } else if let Some(id) = self.ctx.dirty.pop() {
                if let Some(c) = self.ctx.conns.get_mut(id) {
                    c.dirty = false;
                    self.start_send(id)?;
                }
            } else {
                return Ok(());
            }
        }
    }

    fn submit_connect(&mut self, id: ConnId) -> io::Result<()> {
        let Some(c) = self.ctx.conns.get_mut(id) else {
            return Ok(());
        };
        let Some(addr) = &c.scratch.addr else {
            return Ok(());
        };
        let entry = opcode::Connect::new(
            types::Fd(c.sock.as_raw_fd()),
            addr.as_ptr().cast(),
            addr.len(),
        )
        .build()
        .user_data(user_data(id.slot, id.gen, op::CONNECT));
        c.ops += 1;
        // SAFETY: the address lives in the slot's boxed scratch, freed only
        // when `ops` is back at zero.
        unsafe { self.push(entry) }
    }

    /// Closes `id` towards the handler now; the slot is freed once the
    /// kernel has returned every buffer.
    fn close_now(&mut self, id: ConnId) -> io::Result<()> {
        let Some(c) = self.ctx.conns.get_mut(id) else {
            return Ok(());
        };
        if c.state == ConnState::Closing {
            return Ok(());
        }
        c.state = ConnState::Closing;
        let err = c.close_err.take();
        // Wakes operations blocked in io-wq (splice) with EPIPE; an error
        // (e.g. never connected) is irrelevant, we close anyway.
        let _ = c.sock.shutdown(std::net::Shutdown::Both);
        let pending = c.ops > 0;
        let fd = c.sock.as_raw_fd();
        if pending {
            let entry = opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fd(fd)).all())
                .build()
                .user_data(user_data(WORKER_SLOT, 0, op::CANCEL));
            // SAFETY: a cancel request references no memory.
            unsafe { self.push(entry)? };
        } else {
            self.ctx.conns.remove(id);
        }
        self.handler.on_close(&mut self.ctx, id, err);
        Ok(())
    }

    fn wait(&mut self) -> io::Result<()> {
        let deadline = match (self.ctx.deadline, self.accept_retry_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let r = match deadline {
            Some(d) => {
                let ts = types::Timespec::from(d.saturating_duration_since(Instant::now()));
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
            None => self.ring.submit_and_wait(1),
        };
        match r {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn fire_timer(&mut self) {
        let now = Instant::now();
        if self.ctx.deadline.is_some_and(|d| d <= now) {
            self.ctx.deadline = None;
            self.handler.on_timer(&mut self.ctx, now);
        }
    }

    /// Takes every available completion and dispatches it.
    fn reap(&mut self) -> io::Result<()> {
        let mut cqes = std::mem::take(&mut self.cqes);
        cqes.clear();
        cqes.extend(
            self.ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        for &(ud, res, flags) in &cqes {
            self.dispatch(ud, res, flags)?;
        }
        self.cqes = cqes;
        Ok(())
    }

    fn dispatch(&mut self, ud: u64, res: i32, flags: u32) -> io::Result<()> {
        let (slot, gen, kind) = split_user_data(ud);
        let last = !cqueue::more(flags);
        if last {
            self.inflight -= 1;
        }
        if slot == WORKER_SLOT {
            return self.dispatch_worker(kind, res, last);
        }
        let id = ConnId { slot, gen };
        let Some(c) = self.ctx.conns.get_mut(id) else {
            return Ok(()); // cannot happen: slots outlive their operations
        };
        if last {
            c.ops -= 1;
        }
        match kind {
            op::RECV => self.on_recv_done(id, res)?,
            op::CONNECT => self.on_connect_done(id, res)?,
            op::SEND => self.on_send_done(id, res, flags),
            _ => self.on_splice_done(id, kind, res),
        }
        if let Some(c) = self.ctx.conns.get_mut(id) {
            if c.state == ConnState::Closing && c.ops == 0 {
                self.release(id);
            }
        }
        Ok(())
    }

    /// Frees a closed slot, returning a clean pipe to the pool.
    fn release(&mut self, id: ConnId) {
        if let Some(mut c) = self.ctx.conns.remove(id) {
            if let Some(p) = c.pipe.take().filter(|_| c.pipe_fill == 0) {
                self.ctx.pipes.push(p);
            }
        }
    }

    fn dispatch_worker(&mut self, kind: u8, res: i32, last: bool) -> io::Result<()> {
        match kind {
            op::ACCEPT => {
                if res >= 0 {
                    self.on_accept(res);
                }
                let starved = matches!(
                    -res,
                    libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM
                );
                if last && starved {
                    self.accept_retry_at = Some(Instant::now() + ACCEPT_BACKOFF);
                } else if last && res != -libc::ECANCELED {
                    self.arm_accept()?;
                }
            }
            op::EVENTFD => {
                while let Ok(msg) = self.inbox.try_recv() {
                    self.handler.on_control(&mut self.ctx, msg);
                }
                if res != -libc::ECANCELED {
                    self.arm_eventfd()?;
                }
            }
            _ => {} // CANCEL: nothing to do.
        }
        Ok(())
    }

    fn on_accept(&mut self, fd: i32) {
        // SAFETY: a non-negative accept result is a fresh descriptor that
        // nobody else owns.
        let sock = unsafe { sys::socket_from_raw(fd) };
        let Some(peer) = sock.peer_addr().ok().and_then(|a| a.as_socket()) else {
            return; // already reset by the peer: drop it
        };
        // Latency of small protocol messages matters more than coalescing;
        // bulk sends are large anyway.
        let _ = sock.set_tcp_nodelay(true);
        let conn = Conn::new(sock, peer, ConnState::Open, self.ctx.config.recv_buf_bytes);
        let id = self.ctx.conns.insert(conn);
        self.handler.on_open(&mut self.ctx, id, peer, true);
        if let Err(e) = self.arm_recv(id) {
            self.ctx.fail(id, Some(e));
        }
    }

    fn on_connect_done(&mut self, id: ConnId, res: i32) -> io::Result<()> {
        let Some(c) = self.ctx.conns.get_mut(id) else {
            return Ok(());
        };
        if c.state == ConnState::Closing {
            return Ok(());
        }
        if res < 0 {
            self.ctx.fail(id, Some(io::Error::from_raw_os_error(-res)));
            return Ok(());
        }
        c.state = ConnState::Open;
        let peer = c.peer;
        if !c.queue.is_empty() && !c.dirty {
            c.dirty = true;
            self.ctx.dirty.push(id);
        }
        self.handler.on_open(&mut self.ctx, id, peer, false);
        self.arm_recv(id)
    }

    fn on_recv_done(&mut self, id: ConnId, res: i32) -> io::Result<()> {
        let Some(c) = self.ctx.conns.get_mut(id) else {
            return Ok(());
        };
        c.recv_armed = false;
        if c.state == ConnState::Closing {
            return Ok(());
        }
        match usize::try_from(res) {
            Ok(0) => self.ctx.fail(id, None),
            Ok(n) => {
                // Taken out so the handler can borrow the context mutably; no
                // receive is posted meanwhile.
                let buf = std::mem::take(&mut c.recv_buf);
                let data = buf.get(..n).unwrap_or(&buf);
                self.handler.on_recv(&mut self.ctx, id, data);
                if let Some(c) = self.ctx.conns.get_mut(id) {
                    c.recv_buf = buf;
                }
                self.arm_recv(id)?;
            }
            Err(_) => self.ctx.fail(id, Some(io::Error::from_raw_os_error(-res))),
        }
        Ok(())
    }

    /// Cancels everything and waits (bounded) for the kernel to give every
    /// buffer back; past the bound, leaks them rather than freeing memory the
    /// kernel may still write.
    fn teardown(&mut self) {
        if std::mem::replace(&mut self.torn_down, true) {
            return;
        }
        let entry = opcode::AsyncCancel2::new(types::CancelBuilder::any())
            .build()
            .user_data(user_data(WORKER_SLOT, 0, op::CANCEL));
        // SAFETY: a cancel request references no memory.
        let _ = unsafe { self.push(entry) };
        for id in self.ctx.conns.ids() {
            if let Some(c) = self.ctx.conns.get_mut(id) {
                let _ = c.sock.shutdown(std::net::Shutdown::Both);
            }
        }
        let end = Instant::now() + TEARDOWN_BOUND;
        while self.inflight > 0 && Instant::now() < end {
            let ts = types::Timespec::new().nsec(50_000_000);
            let args = types::SubmitArgs::new().timespec(&ts);
            let _ = self.ring.submitter().submit_with_args(1, &args);
            let done = self
                .ring
                .completion()
                .filter(|c| !cqueue::more(c.flags()))
                .count();
            self.inflight -= done as u64;
        }
        if self.inflight > 0 {
            std::mem::forget(std::mem::take(&mut self.ctx.conns));
            std::mem::forget(std::mem::take(&mut self.efd_buf));
        }
    }
}
