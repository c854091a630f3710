//! A swarm scenario: hosts, file size, link rates, and its reference times.

use crate::netns::LinkSpec;

/// Host index of the tracker.
pub const TRACKER_HOST: usize = 0;
/// Host index of the origin seeder.
pub const ORIGIN_HOST: usize = 1;
/// Index of the first leecher host.
pub const FIRST_LEECHER_HOST: usize = 2;

/// What to distribute over which links.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Scenario {
    /// Hosts N: tracker + origin + N-2 leechers; at least 3.
    pub hosts: usize,
    /// File size F in bytes.
    pub size_bytes: u64,
    /// Every host's rate each way, Mbit/s (10⁶ bit/s).
    pub rate_mbit: f64,
    /// The origin's rate each way, Mbit/s [default: `rate_mbit`].
    pub origin_rate_mbit: Option<f64>,
    /// Fraction of the leechers on slow links (0..=1).
    pub slow_fraction: f64,
    /// Rate of the slow leechers each way, Mbit/s.
    pub slow_rate_mbit: Option<f64>,
}

/// D_cs and D_p2p for a scenario (Kurose & Ross, "client-server vs P2P").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    /// D_cs = max(L·F/u_s, F/d_min), seconds.
    pub d_cs_s: f64,
    /// D_p2p = max(F/u_s, F/d_min, L·F/(u_s+Σu_i)), seconds.
    pub d_p2p_s: f64,
}

impl Scenario {
    /// Leechers L = N - 2.
    pub fn leechers(&self) -> usize {
        self.hosts.saturating_sub(FIRST_LEECHER_HOST)
    }

    /// Number of slow leechers: `slow_fraction · L`, rounded, when a slow rate is set.
    pub fn slow_leechers(&self) -> usize {
        match self.slow_rate_mbit {
            Some(_) => ((self.slow_fraction * self.leechers() as f64).round() as usize)
                .min(self.leechers()),
            None => 0,
        }
    }

    /// A short label: `uniform`, `slow-origin`, `fast-origin`, `slow-peers`, or both.
    pub fn label(&self) -> String {
        let mut parts = Vec::new();
        match self.origin_rate_mbit {
            Some(o) if o < self.rate_mbit => parts.push("slow-origin"),
            Some(o) if o > self.rate_mbit => parts.push("fast-origin"),
            _ => {}
        }
        if self.slow_leechers() > 0 {
            parts.push("slow-peers");
        }
        if parts.is_empty() {
            "uniform".to_owned()
        } else {
            parts.join("+")
        }
    }

    /// One link per host: tracker, origin, fast leechers, then the slow ones last.
    pub fn links(&self) -> Vec<LinkSpec> {
        let normal = LinkSpec::symmetric_mbit(self.rate_mbit);
        let origin = LinkSpec::symmetric_mbit(self.origin_rate_mbit.unwrap_or(self.rate_mbit));
        let slow = LinkSpec::symmetric_mbit(self.slow_rate_mbit.unwrap_or(self.rate_mbit));
        let fast_leechers = self.leechers() - self.slow_leechers();
        let mut links = vec![normal, origin];
        links.extend(std::iter::repeat_n(normal, fast_leechers));
        links.extend(std::iter::repeat_n(slow, self.slow_leechers()));
        links
    }

    /// D_cs and D_p2p with the shaped rates (bytes/s = bit/s ÷ 8).
    pub fn bounds(&self) -> Bounds {
        let links = self.links();
        let f = self.size_bytes as f64;
        let n = self.leechers() as f64;
        let bytes = |bits: u64| bits as f64 / 8.0;
        let u_s = links
            .get(ORIGIN_HOST)
            .map_or(1.0, |l| bytes(l.up_bits_per_s));
        let leechers = links.get(FIRST_LEECHER_HOST..).unwrap_or(&[]);
        let d_min = leechers
            .iter()
            .map(|l| bytes(l.down_bits_per_s))
            .fold(f64::INFINITY, f64::min);
        let sum_u: f64 = leechers.iter().map(|l| bytes(l.up_bits_per_s)).sum();
        Bounds {
            d_cs_s: (n * f / u_s).max(f / d_min),
            d_p2p_s: (f / u_s).max(f / d_min).max(n * f / (u_s + sum_u)),
        }
    }

    /// Arguments of `p2pe sim` for this scenario, or `None` when it has slow
    /// leechers (the simulator gives every peer one uplink).
    pub fn sim_args(&self) -> Option<Vec<String>> {
        if self.slow_leechers() > 0 {
            return None;
        }
        let bytes = |mbit: f64| ((mbit * 1e6 / 8.0).round() as u64).to_string();
        Some(vec![
            "sim".into(),
            "--peers".into(),
            self.leechers().to_string(),
            "--size".into(),
            self.size_bytes.to_string(),
            "--uplink".into(),
            bytes(self.rate_mbit),
            "--seeder-uplink".into(),
            bytes(self.origin_rate_mbit.unwrap_or(self.rate_mbit)),
            "--block-length".into(),
            "16KiB".into(),
            "--json".into(),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uniform() -> Scenario {
        Scenario {
            hosts: 8,
            size_bytes: 64 << 20,
            rate_mbit: 100.0,
            origin_rate_mbit: None,
            slow_fraction: 0.0,
            slow_rate_mbit: None,
        }
    }

    #[test]
    fn uniform_bounds() {
        let s = uniform();
        let b = s.bounds();
        let t1 = (64u64 << 20) as f64 / 12.5e6; // one copy at 100 Mbit/s
        assert!((b.d_cs_s - 6.0 * t1).abs() < 1e-9);
        // L·F/(u_s+Σu_i) = 6F/(7u) < F/u, so D_p2p = F/u.
        assert!((b.d_p2p_s - t1).abs() < 1e-9);
        assert_eq!(s.label(), "uniform");
        assert_eq!(s.links().len(), 8);
    }

    #[test]
    fn slow_quarter_goes_last() {
        let s = Scenario {
            hosts: 10,
            slow_fraction: 0.25,
            slow_rate_mbit: Some(10.0),
            origin_rate_mbit: Some(400.0),
            ..uniform()
        };
        assert_eq!(s.slow_leechers(), 2);
        let links = s.links();
        assert_eq!(links[9].up_bits_per_s, 10_000_000);
        assert_eq!(links[7].up_bits_per_s, 100_000_000);
        assert_eq!(links[1].up_bits_per_s, 400_000_000);
        assert_eq!(s.label(), "fast-origin+slow-peers");
        assert!(s.sim_args().is_none());
        // d_min is the slow link.
        assert!((s.bounds().d_p2p_s - (64u64 << 20) as f64 / 1.25e6).abs() < 1e-9);
    }
}
