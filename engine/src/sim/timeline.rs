//! Uplink-use timelines: payload bytes uploaded per time bin, by everyone and by the origin.
//!
//! A transfer's bytes are spread evenly over the time it was on the link (`start..end`),
//! so a bin shows what the uplinks carried during it. (Counting a whole block in the bin
//! of its last byte made bins of 130-190 % next to empty ones whenever blocks take about a
//! bin: 2 MiB pieces at 40 Gbit/s shared by 16 transfers take 6.7 ms, a bin 10 ms.) The
//! even spread is exact for a transfer whose rate never changed and an approximation
//! otherwise; it only affects the report, never the run.

use std::time::Duration;

use crate::core::Time;

/// Bytes uploaded per bin of `bin_ns` nanoseconds.
#[derive(Clone, Debug)]
pub(super) struct Timeline {
    bin_ns: u64,
    all: Vec<f64>,
    origin: Vec<f64>,
}

impl Timeline {
    /// An empty timeline with bins of `bin` (at least 1 ns; bins beyond ~584 years clamp).
    pub(super) fn new(bin: Duration) -> Self {
        Self {
            bin_ns: u64::try_from(bin.as_nanos()).unwrap_or(u64::MAX).max(1),
            all: Vec::new(),
            origin: Vec::new(),
        }
    }

    /// Width of one bin in nanoseconds.
    pub(super) fn bin_ns(&self) -> u64 {
        self.bin_ns
    }

    /// `bytes` left their sender evenly over `start..end` (all in `end`'s bin when the
    /// interval is empty); `from_origin` counts them in the origin's timeline too.
    pub(super) fn add(&mut self, start: Time, end: Time, bytes: f64, from_origin: bool) {
        let end_ns = end.as_nanos();
        let start_ns = start.as_nanos().min(end_ns);
        // The bin holding the last byte's nanosecond (`end_ns` itself is past it).
        let last = (end_ns.saturating_sub(u64::from(end_ns > start_ns)) / self.bin_ns) as usize;
        if self.all.len() <= last {
            self.all.resize(last + 1, 0.0);
            self.origin.resize(last + 1, 0.0);
        }
        let span = (end_ns - start_ns) as f64;
        let first = (start_ns / self.bin_ns) as usize;
        for bin in first..=last {
            let share = if span == 0.0 {
                bytes
            } else {
                let lo = start_ns.max(bin as u64 * self.bin_ns);
                let hi = end_ns.min((bin as u64 + 1) * self.bin_ns);
                bytes * hi.saturating_sub(lo) as f64 / span
            };
            self.all[bin] += share;
            if from_origin {
                self.origin[bin] += share;
            }
        }
    }

    /// Per bin: all bytes ÷ (`all_bytes_per_s` · bin), origin bytes ÷ (`origin_bytes_per_s`
    /// · bin); fractions of capacity (1.0 = 100 %).
    pub(super) fn fractions(&self, all_bytes_per_s: f64, origin_bytes_per_s: f64) -> Use {
        let bin_s = self.bin_ns as f64 / 1e9;
        let (all_cap, origin_cap) = (all_bytes_per_s * bin_s, origin_bytes_per_s * bin_s);
        Use {
            bin_s,
            all: self.all.iter().map(|b| b / all_cap).collect(),
            origin: self.origin.iter().map(|b| b / origin_cap).collect(),
        }
    }
}

/// A timeline as fractions of capacity (see [`Timeline::fractions`]).
pub(super) struct Use {
    pub bin_s: f64,
    pub all: Vec<f64>,
    pub origin: Vec<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_spread_over_the_transfer() {
        let ns = Time::from_nanos;
        let mut t = Timeline::new(Duration::from_nanos(10));
        // 30 bytes over 5..35: 5 in bin 0, 10 in bins 1 and 2, 5 in bin 3.
        t.add(ns(5), ns(35), 30.0, true);
        // An instant transfer lands in its bin.
        t.add(ns(12), ns(12), 4.0, false);
        assert_eq!(t.all, vec![5.0, 14.0, 10.0, 5.0]);
        assert_eq!(t.origin, vec![5.0, 10.0, 10.0, 5.0]);
        let u = t.fractions(1e9, 2e9);
        assert!((u.all[1] - 1.4).abs() < 1e-12 && (u.origin[1] - 0.5).abs() < 1e-12);
        assert!((u.bin_s - 1e-8).abs() < 1e-20);
    }
}
