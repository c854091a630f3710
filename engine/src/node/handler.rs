//! [`NodeHandler`]: one torrent on one of the runtime workers, a [`Handler`] called by
//! the worker's session dispatcher (`super::dispatch`), which routes each callback to it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::base::InfoHash;
use crate::core::address_book::BookConfig;
use crate::core::dialer::{DialConfig, Dialer};
use crate::core::slots::SlotConfig;
use crate::core::TorrentConfig;
use crate::core::{Action, Bitfield, DisconnectReason, PeerKey, PieceIndex, Time, Torrent};
use crate::node::dispatch::Ctx;
use crate::rt::{ConnId, Handler, PostError};
use crate::store::{Storage, StoreError};
use crate::wire::peer::metadata::UT_METADATA;
use crate::wire::peer::{ExtendedHandshake, Handshake, P2peExt, MAX_LANES};

use super::dispatch::SessionMsg;
use super::peer::{PeerConn, Source};
use super::session::TorrentId;
use super::transfers::PieceSources;
use super::{Command, NodeConfig, NodeError, TorrentShared};
use crate::core::rate_limit::SharedBucket;

mod dial;
mod lanes;
mod metadata;
mod pex;
mod recv;
mod send;
mod shadow;
mod slots;
mod workers;

/// Timer tick: progress publication, dials (the core's own timers, a rate
/// limit's included, are armed exactly from its `poll_timeout`).
const IDLE_TICK: Duration = Duration::from_millis(100);
/// Extended message id we assign to the p2pe extension in our BEP 10 `m`.
const P2PE_EXT_ID: u8 = 1;
/// Extended message id we assign to `ut_pex` (BEP 11) in our BEP 10 `m`.
pub(super) const PEX_EXT_ID: u8 = 2;
/// Extended message id we assign to `ut_metadata` (BEP 9) in our BEP 10 `m`.
pub(super) const METADATA_EXT_ID: u8 = 3;
/// Bits of a [`PeerKey`] below the worker index: keys are unique across the
/// node's workers (the batched choker ranks all peers together).
const KEY_WORKER_SHIFT: u32 = 48;

/// The protocol side of one of the node's workers: its torrent and its
/// connections.
pub(crate) struct NodeHandler {
    /// This worker's index, `0..shared.workers`.
    pub(super) worker: usize,
    /// The torrent's id in its [`super::Session`]: messages to this torrent's
    /// handlers on other workers are addressed with it.
    torrent_id: TorrentId,
    pub(super) torrent: Torrent,
    /// The torrent's pieces; blocks are sent from its mappings
    /// ([`Storage::servable_regions`]: verified pieces only).
    pub(super) storage: Arc<Storage>,
    pub(super) epoch: Instant,
    pub(super) ours: Handshake,
    pub(super) our_ext: ExtendedHandshake,
    /// The torrent's raw bencoded info dictionary, served to peers that ask
    /// for it with `ut_metadata` (BEP 9); `None` for a private torrent
    /// (BEP 27: its peers come from its tracker and hold the `.torrent`).
    pub(super) info_bytes: Option<Arc<[u8]>>,
    pub(super) piece_count: u32,
    pub(super) piece_len_bytes: u32,
    pub(super) conns: HashMap<ConnId, PeerConn>,
    pub(super) keys: BTreeMap<PeerKey, ConnId>,
    next_key: u64,
    /// Addresses to dial and the dial policy: sources, bounds, back-off, aging, the
    /// `max_peers` bound ([`crate::core::dialer`]); `PeerConn::dial` is an entry id.
    pub(super) dialer: Dialer,
    /// Timeouts, per-IP cap and slot reclaiming ([`crate::core::slots`]).
    pub(super) slot_config: SlotConfig,
    /// PEX interval between p2pe nodes (`None`: PEX off, e.g. private torrent).
    pub(super) pex_interval: Option<Duration>,
    pub(super) shared: Arc<TorrentShared>,
    /// Our share already added to `shared.downloaded_bytes` / `shared.peers`.
    published_downloaded_bytes: u64,
    published_peers: u32,
    /// Our share already added to the node's swarm-health counters.
    published_stats: PublishedStats,
    /// Worker 0 of a multi-worker node: the batched choker.
    pub(super) coordinator: Option<workers::Coordinator>,
    /// Which peer each piece in progress came from ([`super::transfers`]).
    pub(super) piece_sources: PieceSources,
    /// Buffers of shadow pieces ([`shadow`]), by piece index.
    pub(super) shadow_bufs: HashMap<PieceIndex, Vec<u8>>,
    /// Shadow pieces that hashed right and wait to be committed to storage.
    pub(super) shadow_commits: BTreeSet<PieceIndex>,
    done: bool,
}

impl NodeHandler {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        mut config: TorrentConfig,
        info_hash: InfoHash,
        storage: Arc<Storage>,
        nc: &NodeConfig,
        shared: Arc<TorrentShared>,
        (torrent_id, worker): (TorrentId, usize),
        private: bool,
        info_bytes: Arc<[u8]>,
    ) -> Result<Self, NodeError> {
        let mut have = Bitfield::new(config.piece_count);
        for i in 0..config.piece_count {
            if shared.have.get(PieceIndex(i)) {
                have.set(PieceIndex(i));
            }
        }
        let piece_count = config.piece_count;
        let piece_len_bytes = config.piece_len_bytes;
        let mut our_ext = ExtendedHandshake::with_p2pe(P2PE_EXT_ID, piece_len_bytes);
        // Our worker count: how many lanes a p2pe peer may open to us.
        let lanes = u8::try_from(shared.workers.min(usize::from(MAX_LANES))).unwrap_or(1);
        our_ext.p2pe = our_ext.p2pe.map(|e| P2peExt { lanes, ..e });
        our_ext.v = Some(concat!("p2pe ", env!("CARGO_PKG_VERSION")).to_string());
        // BEP 10 `reqq`: the requests we queue from one peer before rejecting more.
        our_ext.reqq = Some(config.max_requests_per_peer);
        our_ext.p = nc.listen.map(|a| a.port()).filter(|&p| p != 0);
        // Our rack and zone labels: p2pe peers of the same rack prefer us (`core::rack`).
        our_ext.p2pe_rack = nc.tracker.topology.rack.clone();
        our_ext.p2pe_zone = nc.tracker.topology.zone.clone();
        // BEP 27: a private torrent finds peers through its tracker only.
        let pex_interval = nc.pex_interval.filter(|_| !private);
        if pex_interval.is_some() {
            our_ext.m.insert("ut_pex".into(), PEX_EXT_ID);
        }
        // BEP 9: we serve the info dictionary, like libtorrent, only for a
        // public torrent.
        let info_bytes = (!private).then_some(info_bytes);
        if let Some(bytes) = &info_bytes {
            our_ext.m.insert(UT_METADATA.into(), METADATA_EXT_ID);
            our_ext.metadata_size = Some(bytes.len() as u64);
        }
        let coordinator = (worker == 0 && shared.workers > 1)
            .then(|| workers::Coordinator::new(config.choker, nc.rng_seed, shared.workers));
        // Different seeds per worker: their shuffled suggestion orders (and tie
        // breaks) differ, so their peers do not all start on the same pieces.
        // One bucket per direction for the whole node, made by the first worker and
        // applied by every worker's core (`core::rate_limit`).
        let now =
            Time::from_nanos(u64::try_from(shared.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX));
        let limits = shared
            .limits
            .get_or_init(|| {
                (
                    nc.upload_limit_bytes_per_s
                        .map(|r| SharedBucket::new(r, now)),
                    nc.download_limit_bytes_per_s
                        .map(|r| SharedBucket::new(r, now)),
                )
            })
            .clone();
        config.upload_limit = limits.0;
        config.download_limit = limits.1;
        let torrent = Torrent::new(config, have, nc.rng_seed ^ worker as u64);
        Ok(NodeHandler {
            worker,
            torrent_id,
            torrent,
            storage,
            epoch: shared.epoch,
            ours: Handshake::new(info_hash, nc.peer_id),
            our_ext,
            info_bytes,
            piece_count,
            piece_len_bytes,
            conns: HashMap::new(),
            keys: BTreeMap::new(),
            next_key: 1,
            dialer: Dialer::new(
                DialConfig {
                    max_peers: nc.max_peers.max(1),
                    ..DialConfig::default()
                },
                BookConfig::default(),
            ),
            slot_config: nc.slots,
            pex_interval,
            shared,
            published_downloaded_bytes: 0,
            published_peers: 0,
            published_stats: PublishedStats::default(),
            coordinator,
            piece_sources: PieceSources::default(),
            shadow_bufs: HashMap::new(),
            shadow_commits: BTreeSet::new(),
            done: false,
        })
    }

    /// A fresh key for a new connection, unique over the node's workers.
    fn next_key(&mut self) -> u64 {
        let k = self.next_key;
        self.next_key += 1;
        (self.worker as u64) << KEY_WORKER_SHIFT | k
    }

    /// Sends `cmd` to this torrent's handler on worker `worker` (through
    /// that worker's session dispatcher).
    ///
    /// # Errors
    /// As [`Ctx::post`].
    pub(super) fn post(&self, ctx: &Ctx, worker: usize, cmd: Command) -> Result<(), PostError> {
        ctx.post(worker, SessionMsg::Torrent(self.torrent_id, cmd))
    }

    /// A message for this torrent from the session or another worker.
    pub(crate) fn on_command(&mut self, ctx: &mut Ctx, cmd: Command) {
        match cmd {
            Command::Connect(addr) => {
                self.add_peer(ctx, addr, Source::Configured);
            }
            Command::Start => {}
            Command::Discovered => self.take_discovered(ctx),
            Command::DialLane(addr, peer_id) => self.dial_lane(ctx, addr, peer_id),
            other => self.on_worker_message(ctx, other),
        }
        self.drain(ctx);
        self.arm_timer(ctx);
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
                Action::VerifyPiece { piece } => self.verify(ctx, piece),
                // The node negotiates no relay parts yet (it has no part hashes), so the
                // core never asks; were it to, an unverified part is never forwarded.
                Action::VerifyPart { part } => {
                    let now = self.now();
                    self.torrent.handle_part_verified(now, part, false);
                }
                Action::Disconnect { peer, reason } => self.disconnect(ctx, peer, &reason),
            }
        }
    }

    fn verify(&mut self, ctx: &mut Ctx, piece: PieceIndex) {
        if self.torrent.is_shadow(piece) {
            self.verify_shadow(ctx, piece);
            return;
        }
        let valid = match retry_busy(|| self.storage.verify_piece(piece)) {
            Ok(v) => v,
            Err(StoreError::PieceLost { .. }) => false,
            Err(e) => {
                self.fail(e);
                false
            }
        };
        if !valid || self.torrent.wants_block_digests(piece) {
            // Smart ban: per-block digests show which peer sent a wrong block.
            if let Ok(d) = self
                .storage
                .block_digests(piece, crate::core::BLOCK_LEN_BYTES)
            {
                self.torrent.handle_block_digests(piece, d);
            }
        }
        self.on_verified(ctx, piece, valid);
    }

    /// Reports a finished hash check of `piece` to the core and, when it made the
    /// piece ours, to the other workers.
    pub(super) fn on_verified(&mut self, ctx: &mut Ctx, piece: PieceIndex, valid: bool) {
        let now = self.now();
        self.torrent.handle_piece_verified(now, piece, valid);
        self.count_piece_checked(piece, valid && self.torrent.have().get(piece));
        if valid && self.torrent.have().get(piece) {
            // Byte counters must be current when completion becomes visible.
            self.publish();
            let len = u64::from(self.torrent.config().piece_len(piece));
            if self.shared.piece_verified(piece, len) {
                if let Some(n) = self.shared.verified_by_worker.get(self.worker) {
                    n.fetch_add(1, Ordering::AcqRel);
                }
                self.tell_verified(ctx, piece);
            }
        }
    }

    fn disconnect(&mut self, ctx: &mut Ctx, peer: PeerKey, reason: &DisconnectReason) {
        let Some(&conn) = self.keys.get(&peer) else {
            return;
        };
        if let Some(pc) = self.conns.get_mut(&conn) {
            if !matches!(reason, DisconnectReason::NotUseful) {
                self.shared
                    .log(format!("{}: disconnected ({reason:?})", pc.remote));
            }
            pc.dropped_by_core = true;
            if !matches!(reason, DisconnectReason::ProtocolViolation(_)) {
                let dial = pc.dial;
                self.retire_dial(dial);
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

    /// Adds this worker's new downloaded bytes and its change in peers to the
    /// node's counters.
    fn publish(&mut self) {
        self.publish_bytes();
        self.publish_transfers();
        // A p2pe peer's lanes are one peer.
        let peers = self
            .conns
            .values()
            .filter(|c| c.registered && !c.lane)
            .count();
        let peers = u32::try_from(peers).unwrap_or(u32::MAX);
        let s = &self.shared;
        if peers >= self.published_peers {
            s.peers
                .fetch_add(peers - self.published_peers, Ordering::AcqRel);
        } else {
            s.peers
                .fetch_sub(self.published_peers - peers, Ordering::AcqRel);
        }
        self.published_peers = peers;
    }

    /// Adds this worker's new hash failures, bans and wasted bytes, and its
    /// change in unchoked peers, to the node's counters (for metrics; on the
    /// timer tick and at exit, not per message: [`Torrent::stats`] walks the
    /// peers).
    fn publish_stats(&mut self) {
        let st = self.torrent.stats();
        let now = PublishedStats {
            hash_failures: st.hash_failures,
            peers_banned: st.peers_banned,
            unchoked: u32::try_from(st.unchoked_peers).unwrap_or(u32::MAX),
            wasted_bytes: st.wasted_bytes,
        };
        let was = std::mem::replace(&mut self.published_stats, now);
        let s = &self.shared;
        let add = |c: &std::sync::atomic::AtomicU64, new: u64, old: u64| {
            if new > old {
                c.fetch_add(new - old, Ordering::Relaxed);
            }
        };
        add(
            &s.hash_failures,
            u64::from(now.hash_failures),
            u64::from(was.hash_failures),
        );
        add(
            &s.peers_banned,
            u64::from(now.peers_banned),
            u64::from(was.peers_banned),
        );
        add(&s.wasted_bytes, now.wasted_bytes, was.wasted_bytes);
        if now.unchoked >= was.unchoked {
            s.peers_unchoked
                .fetch_add(now.unchoked - was.unchoked, Ordering::Relaxed);
        } else {
            s.peers_unchoked
                .fetch_sub(was.unchoked - now.unchoked, Ordering::Relaxed);
        }
    }

    fn publish_bytes(&mut self) {
        let down = self.torrent.stats().downloaded_bytes;
        let delta = down.saturating_sub(self.published_downloaded_bytes);
        if delta > 0 {
            self.shared
                .downloaded_bytes
                .fetch_add(delta, Ordering::AcqRel);
            self.published_downloaded_bytes = down;
        }
    }

    fn arm_timer(&self, ctx: &mut Ctx) {
        let now = self.now();
        let mut after = IDLE_TICK;
        if let Some(t) = self.torrent.poll_timeout() {
            after = after.min(t.saturating_duration_since(now));
        }
        if let Some(at) = self.dialer.poll_timeout() {
            after = after.min(at.saturating_duration_since(now));
        }
        ctx.set_timer(after);
    }
}

/// A worker's swarm-health counters as last added to the node's
/// ([`NodeHandler::publish_stats`]).
#[derive(Debug, Clone, Copy, Default)]
struct PublishedStats {
    hash_failures: u32,
    peers_banned: u32,
    unchoked: u32,
    wasted_bytes: u64,
}

/// Runs a store operation on a piece, retrying while another worker holds the
/// piece's claim: only a node-wide endgame shadow commit
/// ([`shadow`]) contends with the claim's owner, for one block copy or one
/// hash check, so a short bounded wait (at most ~20 ms) settles it.
pub(super) fn retry_busy<T>(
    mut op: impl FnMut() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    for i in 0..200 {
        match op() {
            Err(StoreError::PieceBusy { .. }) if i < 20 => std::thread::yield_now(),
            Err(StoreError::PieceBusy { .. }) => std::thread::sleep(Duration::from_micros(100)),
            other => return other,
        }
    }
    op()
}

impl Drop for NodeHandler {
    /// The worker exits: count its last downloaded bytes and per-peer totals
    /// (the owner reads the final progress after every worker has exited).
    fn drop(&mut self) {
        self.publish_bytes();
        self.publish_transfers();
        self.publish_stats();
    }
}

impl Handler for NodeHandler {
    /// Commands reach a torrent's handler through the worker's dispatcher
    /// ([`super::dispatch`]), never through this `on_control`.
    type Msg = super::dispatch::SessionMsg;

    fn on_open(&mut self, ctx: &mut Ctx, conn: ConnId, peer: SocketAddr, inbound: bool) {
        if inbound {
            if !self.admit_inbound(ctx, peer) {
                ctx.close(conn); // never registered: on_close ignores it
                self.arm_timer(ctx);
                return;
            }
            self.new_conn(ctx, conn, None, peer);
            if let Some(pc) = self.conns.get_mut(&conn) {
                pc.ip_counted = true;
            }
        }
        // Outbound connections were registered (and their handshake queued)
        // when the connect was issued.
        self.arm_timer(ctx);
    }

    fn on_recv(&mut self, ctx: &mut Ctx, conn: ConnId, data: &[u8]) {
        self.receive(ctx, conn, data);
        self.drain(ctx);
        if self.torrent.is_throttled() {
            // A rate limit stopped the core: wake it when the limit allows.
            self.arm_timer(ctx);
        }
    }

    fn on_sent(&mut self, ctx: &mut Ctx, conn: ConnId) {
        self.sent(ctx, conn);
        self.drain(ctx);
        if self.torrent.is_throttled() {
            self.arm_timer(ctx);
        }
    }

    fn on_close(&mut self, ctx: &mut Ctx, conn: ConnId, _err: Option<io::Error>) {
        let Some(mut pc) = self.conns.remove(&conn) else {
            return;
        };
        self.publish_closed(&mut pc);
        if pc.ip_counted {
            self.uncount_inbound(pc.remote.ip());
        }
        self.keys.remove(&pc.key);
        self.shared.open_conns.fetch_sub(1, Ordering::AcqRel);
        if let Some(id) = pc.peer_id {
            self.forget_peer_id(id, conn, pc.lane);
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

    fn on_timer(&mut self, ctx: &mut Ctx, _now: Instant) {
        let t = self.now();
        self.sync_have();
        if self.torrent.poll_timeout().is_some_and(|d| d <= t) {
            self.torrent.handle_timeout(t);
            self.forward_choke_report(ctx);
        }
        self.close_stale_lanes(ctx, t);
        self.register_stale(t);
        self.expire_slots(ctx);
        if !self.shadow_commits.is_empty() {
            self.commit_shadows(ctx);
        }
        self.take_discovered(ctx);
        self.dial_due(ctx, t);
        self.pex_tick(ctx, t);
        self.drain(ctx);
        self.publish();
        self.publish_stats();
        self.arm_timer(ctx);
    }

    fn is_done(&self) -> bool {
        self.done
    }
}
