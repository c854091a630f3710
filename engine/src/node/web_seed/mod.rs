//! Web seeds in the node (BEP 19, `url-list`): fetcher threads that take
//! pieces from plain HTTP servers, alongside the peers.
//!
//! Each web seed URL gets [`WebSeedConfig::connections_per_seed`] threads
//! sharing one HTTP client (keep-alive connections in ureq's pool). A thread
//! loops: ask the node's [`WebSeedPolicy`] (sans-IO, [`crate::core::web_seed`])
//! for a piece, which claims it in the node's claim bitmap (so no worker
//! fetches it meanwhile, and no other fetcher); fetch it with ranged `GET`s
//! (`http`) straight into storage; verify it like any piece (BLAKE3 where
//! the torrent carries it, else SHA-1); then mark it had node-wide
//! (`TorrentShared::piece_verified`) and post it to every worker
//! (`Command::PieceVerified`), which sends `have` to its peers and
//! serves it. So a piece a node got over HTTP reaches its neighbours by P2P,
//! and its availability there is no longer 0: they take it from peers, not
//! from the origin.
//!
//! A web seed that fails (an HTTP error or status, a stall, a short body,
//! bytes failing the hash) gives its piece's claim back (the piece may come
//! from anyone), is left alone for an exponential, bounded back-off
//! ([`crate::core::web_seed::Backoff`]), and is reported: one log line per
//! failure (a `tracing` INFO event of the node) and its counters
//! ([`WebSeedStats`]).
//!
//! Bounds: at most [`crate::wire::metainfo::MAX_WEB_SEEDS`] web seeds, at most
//! [`MAX_CONNECTIONS_PER_SEED`] threads each, one 64 KiB buffer per thread.
//! Threads exit when the node is complete or stopping; [`super::Node::shutdown`]
//! waits for them at most [`STOP_BOUND`] (a thread blocked in a read is left
//! to finish on its own: the node's state it touches is shared and outlives it).

mod http;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::base::PeerId;
use crate::core::web_seed::{Backoff, PolicyConfig, Share, WebSeedPolicy};
use crate::core::{PieceIndex, Time};
use crate::store::{Storage, StoreError};

use super::handler::retry_busy;
use super::{Command, TorrentShared};
use http::{FetchError, Target};

/// Most fetcher threads (concurrent requests) per web seed.
pub const MAX_CONNECTIONS_PER_SEED: usize = 8;

/// How long [`super::Node::shutdown`] waits for the fetcher threads.
pub const STOP_BOUND: Duration = Duration::from_secs(1);

/// Longest sleep of an idle fetcher between looks at the node's state: a
/// piece a peer stopped offering is taken up within this.
const IDLE_POLL: Duration = Duration::from_millis(50);

/// Web seeds of a node ([`super::NodeConfig::web_seeds`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSeedConfig {
    /// Web seed URLs (BEP 19): usually the torrent's `url-list`
    /// ([`crate::wire::metainfo::Metainfo::web_seeds`]) and any the user adds.
    /// Only `http://` and `https://` URLs are used (TLS: see
    /// [`crate::discovery::tls_config`]); others are logged and skipped.
    /// Empty: no web seed.
    pub urls: Vec<String>,
    /// Concurrent requests (threads, keep-alive connections) per web seed,
    /// 1..=[`MAX_CONNECTIONS_PER_SEED`]. Default 2: one request's
    /// round trip overlaps the other's transfer.
    pub connections_per_seed: usize,
    /// When and what to fetch, and the back-off ([`crate::core::web_seed`]).
    pub policy: PolicyConfig,
    /// No response head, or no byte of the body, for this long: the request
    /// has stalled and fails (the web seed is backed off). Default
    /// [`STALL_TIMEOUT`].
    pub stall_timeout: Duration,
}

pub use http::STALL_TIMEOUT;

impl Default for WebSeedConfig {
    fn default() -> Self {
        WebSeedConfig {
            urls: Vec::new(),
            connections_per_seed: 2,
            policy: PolicyConfig::default(),
            stall_timeout: STALL_TIMEOUT,
        }
    }
}

/// One web seed's totals over a node's run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSeedStats {
    /// The web seed URL, as configured.
    pub url: String,
    /// Payload bytes received from it (pieces that failed the hash included).
    pub downloaded_bytes: u64,
    /// Pieces from it that passed their hash check.
    pub pieces: u32,
    /// Requests that failed (HTTP error or status, stall, wrong length),
    /// hash failures included.
    pub failures: u64,
    /// Pieces from it that failed their hash check (wrong bytes).
    pub hash_failures: u64,
    /// The latest failure, if any (URL and fault).
    pub last_error: Option<String>,
}

/// Counters of one web seed, shared by its threads and read by the owner.
#[derive(Debug)]
pub(crate) struct SeedCounters {
    url: String,
    downloaded_bytes: AtomicU64,
    pieces: AtomicU32,
    failures: AtomicU64,
    hash_failures: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl SeedCounters {
    fn new(url: String) -> Self {
        SeedCounters {
            url,
            downloaded_bytes: AtomicU64::new(0),
            pieces: AtomicU32::new(0),
            failures: AtomicU64::new(0),
            hash_failures: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }

    /// A snapshot.
    pub(crate) fn stats(&self) -> WebSeedStats {
        WebSeedStats {
            url: self.url.clone(),
            downloaded_bytes: self.downloaded_bytes.load(Ordering::Relaxed),
            pieces: self.pieces.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            hash_failures: self.hash_failures.load(Ordering::Relaxed),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }

    pub(crate) fn downloaded_bytes(&self) -> u64 {
        self.downloaded_bytes.load(Ordering::Relaxed)
    }

    pub(crate) fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    pub(crate) fn pieces(&self) -> u32 {
        self.pieces.load(Ordering::Relaxed)
    }
}

/// Sends a command to this torrent's handler on worker `w`, dropping it when
/// the worker's mailbox is full or the worker exited (a worker catches up
/// from `TorrentShared::have` on its tick).
pub(crate) type PostCommand = Arc<dyn Fn(usize, Command) + Send + Sync>;

/// The node's policy state, one for all fetcher threads (locked per pick and
/// per outcome, not during a fetch).
struct PolicyState {
    policy: WebSeedPolicy,
    rng: ChaCha8Rng,
    /// One per web seed.
    backoffs: Vec<Backoff>,
}

/// Everything a fetcher thread needs.
struct Fetcher {
    seed: usize,
    url: String,
    agent: ureq::Agent,
    storage: Arc<Storage>,
    shared: Arc<TorrentShared>,
    post: PostCommand,
    state: Arc<Mutex<PolicyState>>,
    stop: Arc<AtomicBool>,
    multi_file: bool,
    /// Our peer id, for our [`Share`] among the connected peers.
    peer_id: PeerId,
}

/// The running fetcher threads of a node's web seeds.
pub(crate) struct WebSeeds {
    stop: Arc<AtomicBool>,
    done: mpsc::Receiver<()>,
    threads: usize,
}

/// What a fetcher does next.
enum Step {
    Fetch(PieceIndex),
    Wait(Duration),
}

impl WebSeeds {
    /// Starts the fetchers of `config`'s usable URLs (none: `Ok(None)`);
    /// `expect_peers`: the node has peer addresses, trackers or the DHT.
    ///
    /// # Errors
    /// A thread could not be spawned.
    pub(crate) fn spawn(
        config: &WebSeedConfig,
        multi_file: bool,
        expect_peers: bool,
        peer_id: PeerId,
        storage: Arc<Storage>,
        shared: Arc<TorrentShared>,
        post: PostCommand,
    ) -> std::io::Result<Option<WebSeeds>> {
        let mut urls = Vec::new();
        for u in config
            .urls
            .iter()
            .take(crate::wire::metainfo::MAX_WEB_SEEDS)
        {
            let lower = u.to_ascii_lowercase();
            if lower.starts_with("http://") || lower.starts_with("https://") {
                if !urls.contains(u) {
                    urls.push(u.clone());
                }
            } else {
                shared.log(format!(
                    "web seed {u}: skipped (only http:// and https:// web seeds are supported)"
                ));
            }
        }
        let _ = shared
            .web_seeds
            .set(urls.iter().map(|u| SeedCounters::new(u.clone())).collect());
        if urls.is_empty() {
            return Ok(None);
        }
        let now = now(&shared);
        let state = Arc::new(Mutex::new(PolicyState {
            policy: WebSeedPolicy::new(now, config.policy, expect_peers),
            rng: ChaCha8Rng::seed_from_u64(rand::random()),
            backoffs: vec![Backoff::new(config.policy); urls.len()],
        }));
        let per_seed = config
            .connections_per_seed
            .clamp(1, MAX_CONNECTIONS_PER_SEED);
        let stop = Arc::new(AtomicBool::new(false));
        let (done_tx, done) = mpsc::channel();
        let piece_len = storage.layout().piece_len_bytes();
        let mut threads = 0;
        for (seed, url) in urls.iter().enumerate() {
            let agent = http::agent(piece_len, per_seed, config.stall_timeout);
            for c in 0..per_seed {
                let f = Fetcher {
                    seed,
                    url: url.clone(),
                    agent: agent.clone(),
                    storage: storage.clone(),
                    shared: shared.clone(),
                    post: post.clone(),
                    state: state.clone(),
                    stop: stop.clone(),
                    multi_file,
                    peer_id,
                };
                let done_tx = done_tx.clone();
                std::thread::Builder::new()
                    .name(format!("p2pe-webseed-{seed}-{c}"))
                    .spawn(move || {
                        f.run();
                        let _ = done_tx.send(());
                    })?;
                threads += 1;
            }
        }
        Ok(Some(WebSeeds {
            stop,
            done,
            threads,
        }))
    }

    /// Asks the fetchers to stop and waits for them, at most [`STOP_BOUND`].
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        let end = std::time::Instant::now() + STOP_BOUND;
        for _ in 0..self.threads {
            let left = end.saturating_duration_since(std::time::Instant::now());
            if self.done.recv_timeout(left).is_err() {
                break;
            }
        }
    }
}

impl Drop for WebSeeds {
    /// A node dropped without [`super::Node::shutdown`]: the fetchers stop
    /// after their current request (not waited for).
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// The node's core clock (as the workers read it).
fn now(shared: &TorrentShared) -> Time {
    Time::from_nanos(u64::try_from(shared.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX))
}

impl Fetcher {
    fn counters(&self) -> Option<&SeedCounters> {
        self.shared.web_seeds.get()?.get(self.seed)
    }

    fn run(&self) {
        while !self.stop.load(Ordering::Acquire) && !self.shared.complete.load(Ordering::Acquire) {
            match self.next_step() {
                Step::Wait(d) => std::thread::sleep(d.min(IDLE_POLL)),
                Step::Fetch(piece) => self.fetch(piece),
            }
        }
    }

    fn next_step(&self) -> Step {
        let share = {
            let ids = self
                .shared
                .peer_ids
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            Share::of_peer_ids(&self.peer_id, ids.keys())
        };
        let now = now(&self.shared);
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let PolicyState {
            policy,
            rng,
            backoffs,
        } = &mut *st;
        policy.handle_peers(now, self.shared.peers.load(Ordering::Acquire));
        policy.handle_progress(now, self.shared.verified_pieces.load(Ordering::Acquire));
        if let Some(b) = backoffs.get(self.seed) {
            if !b.is_ready(now) {
                return Step::Wait(b.retry_at().saturating_duration_since(now));
            }
        }
        // `--download-limit` covers web seed bytes too: a piece is requested
        // only while the node's download bucket allows, as a peer request is.
        let limit = self.shared.limits.get().and_then(|l| l.1.clone());
        if let Some(bucket) = &limit {
            let at = bucket.ready_at(now);
            if at > now {
                return Step::Wait(at.saturating_duration_since(now));
            }
        }
        match policy.pick(
            now,
            &self.shared.claims,
            &self.shared.availability,
            share,
            rng,
        ) {
            Some(p) => {
                if let Some(bucket) = &limit {
                    let len = self.storage.layout().piece_len(p).unwrap_or(0);
                    bucket.take(now, u64::from(len));
                }
                Step::Fetch(p)
            }
            None => Step::Wait(
                policy
                    .poll_timeout(now)
                    .map_or(IDLE_POLL, |t| t.saturating_duration_since(now)),
            ),
        }
    }

    /// Fetches, verifies and publishes `piece` (claimed by the policy).
    fn fetch(&self, piece: PieceIndex) {
        let Some(c) = self.counters() else {
            self.shared.claims.clear(piece);
            return;
        };
        let target = Target {
            storage: &self.storage,
            multi_file: self.multi_file,
            received_bytes: &c.downloaded_bytes,
            stop: &self.stop,
        };
        let fetched = http::fetch_piece(&self.agent, &self.url, piece, &target);
        let outcome = match fetched {
            Ok(()) => match retry_busy(|| self.storage.verify_piece(piece)) {
                Ok(true) => Ok(()),
                Ok(false) | Err(StoreError::PieceLost { .. }) => {
                    c.hash_failures.fetch_add(1, Ordering::Relaxed);
                    self.shared.hash_failures.fetch_add(1, Ordering::Relaxed);
                    Err(format!(
                        "{}: piece {} failed its hash check (wrong bytes)",
                        self.url, piece.0
                    ))
                }
                Err(e) => return self.fatal(piece, e),
            },
            Err(FetchError::AlreadyVerified) => return,
            Err(FetchError::Stopped) => {
                self.shared.claims.clear(piece);
                return;
            }
            Err(FetchError::Store(e)) => return self.fatal(piece, e),
            Err(FetchError::Http(e)) => Err(e),
        };
        match outcome {
            Ok(()) => {
                c.pieces.fetch_add(1, Ordering::Relaxed);
                self.with_backoff(|b, _| b.handle_success());
                let len = u64::from(self.storage.layout().piece_len(piece).unwrap_or(0));
                if self.shared.piece_verified(piece, len) {
                    for w in 0..self.shared.workers {
                        // Full or exited: a worker catches up from `TorrentShared::have`
                        // on its tick.
                        (self.post)(w, Command::PieceVerified(piece));
                    }
                }
            }
            Err(why) => {
                // The piece may come from anyone now, this seed included later.
                self.shared.claims.clear(piece);
                c.failures.fetch_add(1, Ordering::Relaxed);
                let wait = self.with_backoff(|b, now| b.handle_failure(now));
                self.shared.log(format!(
                    "web seed {why}; backing off {:.1}s",
                    wait.as_secs_f64()
                ));
                *c.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
            }
        }
    }

    /// Runs `f` on this seed's back-off at the current time.
    fn with_backoff<T: Default>(&self, f: impl FnOnce(&mut Backoff, Time) -> T) -> T {
        let now = now(&self.shared);
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.backoffs
            .get_mut(self.seed)
            .map_or_else(T::default, |b| f(b, now))
    }

    /// A disk error: record it (the node's owner stops) and stop fetching.
    fn fatal(&self, piece: PieceIndex, e: StoreError) {
        self.shared.claims.clear(piece);
        let mut slot = self.shared.fatal.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(e);
        }
        self.stop.store(true, Ordering::Release);
    }
}
