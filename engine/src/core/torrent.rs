//! The torrent state machine: one swarm as seen by one node (sans-IO).
//!
//! The driver feeds events (`handle_*`), drains [`Action`]s with [`Torrent::poll_action`]
//! and calls [`Torrent::handle_timeout`] at [`Torrent::poll_timeout`]. Nothing here reads a
//! clock, opens a socket or draws OS randomness: every random choice comes from a
//! `ChaCha8Rng` seeded by `rng_seed`, and peers live in a `BTreeMap`, so a run is
//! replayable from its inputs.
//!
//! # Seeder policy ([`SeederPolicy::DistinctFirst`], the default)
//!
//! The origin's upload is the scarce resource (D_p2p >= F / u_s): ideally each piece leaves
//! it once and leechers relay it to each other ("everyone talks to everyone"). A node that
//! is complete when created (the origin) therefore
//! 1. counts, per piece, the copies it started uploading (the block at offset 0 was handed
//!    to the driver) and to whom the latest went;
//! 2. suggests (BEP 6 `suggest`) least-uploaded pieces, walking a shuffled order so that
//!    different peers get different pieces: `suggest_pieces` on unchoke and one more per
//!    piece served; p2pe leechers pick suggested pieces before rarest-first;
//! 3. rejects (BEP 6 `reject`) a request for a piece already uploaded to *another* peer,
//!    once per peer and piece; the requester fetches it from a peer instead. A repeated
//!    request is served: leechers only repeat when nothing else is in flight (their
//!    neighbours lack the piece), so nobody stalls. The check is made on arrival and
//!    again when the request reaches the head of the upload queue;
//! 4. serves pending requests least-uploaded piece first, then to the requester with the
//!    fewest pieces, then rarest among its peers, holding at most `upload_in_flight_bytes`
//!    in the driver so the choice is made late.
//!
//! Peers without the fast extension cannot be rejected and are only served in
//! least-uploaded order. Leechers, and leechers that completed, order their own uploads
//! the same way (pieces they uploaded least, peers furthest behind, rarest pieces first),
//! but never reject for distinct-first nor suggest: their upload is not the bottleneck,
//! and rejecting would only slow down the stragglers.
//!
//! # Busy relay
//!
//! A node that was not complete when created rejects (BEP 6) a p2pe peer's request while
//! `busy_reject_pending` accepted requests already wait behind its upload window: every
//! neighbour that lacks a fresh piece asks its first holder, and without this they queue
//! there while the piece's later holders have idle uplinks. The requester skips the piece
//! at this peer until its next rechoke, or until nothing is in flight from anyone, and
//! fetches it elsewhere. Other clients are never rejected for this.
//!
//! Measured on the in-test pump (origin + 100 leechers, 1250 whole pieces, ~16 random
//! neighbours each, equal uplinks): origin uploads 1.000-1.001 copies of the file and the
//! swarm completes in 1.09-1.10x the D_p2p lower bound; with [`SeederPolicy::Plain`] the
//! origin uploads ~1.5 copies in a 20-peer full mesh.

mod download;
mod external_choke;
mod relay;
mod smart_ban;
mod stall;
mod upload;
mod upload_budget;

use super::choker::Choker;
use super::peer::{DeliveryWait, PeerState};
use super::picker::Picker;
use super::rack::RackView;
use super::rate_limit;
use super::{Action, Bitfield, Block, DisconnectReason, PeerCaps, PeerKey, PeerMessage};
use super::{ChokeCandidate, ChokerMode, PieceIndex, ProtocolError, Time, TorrentConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Counters for drivers, the simulator and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TorrentStats {
    /// Payload bytes reported sent by [`Torrent::handle_block_sent`].
    pub uploaded_bytes: u64,
    /// Payload bytes received in blocks we had requested.
    pub downloaded_bytes: u64,
    /// Received payload bytes that were useless (endgame duplicates, late cancelled
    /// blocks, pieces failing the hash).
    pub wasted_bytes: u64,
    /// Pieces we have (verified).
    pub pieces_have: u32,
    /// Connected peers.
    pub peers: usize,
    /// Peers we currently unchoke.
    pub unchoked_peers: usize,
    /// Pieces that failed their hash check.
    pub hash_failures: u32,
    /// Peers banned for sending corrupt data.
    pub peers_banned: u32,
    /// BEP 6 rejects sent by the distinct-first seeder policy.
    pub distinct_rejects_sent: u64,
    /// Requests rejected because our upload queue was full (busy relay, see
    /// `TorrentConfig::busy_reject_pending`).
    pub busy_rejects_sent: u64,
    /// Piece copies started (blocks at offset 0 handed to the driver).
    pub piece_uploads_started: u64,
    /// Whether the picker is in endgame.
    pub endgame: bool,
}

/// One torrent's swarm logic: peers, picker, choker, upload queue.
#[derive(Debug)]
pub struct Torrent {
    config: TorrentConfig,
    have: Bitfield,
    picker: Picker,
    choker: Choker,
    peers: BTreeMap<PeerKey, PeerState>,
    actions: VecDeque<Action>,
    rng: ChaCha8Rng,
    uploads: upload::UploadState,
    stats: TorrentStats,
    /// Time of the latest event, for bookkeeping in helpers that do not take `now`.
    now: Time,
    /// Regular unchoke slots [`Torrent::fill_free_slots`] may fill: the configured slots,
    /// or in [`ChokerMode::External`] what the latest decision allows.
    slot_budget: usize,
    /// [`ChokerMode::External`]: the rates of the latest interval, not yet polled.
    choke_report: Option<Vec<ChokeCandidate>>,
    /// Failed copies kept to find which peer sent a wrong block.
    smart_ban: smart_ban::SmartBan,
    /// The download limit stopped request issuing: top up every peer when it allows.
    download_throttled: bool,
    /// The upload limit stopped handing out blocks: pump uploads when it allows.
    upload_throttled: bool,
    /// Rack-aware requests ([`super::rack`]); `None` without [`TorrentConfig::locality`].
    rack: Option<RackView>,
    /// How long peers made us wait for deliveries, over all peers ([`stall`]).
    wait: DeliveryWait,
    /// Peers that owe us a delivery past their stall deadline ([`stall`]); connected
    /// peers only.
    stalled: BTreeSet<PeerKey>,
    /// When to look for stalled peers next ([`stall`]); `None`: no deadline pending.
    next_stall_check: Option<Time>,
    /// Relay parts: verified parts of pieces in progress, early announcements, requests
    /// waiting for parts ([`relay`]).
    relay: relay::RelayState,
}

impl Torrent {
    /// A torrent of `config.piece_count` pieces, of which `have` are already verified.
    ///
    /// # Panics
    /// If `have.len() != config.piece_count` (a driver bug, not peer input).
    pub fn new(config: TorrentConfig, have: Bitfield, rng_seed: u64) -> Self {
        assert_eq!(
            have.len(),
            config.piece_count,
            "bitfield length != piece count"
        );
        let mut rng = ChaCha8Rng::seed_from_u64(rng_seed);
        let picker = Picker::new(&config, &have, &mut rng);
        let uploads = upload::UploadState::new(&config, have.is_full(), &mut rng);
        let choker = Choker::new(config.choker, Time::ZERO);
        let rack = config
            .locality
            .map(|me| RackView::new(me, config.piece_count));
        let stats = TorrentStats {
            pieces_have: have.count_ones(),
            ..TorrentStats::default()
        };
        let slot_budget = match config.choker_mode {
            ChokerMode::Local => config.choker.unchoke_slots,
            ChokerMode::External { initial_slots } => {
                initial_slots.min(config.choker.unchoke_slots)
            }
        };
        Torrent {
            config,
            have,
            picker,
            choker,
            peers: BTreeMap::new(),
            actions: VecDeque::new(),
            rng,
            uploads,
            stats,
            now: Time::ZERO,
            slot_budget,
            choke_report: None,
            smart_ban: smart_ban::SmartBan::default(),
            download_throttled: false,
            upload_throttled: false,
            rack,
            wait: DeliveryWait::default(),
            stalled: BTreeSet::new(),
            next_stall_check: None,
            relay: relay::RelayState::default(),
        }
    }

    /// A connection to `peer` completed its handshake; queues our bitfield (or BEP 6
    /// `have all` / `have none`). A key already connected is ignored.
    pub fn handle_peer_connected(&mut self, now: Time, peer: PeerKey, caps: PeerCaps) {
        self.now = self.now.max(now);
        if self.peers.contains_key(&peer) {
            return;
        }
        let mut state = PeerState::new(now, caps, self.config.piece_count);
        state.last_sent_at = now;
        self.peers.insert(peer, state);
        if let (Some(rack), Some(l)) = (self.rack.as_mut(), caps.locality) {
            if rack.is_mate_locality(Some(l)) {
                rack.add_mate(peer, l.node_token);
            }
        }
        let msg = if caps.fast_extension && self.have.is_full() {
            Some(PeerMessage::HaveAll)
        } else if caps.fast_extension && self.have.count_ones() == 0 {
            Some(PeerMessage::HaveNone)
        } else if self.have.count_ones() > 0 {
            Some(PeerMessage::Bitfield(self.have.clone()))
        } else {
            None
        };
        if let Some(msg) = msg {
            self.send(peer, msg);
        }
    }

    /// The connection to `peer` closed; its requests go back to the picker.
    pub fn handle_peer_disconnected(&mut self, now: Time, peer: PeerKey) {
        self.now = self.now.max(now);
        self.remove_peer(now, peer);
    }

    /// A control message arrived from `peer` (unknown peers are ignored).
    ///
    /// # Errors
    /// The [`ProtocolError`] the message committed; an [`Action::Disconnect`] for the peer
    /// is already queued and the peer forgotten.
    pub fn handle_message(
        &mut self,
        now: Time,
        peer: PeerKey,
        msg: PeerMessage,
    ) -> Result<(), ProtocolError> {
        self.now = self.now.max(now);
        // A snubbed peer that speaks again may be probed with a fresh piece at once.
        let woke = self.peers.get_mut(&peer).is_some_and(|p| {
            let woke = p.snubbed && !p.heard_since_snub;
            p.heard_since_snub = true;
            woke
        });
        let r = self.on_message(now, peer, msg);
        if let Err(e) = &r {
            self.drop_peer(now, peer, DisconnectReason::ProtocolViolation(e.clone()));
        } else if woke {
            self.fill_requests(peer);
        }
        r
    }

    /// A BEP 3 `piece` message carrying `block` arrived from `peer` and was stored.
    ///
    /// # Errors
    /// [`ProtocolError::UnrequestedBlock`] when we never requested it from this peer (nor
    /// cancelled it recently); the peer is disconnected.
    pub fn handle_block_received(
        &mut self,
        now: Time,
        peer: PeerKey,
        block: Block,
    ) -> Result<(), ProtocolError> {
        self.now = self.now.max(now);
        let r = self.on_block(now, peer, block);
        if let Err(e) = &r {
            self.drop_peer(now, peer, DisconnectReason::ProtocolViolation(e.clone()));
        }
        r
    }

    /// Whether a `piece` message carrying `block` from `peer` is still useful: it answers
    /// one of our pending requests and brings at least one block not yet received.
    /// Drivers that store payload call this first and discard the payload when false, so a
    /// late endgame duplicate never overwrites data awaiting its hash check. (Either way
    /// they then call [`Torrent::handle_block_received`].)
    pub fn wants_block(&self, peer: PeerKey, block: &Block) -> bool {
        let relay = self.relay_part_for(peer).is_some();
        self.peers
            .get(&peer)
            .is_some_and(|p| p.inflight.contains(block) || relay && p.inflight_starts(block))
            && self.picker.wants(block)
    }

    /// Payload bytes of `block`, requested from `peer`, arrived before its last byte (a
    /// driver that streams `piece` payloads reports them): the peer is making progress,
    /// so its anti-snubbing clock restarts. Without this a whole-piece request over a
    /// slow or shared link (a 256 KiB piece at 1 Mbit/s of a shared 20 Mbit/s link takes
    /// 2 s) counts as no progress until its last byte, and `snub_timeout` cancels and
    /// re-requests it elsewhere while its bytes are still arriving: duplicates on the
    /// slow link. Ignored unless `block` is in flight from `peer`.
    pub fn handle_block_progress(&mut self, now: Time, peer: PeerKey, block: &Block) {
        self.now = self.now.max(now);
        let relay = self.relay_part_for(peer).is_some();
        if let Some(p) = self.peers.get_mut(&peer) {
            if p.inflight.contains(block) || relay && p.inflight_starts(block) {
                p.last_progress_at = p.last_progress_at.max(now);
                self.on_delivery(now, peer, false);
            }
        }
    }

    /// The driver finished sending `block` (from an [`Action::SendBlock`]) to `peer`.
    pub fn handle_block_sent(&mut self, now: Time, peer: PeerKey, block: Block) {
        self.now = self.now.max(now);
        self.on_block_sent(now, peer, block);
    }

    /// The hash check requested by [`Action::VerifyPiece`] finished. On failure the
    /// contributing peers get a strike; at `max_hash_failures_per_peer` they are banned.
    pub fn handle_piece_verified(&mut self, now: Time, piece: PieceIndex, valid: bool) {
        self.now = self.now.max(now);
        self.on_verified(now, piece, valid);
    }

    /// The hash check of a relay part requested by [`Action::VerifyPart`] finished. A
    /// valid part may be forwarded to relay peers at once (and the piece is announced to
    /// them when it is the first); an invalid one is only never forwarded: the piece's
    /// own check ([`Action::VerifyPiece`]) then fails and finds the sender. Stale, late or
    /// malformed reports are ignored.
    pub fn handle_part_verified(&mut self, now: Time, part: Block, valid: bool) {
        self.now = self.now.max(now);
        self.on_part_verified(now, part, valid);
    }

    /// Another torrent of the same node (another runtime worker, sharing
    /// [`TorrentConfig::claims`] and the storage) verified `piece`: it becomes ours too.
    /// Requests still out for it are cancelled, peers lacking it get `have` (BEP 3) and
    /// it may be served. Out-of-range or already-had pieces are ignored.
    pub fn handle_piece_verified_elsewhere(&mut self, now: Time, piece: PieceIndex) {
        self.now = self.now.max(now);
        self.on_verified_elsewhere(now, piece);
    }

    /// Runs timers due at `now`: rechoke (or, in [`ChokerMode::External`], the rate
    /// report), optimistic rotation, anti-snubbing, keep-alive, and the stall deadlines
    /// of peers that owe us blocks (see `torrent::stall`: their requests stop counting,
    /// and are requested from responsive peers too, long before anti-snubbing).
    pub fn handle_timeout(&mut self, now: Time) {
        self.now = self.now.max(now);
        self.resume_throttled(now);
        if self.next_stall_check.is_some_and(|t| now >= t) {
            self.check_stalled_requests(now);
        }
        if now >= self.choker.next_rechoke() {
            match self.config.choker_mode {
                ChokerMode::Local => self.rechoke(now),
                ChokerMode::External { .. } => self.report_rates(now),
            }
            self.check_snubs(now);
            self.check_upload_stalls(now);
            self.keepalives(now);
            // Rechoke cleared the per-peer reject memory: those pieces are requestable again.
            self.fill_all_requests();
        }
    }

    /// Next action for the driver, in the order decided.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Torrent::handle_timeout`] should next be called: the next rechoke, or
    /// sooner when a rate limit that stopped us allows again or a peer that owes us a
    /// block reaches its stall deadline (at least `STALL_FLOOR`, 20 ms, after its last
    /// delivery or our request).
    pub fn poll_timeout(&self) -> Option<Time> {
        let mut at = self.choker.next_rechoke();
        if let Some(t) = self.next_stall_check {
            at = at.min(t);
        }
        let limits = [
            (self.download_throttled, &self.config.download_limit),
            (self.upload_throttled, &self.config.upload_limit),
        ];
        for (throttled, limit) in limits {
            if let (true, Some(bucket)) = (throttled, limit) {
                at = at.min(bucket.ready_at(self.now));
            }
        }
        Some(at)
    }

    /// Whether a rate limit holds back requests or blocks; the driver then arms its
    /// timer from [`Torrent::poll_timeout`] after every event.
    pub fn is_throttled(&self) -> bool {
        self.download_throttled || self.upload_throttled
    }

    /// Issues the requests and hands out the blocks a rate limit held back, once it
    /// allows ([`super::rate_limit`]).
    fn resume_throttled(&mut self, now: Time) {
        let ready = |limit: &Option<rate_limit::SharedBucket>| !matches!(limit, Some(b) if !b.is_ready(now));
        if self.upload_throttled && ready(&self.config.upload_limit) {
            self.upload_throttled = false;
            self.pump_uploads(now);
        }
        if self.download_throttled && ready(&self.config.download_limit) {
            self.download_throttled = false;
            self.fill_all_requests();
        }
    }

    /// Whether `piece` is being downloaded as a shadow: a node-wide endgame duplicate of
    /// a piece another torrent of the node claimed. The driver keeps its blocks apart
    /// from shared storage (the claim's owner may be writing the same piece) and
    /// commits them only once they hash right.
    pub fn is_shadow(&self, piece: PieceIndex) -> bool {
        self.picker.is_shadow(piece)
    }

    /// Whether we are interested in `peer` or it is in us (BEP 3); false for an
    /// unknown peer. The slot policy ([`super::slots`]) keeps such peers.
    pub fn is_engaged(&self, peer: PeerKey) -> bool {
        self.peers
            .get(&peer)
            .is_some_and(|p| p.am_interested || p.peer_interested)
    }

    /// Pieces we have verified.
    pub fn have(&self) -> &Bitfield {
        &self.have
    }

    /// True when every piece is verified (we are a seeder).
    pub fn is_complete(&self) -> bool {
        self.have.is_full()
    }

    /// Current counters.
    pub fn stats(&self) -> TorrentStats {
        TorrentStats {
            peers: self.peers.len(),
            unchoked_peers: self.peers.values().filter(|p| !p.am_choking).count(),
            endgame: self.picker.in_endgame(),
            ..self.stats.clone()
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &TorrentConfig {
        &self.config
    }

    fn send(&mut self, peer: PeerKey, msg: PeerMessage) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.last_sent_at = self.now;
        }
        self.actions.push_back(Action::Send { peer, msg });
    }

    /// Forgets `peer` and queues its disconnection.
    fn drop_peer(&mut self, now: Time, peer: PeerKey, reason: DisconnectReason) {
        if self.remove_peer(now, peer) {
            self.actions.push_back(Action::Disconnect { peer, reason });
        }
    }

    /// Forgets `peer`: availability, requests both ways, choker slot. False if unknown.
    fn remove_peer(&mut self, now: Time, key: PeerKey) -> bool {
        let Some(peer) = self.peers.remove(&key) else {
            return false;
        };
        self.stalled.remove(&key);
        for p in peer.have.iter_ones() {
            self.picker.dec(p);
        }
        let mate = self.rack.as_ref().is_some_and(|r| r.is_mate(key));
        if let Some(rack) = self.rack.as_mut() {
            rack.remove_mate(key, &peer.have);
        }
        for b in &peer.inflight {
            self.picker.cancel_request(key, *b);
        }
        self.uploads.remove_peer(key);
        self.relay.remove_peer(key);
        self.choker.remove_peer(key);
        self.pump_uploads(now);
        if !peer.am_choking {
            self.fill_free_slots(now);
        }
        if !peer.inflight.is_empty() || mate {
            // A rack-mate's pieces and importer roles are ours to fetch now.
            self.fill_all_requests();
        }
        true
    }

    /// A block arrived from `key`: a rack-mate [`Torrent::check_snubs`] took out of the
    /// rack view for its silence counts again (its pieces and its importer roles).
    fn rack_resume(&mut self, key: PeerKey) {
        let (Some(rack), Some(peer)) = (self.rack.as_mut(), self.peers.get(&key)) else {
            return;
        };
        let Some(l) = peer
            .caps
            .locality
            .filter(|&l| rack.is_mate_locality(Some(l)))
        else {
            return;
        };
        if rack.is_mate(key) {
            return;
        }
        rack.add_mate(key, l.node_token);
        for p in peer.have.iter_ones() {
            rack.gained(p);
        }
    }

    /// Panics if an invariant is broken (tests only).
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        self.picker
            .check_invariants(self.peers.values().map(|p| &p.have), &self.have);
        if let Some(rack) = &self.rack {
            let mates = self.peers.iter().filter(|(k, _)| rack.is_mate(**k));
            rack.check_invariants(mates.map(|(_, p)| &p.have));
        }
        assert!(
            self.stalled.iter().all(|k| self.peers.contains_key(k)),
            "stalled peer not connected"
        );
        let unchoked = self.peers.values().filter(|p| !p.am_choking).count();
        assert!(
            unchoked <= self.config.choker.unchoke_slots.saturating_add(1),
            "{unchoked} unchoked > slots + 1"
        );
        self.relay
            .check_invariants(&self.have, |k| self.peers.contains_key(&k));
        for (k, p) in &self.peers {
            let bytes: u64 = p.inflight.iter().map(|b| u64::from(b.len_bytes)).sum();
            assert_eq!(bytes, p.inflight_bytes, "{k:?} inflight bytes");
            assert_eq!(
                p.interesting,
                p.have.and_not_count(&self.have),
                "{k:?} interesting"
            );
        }
    }
}

#[cfg(test)]
mod availability_tests;
#[cfg(test)]
mod claims_tests;
#[cfg(test)]
mod protocol_tests;
#[cfg(test)]
mod rack_tests;
#[cfg(test)]
mod rate_limit_tests;
#[cfg(test)]
mod relay_tests;
#[cfg(test)]
mod request_queue_tests;
#[cfg(test)]
mod slow_peer_tests;
#[cfg(test)]
mod smart_ban_tests;
#[cfg(test)]
mod stall_tests;
#[cfg(test)]
mod swarm_tests;
#[cfg(test)]
mod tests;
