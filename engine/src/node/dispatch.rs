//! [`Dispatcher`]: the [`Handler`] of one worker of a [`super::Session`],
//! serving every torrent of the session on that worker.
//!
//! It owns one [`NodeHandler`] per torrent and routes each runtime callback
//! to the handler that owns the connection (`ConnId -> torrent`, one hash
//! lookup per callback: the only cost a single torrent pays on its hot path).
//! Outbound connections belong to the torrent whose callback opened them
//! (the connects it queued, [`Ctx::queued_connects`]). An inbound connection
//! waits in [`InboundHandshakes`] until the first 48 bytes of the peer's
//! handshake name the info-hash; the torrent with that info-hash then gets
//! `on_open` and the bytes received so far, as if it had accepted the
//! connection itself (and sends its handshake only then: BEP 3 lets the
//! receiving side wait for the initiator's). An unknown info-hash, or bytes
//! that are no BEP 3 handshake, close the connection. With [`Routing::Sole`]
//! (a [`super::Node`]: one torrent) inbound connections go to the torrent at
//! accept, as before sessions existed.
//!
//! Timer: the runtime has one per worker. Each handler's requests
//! ([`Ctx::set_timer`]) are taken from the context after each call
//! ([`Ctx::replace_timer`]) and kept per torrent; the worker's timer is the
//! earliest of them and of the waiting handshakes' expiry, and `on_timer`
//! calls the handlers whose deadline passed.
//!
//! Control messages ([`SessionMsg`]) add a torrent, remove one (closing its
//! connections on this worker; the other torrents keep theirs), or carry a
//! [`Command`] to one torrent's handler. A handler that reports
//! [`Handler::is_done`] (a fatal storage error) is removed on this worker
//! the same way, and the worker goes on serving the others.
//!
//! Invariants: every entry of the connection map names a live torrent (a
//! removed torrent's entries go with it); the waiting handshakes are bounded
//! in count and time ([`InboundHandshakes`]).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::base::InfoHash;
use crate::core::inbound_handshakes::{InboundConfig, InboundHandshakes, Routed};
use crate::core::Time;
use crate::rt::{ConnId, Handler};

use super::handler::NodeHandler;
use super::session::TorrentId;
use super::Command;

/// How a worker assigns inbound connections to torrents.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Routing {
    /// Every inbound connection goes, at accept, to the session's one torrent
    /// (which closes it if the handshake names another).
    Sole,
    /// By the info-hash of the peer's handshake, waiting within these bounds.
    ByInfoHash(InboundConfig),
}

/// A torrent's handler for one worker, as the session sends it.
pub(crate) struct TorrentSlot {
    pub(crate) id: TorrentId,
    pub(crate) info_hash: InfoHash,
    pub(crate) handler: NodeHandler,
}

/// The runtime context of a session's workers ([`SessionMsg`] their
/// control messages).
pub(crate) type Ctx = crate::rt::Ctx<SessionMsg>;

/// A control message to a worker of a session.
pub(crate) enum SessionMsg {
    /// Serve this torrent on this worker; the sender is dropped once done.
    Add(Box<TorrentSlot>, mpsc::Sender<()>),
    /// Stop serving this torrent on this worker (closing its connections);
    /// the sender is dropped once done.
    Remove(TorrentId, mpsc::Sender<()>),
    /// A command to this torrent's handler on this worker.
    Torrent(TorrentId, Command),
}

/// One torrent on this worker.
struct Entry {
    slot: TorrentSlot,
    /// The earliest time its handler asked to be called back.
    deadline: Option<Instant>,
}

/// The worker's side of a session (see the module docs).
pub(crate) struct Dispatcher {
    /// Torrents by local index; a freed index is reused only after every
    /// connection entry naming it is gone.
    entries: Vec<Option<Entry>>,
    by_id: HashMap<TorrentId, usize>,
    by_hash: HashMap<InfoHash, usize>,
    /// The torrent (local index) of every connection a handler has seen.
    conns: HashMap<ConnId, usize>,
    /// Inbound connections waiting for their handshake (`None`: [`Routing::Sole`]).
    inbound: Option<InboundHandshakes<ConnId, SocketAddr>>,
    /// Clock origin of the waiting handshakes' times.
    epoch: Instant,
}

impl Dispatcher {
    /// A worker's dispatcher without torrents.
    pub(crate) fn new(routing: Routing, epoch: Instant) -> Self {
        Dispatcher {
            entries: Vec::new(),
            by_id: HashMap::new(),
            by_hash: HashMap::new(),
            conns: HashMap::new(),
            inbound: match routing {
                Routing::Sole => None,
                Routing::ByInfoHash(c) => Some(InboundHandshakes::new(c)),
            },
            epoch,
        }
    }

    fn time(&self, at: Instant) -> Time {
        let ns = at.saturating_duration_since(self.epoch).as_nanos();
        Time::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    fn instant(&self, t: Time) -> Instant {
        self.epoch + Duration::from_nanos(t.as_nanos())
    }

    /// Calls torrent `i`'s handler with `f`: its timer request is recorded
    /// (and merged into the worker's), the connects it queued become its
    /// connections, and it is removed if it is done.
    fn call(&mut self, ctx: &mut Ctx, i: usize, f: impl FnOnce(&mut NodeHandler, &mut Ctx)) {
        let Some(Some(e)) = self.entries.get_mut(i) else {
            return;
        };
        let outer = ctx.replace_timer(None);
        let before = ctx.queued_connects().len();
        f(&mut e.slot.handler, ctx);
        let asked = ctx.replace_timer(outer);
        if let Some(at) = asked {
            e.deadline = Some(e.deadline.map_or(at, |d| d.min(at)));
            ctx.replace_timer(Some(outer.map_or(at, |o| o.min(at))));
        }
        let done = e.slot.handler.is_done();
        for &c in ctx.queued_connects().get(before..).unwrap_or_default() {
            self.conns.insert(c, i);
        }
        if done {
            self.drop_torrent(ctx, i);
        }
    }

    /// Removes torrent `i` from this worker, closing its connections (their
    /// `on_close` then finds no owner and is ignored).
    fn drop_torrent(&mut self, ctx: &mut Ctx, i: usize) {
        let Some(e) = self.entries.get_mut(i).and_then(Option::take) else {
            return;
        };
        self.by_id.remove(&e.slot.id);
        self.by_hash.remove(&e.slot.info_hash);
        self.conns.retain(|&c, &mut t| {
            if t == i {
                ctx.close(c);
            }
            t != i
        });
        // `e` drops here: its handler publishes its last counters.
    }

    fn add(&mut self, slot: TorrentSlot) {
        if self.by_id.contains_key(&slot.id) || self.by_hash.contains_key(&slot.info_hash) {
            return; // the session never sends one twice
        }
        let i = match self.entries.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                self.entries.push(None);
                self.entries.len() - 1
            }
        };
        self.by_id.insert(slot.id, i);
        self.by_hash.insert(slot.info_hash, i);
        if let Some(e) = self.entries.get_mut(i) {
            *e = Some(Entry {
                slot,
                deadline: None,
            });
        }
    }

    /// Arms the worker's timer at the earliest deadline of any torrent and of
    /// the waiting handshakes (keeping an earlier one already set).
    fn arm(&mut self, ctx: &mut Ctx) {
        let mut at = ctx.replace_timer(None);
        let mut merge = |d: Option<Instant>| {
            if let Some(d) = d {
                at = Some(at.map_or(d, |a| a.min(d)));
            }
        };
        for e in self.entries.iter().flatten() {
            merge(e.deadline);
        }
        merge(
            self.inbound
                .as_ref()
                .and_then(InboundHandshakes::poll_timeout)
                .map(|t| self.instant(t)),
        );
        ctx.replace_timer(at);
    }

    /// The first bytes of a waiting inbound connection arrived.
    fn route_inbound(&mut self, ctx: &mut Ctx, conn: ConnId, data: &[u8]) {
        let Some(inbound) = self.inbound.as_mut() else {
            ctx.close(conn);
            return;
        };
        match inbound.handle_recv(conn, data) {
            Some(Routed::Wait) => {}
            Some(Routed::InfoHash {
                info_hash,
                peer,
                buffered,
            }) => {
                let Some(&i) = self.by_hash.get(&info_hash) else {
                    ctx.close(conn); // no torrent of ours
                    return;
                };
                self.conns.insert(conn, i);
                self.call(ctx, i, |h, ctx| {
                    h.on_open(ctx, conn, peer, true);
                    if !buffered.is_empty() {
                        h.on_recv(ctx, conn, &buffered);
                    }
                    h.on_recv(ctx, conn, data);
                });
            }
            // Not a handshake, or not waiting (a removed torrent's leftover).
            Some(Routed::NotBitTorrent) | None => ctx.close(conn),
        }
    }
}

impl Handler for Dispatcher {
    type Msg = SessionMsg;

    fn on_open(&mut self, ctx: &mut Ctx, conn: ConnId, peer: SocketAddr, inbound: bool) {
        if !inbound {
            match self.conns.get(&conn) {
                Some(&i) => self.call(ctx, i, |h, ctx| h.on_open(ctx, conn, peer, false)),
                // Dialled by a torrent removed meanwhile.
                None => ctx.close(conn),
            }
            return;
        }
        let now = self.time(Instant::now());
        match self.inbound.as_mut() {
            Some(waiting) => {
                if let Some(evicted) = waiting.handle_open(now, conn, peer) {
                    ctx.close(evicted);
                }
                self.arm(ctx);
            }
            None => match self.entries.iter().position(Option::is_some) {
                Some(i) => {
                    self.conns.insert(conn, i);
                    self.call(ctx, i, |h, ctx| h.on_open(ctx, conn, peer, true));
                }
                None => ctx.close(conn),
            },
        }
    }

    fn on_recv(&mut self, ctx: &mut Ctx, conn: ConnId, data: &[u8]) {
        match self.conns.get(&conn) {
            Some(&i) => self.call(ctx, i, |h, ctx| h.on_recv(ctx, conn, data)),
            None => self.route_inbound(ctx, conn, data),
        }
    }

    fn on_sent(&mut self, ctx: &mut Ctx, conn: ConnId) {
        if let Some(&i) = self.conns.get(&conn) {
            self.call(ctx, i, |h, ctx| h.on_sent(ctx, conn));
        }
    }

    fn on_close(&mut self, ctx: &mut Ctx, conn: ConnId, err: Option<io::Error>) {
        match self.conns.remove(&conn) {
            Some(i) => self.call(ctx, i, |h, ctx| h.on_close(ctx, conn, err)),
            None => {
                if let Some(waiting) = self.inbound.as_mut() {
                    waiting.remove(conn);
                }
            }
        }
    }

    fn on_timer(&mut self, ctx: &mut Ctx, now: Instant) {
        for i in 0..self.entries.len() {
            let due = self
                .entries
                .get_mut(i)
                .and_then(Option::as_mut)
                .filter(|e| e.deadline.is_some_and(|d| d <= now));
            if let Some(e) = due {
                e.deadline = None;
                self.call(ctx, i, |h, ctx| h.on_timer(ctx, now));
            }
        }
        let t = self.time(now);
        if let Some(waiting) = self.inbound.as_mut() {
            for conn in waiting.handle_timeout(t) {
                ctx.close(conn);
            }
        }
        self.arm(ctx);
    }

    fn on_control(&mut self, ctx: &mut Ctx, msg: SessionMsg) {
        match msg {
            SessionMsg::Add(slot, ack) => {
                self.add(*slot);
                drop(ack);
            }
            SessionMsg::Remove(id, ack) => {
                if let Some(&i) = self.by_id.get(&id) {
                    self.drop_torrent(ctx, i);
                }
                drop(ack);
            }
            SessionMsg::Torrent(id, cmd) => {
                if let Some(&i) = self.by_id.get(&id) {
                    self.call(ctx, i, |h, ctx| h.on_command(ctx, cmd));
                }
            }
        }
    }

    fn is_done(&self) -> bool {
        false
    }
}
