//! Sockets for the embedded tracker: UDP (BEP 15) and HTTP (BEP 3, BEP 48) on
//! the same port number, blocking std sockets and threads (control plane).
//!
//! - UDP: `udp_threads` sockets bound to one address with `SO_REUSEPORT`, one
//!   thread each; the kernel spreads clients over them.
//! - HTTP: HTTP/1.1 with keep-alive on the io_uring runtime, `http_threads`
//!   workers (see `http` for its bounds and timeouts).
//! - Swarm state: [`Tracker`]s sharded by the info-hash's first byte, each
//!   behind a mutex, so threads rarely contend; a sweeper thread expires peers.
//!
//! Every thread polls a stop flag at least every [`POLL_PERIOD`];
//! [`TrackerServer::shutdown`] sets it, stops the runtime and joins them.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::RngExt;
use smallvec::SmallVec;
use socket2::{Domain, Protocol, Socket, Type};

use super::http::{HttpHandler, RECV_BUF_BYTES};
pub use super::http::{IDLE_TIMEOUT, MAX_CONNS, MAX_QUEUED_BYTES, MAX_REQUEST_BYTES};
use super::{ConnectionIds, Tracker, TrackerConfig};
use crate::core::time::Time;
use crate::rt::{RuntimeConfig, RuntimeHandle};
use crate::wire::metainfo::InfoHash;
use crate::wire::tracker::http::failure_to_bencode;
use crate::wire::tracker::query::parse_scrape_query;
use crate::wire::tracker::udp::{PeerFamily, Request, Response, MAX_PACKET_BYTES};
use crate::wire::tracker::{Announce, ScrapeResponse};

/// How often blocked threads wake to check the stop flag.
pub const POLL_PERIOD: Duration = Duration::from_millis(200);

/// Number of swarm shards (mutexes); a power of two above the thread count.
const SHARDS: usize = 16;

/// How to run the tracker.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Address for both UDP and TCP; port 0 picks a free port (the same for both).
    pub listen: SocketAddr,
    /// Swarm settings; `max_peers` and `max_swarms` hold for the whole
    /// server (split over its shards).
    pub tracker: TrackerConfig,
    /// UDP receive threads (sockets with `SO_REUSEPORT`), at least 1.
    pub udp_threads: usize,
    /// HTTP worker threads (io_uring runtime workers), at least 1.
    pub http_threads: usize,
}

/// The tracker's swarms (sharded), connection ids and counters, shared by its
/// UDP, HTTP and sweep threads.
pub(super) struct ServerState {
    shards: [Mutex<Tracker>; SHARDS],
    conn_ids: ConnectionIds,
    epoch: Instant,
    /// `interval` told to clients (of [`TrackerConfig`]).
    interval: Duration,
    stop: AtomicBool,
    counters: Counters,
}

/// Requests answered, by kind and protocol (relaxed atomics: one add per
/// request, read by [`TrackerServer::watch`]).
#[derive(Default)]
struct Counters {
    announces_udp: AtomicU64,
    announces_http: AtomicU64,
    scrapes_udp: AtomicU64,
    scrapes_http: AtomicU64,
    /// Announces and scrapes answered with an error (bad connection id,
    /// malformed query, full scrape asked for).
    rejected: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A snapshot of a tracker's counters ([`TrackerWatch::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrackerStats {
    /// Announces answered over UDP (BEP 15) since start.
    pub announces_udp: u64,
    /// Announces answered over HTTP (BEP 3) since start.
    pub announces_http: u64,
    /// Scrapes answered over UDP (BEP 15) since start.
    pub scrapes_udp: u64,
    /// Scrapes answered over HTTP (BEP 48) since start.
    pub scrapes_http: u64,
    /// Announces and scrapes refused with an error (bad BEP 15 connection
    /// id, malformed query, full scrape) since start.
    pub rejected: u64,
    /// Peers over all swarms right now.
    pub peers: u64,
    /// Swarms (torrents with at least one peer) right now.
    pub swarms: u64,
}

/// Reads a running tracker's counters from any thread (a metrics endpoint):
/// relaxed atomic loads plus one short lock per swarm shard for the gauges.
#[derive(Clone)]
pub struct TrackerWatch {
    shared: Arc<ServerState>,
}

impl std::fmt::Debug for TrackerWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackerWatch").finish_non_exhaustive()
    }
}

impl TrackerWatch {
    /// The tracker's counters now.
    pub fn stats(&self) -> TrackerStats {
        let c = &self.shared.counters;
        let (mut peers, mut swarms) = (0u64, 0u64);
        for shard in &self.shared.shards {
            let t = shard.lock().unwrap_or_else(PoisonError::into_inner);
            peers += t.peer_count() as u64;
            swarms += t.swarm_count() as u64;
        }
        TrackerStats {
            announces_udp: c.announces_udp.load(Ordering::Relaxed),
            announces_http: c.announces_http.load(Ordering::Relaxed),
            scrapes_udp: c.scrapes_udp.load(Ordering::Relaxed),
            scrapes_http: c.scrapes_http.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            peers,
            swarms,
        }
    }
}

impl ServerState {
    fn now(&self) -> Time {
        Time::from_nanos(u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    fn shard(&self, hash: &InfoHash) -> std::sync::MutexGuard<'_, Tracker> {
        // In range by the modulo; the first byte of a SHA-1 is uniform.
        let shard = &self.shards[usize::from(hash.0[0]) % SHARDS];
        // A poisoned shard only means another thread panicked mid-update; the
        // swarm maps stay structurally valid, so keep serving.
        shard.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running tracker.
pub struct TrackerServer {
    local_addr: SocketAddr,
    shared: Arc<ServerState>,
    threads: Vec<JoinHandle<()>>,
    http: RuntimeHandle<()>,
}

impl TrackerServer {
    /// Binds TCP and UDP on `config.listen` and starts the threads.
    ///
    /// # Errors
    /// Any socket error from binding.
    pub fn bind(config: ServerConfig) -> io::Result<Self> {
        let mut rng = rand::rng();
        let secret: [u8; 16] = rng.random();
        let shared = Arc::new(ServerState {
            shards: std::array::from_fn(|_| {
                Mutex::new(Tracker::new(
                    shard_config(&config.tracker),
                    rng.random::<u64>(),
                ))
            }),
            conn_ids: ConnectionIds::new(secret),
            epoch: Instant::now(),
            interval: config.tracker.interval,
            stop: AtomicBool::new(false),
            counters: Counters::default(),
        });
        let (http, udp_sockets) = bind_pair(&config, &shared)?;
        let local_addr = http
            .local_addr()
            .ok_or_else(|| io::Error::other("HTTP runtime has no listen address"))?;
        let mut threads = Vec::new();
        for socket in udp_sockets {
            let shared = Arc::clone(&shared);
            threads.push(
                std::thread::Builder::new()
                    .name("tracker-udp".into())
                    .spawn(move || udp_loop(&shared, &socket))?,
            );
        }
        let sweeper = Arc::clone(&shared);
        threads.push(
            std::thread::Builder::new()
                .name("tracker-sweep".into())
                .spawn(move || sweep_loop(&sweeper))?,
        );
        Ok(Self {
            local_addr,
            shared,
            threads,
            http,
        })
    }

    /// The bound address (UDP and TCP share the port).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle reading this tracker's counters from another thread.
    pub fn watch(&self) -> TrackerWatch {
        TrackerWatch {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Peers over all swarms right now.
    pub fn peer_count(&self) -> usize {
        self.shared
            .shards
            .iter()
            .map(|m| {
                m.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .peer_count()
            })
            .sum()
    }

    /// Stops all threads and waits for them (at most about [`POLL_PERIOD`]).
    pub fn shutdown(self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        // Worker errors are moot at shutdown; the connections close either way.
        let _ = self.http.shutdown();
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// One shard's settings: the process-wide caps `max_peers` and `max_swarms`
/// split evenly over the [`SHARDS`] (a swarm lives in one shard, so
/// `max_peers_per_swarm` stays whole; the first byte of an info-hash is
/// uniform, so the shards fill alike).
fn shard_config(config: &TrackerConfig) -> TrackerConfig {
    TrackerConfig {
        max_peers: config.max_peers.div_ceil(SHARDS),
        max_swarms: config.max_swarms.div_ceil(SHARDS),
        ..config.clone()
    }
}

/// Binds `config.udp_threads` UDP sockets and starts the HTTP runtime on the
/// same port. With port 0 the UDP port is chosen first; if TCP cannot take
/// it, try again (a few times).
fn bind_pair(
    config: &ServerConfig,
    shared: &Arc<ServerState>,
) -> io::Result<(RuntimeHandle<()>, Vec<UdpSocket>)> {
    let listen = config.listen;
    let workers = config.http_threads.max(1);
    let mut last_err = None;
    for _ in 0..8 {
        let first = udp_socket(listen)?;
        let addr = first.local_addr()?;
        let mut sockets = vec![first];
        for _ in 1..config.udp_threads.max(1) {
            sockets.push(udp_socket(addr)?);
        }
        let rt_config = RuntimeConfig {
            workers,
            listen: Some(addr),
            recv_buf_bytes: RECV_BUF_BYTES,
            pin_cores: false,
            ..RuntimeConfig::default()
        };
        let shared = Arc::clone(shared);
        match crate::rt::run(rt_config, move |_| {
            HttpHandler::new(Arc::clone(&shared), workers)
        }) {
            Ok(http) => return Ok((http, sockets)),
            Err(e) if listen.port() == 0 => last_err = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_err.unwrap_or_else(|| io::Error::other("could not bind TCP")))
}

fn udp_socket(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_port(true)?;
    // Bursts of announces at start-up: a larger buffer drops fewer.
    let _ = socket.set_recv_buffer_size(4 << 20);
    socket.bind(&addr.into())?;
    let socket: UdpSocket = socket.into();
    socket.set_read_timeout(Some(POLL_PERIOD))?;
    Ok(socket)
}

/// Datagrams taken (and answers sent) per system call: `recvmmsg` with
/// `MSG_WAITFORONE` returns what is queued, up to this many, as soon as one
/// arrived, and the answers go out in one `sendmmsg`. 32 amortises the syscall
/// and loopback wake-up costs that dominated the one-datagram loop (perf:
/// ~50 % in `sendto`, 18 % context switches) while a batch stays in L1/L2.
const UDP_BATCH: usize = 32;

fn udp_loop(shared: &ServerState, socket: &UdpSocket) {
    use nix::sys::socket::{recvmmsg, sendmmsg, MsgFlags, MultiHeaders, SockaddrStorage};
    use std::io::{IoSlice, IoSliceMut};
    use std::os::fd::AsRawFd;

    let fd = socket.as_raw_fd();
    let mut bufs = vec![[0u8; MAX_PACKET_BYTES]; UDP_BATCH];
    let mut outs: Vec<Vec<u8>> = (0..UDP_BATCH).map(|_| Vec::with_capacity(2048)).collect();
    let mut recv_hdrs = MultiHeaders::<SockaddrStorage>::preallocate(UDP_BATCH, None);
    let mut send_hdrs = MultiHeaders::<SockaddrStorage>::preallocate(UDP_BATCH, None);
    let mut got: Vec<(usize, SocketAddr)> = Vec::with_capacity(UDP_BATCH);
    let mut peers: Vec<u8> = Vec::new();
    while !shared.stop.load(Ordering::Relaxed) {
        got.clear();
        {
            // A Vec (not on the stack): `recvmmsg`'s results borrow it past
            // a SmallVec's drop check. One allocation per batch.
            let mut iovs: Vec<[IoSliceMut; 1]> =
                bufs.iter_mut().map(|b| [IoSliceMut::new(b)]).collect();
            // Blocks (up to the socket's read timeout, POLL_PERIOD) for the first
            // datagram only.
            let Ok(results) = recvmmsg(
                fd,
                &mut recv_hdrs,
                iovs.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            ) else {
                continue; // timeout (stop-flag poll), or e.g. ICMP port unreachable
            };
            for r in results {
                let from = r.address.and_then(|a: SockaddrStorage| {
                    if let Some(v4) = a.as_sockaddr_in() {
                        Some(SocketAddr::from(std::net::SocketAddrV4::from(*v4)))
                    } else {
                        a.as_sockaddr_in6()
                            .map(|v6| SocketAddr::from(std::net::SocketAddrV6::from(*v6)))
                    }
                });
                if let Some(from) = from {
                    got.push((r.bytes, from));
                }
            }
        }
        let mut answers: SmallVec<[(usize, SockaddrStorage); UDP_BATCH]> = SmallVec::new();
        // One clock read per batch: its datagrams arrived together.
        let now = shared.now();
        for (i, &(len, from)) in got.iter().enumerate() {
            let out = &mut outs[i];
            out.clear();
            let packet = bufs[i].get(..len).unwrap_or_default();
            if handle_udp(shared, now, packet, from, &mut peers, out) {
                answers.push((i, SockaddrStorage::from(from)));
            }
        }
        if answers.is_empty() {
            continue;
        }
        let slices: SmallVec<[[IoSlice; 1]; UDP_BATCH]> = answers
            .iter()
            .map(|(i, _)| [IoSlice::new(&outs[*i])])
            .collect();
        let addrs: SmallVec<[Option<SockaddrStorage>; UDP_BATCH]> =
            answers.iter().map(|(_, a)| Some(*a)).collect();
        let no_cmsgs: [nix::sys::socket::ControlMessage; 0] = [];
        // Best effort, as UDP is: a full send buffer drops answers, and the
        // client retries (BEP 15).
        let _ = sendmmsg(
            fd,
            &mut send_hdrs,
            slices.iter(),
            &addrs,
            no_cmsgs,
            MsgFlags::empty(),
        );
    }
}

/// Answers one datagram, received at `now`, into `out`; `false` when nothing
/// should be sent. `peers` is scratch (the compact entries of an announce's
/// hand-out), reused so an announce allocates nothing.
fn handle_udp(
    shared: &ServerState,
    now: Time,
    packet: &[u8],
    from: SocketAddr,
    peers: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> bool {
    let family = if from.is_ipv4() {
        PeerFamily::V4
    } else {
        PeerFamily::V6
    };
    let response = match Request::decode(packet) {
        // Garbage gets no answer: answering would make us a reflector.
        Err(_) => return false,
        Ok(Request::Connect { transaction_id }) => Response::Connect {
            transaction_id,
            connection_id: shared.conn_ids.issue(now, from),
        },
        Ok(
            Request::Announce {
                connection_id,
                transaction_id,
                ..
            }
            | Request::Scrape {
                connection_id,
                transaction_id,
                ..
            },
        ) if !shared.conn_ids.is_valid(now, from, connection_id) => {
            bump(&shared.counters.rejected);
            Response::Error {
                transaction_id,
                message: "bad connection id".into(),
            }
        }
        Ok(Request::Announce {
            transaction_id,
            announce,
            ..
        }) => {
            bump(&shared.counters.announces_udp);
            peers.clear();
            let outcome = shared.shard(&announce.info_hash).announce_compact(
                now,
                from.ip(),
                &announce,
                family,
                peers,
            );
            Response::encode_announce_compact(
                transaction_id,
                u32::try_from(shared.interval.as_secs()).unwrap_or(u32::MAX),
                outcome.stats.incomplete,
                outcome.stats.complete,
                peers,
                out,
            );
            return true;
        }
        Ok(Request::Scrape {
            transaction_id,
            info_hashes,
            ..
        }) => {
            bump(&shared.counters.scrapes_udp);
            Response::Scrape {
                transaction_id,
                stats: scrape(shared, &info_hashes),
            }
        }
    };
    response.encode(family, out);
    true
}

fn scrape(shared: &ServerState, hashes: &[InfoHash]) -> Vec<crate::wire::tracker::ScrapeStats> {
    hashes
        .iter()
        .map(|h| {
            shared
                .shard(h)
                .handle_scrape(std::slice::from_ref(h))
                .pop()
                .unwrap_or_default()
        })
        .collect()
}

/// Answers an HTTP GET of `url` (path and query) from `source`: (status, body).
pub(super) fn answer_http(
    shared: &ServerState,
    url: &str,
    source: Option<IpAddr>,
) -> (u16, Vec<u8>) {
    let (status, body, counter) = answer_http_inner(shared, url, source);
    if let Some(c) = counter {
        bump(c);
    }
    (status, body)
}

/// [`answer_http`]'s answer and the counter it adds to (`None`: not found).
fn answer_http_inner<'a>(
    shared: &'a ServerState,
    url: &str,
    source: Option<IpAddr>,
) -> (u16, Vec<u8>, Option<&'a AtomicU64>) {
    let c = &shared.counters;
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    match path {
        "/announce" => match (Announce::from_query(query.as_bytes()), source) {
            (Ok((announce, compact)), Some(ip)) => {
                let now = shared.now();
                let resp = shared
                    .shard(&announce.info_hash)
                    .handle_announce(now, ip, &announce);
                (200, resp.to_bencode(compact), Some(&c.announces_http))
            }
            (Err(e), _) => (200, failure_to_bencode(&e.to_string()), Some(&c.rejected)),
            (_, None) => (
                200,
                failure_to_bencode("unknown source address"),
                Some(&c.rejected),
            ),
        },
        "/scrape" => match parse_scrape_query(query.as_bytes()) {
            Ok(hashes) if !hashes.is_empty() => {
                let stats = scrape(shared, &hashes);
                let files = hashes.into_iter().zip(stats).collect();
                (
                    200,
                    ScrapeResponse { files }.to_bencode(),
                    Some(&c.scrapes_http),
                )
            }
            Ok(_) => (
                200,
                failure_to_bencode("full scrape not supported: give info_hash"),
                Some(&c.rejected),
            ),
            Err(e) => (200, failure_to_bencode(&e.to_string()), Some(&c.rejected)),
        },
        _ => (404, b"not found\n".to_vec(), None),
    }
}

fn sweep_loop(shared: &ServerState) {
    while !shared.stop.load(Ordering::Relaxed) {
        std::thread::sleep(POLL_PERIOD);
        let now = shared.now();
        for shard in &shared.shards {
            let mut tracker = shard.lock().unwrap_or_else(PoisonError::into_inner);
            if tracker.poll_timeout() <= now {
                tracker.handle_timeout(now);
            }
        }
    }
}
