//! A p2pe node: the runtime ([`crate::rt`]) moving bytes for the swarm logic
//! ([`crate::core`]), speaking the peer wire ([`crate::wire::peer`]) and
//! storing pieces ([`crate::store`]).
//!
//! One [`Node`] serves one torrent. In this version a single runtime worker
//! owns the [`crate::core::Torrent`] and every connection (`workers = 1`):
//! simple and complete; piece verification (SHA-1) runs on that worker too.
//! A separate thread makes verified pieces durable and rewrites the resume
//! record every [`RESUME_FLUSH_INTERVAL`] (msync waits for the disk, which
//! may be much slower than the network, so it never blocks the worker).
//!
//! Rate limits are per process token buckets ([`NodeConfig`]): a `piece`
//! upload waits for upload tokens before it is queued; a `request` waits for
//! download tokens (so the peer sends no faster than the limit). Held items
//! keep their per-peer order.
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
//!    first other message, or [`EXT_HANDSHAKE_WAIT`] after the handshake;
//! 4. received bytes go through an incremental [`crate::wire::peer::Decoder`];
//!    `piece` messages are accepted by the core first, then written to
//!    storage; [`crate::core::Action::VerifyPiece`] hashes on the worker;
//!    [`crate::core::Action::SendBlock`] becomes the 13-byte piece header plus
//!    the block's file regions in one gathered send (two regions when the block
//!    spans two files; the runtime's per-connection FIFO keeps the order).
//!
//! Invariants: peer input never panics (a wire error or a
//! [`crate::core::ProtocolError`] closes the connection); messages to one peer
//! leave in the order the core emitted them, also while a rate limit holds
//! some back; a block is reported sent to the core once the runtime has handed
//! all its bytes to the kernel.

mod convert;
mod handler;
mod limit;
mod peer;

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use crate::core::{ChokerConfig, TorrentConfig};
use crate::rt::{self, RuntimeConfig, RuntimeHandle};
use crate::store::{FileSpec, Storage, StorageLayout, StoreError};
use crate::wire::metainfo::Metainfo;

/// How long after the handshake a peer that set the BEP 10 bit may take to
/// send its extended handshake before it is treated as a plain 16 KiB peer.
pub const EXT_HANDSHAKE_WAIT: Duration = Duration::from_secs(2);

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
    /// Our 20-byte peer id (BEP 3).
    pub peer_id: [u8; 20],
    /// Choker settings; default [`ChokerConfig::datacenter`].
    pub choker: ChokerConfig,
    /// Seed of the core's random choices.
    pub rng_seed: u64,
}

impl NodeConfig {
    /// Defaults: no listener, no peers, no limits, datacenter choker, a random
    /// peer id starting with `-PE0001-` (Azureus style).
    pub fn new() -> Self {
        let mut peer_id = *b"-PE0001-000000000000";
        let r: [u8; 12] = rand::random();
        for (dst, b) in peer_id.iter_mut().skip(8).zip(r) {
            *dst = b"0123456789abcdefghijklmnopqrstuvwxyz"[usize::from(b) % 36];
        }
        NodeConfig {
            listen: None,
            peers: Vec::new(),
            upload_limit_bytes_per_s: None,
            download_limit_bytes_per_s: None,
            peer_id,
            choker: ChokerConfig::datacenter(),
            rng_seed: rand::random(),
        }
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// Why a [`Node`] failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The runtime could not start (listener bind, ring setup) or a worker failed.
    #[error("runtime: {0}")]
    Runtime(#[from] std::io::Error),
    /// The storage failed (disk error while writing or flushing).
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    /// The torrent and the storage disagree (piece count or length).
    #[error("storage does not match the torrent: {0}")]
    Mismatch(String),
}

/// The storage layout of `meta`'s file table (paths below the output
/// directory, `[name, ...]`), its piece length and piece hashes (BEP 3).
///
/// # Errors
/// As [`StorageLayout::new`] (a validated metainfo only fails on limits the
/// store adds).
pub fn storage_layout(meta: &Metainfo) -> Result<StorageLayout, StoreError> {
    let info = meta.info();
    let files = info
        .files()
        .iter()
        .map(|f| FileSpec {
            path_components: f.path_components().to_vec(),
            len_bytes: f.len_bytes(),
        })
        .collect();
    let hashes = info.piece_hashes().iter().map(|h| h.0).collect();
    StorageLayout::new(files, info.piece_len_bytes(), hashes)
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
}

/// State the worker publishes for the owner of the [`Node`] (lock-free but for
/// the fatal error).
#[derive(Debug, Default)]
pub(crate) struct Shared {
    verified_pieces: AtomicU32,
    piece_count: AtomicU32,
    downloaded_bytes: AtomicU64,
    uploaded_bytes: AtomicU64,
    peers: AtomicU32,
    peers_seen: AtomicU32,
    complete: AtomicBool,
    fatal: Mutex<Option<StoreError>>,
}

/// A control message to the worker.
#[derive(Debug)]
pub(crate) enum Command {
    /// Connect to this peer (and keep reconnecting while incomplete).
    Connect(SocketAddr),
}

/// How often newly verified pieces are made durable in the resume record.
pub const RESUME_FLUSH_INTERVAL: Duration = Duration::from_secs(5);

/// A running node: one torrent, one runtime, one resume flusher thread.
pub struct Node {
    runtime: RuntimeHandle,
    shared: Arc<Shared>,
    storage: Arc<Storage>,
    flusher: Option<(mpsc::Sender<()>, std::thread::JoinHandle<()>)>,
}

/// Flushes the resume record every [`RESUME_FLUSH_INTERVAL`] while pieces
/// were verified since the last flush, off the runtime worker (msync waits
/// for the disk, which can be far slower than the network), until `stop`
/// is dropped or signalled.
fn spawn_flusher(
    storage: Arc<Storage>,
    shared: Arc<Shared>,
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
        let info = meta.info();
        if storage.piece_count() != info.piece_count()
            || storage.layout().total_len_bytes() != info.total_len_bytes()
        {
            return Err(NodeError::Mismatch(format!(
                "{} pieces / {} bytes in storage, {} / {} in the torrent",
                storage.piece_count(),
                storage.layout().total_len_bytes(),
                info.piece_count(),
                info.total_len_bytes()
            )));
        }
        let mut tc = TorrentConfig::new(info.total_len_bytes(), info.piece_len_bytes());
        tc.choker = config.choker;
        let shared = Arc::new(Shared::default());
        let handler = handler::NodeHandler::new(
            tc,
            meta.info_hash().0,
            storage.clone(),
            &config,
            shared.clone(),
        )?;
        let rc = RuntimeConfig {
            workers: 1,
            listen: config.listen,
            // Many nodes may share a machine (tests, `p2pe swarm`): let the
            // scheduler place them.
            pin_cores: false,
            ..RuntimeConfig::default()
        };
        let slot = Cell::new(Some(handler));
        let runtime = rt::run(rc, |_| slot.take().expect("one worker, one handler"))?;
        let flusher = Some(spawn_flusher(storage.clone(), shared.clone())?);
        let node = Node {
            runtime,
            shared,
            storage,
            flusher,
        };
        for addr in &config.peers {
            node.connect(*addr)?;
        }
        Ok(node)
    }

    /// The address peers can reach us on (with the chosen port), if listening.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.runtime.local_addr()
    }

    /// Asks the node to connect to `addr` (and reconnect while incomplete).
    ///
    /// # Errors
    /// [`NodeError::Runtime`] if the worker has exited or its mailbox is full.
    pub fn connect(&self, addr: SocketAddr) -> Result<(), NodeError> {
        self.runtime
            .post(0, Box::new(Command::Connect(addr)))
            .map_err(|e| NodeError::Runtime(std::io::Error::other(e)))
    }

    /// Current progress.
    pub fn progress(&self) -> Progress {
        let s = &self.shared;
        Progress {
            verified_pieces: s.verified_pieces.load(Ordering::Acquire),
            piece_count: s.piece_count.load(Ordering::Acquire),
            downloaded_bytes: s.downloaded_bytes.load(Ordering::Acquire),
            uploaded_bytes: s.uploaded_bytes.load(Ordering::Acquire),
            peers: s.peers.load(Ordering::Acquire),
            peers_seen: s.peers_seen.load(Ordering::Acquire),
            complete: s.complete.load(Ordering::Acquire),
        }
    }

    /// Takes the fatal storage error that stopped the node, if any.
    pub fn take_error(&self) -> Option<StoreError> {
        self.shared
            .fatal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// The storage the node serves from.
    pub fn storage(&self) -> &Arc<Storage> {
        &self.storage
    }

    /// Stops the runtime (closing every connection) and flushes the resume
    /// record; returns the final progress.
    ///
    /// # Errors
    /// The fatal storage error that stopped the node, a runtime error, or
    /// flushing the resume record failed.
    pub fn shutdown(mut self) -> Result<Progress, NodeError> {
        let progress = self.progress();
        let fatal = self.take_error();
        if let Some((stop, t)) = self.flusher.take() {
            drop(stop);
            let _ = t.join();
        }
        let rt = self.runtime.shutdown();
        let flushed = self.storage.flush_resume();
        if let Some(e) = fatal {
            return Err(e.into());
        }
        rt?;
        flushed?;
        Ok(progress)
    }
}

#[cfg(test)]
mod tests;
