//! A p2pe node: the runtime ([`crate::rt`]) moving bytes for the swarm logic
//! ([`crate::core`]), speaking the peer wire ([`crate::wire::peer`]) and
//! storing pieces ([`crate::store`]).
//!
//! One [`Node`] serves one torrent with [`NodeConfig::workers`] runtime
//! workers (thread per core, default [`default_workers`]). Each worker owns
//! its own [`crate::core::Torrent`] over the connections it accepted
//! (`SO_REUSEPORT` spreads inbound peers) or dialled (each address belongs to
//! the worker it hashes to, whatever told us about it: `--peer`, tracker,
//! PEX, DHT); a connection never moves, and piece verification (BLAKE3 where
//! the torrent carries the p2pe `p2pe blake3` key, SHA-1 otherwise) runs on
//! the worker that received the piece. The hot path takes no lock; the
//! workers share, lock-free:
//! - a bitmap of the pieces we have, set after verification and read by every
//!   worker (each catches up with it on its tick and before it sends a
//!   bitfield); the verifying worker also posts the piece to the others, which
//!   mark it had ([`crate::core::Torrent::handle_piece_verified_elsewhere`]),
//!   send `have` to their peers and serve it;
//! - a claim bitmap ([`crate::core::claims`]): a worker's picker claims a
//!   piece before requesting its first block, so two workers never download
//!   the same piece (endgame duplicates only a worker's own pieces);
//! - the distinct-first seeder's upload history
//!   ([`crate::core::upload_history`]), so an origin's workers together send
//!   each piece about once before any piece twice;
//! - availability counts ([`crate::core::availability`]): each worker adds
//!   its peers' bitfields and `have`s and takes them back when they leave, so
//!   every worker's rarest-first ranks pieces over all the node's peers;
//! - the progress counters, to which each worker adds its own deltas.
//!
//! Per worker, not merged: PEX state per peer (the address lists are
//! shared). Choking is node-wide: every rechoke interval each worker reports
//! its peers' rates to worker 0, which runs one [`crate::core::BatchChoker`]
//! pass (top `unchoke_slots` by rate plus one optimistic unchoke over all
//! peers) and posts each worker its decision. With one worker everything is
//! as in a single-threaded node (local choker, no claims). One connection per
//! peer id over all workers is kept by a registry locked only at handshake
//! and close.
//!
//! Many torrents: a [`Session`] runs one runtime for any number of torrents
//! on one listen port; a [`Node`] is a session of one torrent. Each worker
//! runs a dispatcher (`dispatch`) owning one handler per torrent as above
//! (so every worker serves every torrent): it routes each runtime callback
//! by connection (one hash-map lookup per callback, the only cost to a
//! single torrent's hot path), attributes outbound connections to the
//! torrent that dialled them, holds an inbound connection until the
//! info-hash of the peer's handshake selects its torrent
//! ([`crate::core::inbound_handshakes`]: bounded in count and time; unknown
//! info-hash: closed), keeps each torrent's timer and arms the worker's at the
//! earliest, and adds or removes torrents on control messages (removing one
//! closes its connections only). Messages between one torrent's handlers on
//! different workers carry its [`TorrentId`].
//!
//! Web seeds (BEP 19, [`WebSeedConfig`]): fetcher threads take pieces no
//! connected peer has from HTTP servers, claimed in the same claim bitmap
//! (which, with web seeds, is shared even by a single worker, as are the
//! availability counts), verify them like any piece and post them to the
//! workers, which send `have` and serve them; see [`web_seed`].
//!
//! A separate thread makes verified pieces durable and rewrites the resume
//! record every [`RESUME_FLUSH_INTERVAL`] (msync waits for the disk, which
//! may be much slower than the network, so it never blocks a worker).
//!
//! Rate limits are per process: one token bucket per direction shared by all
//! workers ([`NodeConfig`]), whichever worker the peers land on, applied by
//! each worker's core (`core::rate_limit`): a request is issued only while
//! download tokens allow (so peers send no faster than the limit, and a
//! request held back is never in flight), a block is handed to the runtime
//! only while upload tokens allow (until then it stays a queued request).
//!
//! Per connection (BEP 3, BEP 6, BEP 10):
//! 1. both sides send the 68-byte handshake with the fast (BEP 6) and
//!    extension protocol (BEP 10) bits; a wrong info-hash or our own peer id
//!    closes the connection;
//! 2. if both set the BEP 10 bit, both send the extended handshake
//!    advertising the p2pe large-request extension; the negotiated length
//!    becomes [`crate::core::PeerCaps::max_request_len_bytes`] (16 KiB with
//!    other clients);
//! 3. the peer is handed to the core on its extended handshake, or on its
//!    first other message, or
//!    [`crate::core::slots::SlotConfig::ext_handshake_wait`] after the
//!    handshake;
//! 4. received bytes go through an incremental [`crate::wire::peer::Decoder`]
//!    in streaming mode: a `piece` payload is written to storage chunk by
//!    chunk straight from the runtime's receive buffer while the core wants
//!    that block from that peer; each chunk before the last byte is reported
//!    as progress ([`crate::core::Torrent::handle_block_progress`], so a slow
//!    but steady whole-piece transfer is not snubbed), and the core learns of
//!    the block at its last byte. Each chunk is hashed as it is written, while
//!    it is hot in the receive buffer, when it continues its piece in order
//!    (`store::arrival`); [`crate::core::Action::VerifyPiece`] then only
//!    compares digests, or reads an out-of-order piece back once;
//!    [`crate::core::Action::SendBlock`] becomes the 13-byte piece header plus
//!    the block's file regions in one gathered send (two regions when the block
//!    spans two files; the runtime's per-connection FIFO keeps the order).
//!
//! Invariants: peer input never panics (a wire error or a
//! [`crate::core::ProtocolError`] closes the connection); messages to one peer
//! leave in the order the core emitted them, also while a rate limit holds
//! some back; a block is reported sent to the core once the runtime has handed
//! all its bytes to the kernel.

mod dispatch;
mod handler;
mod peer;
mod session;
mod shared;
mod transfers;
pub mod web_seed;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use crate::base::PeerId;
use crate::core::{ChokerConfig, ChokerMode, Locality, PieceIndex, TorrentConfig};
use crate::discovery::tracker_client::ClientConfig;
use crate::rt::SendStrategy;
use crate::store::{Storage, StorageLayout, StoreError};
use crate::wire::metainfo::Metainfo;

pub use crate::discovery::announcer::TRACKER_STOP_BOUND;
pub use crate::discovery::dht::DhtConfig;
pub use session::{Session, TorrentId};
pub(crate) use shared::{Command, TorrentShared};
pub use transfers::{PeerTransfer, Transfers};
pub use web_seed::{WebSeedConfig, WebSeedStats};

/// BEP 11's peer exchange interval: at most one `ut_pex` message a minute
/// (toward clients other than p2pe; [`crate::core::pex`]).
pub const PEX_INTERVAL: Duration = crate::core::pex::BEP11_INTERVAL;

/// Peer exchange interval of the datacenter profile: a fleet on one fabric
/// learns its peers within seconds (the messages are a few hundred bytes).
pub const PEX_INTERVAL_DATACENTER: Duration = crate::core::pex::DATACENTER_INTERVAL;

/// Default bound on connections (inbound and outbound): enough for the
/// choker's unchoke slots many times over, small enough that discovery in a
/// fleet of thousands does not open thousands of sockets per node.
pub const MAX_PEERS: usize = crate::core::dialer::DEFAULT_MAX_PEERS;

/// Configuration of a [`Node`].
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Address to accept peers on (`None`: outbound only).
    pub listen: Option<SocketAddr>,
    /// Peers to connect to (and reconnect to, with back-off, while incomplete).
    pub peers: Vec<SocketAddr>,
    /// Upload limit for payload bytes, bytes per second (`None`: unlimited).
    pub upload_limit_bytes_per_s: Option<u64>,
    /// Download limit for payload bytes, bytes per second (`None`: unlimited).
    pub download_limit_bytes_per_s: Option<u64>,
    /// Our peer id (BEP 3; Azureus style `-PE0001-...` by default, BEP 20).
    pub peer_id: PeerId,
    /// Choker settings; default [`ChokerConfig::datacenter`].
    pub choker: ChokerConfig,
    /// Seed of the core's random choices.
    pub rng_seed: u64,
    /// At [`Node::shutdown`], wait until every verified piece is on disk
    /// (`msync`) and list them all in the resume record. Off (the default):
    /// start their writeback and list only the pieces already durable, so the
    /// exit does not wait for the disk ([`crate::store::Storage::flush_resume_nowait`]).
    pub durable_exit: bool,
    /// Trackers to announce to, as BEP 12 tiers (`None`: the torrent's
    /// `announce-list` / `announce`; an empty list: no tracker).
    pub trackers: Option<Vec<Vec<String>>>,
    /// Tracker client settings (`numwant`, timeouts, back-off).
    pub tracker: ClientConfig,
    /// Most connections at once; peers learned from trackers and PEX are
    /// dialled only below it; an inbound peer above it takes the slot of the
    /// oldest idle connection, or is refused if none is idle.
    pub max_peers: usize,
    /// Handshake and inactivity timeouts, the per-IP connection cap and slot
    /// reclaiming ([`crate::core::slots::SlotConfig`]; default: 10 s, 240 s,
    /// 8 per IP, loopback exempt).
    pub slots: crate::core::slots::SlotConfig,
    /// How often each peer gets a BEP 11 `ut_pex` message (`None`: no PEX).
    /// Private torrents (BEP 27) never use PEX, whatever this says.
    pub pex_interval: Option<Duration>,
    /// BEP 5 DHT (`None`: off). Private torrents never use it.
    pub dht: Option<DhtConfig>,
    /// Runtime workers (threads, one io_uring each); default [`default_workers`].
    /// Each owns the connections it accepted or dialled and its own core
    /// [`crate::core::Torrent`]; see the module docs.
    pub workers: usize,
    /// Pin worker `i` to core `i` (default false: several nodes may share a
    /// machine, e.g. tests and `p2pe swarm`).
    pub pin_cores: bool,
    /// How block payloads are moved from the mapped files to the sockets
    /// (default [`SendStrategy::Send`], the fastest measured; see
    /// [`crate::rt`]).
    pub send_strategy: SendStrategy,
    /// Web seeds to fetch from beside the peers (BEP 19; default none: the
    /// caller passes the torrent's `url-list` here).
    pub web_seeds: WebSeedConfig,
    /// The `torrent` field of this torrent's log events (`tracing` INFO
    /// events: tracker answers, peers learned, disconnects, bans), for a
    /// process serving several torrents (default `None`: no such field).
    pub log_label: Option<String>,
}

/// Most workers [`default_workers`] picks: beyond 8 cores one torrent's
/// swarm rarely has enough connections to spread.
pub const MAX_DEFAULT_WORKERS: usize = 8;

/// Default [`NodeConfig::workers`]: the available cores, at most
/// [`MAX_DEFAULT_WORKERS`].
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_DEFAULT_WORKERS)
}

impl NodeConfig {
    /// Defaults: no listener, no peers, no limits, datacenter choker, a random
    /// peer id starting with `-PE0001-` (Azureus style), the torrent's
    /// trackers, [`MAX_PEERS`], PEX every [`PEX_INTERVAL_DATACENTER`],
    /// [`default_workers`] unpinned workers, [`SendStrategy::Send`].
    pub fn new() -> Self {
        let peer_id = PeerId::azureus(*b"-PE0001-", rand::random());
        NodeConfig {
            listen: None,
            peers: Vec::new(),
            upload_limit_bytes_per_s: None,
            download_limit_bytes_per_s: None,
            peer_id,
            choker: ChokerConfig::datacenter(),
            rng_seed: rand::random(),
            durable_exit: false,
            trackers: None,
            tracker: ClientConfig::default(),
            max_peers: MAX_PEERS,
            slots: crate::core::slots::SlotConfig::default(),
            pex_interval: Some(PEX_INTERVAL_DATACENTER),
            dht: None,
            workers: default_workers(),
            pin_cores: false,
            send_strategy: SendStrategy::default(),
            web_seeds: WebSeedConfig::default(),
            log_label: None,
        }
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// Why a [`Node`] failed. The underlying error is the [`std::error::Error::source`]
/// (print the chain, e.g. anyhow's `{:#}`), not repeated in the message.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The runtime could not start (listener bind, ring setup) or a worker failed.
    #[error("runtime")]
    Runtime(#[from] std::io::Error),
    /// The storage failed (disk error while writing or flushing).
    #[error("storage")]
    Store(#[from] StoreError),
    /// The torrent and the storage disagree (piece count or length).
    #[error("storage does not match the torrent: {0}")]
    Mismatch(String),
    /// The [`Session`] already serves a torrent with this info-hash (hex).
    #[error("torrent {0} is already served")]
    AlreadyServed(String),
    /// The [`Session`] serves no torrent with this id.
    #[error("no torrent {0} in this session")]
    UnknownTorrent(TorrentId),
}

/// The storage layout of `meta`'s file table (paths below the output
/// directory, `[name, ...]`), its piece length and the piece hashes p2pe
/// verifies with: the p2pe BLAKE3 digests where the torrent carries them,
/// else the SHA-1 `pieces` (BEP 3); see [`crate::wire::metainfo::Info::verify_hashes`].
///
/// # Errors
/// As [`StorageLayout::new`] (a validated metainfo only fails on limits the
/// store adds).
pub fn storage_layout(meta: &Metainfo) -> Result<StorageLayout, StoreError> {
    let info = meta.info();
    let files = info.files().iter().map(|f| f.spec().clone()).collect();
    StorageLayout::new(files, info.piece_len_bytes(), info.verify_hashes())
}

/// A snapshot of a node's progress, for progress bars and summaries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Pieces verified (including those present at start).
    pub verified_pieces: u32,
    /// Pieces in the torrent.
    pub piece_count: u32,
    /// Payload bytes of requested blocks received this session.
    pub downloaded_bytes: u64,
    /// Payload bytes uploaded this session.
    pub uploaded_bytes: u64,
    /// Peers currently connected (handshake done).
    pub peers: u32,
    /// Peers that completed a handshake with us this session.
    pub peers_seen: u32,
    /// Every piece is verified.
    pub complete: bool,
    /// New peer addresses learned from trackers this session.
    pub tracker_peers_learned: u32,
    /// New peer addresses learned from BEP 11 peer exchange this session.
    pub pex_peers_learned: u32,
    /// Successful tracker announces this session.
    pub announces_ok: u32,
    /// New peer addresses learned from the DHT this session.
    pub dht_peers_learned: u32,
    /// Tracker announces that failed this session (one per tracker tried:
    /// no answer, an I/O error, a failure reason, a malformed answer).
    pub announces_failed: u32,
    /// Pieces verified before the node started (by the resume record or
    /// hash check); `verified_pieces - pieces_verified_at_start` were verified
    /// this session.
    pub pieces_verified_at_start: u32,
    /// Pieces that failed their hash check this session (BEP 3 SHA-1, or BLAKE3).
    pub hash_failures: u64,
    /// Peers banned this session for sending data that failed the hash.
    pub peers_banned: u64,
    /// Connected peers we unchoke right now (the rest we choke).
    pub peers_unchoked: u32,
    /// Received payload bytes that were of no use this session (endgame
    /// duplicates, blocks arriving after our `cancel`, pieces failing the
    /// hash); part of `downloaded_bytes`' traffic but not counted in it.
    pub wasted_bytes: u64,
    /// Payload bytes received from web seeds (BEP 19) this session, pieces
    /// that failed the hash included; not part of `downloaded_bytes`.
    pub web_seed_bytes: u64,
    /// Pieces verified from web seeds this session.
    pub web_seed_pieces: u32,
    /// Web seed requests that failed this session (see [`WebSeedStats`]).
    pub web_seed_failures: u64,
}

/// How often newly verified pieces are made durable in the resume record.
pub const RESUME_FLUSH_INTERVAL: Duration = Duration::from_secs(5);

/// A running node: one torrent, one runtime, one resume flusher thread: a
/// [`Session`] of one torrent, whose inbound connections all go to that
/// torrent at accept.
pub struct Node {
    session: Session,
    id: TorrentId,
    shared: Arc<TorrentShared>,
    storage: Arc<Storage>,
}

/// Flushes the resume record every [`RESUME_FLUSH_INTERVAL`] while pieces
/// were verified since the last flush, off the runtime worker (msync waits
/// for the disk, which can be far slower than the network), until `stop`
/// is dropped or signalled.
fn spawn_flusher(
    storage: Arc<Storage>,
    shared: Arc<TorrentShared>,
) -> std::io::Result<(mpsc::Sender<()>, std::thread::JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel::<()>();
    let t = std::thread::Builder::new()
        .name("p2pe-flush".into())
        .spawn(move || {
            let mut flushed = shared.verified_pieces.load(Ordering::Acquire);
            while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(RESUME_FLUSH_INTERVAL)
            {
                let now = shared.verified_pieces.load(Ordering::Acquire);
                // A failed flush is retried next interval; the final flush in
                // `Node::shutdown` reports errors.
                if now != flushed && storage.flush_resume().is_ok() {
                    flushed = now;
                }
            }
        })?;
    Ok((tx, t))
}

/// The core configuration every worker's torrent starts from, and the
/// shared piece sets filled from `storage`. With several workers the
/// torrents share claims, upload history and availability counts and leave
/// choking to the batched choker (worker `i` uses `rng_seed ^ i`).
fn torrent_config(
    meta: &Metainfo,
    config: &NodeConfig,
    storage: &Storage,
    shared: &TorrentShared,
) -> TorrentConfig {
    let info = meta.info();
    let mut tc = TorrentConfig::new(info.total_len_bytes(), info.piece_len_bytes());
    tc.choker = config.choker;
    // Rack-aware requests (`core::rack`) when the node has a rack label.
    let topology = &config.tracker.topology;
    tc.locality = topology
        .rack
        .as_deref()
        .map(|rack| Locality::labelled(rack, topology.zone.as_deref(), &config.peer_id.0));
    let mut left = info.total_len_bytes();
    for (i, v) in (0u32..).zip(storage.verified()) {
        if v {
            let p = PieceIndex(i);
            shared.have.try_set(p);
            shared.claims.try_set(p);
            left = left.saturating_sub(u64::from(tc.piece_len(p)));
        }
    }
    let verified = shared.have.count_ones();
    shared.verified_pieces.store(verified, Ordering::Release);
    shared.verified_at_start.store(verified, Ordering::Release);
    shared.left_bytes.store(left, Ordering::Release);
    shared
        .complete
        .store(verified == info.piece_count(), Ordering::Release);
    // Web seed fetchers claim pieces and read availability like a worker.
    if shared.workers > 1 || !config.web_seeds.urls.is_empty() {
        tc.claims = Some(shared.claims.clone());
        tc.availability = Some(shared.availability.clone());
    }
    if shared.workers > 1 {
        tc.upload_history = Some(shared.upload_history.clone());
        tc.choker_mode = ChokerMode::External {
            initial_slots: config.choker.unchoke_slots / shared.workers,
        };
    }
    tc
}

impl Node {
    /// Starts serving `meta` from/into `storage` (opened and checked by the
    /// caller) and connects to `config.peers`.
    ///
    /// # Errors
    /// [`NodeError::Mismatch`] when storage and torrent disagree;
    /// [`NodeError::Runtime`] when a data file cannot be mapped for sending or
    /// the runtime cannot start (e.g. the listen address is taken).
    pub fn start(
        meta: &Metainfo,
        storage: Arc<Storage>,
        config: NodeConfig,
    ) -> Result<Node, NodeError> {
        let mut session = Session::start_routing(&config, dispatch::Routing::Sole)?;
        let id = session.add(meta, storage, &config)?;
        let (shared, storage) = session.parts(id).ok_or(NodeError::UnknownTorrent(id))?;
        Ok(Node {
            session,
            id,
            shared,
            storage,
        })
    }

    /// The address peers can reach us on (with the chosen port), if listening.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.session.local_addr()
    }

    /// The UDP address of the node's DHT node, if the DHT is on.
    pub fn dht_addr(&self) -> Option<SocketAddr> {
        self.session.dht_addr(self.id)
    }

    /// Asks the node to connect to `addr` (and reconnect while incomplete),
    /// from the worker the address hashes to.
    ///
    /// # Errors
    /// [`NodeError::Runtime`] if the worker has exited or its mailbox is full.
    pub fn connect(&self, addr: SocketAddr) -> Result<(), NodeError> {
        self.session.connect(self.id, addr)
    }

    /// A handle on the per-peer payload totals ([`PeerTransfer`]), readable
    /// while the node runs and after [`Node::shutdown`] (then final).
    pub fn transfers(&self) -> Transfers {
        Transfers {
            shared: self.shared.clone(),
        }
    }

    /// Current progress.
    pub fn progress(&self) -> Progress {
        progress_of(&self.shared)
    }

    /// Per worker (index = worker), pieces that worker verified first this
    /// session: the pieces its connections brought in. Between two p2pe nodes
    /// of several workers the lanes spread them over the workers
    /// (`docs/cli-node.md`, "Lanes").
    pub fn pieces_verified_per_worker(&self) -> Vec<u32> {
        self.shared
            .verified_by_worker
            .iter()
            .map(|n| n.load(Ordering::Acquire))
            .collect()
    }

    /// A handle that reads this node's [`Progress`] from another thread (a
    /// metrics endpoint) without holding the [`Node`]; after
    /// [`Node::shutdown`] it reads the final counters.
    pub fn watch(&self) -> NodeWatch {
        NodeWatch {
            shared: self.shared.clone(),
        }
    }

    /// Takes the fatal storage error that stopped the node, if any.
    pub fn take_error(&self) -> Option<StoreError> {
        self.session.take_error(self.id)
    }

    /// Per web seed totals (BEP 19), in the order of [`NodeConfig::web_seeds`]
    /// (usable URLs only); readable after [`Node::shutdown`] through
    /// [`NodeWatch::web_seeds`].
    pub fn web_seeds(&self) -> Vec<WebSeedStats> {
        web_seed_stats(&self.shared)
    }

    /// The storage the node serves from.
    pub fn storage(&self) -> &Arc<Storage> {
        &self.storage
    }

    /// Announces `stopped` to the trackers (bounded by
    /// [`TRACKER_STOP_BOUND`]), stops the runtime (closing every
    /// connection) and flushes the resume record; returns the final progress.
    ///
    /// # Errors
    /// The fatal storage error that stopped the node, a runtime error, or
    /// flushing the resume record failed.
    pub fn shutdown(self) -> Result<Progress, NodeError> {
        let id = self.id;
        self.session
            .shutdown()
            .into_iter()
            .find(|(t, _)| *t == id)
            .map_or(Err(NodeError::UnknownTorrent(id)), |(_, r)| r)
    }
}

/// Reads a node's counters from any thread ([`Node::watch`]): each read is
/// a handful of atomic loads, no lock, so a metrics scrape never slows the
/// workers.
#[derive(Clone)]
pub struct NodeWatch {
    shared: Arc<TorrentShared>,
}

impl NodeWatch {
    /// The node's current progress (as [`Node::progress`]).
    pub fn progress(&self) -> Progress {
        progress_of(&self.shared)
    }

    /// Per web seed totals (as [`Node::web_seeds`]).
    pub fn web_seeds(&self) -> Vec<WebSeedStats> {
        web_seed_stats(&self.shared)
    }
}

/// Snapshots of the web seeds' counters in `s`.
fn web_seed_stats(s: &TorrentShared) -> Vec<WebSeedStats> {
    s.web_seeds
        .get()
        .map_or_else(Vec::new, |v| v.iter().map(|c| c.stats()).collect())
}

impl std::fmt::Debug for NodeWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeWatch").finish_non_exhaustive()
    }
}

/// The counters in `s` as a [`Progress`].
fn progress_of(s: &TorrentShared) -> Progress {
    let web = s.web_seeds.get().map_or(&[][..], Vec::as_slice);
    Progress {
        verified_pieces: s.verified_pieces.load(Ordering::Acquire),
        piece_count: s.piece_count.load(Ordering::Acquire),
        downloaded_bytes: s.downloaded_bytes.load(Ordering::Acquire),
        uploaded_bytes: s.uploaded_bytes.load(Ordering::Acquire),
        peers: s.peers.load(Ordering::Acquire),
        peers_seen: s.peers_seen.load(Ordering::Acquire),
        complete: s.complete.load(Ordering::Acquire),
        tracker_peers_learned: s.tracker_peers_learned.load(Ordering::Acquire),
        pex_peers_learned: s.pex_peers_learned.load(Ordering::Acquire),
        announces_ok: s.announces_ok.load(Ordering::Acquire),
        dht_peers_learned: s.dht_peers_learned.load(Ordering::Acquire),
        announces_failed: s.announces_failed.load(Ordering::Acquire),
        pieces_verified_at_start: s.verified_at_start.load(Ordering::Acquire),
        hash_failures: s.hash_failures.load(Ordering::Relaxed),
        peers_banned: s.peers_banned.load(Ordering::Relaxed),
        peers_unchoked: s.peers_unchoked.load(Ordering::Relaxed),
        wasted_bytes: s.wasted_bytes.load(Ordering::Relaxed),
        web_seed_bytes: web.iter().map(|c| c.downloaded_bytes()).sum(),
        web_seed_pieces: web.iter().map(|c| c.pieces()).sum(),
        web_seed_failures: web.iter().map(|c| c.failures()).sum(),
    }
}

#[doc(hidden)]
pub mod fake_peer;
#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod lanes_tests;
#[cfg(test)]
mod metadata_tests;
#[cfg(test)]
mod pex_flood_tests;
#[cfg(test)]
mod session_tests;
#[cfg(test)]
mod tests;
