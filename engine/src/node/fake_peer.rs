//! A scriptable fake peer over real sockets, for hostile-peer tests: it speaks
//! just enough of the peer wire (BEP 3/6) to be taken for a peer, then does
//! whatever the test tells it to (freeze, idle, flood, never read).
//!
//! Every blocking call has a bound; a listening fake peer's thread stops when
//! its [`FakeListener`] is dropped.
//!
//! Used by the node's hostile-peer tests and by `bench/src/bin/hostile.rs`;
//! not part of the supported API.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::base::{InfoHash, PeerId};
use crate::wire::peer::{Block, BlockOffset, Handshake, Message, PeerMessage, PieceIndex};

/// Bound on a fake peer's blocking reads and writes.
const IO_BOUND: Duration = Duration::from_secs(10);

/// One connection of a fake peer.
pub struct FakePeer {
    pub stream: TcpStream,
}

impl FakePeer {
    /// Connects to `addr` and exchanges handshakes (fast extension on) for
    /// `info_hash`; `None` if the other side closes or does not answer.
    pub fn connect(addr: SocketAddr, info_hash: InfoHash, id: u8) -> Option<FakePeer> {
        let stream = TcpStream::connect_timeout(&addr, IO_BOUND).ok()?;
        let mut p = FakePeer { stream };
        p.handshake(info_hash, id)?;
        Some(p)
    }

    /// Connects to `addr`, sends nothing, and reads the node's 68-byte handshake
    /// (so the node has accepted the socket); `None` if it closes first.
    pub fn connect_silent(addr: SocketAddr) -> Option<FakePeer> {
        let mut stream = TcpStream::connect_timeout(&addr, IO_BOUND).ok()?;
        stream.set_read_timeout(Some(IO_BOUND)).ok()?;
        let mut theirs = [0u8; Handshake::LEN_BYTES];
        stream.read_exact(&mut theirs).ok()?;
        Some(FakePeer { stream })
    }

    /// Connects with a 4 KiB receive buffer (so that a peer that never reads
    /// closes its TCP window early), exchanges handshakes, says `interested`, and
    /// reads until `unchoke`; `None` on any failure.
    pub fn connect_leecher(addr: SocketAddr, info_hash: InfoHash, id: u8) -> Option<FakePeer> {
        use socket2::{Domain, Socket, Type};
        let sock = Socket::new(Domain::IPV4, Type::STREAM, None).ok()?;
        sock.set_recv_buffer_size(4096).ok()?;
        sock.connect_timeout(&addr.into(), IO_BOUND).ok()?;
        let mut p = FakePeer {
            stream: sock.into(),
        };
        p.handshake(info_hash, id)?;
        p.send(&PeerMessage::Interested.into()).ok()?;
        let end = Instant::now() + IO_BOUND;
        while Instant::now() < end {
            let mut len = [0u8; 4];
            p.stream.read_exact(&mut len).ok()?;
            let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
            p.stream.read_exact(&mut body).ok()?;
            if body.first() == Some(&1) {
                return Some(p);
            }
        }
        None
    }

    /// Sends a 16 KiB request for every block of `pieces` pieces of
    /// `piece_len_bytes`, without reading; false once a write fails (the other
    /// side closed the connection).
    pub fn request_all(&mut self, pieces: u32, piece_len_bytes: u32) -> bool {
        let mut buf = Vec::new();
        for piece in 0..pieces {
            for off in (0..piece_len_bytes).step_by(16 * 1024) {
                let r = PeerMessage::Request(Block {
                    piece: PieceIndex(piece),
                    offset: BlockOffset(off),
                    len_bytes: 16 * 1024,
                });
                crate::wire::peer::encode_control(&r, &mut buf);
            }
        }
        self.stream.write_all(&buf).is_ok()
    }

    /// Whether the other side closes this connection within `bound`.
    pub fn closed_within(&mut self, bound: Duration) -> bool {
        let end = Instant::now() + bound;
        let mut buf = [0u8; 4096];
        while Instant::now() < end {
            let _ = self
                .stream
                .set_read_timeout(Some(Duration::from_millis(100)));
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return true,
            }
        }
        false
    }

    fn handshake(&mut self, info_hash: InfoHash, id: u8) -> Option<()> {
        let mut ours = Handshake::new(info_hash, PeerId([id; 20]));
        ours.set_fast(true);
        self.stream.set_read_timeout(Some(IO_BOUND)).ok()?;
        self.stream.set_write_timeout(Some(IO_BOUND)).ok()?;
        self.stream.write_all(&ours.to_bytes()).ok()?;
        let mut theirs = [0u8; Handshake::LEN_BYTES];
        self.stream.read_exact(&mut theirs).ok()?;
        Handshake::decode(&theirs).ok()?;
        Some(())
    }

    /// Sends one message.
    pub fn send(&mut self, msg: &Message) -> std::io::Result<()> {
        let mut buf = Vec::new();
        msg.encode(&mut buf).map_err(std::io::Error::other)?;
        self.stream.write_all(&buf)
    }

    /// Sends `have all` and `unchoke`: a seeder that lets us ask.
    pub fn pose_as_seeder(&mut self) -> std::io::Result<()> {
        self.send(&PeerMessage::HaveAll.into())?;
        self.send(&PeerMessage::Unchoke.into())
    }

    /// Answers requests as [`Script::Liar`] (`reject_first`: block 0 of each
    /// piece is rejected) or [`Script::Garbler`] until `stop` is set or the
    /// peer closes.
    fn lie(&mut self, stop: &AtomicBool, reject_first: bool) {
        let _ = self
            .stream
            .set_read_timeout(Some(Duration::from_millis(100)));
        let mut buf: Vec<u8> = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        while !stop.load(Ordering::Acquire) {
            match self.stream.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return,
            }
            while buf.len() >= 4 {
                let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
                if buf.len() < 4 + len {
                    break;
                }
                let frame: Vec<u8> = buf.drain(..4 + len).skip(4).collect();
                if frame.len() == 13 && frame[0] == 6 {
                    let word = |i: usize| {
                        u32::from_be_bytes([frame[i], frame[i + 1], frame[i + 2], frame[i + 3]])
                    };
                    let req = Block {
                        piece: PieceIndex(word(1)),
                        offset: BlockOffset(word(5)),
                        len_bytes: word(9),
                    };
                    let answer = if reject_first && req.offset.0 == 0 {
                        Message::Control(PeerMessage::Reject(req))
                    } else {
                        Message::Piece {
                            index: req.piece,
                            begin: req.offset,
                            data: vec![0xa5; req.len_bytes as usize].into(),
                        }
                    };
                    if self.send(&answer).is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Reads and drops whatever arrives until `stop` is set or the peer closes.
    pub fn swallow(&mut self, stop: &AtomicBool) {
        let _ = self
            .stream
            .set_read_timeout(Some(Duration::from_millis(100)));
        let mut buf = vec![0u8; 64 * 1024];
        while !stop.load(Ordering::Acquire) {
            match self.stream.read(&mut buf) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return,
            }
        }
    }
}

/// What a listening fake peer does with each connection it accepts.
#[derive(Clone, Copy, Debug)]
pub enum Script {
    /// Handshake, `have all`, `unchoke`, then never answers a request (a frozen
    /// or SIGSTOPped seeder): reads and drops everything.
    FrozenSeeder,
    /// Handshake, `have all`, `unchoke`; answers a request for block 0 of a piece
    /// with a BEP 6 reject (so an honest peer sends it) and every other request
    /// with garbage of the right length (issue 11 item 4's liar).
    Liar,
    /// Handshake, `have all`, `unchoke`; answers every request with garbage of
    /// the right length: each piece it sends fails its hash check as a whole.
    Garbler,
    /// Handshake, the BEP 10 extended handshake given (a bencoded dictionary),
    /// `have all`, `unchoke`, then as [`Script::FrozenSeeder`]: a peer whose
    /// advertised extensions are under test (lanes).
    ExtendedSeeder(&'static [u8]),
}

/// A fake peer listening on 127.0.0.1 and running a [`Script`] per connection.
pub struct FakeListener {
    pub addr: SocketAddr,
    /// Connections accepted so far.
    pub accepted: Arc<AtomicUsize>,
    /// The most connections open at once so far.
    pub max_open: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeListener {
    /// Listens for peers of `info_hash`; at most `max_conns` connections, each
    /// handled on its own thread until the listener is dropped.
    pub fn spawn(info_hash: InfoHash, script: Script, max_conns: usize) -> FakeListener {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind fake peer");
        let addr = l.local_addr().expect("fake peer address");
        l.set_nonblocking(true).expect("nonblocking listener");
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let max_open = Arc::new(AtomicUsize::new(0));
        let open_now = Arc::new(AtomicUsize::new(0));
        let (stop2, accepted2, max2) = (stop.clone(), accepted.clone(), max_open.clone());
        let thread = std::thread::spawn(move || {
            let mut conns = Vec::new();
            while !stop2.load(Ordering::Acquire) {
                match l.accept() {
                    Ok((s, _)) if conns.len() < max_conns => {
                        accepted2.fetch_add(1, Ordering::AcqRel);
                        let n = open_now.fetch_add(1, Ordering::AcqRel) + 1;
                        max2.fetch_max(n, Ordering::AcqRel);
                        let (stop3, open3) = (stop2.clone(), open_now.clone());
                        conns.push(std::thread::spawn(move || {
                            let _ = s.set_nonblocking(false);
                            run_script(s, info_hash, script, &stop3);
                            open3.fetch_sub(1, Ordering::AcqRel);
                        }));
                    }
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            for c in conns {
                let _ = c.join();
            }
        });
        FakeListener {
            addr,
            accepted,
            max_open,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for FakeListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run_script(stream: TcpStream, info_hash: InfoHash, script: Script, stop: &AtomicBool) {
    let mut p = FakePeer { stream };
    if p.handshake(info_hash, 0xf0).is_none() {
        return;
    }
    match script {
        Script::FrozenSeeder => {
            if p.pose_as_seeder().is_ok() {
                p.swallow(stop);
            }
        }
        Script::ExtendedSeeder(ext) => {
            // BEP 10: message 20, extended id 0, the dictionary.
            let len = u32::try_from(ext.len() + 2).unwrap_or(u32::MAX);
            let mut out = len.to_be_bytes().to_vec();
            out.extend_from_slice(&[20, 0]);
            out.extend_from_slice(ext);
            if p.stream.write_all(&out).is_ok() && p.pose_as_seeder().is_ok() {
                p.swallow(stop);
            }
        }
        Script::Liar | Script::Garbler => {
            if p.pose_as_seeder().is_ok() {
                p.lie(stop, matches!(script, Script::Liar));
            }
        }
    }
}
