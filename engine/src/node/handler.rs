//! [`NodeHandler`]: the [`Handler`] of the node's single runtime worker.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::core::TorrentConfig;
use crate::core::{Action, Bitfield, DisconnectReason, PeerKey, PieceIndex, Time, Torrent};
use crate::rt::{ConnId, Ctx, Handler, SourceFile};
use crate::store::{Storage, StoreError};
use crate::wire::peer::{ExtendedHandshake, Handshake};

use super::limit::TokenBucket;
use super::peer::{Dial, PeerConn, Source};
use super::{Command, NodeConfig, NodeError, Shared};

mod dial;
mod pex;
mod recv;
mod send;

/// Timer tick while nothing is held back: progress publication, dials.
const IDLE_TICK: Duration = Duration::from_millis(100);
/// Timer tick while a rate limit holds items back: at 10 ms a 1 Gbit/s limit
/// releases ~1.2 MB per tick, below the bucket's 50 ms burst.
const THROTTLE_TICK: Duration = Duration::from_millis(10);
/// Extended message id we assign to the p2pe extension in our BEP 10 `m`.
const P2PE_EXT_ID: u8 = 1;
/// Extended message id we assign to `ut_pex` (BEP 11) in our BEP 10 `m`.
pub(super) const PEX_EXT_ID: u8 = 2;
/// BEP 10 `reqq` we advertise: the core's default `max_requests_per_peer`.
const REQQ: u32 = 250;

/// The protocol side of the node's worker.
pub(crate) struct NodeHandler {
    pub(super) torrent: Torrent,
    pub(super) storage: Arc<Storage>,
    /// One mapping per torrent file for the send path (`None`: empty file).
    pub(super) sources: Vec<Option<Arc<SourceFile>>>,
    pub(super) epoch: Instant,
    pub(super) ours: Handshake,
    pub(super) our_ext: ExtendedHandshake,
    pub(super) piece_count: u32,
    pub(super) piece_len_bytes: u32,
    pub(super) conns: HashMap<ConnId, PeerConn>,
    pub(super) keys: BTreeMap<PeerKey, ConnId>,
    next_key: u64,
    pub(super) up: Option<TokenBucket>,
    pub(super) down: Option<TokenBucket>,
    /// Connections with items held back by a rate limit.
    pub(super) throttled: BTreeSet<ConnId>,
    pub(super) dials: Vec<Dial>,
    /// Index into `dials` by address (every address is dialled by one entry).
    pub(super) known: HashMap<SocketAddr, usize>,
    /// Open connections by the peer id of their handshake (one per peer).
    pub(super) peer_ids: HashMap<[u8; 20], ConnId>,
    pub(super) max_peers: usize,
    /// PEX interval between p2pe nodes (`None`: PEX off, e.g. private torrent).
    pub(super) pex_interval: Option<Duration>,
    pub(super) total_len_bytes: u64,
    pub(super) shared: Arc<Shared>,
    done: bool,
}

impl NodeHandler {
    pub(crate) fn new(
        config: TorrentConfig,
        info_hash: [u8; 20],
        storage: Arc<Storage>,
        nc: &NodeConfig,
        shared: Arc<Shared>,
        private: bool,
    ) -> Result<Self, NodeError> {
        let mut sources = Vec::new();
        for spec in storage.layout().files() {
            if spec.len_bytes == 0 {
                sources.push(None);
                continue;
            }
            let path = spec
                .path_components
                .iter()
                .fold(storage.root().to_path_buf(), |p, c| p.join(c));
            sources.push(Some(Arc::new(SourceFile::open(&path).map_err(|e| {
                io::Error::new(e.kind(), format!("map {}: {e}", path.display()))
            })?)));
        }
        let mut have = Bitfield::new(config.piece_count);
        for (i, v) in (0u32..).zip(storage.verified()) {
            if v {
                have.set(PieceIndex(i));
            }
        }
        let now = Instant::now();
        let piece_count = config.piece_count;
        let piece_len_bytes = config.piece_len_bytes;
        let mut our_ext = ExtendedHandshake::with_p2pe(P2PE_EXT_ID, piece_len_bytes);
        our_ext.v = Some(concat!("p2pe ", env!("CARGO_PKG_VERSION")).to_string());
        our_ext.reqq = Some(REQQ);
        our_ext.p = nc.listen.map(|a| a.port()).filter(|&p| p != 0);
        // BEP 27: a private torrent finds peers through its tracker only.
        let pex_interval = nc.pex_interval.filter(|_| !private);
        if pex_interval.is_some() {
            our_ext.m.insert("ut_pex".into(), PEX_EXT_ID);
        }
        let total_len_bytes = config.total_len_bytes;
        shared.piece_count.store(piece_count, Ordering::Release);
        shared
            .verified_pieces
            .store(have.count_ones(), Ordering::Release);
        shared.complete.store(have.is_full(), Ordering::Release);
        let torrent = Torrent::new(config, have, nc.rng_seed);
        let left = dial::left_bytes(&torrent, total_len_bytes, piece_len_bytes);
        shared.left_bytes.store(left, Ordering::Release);
        Ok(NodeHandler {
            torrent,
            storage,
            sources,
            epoch: now,
            ours: Handshake::new(info_hash, nc.peer_id),
            our_ext,
            piece_count,
            piece_len_bytes,
            conns: HashMap::new(),
            keys: BTreeMap::new(),
            next_key: 1,
            up: nc
                .upload_limit_bytes_per_s
                .map(|r| TokenBucket::new(r, now)),
            down: nc
                .download_limit_bytes_per_s
                .map(|r| TokenBucket::new(r, now)),
            throttled: BTreeSet::new(),
            dials: Vec::new(),
            known: HashMap::new(),
            peer_ids: HashMap::new(),
            max_peers: nc.max_peers.max(1),
            pex_interval,
            total_len_bytes,
            shared,
            done: false,
        })
    }

    /// A fresh key for a new connection.
    fn next_key(&mut self) -> u64 {
        let k = self.next_key;
        self.next_key += 1;
        k
    }

    /// The core's clock: nanoseconds since this handler was built.
    pub(super) fn now(&self) -> Time {
        let ns = Instant::now()
            .saturating_duration_since(self.epoch)
            .as_nanos();
        Time::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    /// Runs every action the core queued.
    pub(super) fn drain(&mut self, ctx: &mut Ctx) {
        while let Some(action) = self.torrent.poll_action() {
            match action {
                Action::Send { peer, msg } => {
                    self.enqueue(ctx, peer, super::peer::Outgoing::Msg(msg))
                }
                Action::SendBlock { peer, block } => {
                    self.enqueue(ctx, peer, super::peer::Outgoing::Block(block))
                }
                Action::VerifyPiece { piece } => self.verify(piece),
                Action::Disconnect { peer, reason } => self.disconnect(ctx, peer, &reason),
            }
        }
    }

    fn verify(&mut self, piece: PieceIndex) {
        let valid = match self.storage.verify_piece(piece.0) {
            Ok(v) => v,
            Err(StoreError::PieceLost { .. }) => false,
            Err(e) => {
                self.fail(e);
                false
            }
        };
        let now = self.now();
        self.torrent.handle_piece_verified(now, piece, valid);
        if valid {
            // Byte counters must be current when completion becomes visible.
            self.publish();
            let left = dial::left_bytes(&self.torrent, self.total_len_bytes, self.piece_len_bytes);
            self.shared.left_bytes.store(left, Ordering::Release);
            let have = self.torrent.have();
            self.shared
                .verified_pieces
                .store(have.count_ones(), Ordering::Release);
            self.shared
                .complete
                .store(have.is_full(), Ordering::Release);
        }
    }

    fn disconnect(&mut self, ctx: &mut Ctx, peer: PeerKey, reason: &DisconnectReason) {
        let Some(&conn) = self.keys.get(&peer) else {
            return;
        };
        if let Some(pc) = self.conns.get_mut(&conn) {
            pc.dropped_by_core = true;
            if !matches!(reason, DisconnectReason::ProtocolViolation(_)) {
                if let Some(d) = pc.dial.and_then(|i| self.dials.get_mut(i)) {
                    d.retired = true;
                }
            }
        }
        ctx.close(conn);
    }

    /// A disk error the node cannot recover from: record it and stop.
    pub(super) fn fail(&mut self, e: StoreError) {
        let mut slot = self.shared.fatal.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(e);
        }
        self.done = true;
    }

    fn publish(&self) {
        let st = self.torrent.stats();
        let s = &self.shared;
        s.downloaded_bytes
            .store(st.downloaded_bytes, Ordering::Release);
        let peers = self.conns.values().filter(|c| c.registered).count();
        s.peers
            .store(u32::try_from(peers).unwrap_or(u32::MAX), Ordering::Release);
    }

    fn arm_timer(&self, ctx: &mut Ctx) {
        let now = Instant::now();
        let tick = if self.throttled.is_empty() {
            IDLE_TICK
        } else {
            THROTTLE_TICK
        };
        let mut after = tick;
        if let Some(t) = self.torrent.poll_timeout() {
            let core_in = t.saturating_duration_since(self.now());
            after = after.min(core_in);
        }
        for d in &self.dials {
            if let Some(at) = d.retry_at {
                after = after.min(at.saturating_duration_since(now));
            }
        }
        ctx.set_timer(after);
    }
}

impl Handler for NodeHandler {
    fn on_open(&mut self, ctx: &mut Ctx, conn: ConnId, peer: SocketAddr, inbound: bool) {
        if inbound {
            if self.conns.len() >= self.max_peers {
                ctx.close(conn); // never registered: on_close ignores it
                self.arm_timer(ctx);
                return;
            }
            self.new_conn(ctx, conn, None, peer);
        }
        // Outbound connections were registered (and their handshake queued)
        // when the connect was issued.
        self.arm_timer(ctx);
    }

    fn on_recv(&mut self, ctx: &mut Ctx, conn: ConnId, data: &[u8]) {
        self.receive(ctx, conn, data);
        self.drain(ctx);
        if !self.throttled.is_empty() {
            // Held items are released on the short throttle tick.
            self.arm_timer(ctx);
        }
    }

    fn on_sent(&mut self, ctx: &mut Ctx, conn: ConnId) {
        self.sent(ctx, conn);
        self.drain(ctx);
        if !self.throttled.is_empty() {
            self.arm_timer(ctx);
        }
    }

    fn on_close(&mut self, ctx: &mut Ctx, conn: ConnId, _err: Option<io::Error>) {
        self.throttled.remove(&conn);
        let Some(pc) = self.conns.remove(&conn) else {
            return;
        };
        self.keys.remove(&pc.key);
        if let Some(id) = pc.peer_id {
            if self.peer_ids.get(&id) == Some(&conn) {
                self.peer_ids.remove(&id);
            }
        }
        if pc.registered && !pc.dropped_by_core {
            let now = self.now();
            self.torrent.handle_peer_disconnected(now, pc.key);
        }
        if let Some(i) = pc.dial {
            self.schedule_redial(i);
        }
        self.drain(ctx);
        self.publish();
        self.arm_timer(ctx);
    }

    fn on_timer(&mut self, ctx: &mut Ctx, now: Instant) {
        let t = self.now();
        if self.torrent.poll_timeout().is_some_and(|d| d <= t) {
            self.torrent.handle_timeout(t);
        }
        self.register_stale(now);
        self.release_held(ctx);
        self.take_discovered(ctx);
        self.dial_due(ctx, now);
        self.pex_tick(ctx, now);
        self.drain(ctx);
        self.publish();
        self.arm_timer(ctx);
    }

    fn on_control(&mut self, ctx: &mut Ctx, msg: Box<dyn Any + Send>) {
        if let Ok(cmd) = msg.downcast::<Command>() {
            match *cmd {
                Command::Connect(addr) => {
                    self.add_peer(ctx, addr, Source::Configured);
                }
                Command::Start => {}
            }
        }
        self.arm_timer(ctx);
    }

    fn is_done(&self) -> bool {
        self.done
    }
}
