//! Per-connection state: the four BEP 3 flags, the peer's bitfield, requests in flight in
//! both directions, BEP 6 hints and measured rates.
//!
//! Invariants: `inflight_bytes` is the sum of `inflight` lengths; `interesting` is the
//! number of pieces in `have` that the torrent still needs; a block in `inflight` is also
//! recorded as a request of this peer in the picker.

use super::{Bitfield, Block, PeerCaps, PieceIndex, Time};
use std::collections::VecDeque;
use std::time::Duration;

/// How many recently cancelled requests are remembered, so a block or reject that crossed
/// our `cancel` on the wire is tolerated rather than treated as unrequested.
pub(crate) const CANCELLED_MEMORY: usize = 512;
/// Bound on remembered BEP 6 hints per peer (suggest, reject, allowed fast).
pub(crate) const HINT_MEMORY: usize = 32;
/// Bound on pieces a distinct-first seeder remembers rejecting to one peer: a peer
/// re-asking for one of these is served, so forgetting early would reject it twice.
pub(crate) const SEEDER_REJECT_MEMORY: usize = 256;

/// Transfer rate estimate: bytes counted over a window, folded into an exponential
/// moving average (weight 1/2) each time [`RateMeter::update`] closes the window.
#[derive(Clone, Debug, Default)]
pub(crate) struct RateMeter {
    window_bytes: u64,
    window_start: Time,
    rate_bytes_per_s: f64,
    total_bytes: u64,
}

impl RateMeter {
    pub(crate) fn new(now: Time) -> Self {
        RateMeter {
            window_start: now,
            ..RateMeter::default()
        }
    }

    pub(crate) fn record(&mut self, bytes: u64) {
        self.window_bytes += bytes;
        self.total_bytes += bytes;
    }

    /// Closes the current window at `now` and folds it into the average.
    pub(crate) fn update(&mut self, now: Time) {
        let secs = now
            .saturating_duration_since(self.window_start)
            .as_secs_f64();
        if secs <= 0.0 {
            return;
        }
        let inst = self.window_bytes as f64 / secs;
        self.rate_bytes_per_s = if self.rate_bytes_per_s == 0.0 {
            inst
        } else {
            0.5 * (self.rate_bytes_per_s + inst)
        };
        self.window_bytes = 0;
        self.window_start = now;
    }

    /// Smoothed rate in bytes per second, plus the bytes of the open window so that a
    /// peer that just started sending ranks above one that never did.
    pub(crate) fn rate_bytes_per_s(&self) -> f64 {
        self.rate_bytes_per_s + self.window_bytes as f64 * 1e-3
    }

    /// Bytes recorded since creation.
    pub(crate) fn total_bytes(&self) -> u64 {
        self.total_bytes
    }
}

/// How long peers make us wait for a delivery while they owe us one: a smoothed mean and
/// mean deviation of the samples, as TCP estimates its round trip (RFC 6298 §2: gains 1/8
/// and 1/4, the first sample sets the mean and half of it the deviation).
/// [`DeliveryWait::timeout_s`] is mean + 4 deviations, as RFC 6298's RTO and libtorrent's
/// request timeout. Used for stalled requests (`torrent::stall`).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct DeliveryWait {
    mean_s: f64,
    dev_s: f64,
    samples: u32,
}

impl DeliveryWait {
    /// Adds one wait.
    pub(crate) fn sample(&mut self, wait: Duration) {
        let s = wait.as_secs_f64();
        if self.samples == 0 {
            self.mean_s = s;
            self.dev_s = s / 2.0;
        } else {
            self.dev_s = 0.75 * self.dev_s + 0.25 * (self.mean_s - s).abs();
            self.mean_s = 0.875 * self.mean_s + 0.125 * s;
        }
        self.samples = self.samples.saturating_add(1);
    }

    /// Samples so far (saturating).
    pub(crate) fn samples(&self) -> u32 {
        self.samples
    }

    /// Mean + 4 mean deviations, in seconds; `None` with fewer than `min_samples`.
    pub(crate) fn timeout_s(&self, min_samples: u32) -> Option<f64> {
        (self.samples >= min_samples.max(1)).then_some(self.mean_s + 4.0 * self.dev_s)
    }
}

/// Everything the torrent knows about one connected peer.
#[derive(Debug)]
pub(crate) struct PeerState {
    pub caps: PeerCaps,
    pub connected_at: Time,
    /// We refuse to serve its requests.
    pub am_choking: bool,
    /// We want pieces it has.
    pub am_interested: bool,
    /// It refuses to serve our requests.
    pub peer_choking: bool,
    /// It wants pieces we have.
    pub peer_interested: bool,
    /// Unchoked by the optimistic slot rather than a regular one.
    pub optimistic: bool,
    pub have: Bitfield,
    pub interesting: u32,
    /// Our requests to it, oldest first.
    pub inflight: Vec<Block>,
    pub inflight_bytes: u64,
    /// Our requests it may still answer though we gave them up.
    pub cancelled: VecDeque<Block>,
    /// Last time it sent us a block or part of one ([`super::Torrent::handle_block_progress`]),
    /// unchoked us, or held none of our requests at a check (for anti-snubbing).
    pub last_progress_at: Time,
    pub snubbed: bool,
    /// Since when it owes us a delivery (meaningful while `inflight` is not empty): its
    /// last block or payload progress, or the request that found `inflight` empty
    /// (stalled requests, `torrent::stall`).
    pub owed_since: Time,
    /// When it last delivered a block or payload progress; `None` if it never did.
    pub delivered_at: Option<Time>,
    /// How long it made us wait for its deliveries.
    pub wait: DeliveryWait,
    /// It sent us a message (any, keep-alive included) since it was last snubbed. A
    /// snubbed peer's one probe request may start (claim) a fresh piece only then, so a
    /// frozen peer never re-claims a piece while it stays silent (issue 11).
    pub heard_since_snub: bool,
    /// Its requests we have queued and not yet handed to the driver.
    pub queued_requests: u32,
    /// Requests received while we choke it (tolerated up to a bound: choke/request race).
    pub requests_while_choked: u32,
    pub suggested: Vec<PieceIndex>,
    pub rejected: Vec<PieceIndex>,
    pub allowed_fast: Vec<PieceIndex>,
    /// Pieces our distinct-first policy rejected to it (a second request is served).
    pub we_rejected: Vec<PieceIndex>,
    pub hash_failures: u32,
    pub last_sent_at: Time,
    /// Bytes it sent us (download) and we sent it (upload).
    pub download: RateMeter,
    pub upload: RateMeter,
}

impl PeerState {
    pub(crate) fn new(now: Time, caps: PeerCaps, piece_count: u32) -> Self {
        PeerState {
            caps,
            connected_at: now,
            am_choking: true,
            am_interested: false,
            peer_choking: true,
            peer_interested: false,
            optimistic: false,
            have: Bitfield::new(piece_count),
            interesting: 0,
            inflight: Vec::new(),
            inflight_bytes: 0,
            cancelled: VecDeque::new(),
            last_progress_at: now,
            snubbed: false,
            owed_since: now,
            delivered_at: None,
            wait: DeliveryWait::default(),
            heard_since_snub: false,
            queued_requests: 0,
            requests_while_choked: 0,
            suggested: Vec::new(),
            rejected: Vec::new(),
            allowed_fast: Vec::new(),
            we_rejected: Vec::new(),
            hash_failures: 0,
            last_sent_at: now,
            download: RateMeter::new(now),
            upload: RateMeter::new(now),
        }
    }

    /// Removes `block` from our in-flight requests; false if it was not there.
    pub(crate) fn take_inflight(&mut self, block: &Block) -> bool {
        match self.inflight.iter().position(|b| b == block) {
            Some(i) => {
                self.inflight.remove(i);
                self.inflight_bytes -= u64::from(block.len_bytes);
                true
            }
            None => false,
        }
    }

    /// Whether `part` is the head of an in-flight request (same piece and offset, shorter):
    /// what a relay peer sends first when answering it part by part.
    pub(crate) fn inflight_starts(&self, part: &Block) -> bool {
        self.inflight.iter().any(|b| starts(b, part))
    }

    /// A relay peer answered the head `part` of an in-flight request: the request now
    /// stands for the rest. False if no request starts with `part`.
    pub(crate) fn take_inflight_head(&mut self, part: &Block) -> bool {
        let Some(b) = self.inflight.iter_mut().find(|b| starts(b, part)) else {
            return false;
        };
        b.offset.0 += part.len_bytes;
        b.len_bytes -= part.len_bytes;
        self.inflight_bytes -= u64::from(part.len_bytes);
        true
    }

    /// Removes and returns the in-flight request that lies inside `b` (the rest of `b` after
    /// a relay peer's first parts), if any.
    pub(crate) fn take_inflight_within(&mut self, b: &Block) -> Option<Block> {
        let i = self.inflight.iter().position(|x| {
            x.piece == b.piece && b.offset.0 <= x.offset.0 && x.end_bytes() <= b.end_bytes()
        })?;
        let x = self.inflight.remove(i);
        self.inflight_bytes -= u64::from(x.len_bytes);
        Some(x)
    }

    /// Whether `part` lies inside a request we cancelled (a relay peer's parts that were
    /// on the way when our cancel left).
    pub(crate) fn cancelled_covers(&self, part: &Block) -> bool {
        self.cancelled.iter().any(|b| {
            b.piece == part.piece
                && b.offset.0 <= part.offset.0
                && part.end_bytes() <= b.end_bytes()
        })
    }

    /// Moves an in-flight request to the cancelled memory.
    pub(crate) fn forget_inflight(&mut self, block: Block) {
        if self.take_inflight(&block) {
            self.remember_cancelled(block);
        }
    }

    /// Adds `block` to the cancelled memory (bounded: the oldest entry goes).
    pub(crate) fn remember_cancelled(&mut self, block: Block) {
        if self.cancelled.len() == CANCELLED_MEMORY {
            self.cancelled.pop_front();
        }
        self.cancelled.push_back(block);
    }

    /// Gives up every in-flight request (moved to the cancelled memory); returns them.
    pub(crate) fn drain_inflight(&mut self) -> Vec<Block> {
        let blocks = std::mem::take(&mut self.inflight);
        self.inflight_bytes = 0;
        for b in &blocks {
            if self.cancelled.len() == CANCELLED_MEMORY {
                self.cancelled.pop_front();
            }
            self.cancelled.push_back(*b);
        }
        blocks
    }

    /// Removes `block` from the cancelled memory; false if it was not there.
    pub(crate) fn take_cancelled(&mut self, block: &Block) -> bool {
        match self.cancelled.iter().position(|b| b == block) {
            Some(i) => {
                self.cancelled.remove(i);
                true
            }
            None => false,
        }
    }

    /// Whether it is a seeder (has every piece).
    pub(crate) fn is_seed(&self) -> bool {
        self.have.is_full()
    }
}

/// Pushes `piece` into a bounded hint list, dropping the oldest entry when full.
pub(crate) fn remember(list: &mut Vec<PieceIndex>, piece: PieceIndex) {
    remember_up_to(list, piece, HINT_MEMORY);
}

/// Like [`remember`] with an explicit bound.
pub(crate) fn remember_up_to(list: &mut Vec<PieceIndex>, piece: PieceIndex, bound: usize) {
    if list.contains(&piece) {
        return;
    }
    if list.len() >= bound.max(1) {
        list.remove(0);
    }
    list.push(piece);
}

/// Whether `part` is the head of `b`: same piece and offset, strictly shorter.
fn starts(b: &Block, part: &Block) -> bool {
    b.piece == part.piece && b.offset == part.offset && part.len_bytes < b.len_bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rate_meter_averages_windows() {
        let mut m = RateMeter::new(Time::ZERO);
        m.record(1000);
        m.update(Time::ZERO + Duration::from_secs(1));
        assert!((m.rate_bytes_per_s() - 1000.0).abs() < 1e-9);
        m.record(3000);
        m.update(Time::ZERO + Duration::from_secs(2));
        assert!((m.rate_bytes_per_s() - 2000.0).abs() < 1e-9);
        assert_eq!(m.total_bytes, 4000);
    }

    #[test]
    fn delivery_wait_follows_rfc_6298() {
        let mut w = DeliveryWait::default();
        assert_eq!(w.timeout_s(1), None);
        w.sample(Duration::from_millis(8));
        // First sample: mean 8 ms, deviation 4 ms.
        assert!((w.timeout_s(1).unwrap() - 0.024).abs() < 1e-12);
        assert_eq!(w.timeout_s(2), None);
        w.sample(Duration::from_millis(16));
        // deviation 3/4 * 4 + 1/4 * 8 = 5 ms, mean 7/8 * 8 + 1/8 * 16 = 9 ms.
        assert!((w.timeout_s(2).unwrap() - 0.029).abs() < 1e-12);
        assert_eq!(w.samples(), 2);
    }

    #[test]
    fn hint_memory_is_bounded() {
        let mut l = Vec::new();
        for i in 0..(HINT_MEMORY as u32 + 5) {
            remember(&mut l, PieceIndex(i));
        }
        assert_eq!(l.len(), HINT_MEMORY);
        assert_eq!(l[0], PieceIndex(5));
    }
}
