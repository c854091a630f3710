//! Debug accounting of the origin's uploads (`P2PE_SIM_DEBUG`): when its first full copy
//! was out, how busy its uplink was until then, and where its duplicate copies went.
//! Observation only: nothing here feeds back into a decision, so a run's figures are the
//! same with and without it.
//!
//! Bounds: two counters per piece.

use crate::core::Time;

/// The origin's per-piece hand-outs and completed sends, and what they add up to.
#[derive(Debug, Default)]
pub(super) struct OriginTrace {
    /// Per piece: copies handed to the origin's uplink (blocks at offset 0).
    handed: Vec<u32>,
    /// Per piece: copies whose last byte left the origin.
    sent: Vec<u32>,
    /// Pieces with at least one copy sent.
    distinct_sent: u32,
    /// When the last distinct piece's copy left, and the origin's payload bytes by then.
    first_copy: Option<(Time, f64)>,
    /// Copies handed out while another copy of the piece had been handed out before,
    /// split by whether the first full copy was already out.
    dup_before: u64,
    dup_after: u64,
    /// Duplicates handed out (before the first copy) while some peer already held the
    /// piece verified: another source existed.
    dup_before_held: u64,
    /// Origin payload that arrived at a peer no longer wanting it (endgame, cancelled).
    unwanted_bytes: f64,
}

impl OriginTrace {
    pub(super) fn new(piece_count: u32) -> Self {
        OriginTrace {
            handed: vec![0; piece_count as usize],
            sent: vec![0; piece_count as usize],
            ..OriginTrace::default()
        }
    }

    /// The origin handed a block of `piece` at `offset_bytes` to its uplink; `held`: some
    /// honest peer already holds the piece verified.
    pub(super) fn on_handed(&mut self, piece: u32, offset_bytes: u32, held: bool) {
        if offset_bytes != 0 {
            return;
        }
        let Some(h) = self.handed.get_mut(piece as usize) else {
            return;
        };
        *h += 1;
        if *h > 1 {
            if self.first_copy.is_none() {
                self.dup_before += 1;
                self.dup_before_held += u64::from(held);
            } else {
                self.dup_after += 1;
            }
        }
    }

    /// The last byte of a block of `piece` at `offset_bytes` left the origin at `now`;
    /// `origin_up_bytes`: its payload bytes sent so far, this block included.
    pub(super) fn on_sent(&mut self, now: Time, piece: u32, offset_bytes: u32, origin_up: f64) {
        if offset_bytes != 0 {
            return;
        }
        let Some(s) = self.sent.get_mut(piece as usize) else {
            return;
        };
        *s += 1;
        if *s == 1 {
            self.distinct_sent += 1;
            if self.distinct_sent as usize == self.sent.len() {
                self.first_copy = Some((now, origin_up));
            }
        }
    }

    pub(super) fn on_unwanted(&mut self, bytes: f64) {
        self.unwanted_bytes += bytes;
    }

    /// One line for stderr: `size_bytes` is `F`, `uplink_bytes_per_s` the origin's.
    pub(super) fn summary(&self, size_bytes: f64, uplink_bytes_per_s: f64, d_p2p_s: f64) -> String {
        let first = match self.first_copy {
            Some((t, bytes)) => {
                let s = t.as_nanos() as f64 / 1e9;
                format!(
                    "first full copy out at {s:.4} s ({:.4} x D_p2p) after {:.4} copies, \
                     uplink use until then {:.1} %",
                    s / d_p2p_s,
                    bytes / size_bytes,
                    100.0 * bytes / (uplink_bytes_per_s * s).max(1.0),
                )
            }
            None => format!(
                "first full copy not out ({} of {} pieces)",
                self.distinct_sent,
                self.sent.len()
            ),
        };
        format!(
            "origin: {first}; duplicate copies handed out before it {} ({} while a peer held \
             the piece), after {}; origin payload unwanted on arrival {:.4} copies",
            self.dup_before,
            self.dup_before_held,
            self.dup_after,
            self.unwanted_bytes / size_bytes,
        )
    }
}
