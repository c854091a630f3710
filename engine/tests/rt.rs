//! Loopback tests of the io_uring runtime `p2pe::rt`: echo, bulk transfer per
//! send strategy, peer closing mid-transfer, control messages and timers,
//! shutdown. Every wait is bounded; nothing sleeps for a fixed time.
//!
//! Bulk transfers send regions of a seed-mode `p2pe::store::Storage`, the only
//! maker of send regions in the engine (regions of verified pieces only).

use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use p2pe::base::{Block, BlockOffset, InfoHash, PieceHashes, PieceIndex};
use p2pe::rt::{self, ConnId, Ctx, Handler, RuntimeConfig, SendStrategy};
use p2pe::store::{FileSpec, OpenMode, Storage, StorageLayout};
use sha1::{Digest, Sha1};

/// Upper bound of every wait in these tests.
const BOUND: Duration = Duration::from_secs(60);

/// xorshift64*: deterministic test data without pulling an RNG API in.
struct Prng(u64);

impl Prng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn config(workers: usize, listen: bool, strategy: SendStrategy) -> RuntimeConfig {
    RuntimeConfig {
        workers,
        listen: listen.then(|| "127.0.0.1:0".parse().unwrap()),
        send_strategy: strategy,
        recv_buf_bytes: 64 * 1024,
        pin_cores: false,
        ..RuntimeConfig::default()
    }
}

/// Echoes everything it receives.
struct Echo;

impl Handler for Echo {
    type Msg = ();

    fn on_open(&mut self, _: &mut Ctx<()>, _: ConnId, _: SocketAddr, _: bool) {}
    fn on_recv(&mut self, ctx: &mut Ctx<()>, conn: ConnId, data: &[u8]) {
        ctx.send(conn, data.to_vec());
    }
    fn on_sent(&mut self, _: &mut Ctx<()>, _: ConnId) {}
    fn on_close(&mut self, _: &mut Ctx<()>, _: ConnId, _: Option<io::Error>) {}
    fn on_timer(&mut self, _: &mut Ctx<()>, _: Instant) {}
    fn is_done(&self) -> bool {
        false
    }
}

/// Connects to `target`, sends `data` in random-sized pieces and checks the
/// echo; reports the outcome once.
struct EchoClient {
    target: SocketAddr,
    data: Arc<Vec<u8>>,
    got: Vec<u8>,
    report: mpsc::Sender<Result<(), String>>,
    done: bool,
}

impl Handler for EchoClient {
    type Msg = ();

    fn on_open(&mut self, ctx: &mut Ctx<()>, conn: ConnId, _: SocketAddr, inbound: bool) {
        assert!(!inbound);
        let mut rng = Prng(42);
        let mut at = 0;
        while at < self.data.len() {
            let n = ((rng.next() % 70_000) as usize + 1).min(self.data.len() - at);
            ctx.send(conn, self.data[at..at + n].to_vec());
            at += n;
        }
    }
    fn on_recv(&mut self, ctx: &mut Ctx<()>, conn: ConnId, data: &[u8]) {
        self.got.extend_from_slice(data);
        if self.got.len() >= self.data.len() {
            let ok = self.got[..] == self.data[..];
            let _ = self
                .report
                .send(ok.then_some(()).ok_or("echo differs".into()));
            ctx.close(conn);
        }
    }
    fn on_sent(&mut self, _: &mut Ctx<()>, _: ConnId) {}
    fn on_close(&mut self, _: &mut Ctx<()>, _: ConnId, err: Option<io::Error>) {
        if self.got.len() < self.data.len() {
            let _ = self.report.send(Err(format!("closed early: {err:?}")));
        }
        self.done = true;
    }
    fn on_timer(&mut self, _: &mut Ctx<()>, _: Instant) {}
    fn on_control(&mut self, ctx: &mut Ctx<()>, _: ()) {
        ctx.connect(self.target).unwrap();
    }
    fn is_done(&self) -> bool {
        self.done
    }
}

#[test]
fn echo_random_sizes_is_byte_exact_and_in_order() {
    let server = rt::run(config(2, true, SendStrategy::Send), |_| Echo).unwrap();
    let target = server.local_addr().unwrap();
    let data = Arc::new(Prng(7).bytes(6 * 1024 * 1024 + 123));
    let (tx, rx) = mpsc::channel();
    let client = rt::run(config(1, false, SendStrategy::Send), |_| EchoClient {
        target,
        data: data.clone(),
        got: Vec::new(),
        report: tx.clone(),
        done: false,
    })
    .unwrap();
    // The client connects when told to.
    client.post(0, ()).unwrap();
    assert_eq!(rx.recv_timeout(BOUND).unwrap(), Ok(()));
    client.join().unwrap();
    server.shutdown().unwrap();
}

/// Piece length of the served storage: blocks are clipped at piece ends (a
/// region never spans two pieces), so most large regions stay whole.
const PIECE_BYTES: u64 = 4 << 20;

/// Serves `storage` on every inbound connection as BEP 3 `piece` messages
/// (13-byte header + block, one region per file the block spans), keeping at
/// most 4 MiB queued.
struct Seeder {
    storage: Arc<Storage>,
    block_bytes: u64,
    next: u64,
    closed: mpsc::Sender<Option<io::ErrorKind>>,
}

impl Seeder {
    fn fill(&mut self, ctx: &mut Ctx<()>, conn: ConnId) {
        let total = self.storage.layout().total_len_bytes();
        while self.next < total && ctx.queued_bytes(conn) < 4 << 20 {
            let (piece, offset) = (self.next / PIECE_BYTES, self.next % PIECE_BYTES);
            // One region in eight is large, to exercise chunking.
            let len = if (self.next / self.block_bytes) % 8 == 7 {
                self.block_bytes * 40
            } else {
                self.block_bytes
            }
            .min(total - self.next)
            .min(PIECE_BYTES - offset);
            let mut h = Vec::with_capacity(13);
            h.extend_from_slice(&(9 + len as u32).to_be_bytes());
            h.push(7);
            h.extend_from_slice(&0u32.to_be_bytes());
            h.extend_from_slice(&(self.next as u32).to_be_bytes());
            let block = Block {
                piece: PieceIndex(piece as u32),
                offset: BlockOffset(offset as u32),
                len_bytes: len as u32,
            };
            let regions = self.storage.servable_regions(block).unwrap();
            for (i, region) in regions.into_iter().enumerate() {
                ctx.send_region(conn, if i == 0 { &h } else { &[] }, region);
            }
            self.next += len;
        }
    }
}

impl Handler for Seeder {
    type Msg = ();

    fn on_open(&mut self, ctx: &mut Ctx<()>, conn: ConnId, _: SocketAddr, inbound: bool) {
        assert!(inbound);
        self.fill(ctx, conn);
    }
    fn on_recv(&mut self, _: &mut Ctx<()>, _: ConnId, _: &[u8]) {}
    fn on_sent(&mut self, ctx: &mut Ctx<()>, conn: ConnId) {
        self.fill(ctx, conn);
    }
    fn on_close(&mut self, _: &mut Ctx<()>, _: ConnId, err: Option<io::Error>) {
        let _ = self.closed.send(err.map(|e| e.kind()));
    }
    fn on_timer(&mut self, _: &mut Ctx<()>, _: Instant) {}
    fn is_done(&self) -> bool {
        false
    }
}

/// A seed-mode storage of `len` pseudo-random bytes in two files (the
/// boundary at an odd offset, so some blocks span both), every piece verified
/// at open; with its directory and its bytes.
fn temp_source(len: usize) -> (Arc<Storage>, tempfile::TempDir, Vec<u8>) {
    let data = Prng(len as u64).bytes(len);
    let dir = tempfile::tempdir().unwrap();
    let first = len / 3 + 1;
    let mut files = Vec::new();
    for (name, bytes) in [("a", &data[..first]), ("b", &data[first..])] {
        std::fs::write(dir.path().join(name), bytes).unwrap();
        files.push(FileSpec {
            path_components: vec![name.to_string()],
            len_bytes: bytes.len() as u64,
            padding: false,
        });
    }
    let hashes = data
        .chunks(PIECE_BYTES as usize)
        .map(|c| Sha1::digest(c).into())
        .collect();
    let layout = StorageLayout::new(files, PIECE_BYTES as u32, PieceHashes::Sha1(hashes)).unwrap();
    let (storage, report) =
        Storage::open(dir.path(), layout, InfoHash([7; 20]), OpenMode::Seed).unwrap();
    assert_eq!(report.verified(), storage.piece_count());
    (Arc::new(storage), dir, data)
}

/// Reads `piece` messages until `len` payload bytes arrived; returns the
/// reassembled payload.
fn receive_pieces(addr: SocketAddr, len: usize) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(BOUND)).unwrap();
    let mut out = vec![0u8; len];
    let mut got = 0;
    while got < len {
        let mut h = [0u8; 13];
        s.read_exact(&mut h).unwrap();
        let block = u32::from_be_bytes(h[0..4].try_into().unwrap()) as usize - 9;
        assert_eq!(h[4], 7);
        let begin = u32::from_be_bytes(h[9..13].try_into().unwrap()) as usize;
        assert_eq!(begin, got, "pieces out of order");
        s.read_exact(&mut out[begin..begin + block]).unwrap();
        got += block;
    }
    out
}

fn bulk(strategy: SendStrategy, len: usize, block_bytes: u64) {
    let (storage, _dir, data) = temp_source(len);
    let (tx, rx) = mpsc::channel();
    let server = rt::run(config(2, true, strategy), |_| Seeder {
        storage: storage.clone(),
        block_bytes,
        next: 0,
        closed: tx.clone(),
    })
    .unwrap();
    let got = receive_pieces(server.local_addr().unwrap(), data.len());
    assert_eq!(
        xxhash_rust::xxh3::xxh3_64(&got),
        xxhash_rust::xxh3::xxh3_64(&data),
        "{strategy:?}"
    );
    // The client closed its side: the server sees an orderly close.
    assert_eq!(rx.recv_timeout(BOUND).unwrap(), None);
    server.shutdown().unwrap();
}

#[test]
fn bulk_64mib_send() {
    bulk(SendStrategy::Send, 64 << 20, 16 * 1024);
}

#[test]
fn bulk_64mib_splice() {
    bulk(SendStrategy::Splice, 64 << 20, 16 * 1024);
}

#[test]
fn bulk_64mib_send_zc() {
    bulk(SendStrategy::SendZc, 64 << 20, 16 * 1024);
}

#[test]
fn peer_closing_mid_transfer_yields_on_close() {
    for strategy in [
        SendStrategy::Send,
        SendStrategy::Splice,
        SendStrategy::SendZc,
    ] {
        let (storage, _dir, _) = temp_source(32 << 20);
        let (tx, rx) = mpsc::channel();
        let server = rt::run(config(2, true, strategy), |_| Seeder {
            storage: storage.clone(),
            block_bytes: 16 * 1024,
            next: 0,
            closed: tx.clone(),
        })
        .unwrap();
        let mut s = TcpStream::connect(server.local_addr().unwrap()).unwrap();
        s.set_read_timeout(Some(BOUND)).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        s.read_exact(&mut buf).unwrap();
        // Reset rather than FIN (linger 0). Whether the server then sees
        // ECONNRESET, EPIPE or end of stream depends on which of its
        // operations meets the reset first; it must see one close either way.
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(s);
        let r = rx.recv_timeout(BOUND);
        assert!(r.is_ok(), "{strategy:?}: no on_close");
        server.shutdown().unwrap();
    }
}

/// Counts control messages; arms a timer on the second and finishes on it.
struct Control {
    seen: u32,
    report: mpsc::Sender<(usize, u32)>,
    done: bool,
}

impl Handler for Control {
    type Msg = u32;

    fn on_open(&mut self, _: &mut Ctx<u32>, _: ConnId, _: SocketAddr, _: bool) {}
    fn on_recv(&mut self, _: &mut Ctx<u32>, _: ConnId, _: &[u8]) {}
    fn on_sent(&mut self, _: &mut Ctx<u32>, _: ConnId) {}
    fn on_close(&mut self, _: &mut Ctx<u32>, _: ConnId, _: Option<io::Error>) {}
    fn on_timer(&mut self, ctx: &mut Ctx<u32>, _: Instant) {
        let _ = self.report.send((ctx.worker_index(), self.seen));
        self.done = true;
    }
    fn on_control(&mut self, ctx: &mut Ctx<u32>, msg: u32) {
        let hop = msg;
        self.seen += 1;
        if hop == 0 {
            // Forward to the other worker, across cores.
            let other = (ctx.worker_index() + 1) % ctx.workers();
            ctx.post(other, 1u32).unwrap();
        }
        ctx.set_timer(Duration::from_millis(1));
    }
    fn is_done(&self) -> bool {
        self.done
    }
}

#[test]
fn control_messages_cross_workers_and_timers_fire() {
    let (tx, rx) = mpsc::channel();
    let h = rt::run(config(2, false, SendStrategy::Send), |_| Control {
        seen: 0,
        report: tx.clone(),
        done: false,
    })
    .unwrap();
    h.post(0, 0u32).unwrap();
    let mut reports = [
        rx.recv_timeout(BOUND).unwrap(),
        rx.recv_timeout(BOUND).unwrap(),
    ];
    reports.sort();
    assert_eq!(reports, [(0, 1), (1, 1)]);
    assert!(h.post(5, 0u32).is_err());
    h.join().unwrap();
}

#[test]
fn bulk_unaligned_blocks_every_strategy() {
    // Odd block sizes put regions across page boundaries (pipe-buffer
    // accounting of the splice chain) and split iovecs mid-page.
    for strategy in [
        SendStrategy::Send,
        SendStrategy::Splice,
        SendStrategy::SendZc,
    ] {
        bulk(strategy, (8 << 20) + 4321, 10_007);
    }
}
