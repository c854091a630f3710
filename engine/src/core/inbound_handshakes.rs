//! Inbound connections of a many-torrent node waiting for the part of the
//! peer's BEP 3 handshake that names the torrent.
//!
//! One listen port serves every torrent of a [`crate::node::Session`]: an
//! accepted connection belongs to no torrent until the first 48 bytes of the
//! peer's 68-byte handshake arrived (`pstrlen` 19, `"BitTorrent protocol"`,
//! 8 reserved bytes, then the 20-byte info-hash at bytes 28..48). Until then
//! it waits here, with the bytes received so far; the driver then hands the
//! connection and those bytes to the torrent with that info-hash (or closes
//! it when no torrent has it).
//!
//! Invariants: at most [`InboundConfig::max_pending`] connections wait (a new
//! one evicts the oldest, so a flood of silent sockets cannot keep honest
//! peers out for longer than they take to send 48 bytes); none waits longer
//! than [`InboundConfig::timeout`] (the driver closes what
//! [`InboundHandshakes::handle_timeout`] returns); each keeps at most 47
//! bytes. Peer input never panics: anything that is not a BEP 3 handshake
//! prefix is [`Routed::NotBitTorrent`] at its first wrong byte.
//!
//! Driver obligations: call [`InboundHandshakes::handle_open`] at accept and
//! close the connection it evicts; feed received bytes to
//! [`InboundHandshakes::handle_recv`]; call
//! [`InboundHandshakes::handle_timeout`] at [`InboundHandshakes::poll_timeout`]
//! and close what it returns; [`InboundHandshakes::remove`] a connection that
//! closed while waiting.

use std::collections::VecDeque;
use std::time::Duration;

use super::Time;
use crate::base::InfoHash;

/// The BEP 3 protocol string a handshake starts with (after its length byte).
const PROTOCOL: &[u8; 19] = b"BitTorrent protocol";
/// Offset of the info-hash in the handshake (1 + 19 + 8 reserved bytes).
const INFO_HASH_START: usize = 28;
/// End of the info-hash in the handshake: the bytes needed to route.
pub const INFO_HASH_END: usize = INFO_HASH_START + 20;

/// Bounds of the waiting connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboundConfig {
    /// Most connections waiting at once (per runtime worker).
    pub max_pending: usize,
    /// Longest wait for the 48 bytes (as [`super::slots::SlotConfig::handshake_timeout`]).
    pub timeout: Duration,
}

impl Default for InboundConfig {
    /// 256 waiting, 10 s each. 256: a burst of that many peers connecting in
    /// the same few milliseconds to one worker is far beyond a node's
    /// connection bound per torrent ([`crate::node::MAX_PEERS`]), and each
    /// waiting connection costs well under 100 bytes here.
    fn default() -> Self {
        InboundConfig {
            max_pending: 256,
            timeout: Duration::from_secs(10),
        }
    }
}

/// What the bytes received so far say about a waiting connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routed<P> {
    /// Fewer than [`INFO_HASH_END`] bytes so far; keep waiting.
    Wait,
    /// The handshake names this info-hash. The connection no longer waits:
    /// hand its `peer` to the torrent, then `buffered` (the bytes of earlier
    /// calls) followed by the bytes of this call.
    InfoHash {
        /// The info-hash of the peer's handshake (BEP 3).
        info_hash: InfoHash,
        /// What [`InboundHandshakes::handle_open`] was given.
        peer: P,
        /// Bytes received before this call, in order (fewer than 48).
        buffered: Vec<u8>,
    },
    /// Not a BEP 3 handshake: close the connection (it no longer waits).
    NotBitTorrent,
}

#[derive(Debug)]
struct Waiting<K, P> {
    key: K,
    peer: P,
    since: Time,
    buf: Vec<u8>,
}

/// The waiting inbound connections of one worker, oldest first.
#[derive(Debug)]
pub struct InboundHandshakes<K, P> {
    config: InboundConfig,
    waiting: VecDeque<Waiting<K, P>>,
}

impl<K: Copy + Eq, P> InboundHandshakes<K, P> {
    /// No connection waiting.
    pub fn new(config: InboundConfig) -> Self {
        InboundHandshakes {
            config,
            waiting: VecDeque::new(),
        }
    }

    /// Connections waiting now.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// A connection `key` from `peer` was accepted at `now`. Returns the
    /// oldest waiting connection when the bound is reached (it no longer
    /// waits: close it).
    pub fn handle_open(&mut self, now: Time, key: K, peer: P) -> Option<K> {
        let evicted = if self.waiting.len() >= self.config.max_pending.max(1) {
            self.waiting.pop_front().map(|w| w.key)
        } else {
            None
        };
        self.waiting.push_back(Waiting {
            key,
            peer,
            since: now,
            buf: Vec::new(),
        });
        evicted
    }

    /// Bytes received on `key`; `None` if it is not waiting.
    pub fn handle_recv(&mut self, key: K, data: &[u8]) -> Option<Routed<P>> {
        let i = self.waiting.iter().position(|w| w.key == key)?;
        let w = self.waiting.get_mut(i)?;
        let have = w.buf.len();
        // Check every new byte of the prefix as it comes: a wrong one is final.
        for (at, &b) in (have..INFO_HASH_START).zip(data) {
            let ok = match at {
                0 => usize::from(b) == PROTOCOL.len(),
                1..=19 => PROTOCOL.get(at - 1) == Some(&b),
                _ => true, // reserved bytes
            };
            if !ok {
                self.waiting.remove(i);
                return Some(Routed::NotBitTorrent);
            }
        }
        if have + data.len() < INFO_HASH_END {
            w.buf.extend_from_slice(data);
            return Some(Routed::Wait);
        }
        let mut info_hash = [0u8; 20];
        for (at, dst) in (INFO_HASH_START..INFO_HASH_END).zip(info_hash.iter_mut()) {
            let b = if at < have {
                w.buf.get(at)
            } else {
                data.get(at - have)
            };
            *dst = b.copied().unwrap_or(0);
        }
        let w = self.waiting.remove(i)?;
        Some(Routed::InfoHash {
            info_hash: InfoHash(info_hash),
            peer: w.peer,
            buffered: w.buf,
        })
    }

    /// Forgets `key` (it closed while waiting); whether it was waiting.
    pub fn remove(&mut self, key: K) -> bool {
        match self.waiting.iter().position(|w| w.key == key) {
            Some(i) => self.waiting.remove(i).is_some(),
            None => false,
        }
    }

    /// When the oldest waiting connection times out.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.waiting.front().map(|w| w.since + self.config.timeout)
    }

    /// Removes and returns the connections that waited [`InboundConfig::timeout`]
    /// or longer at `now` (close them).
    pub fn handle_timeout(&mut self, now: Time) -> Vec<K> {
        let mut expired = Vec::new();
        while let Some(w) = self.waiting.front() {
            if w.since + self.config.timeout > now {
                break;
            }
            expired.extend(self.waiting.pop_front().map(|w| w.key));
        }
        expired
    }

    /// Removes and returns every waiting connection whose key `gone` selects
    /// (e.g. all of them when the node stops).
    pub fn drain_where(&mut self, mut gone: impl FnMut(K) -> bool) -> Vec<K> {
        let mut out = Vec::new();
        self.waiting.retain(|w| {
            let g = gone(w.key);
            if g {
                out.push(w.key);
            }
            !g
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn handshake(info_hash: InfoHash) -> Vec<u8> {
        let mut h = vec![19u8];
        h.extend_from_slice(PROTOCOL);
        h.extend_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 0x05]);
        h.extend_from_slice(&info_hash.0);
        h.extend_from_slice(b"-XX0001-012345678901");
        h
    }

    fn at(secs: u64) -> Time {
        Time::ZERO + Duration::from_secs(secs)
    }

    fn cfg(max_pending: usize) -> InboundConfig {
        InboundConfig {
            max_pending,
            timeout: Duration::from_secs(10),
        }
    }

    #[test]
    fn routes_on_the_info_hash_whatever_the_split() {
        let ih = InfoHash([7u8; 20]);
        let hs = handshake(ih);
        for split in 1..hs.len() {
            let mut w = InboundHandshakes::new(cfg(4));
            assert_eq!(w.handle_open(Time::ZERO, 1u32, "peer"), None);
            let mut fed = 0;
            let mut routed = None;
            for chunk in [&hs[..split], &hs[split..]] {
                fed += chunk.len();
                match w.handle_recv(1, chunk).unwrap() {
                    Routed::Wait => assert!(fed < INFO_HASH_END, "split {split}"),
                    Routed::InfoHash {
                        info_hash,
                        peer,
                        buffered,
                    } => {
                        assert_eq!((info_hash, peer), (ih, "peer"));
                        // Replaying `buffered` then this call's bytes gives
                        // the stream so far back.
                        let mut replay = buffered;
                        replay.extend_from_slice(chunk);
                        assert_eq!(replay, hs[..fed], "split {split}");
                        routed = Some(fed);
                        break;
                    }
                    Routed::NotBitTorrent => panic!("split {split}: rejected"),
                }
            }
            assert!(routed.is_some_and(|f| f >= INFO_HASH_END), "split {split}");
            assert!(w.is_empty(), "split {split}: still waiting");
        }
    }

    #[test]
    fn a_wrong_prefix_byte_is_rejected_at_once() {
        let mut w = InboundHandshakes::new(cfg(4));
        w.handle_open(Time::ZERO, 1u32, ());
        assert_eq!(w.handle_recv(1, &[19, b'B']), Some(Routed::Wait));
        assert_eq!(w.handle_recv(1, b"X"), Some(Routed::NotBitTorrent));
        assert!(w.is_empty());
        w.handle_open(Time::ZERO, 2u32, ());
        assert_eq!(
            w.handle_recv(2, b"GET / HTTP/1.1\r\n"),
            Some(Routed::NotBitTorrent)
        );
        assert_eq!(w.handle_recv(3, b"x"), None);
    }

    #[test]
    fn count_and_time_are_bounded() {
        let mut w = InboundHandshakes::new(cfg(3));
        for k in 0..3u32 {
            assert_eq!(w.handle_open(at(u64::from(k)), k, ()), None);
        }
        assert_eq!(w.handle_open(at(3), 3, ()), Some(0));
        assert_eq!(w.len(), 3);
        assert_eq!(w.poll_timeout(), Some(at(11)));
        assert!(w.handle_timeout(at(10)).is_empty());
        assert_eq!(w.handle_timeout(at(12)), vec![1, 2]);
        assert!(w.remove(3));
        assert!(!w.remove(3));
        assert_eq!(w.poll_timeout(), None);
    }

    proptest! {
        #[test]
        fn any_input_is_bounded_and_never_panics(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 0..20),
            opens in 1usize..10,
        ) {
            let mut w = InboundHandshakes::new(cfg(4));
            for k in 0..opens {
                w.handle_open(at(k as u64), k, ());
                prop_assert!(w.len() <= 4);
            }
            for (i, c) in chunks.iter().enumerate() {
                let _ = w.handle_recv(i % opens, c);
                prop_assert!(w.waiting.iter().all(|x| x.buf.len() < INFO_HASH_END));
            }
            let _ = w.handle_timeout(at(100));
            prop_assert!(w.is_empty());
        }
    }
}
