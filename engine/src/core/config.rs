//! Tunables of the swarm logic: choker, pipelining, seeding policy.

use super::rate_limit::SharedBucket;
use std::sync::Arc;
use std::time::Duration;

use super::availability::Availability;
use super::claims::AtomicBitfield;
use super::rack::Locality;
use super::upload_history::UploadHistory;

pub use crate::base::BLOCK_LEN_BYTES;

/// Choking algorithm settings (BEP 3 §"Choking and optimistic unchoking").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChokerConfig {
    /// Regular unchoke slots (peers unchoked for their rate), not counting the one
    /// optimistic unchoke.
    pub unchoke_slots: usize,
    /// How often the regular unchoke set is re-evaluated.
    pub rechoke_interval: Duration,
    /// How often the optimistic unchoke rotates.
    pub optimistic_interval: Duration,
    /// A peer that unchoked us, has our requests and sent no block for this long is
    /// snubbed: it loses its regular slot (anti-snubbing) and its requests are re-issued.
    /// A floor: the deadline grows with the time its requested bytes take at the rate it
    /// has shown (at most 60 s; see `core::choker`'s anti-snubbing deadline), so a
    /// legitimately slow sender of whole pieces is not cancelled mid-piece.
    pub snub_timeout: Duration,
}

impl Default for ChokerConfig {
    /// The BitTorrent defaults: 4 slots, rechoke every 10 s, optimistic every 30 s,
    /// snubbed after 60 s.
    fn default() -> Self {
        ChokerConfig {
            unchoke_slots: 4,
            rechoke_interval: Duration::from_secs(10),
            optimistic_interval: Duration::from_secs(30),
            snub_timeout: Duration::from_secs(60),
        }
    }
}

impl ChokerConfig {
    /// Profile for a datacenter swarm (uniform fast links, sub-ms RTT, cooperative peers):
    /// every interested peer is unchoked ("everyone talks to everyone"), rechoke every 1 s,
    /// optimistic every 3 s, snubbed after 2 s. The simulator's default (through
    /// [`TorrentConfig::datacenter`]).
    ///
    /// Slots: the core's upload window (`upload_in_flight_bytes`) already bounds how many
    /// blocks leave at once, so the unchoke set only decides whom we *may* serve. Any
    /// bound below the peer count hurt: with 32 slots and ~50 neighbours per peer the
    /// first rate-ranked rechoke (tit-for-tat) concentrated the unchokes on the peers that
    /// had uploaded most, whose downlinks then became contended, and swarm uplink use fell
    /// from ~52 % to ~41 % for ~0.3 s (`p2pe sim --peers 100 --size 5GB --uplink 40Gbit`);
    /// and the origin, connected to everyone, served only 33 peers, so peers outside its
    /// set got its last distinct pieces late (the tail: max 1.40 s vs 1.20 s unbounded).
    /// In the in-test swarm (30 peers, 600 pieces) completion went from 1.19x the lower
    /// bound with 4 slots to 1.15x with 12 and 1.09x with everyone unchoked.
    /// Intervals: a 5 GB file takes ~1 s, so anything slower than a second never rotates.
    /// The 2 s snub timeout is only the floor: on slow or unevenly shared links (a 20
    /// Mbit/s leecher or origin serving 14 peers whole 256 KiB pieces: ~1.5 s a piece at
    /// a fair share, more for a TCP flow that gets less) a bare 2 s snubbed live senders
    /// mid-piece, wasting the piece and fetching it again (`p2pe sim --sharing-jitter
    /// 0.6`: quarter-slow row 1.13x D_p2p, slow origin 1.19x and 1.17 origin copies; with
    /// the adaptive deadline 1.03x, 1.05x and 1.02 copies).
    pub fn datacenter() -> Self {
        ChokerConfig {
            unchoke_slots: usize::MAX,
            rechoke_interval: Duration::from_secs(1),
            optimistic_interval: Duration::from_secs(3),
            snub_timeout: Duration::from_secs(2),
        }
    }
}

/// Who decides which peers a [`super::Torrent`] unchokes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ChokerMode {
    /// The torrent's own choker, every `rechoke_interval` (BEP 3). The default.
    #[default]
    Local,
    /// A coordinator over several torrents of one node (one per runtime worker) decides:
    /// every `rechoke_interval` the torrent reports its peers' rates
    /// ([`super::Torrent::poll_choke_report`]) and applies the decisions it is given
    /// ([`super::Torrent::handle_choke_decision`]); see [`super::BatchChoker`]. Until the
    /// first decision, at most `initial_slots` regular slots are filled (give each of `W`
    /// torrents `unchoke_slots / W`, so that together they stay within the slots).
    External {
        /// Regular unchoke slots this torrent may fill before its first decision.
        initial_slots: usize,
    },
}

/// How a seeder chooses what to upload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SeederPolicy {
    /// Serve requests in arrival order, never reject.
    Plain,
    /// Aim for each piece to leave the seeder about once ("distinct pieces"): suggest
    /// least-uploaded pieces (BEP 6 `suggest`), reject (BEP 6) a first request for a piece
    /// already uploaded to another peer, serve least-uploaded pieces first. See the module
    /// docs of `core::torrent`.
    #[default]
    DistinctFirst,
}

/// Per-torrent configuration. Build with [`TorrentConfig::new`] and override fields.
#[derive(Clone, Debug, PartialEq)]
pub struct TorrentConfig {
    /// Number of pieces: `ceil(total_len_bytes / piece_len_bytes)`.
    pub piece_count: u32,
    /// Nominal piece length in bytes (the last piece may be shorter).
    pub piece_len_bytes: u32,
    /// Total content length in bytes.
    pub total_len_bytes: u64,
    /// Choker settings.
    pub choker: ChokerConfig,
    /// Requests kept in flight per unchoked peer, in bytes (fill the bandwidth-delay
    /// product). At least one request is always in flight when possible.
    pub pipeline_bytes: u64,
    /// Hash failures a peer may contribute to before it is banned.
    pub max_hash_failures_per_peer: u32,
    /// Cap on requests we queue from one peer, advertised as our BEP 10 `reqq`
    /// (default [`MAX_REQUESTS_PER_PEER`]).
    pub max_requests_per_peer: u32,
    /// Cap on our requests in flight to one peer (also bounded by its BEP 10 `reqq`); the
    /// queue toward a 16 KiB-block peer grows with its rate up to this (libtorrent's
    /// `max_out_request_queue`, 500: 8 MB of blocks, 2.7 MB/s for the 3 s queue time).
    pub max_request_queue: u32,
    /// Bytes of [`super::Action::SendBlock`] emitted and not yet reported by
    /// [`super::Torrent::handle_block_sent`]. Holding the rest lets the core choose what to
    /// upload next (least-uploaded, rarest first). `0` disables the cap.
    pub upload_in_flight_bytes: u64,
    /// A node that was not complete when created rejects (BEP 6) a p2pe peer's request
    /// while this many accepted requests wait to be handed to the driver, so the
    /// requester fetches the piece from a less-loaded holder. `0` disables it. Default
    /// [`BUSY_REJECT_PENDING`].
    pub busy_reject_pending: usize,
    /// Pieces picked at random (not rarest-first) until this many are complete, so a new
    /// peer quickly has something to trade (BEP 3 §"Random First Piece").
    pub random_first_pieces: u32,
    /// In endgame, the most peers a block is requested from at once (>= 1).
    pub endgame_max_requesters: u8,
    /// How a seeder chooses what to upload.
    pub seeder_policy: SeederPolicy,
    /// With [`SeederPolicy::DistinctFirst`], never-uploaded pieces suggested to a peer when
    /// it is unchoked (one more per piece served to it).
    pub suggest_pieces: u32,
    /// Send a keep-alive to a peer we have sent nothing to for this long (BEP 3: 2 min).
    pub keepalive_interval: Duration,
    /// Piece claims shared with the other torrents of the same node (one per runtime
    /// worker), so no two of them download the same piece; see [`super::claims`].
    /// `None` (the default): every claim is granted.
    pub claims: Option<Arc<AtomicBitfield>>,
    /// The distinct-first seeder's upload history shared with the other torrents of the
    /// same node, so the origin's workers together send each piece about once before any
    /// piece twice; see [`super::upload_history`]. `None` (the default): this torrent's own.
    pub upload_history: Option<Arc<UploadHistory>>,
    /// Who makes the choke decisions (default: this torrent).
    pub choker_mode: ChokerMode,
    /// Piece availability counts shared with the other torrents of the same node (one
    /// per runtime worker), so rarest-first ranks pieces over all the node's peers; see
    /// [`super::availability`]. `None` (the default): this torrent's peers only.
    pub availability: Option<Arc<Availability>>,
    /// Payload download limit shared by the node's torrents (`--download-limit`):
    /// requests are issued only while it allows, so a request it holds back is never
    /// in flight ([`super::rate_limit`]). `None` (the default): unlimited.
    pub download_limit: Option<SharedBucket>,
    /// Payload upload limit shared by the node's torrents (`--upload-limit`): blocks are
    /// handed to the driver ([`super::Action::SendBlock`]) only while it allows.
    /// `None` (the default): unlimited.
    pub upload_limit: Option<SharedBucket>,
    /// This node's rack and identity (`--rack`): requests to peers outside the rack are
    /// limited so that each piece enters the rack about once ([`super::rack`]). `None`
    /// (the default): rack-oblivious.
    pub locality: Option<Locality>,
    /// Relay part length in bytes (issue 13 item 1): toward a peer that negotiated the
    /// same length ([`PeerCaps::relay_part_bytes`]), a piece is sent as parts of this
    /// length, each verified by the receiver on arrival ([`super::Action::VerifyPart`]);
    /// a node announces (`have`) a piece to such peers once its first part is verified
    /// and forwards each verified part at once (cut-through), so a hop costs one part's
    /// time instead of one piece's. `0` (the default): off, pieces relay whole. A power of
    /// two of at least [`BLOCK_LEN_BYTES`] and at least `piece_len_bytes / 64`; see
    /// [`TorrentConfig::relay_part_len`].
    pub relay_part_bytes: u32,
}

impl TorrentConfig {
    /// The relay part length in effect: `relay_part_bytes` when it is a power of two of at
    /// least 16 KiB, below the piece length and at least 1/64 of it (parts are tracked in
    /// a 64-bit mask per piece); `None` otherwise (off).
    pub fn relay_part_len(&self) -> Option<u32> {
        let r = self.relay_part_bytes;
        (r.is_power_of_two()
            && r >= BLOCK_LEN_BYTES
            && r < self.piece_len_bytes
            && u64::from(r) * 64 >= u64::from(self.piece_len_bytes))
        .then_some(r)
    }

    /// Configuration for a torrent of `total_len_bytes` in pieces of `piece_len_bytes`,
    /// BitTorrent choker defaults, a pipeline of one piece (at least 256 KiB) per peer and
    /// an upload window of one pipeline per unchoke slot (regular + optimistic).
    ///
    /// # Panics
    /// If `piece_len_bytes` is zero or the piece count exceeds `u32::MAX`.
    pub fn new(total_len_bytes: u64, piece_len_bytes: u32) -> Self {
        assert!(piece_len_bytes > 0, "piece length must be positive");
        let piece_count = u32::try_from(total_len_bytes.div_ceil(u64::from(piece_len_bytes)))
            .expect("piece count fits u32");
        // One whole piece per peer: whole-piece requests arrive from many unchoking peers
        // at once, so one each keeps the downlink busy, and a shallow pipeline keeps the
        // endgame late (the in-test 30-peer swarm finished 6% sooner than with two). At
        // least 16 blocks for small pieces.
        let pipeline_bytes = u64::from(piece_len_bytes).max(u64::from(16 * BLOCK_LEN_BYTES));
        let choker = ChokerConfig::default();
        TorrentConfig {
            piece_count,
            piece_len_bytes,
            total_len_bytes,
            choker,
            pipeline_bytes,
            max_hash_failures_per_peer: 3,
            max_requests_per_peer: MAX_REQUESTS_PER_PEER,
            max_request_queue: 500,
            upload_in_flight_bytes: upload_window_bytes(&choker, pipeline_bytes),
            busy_reject_pending: BUSY_REJECT_PENDING,
            random_first_pieces: 4,
            endgame_max_requesters: 2,
            seeder_policy: SeederPolicy::DistinctFirst,
            suggest_pieces: 2,
            keepalive_interval: Duration::from_secs(120),
            claims: None,
            upload_history: None,
            choker_mode: ChokerMode::Local,
            availability: None,
            download_limit: None,
            upload_limit: None,
            locality: None,
            relay_part_bytes: 0,
        }
    }

    /// [`TorrentConfig::new`] with the [`ChokerConfig::datacenter`] choker and an upload
    /// window of [`DATACENTER_UPLOAD_TRANSFERS`] pipelines.
    ///
    /// # Panics
    /// As [`TorrentConfig::new`].
    pub fn datacenter(total_len_bytes: u64, piece_len_bytes: u32) -> Self {
        let mut c = TorrentConfig::new(total_len_bytes, piece_len_bytes);
        c.choker = ChokerConfig::datacenter();
        c.upload_in_flight_bytes = upload_window_bytes(&c.choker, c.pipeline_bytes);
        c
    }

    /// Length in bytes of `piece` (the last one may be short); 0 when out of range.
    pub fn piece_len(&self, piece: super::PieceIndex) -> u32 {
        if piece.0 >= self.piece_count {
            return 0;
        }
        let start = u64::from(piece.0) * u64::from(self.piece_len_bytes);
        let len = self.total_len_bytes.saturating_sub(start);
        len.min(u64::from(self.piece_len_bytes)) as u32
    }
}

/// Requests we queue from one peer before rejecting more (BEP 6) or dropping them, and
/// the BEP 10 `reqq` we advertise: 2,000, libtorrent's `max_allowed_in_request_queue`.
///
/// Clients that size their request queue by their measured rate, capped by our `reqq`,
/// are held to `reqq` × 16 KiB per request round by it. Transmission 3.00 refills its
/// requests about once a second, so a `reqq` of 250 held it to 4.1 MB/s per p2pe peer
/// (perf/interop-clients.md). Bound: at most this many queued requests per peer.
pub const MAX_REQUESTS_PER_PEER: u32 = 2_000;

/// Accepted requests a relaying node queues beyond its upload window before it rejects
/// further ones ([`TorrentConfig::busy_reject_pending`]). Sized by measurement
/// (`p2pe sim --peers 100 --size 500MB --uplink 40Gbit`, seed 1): 2, 4 and 8 gave
/// ratios 1.097, 1.096 and 1.100 (none: 1.166); 4 leaves a few requests to choose from
/// when the window frees.
pub const BUSY_REJECT_PENDING: usize = 4;

/// Concurrent uploads (pipelines in the upload window) of the datacenter profile.
///
/// Sized on `p2pe sim` (uniform 40 Gbit/s links, water-fill sharing): a transfer's rate is
/// also bounded by its receiver's downlink share, so an uplink with few transfers idles
/// whenever their receivers are busy; more transfers make every piece slower to arrive
/// (a relay can only forward verified pieces) and commit uploads earlier. Swarm uplink use
/// in the steady phase, by transfers in flight: 1 → ~52 %, 4 → ~80 %, 8 → ~90 %,
/// 16 → ~93-96 %, 32 → ~88-96 %; completion was best at 16 with 256 KiB and 4 MiB pieces.
pub const DATACENTER_UPLOAD_TRANSFERS: u64 = 16;

/// Upload window: one pipeline per peer we can serve at once (`unchoke_slots` + the
/// optimistic), at most [`DATACENTER_UPLOAD_TRANSFERS`] pipelines.
fn upload_window_bytes(choker: &ChokerConfig, pipeline_bytes: u64) -> u64 {
    let slots = u64::try_from(choker.unchoke_slots)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    slots.min(DATACENTER_UPLOAD_TRANSFERS) * pipeline_bytes
}

impl Default for TorrentConfig {
    /// An empty torrent with 4 MiB pieces; set the lengths (or use [`TorrentConfig::new`]).
    fn default() -> Self {
        TorrentConfig::new(0, 4 << 20)
    }
}

/// What the driver negotiated with a peer (handshake reserved bits, BEP 10 handshake).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerCaps {
    /// BEP 6 fast extension negotiated by both sides.
    pub fast_extension: bool,
    /// Largest request length the peer accepts from us and we accept from it, in bytes:
    /// 16 KiB normally; up to the piece length with the p2pe BEP 10 extension.
    pub max_request_len_bytes: u32,
    /// Requests the peer queues before dropping (its BEP 10 `reqq`); `None` when it did
    /// not say. Bounds our requests in flight to it.
    pub reqq: Option<u32>,
    /// The peer is a p2pe node (it advertised the p2pe BEP 10 extension): it asks
    /// elsewhere at once when the distinct-first origin rejects a piece (BEP 6) and
    /// follows its suggestions. Other clients are served what they ask: Transmission,
    /// behind a distinct-first origin, finished 7.8 % later than behind libtorrent's
    /// (perf/interop-clients.md).
    pub distinct_first: bool,
    /// The peer may be sent node-wide endgame duplicates (shadow pieces, see
    /// [`crate::core::claims`]). False for a p2pe peer reached over several
    /// lanes (parallel connections, one per worker): a shadow there would
    /// only ask the same sender again on another lane for a piece it is
    /// already sending.
    pub node_endgame: bool,
    /// The peer's rack and identity, when it told us (BEP 10 handshake `rack`, or the
    /// tracker that handed it out): with our own [`TorrentConfig::locality`] it makes the
    /// peer a rack-mate or a remote peer ([`super::rack`]). `None`: unknown, remote.
    pub locality: Option<Locality>,
    /// The relay part length the peer negotiated (p2pe BEP 10 extension), `0` if none:
    /// when it equals our [`TorrentConfig::relay_part_len`], pieces go to it part by
    /// part, it may announce and serve pieces of which it verified only a prefix of
    /// parts, and its parts are verified on arrival.
    pub relay_part_bytes: u32,
}

impl Default for PeerCaps {
    /// A plain BEP 3 peer: no fast extension, 16 KiB requests.
    fn default() -> Self {
        PeerCaps {
            fast_extension: false,
            max_request_len_bytes: BLOCK_LEN_BYTES,
            reqq: None,
            distinct_first: false,
            node_endgame: true,
            locality: None,
            relay_part_bytes: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::PieceIndex;

    #[test]
    fn piece_lengths() {
        let c = TorrentConfig::new(10 * 1024 + 5, 1024);
        assert_eq!(c.piece_count, 11);
        assert_eq!(c.piece_len(PieceIndex(0)), 1024);
        assert_eq!(c.piece_len(PieceIndex(10)), 5);
        assert_eq!(c.piece_len(PieceIndex(11)), 0);
    }

    #[test]
    fn upload_window_follows_unchoke_slots() {
        let c = TorrentConfig::new(1 << 30, 4 << 20);
        assert_eq!(c.choker, ChokerConfig::default());
        assert_eq!(c.upload_in_flight_bytes, 5 * (4 << 20));
        let d = TorrentConfig::datacenter(1 << 30, 4 << 20);
        assert_eq!(d.choker, ChokerConfig::datacenter());
        assert_eq!(
            d.upload_in_flight_bytes,
            DATACENTER_UPLOAD_TRANSFERS * (4 << 20)
        );
    }
}
