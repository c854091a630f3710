//! Racks (`p2p` only): peers grouped behind shared top-of-rack links, and the distribution
//! time bound for that topology (derivation: `docs/topology.md`).
//!
//! Layout: initial peer `p` (node `1..=N`) and late joiner `p` sit in rack `(p - 1) mod R`,
//! so racks differ in size by at most one and `--slow-peers` spread over them. The origin
//! (node 0) sits in no rack: it reaches every rack through the core, using only the
//! receiving rack's downlink. Every rack has one uplink to the core and one downlink from
//! it, of the same capacity `U_r`: a given rate, or its members' uplinks divided by the
//! oversubscription (`Σ_{i∈r} u_i / X`). A transfer between two peers of one rack uses no
//! rack link; between two racks, the sender rack's uplink and the receiver rack's downlink.

use super::{SimConfig, SimError};

/// How the peers are racked. Rates in bytes per second.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RackSpec {
    /// Racks `R` (at least 1, at most the peers).
    pub racks: u32,
    /// Each rack's uplink (and downlink) to the core; `None`: the members' uplinks divided
    /// by `oversubscription`.
    pub uplink_bytes_per_s: Option<u64>,
    /// Oversubscription `X` (> 0) when `uplink_bytes_per_s` is `None`: 4.0 is "4:1".
    pub oversubscription: f64,
    /// Rack labels ignored: the simulator-as-tracker connects peers at random and the
    /// cores run without [`crate::core::Locality`] (the comparison run).
    pub oblivious: bool,
    /// Rack-aware only: connections each peer opens to random peers of other racks (its
    /// other connections go to its own rack).
    pub cross_connections: u32,
}

impl Default for RackSpec {
    /// One rack, non-blocking (1:1), rack-aware, 8 cross-rack connections.
    ///
    /// Cross-rack connections: a piece's importer can only take it from a remote
    /// neighbour that has it, so fewer of them delay pieces (4 racks × 25 peers, 4:1,
    /// 500 MB at 40 Gbit/s: K = 2 → 1.208 × D_topo, 4 → 1.139, 8 → 1.132, 16 → 1.136;
    /// 3 × 8 peers at 100 Mbit/s, 256 MiB: 1.118, 1.110, 1.102).
    fn default() -> Self {
        RackSpec {
            racks: 1,
            uplink_bytes_per_s: None,
            oversubscription: 1.0,
            oblivious: false,
            cross_connections: 8,
        }
    }
}

impl RackSpec {
    /// Rack of peer node `node` (`None` for the origin, node 0).
    pub fn rack_of(&self, node: u32) -> Option<u32> {
        (node >= 1).then(|| (node - 1) % self.racks.max(1))
    }
}

impl SimConfig {
    /// Rack of `node`, if the run has racks and the node is a peer.
    pub fn rack_of(&self, node: u32) -> Option<u32> {
        self.racks.as_ref().and_then(|r| r.rack_of(node))
    }

    /// Initial peers in `rack`.
    pub fn rack_members(&self, rack: u32) -> impl Iterator<Item = u32> + '_ {
        (1..=self.peers).filter(move |&p| self.rack_of(p) == Some(rack))
    }

    /// `U_r`: the uplink (and downlink) of `rack` to the core, bytes per second (0 without
    /// racks).
    pub fn rack_link_bytes_per_s(&self, rack: u32) -> u64 {
        let Some(spec) = &self.racks else {
            return 0;
        };
        spec.uplink_bytes_per_s.unwrap_or_else(|| {
            let sum: f64 = self
                .rack_members(rack)
                .map(|p| self.peer_links_bytes_per_s(p).0 as f64)
                .sum();
            (sum / spec.oversubscription).round().max(1.0) as u64
        })
    }

    /// `D_topo` in seconds: `D_p2p` and the rack terms (see `docs/topology.md`):
    /// - every rack receives each piece at least once over its downlink:
    ///   `F / min(U_r, Σ_{i∈r} d_i)`;
    /// - together the racks receive at least `R·F`, from the origin or out of other racks:
    ///   `R·F / (u_s + Σ_r min(U_r, Σ_{i∈r} u_i))`.
    ///
    /// Without racks, `D_p2p`.
    pub fn d_topo_s(&self) -> f64 {
        let d_p2p = self.d_p2p_s();
        let Some(spec) = &self.racks else {
            return d_p2p;
        };
        let f = self.size_bytes as f64;
        let mut bound = d_p2p;
        let mut out = self.seeder_uplink_bytes_per_s as f64;
        for r in 0..spec.racks {
            let link = self.rack_link_bytes_per_s(r) as f64;
            let (up, down) = self
                .rack_members(r)
                .map(|p| self.peer_links_bytes_per_s(p))
                .fold((0.0, 0.0), |(u, d), (pu, pd)| {
                    (u + pu as f64, d + pd as f64)
                });
            bound = bound.max(f / link.min(down));
            out += link.min(up);
        }
        bound.max(f64::from(spec.racks) * f / out)
    }

    /// Checks the rack spec against the rest of the config.
    pub(crate) fn validate_racks(&self) -> Result<(), SimError> {
        let Some(spec) = &self.racks else {
            return Ok(());
        };
        let bad = |s: &str| Err(SimError::InvalidConfig(s.to_string()));
        if spec.racks == 0 || spec.racks > self.peers {
            return bad("racks must be within 1..=peers");
        }
        if spec.uplink_bytes_per_s == Some(0) {
            return bad("rack uplink must be positive");
        }
        if !(spec.oversubscription > 0.0 && spec.oversubscription.is_finite()) {
            return bad("oversubscription must be positive");
        }
        if self.strategy != super::Strategy::P2p {
            return bad("racks need --strategy p2p");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn racked(peers: u32, racks: u32, up: u64, x: f64) -> SimConfig {
        let mut c = SimConfig::new(peers, 500_000_000, up);
        c.racks = Some(RackSpec {
            racks,
            oversubscription: x,
            ..RackSpec::default()
        });
        c
    }

    #[test]
    fn the_rack_terms_bind_when_racks_are_thin() {
        // 4 racks of 25 at 40 Gbit/s, 4:1: U_r = 250 Gbit/s; the racks do not bind and
        // D_topo = D_p2p = F/u_s.
        let c = racked(100, 4, 5_000_000_000, 4.0);
        assert!(c.validate().is_ok());
        assert_eq!(c.rack_link_bytes_per_s(0), 31_250_000_000);
        assert_eq!(c.rack_members(3).count(), 25);
        assert_eq!(
            (c.rack_of(0), c.rack_of(1), c.rack_of(6)),
            (None, Some(0), Some(1))
        );
        assert!((c.d_topo_s() - c.d_p2p_s()).abs() < 1e-12);
        // At 100:1, U_r = 10 Gbit/s: each rack's downlink binds (F / U_r = 0.4 s, 4x D_p2p).
        let c = racked(100, 4, 5_000_000_000, 100.0);
        let f = 5e8;
        assert!((c.d_topo_s() - f / 1.25e9).abs() < 1e-9, "{}", c.d_topo_s());
        // A fixed rate overrides the oversubscription; the aggregate term
        // R·F / (u_s + Σ U_r) binds when the origin is fast: 4F / (1e12 + 4 · 1e9).
        let mut c = racked(100, 4, 5_000_000_000, 1.0);
        c.seeder_uplink_bytes_per_s = 1_000_000_000_000;
        if let Some(s) = c.racks.as_mut() {
            s.uplink_bytes_per_s = Some(1_000_000_000);
        }
        assert!((c.d_topo_s() - (f / 1e9).max(4.0 * f / (1e12 + 4e9))).abs() < 1e-12);
        assert!((c.d_topo_s() - 0.5).abs() < 1e-12);
    }

    #[test]
    fn rack_spec_is_checked() {
        assert!(racked(10, 11, 1, 1.0).validate().is_err());
        assert!(racked(10, 0, 1, 1.0).validate().is_err());
        assert!(racked(10, 2, 1, 0.0).validate().is_err());
        let mut c = racked(10, 2, 1, 1.0);
        c.strategy = super::super::Strategy::ClientServer;
        assert!(c.validate().is_err());
    }
}
