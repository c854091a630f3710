//! The batched choker: one choke pass per interval over the peers of several torrents.
//!
//! A node with one [`Torrent`](crate::core::Torrent) per runtime worker runs them in
//! [`ChokerMode::External`](crate::core::ChokerMode::External). Every
//! `rechoke_interval` each reports its peers ([`ChokeCandidate`]s); a coordinator feeds
//! the latest report of every torrent to [`BatchChoker::rechoke`], which ranks all peers
//! together (global top `unchoke_slots` by rate plus one optimistic unchoke, exactly the
//! algorithm of the local choker) and returns one [`ChokeDecision`] per report.
//!
//! Invariant: over all decisions of one pass at most `unchoke_slots` peers are in
//! `unchoke`, at most one is `optimistic`, and the `slot_budget`s add up to at most
//! `unchoke_slots` (so the torrents together never unchoke more than `slots + 1` peers).

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;

use super::{ChokeCandidate, Choker};
use crate::core::{ChokerConfig, PeerKey, Time};

/// What one torrent is told by a [`BatchChoker`] pass.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChokeDecision {
    /// Reported peers that get a regular unchoke slot.
    pub unchoke: Vec<PeerKey>,
    /// The node's one optimistic unchoke, if it is one of this torrent's peers.
    pub optimistic: Option<PeerKey>,
    /// Reported peers that are choked (peers connected after the report are left alone).
    pub choke: Vec<PeerKey>,
    /// Regular slots this torrent may fill until the next decision: its `unchoke` plus
    /// its share of the slots nobody got (newly interested peers are unchoked into them
    /// at once, as the local choker does with free slots).
    pub slot_budget: usize,
}

/// The node-wide choker of [`ChokerMode::External`](crate::core::ChokerMode::External)
/// torrents (see the module docs). Sans-IO: time is passed in, randomness is seeded.
#[derive(Debug)]
pub struct BatchChoker {
    choker: Choker,
    rng: ChaCha8Rng,
}

impl BatchChoker {
    /// A choker for `config`'s slots and intervals over every reporting torrent;
    /// `rng_seed` seeds the tie-breaking and optimistic choices.
    pub fn new(config: ChokerConfig, rng_seed: u64) -> Self {
        BatchChoker {
            choker: Choker::new(config, Time::ZERO),
            rng: ChaCha8Rng::seed_from_u64(rng_seed),
        }
    }

    /// The settings in use (slots are the node's total).
    pub fn config(&self) -> &ChokerConfig {
        &self.choker.config
    }

    /// One pass at `now` over `reports` (the latest report of each torrent; peer keys
    /// must be unique across them): returns `decisions[i]` for `reports[i]`. The
    /// optimistic unchoke rotates every `optimistic_interval`, as in the local choker.
    pub fn rechoke(&mut self, now: Time, reports: &[Vec<ChokeCandidate>]) -> Vec<ChokeDecision> {
        let all: Vec<ChokeCandidate> = reports.iter().flatten().copied().collect();
        let d = self.choker.rechoke(now, &all, &mut self.rng);
        let regular: BTreeSet<PeerKey> = d.regular.iter().copied().collect();
        let slots = self.choker.config.unchoke_slots;
        let n = reports.len().max(1);
        let spare = slots.saturating_sub(d.regular.len());
        reports
            .iter()
            .enumerate()
            .map(|(i, report)| {
                let mut out = ChokeDecision::default();
                for c in report {
                    if regular.contains(&c.peer) {
                        out.unchoke.push(c.peer);
                    } else if d.optimistic == Some(c.peer) {
                        out.optimistic = Some(c.peer);
                    } else {
                        out.choke.push(c.peer);
                    }
                }
                let share = spare / n + usize::from(i < spare % n);
                out.slot_budget = out.unchoke.len().saturating_add(share);
                out
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    fn cand(worker: u64, i: u64, rate: f64) -> ChokeCandidate {
        ChokeCandidate {
            peer: PeerKey(worker << 48 | i),
            interested: true,
            snubbed: false,
            rate_bytes_per_s: rate,
            connected_at: Time::ZERO,
        }
    }

    #[test]
    fn global_top_four_over_two_workers() {
        // 8 peers, 4 per worker; rates interleave so the top four span both workers.
        let reports: Vec<Vec<ChokeCandidate>> = (0..2u64)
            .map(|w| (0..4u64).map(|i| cand(w, i, (2 * i + w) as f64)).collect())
            .collect();
        let mut bc = BatchChoker::new(ChokerConfig::default(), 1);
        let ds = bc.rechoke(Time::ZERO + Duration::from_secs(10), &reports);
        let unchoked: BTreeSet<PeerKey> = ds.iter().flat_map(|d| d.unchoke.clone()).collect();
        // Rates 4, 5, 6, 7: peers 2 and 3 of each worker.
        let want: BTreeSet<PeerKey> = [(0, 2), (1, 2), (0, 3), (1, 3)]
            .iter()
            .map(|&(w, i)| PeerKey(w << 48 | i))
            .collect();
        assert_eq!(unchoked, want);
        let optimistic: Vec<PeerKey> = ds.iter().filter_map(|d| d.optimistic).collect();
        assert_eq!(optimistic.len(), 1);
        assert!(!want.contains(&optimistic[0]));
        for (d, r) in ds.iter().zip(&reports) {
            assert_eq!(
                d.unchoke.len() + d.choke.len() + usize::from(d.optimistic.is_some()),
                4
            );
            assert_eq!(r.len(), 4);
        }
        assert_eq!(ds.iter().map(|d| d.slot_budget).sum::<usize>(), 4);
    }

    #[test]
    fn spare_slots_are_shared_out() {
        // One interested peer in all: 3 of 4 slots are spare, split 2 + 1.
        let reports = vec![vec![cand(0, 0, 1.0)], vec![]];
        let mut bc = BatchChoker::new(ChokerConfig::default(), 2);
        let ds = bc.rechoke(Time::ZERO, &reports);
        assert_eq!(ds[0].unchoke, vec![PeerKey(0)]);
        assert_eq!((ds[0].slot_budget, ds[1].slot_budget), (1 + 2, 1));
        // The datacenter profile unchokes everyone; budgets saturate.
        let mut bc = BatchChoker::new(ChokerConfig::datacenter(), 2);
        let reports = vec![
            (0..5).map(|i| cand(0, i, 0.0)).collect(),
            (0..5).map(|i| cand(1, i, 0.0)).collect::<Vec<_>>(),
        ];
        let ds = bc.rechoke(Time::ZERO, &reports);
        assert!(ds
            .iter()
            .all(|d| d.unchoke.len() == 5 && d.choke.is_empty()));
        assert!(ds.iter().all(|d| d.slot_budget > 1 << 40));
    }

    proptest! {
        #[test]
        fn a_pass_never_exceeds_slots_plus_one(
            slots in 0usize..8,
            workers in proptest::collection::vec(
                proptest::collection::vec((any::<bool>(), 0u32..5, any::<bool>()), 0..10), 1..4),
            seed in any::<u64>(),
            steps in 1u64..5,
        ) {
            let reports: Vec<Vec<ChokeCandidate>> = workers.iter().enumerate().map(|(w, ps)| {
                ps.iter().enumerate().map(|(i, &(int, r, sn))| ChokeCandidate {
                    interested: int,
                    snubbed: sn,
                    ..cand(w as u64, i as u64, f64::from(r))
                }).collect()
            }).collect();
            let cfg = ChokerConfig { unchoke_slots: slots, ..ChokerConfig::default() };
            let mut bc = BatchChoker::new(cfg, seed);
            for s in 0..steps {
                let ds = bc.rechoke(Time::ZERO + Duration::from_secs(10 * s), &reports);
                let regular: usize = ds.iter().map(|d| d.unchoke.len()).sum();
                let opt = ds.iter().filter(|d| d.optimistic.is_some()).count();
                prop_assert!(regular <= slots && opt <= 1);
                prop_assert!(ds.iter().map(|d| d.slot_budget).sum::<usize>() <= slots);
                for (d, r) in ds.iter().zip(&reports) {
                    let n = d.unchoke.len() + d.choke.len() + usize::from(d.optimistic.is_some());
                    prop_assert_eq!(n, r.len());
                }
            }
        }
    }
}
