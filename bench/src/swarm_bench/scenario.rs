//! A swarm scenario: hosts, file size, link rates, and its reference times.

use crate::netns::{LinkSpec, RackPlan};

/// Host index of the tracker.
pub const TRACKER_HOST: usize = 0;
/// Host index of the origin seeder.
pub const ORIGIN_HOST: usize = 1;
/// Index of the first leecher host.
pub const FIRST_LEECHER_HOST: usize = 2;

/// Share of a shaped link's rate that a bulk TCP flow delivers as payload: 1,448
/// bytes of payload (1,500-byte MTU minus IPv4, TCP and timestamp-option headers) per
/// 1,514 bytes that `tbf` counts (the Ethernet header included), 95.6 %. Measured on
/// these links: 95.6 Mbit/s of goodput at 100 Mbit/s (`crate::netns`). The
/// simulator's links carry payload only, so its predictions use this share.
pub const TCP_GOODPUT: f64 = 1448.0 / 1514.0;

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
    /// Racks of the leechers (`None`: every host on one bridge).
    pub racks: Option<Racks>,
}

/// Leechers in racks behind shared links to a core (issue 13; the simulator's model,
/// `docs/topology.md`). Leecher host `i` (from [`FIRST_LEECHER_HOST`]) is in rack
/// `(i - 2) mod R`, as the simulator's peer `p = i - 1` is in rack `(p - 1) mod R`; the
/// tracker and the origin sit on the core, in no rack.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Racks {
    /// Racks R, at least 1 and at most the leechers.
    pub racks: usize,
    /// Each rack's uplink to the core and downlink from it, Mbit/s each way.
    pub uplink_mbit: f64,
    /// p2pe leechers get no `--rack` label (the comparison run).
    pub oblivious: bool,
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
        match self.racks {
            Some(r) if r.oblivious => parts.push("racks-oblivious"),
            Some(_) => parts.push("racks"),
            None => {}
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

    /// Rack of `host` (`None`: flat scenario, or the tracker or the origin).
    pub fn rack_of_host(&self, host: usize) -> Option<usize> {
        let r = self.racks?;
        (host >= FIRST_LEECHER_HOST).then(|| (host - FIRST_LEECHER_HOST) % r.racks.max(1))
    }

    /// The `--rack` label a p2pe leecher on `host` announces (`r0`, `r1`, ...); `None`
    /// when flat, oblivious, or not a leecher.
    pub fn rack_label(&self, host: usize) -> Option<String> {
        if self.racks?.oblivious {
            return None;
        }
        self.rack_of_host(host).map(|k| format!("r{k}"))
    }

    /// The [`RackPlan`] for [`crate::netns::Lan::create_racked`]; `None` when flat.
    pub fn rack_plan(&self) -> Option<RackPlan> {
        let r = self.racks?;
        Some(RackPlan {
            racks: r.racks,
            rack_of: (0..self.hosts).map(|h| self.rack_of_host(h)).collect(),
            link: LinkSpec::symmetric_mbit(r.uplink_mbit),
        })
    }

    /// The simulator's config of this scenario's links and racks (bytes/s = bit/s ÷ 8),
    /// for its bounds; `None` without leechers.
    pub fn sim_config(&self) -> Option<p2pe::sim::SimConfig> {
        let bytes = |mbit: f64| (mbit * 1e6 / 8.0).round() as u64;
        let peers = u32::try_from(self.leechers()).ok().filter(|&n| n > 0)?;
        let mut c = p2pe::sim::SimConfig::new(peers, self.size_bytes, bytes(self.rate_mbit));
        c.seeder_uplink_bytes_per_s = bytes(self.origin_rate_mbit.unwrap_or(self.rate_mbit));
        if let (k @ 1.., Some(slow)) = (self.slow_leechers(), self.slow_rate_mbit) {
            c.slow_peers = p2pe::sim::SlowPeers {
                count: k as u32,
                uplink_bytes_per_s: bytes(slow),
                downlink_bytes_per_s: bytes(slow),
            };
        }
        if let Some(r) = self.racks {
            c.racks = Some(p2pe::sim::RackSpec {
                racks: r.racks as u32,
                uplink_bytes_per_s: Some(bytes(r.uplink_mbit)),
                oblivious: r.oblivious,
                ..Default::default()
            });
        }
        Some(c)
    }

    /// `D_topo` in seconds, the simulator's bound for the racks
    /// ([`p2pe::sim::SimConfig::d_topo_s`], `docs/topology.md`); `None` when flat.
    pub fn d_topo_s(&self) -> Option<f64> {
        self.racks?;
        self.sim_config().map(|c| c.d_topo_s())
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

    /// Arguments of `p2pe sim` for this scenario (`--json` output), every link at its
    /// TCP goodput ([`TCP_GOODPUT`] × the shaped rate), with the slow
    /// leechers as `--slow-peers`, in the torrent's piece length (`auto`, the default of
    /// both `p2pe create` and `p2pe sim`, passes none). Requests are the simulator's
    /// default, whole pieces: p2pe peers negotiate whole-piece requests (BEP 10 extension).
    /// `None` when there is nothing to simulate (no leecher).
    pub fn sim_args(&self) -> Option<Vec<String>> {
        self.sim_args_with_piece_length("auto")
    }

    /// [`Scenario::sim_args`] for a torrent made with `p2pe create --piece-length
    /// piece_length` (`auto` or a size such as `1MiB`).
    pub fn sim_args_with_piece_length(&self, piece_length: &str) -> Option<Vec<String>> {
        if self.leechers() == 0 {
            return None;
        }
        // The simulator's links carry payload at their rate; a shaped link carries
        // TCP/IP/Ethernet headers too, so the prediction uses the goodput.
        let bytes = |mbit: f64| ((mbit * TCP_GOODPUT * 1e6 / 8.0).round() as u64).to_string();
        let mut args: Vec<String> = vec![
            "sim".into(),
            "--peers".into(),
            self.leechers().to_string(),
            "--size".into(),
            self.size_bytes.to_string(),
            "--uplink".into(),
            bytes(self.rate_mbit),
            "--seeder-uplink".into(),
            bytes(self.origin_rate_mbit.unwrap_or(self.rate_mbit)),
        ];
        if let (k @ 1.., Some(slow)) = (self.slow_leechers(), self.slow_rate_mbit) {
            args.extend([
                "--slow-peers".into(),
                k.to_string(),
                "--slow-uplink".into(),
                bytes(slow),
            ]);
        }
        if let Some(r) = self.racks {
            args.extend([
                "--racks".into(),
                r.racks.to_string(),
                "--rack-uplink".into(),
                bytes(r.uplink_mbit),
            ]);
            if r.oblivious {
                args.push("--rack-oblivious".into());
            }
        }
        if !piece_length.trim().eq_ignore_ascii_case("auto") {
            args.extend(["--piece-length".into(), piece_length.trim().to_owned()]);
        }
        args.push("--json".into());
        Some(args)
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
            racks: None,
        }
    }

    fn racked(oblivious: bool) -> Scenario {
        Scenario {
            hosts: 8,
            size_bytes: 16 << 20,
            racks: Some(Racks {
                racks: 2,
                uplink_mbit: 50.0,
                oblivious,
            }),
            ..uniform()
        }
    }

    #[test]
    fn leechers_go_round_robin_over_racks() {
        let s = racked(false);
        let racks: Vec<Option<usize>> = (0..8).map(|h| s.rack_of_host(h)).collect();
        assert_eq!(
            racks,
            [
                None,
                None,
                Some(0),
                Some(1),
                Some(0),
                Some(1),
                Some(0),
                Some(1)
            ]
        );
        assert_eq!(s.rack_label(5).as_deref(), Some("r1"));
        assert_eq!(s.rack_label(1), None);
        assert_eq!(racked(true).rack_label(5), None);
        assert_eq!(uniform().rack_of_host(5), None);
        let plan = s.rack_plan().unwrap();
        assert_eq!(plan.rack_of, racks);
        assert_eq!(plan.link.up_bits_per_s, 50_000_000);
        assert_eq!(s.label(), "racks");
        assert_eq!(racked(true).label(), "racks-oblivious");
    }

    #[test]
    fn d_topo_of_two_racks_at_half_rate() {
        // 6 leechers at 100 Mbit/s in 2 racks of 3, rack links 50 Mbit/s, origin 100.
        // Each rack takes F through its downlink: F/6.25 MB/s. Together the racks take
        // 2F from the origin (12.5 MB/s) and two uplinks (6.25 each): 2F/25 MB/s. So
        // D_topo = F/6.25e6 = 2 × D_p2p.
        let s = racked(false);
        let f = (16u64 << 20) as f64;
        let d_topo = s.d_topo_s().unwrap();
        assert!((d_topo - f / 6.25e6).abs() < 1e-9, "{d_topo}");
        assert!((d_topo / s.bounds().d_p2p_s - 2.0).abs() < 1e-9);
        assert_eq!(uniform().d_topo_s(), None);
        let args = racked(true).sim_args().unwrap();
        assert_eq!(arg(&args, "--racks"), Some("2"));
        // 50 Mbit/s at its goodput: 6.25 MB/s × 1448/1514.
        assert_eq!(arg(&args, "--rack-uplink"), Some("5977543"));
        assert!(args.iter().any(|a| a == "--rack-oblivious"));
        assert!(!s
            .sim_args()
            .unwrap()
            .iter()
            .any(|a| a == "--rack-oblivious"));
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
        // d_min is the slow link.
        assert!((s.bounds().d_p2p_s - (64u64 << 20) as f64 / 1.25e6).abs() < 1e-9);
    }

    /// The value after `flag` in `args`.
    fn arg<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
        let i = args.iter().position(|a| a == flag)?;
        args.get(i + 1).map(String::as_str)
    }

    #[test]
    fn sim_args_uniform_use_whole_piece_requests() {
        let args = uniform().sim_args().unwrap();
        assert_eq!(args.first().map(String::as_str), Some("sim"));
        assert_eq!(arg(&args, "--peers"), Some("6"));
        assert_eq!(arg(&args, "--size"), Some("67108864"));
        // 100 Mbit/s = 12.5 MB/s on the wire, 11.96 MB/s of TCP payload.
        assert_eq!(arg(&args, "--uplink"), Some("11955086"));
        assert_eq!(arg(&args, "--seeder-uplink"), Some("11955086"));
        // p2pe peers request whole pieces: no 16 KiB blocks, no slow group, auto pieces.
        for absent in ["--block-length", "--slow-peers", "--piece-length"] {
            assert!(!args.iter().any(|a| a == absent), "{absent} in {args:?}");
        }
        assert_eq!(args.last().map(String::as_str), Some("--json"));
    }

    #[test]
    fn sim_args_quarter_slow_and_piece_length() {
        // The issue-5 row: 16 hosts, origin 400, a quarter of 14 leechers at 20 Mbit/s.
        let s = Scenario {
            hosts: 16,
            slow_fraction: 0.25,
            slow_rate_mbit: Some(20.0),
            origin_rate_mbit: Some(400.0),
            ..uniform()
        };
        let args = s.sim_args_with_piece_length("1MiB").unwrap();
        assert_eq!(arg(&args, "--peers"), Some("14"));
        assert_eq!(arg(&args, "--seeder-uplink"), Some("47820343"));
        // 3.5 rounds to 4 slow leechers at 20 Mbit/s = 2.5 MB/s each way on the
        // wire, 2.39 MB/s of payload.
        assert_eq!(arg(&args, "--slow-peers"), Some("4"));
        assert_eq!(arg(&args, "--slow-uplink"), Some("2391017"));
        assert_eq!(arg(&args, "--piece-length"), Some("1MiB"));
        assert_eq!(s.sim_args_with_piece_length(" AUTO "), s.sim_args());
        // A slow rate without a fraction has no slow group.
        let none = Scenario {
            slow_fraction: 0.0,
            ..s
        };
        assert!(!none.sim_args().unwrap().iter().any(|a| a == "--slow-peers"));
        // Nothing to simulate without leechers.
        let empty = Scenario { hosts: 2, ..s };
        assert_eq!(empty.sim_args(), None);
    }
}
