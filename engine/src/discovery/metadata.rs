//! A blocking driver fetching a magnet link's info dictionary: dials the
//! link's peers (`x.pe`, `--peer`) and the peers its trackers return,
//! speaks the BEP 3 handshake with the BEP 10 bit and a BEP 10 handshake
//! offering `ut_metadata`, and runs the sans-IO
//! [`crate::core::metadata::MetadataFetch`] over them. It runs before the
//! node starts (a node needs the torrent's piece count and files), on std
//! threads: one per connection (reading), one for the trackers, and the
//! caller's thread deciding (the machine) and writing.
//!
//! Bounds: at most [`FetchConfig::max_connections`] connections at once;
//! each address is dialled once; frames above [`MAX_FRAME_LEN_BYTES`] close
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

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::tracker_client::{ClientConfig, TrackerClient};
use super::tracker_io::TrackerDriver;
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

/// Longest wait of the deciding loop between two looks at the clock.
const TICK: Duration = Duration::from_millis(100);

/// Settings of [`fetch_metadata`].
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// Our peer id (BEP 3); the node that follows should use the same.
    pub peer_id: [u8; 20],
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
}

impl FetchConfig {
    /// Defaults: 60 s in all, 5 s per connect, 16 connections, default
    /// tracker client and metadata settings.
    pub fn new(peer_id: [u8; 20]) -> Self {
        Self {
            peer_id,
            timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            max_connections: 16,
            tracker: ClientConfig::default(),
            metadata: MetadataConfig::default(),
            seed: 0,
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
    /// Neither peers nor trackers to ask.
    #[error("no peers or trackers to ask for the metadata")]
    NoSources,
    /// Every peer was tried and none delivered, and no tracker can bring more.
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
/// configured; [`FetchError::Timeout`] after [`FetchConfig::timeout`].
pub fn fetch_metadata(
    info_hash: InfoHash,
    peers: &[SocketAddr],
    trackers: &[Vec<String>],
    config: &FetchConfig,
    log: &mut dyn FnMut(String),
) -> Result<Fetched, FetchError> {
    let has_trackers = trackers.iter().any(|t| !t.is_empty());
    if peers.is_empty() && !has_trackers {
        return Err(FetchError::NoSources);
    }
    let epoch = Instant::now();
    let now = || Time::from_nanos(u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX));
    let deadline = epoch + config.timeout;
    let (tx, rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    if has_trackers {
        spawn_tracker(info_hash, trackers, config, tx.clone(), stop.clone());
    }
    let mut fetch = MetadataFetch::new(info_hash, config.metadata);
    let mut queue: VecDeque<SocketAddr> = VecDeque::new();
    let mut known: HashSet<SocketAddr> = HashSet::new();
    let mut met: Vec<SocketAddr> = Vec::new();
    let mut banned: HashSet<SocketAddr> = HashSet::new();
    let mut conns: BTreeMap<PeerKey, Conn> = BTreeMap::new();
    let mut next_key = 0u64;
    let mut dialled = 0u32;
    let mut learn = |addrs: &[SocketAddr], queue: &mut VecDeque<SocketAddr>, met: &mut Vec<_>| {
        for a in addrs {
            if known.insert(*a) {
                queue.push_back(*a);
                met.push(*a);
            }
        }
    };
    learn(peers, &mut queue, &mut met);
    let result = loop {
        // Run what the machine decided.
        while let Some(action) = fetch.poll_action() {
            match action {
                MetadataAction::Send { peer, ext_id, msg } => {
                    let sent = conns
                        .get_mut(&peer)
                        .and_then(|c| c.stream.as_mut())
                        .map(|s| send_metadata(s, ext_id, &msg));
                    if let Some(Err(e)) = sent {
                        if let Some(c) = conns.get(&peer) {
                            close(c);
                        }
                        log(format!("metadata: write to peer failed: {e}"));
                    }
                }
                MetadataAction::Disconnect { peer, reason } => {
                    if let Some(c) = conns.get(&peer) {
                        if reason.is_ban() {
                            banned.insert(c.addr);
                        }
                        log(describe(c.addr, &reason));
                        close(c);
                    }
                }
            }
        }
        if let Some(info_bytes) = fetch.take_metadata() {
            let peers = met
                .iter()
                .filter(|a| !banned.contains(a))
                .copied()
                .collect();
            break Ok(Fetched { info_bytes, peers });
        }
        // Dial while below the bound.
        while conns.len() < config.max_connections.max(1) {
            let Some(addr) = queue.pop_front() else {
                break;
            };
            let key = PeerKey(next_key);
            next_key += 1;
            dialled += 1;
            conns.insert(key, Conn { addr, stream: None });
            spawn_conn(key, addr, info_hash, config, tx.clone());
        }
        if conns.is_empty() && queue.is_empty() && !has_trackers {
            break Err(FetchError::Exhausted {
                info_hash,
                dialled,
                stats: fetch.stats(),
            });
        }
        let t = Instant::now();
        if t >= deadline {
            break Err(FetchError::Timeout {
                info_hash,
                timeout: config.timeout,
                dialled,
                stats: fetch.stats(),
            });
        }
        let mut wait = deadline.saturating_duration_since(t).min(TICK);
        if let Some(at) = fetch.poll_timeout() {
            wait = wait.min(at.saturating_duration_since(now()));
        }
        match rx.recv_timeout(wait) {
            Ok(Event::Connected(key, theirs, stream)) => {
                if let Some(c) = conns.get_mut(&key) {
                    c.stream = Some(stream);
                    fetch.handle_peer_connected(now(), key, &theirs);
                }
            }
            Ok(Event::Metadata(key, msg)) => {
                if conns.contains_key(&key) {
                    fetch.handle_message(now(), key, msg);
                }
            }
            Ok(Event::Closed(key, why)) => {
                if let Some(c) = conns.remove(&key) {
                    if !why.is_empty() {
                        log(format!("metadata: {}: {why}", c.addr));
                    }
                    fetch.handle_peer_disconnected(now(), key);
                }
            }
            Ok(Event::Peers(addrs)) => {
                let fresh: Vec<SocketAddr> =
                    addrs.into_iter().filter(|a| !banned.contains(a)).collect();
                learn(&fresh, &mut queue, &mut met);
            }
            Ok(Event::Warning(w)) => log(format!("tracker: {w}")),
            Err(mpsc::RecvTimeoutError::Timeout | mpsc::RecvTimeoutError::Disconnected) => {}
        }
        if fetch.poll_timeout().is_some_and(|at| at <= now()) {
            fetch.handle_timeout(now());
        }
    };
    stop.store(true, Ordering::Release);
    for c in conns.values() {
        close(c);
    }
    result
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
/// is gone), passing peers and warnings on.
fn spawn_tracker(
    info_hash: InfoHash,
    trackers: &[Vec<String>],
    config: &FetchConfig,
    tx: mpsc::Sender<Event>,
    stop: Arc<AtomicBool>,
) {
    let mut client = TrackerClient::new(
        config.tracker.clone(),
        trackers,
        info_hash,
        config.peer_id,
        0,
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
                while let Some(w) = c.poll_warning() {
                    if tx.send(Event::Warning(w)).is_err() {
                        return;
                    }
                }
                let peers = c.poll_peers();
                if !peers.is_empty() && tx.send(Event::Peers(peers)).is_err() {
                    return;
                }
            }
        });
    // A tracker thread that cannot start is not fatal: the given peers remain.
    if let Err(e) = spawned {
        let _ = warn_tx.send(Event::Warning(format!("cannot start: {e}")));
    }
}

/// Dials `addr` on a thread: handshakes, then reads frames and reports
/// them until the connection ends.
fn spawn_conn(
    key: PeerKey,
    addr: SocketAddr,
    info_hash: InfoHash,
    config: &FetchConfig,
    tx: mpsc::Sender<Event>,
) {
    let (peer_id, connect_timeout, read_timeout) =
        (config.peer_id, config.connect_timeout, config.timeout);
    let thread_tx = tx.clone();
    let spawned = std::thread::Builder::new()
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
        });
    if let Err(e) = spawned {
        let _ = tx.send(Event::Closed(key, format!("spawn: {e}")));
    }
}

fn bad_data(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

/// One connection's life: connect, both handshakes, then every frame.
fn converse(
    key: PeerKey,
    addr: SocketAddr,
    info_hash: InfoHash,
    peer_id: [u8; 20],
    connect_timeout: Duration,
    read_timeout: Duration,
    tx: &mpsc::Sender<Event>,
) -> io::Result<()> {
    let mut s = TcpStream::connect_timeout(&addr, connect_timeout)?;
    s.set_read_timeout(Some(read_timeout.max(Duration::from_millis(1))))?;
    s.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let _ = s.set_nodelay(true);
    let mut ours = Handshake::new(info_hash.0, peer_id);
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
    if theirs.info_hash != info_hash.0 {
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
