//! Piece picker: which block to request next from a given peer (BEP 3 §"Piece Selection").
//!
//! Policy, in order: allowed-fast pieces while choked (BEP 6); started pieces with
//! unrequested blocks, oldest first (whole-piece affinity); pieces the peer suggested
//! (BEP 6); a random piece until `random_first_pieces` are complete; else rarest-first with
//! random tie-breaking; and, once every missing block is requested, strict endgame (a block
//! requested from up to `endgame_max_requesters` peers, the rest cancelled on arrival;
//! requesters whose requests stalled, `torrent::stall`, do not count, and blocks only they
//! are fetching are duplicated first).
//!
//! Blocks are tracked at a 16 KiB grain ("chunks"); a request covers a run of contiguous
//! chunks up to the peer's `max_request_len_bytes`, so whole-piece requests (p2pe peers)
//! and 16 KiB requests (other clients) mix freely within one piece.
//!
//! Invariants (checked by `check_invariants` in tests):
//! - Without shared counts, `availability[p]` is the number of connected peers whose
//!   bitfield has `p`. With shared counts ([`TorrentConfig::availability`], see
//!   [`super::availability`]) it is the node-wide count as this picker last read it:
//!   re-read whenever one of our peers changes it and every
//!   [`super::availability::RESYNC_INTERVAL`]; the shared count is the sum over every
//!   torrent sharing it.
//! - A needed piece is either *untouched* (in `buckets[availability]`, bit set in
//!   `untouched`) or *partial* (in `partial`), never both; a piece we have is neither.
//! - A chunk is exactly one of free (0 requesters), requested (1..=endgame_max requesters,
//!   counted by the piece's `requests` covering it) or received.
//! - Outside endgame a chunk has at most one requester; in endgame at most
//!   `2 × endgame_max_requesters` (up to `endgame_max_requesters` besides stalled ones).
//! - `free_chunks` is the number of free chunks over all needed pieces; endgame is
//!   `free_chunks == 0` with pieces still missing.
//! - With shared claims ([`TorrentConfig::claims`]), every partial piece is claimed: a
//!   piece is claimed (atomic test-and-set) before it leaves the untouched set and
//!   released when it returns there. Untouched pieces claimed by another torrent are
//!   skipped; they still count in `free_chunks`, so with claims endgame also starts when
//!   no open piece is left and every untouched piece is claimed elsewhere.
//! - Endgame is node-wide: once no open piece is left and every needed untouched piece
//!   is claimed (by anyone), a peer with nothing else to do may start a *shadow* of a
//!   piece another torrent claimed (a partial piece whose claim this torrent does not
//!   own; one at a time per idle peer, at most [`MAX_SHADOW_PIECES`] at once). Whichever torrent verifies the piece
//!   first has it; the others drop their copy ([`Picker::on_had_elsewhere`]). Without
//!   this, a piece claimed by a torrent whose only source for it is a frozen peer would
//!   wait for that peer however many honest peers other torrents have. A torrent only
//!   ever releases claims it owns.

use super::availability::Availability;
use super::config::BLOCK_LEN_BYTES;
use super::rack::ImportFilter;
use super::{
    AtomicBitfield, Bitfield, Block, BlockOffset, PeerKey, PieceIndex, Time, TorrentConfig,
};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;
use std::sync::Arc;

mod blocks;
mod buckets;
mod rarest;

const RECEIVED: u8 = u8::MAX;
const NOT_IN_BUCKET: u32 = u32::MAX;
/// Highest bucket (availability) a piece is ranked in: counts above it rank equal. Far
/// above any node's connection count, and it bounds the bucket list whatever a shared
/// count says.
const MAX_BUCKET_KEY: u32 = u16::MAX as u32;
/// Attempts to claim a fresh piece per pick: a claim only fails when another torrent
/// claimed the piece between our check and our test-and-set, after which the piece is
/// skipped, so a few attempts suffice.
const CLAIM_ATTEMPTS: usize = 4;
/// Most shadow pieces (node-wide endgame duplicates of pieces other torrents claimed)
/// one torrent downloads at once: enough to cover a frozen peer's whole pipeline on
/// another worker, small enough that the tail duplicates a few pieces, not a window.
pub(crate) const MAX_SHADOW_PIECES: usize = 8;

/// Download state of a started, not yet verified piece.
#[derive(Debug)]
pub(crate) struct PartialPiece {
    /// Per chunk: requester count, or `RECEIVED`.
    chunks: Vec<u8>,
    free: u32,
    received: u32,
    /// Outstanding requests covering this piece.
    requests: Vec<(PeerKey, Block)>,
    /// Peers that supplied received blocks (blamed on hash failure).
    contributors: Vec<PeerKey>,
    verifying: bool,
    /// This torrent owns the piece's shared claim (false: a shadow of a piece another
    /// torrent claimed; always true without shared claims).
    owns_claim: bool,
    /// Per chunk: the peer whose data for it was stored (smart ban).
    chunk_sources: Vec<Option<PeerKey>>,
    /// On parole (an earlier copy from several peers failed its hash): the piece is
    /// downloaded from one peer only, `pinned`, so that it proves or blames that peer.
    single_source: bool,
    /// The one peer a `single_source` piece is requested from (`None`: whoever asks
    /// next).
    pinned: Option<PeerKey>,
}

impl PartialPiece {
    /// The peer a parole piece is pinned to, while that peer holds a request of it: a
    /// pin whose peer has none left (it rejected the rest, was served out, or left)
    /// binds nobody, so a piece is never stuck on a peer that will not ask again.
    fn active_pin(&self) -> Option<PeerKey> {
        self.pinned
            .filter(|k| self.requests.iter().any(|r| r.0 == *k))
    }
}

/// What a finished hash check leaves for smart ban: who sent the piece's data.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct CheckedCopy {
    /// Peers that supplied received chunks, each once.
    pub contributors: Vec<PeerKey>,
    /// Per 16 KiB chunk, the peer whose data was stored.
    pub chunk_sources: Vec<Option<PeerKey>>,
}

/// What became of a received block.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct BlockOutcome {
    /// Every chunk of the piece is now received: verify it.
    pub piece_complete: bool,
    /// The block brought no new data (endgame duplicate).
    pub duplicate: bool,
    /// Other peers' requests made redundant by this block: send `cancel`.
    pub cancels: Vec<(PeerKey, Block)>,
}

/// Per-pick view of one peer.
pub(crate) struct PickContext<'a> {
    pub peer: PeerKey,
    pub peer_have: &'a Bitfield,
    pub max_request_len_bytes: u32,
    pub suggested: &'a [PieceIndex],
    pub rejected: &'a [PieceIndex],
    /// `Some` while the peer chokes us: only these (allowed-fast) pieces may be requested.
    pub allowed_only: Option<&'a [PieceIndex]>,
    pub random_first: bool,
    /// May receive endgame duplicates (not while it snubs us).
    pub endgame_ok: bool,
    /// May start a shadow of another torrent's claimed piece (node-wide endgame): it
    /// does not snub us and holds none of our requests, so shadows go one at a time to
    /// idle peers and the tail duplicates little.
    pub shadow_ok: bool,
    /// May start (claim) a fresh piece: false for a snubbed peer that has stayed silent
    /// since, whose probe may only join a piece already started.
    pub fresh_ok: bool,
    /// Rack-aware: the peer is remote and only these pieces may come from it
    /// ([`super::rack`]). `None`: any piece it has.
    pub import: Option<ImportFilter<'a>>,
    /// Peers whose requests have stalled (`torrent::stall`): in endgame their requests do
    /// not count toward `endgame_max_requesters`, and blocks only they are fetching are
    /// picked first.
    pub stalled: &'a BTreeSet<PeerKey>,
}

impl PickContext<'_> {
    fn usable(&self, p: PieceIndex) -> bool {
        self.peer_have.get(p)
            && !self.rejected.contains(&p)
            && self.import.is_none_or(|f| f.allows(p))
    }

    /// Word `wi` of the peer's bitfield, restricted to what may be imported from it.
    fn have_word(&self, wi: usize) -> u64 {
        let w = self.peer_have.words().get(wi).copied().unwrap_or(0);
        match &self.import {
            Some(f) => w & f.word(wi),
            None => w,
        }
    }
}

/// Availability, rarest-first buckets and block-level download state of one torrent.
#[derive(Debug)]
pub(crate) struct Picker {
    config_piece_len_bytes: u32,
    total_len_bytes: u64,
    piece_count: u32,
    /// Per piece: the count its bucket is keyed by (see the module invariants).
    availability: Vec<u32>,
    buckets: Vec<Vec<PieceIndex>>,
    /// Bit `k` set exactly when `buckets[k]` is not empty: the rarest-first walk skips
    /// empty buckets a word at a time (at 1,000 peers most of the ~50 keys are empty).
    nonempty: Vec<u64>,
    pos: Vec<u32>,
    untouched: Bitfield,
    partial: Vec<Option<Box<PartialPiece>>>,
    partial_list: Vec<PieceIndex>,
    open: Vec<PieceIndex>,
    free_chunks: u64,
    endgame_max_requesters: u8,
    /// Sticky: an endgame duplicate request was ever issued (tests' invariant scope).
    endgame_entered: bool,
    /// Claims shared with other torrents (`None`: every claim granted).
    claims: Option<Arc<AtomicBitfield>>,
    /// Pieces on parole (smart ban): started as single-source pieces. A subset of the
    /// needed pieces, so bounded by the piece count.
    parole: std::collections::BTreeSet<PieceIndex>,
    /// Availability counts shared with other torrents (`None`: our peers only).
    shared_availability: Option<Arc<Availability>>,
    /// When shared counts are next re-read in full.
    next_resync: Time,
}

impl Picker {
    /// A picker needing every piece not in `have`; `rng` shuffles the initial tie order.
    pub(crate) fn new(config: &TorrentConfig, have: &Bitfield, rng: &mut ChaCha8Rng) -> Self {
        let n = config.piece_count;
        let mut p = Picker {
            config_piece_len_bytes: config.piece_len_bytes,
            total_len_bytes: config.total_len_bytes,
            piece_count: n,
            availability: vec![0; n as usize],
            buckets: vec![Vec::new()],
            nonempty: vec![0],
            pos: vec![NOT_IN_BUCKET; n as usize],
            untouched: Bitfield::new(n),
            partial: (0..n).map(|_| None).collect(),
            partial_list: Vec::new(),
            open: Vec::new(),
            free_chunks: 0,
            endgame_max_requesters: config.endgame_max_requesters.clamp(1, RECEIVED - 1),
            endgame_entered: false,
            claims: config.claims.clone(),
            parole: std::collections::BTreeSet::new(),
            shared_availability: config.availability.clone(),
            next_resync: Time::ZERO,
        };
        let mut needed: Vec<PieceIndex> =
            (0..n).map(PieceIndex).filter(|&i| !have.get(i)).collect();
        // Fisher-Yates with our seeded RNG: tie order within a bucket starts random.
        for i in (1..needed.len()).rev() {
            needed.swap(i, rng.random_range(0..=i));
        }
        for piece in needed {
            p.free_chunks += u64::from(p.chunk_count(piece));
            p.insert_untouched(piece);
        }
        p
    }

    fn piece_len(&self, piece: PieceIndex) -> u32 {
        let start = u64::from(piece.0) * u64::from(self.config_piece_len_bytes);
        let len = self.total_len_bytes.saturating_sub(start);
        len.min(u64::from(self.config_piece_len_bytes)) as u32
    }

    fn chunk_count(&self, piece: PieceIndex) -> u32 {
        self.piece_len(piece).div_ceil(BLOCK_LEN_BYTES).max(1)
    }

    /// Number of connected peers having `piece`: over every torrent sharing the counts
    /// (read now) if they are shared, else over ours.
    pub(crate) fn availability(&self, piece: PieceIndex) -> u32 {
        match &self.shared_availability {
            Some(a) => a.count(piece),
            None => self.bucket_key(piece),
        }
    }

    /// The count `piece`'s bucket is keyed by (0 when out of range).
    pub(crate) fn bucket_key(&self, piece: PieceIndex) -> u32 {
        self.availability
            .get(piece.0 as usize)
            .copied()
            .unwrap_or(0)
    }

    /// True once every missing chunk is requested (strict endgame), or, with shared
    /// claims, once every free chunk lies in pieces other torrents have claimed.
    pub(crate) fn in_endgame(&self) -> bool {
        if self.partial_list.is_empty() {
            return false;
        }
        self.free_chunks == 0
            || (self.claims.is_some() && self.open.is_empty() && !self.any_claimable_untouched())
    }

    /// Whether `piece` is not claimed by anyone (always true without shared claims).
    fn claimable(&self, piece: PieceIndex) -> bool {
        self.claims.as_ref().is_none_or(|c| !c.get(piece))
    }

    /// Claims `piece` for this torrent; false if another torrent holds it.
    fn claim(&self, piece: PieceIndex) -> bool {
        self.claims.as_ref().is_none_or(|c| c.try_set(piece))
    }

    /// Gives up this torrent's claim on `piece` (it is untouched again).
    fn release(&self, piece: PieceIndex) {
        if let Some(c) = &self.claims {
            c.clear(piece);
        }
    }

    /// Whether some untouched piece is claimable: O(pieces / 64).
    fn any_claimable_untouched(&self) -> bool {
        let Some(c) = &self.claims else {
            return self.untouched.count_ones() > 0;
        };
        self.untouched
            .words()
            .iter()
            .enumerate()
            .any(|(i, &w)| w & !c.load_word(i) != 0)
    }

    fn insert_untouched(&mut self, piece: PieceIndex) {
        self.untouched.set(piece);
        let key = self.availability(piece).min(MAX_BUCKET_KEY);
        if let Some(a) = self.availability.get_mut(piece.0 as usize) {
            *a = key;
        }
        self.push_bucket(piece, key);
    }

    /// A partial piece is abandoned: untouched again, and its claim released if this
    /// torrent owned it (a shadow leaves the other torrent's claim alone).
    fn return_untouched(&mut self, piece: PieceIndex, owned_claim: bool) {
        self.insert_untouched(piece);
        if owned_claim {
            self.release(piece);
        }
    }

    /// Number of shadow pieces in progress (partial pieces whose claim we do not own).
    fn shadow_count(&self) -> usize {
        self.partial_list
            .iter()
            .filter(|&&p| {
                self.partial
                    .get(p.0 as usize)
                    .and_then(|pp| pp.as_ref())
                    .is_some_and(|pp| !pp.owns_claim)
            })
            .count()
    }

    /// Moves an untouched piece to the partial set; `owns_claim`: we claimed it (false:
    /// a shadow of another torrent's piece).
    fn start_piece(&mut self, piece: PieceIndex, owns_claim: bool) {
        self.remove_from_bucket(piece, self.bucket_key(piece));
        self.untouched.clear(piece);
        let chunks = self.chunk_count(piece);
        self.partial[piece.0 as usize] = Some(Box::new(PartialPiece {
            chunks: vec![0; chunks as usize],
            free: chunks,
            received: 0,
            requests: Vec::new(),
            contributors: Vec::new(),
            verifying: false,
            owns_claim,
            chunk_sources: vec![None; chunks as usize],
            single_source: self.parole.contains(&piece),
            pinned: None,
        }));
        self.partial_list.push(piece);
        self.open.push(piece);
    }

    /// Picks the next block to request from `ctx.peer` and records the request.
    pub(crate) fn pick(&mut self, ctx: &PickContext<'_>, rng: &mut ChaCha8Rng) -> Option<Block> {
        if let Some(allowed) = ctx.allowed_only {
            let piece = allowed
                .iter()
                .copied()
                .find(|&p| ctx.usable(p) && (self.untouched.get(p) || self.open.contains(&p)))?;
            return self.take_run(piece, ctx);
        }
        if let Some(&piece) = self
            .open
            .iter()
            .find(|&&p| ctx.usable(p) && !self.pinned_to_other(p, ctx.peer))
        {
            return self.take_run(piece, ctx);
        }
        for _ in 0..CLAIM_ATTEMPTS {
            if !ctx.fresh_ok {
                break;
            }
            let Some(piece) = self.fresh_piece(ctx, rng) else {
                break;
            };
            // Lost a race with another torrent: the piece is claimed now, so the next
            // search skips it.
            if self.claim(piece) {
                self.start_piece(piece, true);
                return self.take_run(piece, ctx);
            }
        }
        if !ctx.endgame_ok {
            return None;
        }
        if self.in_endgame() {
            if let Some(b) = self.pick_endgame(ctx, rng) {
                return Some(b);
            }
        }
        if ctx.shadow_ok {
            return self.pick_shadow(ctx, rng);
        }
        None
    }

    /// Node-wide endgame (see the module docs): once no open piece is left and every
    /// needed untouched piece is claimed, start a shadow of a piece another torrent
    /// claimed that this peer has, at a random offset. `None` without shared claims,
    /// before that point, or at [`MAX_SHADOW_PIECES`].
    fn pick_shadow(&mut self, ctx: &PickContext<'_>, rng: &mut ChaCha8Rng) -> Option<Block> {
        let claims = self.claims.as_ref()?;
        if self.piece_count == 0
            || !self.open.is_empty()
            || self.any_claimable_untouched()
            || self.shadow_count() >= MAX_SHADOW_PIECES
        {
            return None;
        }
        let words = self.untouched.words();
        let start_word = rng.random_range(0..words.len());
        let mut found = None;
        'scan: for k in 0..words.len() {
            let wi = (start_word + k) % words.len();
            let mut w = words[wi] & ctx.have_word(wi) & claims.load_word(wi);
            while w != 0 {
                let p = PieceIndex(wi as u32 * 64 + w.trailing_zeros());
                w &= w - 1;
                if !ctx.rejected.contains(&p) {
                    found = Some(p);
                    break 'scan;
                }
            }
        }
        let piece = found?;
        self.start_piece(piece, false);
        self.endgame_entered = true;
        self.take_run(piece, ctx)
    }

    /// An untouched, claimable piece to start: suggested, random first, or rarest.
    fn fresh_piece(&self, ctx: &PickContext<'_>, rng: &mut ChaCha8Rng) -> Option<PieceIndex> {
        ctx.suggested
            .iter()
            .copied()
            .find(|&p| self.untouched.get(p) && ctx.usable(p) && self.claimable(p))
            .or_else(|| {
                if ctx.random_first {
                    self.random_untouched(ctx, rng)
                } else {
                    self.rarest_untouched(ctx, rng)
                }
            })
    }

    /// A uniformly-offset scan for an untouched piece the peer has: O(pieces / 64).
    fn random_untouched(&self, ctx: &PickContext<'_>, rng: &mut ChaCha8Rng) -> Option<PieceIndex> {
        if self.piece_count == 0 {
            return None;
        }
        let start = rng.random_range(0..self.piece_count);
        let words = self.untouched.words().len();
        let start_word = (start / 64) as usize;
        for k in 0..=words {
            let wi = (start_word + k) % words;
            let mut w = self.untouched.words()[wi] & ctx.have_word(wi);
            if let Some(c) = &self.claims {
                w &= !c.load_word(wi);
            }
            if k == 0 {
                w &= u64::MAX << (start % 64);
            } else if k == words {
                w &= !(u64::MAX << (start % 64));
            }
            while w != 0 {
                let p = PieceIndex(wi as u32 * 64 + w.trailing_zeros());
                if !ctx.rejected.contains(&p) {
                    return Some(p);
                }
                w &= w - 1;
            }
        }
        None
    }

    /// Whether `piece` is a single-source piece pinned to a peer other than `peer`.
    fn pinned_to_other(&self, piece: PieceIndex, peer: PeerKey) -> bool {
        self.partial
            .get(piece.0 as usize)
            .and_then(|p| p.as_ref())
            .is_some_and(|pp| pp.active_pin().is_some_and(|k| k != peer))
    }

    /// Whether `piece` is a shadow in progress: a node-wide endgame duplicate of a piece
    /// another torrent claimed (its blocks must not go to shared storage while the
    /// claim's owner may be writing them; see the module docs).
    pub(crate) fn is_shadow(&self, piece: PieceIndex) -> bool {
        self.partial
            .get(piece.0 as usize)
            .and_then(|p| p.as_ref())
            .is_some_and(|pp| !pp.owns_claim)
    }

    /// Puts `piece` on parole (smart ban): its next download comes from one peer.
    pub(crate) fn put_on_parole(&mut self, piece: PieceIndex) {
        self.parole.insert(piece);
    }

    /// Requests the first run of free chunks of partial `piece`, up to the peer's limit.
    fn take_run(&mut self, piece: PieceIndex, ctx: &PickContext<'_>) -> Option<Block> {
        let piece_len = self.piece_len(piece);
        let max_chunks = max_run_chunks(ctx.max_request_len_bytes, piece_len);
        let pp = self.partial.get_mut(piece.0 as usize)?.as_mut()?;
        if pp.active_pin().is_some_and(|k| k != ctx.peer) {
            return None;
        }
        if pp.single_source {
            pp.pinned = Some(ctx.peer);
        }
        let first = pp.chunks.iter().position(|&c| c == 0)?;
        let run = pp.chunks[first..]
            .iter()
            .take(max_chunks)
            .take_while(|&&c| c == 0)
            .count();
        for c in &mut pp.chunks[first..first + run] {
            *c = 1;
        }
        pp.free -= run as u32;
        self.free_chunks -= run as u64;
        let block = chunk_block(piece, piece_len, first, run);
        pp.requests.push((ctx.peer, block));
        if pp.free == 0 {
            self.open.retain(|&p| p != piece);
        }
        Some(block)
    }

    /// Endgame: re-request a run of unreceived chunks this peer has not requested yet and
    /// that fewer than `endgame_max_requesters` peers are fetching, not counting stalled
    /// ones (`ctx.stalled`); at most twice that many in all. Chunks only stalled peers are
    /// fetching come first.
    fn pick_endgame(&mut self, ctx: &PickContext<'_>, rng: &mut ChaCha8Rng) -> Option<Block> {
        let n = self.partial_list.len();
        if n == 0 {
            return None;
        }
        let start = rng.random_range(0..n);
        let passes: &[bool] = if ctx.stalled.is_empty() {
            &[false]
        } else {
            &[true, false]
        };
        for &starved_only in passes {
            for k in 0..n {
                let piece = self.partial_list[(start + k) % n];
                if let Some(b) = self.endgame_run(piece, ctx, starved_only) {
                    self.endgame_entered = true;
                    return Some(b);
                }
            }
        }
        None
    }

    /// [`Picker::pick_endgame`] in one piece: the first eligible run of `piece`
    /// (`starved_only`: of chunks no live peer is fetching), recorded as requested.
    fn endgame_run(
        &mut self,
        piece: PieceIndex,
        ctx: &PickContext<'_>,
        starved_only: bool,
    ) -> Option<Block> {
        if !ctx.usable(piece) {
            return None;
        }
        let max_req = self.endgame_max_requesters;
        // Bound on requesters of one chunk, stalled ones included.
        let cap = max_req.saturating_mul(2).min(RECEIVED - 1);
        let piece_len = self.piece_len(piece);
        let max_chunks = max_run_chunks(ctx.max_request_len_bytes, piece_len);
        let pp = self.partial.get_mut(piece.0 as usize)?.as_mut()?;
        if pp.verifying || pp.active_pin().is_some_and(|k| k != ctx.peer) {
            return None;
        }
        // Without stalled requesters a chunk is eligible only below `max_req` requesters:
        // when none is (every chunk fully requested or received), nothing is.
        if ctx.stalled.is_empty() && pp.chunks.iter().copied().min().unwrap_or(RECEIVED) >= max_req
        {
            return None;
        }
        // This runs for every partial piece on every endgame pick (a peer with room after
        // every reject tops up through here): no allocation unless some requester is
        // stalled, and a piece this peer already requested whole is passed over at once.
        let requests = &pp.requests;
        let chunk_count = pp.chunks.len();
        let mine_covers = |i: usize| requests.iter().any(|r| r.0 == ctx.peer && covers(&r.1, i));
        if requests
            .iter()
            .any(|r| r.0 == ctx.peer && matches!(chunk_range(&r.1), (0, hi) if hi >= chunk_count))
        {
            return None;
        }
        let stalled: Vec<Block> = if ctx.stalled.is_empty() {
            Vec::new()
        } else {
            requests
                .iter()
                .filter(|r| ctx.stalled.contains(&r.0))
                .map(|r| r.1)
                .collect()
        };
        let eligible = |i: usize, c: u8| {
            if c >= cap {
                return false;
            }
            let live = c.saturating_sub(stalled.iter().filter(|b| covers(b, i)).count() as u8);
            live < max_req && (!starved_only || live == 0) && !mine_covers(i)
        };
        let first = pp
            .chunks
            .iter()
            .enumerate()
            .position(|(i, &c)| eligible(i, c))?;
        let run = (first..pp.chunks.len())
            .take(max_chunks)
            .take_while(|&i| eligible(i, pp.chunks[i]))
            .count();
        for c in &mut pp.chunks[first..first + run] {
            *c += 1;
        }
        let block = chunk_block(piece, piece_len, first, run);
        pp.requests.push((ctx.peer, block));
        Some(block)
    }
}

fn max_run_chunks(max_request_len_bytes: u32, piece_len: u32) -> usize {
    if max_request_len_bytes >= piece_len {
        usize::MAX
    } else {
        (max_request_len_bytes / BLOCK_LEN_BYTES).max(1) as usize
    }
}

fn chunk_block(piece: PieceIndex, piece_len: u32, first: usize, run: usize) -> Block {
    let offset_bytes = first as u32 * BLOCK_LEN_BYTES;
    let end = ((first + run) as u64 * u64::from(BLOCK_LEN_BYTES)).min(u64::from(piece_len)) as u32;
    Block {
        piece,
        offset: BlockOffset(offset_bytes),
        len_bytes: end - offset_bytes,
    }
}

/// Chunk indices `[lo, hi)` covered by a block the picker issued.
fn chunk_range(b: &Block) -> (usize, usize) {
    let lo = (b.offset.0 / BLOCK_LEN_BYTES) as usize;
    let end = b.end_bytes();
    let hi = end.div_ceil(u64::from(BLOCK_LEN_BYTES)) as usize;
    (lo, hi)
}

fn covers(b: &Block, chunk: usize) -> bool {
    let (lo, hi) = chunk_range(b);
    lo <= chunk && chunk < hi
}

#[cfg(test)]
mod tests;
