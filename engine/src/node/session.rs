//! [`Session`]: many torrents in one process, on one runtime and one listen port.
//!
//! A session owns one [`crate::rt`] runtime (thread per core, as for one
//! torrent). Every worker runs a [`super::dispatch::Dispatcher`] that holds one
//! [`super::handler::NodeHandler`] per torrent (so every worker serves every
//! torrent) and routes each runtime callback to the torrent that owns the
//! connection; inbound connections wait until the info-hash of the peer's
//! handshake names their torrent ([`crate::core::inbound_handshakes`]).
//! Per torrent, as for a [`super::Node`]: its shared state, a resume flusher
//! thread, an announcer thread (if it has trackers) and a DHT node (if on).
//! Rate limits stay per process: one token bucket per direction for all
//! torrents. A [`super::Node`] is a session of one torrent.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::core::inbound_handshakes::InboundConfig;
use crate::core::rate_limit::SharedBucket;
use crate::core::Time;
use crate::discovery::announcer::{Announcer, Params as AnnounceParams};
use crate::discovery::dht;
use crate::rt::{self, PostError, RuntimeConfig, RuntimeHandle};
use crate::store::{Storage, StoreError};
use crate::wire::metainfo::{InfoHash, Metainfo};

use super::dispatch::{Dispatcher, Routing, SessionMsg, TorrentSlot};
use super::handler::NodeHandler;
use super::{
    progress_of, spawn_flusher, torrent_config, web_seed, Command, NodeConfig, NodeError,
    NodeWatch, Progress, TorrentShared, Transfers,
};

/// Longest wait for a message to a worker whose mailbox is full (the worker
/// drains it on its next loop; this only bounds a stuck worker).
const POST_BOUND: Duration = Duration::from_secs(5);

/// Longest wait for every worker to take an added torrent or drop a removed
/// one (each does so on its next loop).
const ACK_BOUND: Duration = Duration::from_secs(5);

/// A torrent of a [`Session`]; never reused within a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TorrentId(pub u64);

impl std::fmt::Display for TorrentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// The owner's side of one torrent of a session.
struct Hosted {
    info_hash: InfoHash,
    shared: Arc<TorrentShared>,
    storage: Arc<Storage>,
    /// [`NodeConfig::durable_exit`].
    durable_exit: bool,
    flusher: Option<(mpsc::Sender<()>, std::thread::JoinHandle<()>)>,
    announcer: Option<Announcer>,
    dht: Option<dht::DhtNode>,
    /// BEP 19 fetcher threads (only while incomplete and with web seeds).
    web_seeds: Option<web_seed::WebSeeds>,
}

impl Hosted {
    /// Stops the threads that talk for the torrent (the DHT node; the
    /// announcer after its `stopped` announce, bounded by
    /// [`super::TRACKER_STOP_BOUND`]; the resume flusher) and takes the
    /// fatal storage error, if any.
    fn stop_threads(&mut self) -> Option<StoreError> {
        if let Some(w) = self.web_seeds.take() {
            w.stop();
        }
        if let Some(d) = self.dht.take() {
            d.stop();
        }
        if let Some(a) = self.announcer.take() {
            a.stop();
        }
        let fatal = self
            .shared
            .fatal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some((stop, t)) = self.flusher.take() {
            drop(stop);
            let _ = t.join();
        }
        fatal
    }

    /// After the workers dropped the torrent: its final progress, once the
    /// resume record is flushed.
    fn finish(self, fatal: Option<StoreError>) -> Result<Progress, NodeError> {
        let progress = progress_of(&self.shared);
        let flushed = if self.durable_exit {
            self.storage.flush_resume()
        } else {
            self.storage.flush_resume_nowait()
        };
        if let Some(e) = fatal {
            return Err(e.into());
        }
        flushed?;
        Ok(progress)
    }
}

/// Waits, bounded by [`ACK_BOUND`], until every worker dropped its clone of
/// the sender of `acked` (each does once it took or dropped torrent `id`).
fn wait_acks(acked: &mpsc::Receiver<()>, id: TorrentId) -> Result<(), NodeError> {
    let end = Instant::now() + ACK_BOUND;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match acked.recv_timeout(left) {
            Ok(()) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(NodeError::Runtime(std::io::Error::other(format!(
                    "a worker did not answer for torrent {id} within {ACK_BOUND:?}"
                ))))
            }
        }
    }
}

/// Many torrents served by one runtime on one listen port (see the module docs).
pub struct Session {
    runtime: RuntimeHandle<SessionMsg>,
    /// Clock origin of every torrent's core (the shared rate buckets compare
    /// times across torrents).
    epoch: Instant,
    workers: usize,
    /// The configured listen address (`None`: outbound only).
    listen: Option<SocketAddr>,
    /// The process-wide upload and download buckets.
    limits: (Option<SharedBucket>, Option<SharedBucket>),
    torrents: BTreeMap<TorrentId, Hosted>,
    next_id: u64,
    /// The session's DHT node (BEP 5), bound by the first torrent added with
    /// [`NodeConfig::dht`] and shared by every torrent after it (one UDP
    /// port per process; the first torrent's `DhtConfig` sets it).
    dht: Option<mainline::Dht>,
}

impl Session {
    /// Starts the runtime of a session without torrents. Of `config`, the
    /// session uses `listen`, `workers`, `pin_cores`, `send_strategy`, the rate
    /// limits (one bucket per direction for all torrents) and
    /// `slots.handshake_timeout` (the longest wait for an inbound peer's
    /// handshake to name its torrent); the rest is per torrent ([`Session::add`]).
    ///
    /// # Errors
    /// [`NodeError::Runtime`] when the runtime cannot start (e.g. the listen
    /// address is taken).
    pub fn start(config: &NodeConfig) -> Result<Session, NodeError> {
        let inbound = InboundConfig {
            timeout: config.slots.handshake_timeout,
            ..InboundConfig::default()
        };
        Self::start_routing(config, Routing::ByInfoHash(inbound))
    }

    /// [`Session::start`] with the given routing of inbound connections
    /// ([`Routing::Sole`] for a [`super::Node`]).
    pub(super) fn start_routing(
        config: &NodeConfig,
        routing: Routing,
    ) -> Result<Session, NodeError> {
        let workers = config.workers.max(1);
        let epoch = Instant::now();
        let rc = RuntimeConfig {
            workers,
            listen: config.listen,
            pin_cores: config.pin_cores,
            send_strategy: config.send_strategy,
            ..RuntimeConfig::default()
        };
        let runtime = rt::run(rc, |_| Dispatcher::new(routing, epoch))?;
        let now = Time::ZERO;
        let limits = (
            config
                .upload_limit_bytes_per_s
                .map(|r| SharedBucket::new(r, now)),
            config
                .download_limit_bytes_per_s
                .map(|r| SharedBucket::new(r, now)),
        );
        Ok(Session {
            runtime,
            epoch,
            workers,
            listen: config.listen,
            limits,
            torrents: BTreeMap::new(),
            next_id: 0,
            dht: None,
        })
    }

    /// The address peers reach every torrent on (with the chosen port), if listening.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.runtime.local_addr()
    }

    /// The torrents served now, in the order they were added.
    pub fn torrents(&self) -> Vec<TorrentId> {
        self.torrents.keys().copied().collect()
    }

    /// The info-hash of torrent `id`, if served.
    pub fn info_hash(&self, id: TorrentId) -> Option<InfoHash> {
        self.torrents.get(&id).map(|h| h.info_hash)
    }

    /// Starts serving `meta` from/into `storage` (opened and checked by the
    /// caller) on every worker, announcing it to its trackers, and connects to
    /// `config.peers`. Of `config`, the torrent uses everything but what
    /// [`Session::start`] lists as the session's.
    ///
    /// # Errors
    /// [`NodeError::Mismatch`] when storage and torrent disagree;
    /// [`NodeError::AlreadyServed`] when the session serves this info-hash;
    /// [`NodeError::Runtime`] when a data file cannot be mapped for sending, a
    /// thread cannot be spawned or a worker does not take the torrent.
    pub fn add(
        &mut self,
        meta: &Metainfo,
        storage: Arc<Storage>,
        config: &NodeConfig,
    ) -> Result<TorrentId, NodeError> {
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
        if self
            .torrents
            .values()
            .any(|h| h.info_hash == meta.info_hash())
        {
            return Err(NodeError::AlreadyServed(meta.info_hash().to_string()));
        }
        let id = TorrentId(self.next_id);
        self.next_id += 1;
        let mut nc = config.clone();
        nc.listen = self.listen;
        nc.workers = self.workers;
        let mut shared = TorrentShared::new(info.piece_count(), self.workers);
        shared.epoch = self.epoch;
        if let Some(label) = &config.log_label {
            let _ = shared.log_label.set(Arc::from(label.as_str()));
        }
        let _ = shared.limits.set(self.limits.clone());
        let shared = Arc::new(shared);
        let port = self.local_addr().map_or(0, |a| a.port());
        shared.listen_port.store(port, Ordering::Release);
        let tc = torrent_config(meta, &nc, &storage, &shared);
        let ih = meta.info_hash();
        let info_bytes: Arc<[u8]> = Arc::from(meta.info_bytes());
        let (ack, acked) = mpsc::channel::<()>();
        let make = |w: usize| -> Result<SessionMsg, NodeError> {
            let handler = NodeHandler::new(
                tc.clone(),
                ih,
                storage.clone(),
                &nc,
                shared.clone(),
                (id, w),
                info.is_private(),
                info_bytes.clone(),
            )?;
            let slot = TorrentSlot {
                id,
                info_hash: ih,
                handler,
            };
            Ok(SessionMsg::Add(Box::new(slot), ack.clone()))
        };
        for w in 0..self.workers {
            if let Err(e) = self.post_bounded(w, || make(w)) {
                let _ = self.drop_on_workers(id);
                return Err(e);
            }
        }
        drop(ack);
        // Once every worker serves it, a peer may connect at once.
        if let Err(e) = wait_acks(&acked, id) {
            let _ = self.drop_on_workers(id);
            return Err(e);
        }
        let mut hosted = Hosted {
            info_hash: ih,
            shared: shared.clone(),
            storage: storage.clone(),
            durable_exit: nc.durable_exit,
            flusher: None,
            announcer: None,
            dht: None,
            web_seeds: None,
        };
        if let Err(e) = self.start_threads(id, &mut hosted, meta, &nc, port) {
            let fatal = hosted.stop_threads();
            let _ = self.drop_on_workers(id);
            let _ = hosted.finish(fatal);
            return Err(e);
        }
        self.torrents.insert(id, hosted);
        for w in 0..self.workers {
            self.post_command(id, w, || Command::Start)?;
        }
        for addr in &nc.peers {
            self.connect(id, *addr)?;
        }
        Ok(id)
    }

    /// The resume flusher, the announcer, the DHT node and the web seed
    /// fetchers of new torrent `id`.
    fn start_threads(
        &mut self,
        id: TorrentId,
        hosted: &mut Hosted,
        meta: &Metainfo,
        config: &NodeConfig,
        port: u16,
    ) -> Result<(), NodeError> {
        let shared = &hosted.shared;
        hosted.flusher = Some(spawn_flusher(hosted.storage.clone(), shared.clone())?);
        // Peers a tracker or the DHT returns are dialled at once, not at the
        // workers' next timer tick.
        let poster = self.runtime.poster();
        let _ = shared.wake.set(super::shared::Wake(Box::new(move |w| {
            let _ = poster.post(w, SessionMsg::Torrent(id, Command::Discovered));
        })));
        let tiers = config
            .trackers
            .clone()
            .unwrap_or_else(|| meta.trackers().to_vec());
        if tiers.iter().any(|t| !t.is_empty()) {
            hosted.announcer = Some(Announcer::spawn(AnnounceParams {
                tiers,
                info_hash: meta.info_hash(),
                peer_id: config.peer_id,
                port,
                client: config.tracker.clone(),
                seed: config.rng_seed ^ 0x0074_7261_636b_6572,
                max_peers: config.max_peers,
                host: shared.clone(),
            })?);
        }
        hosted.dht = match &config.dht {
            Some(_) if meta.info().is_private() => {
                shared.log("dht: off for a private torrent (BEP 27)".into());
                None
            }
            Some(dc) => {
                let node = match &self.dht {
                    Some(d) => d.clone(),
                    None => self.dht.insert(dht::build(dc)?).clone(),
                };
                Some(dht::DhtNode::spawn(
                    node,
                    dc,
                    meta.info_hash(),
                    port,
                    shared.clone(),
                )?)
            }
            None => None,
        };
        let expect_peers =
            !config.peers.is_empty() || hosted.announcer.is_some() || hosted.dht.is_some();
        if !shared.complete.load(Ordering::Acquire) {
            let poster = self.runtime.poster();
            let post: web_seed::PostCommand = Arc::new(move |w, cmd| {
                let _ = poster.post(w, SessionMsg::Torrent(id, cmd));
            });
            hosted.web_seeds = web_seed::WebSeeds::spawn(
                &config.web_seeds,
                meta.info().is_multi_file(),
                expect_peers,
                config.peer_id,
                hosted.storage.clone(),
                shared.clone(),
                post,
            )?;
        }
        Ok(())
    }

    /// Stops serving torrent `id`: announces `stopped` to its trackers
    /// (bounded by [`super::TRACKER_STOP_BOUND`]), closes its connections on
    /// every worker (the other torrents keep theirs) and flushes its resume
    /// record; returns its final progress.
    ///
    /// # Errors
    /// [`NodeError::UnknownTorrent`]; the fatal storage error that stopped the
    /// torrent; a worker did not drop it in time ([`NodeError::Runtime`]);
    /// flushing the resume record failed.
    pub fn remove(&mut self, id: TorrentId) -> Result<Progress, NodeError> {
        let mut hosted = self
            .torrents
            .remove(&id)
            .ok_or(NodeError::UnknownTorrent(id))?;
        let fatal = hosted.stop_threads();
        let dropped = self.drop_on_workers(id);
        let progress = hosted.finish(fatal)?;
        dropped.map(|()| progress)
    }

    /// Asks every worker to drop torrent `id` (closing its connections) and
    /// waits, bounded by [`ACK_BOUND`], until they all did.
    fn drop_on_workers(&self, id: TorrentId) -> Result<(), NodeError> {
        let (ack, acked) = mpsc::channel::<()>();
        for w in 0..self.workers {
            let ack = ack.clone();
            // A worker that has exited has nothing left to drop.
            match self.post_bounded(w, || Ok(SessionMsg::Remove(id, ack.clone()))) {
                Ok(()) | Err(NodeError::Runtime(_)) => {}
                Err(e) => return Err(e),
            }
        }
        drop(ack);
        wait_acks(&acked, id)
    }

    /// Sends `make()`'s message to worker `w`, retrying (bounded by
    /// [`POST_BOUND`]) while its mailbox is full; a rejected message is
    /// dropped, so each try makes a fresh one.
    fn post_bounded(
        &self,
        w: usize,
        mut make: impl FnMut() -> Result<SessionMsg, NodeError>,
    ) -> Result<(), NodeError> {
        let end = Instant::now() + POST_BOUND;
        loop {
            match self.runtime.post(w, make()?) {
                Ok(()) => return Ok(()),
                Err(PostError::Full(_)) if Instant::now() < end => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => return Err(NodeError::Runtime(std::io::Error::other(e))),
            }
        }
    }

    /// Sends torrent `id`'s handler on worker `w` the command `make()` makes.
    fn post_command(
        &self,
        id: TorrentId,
        w: usize,
        mut make: impl FnMut() -> Command,
    ) -> Result<(), NodeError> {
        self.post_bounded(w, || Ok(SessionMsg::Torrent(id, make())))
    }

    /// Asks torrent `id` to connect to `addr` (and reconnect while
    /// incomplete), from the worker the address hashes to.
    ///
    /// # Errors
    /// [`NodeError::UnknownTorrent`]; [`NodeError::Runtime`] if the worker has
    /// exited or its mailbox stays full.
    pub fn connect(&self, id: TorrentId, addr: SocketAddr) -> Result<(), NodeError> {
        let shared = &self.hosted(id)?.shared;
        let w = super::shared::dial_owner(addr, shared.workers);
        self.post_command(id, w, || Command::Connect(addr))
    }

    fn hosted(&self, id: TorrentId) -> Result<&Hosted, NodeError> {
        self.torrents.get(&id).ok_or(NodeError::UnknownTorrent(id))
    }

    /// Torrent `id`'s current progress.
    ///
    /// # Errors
    /// [`NodeError::UnknownTorrent`].
    pub fn progress(&self, id: TorrentId) -> Result<Progress, NodeError> {
        Ok(progress_of(&self.hosted(id)?.shared))
    }

    /// A handle that reads torrent `id`'s [`Progress`] from any thread.
    ///
    /// # Errors
    /// [`NodeError::UnknownTorrent`].
    pub fn watch(&self, id: TorrentId) -> Result<NodeWatch, NodeError> {
        Ok(NodeWatch {
            shared: self.hosted(id)?.shared.clone(),
        })
    }

    /// Torrent `id`'s per-peer payload totals ([`super::PeerTransfer`]).
    ///
    /// # Errors
    /// [`NodeError::UnknownTorrent`].
    pub fn transfers(&self, id: TorrentId) -> Result<Transfers, NodeError> {
        Ok(Transfers {
            shared: self.hosted(id)?.shared.clone(),
        })
    }

    /// Takes the fatal storage error that stopped torrent `id` on some
    /// worker, if any (remove it then; the other torrents are not affected).
    pub fn take_error(&self, id: TorrentId) -> Option<StoreError> {
        self.torrents.get(&id).and_then(|h| {
            h.shared
                .fatal
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
        })
    }

    /// The UDP address of torrent `id`'s DHT node, if the DHT is on for it.
    pub fn dht_addr(&self, id: TorrentId) -> Option<SocketAddr> {
        self.torrents
            .get(&id)
            .and_then(|h| h.dht.as_ref())
            .map(|d| SocketAddr::V4(d.local_addr()))
    }

    /// Stops every torrent (as [`Session::remove`], `stopped` announces
    /// included) and the runtime; returns each torrent's final progress or
    /// error, in the order they were added.
    pub fn shutdown(mut self) -> Vec<(TorrentId, Result<Progress, NodeError>)> {
        let mut stopping = Vec::new();
        for (id, mut h) in std::mem::take(&mut self.torrents) {
            let fatal = h.stop_threads();
            stopping.push((id, h, fatal));
        }
        let rt = self.runtime.shutdown();
        // After the workers exited: each added its last byte counts on the way out.
        stopping
            .into_iter()
            .map(|(id, h, fatal)| {
                let r = h.finish(fatal).and_then(|p| match &rt {
                    Ok(()) => Ok(p),
                    Err(e) => Err(NodeError::Runtime(std::io::Error::new(
                        e.kind(),
                        e.to_string(),
                    ))),
                });
                (id, r)
            })
            .collect()
    }
}

/// Per-torrent views a [`super::Node`] needs without a lookup.
impl Session {
    /// Torrent `id`'s shared state and storage.
    pub(super) fn parts(&self, id: TorrentId) -> Option<(Arc<TorrentShared>, Arc<Storage>)> {
        self.torrents
            .get(&id)
            .map(|h| (h.shared.clone(), h.storage.clone()))
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("local_addr", &self.local_addr())
            .field("torrents", &self.torrents.len())
            .finish_non_exhaustive()
    }
}
