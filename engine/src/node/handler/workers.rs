//! Between the node's workers: pieces verified elsewhere, connections to a peer
//! another worker kept, addresses another worker learned, and the batched choker.
//!
//! Every message is an optimisation over shared atomic state or a later retry, so a
//! full mailbox ([`crate::rt::PostError::Full`]) loses nothing for good: a verified
//! piece is also in `TorrentShared::have`, which every worker catches up with on its tick
//! ([`NodeHandler::sync_have`]); a choke report is sent again next interval; PEX
//! repeats addresses.
//!
//! Batched choker (more than one worker): every `rechoke_interval` each worker's
//! torrent reports its peers' rates to worker 0, which keeps the latest report of
//! each worker and, once it has one from every worker, runs one
//! [`BatchChoker`] pass over all of them and sends each worker its decision.

use std::sync::atomic::Ordering;

use crate::core::{BatchChoker, ChokeCandidate, ChokerConfig, PieceIndex};
use crate::node::dispatch::Ctx;

use super::super::peer::Source;
use super::super::Command;
use super::NodeHandler;

/// Worker 0's side of the batched choker.
pub(crate) struct Coordinator {
    batch: BatchChoker,
    /// Latest report of each worker not yet used in a pass.
    reports: Vec<Option<Vec<ChokeCandidate>>>,
}

impl Coordinator {
    /// The choker over `workers` workers' peers with the node's `config` slots.
    pub(crate) fn new(config: ChokerConfig, rng_seed: u64, workers: usize) -> Self {
        Coordinator {
            batch: BatchChoker::new(config, rng_seed ^ 0x0063_686f_6b65),
            reports: vec![None; workers],
        }
    }
}

impl NodeHandler {
    /// Tells every other worker that this one verified `piece`.
    pub(super) fn tell_verified(&self, ctx: &mut Ctx, piece: PieceIndex) {
        for w in (0..self.shared.workers).filter(|&w| w != self.worker) {
            // Full: the worker catches up from `TorrentShared::have` on its tick.
            let _ = self.post(ctx, w, Command::PieceVerified(piece));
        }
    }

    /// Marks pieces other workers or the web seeds verified (per `TorrentShared::have`)
    /// that our torrent does not have yet: O(pieces / 64), only while behind.
    pub(super) fn sync_have(&mut self) {
        if self.torrent.have().count_ones() >= self.shared.verified_pieces.load(Ordering::Acquire) {
            return;
        }
        let now = self.now();
        let words = self.torrent.have().words().len();
        for i in 0..words {
            let mine = self.torrent.have().words().get(i).copied().unwrap_or(0);
            let mut missing = self.shared.have.load_word(i) & !mine;
            while missing != 0 {
                let bit = missing.trailing_zeros();
                missing &= missing - 1;
                let piece = PieceIndex(i as u32 * 64 + bit);
                self.torrent.handle_piece_verified_elsewhere(now, piece);
            }
        }
    }

    /// Sends the torrent's choke report (if one is due) to the coordinator.
    pub(super) fn forward_choke_report(&mut self, ctx: &mut Ctx) {
        let Some(report) = self.torrent.poll_choke_report() else {
            return;
        };
        if self.worker == 0 {
            self.on_choke_report(ctx, 0, report);
        } else {
            // Full: the next interval's report replaces it.
            let _ = self.post(ctx, 0, Command::ChokeReport(self.worker, report));
        }
    }

    /// Coordinator: records `worker`'s report; with one from every worker, runs the
    /// pass and hands out the decisions.
    fn on_choke_report(&mut self, ctx: &mut Ctx, worker: usize, report: Vec<ChokeCandidate>) {
        let now = self.now();
        let Some(co) = self.coordinator.as_mut() else {
            return;
        };
        let Some(slot) = co.reports.get_mut(worker) else {
            return;
        };
        *slot = Some(report);
        if co.reports.iter().any(Option::is_none) {
            return;
        }
        let reports: Vec<Vec<ChokeCandidate>> =
            co.reports.iter_mut().filter_map(Option::take).collect();
        let decisions = co.batch.rechoke(now, &reports);
        for (w, d) in decisions.into_iter().enumerate() {
            if w == self.worker {
                self.torrent.handle_choke_decision(now, &d);
            } else {
                // Full: that worker keeps its unchokes until the next pass.
                let _ = self.post(ctx, w, Command::ChokeDecision(d));
            }
        }
    }

    /// A message from another worker (see [`Command`]).
    pub(super) fn on_worker_message(&mut self, ctx: &mut Ctx, cmd: Command) {
        let now = self.now();
        match cmd {
            Command::AddPeer(addr, source) => {
                if self.add_peer(ctx, addr, source) {
                    let s = &self.shared;
                    let counter = match source {
                        Source::Pex(_) => &s.pex_peers_learned,
                        Source::Tracker => &s.tracker_peers_learned,
                        Source::Dht => &s.dht_peers_learned,
                        Source::Configured => return,
                    };
                    counter.fetch_add(1, Ordering::AcqRel);
                }
            }
            Command::PieceVerified(piece) => {
                self.torrent.handle_piece_verified_elsewhere(now, piece);
                self.shadow_bufs.remove(&piece);
                self.shadow_commits.remove(&piece);
            }
            Command::ClosePeer(conn, peer_id) => {
                let ours = self.conns.get(&conn).map(|pc| pc.peer_id);
                if ours == Some(Some(peer_id)) {
                    self.drop_conn(ctx, conn, None);
                }
            }
            Command::ChokeReport(worker, report) => self.on_choke_report(ctx, worker, report),
            Command::ChokeDecision(d) => self.torrent.handle_choke_decision(now, &d),
            Command::DialLane(addr, peer_id) => self.dial_lane(ctx, addr, peer_id),
            Command::Connect(_) | Command::Start | Command::Discovered => {}
        }
    }
}
