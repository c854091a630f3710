//! The metadata fetch against scripted peers: honest, lying, rejecting,
//! silent and malformed ones, with the invariants checked after every event.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::*;

/// How a scripted peer answers requests.
#[derive(Debug, Clone)]
enum Script {
    /// Serves these bytes.
    Serve(Vec<u8>),
    /// Rejects every request.
    Reject,
    /// Never answers.
    Silent,
    /// Answers with a piece one byte short.
    Short(Vec<u8>),
}

/// A fetch and its peers; events go in, actions are answered per script.
struct Pump {
    fetch: MetadataFetch,
    now: Time,
    peers: BTreeMap<PeerKey, Script>,
    closed: Vec<(PeerKey, MetadataDropReason)>,
    requests: BTreeMap<PeerKey, u32>,
}

/// An info dictionary of `len` bytes (not a valid one: only its hash matters here).
fn info(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

fn ext(size: Option<u64>, id: Option<u8>) -> ExtendedHandshake {
    let mut hs = ExtendedHandshake::default();
    if let Some(id) = id {
        hs.m.insert(UT_METADATA.into(), id);
    }
    hs.metadata_size = size;
    hs
}

impl Pump {
    fn new(wanted: &[u8]) -> Self {
        Self {
            fetch: MetadataFetch::new(InfoHash::of_info_bytes(wanted), MetadataConfig::default()),
            now: Time::ZERO,
            peers: BTreeMap::new(),
            closed: Vec::new(),
            requests: BTreeMap::new(),
        }
    }

    fn connect(&mut self, key: u64, script: Script, hs: &ExtendedHandshake) {
        let peer = PeerKey(key);
        self.peers.insert(peer, script);
        self.fetch.handle_peer_connected(self.now, peer, hs);
        self.run();
    }

    /// Answers every action until none is left, checking the invariants.
    fn run(&mut self) {
        while let Some(action) = self.fetch.poll_action() {
            self.check();
            match action {
                MetadataAction::Disconnect { peer, reason } => {
                    self.peers.remove(&peer);
                    self.closed.push((peer, reason));
                }
                MetadataAction::Send {
                    peer,
                    ext_id,
                    msg: MetadataMessage::Request { piece },
                } => {
                    assert_eq!(ext_id, 7, "sent under the peer's id");
                    *self.requests.entry(peer).or_default() += 1;
                    let Some(script) = self.peers.get(&peer).cloned() else {
                        continue;
                    };
                    let reply = match script {
                        Script::Serve(bytes) | Script::Short(bytes) => {
                            let r = metadata_piece_range(bytes.len() as u64, piece).unwrap();
                            let mut data = bytes[r].to_vec();
                            if matches!(self.peers[&peer], Script::Short(_)) {
                                data.pop();
                            }
                            Some(MetadataMessage::Data {
                                piece,
                                total_size_bytes: bytes.len() as u64,
                                data: Bytes::from(data),
                            })
                        }
                        Script::Reject => Some(MetadataMessage::Reject { piece }),
                        Script::Silent => None,
                    };
                    if let Some(reply) = reply {
                        self.fetch.handle_message(self.now, peer, reply);
                    }
                }
                MetadataAction::Send { .. } => {}
            }
        }
        self.check();
    }

    fn check(&self) {
        let f = &self.fetch;
        if let Some(a) = &f.attempt {
            assert!(a.in_flight.len() <= f.config.max_requests_in_flight as usize);
            assert!(a.buf.len() as u64 <= f.config.max_size_bytes);
            assert!(
                f.peers.contains_key(&a.peer),
                "the attempt's peer is a candidate"
            );
        }
        assert!(f.peers.len() <= f.config.max_peers);
        if let Some(done) = &f.done {
            assert_eq!(InfoHash::of_info_bytes(done), f.info_hash);
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        if self.fetch.poll_timeout().is_some_and(|t| t <= self.now) {
            self.fetch.handle_timeout(self.now);
        }
        self.run();
    }
}

#[test]
fn honest_peer_serves_a_multi_piece_dictionary() {
    let want = info(40_000, 1); // 3 pieces: 16 KiB, 16 KiB, 7,232 bytes
    let mut p = Pump::new(&want);
    p.connect(1, Script::Serve(want.clone()), &ext(Some(40_000), Some(7)));
    assert!(p.fetch.is_done());
    assert_eq!(p.requests[&PeerKey(1)], 3);
    assert_eq!(p.fetch.take_metadata(), Some(want));
    assert_eq!(p.fetch.take_metadata(), None);
    assert!(p.fetch.is_done());
}

#[test]
fn a_liar_is_banned_and_the_next_peer_delivers() {
    let want = info(20_000, 1);
    let lie = info(20_000, 2);
    let mut p = Pump::new(&want);
    // The liar answers first; the honest peer waits in the queue.
    p.fetch
        .handle_peer_connected(p.now, PeerKey(1), &ext(Some(20_000), Some(7)));
    p.peers.insert(PeerKey(1), Script::Serve(lie));
    p.connect(2, Script::Serve(want.clone()), &ext(Some(20_000), Some(7)));
    p.run();
    assert_eq!(
        p.closed,
        vec![(PeerKey(1), MetadataDropReason::WrongMetadata)]
    );
    assert!(p.closed[0].1.is_ban());
    assert_eq!(p.fetch.stats().peers_banned, 1);
    assert_eq!(p.fetch.take_metadata(), Some(want));
}

#[test]
fn a_liar_alone_leaves_the_fetch_unfinished() {
    let want = info(100, 1);
    let mut p = Pump::new(&want);
    p.connect(1, Script::Serve(info(100, 9)), &ext(Some(100), Some(7)));
    assert!(!p.fetch.is_done());
    assert_eq!(p.fetch.candidates(), 0);
    assert_eq!(p.fetch.stats().peers_banned, 1);
}

#[test]
fn reject_timeout_and_short_data_move_on() {
    let want = info(50_000, 3);
    let mut p = Pump::new(&want);
    p.connect(1, Script::Reject, &ext(Some(50_000), Some(7)));
    assert_eq!(p.closed.last().unwrap().1, MetadataDropReason::Rejected);
    p.connect(2, Script::Short(want.clone()), &ext(Some(50_000), Some(7)));
    assert!(matches!(
        p.closed.last().unwrap().1,
        MetadataDropReason::Protocol(_)
    ));
    p.connect(3, Script::Silent, &ext(Some(50_000), Some(7)));
    p.connect(4, Script::Serve(want.clone()), &ext(Some(50_000), Some(7)));
    assert!(!p.fetch.is_done(), "peer 4 waits while 3 is asked");
    assert_eq!(
        p.fetch.poll_timeout(),
        Some(Time::ZERO + Duration::from_secs(10))
    );
    p.advance(Duration::from_secs(9));
    assert!(!p.fetch.is_done());
    p.advance(Duration::from_secs(1));
    assert_eq!(
        p.closed.last().unwrap(),
        &(PeerKey(3), MetadataDropReason::Timeout)
    );
    assert_eq!(p.fetch.take_metadata(), Some(want));
    assert_eq!(p.fetch.stats().peers_failed, 3);
    assert_eq!(p.fetch.stats().peers_banned, 0);
}

#[test]
fn a_disconnect_mid_fetch_restarts_with_the_next_peer() {
    let want = info(40_000, 4);
    let mut p = Pump::new(&want);
    p.connect(1, Script::Silent, &ext(Some(40_000), Some(7)));
    p.connect(2, Script::Serve(want.clone()), &ext(Some(40_000), Some(7)));
    p.fetch.handle_peer_disconnected(p.now, PeerKey(1));
    p.run();
    assert_eq!(p.fetch.take_metadata(), Some(want));
    assert!(p.closed.is_empty(), "a closed peer is not closed again");
}

#[test]
fn peers_without_usable_metadata_are_dropped() {
    let want = info(100, 5);
    let mut p = Pump::new(&want);
    p.connect(1, Script::Silent, &ext(None, Some(7)));
    p.connect(2, Script::Silent, &ext(Some(100), None));
    p.connect(3, Script::Silent, &ext(Some(100), Some(0)));
    p.connect(4, Script::Silent, &ext(Some(0), Some(7)));
    p.connect(
        5,
        Script::Silent,
        &ext(Some(MAX_METADATA_SIZE_BYTES + 1), Some(7)),
    );
    let reasons: Vec<_> = p.closed.iter().map(|(_, r)| r.clone()).collect();
    assert_eq!(
        reasons,
        vec![
            MetadataDropReason::NoMetadata,
            MetadataDropReason::NoMetadata,
            MetadataDropReason::NoMetadata,
            MetadataDropReason::SizeOutOfBounds { size_bytes: 0 },
            MetadataDropReason::SizeOutOfBounds {
                size_bytes: MAX_METADATA_SIZE_BYTES + 1
            },
        ]
    );
    assert_eq!(p.fetch.stats().peers_without_metadata, 5);
    assert!(p.fetch.attempt.is_none());
}

#[test]
fn unasked_data_drops_the_peer_and_requests_get_rejects() {
    let want = info(100, 6);
    let mut p = Pump::new(&want);
    p.connect(1, Script::Silent, &ext(Some(100), Some(7)));
    p.connect(2, Script::Silent, &ext(Some(100), Some(7)));
    // Peer 2 is queued, not asked: its data is a protocol error.
    let data = MetadataMessage::Data {
        piece: 0,
        total_size_bytes: 100,
        data: Bytes::from(want.clone()),
    };
    p.fetch.handle_message(p.now, PeerKey(2), data);
    p.run();
    assert!(matches!(
        p.closed.as_slice(),
        [(PeerKey(2), MetadataDropReason::Protocol(_))]
    ));
    // A request to us is answered with a reject under the peer's id.
    p.fetch
        .handle_message(p.now, PeerKey(1), MetadataMessage::Request { piece: 0 });
    assert_eq!(
        p.fetch.poll_action(),
        Some(MetadataAction::Send {
            peer: PeerKey(1),
            ext_id: 7,
            msg: MetadataMessage::Reject { piece: 0 }
        })
    );
}

#[test]
fn peers_beyond_the_bound_are_dropped() {
    let want = info(100, 7);
    let mut p = Pump::new(&want);
    for k in 0..70 {
        p.connect(k, Script::Silent, &ext(Some(100), Some(7)));
    }
    assert_eq!(p.fetch.candidates(), 64);
    assert_eq!(p.closed.len(), 6);
    assert!(p
        .closed
        .iter()
        .all(|(_, r)| *r == MetadataDropReason::TooManyPeers));
}

/// Replies queue up and are delivered in an order the test picks; peers
/// connect, disconnect and time advances in between.
struct AsyncPump {
    inner: Pump,
    /// Replies sent by peers, not yet delivered.
    pending: Vec<(PeerKey, MetadataMessage)>,
    /// Peers whose connection the test closed.
    gone: Vec<PeerKey>,
}

impl AsyncPump {
    /// Runs actions; requests are answered per script into `pending`.
    fn run(&mut self) {
        while let Some(action) = self.inner.fetch.poll_action() {
            self.inner.check();
            match action {
                MetadataAction::Disconnect { peer, reason } => {
                    self.inner.peers.remove(&peer);
                    self.pending.retain(|(p, _)| *p != peer);
                    self.inner.closed.push((peer, reason));
                }
                MetadataAction::Send {
                    peer,
                    msg: MetadataMessage::Request { piece },
                    ..
                } => {
                    let reply = match self.inner.peers.get(&peer) {
                        Some(Script::Serve(b)) | Some(Script::Short(b)) => {
                            let r = metadata_piece_range(b.len() as u64, piece).unwrap();
                            let mut data = b[r].to_vec();
                            if matches!(self.inner.peers.get(&peer), Some(Script::Short(_))) {
                                data.pop();
                            }
                            Some(MetadataMessage::Data {
                                piece,
                                total_size_bytes: b.len() as u64,
                                data: Bytes::from(data),
                            })
                        }
                        Some(Script::Reject) => Some(MetadataMessage::Reject { piece }),
                        Some(Script::Silent) | None => None,
                    };
                    if let Some(r) = reply {
                        self.pending.push((peer, r));
                    }
                }
                MetadataAction::Send { .. } => {}
            }
        }
        self.inner.check();
    }
}

proptest::proptest! {
    /// Whatever the peers do and in whatever order their answers arrive:
    /// the fetch never panics, hands out only bytes that hash to the
    /// info-hash, bans only liars, and finishes when an honest peer stays.
    #[test]
    fn random_swarms_end_with_the_right_bytes(
        size in 1usize..50_000,
        kinds in proptest::collection::vec(0u8..6, 1..8),
        ops in proptest::collection::vec((0u8..4, proptest::prelude::any::<u16>()), 0..120),
    ) {
        let want = info(size, 1);
        let script = |k: u8| match k {
            0 => (Script::Serve(want.clone()), size),
            1 => (Script::Serve(info(size, 2)), size), // liar, same size
            2 => (Script::Serve(info(size + 5, 3)), size + 5), // liar, another size
            3 => (Script::Reject, size),
            4 => (Script::Silent, size),
            _ => (Script::Short(want.clone()), size),
        };
        let mut p = AsyncPump { inner: Pump::new(&want), pending: Vec::new(), gone: Vec::new() };
        let mut next = 0usize;
        let connect = |p: &mut AsyncPump, i: usize| {
            let (s, adv) = script(kinds[i]);
            let peer = PeerKey(i as u64);
            p.inner.peers.insert(peer, s);
            p.inner.fetch.handle_peer_connected(p.inner.now, peer, &ext(Some(adv as u64), Some(7)));
            p.run();
        };
        for (op, arg) in ops {
            match op {
                0 if !p.pending.is_empty() => {
                    let (peer, msg) = p.pending.remove(usize::from(arg) % p.pending.len());
                    p.inner.fetch.handle_message(p.inner.now, peer, msg);
                    p.run();
                }
                1 => {
                    p.inner.now += Duration::from_millis(u64::from(arg) * 10);
                    let now = p.inner.now;
                    if p.inner.fetch.poll_timeout().is_some_and(|t| t <= now) {
                        p.inner.fetch.handle_timeout(now);
                    }
                    p.run();
                }
                2 if next > 0 => {
                    let peer = PeerKey(u64::from(arg) % next as u64);
                    if p.inner.peers.remove(&peer).is_some() {
                        p.gone.push(peer);
                        p.pending.retain(|(q, _)| *q != peer);
                        p.inner.fetch.handle_peer_disconnected(p.inner.now, peer);
                        p.run();
                    }
                }
                3 if next < kinds.len() => {
                    connect(&mut p, next);
                    next += 1;
                }
                _ => {}
            }
        }
        // Then everyone connects and every answer is delivered, in order,
        // with time moving on (timeouts fire).
        while next < kinds.len() {
            connect(&mut p, next);
            next += 1;
        }
        for _ in 0..10_000 {
            if p.inner.fetch.is_done() {
                break;
            }
            if p.pending.is_empty() {
                p.inner.now += Duration::from_secs(11);
                let now = p.inner.now;
                if p.inner.fetch.poll_timeout().is_some_and(|t| t <= now) {
                    p.inner.fetch.handle_timeout(now);
                }
                p.run();
                if p.pending.is_empty() && p.inner.fetch.poll_timeout().is_none() {
                    break;
                }
            } else {
                let (peer, msg) = p.pending.remove(0);
                p.inner.fetch.handle_message(p.inner.now, peer, msg);
                p.run();
            }
        }
        for (peer, reason) in &p.inner.closed {
            let k = kinds[peer.0 as usize];
            if reason.is_ban() {
                proptest::prop_assert!(k == 1 || k == 2, "peer {} of kind {k} banned", peer.0);
            }
            if k == 0 {
                // The test may hold an honest answer past the request timeout.
                proptest::prop_assert_eq!(reason, &MetadataDropReason::Timeout);
            }
        }
        let closed = |i: usize| p.inner.closed.iter().any(|(q, _)| q.0 == i as u64);
        let honest_stayed = kinds
            .iter()
            .enumerate()
            .any(|(i, &k)| k == 0 && !p.gone.contains(&PeerKey(i as u64)) && !closed(i));
        if honest_stayed {
            proptest::prop_assert!(p.inner.fetch.is_done(), "an honest peer stayed: {:?}", p.inner.closed);
        }
        if let Some(bytes) = p.inner.fetch.take_metadata() {
            proptest::prop_assert_eq!(bytes, want);
        }
    }
}
