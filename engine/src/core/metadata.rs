//! Fetching the info dictionary of a magnet link from peers (BEP 9
//! `ut_metadata` over BEP 10), sans-IO.
//!
//! The policy: the whole dictionary comes from one peer at a time. Peers
//! that advertised `ut_metadata` and a `metadata_size` in 1..=
//! [`MetadataConfig::max_size_bytes`] queue up in the order their extended
//! handshakes arrived; the first is asked for every 16 KiB piece, at most
//! [`MetadataConfig::max_requests_in_flight`] at once. When the last piece
//! is in, the bytes are checked against the info-hash (SHA-1, BEP 3): a
//! match ends the fetch ([`MetadataFetch::take_metadata`]); a mismatch
//! drops and bans that peer ([`MetadataDropReason::WrongMetadata`]) and the
//! next peer starts over. One source per attempt is what makes the ban
//! certain: with pieces from several peers a mismatch could not name the
//! liar, and metadata is small (a 1 TiB torrent in 16 MiB pieces has ~3.4 MB
//! of it, BLAKE3 digests included), so parallel sources would gain little.
//!
//! # Driver obligations
//! - After a peer's BEP 10 handshake: [`MetadataFetch::handle_peer_connected`].
//! - Each `ut_metadata` message from it: [`MetadataFetch::handle_message`].
//! - A closed connection: [`MetadataFetch::handle_peer_disconnected`].
//! - [`MetadataFetch::handle_timeout`] at [`MetadataFetch::poll_timeout`].
//! - Drain [`MetadataFetch::poll_action`] after every call:
//!   [`MetadataAction::Send`] frames the message as an extended message under
//!   `ext_id` (the peer's id for `ut_metadata`); [`MetadataAction::Disconnect`]
//!   closes the connection (the machine has already forgotten the peer), and
//!   when [`MetadataDropReason::is_ban`] never dials that address again.
//!
//! # Invariants (property-tested: `random_swarms_end_with_the_right_bytes`)
//! - At most one attempt runs; its requests go to its peer only, at most
//!   `max_requests_in_flight` unanswered.
//! - Bytes handed out by [`MetadataFetch::take_metadata`] hash to the
//!   info-hash.
//! - Peer-growable state is bounded: at most [`MetadataConfig::max_peers`]
//!   peers are tracked (more are dropped), and the attempt's buffer is the
//!   advertised size, at most [`MetadataConfig::max_size_bytes`].
//! - Peer input never panics: a `data` message that was not asked for, of
//!   the wrong length or with another `total_size` drops the peer.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::core::{PeerKey, Time};
use crate::wire::metainfo::InfoHash;
use crate::wire::peer::metadata::{
    metadata_piece_count, metadata_piece_range, MetadataMessage, UT_METADATA,
};
use crate::wire::peer::ExtendedHandshake;

/// Largest info dictionary fetched: 64 MiB. A 1 PiB torrent in 16 MiB
/// pieces needs ~3.4 MB (SHA-1 and BLAKE3 digests); the bound only stops a
/// peer from making us allocate without limit.
pub const MAX_METADATA_SIZE_BYTES: u64 = 64 << 20;

/// Settings of a [`MetadataFetch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetadataConfig {
    /// Largest `metadata_size` accepted, in bytes; a peer advertising more
    /// is dropped ([`MetadataDropReason::SizeOutOfBounds`]).
    pub max_size_bytes: u64,
    /// A request unanswered this long drops its peer.
    pub request_timeout: Duration,
    /// Requests outstanding to the attempt's peer at once.
    pub max_requests_in_flight: u32,
    /// Peers tracked at once; more are dropped ([`MetadataDropReason::TooManyPeers`]).
    pub max_peers: usize,
}

impl Default for MetadataConfig {
    /// 64 MiB; 10 s per request (a 16 KiB answer takes milliseconds; a
    /// peer that sits on a request for 10 s is not worth waiting for); 16
    /// requests in flight (256 KiB: a loopback or datacenter round trip's
    /// worth, well under libtorrent's queue of 1,024); 64 peers.
    fn default() -> Self {
        Self {
            max_size_bytes: MAX_METADATA_SIZE_BYTES,
            request_timeout: Duration::from_secs(10),
            max_requests_in_flight: 16,
            max_peers: 64,
        }
    }
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataAction {
    /// Send `msg` to `peer` as an extended message with id `ext_id`.
    Send {
        /// The peer.
        peer: PeerKey,
        /// The peer's extended id for `ut_metadata` (from its handshake).
        ext_id: u8,
        /// The message.
        msg: MetadataMessage,
    },
    /// Close the connection to `peer`; already forgotten here.
    Disconnect {
        /// The peer.
        peer: PeerKey,
        /// Why.
        reason: MetadataDropReason,
    },
}

/// Why a peer was dropped from the fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataDropReason {
    /// Its extended handshake has no `ut_metadata` or no `metadata_size`.
    NoMetadata,
    /// It advertised a `metadata_size` of 0 or above the bound.
    SizeOutOfBounds {
        /// The advertised size in bytes.
        size_bytes: u64,
    },
    /// It rejected a request.
    Rejected,
    /// It left a request unanswered for [`MetadataConfig::request_timeout`].
    Timeout,
    /// It sent a `data` message we did not ask for, or of the wrong length
    /// or `total_size`.
    Protocol(&'static str),
    /// Its metadata does not hash to the info-hash: it lied. Ban it.
    WrongMetadata,
    /// [`MetadataConfig::max_peers`] peers are tracked already.
    TooManyPeers,
}

impl MetadataDropReason {
    /// Whether the peer must never be dialled again (it sent metadata that
    /// does not match the info-hash).
    pub fn is_ban(&self) -> bool {
        matches!(self, Self::WrongMetadata)
    }
}

/// Counters of a [`MetadataFetch`], for the caller's error messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetadataStats {
    /// Peers whose extended handshake arrived.
    pub peers_connected: u32,
    /// Peers without usable `ut_metadata` (none, or a size out of bounds).
    pub peers_without_metadata: u32,
    /// Peers banned for metadata not matching the info-hash.
    pub peers_banned: u32,
    /// Peers dropped for a reject, a timeout or a protocol error.
    pub peers_failed: u32,
}

/// A peer that may be asked.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    ext_id: u8,
    size_bytes: u64,
}

/// The fetch from one peer.
#[derive(Debug)]
struct Attempt {
    peer: PeerKey,
    ext_id: u8,
    size_bytes: u64,
    buf: Vec<u8>,
    piece_count: u32,
    /// Next piece never requested.
    next_piece: u32,
    received: u32,
    /// Requested pieces awaiting an answer, with when they were sent.
    in_flight: BTreeMap<u32, Time>,
}

/// The metadata fetch of one info-hash (see the module docs).
#[derive(Debug)]
pub struct MetadataFetch {
    info_hash: InfoHash,
    config: MetadataConfig,
    peers: BTreeMap<PeerKey, Candidate>,
    /// Candidates in arrival order (may hold peers dropped meanwhile).
    queue: VecDeque<PeerKey>,
    attempt: Option<Attempt>,
    actions: VecDeque<MetadataAction>,
    done: Option<Vec<u8>>,
    taken: bool,
    stats: MetadataStats,
}

impl MetadataFetch {
    /// A fetch of the info dictionary hashing to `info_hash`.
    pub fn new(info_hash: InfoHash, config: MetadataConfig) -> Self {
        Self {
            info_hash,
            config,
            peers: BTreeMap::new(),
            queue: VecDeque::new(),
            attempt: None,
            actions: VecDeque::new(),
            done: None,
            taken: false,
            stats: MetadataStats::default(),
        }
    }

    /// The info-hash being fetched.
    pub fn info_hash(&self) -> InfoHash {
        self.info_hash
    }

    /// Counters so far.
    pub fn stats(&self) -> MetadataStats {
        self.stats
    }

    /// Whether the verified metadata is in (until and after it is taken).
    pub fn is_done(&self) -> bool {
        self.done.is_some() || self.taken
    }

    /// Peers that may still be asked (the one being asked included).
    pub fn candidates(&self) -> usize {
        self.peers.len()
    }

    /// The verified info dictionary, once; `None` before it is in.
    pub fn take_metadata(&mut self) -> Option<Vec<u8>> {
        let bytes = self.done.take()?;
        self.taken = true;
        Some(bytes)
    }

    /// The next thing the driver must do.
    pub fn poll_action(&mut self) -> Option<MetadataAction> {
        self.actions.pop_front()
    }

    /// When [`Self::handle_timeout`] is next due (the oldest request's
    /// deadline); `None` while nothing is in flight.
    pub fn poll_timeout(&self) -> Option<Time> {
        let a = self.attempt.as_ref()?;
        let oldest = a.in_flight.values().min()?;
        Some(*oldest + self.config.request_timeout)
    }

    /// A peer's BEP 10 handshake arrived: it becomes a candidate if it
    /// serves metadata of an acceptable size, else it is dropped.
    pub fn handle_peer_connected(&mut self, now: Time, peer: PeerKey, theirs: &ExtendedHandshake) {
        if self.peers.contains_key(&peer) {
            return;
        }
        self.stats.peers_connected += 1;
        let ext_id = theirs.m.get(UT_METADATA).copied().filter(|&id| id != 0);
        let reason = match (ext_id, theirs.metadata_size) {
            (Some(_), Some(size)) if size == 0 || size > self.config.max_size_bytes => {
                Some(MetadataDropReason::SizeOutOfBounds { size_bytes: size })
            }
            (Some(_), Some(_)) if self.is_done() => None,
            (Some(_), Some(_)) if self.peers.len() >= self.config.max_peers => {
                Some(MetadataDropReason::TooManyPeers)
            }
            (Some(_), Some(_)) => None,
            _ => Some(MetadataDropReason::NoMetadata),
        };
        if let Some(reason) = reason {
            if !matches!(reason, MetadataDropReason::TooManyPeers) {
                self.stats.peers_without_metadata += 1;
            }
            self.actions
                .push_back(MetadataAction::Disconnect { peer, reason });
            return;
        }
        if let (Some(ext_id), Some(size_bytes), false) =
            (ext_id, theirs.metadata_size, self.is_done())
        {
            self.peers.insert(peer, Candidate { ext_id, size_bytes });
            self.queue.push_back(peer);
            self.start_next(now);
        }
    }

    /// A `ut_metadata` message from `peer`.
    pub fn handle_message(&mut self, now: Time, peer: PeerKey, msg: MetadataMessage) {
        match msg {
            MetadataMessage::Request { piece } => {
                // We have nothing to serve yet (BEP 9: reject).
                if let Some(c) = self.peers.get(&peer) {
                    self.actions.push_back(MetadataAction::Send {
                        peer,
                        ext_id: c.ext_id,
                        msg: MetadataMessage::Reject { piece },
                    });
                }
            }
            MetadataMessage::Reject { piece } => {
                if self.is_asked(peer, piece) {
                    self.stats.peers_failed += 1;
                    self.drop_peer(now, peer, MetadataDropReason::Rejected);
                }
            }
            MetadataMessage::Data {
                piece,
                total_size_bytes,
                data,
            } => self.on_data(now, peer, piece, total_size_bytes, &data),
        }
    }

    /// The connection to `peer` closed.
    pub fn handle_peer_disconnected(&mut self, now: Time, peer: PeerKey) {
        if self.peers.remove(&peer).is_some()
            && self.attempt.as_ref().is_some_and(|a| a.peer == peer)
        {
            self.attempt = None;
            self.start_next(now);
        }
    }

    /// Drops the attempt's peer when a request is older than the timeout.
    pub fn handle_timeout(&mut self, now: Time) {
        let Some(a) = &self.attempt else {
            return;
        };
        let late = a
            .in_flight
            .values()
            .any(|&sent| now.saturating_duration_since(sent) >= self.config.request_timeout);
        if late {
            let peer = a.peer;
            self.stats.peers_failed += 1;
            self.drop_peer(now, peer, MetadataDropReason::Timeout);
        }
    }

    fn is_asked(&self, peer: PeerKey, piece: u32) -> bool {
        self.attempt
            .as_ref()
            .is_some_and(|a| a.peer == peer && a.in_flight.contains_key(&piece))
    }

    fn on_data(&mut self, now: Time, peer: PeerKey, piece: u32, total: u64, data: &[u8]) {
        if !self.peers.contains_key(&peer) {
            return; // dropped already, or never a candidate: its data is not wanted
        }
        if !self.is_asked(peer, piece) {
            self.stats.peers_failed += 1;
            self.drop_peer(
                now,
                peer,
                MetadataDropReason::Protocol("data not asked for"),
            );
            return;
        }
        let Some(a) = self.attempt.as_mut() else {
            return;
        };
        let range = metadata_piece_range(a.size_bytes, piece);
        let fits = total == a.size_bytes && range.as_ref().is_some_and(|r| r.len() == data.len());
        let Some(dst) = range.filter(|_| fits).and_then(|r| a.buf.get_mut(r)) else {
            self.stats.peers_failed += 1;
            let why = MetadataDropReason::Protocol("data of the wrong length or total_size");
            self.drop_peer(now, peer, why);
            return;
        };
        dst.copy_from_slice(data);
        a.in_flight.remove(&piece);
        a.received += 1;
        if a.received < a.piece_count {
            self.fill_requests(now);
            return;
        }
        let Some(a) = self.attempt.take() else {
            return;
        };
        if InfoHash::of_info_bytes(&a.buf) == self.info_hash {
            self.done = Some(a.buf);
            self.peers.clear();
            self.queue.clear();
        } else {
            self.stats.peers_banned += 1;
            self.drop_peer(now, peer, MetadataDropReason::WrongMetadata);
        }
    }

    /// Forgets `peer`, tells the driver to close it, and moves on if it was
    /// being asked.
    fn drop_peer(&mut self, now: Time, peer: PeerKey, reason: MetadataDropReason) {
        self.peers.remove(&peer);
        self.actions
            .push_back(MetadataAction::Disconnect { peer, reason });
        if self.attempt.as_ref().is_some_and(|a| a.peer == peer) {
            self.attempt = None;
        }
        self.start_next(now);
    }

    /// Starts an attempt with the oldest candidate, if none runs.
    fn start_next(&mut self, now: Time) {
        if self.attempt.is_some() || self.is_done() {
            return;
        }
        while let Some(peer) = self.queue.pop_front() {
            let Some(c) = self.peers.get(&peer).copied() else {
                continue; // dropped meanwhile
            };
            // Bounded by `max_size_bytes` at handle_peer_connected.
            let len = usize::try_from(c.size_bytes).unwrap_or(0);
            let piece_count = u32::try_from(metadata_piece_count(c.size_bytes)).unwrap_or(0);
            self.attempt = Some(Attempt {
                peer,
                ext_id: c.ext_id,
                size_bytes: c.size_bytes,
                buf: vec![0; len],
                piece_count,
                next_piece: 0,
                received: 0,
                in_flight: BTreeMap::new(),
            });
            self.fill_requests(now);
            return;
        }
    }

    /// Tops up the attempt's requests to `max_requests_in_flight`.
    fn fill_requests(&mut self, now: Time) {
        let max = self.config.max_requests_in_flight.max(1) as usize;
        let Some(a) = self.attempt.as_mut() else {
            return;
        };
        while a.in_flight.len() < max && a.next_piece < a.piece_count {
            let piece = a.next_piece;
            a.next_piece += 1;
            a.in_flight.insert(piece, now);
            self.actions.push_back(MetadataAction::Send {
                peer: a.peer,
                ext_id: a.ext_id,
                msg: MetadataMessage::Request { piece },
            });
        }
    }
}

#[cfg(test)]
#[path = "metadata_tests.rs"]
mod tests;
