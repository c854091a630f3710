//! A blocking driver fetching a magnet link's info dictionary: dials the
//! link's peers (`x.pe`, `--peer`) and the peers its trackers and the DHT
//! (BEP 5, when asked) return,
//! speaks the BEP 3 handshake with the BEP 10 bit and a BEP 10 handshake
//! offering `ut_metadata`, and runs the sans-IO
//! [`crate::core::metadata::MetadataFetch`] over them. It runs before the
//! node starts (a node needs the torrent's piece count and files), on std
//! threads: one per connection (reading), one for the trackers, and the
//! caller's thread deciding (the machine) and writing.
//!
//! Dialling follows the node's address book ([`crate::core::address_book`],
//! sans-IO): an address that does not connect is redialled with back-off and
//! given up after 3 failures; one dropped after its handshakes is not
//! redialled. Bounds: at most [`FetchConfig::max_connections`] connections at once;
//! at most [`MAX_KNOWN_PEERS`] addresses are learned; at most 1,024 events wait for the deciding thread (readers
//! block beyond); frames above [`MAX_FRAME_LEN_BYTES`] close
//! the connection; every blocking read and write has a timeout, and the
//! whole fetch ends at [`FetchConfig::timeout`]. A peer whose metadata does
//! not hash to the info-hash is dropped and its address never dialled
//! again (it is "banned" for the fetch; the node that follows starts from
//! the addresses [`Fetched::peers`] lists, which leaves banned ones out).
//!
//! During the fetch we have nothing to serve: `ut_metadata` requests get a
//! `reject`, and we send no `bitfield` (BEP 9: a peer without the metadata
//! does not know the piece count) and do not set the BEP 6 bit (which would
//! oblige us to send one).

use std::collections::{BTreeMap, HashSet};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mainline::Id;

use super::dht::{self, DhtConfig};
use super::tracker_client::{ClientConfig, TrackerClient};
use super::tracker_io::TrackerDriver;
use crate::base::PeerId;
use crate::core::address_book::{AddressBook, Admission, BookConfig, EntryId, Source};
use crate::core::metadata::{
    MetadataAction, MetadataConfig, MetadataDropReason, MetadataFetch, MetadataStats,
};
use crate::core::{PeerKey, Time};
use crate::wire::metainfo::InfoHash;
use crate::wire::peer::metadata::{MetadataMessage, UT_METADATA};
use crate::wire::peer::{ExtendedHandshake, ExtendedMessage, Handshake, Message, MessageId};

/// Extended id we assign to `ut_metadata` in our handshake's `m` while
/// fetching (the node uses its own ids once it runs).
const OUR_METADATA_ID: u8 = 3;

/// Largest frame read from a peer while fetching, in bytes: a metadata
/// `data` message is 16 KiB and a small dictionary; a `bitfield` of a
/// 1M-piece torrent is 128 KiB. Larger frames close the connection.
pub const MAX_FRAME_LEN_BYTES: u32 = 256 * 1024;

/// How long a write of one request may block (a few bytes; a peer that
/// does not read them for this long is dropped).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a peer has for both handshakes (BEP 3 and BEP 10) before its
/// connection is closed, as the node's `SlotConfig` handshake timeout: a
/// silent peer must not hold one of the few connection slots for the whole
/// fetch.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Time between two DHT look-ups while fetching (as the node's retry while
/// it has no peers).
const DHT_RETRY: Duration = Duration::from_secs(2);

/// How long the tracker thread tries to deliver its `stopped` announce.
const STOP_BOUND: Duration = Duration::from_secs(3);

/// Addresses learned at most (given, and from trackers and the DHT); later
/// ones are ignored. A fetch dials a few dozen at most before its timeout.
pub const MAX_KNOWN_PEERS: usize = 4096;

/// Events queued from the connection, tracker and DHT threads at most; a
/// reader blocks (and so stops reading its socket) while the queue is full.
const MAX_QUEUED_EVENTS: usize = 1024;

/// When the connection bound is reached, a due address is looked at again
/// this much later.
const FULL_RECHECK: Duration = Duration::from_secs(1);

/// Longest wait of the deciding loop between two looks at the clock.
const TICK: Duration = Duration::from_millis(100);

/// Settings of [`fetch_metadata`].
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// Our peer id (BEP 3) while fetching. Use another one than the node
    /// that follows: a seed still holding a fetch connection would take the
    /// node's connection under the same id for a duplicate and close it.
    pub peer_id: PeerId,
    /// The port announced to trackers while fetching (the node's listen
    /// port if known, else 0). A `stopped` announce ends the fetch's
    /// announces, so the entry does not outlive the fetch.
    pub port: u16,
    /// The whole fetch gives up after this long.
    pub timeout: Duration,
    /// Bound on one TCP connect.
    pub connect_timeout: Duration,
    /// Connections (dialling or open) at once.
    pub max_connections: usize,
    /// Tracker client settings for the announces made while fetching.
    pub tracker: ClientConfig,
    /// The fetch machine's settings (size bound, request timeout).
    pub metadata: MetadataConfig,
    /// Seed of the tracker client's random choices.
    pub seed: u64,
    /// Also look the info-hash's peers up in the DHT (BEP 5; `None`: no
    /// DHT). The lookup node runs on an ephemeral port of
    /// [`DhtConfig::listen`]'s address, so it never takes the port the
    /// node's own DHT node will bind; in server mode, as the node's, so that
    /// in a closed cluster a seed's announce can be stored on it (a node
    /// never stores its own: with no other node, nobody could find it).
    pub dht: Option<DhtConfig>,
    /// Set (e.g. by a SIGINT handler) to end the fetch early with
    /// [`FetchError::Cancelled`]; looked at every 100 ms.
    pub cancel: Option<Arc<AtomicBool>>,
}

impl FetchConfig {
    /// Defaults: 60 s in all, 5 s per connect, 16 connections, default
    /// tracker client and metadata settings.
    pub fn new(peer_id: PeerId) -> Self {
        Self {
            peer_id,
            port: 0,
            timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            max_connections: 16,
            tracker: ClientConfig::default(),
            metadata: MetadataConfig::default(),
            seed: 0,
            dht: None,
            cancel: None,
        }
    }
}

/// A fetched and verified info dictionary.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The raw bencoded info dictionary; hashes to the info-hash.
    pub info_bytes: Vec<u8>,
    /// Peers met while fetching (given and learned from trackers), banned
    /// ones left out: the node may dial them.
    pub peers: Vec<SocketAddr>,
}

/// Why [`fetch_metadata`] failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    /// [`FetchConfig::cancel`] was set.
    #[error("metadata fetch cancelled")]
    Cancelled,
    /// Neither peers, trackers nor the DHT to ask.
    #[error("no peers, trackers or DHT to ask for the metadata")]
    NoSources,
    /// Every peer was tried and none delivered, and no tracker or DHT can
    /// bring more.
    #[error(
        "no peer delivered metadata matching info-hash {info_hash}: {}",
        summary(*dialled, stats)
    )]
    Exhausted {
        /// The info-hash asked for.
        info_hash: InfoHash,
        /// Addresses dialled.
        dialled: u32,
        /// What became of the peers.
        stats: MetadataStats,
    },
    /// The fetch's time ran out.
    #[error(
        "no metadata for info-hash {info_hash} within {:.0}s: {}",
        timeout.as_secs_f64(),
        summary(*dialled, stats)
    )]
    Timeout {
        /// The info-hash asked for.
        info_hash: InfoHash,
        /// [`FetchConfig::timeout`].
        timeout: Duration,
        /// Addresses dialled.
        dialled: u32,
        /// What became of the peers.
        stats: MetadataStats,
    },
}

fn summary(dialled: u32, s: &MetadataStats) -> String {
    format!(
        "{dialled} peer(s) dialled, {} answered the handshake, {} without metadata, \
         {} banned for metadata not matching the info-hash, {} failed (reject, timeout, protocol)",
        s.peers_connected, s.peers_without_metadata, s.peers_banned, s.peers_failed
    )
}

/// What the connection and tracker threads report.
enum Event {
    /// Handshakes done; `stream` is the connection's write half.
    Connected(PeerKey, ExtendedHandshake, TcpStream),
    Metadata(PeerKey, MetadataMessage),
    /// The connection ended (or never opened), with why.
    Closed(PeerKey, String),
    /// Peers from a tracker.
    Peers(Vec<SocketAddr>),
    /// A tracker warning.
    Warning(String),
}

/// One connection, as the deciding loop sees it.
struct Conn {
    addr: SocketAddr,
    /// Its address-book entry.
    entry: EntryId,
    /// Set once its handshakes are done.
    stream: Option<TcpStream>,
}

/// Fetches the info dictionary of `info_hash` from `peers` and the peers
/// `trackers` (BEP 12 tiers) return; `log` receives progress lines (peers
/// dropped or banned, tracker warnings).
///
/// # Errors
/// [`FetchError::NoSources`] with no peers and no trackers;
/// [`FetchError::Exhausted`] when every peer failed and no tracker is
/// configured; [`FetchError::Timeout`] after [`FetchConfig::timeout`];
/// [`FetchError::Cancelled`] once [`FetchConfig::cancel`] is set.
pub fn fetch_metadata(
    info_hash: InfoHash,
    peers: &[SocketAddr],
    trackers: &[Vec<String>],
    config: &FetchConfig,
    log: &mut dyn FnMut(String),
) -> Result<Fetched, FetchError> {
    let has_trackers = trackers.iter().any(|t| !t.is_empty());
    if peers.is_empty() && !has_trackers && config.dht.is_none() {
        return Err(FetchError::NoSources);
    }
    let (tx, rx) = mpsc::sync_channel(MAX_QUEUED_EVENTS);
    let stop = Arc::new(AtomicBool::new(false));
    if has_trackers {
        spawn_tracker(info_hash, trackers, config, tx.clone(), stop.clone());
    }
    if let Some(dht) = &config.dht {
        spawn_dht(info_hash, dht, tx.clone(), stop.clone());
    }
    let mut f = Fetcher {
        info_hash,
        config,
        epoch: Instant::now(),
        fetch: MetadataFetch::new(info_hash, config.metadata),
        // Trackers or the DHT may still bring peers.
        has_trackers: has_trackers || config.dht.is_some(),
        book: AddressBook::new(BookConfig::default()),
        met: Vec::new(),
        banned: HashSet::new(),
        conns: BTreeMap::new(),
        next_key: 0,
        dialled: 0,
        tx,
        log,
    };
    f.learn(peers);
    let deadline = f.epoch + config.timeout;
    let result = loop {
        f.run_actions();
        if let Some(done) = f.finished(deadline) {
            break done;
        }
        f.dial();
        let mut wait = deadline.saturating_duration_since(Instant::now()).min(TICK);
        for at in [f.fetch.poll_timeout(), f.book.poll_timeout()]
            .into_iter()
            .flatten()
        {
            wait = wait.min(at.saturating_duration_since(f.now()));
        }
        if let Ok(event) = rx.recv_timeout(wait) {
            f.on_event(event);
        }
        let now = f.now();
        if f.fetch.poll_timeout().is_some_and(|at| at <= now) {
            f.fetch.handle_timeout(now);
        }
    };
    stop.store(true, Ordering::Release);
    for c in f.conns.values() {
        close(c);
    }
    result
}

/// The deciding side of [`fetch_metadata`]: the machine, the connections
/// and the addresses.
struct Fetcher<'a> {
    info_hash: InfoHash,
    config: &'a FetchConfig,
    epoch: Instant,
    fetch: MetadataFetch,
    /// Trackers or the DHT may still bring peers (the fetch then waits for
    /// them until its timeout).
    has_trackers: bool,
    /// Addresses to dial and their back-off ([`crate::core::address_book`]):
    /// one that fails to connect is redialled after 0.4 s, then 0.8 s, and
    /// forgotten after 3 failures; one dropped after its handshakes is not
    /// redialled (a tracker naming it again after the book forgot it, 300 s
    /// on, brings it back).
    book: AddressBook,
    /// Addresses learned, in order, for [`Fetched::peers`].
    met: Vec<SocketAddr>,
    banned: HashSet<SocketAddr>,
    conns: BTreeMap<PeerKey, Conn>,
    next_key: u64,
    dialled: u32,
    tx: mpsc::SyncSender<Event>,
    log: &'a mut dyn FnMut(String),
}

impl Fetcher<'_> {
    /// The machine's clock: time since the fetch began.
    fn now(&self) -> Time {
        Time::from_nanos(u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    /// Admits new, unbanned addresses to the book, due at once. Given
    /// peers count as tracker ones: after 3 failed dials they are given up,
    /// so a fetch of dead peers ends in about a second.
    fn learn(&mut self, addrs: &[SocketAddr]) {
        let now = self.now();
        for a in addrs {
            if self.met.len() >= MAX_KNOWN_PEERS {
                break;
            }
            if self.banned.contains(a) {
                continue;
            }
            if let Admission::New(i) = self.book.admit(*a, Source::Tracker) {
                self.book.defer(i, now);
                if !self.met.contains(a) {
                    self.met.push(*a);
                }
            }
        }
    }

    /// Runs what the machine decided: sends and disconnects (bans).
    fn run_actions(&mut self) {
        while let Some(action) = self.fetch.poll_action() {
            match action {
                MetadataAction::Send { peer, ext_id, msg } => {
                    let Some(c) = self.conns.get_mut(&peer) else {
                        continue;
                    };
                    let sent = c.stream.as_mut().map(|s| send_metadata(s, ext_id, &msg));
                    if let Some(Err(e)) = sent {
                        close(c);
                        (self.log)(format!("metadata: write to {} failed: {e}", c.addr));
                    }
                }
                MetadataAction::Disconnect { peer, reason } => {
                    if let Some(c) = self.conns.get(&peer) {
                        if reason.is_ban() {
                            self.banned.insert(c.addr);
                            self.book.retire(self.now(), c.entry);
                        }
                        (self.log)(describe(c.addr, &reason));
                        close(c);
                    }
                }
            }
        }
    }

    /// The fetch's result once it is decided: the verified metadata, every
    /// source failed (without trackers to bring more), or time is up.
    fn finished(&mut self, deadline: Instant) -> Option<Result<Fetched, FetchError>> {
        if let Some(info_bytes) = self.fetch.take_metadata() {
            let banned = &self.banned;
            let peers = self.met.iter().filter(|a| !banned.contains(a));
            return Some(Ok(Fetched {
                info_bytes,
                peers: peers.copied().collect(),
            }));
        }
        if self
            .config
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
        {
            return Some(Err(FetchError::Cancelled));
        }
        let (info_hash, dialled, stats) = (self.info_hash, self.dialled, self.fetch.stats());
        let dial_planned = self.book.poll_timeout().is_some();
        if self.conns.is_empty() && !dial_planned && !self.has_trackers {
            return Some(Err(FetchError::Exhausted {
                info_hash,
                dialled,
                stats,
            }));
        }
        (Instant::now() >= deadline).then_some(Err(FetchError::Timeout {
            info_hash,
            timeout: self.config.timeout,
            dialled,
            stats,
        }))
    }

    /// Dials the book's due addresses while below
    /// [`FetchConfig::max_connections`]; the others wait [`FULL_RECHECK`].
    fn dial(&mut self) {
        let now = self.now();
        self.book.handle_timeout(now);
        for i in self.book.due(now) {
            let Some(addr) = self.book.get(i).map(|e| e.addr) else {
                continue;
            };
            if self.conns.len() >= self.config.max_connections.max(1) {
                self.book.defer(i, now + FULL_RECHECK);
                continue;
            }
            let key = PeerKey(self.next_key);
            self.next_key += 1;
            self.dialled += 1;
            match spawn_conn(key, addr, self.info_hash, self.config, self.tx.clone()) {
                Ok(()) => {
                    self.book.on_dialled(i);
                    let conn = Conn {
                        addr,
                        entry: i,
                        stream: None,
                    };
                    self.conns.insert(key, conn);
                }
                Err(e) => {
                    self.book.on_closed(now, i, true);
                    (self.log)(format!("metadata: {addr}: cannot start a thread: {e}"));
                }
            }
        }
    }

    /// Hands a connection's or tracker's report to the machine.
    fn on_event(&mut self, event: Event) {
        let now = self.now();
        match event {
            Event::Connected(key, theirs, stream) => {
                if let Some(c) = self.conns.get_mut(&key) {
                    c.stream = Some(stream);
                    self.book.on_handshake(c.entry);
                    self.fetch.handle_peer_connected(now, key, &theirs);
                }
            }
            Event::Metadata(key, msg) => {
                if self.conns.contains_key(&key) {
                    self.fetch.handle_message(now, key, msg);
                }
            }
            Event::Closed(key, why) => {
                if let Some(c) = self.conns.remove(&key) {
                    if !why.is_empty() {
                        (self.log)(format!("metadata: {}: {why}", c.addr));
                    }
                    if c.stream.is_some() {
                        // It answered and was dropped (or left): not redialled.
                        self.book.retire(now, c.entry);
                    } else {
                        self.book.on_closed(now, c.entry, true);
                    }
                    self.fetch.handle_peer_disconnected(now, key);
                }
            }
            Event::Peers(addrs) => self.learn(&addrs),
            Event::Warning(w) => (self.log)(format!("tracker: {w}")),
        }
    }
}

/// A log line for a dropped peer.
fn describe(addr: SocketAddr, reason: &MetadataDropReason) -> String {
    match reason {
        MetadataDropReason::WrongMetadata => format!(
            "metadata: {addr} sent metadata that does not match the info-hash: dropped and banned"
        ),
        other => format!("metadata: {addr} dropped ({other:?})"),
    }
}

/// Shuts the connection down (its reading thread then ends).
fn close(c: &Conn) {
    if let Some(s) = &c.stream {
        let _ = s.shutdown(Shutdown::Both);
    }
}

/// Writes one `ut_metadata` message as an extended message with `ext_id`.
fn send_metadata(s: &mut TcpStream, ext_id: u8, msg: &MetadataMessage) -> io::Result<()> {
    let mut buf = Vec::new();
    Message::Extended(ExtendedMessage::Other {
        id: ext_id,
        payload: msg.to_payload(),
    })
    .encode(&mut buf)
    .map_err(io::Error::other)?;
    s.write_all(&buf)
}

/// Announces to `trackers` on a thread until `stop` is set (or the fetch
/// is gone), passing peers and warnings on; then announces `stopped`
/// (bounded by [`STOP_BOUND`]; the thread is never joined, so the fetch's
/// caller does not wait for it).
fn spawn_tracker(
    info_hash: InfoHash,
    trackers: &[Vec<String>],
    config: &FetchConfig,
    tx: mpsc::SyncSender<Event>,
    stop: Arc<AtomicBool>,
) {
    let mut client = TrackerClient::new(
        config.tracker.clone(),
        trackers,
        info_hash,
        config.peer_id,
        config.port,
        config.seed,
    );
    // `left` is unknown before the metadata; 0 would announce a seeder,
    // which trackers may answer with no seeders.
    client.set_progress(0, 0, 1);
    let http_timeout = config.tracker.http_timeout;
    let warn_tx = tx.clone();
    let spawned = std::thread::Builder::new()
        .name("p2pe-metadata-tracker".into())
        .spawn(move || {
            let mut driver = TrackerDriver::new(client, http_timeout);
            while !stop.load(Ordering::Acquire) {
                driver.step(TICK);
                let c = driver.client_mut();
                let mut gone = false;
                while let Some(w) = c.poll_warning() {
                    gone |= tx.send(Event::Warning(w)).is_err();
                }
                let peers = c.poll_peers();
                gone |= !peers.is_empty() && tx.send(Event::Peers(peers)).is_err();
                if gone {
                    break;
                }
            }
            let now = driver.now();
            driver.client_mut().handle_stopped(now);
            let end = Instant::now() + STOP_BOUND;
            while !driver.client_mut().is_done() && Instant::now() < end {
                driver.step(TICK);
            }
        });
    // A tracker thread that cannot start is not fatal: the given peers remain.
    if let Err(e) = spawned {
        let _ = warn_tx.try_send(Event::Warning(format!("cannot start: {e}")));
    }
}

/// Looks the info-hash's peers up in the DHT on a thread, every
/// [`DHT_RETRY`], until `stop` is set (or the fetch is gone).
#[allow(deprecated)] // mainline's blocking API: a plain thread, as in [`super::dht`]
fn spawn_dht(
    info_hash: InfoHash,
    config: &DhtConfig,
    tx: mpsc::SyncSender<Event>,
    stop: Arc<AtomicBool>,
) {
    // Any free port on the configured address: never the node's own.
    let config = DhtConfig {
        listen: std::net::SocketAddrV4::new(*config.listen.ip(), 0),
        ..config.clone()
    };
    let warn_tx = tx.clone();
    let spawned = std::thread::Builder::new()
        .name("p2pe-metadata-dht".into())
        .spawn(move || {
            let (dht, id) = match (dht::build(&config), Id::from_bytes(info_hash.0)) {
                (Ok(d), Ok(id)) => (d, id),
                (Err(e), _) => {
                    let _ = tx.send(Event::Warning(format!("dht: cannot start: {e}")));
                    return;
                }
                (_, Err(e)) => {
                    let _ = tx.send(Event::Warning(format!("dht: {e}")));
                    return;
                }
            };
            while !stop.load(Ordering::Acquire) {
                let mut found = Vec::new();
                for batch in dht.get_peers(id) {
                    found.extend(batch.into_iter().map(SocketAddr::V4));
                }
                if !found.is_empty() && tx.send(Event::Peers(found)).is_err() {
                    return;
                }
                let end = Instant::now() + DHT_RETRY;
                while Instant::now() < end && !stop.load(Ordering::Acquire) {
                    std::thread::sleep(TICK);
                }
            }
        });
    if let Err(e) = spawned {
        let _ = warn_tx.try_send(Event::Warning(format!("dht: cannot start: {e}")));
    }
}

/// Dials `addr` on a thread: handshakes, then reads frames and reports
/// them until the connection ends.
///
/// # Errors
/// The thread cannot be spawned (the caller forgets the connection: the
/// deciding thread must not queue an event it alone consumes).
fn spawn_conn(
    key: PeerKey,
    addr: SocketAddr,
    info_hash: InfoHash,
    config: &FetchConfig,
    tx: mpsc::SyncSender<Event>,
) -> io::Result<()> {
    let (peer_id, connect_timeout, read_timeout) =
        (config.peer_id, config.connect_timeout, config.timeout);
    let thread_tx = tx;
    std::thread::Builder::new()
        .name("p2pe-metadata-peer".into())
        .spawn(move || {
            let why = match converse(
                key,
                addr,
                info_hash,
                peer_id,
                connect_timeout,
                read_timeout,
                &thread_tx,
            ) {
                Ok(()) => String::new(),
                Err(e) => e.to_string(),
            };
            let _ = thread_tx.send(Event::Closed(key, why));
        })
        .map(drop)
}

fn bad_data(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

/// One connection's life: connect, both handshakes, then every frame.
fn converse(
    key: PeerKey,
    addr: SocketAddr,
    info_hash: InfoHash,
    peer_id: PeerId,
    connect_timeout: Duration,
    read_timeout: Duration,
    tx: &mpsc::SyncSender<Event>,
) -> io::Result<()> {
    let mut s = TcpStream::connect_timeout(&addr, connect_timeout)?;
    s.set_read_timeout(Some(
        HANDSHAKE_TIMEOUT
            .min(read_timeout)
            .max(Duration::from_millis(1)),
    ))?;
    s.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let _ = s.set_nodelay(true);
    let mut ours = Handshake::new(info_hash, peer_id);
    ours.set_fast(false);
    let mut hs = ExtendedHandshake::default();
    hs.m.insert(UT_METADATA.into(), OUR_METADATA_ID);
    hs.v = Some(concat!("p2pe ", env!("CARGO_PKG_VERSION")).to_string());
    let mut out = ours.to_bytes().to_vec();
    Message::Extended(ExtendedMessage::Handshake(hs))
        .encode(&mut out)
        .map_err(io::Error::other)?;
    s.write_all(&out)?;
    let mut raw = [0u8; Handshake::LEN_BYTES];
    s.read_exact(&mut raw)?;
    let theirs = Handshake::decode(&raw).map_err(|e| bad_data(e.to_string()))?;
    if theirs.info_hash != info_hash {
        return Err(bad_data("handshake for another info-hash"));
    }
    if !theirs.supports_extended() {
        return Err(bad_data(
            "no BEP 10 extension protocol: cannot send metadata",
        ));
    }
    let mut connected = false;
    loop {
        let mut len = [0u8; 4];
        s.read_exact(&mut len)?;
        let len = u32::from_be_bytes(len);
        if len == 0 {
            continue; // keep-alive
        }
        if len > MAX_FRAME_LEN_BYTES {
            return Err(bad_data(format!("frame of {len} bytes")));
        }
        let mut body = vec![0u8; len as usize];
        s.read_exact(&mut body)?;
        let (Some(&id), Some(&ext_id)) = (body.first(), body.get(1)) else {
            continue;
        };
        if id != MessageId::Extended as u8 {
            continue; // bitfield, have, …: nothing to us before the metadata
        }
        let payload = Bytes::from(body).slice(2..);
        let event = if ext_id == 0 {
            if connected {
                continue; // a repeated handshake changes nothing we use
            }
            connected = true;
            let hs =
                ExtendedHandshake::from_bencode(&payload).map_err(|e| bad_data(e.to_string()))?;
            Event::Connected(key, hs, s.try_clone()?)
        } else if ext_id == OUR_METADATA_ID {
            let msg =
                MetadataMessage::from_payload(&payload).map_err(|e| bad_data(e.to_string()))?;
            Event::Metadata(key, msg)
        } else {
            continue;
        };
        if tx.send(event).is_err() {
            return Ok(()); // the fetch is over
        }
    }
}
