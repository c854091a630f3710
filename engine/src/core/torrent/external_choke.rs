//! [`ChokerMode::External`]: the torrent reports its peers' rates once per interval and
//! applies choke decisions made for the whole node (see [`crate::core::BatchChoker`]).
//!
//! Invariant: a torrent never has more regular unchokes than its `slot_budget` once a
//! decision is applied, nor more than one optimistic unchoke; peers that connected after
//! the report a decision answers keep their state until the next decision.

use std::collections::BTreeSet;

use super::Torrent;
use crate::core::{ChokeCandidate, ChokeDecision, ChokerMode, PeerKey, Time};

impl Torrent {
    /// [`ChokerMode::External`]: the peers' rates of the interval that ended at the
    /// latest rechoke time, once per `rechoke_interval` (`None` in between, and always in
    /// [`ChokerMode::Local`]). Hand it to the coordinator's
    /// [`BatchChoker`](crate::core::BatchChoker).
    pub fn poll_choke_report(&mut self) -> Option<Vec<ChokeCandidate>> {
        self.choke_report.take()
    }

    /// [`ChokerMode::External`]: applies a decision of the node's
    /// [`BatchChoker`](crate::core::BatchChoker): chokes `choke`, unchokes `unchoke` and
    /// `optimistic`, and fills at most `slot_budget` regular slots until the next one.
    /// Unknown peers (gone since the report) are skipped. Ignored in
    /// [`ChokerMode::Local`].
    pub fn handle_choke_decision(&mut self, now: Time, decision: &ChokeDecision) {
        self.now = self.now.max(now);
        if self.config.choker_mode == ChokerMode::Local {
            return;
        }
        self.slot_budget = decision.slot_budget.min(self.config.choker.unchoke_slots);
        // Choke first so the slot count never exceeds the budget + 1 mid-way.
        for &k in &decision.choke {
            self.set_choke(now, k, true);
        }
        let chosen: BTreeSet<PeerKey> = decision.unchoke.iter().copied().collect();
        // Peers unchoked since the report, beyond the new budget, or a stale optimistic.
        let extra: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(k, p)| !p.am_choking && !chosen.contains(k))
            .filter(|(k, p)| p.optimistic && decision.optimistic != Some(**k))
            .map(|(k, _)| *k)
            .collect();
        for k in extra {
            self.set_choke(now, k, true);
        }
        let regular_now = |t: &Self| {
            t.peers
                .iter()
                .filter(|(k, p)| !p.am_choking && !p.optimistic && !chosen.contains(k))
                .count()
        };
        let room = self.slot_budget.saturating_sub(chosen.len());
        let over = regular_now(self).saturating_sub(room);
        let newcomers: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(k, p)| !p.am_choking && !p.optimistic && !chosen.contains(k))
            .map(|(k, _)| *k)
            .filter(|k| decision.optimistic != Some(*k))
            .take(over)
            .collect();
        for k in newcomers {
            self.set_choke(now, k, true);
        }
        for &k in &decision.unchoke {
            self.set_choke(now, k, false);
            if let Some(p) = self.peers.get_mut(&k) {
                p.optimistic = false;
            }
        }
        if let Some(k) = decision.optimistic {
            self.set_choke(now, k, false);
            if let Some(p) = self.peers.get_mut(&k) {
                p.optimistic = true;
            }
        }
        self.fill_free_slots(now);
    }

    /// The rechoke time of [`ChokerMode::External`]: report instead of deciding.
    pub(super) fn report_rates(&mut self, now: Time) {
        self.choker.skip_rechoke(now);
        let cands = self.choke_candidates(now);
        self.choke_report = Some(cands);
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{caps, config};
    use super::*;
    use crate::core::{
        Action, BatchChoker, Bitfield, Block, ChokerConfig, PeerMessage, BLOCK_LEN_BYTES as BLOCK,
    };
    use std::time::Duration;

    const PIECES: u32 = 64;

    fn drain(t: &mut Torrent) -> Vec<Action> {
        std::iter::from_fn(|| t.poll_action()).collect()
    }

    fn key(worker: u64, i: u64) -> PeerKey {
        PeerKey(worker << 48 | i)
    }

    /// A leecher in external mode (BitTorrent defaults: 4 slots shared by 2 workers)
    /// whose 4 peers unchoked it and are interested; peer `i` of worker `w` then sends
    /// `2 i + w` blocks, so rates rank the 8 peers 0..8 across both workers.
    fn worker(w: u64) -> Torrent {
        let mut c = config(PIECES, BLOCK);
        c.choker = ChokerConfig::default();
        c.choker_mode = ChokerMode::External { initial_slots: 2 };
        let mut t = Torrent::new(c, Bitfield::new(PIECES), w + 1);
        for i in 0..4 {
            let k = key(w, i);
            t.handle_peer_connected(Time::ZERO, k, caps(true, BLOCK));
            for m in [
                PeerMessage::HaveAll,
                PeerMessage::Unchoke,
                PeerMessage::Interested,
            ] {
                t.handle_message(Time::ZERO, k, m).unwrap();
            }
        }
        let requests: Vec<(PeerKey, Block)> = drain(&mut t)
            .into_iter()
            .filter_map(|a| match a {
                Action::Send {
                    peer,
                    msg: PeerMessage::Request(b),
                } => Some((peer, b)),
                _ => None,
            })
            .collect();
        for i in 0..4u64 {
            let k = key(w, i);
            let mine = requests
                .iter()
                .filter(|(p, _)| *p == k)
                .take((2 * i + w) as usize);
            for (_, b) in mine {
                t.handle_block_received(Time::ZERO, k, *b).unwrap();
            }
        }
        drain(&mut t);
        t
    }

    fn unchoked(t: &Torrent) -> Vec<PeerKey> {
        t.peers
            .iter()
            .filter(|(_, p)| !p.am_choking)
            .map(|(k, _)| *k)
            .collect()
    }

    #[test]
    fn batched_choker_unchokes_the_global_top_four_plus_one() {
        let mut ws = [worker(0), worker(1)];
        // Before any decision each worker fills only its initial share (2 + 2 = 4).
        assert!(ws.iter().all(|t| unchoked(t).len() <= 2));
        let mut bc = BatchChoker::new(ChokerConfig::default(), 7);
        for round in 1..=4u64 {
            let now = Time::ZERO + Duration::from_secs(10 * round);
            let reports: Vec<Vec<ChokeCandidate>> = ws
                .iter_mut()
                .map(|t| {
                    t.handle_timeout(now);
                    t.poll_choke_report().expect("one report per interval")
                })
                .collect();
            assert!(ws.iter_mut().all(|t| t.poll_choke_report().is_none()));
            let ds = bc.rechoke(now, &reports);
            for (t, d) in ws.iter_mut().zip(&ds) {
                t.handle_choke_decision(now, d);
                drain(t);
                t.check_invariants();
            }
            let all: Vec<PeerKey> = ws.iter().flat_map(unchoked).collect();
            assert!(all.len() <= 4 + 1, "round {round}: {all:?}");
            // Rates 4..=7: peers 2 and 3 of both workers hold the regular slots.
            for k in [key(0, 2), key(1, 2), key(0, 3), key(1, 3)] {
                assert!(
                    all.contains(&k),
                    "round {round}: {k:?} not unchoked in {all:?}"
                );
            }
            let optimistic: Vec<PeerKey> = ws
                .iter()
                .flat_map(|t| {
                    t.peers
                        .iter()
                        .filter(|(_, p)| p.optimistic)
                        .map(|(k, _)| *k)
                })
                .collect();
            assert!(optimistic.len() <= 1, "{optimistic:?}");
        }
    }

    #[test]
    fn local_mode_ignores_decisions_and_never_reports() {
        let mut c = config(PIECES, BLOCK);
        c.choker = ChokerConfig::default();
        let mut t = Torrent::new(c, Bitfield::full(PIECES), 1);
        t.handle_peer_connected(Time::ZERO, PeerKey(1), caps(true, BLOCK));
        t.handle_timeout(Time::ZERO + Duration::from_secs(10));
        assert!(t.poll_choke_report().is_none());
        let d = ChokeDecision {
            unchoke: vec![PeerKey(1)],
            slot_budget: 1,
            ..ChokeDecision::default()
        };
        t.handle_choke_decision(Time::ZERO, &d);
        assert!(
            t.peers[&PeerKey(1)].am_choking,
            "not interested: stays choked"
        );
    }
}
