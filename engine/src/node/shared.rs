//! State shared by the node's workers and its owner, and the messages between workers.
//!
//! Lock-free on the hot path: piece sets are [`AtomicBitfield`]s, counters are atomics
//! summed over the workers (each adds its own deltas). Locks are taken only off the hot
//! path: at handshake and close (the peer-id registry that keeps one connection per
//! peer across workers), on the 100 ms tick (discovered addresses, PEX lists), for log
//! lines and for the fatal error.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::base::PeerId;
use crate::core::upload_history::UploadHistory;
use crate::core::{AtomicBitfield, Availability, ChokeCandidate, ChokeDecision, PieceIndex};
use crate::discovery::host::{DiscoveryHost, SwarmProgress};
use crate::rt::ConnId;
use crate::store::StoreError;
use crate::wire::pex::PexFlags;

use super::peer::Source;

/// Most addresses waiting in one worker's discovered queue.
const MAX_DISCOVERED: usize = 4096;

/// The worker that dials `addr`: a fixed hash of the address, so every source (command
/// line, tracker, PEX, DHT) sends one address to the same worker and dials spread
/// evenly over the workers.
pub(crate) fn dial_owner(addr: SocketAddr, workers: usize) -> usize {
    // DefaultHasher::new() has fixed keys: the same address maps to the same worker.
    let mut h = DefaultHasher::new();
    addr.hash(&mut h);
    (h.finish() % workers.max(1) as u64) as usize
}

/// Where the connection to one peer id lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PeerSlot {
    pub(crate) worker: usize,
    pub(crate) conn: ConnId,
    /// We dialled it.
    pub(crate) outbound: bool,
}

/// The connections to one peer id over all workers: the first one (the
/// primary) and the extra lanes negotiated on it ([`crate::wire::peer::negotiated_lanes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PeerEntry {
    /// The primary connection.
    pub(crate) slot: PeerSlot,
    /// Connections agreed with the peer, counting the primary: 1 until both
    /// p2pe extended handshakes were read on it, then 1..=[`crate::wire::peer::MAX_LANES`].
    pub(crate) lanes: u8,
    /// Extra lane connections open, always below `lanes`.
    pub(crate) extra: u8,
    /// Both extended handshakes were read on the primary (`lanes` is final).
    pub(crate) negotiated: bool,
}

impl PeerEntry {
    /// An entry whose only connection is `slot`.
    pub(crate) fn new(slot: PeerSlot) -> Self {
        PeerEntry {
            slot,
            lanes: 1,
            extra: 0,
            negotiated: false,
        }
    }
}

/// One torrent's state that the workers publish for the owner of the [`super::Node`]
/// and share with each other (one per torrent of a session).
#[derive(Debug)]
pub(crate) struct TorrentShared {
    /// Number of runtime workers.
    pub(crate) workers: usize,
    /// The clock origin of every worker's core (`Time` is comparable across workers).
    pub(crate) epoch: Instant,
    /// Pieces verified by any worker (or present at start).
    pub(crate) have: Arc<AtomicBitfield>,
    /// Piece claims of the workers' pickers (see [`crate::core::claims`]).
    pub(crate) claims: Arc<AtomicBitfield>,
    /// The origin's per-piece upload history, one for all workers (see
    /// [`crate::core::upload_history`]).
    pub(crate) upload_history: Arc<UploadHistory>,
    /// Per piece, how many peers over all workers have it, for every worker's
    /// rarest-first (see [`crate::core::availability`]).
    pub(crate) availability: Arc<Availability>,
    pub(crate) verified_pieces: AtomicU32,
    pub(crate) piece_count: AtomicU32,
    pub(crate) downloaded_bytes: AtomicU64,
    pub(crate) uploaded_bytes: AtomicU64,
    pub(crate) peers: AtomicU32,
    pub(crate) peers_seen: AtomicU32,
    pub(crate) complete: AtomicBool,
    /// Payload bytes still missing (BEP 3 `left`).
    pub(crate) left_bytes: AtomicU64,
    /// The port we accept peers on (0 until known).
    pub(crate) listen_port: AtomicU16,
    pub(crate) tracker_peers_learned: AtomicU32,
    pub(crate) pex_peers_learned: AtomicU32,
    pub(crate) dht_peers_learned: AtomicU32,
    pub(crate) announces_ok: AtomicU32,
    /// Tracker announces that failed (each tracker tried counts once).
    pub(crate) announces_failed: AtomicU32,
    /// Pieces verified before the node started (resume record or SHA-1 check).
    pub(crate) verified_at_start: AtomicU32,
    /// Pieces that failed their hash check, summed over the workers.
    pub(crate) hash_failures: AtomicU64,
    /// Peers banned for sending corrupt data, summed over the workers.
    pub(crate) peers_banned: AtomicU64,
    /// Peers we unchoke right now, summed over the workers.
    pub(crate) peers_unchoked: AtomicU32,
    /// Received payload bytes that were useless (endgame duplicates, late
    /// blocks, pieces failing the hash), summed over the workers.
    pub(crate) wasted_bytes: AtomicU64,
    /// Open connections over all workers (the `max_peers` bound is per node).
    pub(crate) open_conns: AtomicUsize,
    /// Per worker: peers the tracker and DHT threads learned, for it to dial.
    discovered: Vec<Mutex<Vec<(SocketAddr, Source)>>>,
    /// One primary connection per peer id over all workers, and its lane count
    /// (taken at handshake, extended handshake and close, and by a web seed
    /// fetcher once per piece it picks, for its share).
    pub(crate) peer_ids: Mutex<HashMap<PeerId, PeerEntry>>,
    /// Per worker: pieces this worker's connections received and this worker
    /// verified first this session (their sum is at most `verified_pieces`);
    /// shows how the lanes of a p2pe pair share the pieces.
    pub(crate) verified_by_worker: Vec<AtomicU32>,
    /// Inbound connections per remote IP over all workers, for the per-IP cap
    /// (taken at accept and close; at most `max_peers` + workers entries).
    pub(crate) inbound_per_ip: Mutex<HashMap<std::net::IpAddr, usize>>,
    /// The node-wide upload and download rate limits, shared by the workers.
    pub(crate) limits: std::sync::OnceLock<(
        Option<crate::core::rate_limit::SharedBucket>,
        Option<crate::core::rate_limit::SharedBucket>,
    )>,
    /// Per worker: listen addresses of its registered peers, for everyone's PEX.
    pex_lists: Vec<Mutex<Vec<(SocketAddr, PexFlags)>>>,
    /// The `torrent` field of this torrent's log events, when the session
    /// serves several ([`super::NodeConfig::log_label`], set once at add).
    pub(crate) log_label: std::sync::OnceLock<Arc<str>>,
    pub(crate) fatal: Mutex<Option<StoreError>>,
    /// Per-peer payload totals (see [`super::transfers`]).
    pub(crate) transfers: super::transfers::TransferBook,
    /// Per web seed counters (BEP 19; see [`super::web_seed`]), set once at start.
    pub(crate) web_seeds: std::sync::OnceLock<Vec<super::web_seed::SeedCounters>>,
    /// Wakes worker `w` to dial what [`TorrentShared::discovered`] queued for it,
    /// instead of at its next timer tick (up to 100 ms later); set once at start.
    pub(crate) wake: std::sync::OnceLock<Wake>,
}

/// How the discovery threads wake a worker (a post to its control channel).
pub(crate) struct Wake(pub(crate) Box<dyn Fn(usize) + Send + Sync>);

impl std::fmt::Debug for Wake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Wake")
    }
}

impl TorrentShared {
    /// State shared by the `workers` workers over `piece_count` pieces.
    pub(crate) fn new(piece_count: u32, workers: usize) -> Self {
        let workers = workers.max(1);
        TorrentShared {
            workers,
            epoch: Instant::now(),
            have: Arc::new(AtomicBitfield::new(piece_count)),
            claims: Arc::new(AtomicBitfield::new(piece_count)),
            upload_history: Arc::new(UploadHistory::new(piece_count)),
            availability: Arc::new(Availability::new(piece_count)),
            verified_pieces: AtomicU32::new(0),
            piece_count: AtomicU32::new(piece_count),
            downloaded_bytes: AtomicU64::new(0),
            uploaded_bytes: AtomicU64::new(0),
            peers: AtomicU32::new(0),
            peers_seen: AtomicU32::new(0),
            complete: AtomicBool::new(false),
            left_bytes: AtomicU64::new(0),
            listen_port: AtomicU16::new(0),
            tracker_peers_learned: AtomicU32::new(0),
            pex_peers_learned: AtomicU32::new(0),
            dht_peers_learned: AtomicU32::new(0),
            announces_ok: AtomicU32::new(0),
            announces_failed: AtomicU32::new(0),
            verified_at_start: AtomicU32::new(0),
            hash_failures: AtomicU64::new(0),
            peers_banned: AtomicU64::new(0),
            peers_unchoked: AtomicU32::new(0),
            wasted_bytes: AtomicU64::new(0),
            open_conns: AtomicUsize::new(0),
            discovered: (0..workers).map(|_| Mutex::new(Vec::new())).collect(),
            peer_ids: Mutex::new(HashMap::new()),
            verified_by_worker: (0..workers).map(|_| AtomicU32::new(0)).collect(),
            inbound_per_ip: Mutex::new(HashMap::new()),
            limits: std::sync::OnceLock::new(),
            pex_lists: (0..workers).map(|_| Mutex::new(Vec::new())).collect(),
            log_label: std::sync::OnceLock::new(),
            fatal: Mutex::new(None),
            transfers: Default::default(),
            web_seeds: std::sync::OnceLock::new(),
            wake: std::sync::OnceLock::new(),
        }
    }

    /// Emits one INFO event of this torrent through `tracing` (tracker
    /// answers, peers learned, disconnects), with `at_s`, the seconds since
    /// the session started, and `torrent`, its log label if one is set.
    pub(crate) fn log(&self, line: String) {
        let at_s = self.epoch.elapsed().as_secs_f64();
        match self.log_label.get() {
            Some(label) => {
                tracing::info!(torrent = %label, at_s = %format_args!("{at_s:.3}"), "{line}")
            }
            None => tracing::info!(at_s = %format_args!("{at_s:.3}"), "{line}"),
        }
    }

    /// Hands addresses a discovery thread found to the workers that dial them.
    pub(crate) fn discovered(&self, found: impl IntoIterator<Item = SocketAddr>, source: Source) {
        let mut by_worker: Vec<Vec<SocketAddr>> = vec![Vec::new(); self.workers];
        for a in found {
            if let Some(v) = by_worker.get_mut(dial_owner(a, self.workers)) {
                v.push(a);
            }
        }
        for (w, (q, found)) in self.discovered.iter().zip(by_worker).enumerate() {
            if found.is_empty() {
                continue;
            }
            {
                let mut q = q.lock().unwrap_or_else(|e| e.into_inner());
                let room = MAX_DISCOVERED.saturating_sub(q.len());
                q.extend(found.into_iter().map(|a| (a, source)).take(room));
            }
            if let Some(wake) = self.wake.get() {
                (wake.0)(w);
            }
        }
    }

    /// Takes worker `worker`'s discovered addresses.
    pub(crate) fn take_discovered(&self, worker: usize) -> Vec<(SocketAddr, Source)> {
        self.discovered.get(worker).map_or_else(Vec::new, |q| {
            std::mem::take(&mut *q.lock().unwrap_or_else(|e| e.into_inner()))
        })
    }

    /// Publishes worker `worker`'s PEX list and returns everyone's (for BEP 11 `added`).
    pub(crate) fn exchange_pex(
        &self,
        worker: usize,
        mine: Vec<(SocketAddr, PexFlags)>,
    ) -> Vec<(SocketAddr, PexFlags)> {
        if let Some(slot) = self.pex_lists.get(worker) {
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = mine;
        }
        let mut all = Vec::new();
        for l in &self.pex_lists {
            all.extend(l.lock().unwrap_or_else(|e| e.into_inner()).iter().copied());
        }
        all
    }

    /// A piece was verified on some worker: true if it is new to the node (the caller
    /// then tells the other workers). Updates `verified_pieces`, `left_bytes` and
    /// `complete`.
    pub(crate) fn piece_verified(&self, piece: PieceIndex, piece_len_bytes: u64) -> bool {
        if !self.have.try_set(piece) {
            return false;
        }
        self.claims.try_set(piece);
        let _ = self
            .left_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |l| {
                Some(l.saturating_sub(piece_len_bytes))
            });
        let n = self.verified_pieces.fetch_add(1, Ordering::AcqRel) + 1;
        if n >= self.piece_count.load(Ordering::Acquire) {
            self.complete.store(true, Ordering::Release);
        }
        true
    }
}

/// The glue the discovery threads (tracker announcer, DHT) see of a torrent.
impl DiscoveryHost for TorrentShared {
    fn progress(&self) -> SwarmProgress {
        SwarmProgress {
            complete: self.complete.load(Ordering::Acquire),
            uploaded_bytes: self.uploaded_bytes.load(Ordering::Acquire),
            downloaded_bytes: self.downloaded_bytes.load(Ordering::Acquire),
            left_bytes: self.left_bytes.load(Ordering::Acquire),
            peers: self.peers.load(Ordering::Acquire),
        }
    }

    fn found_peers(&self, peers: Vec<SocketAddr>, source: Source) {
        self.discovered(peers, source);
    }

    fn log(&self, line: String) {
        TorrentShared::log(self, line);
    }

    fn set_announce_counts(&self, ok: u32, failed: u32) {
        self.announces_ok.store(ok, Ordering::Release);
        self.announces_failed.store(failed, Ordering::Release);
    }
}

/// A control message to a worker.
#[derive(Debug)]
pub(crate) enum Command {
    /// Connect to this peer (and keep reconnecting while incomplete).
    Connect(SocketAddr),
    /// The tracker or DHT thread queued addresses for this worker: dial them now
    /// (the timer tick picks them up too, should this message be lost to a full
    /// control channel).
    Discovered,
    /// Start the worker's timer tick (it then re-arms itself): the tick
    /// picks up tracker peers, redials and sends PEX.
    Start,
    /// Another worker learned this address (PEX): dial it (this worker owns it).
    AddPeer(SocketAddr, Source),
    /// Another worker verified this piece: have it, tell our peers.
    PieceVerified(PieceIndex),
    /// Another worker kept a connection to this peer id: close ours, `conn`.
    ClosePeer(ConnId, PeerId),
    /// Open one lane (an extra connection) to the p2pe peer with this id,
    /// listening at this address, unless this worker already has one.
    DialLane(SocketAddr, PeerId),
    /// To worker 0: worker `.0`'s choke report of the latest interval.
    ChokeReport(usize, Vec<ChokeCandidate>),
    /// From worker 0: this worker's part of a batched choke pass.
    ChokeDecision(ChokeDecision),
}
