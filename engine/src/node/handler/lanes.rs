//! Lanes: several connections between two p2pe nodes, so that one pair uses
//! several cores (a p2pe extension, not a BEP).
//!
//! Each p2pe node advertises its worker count in the p2pe extension of its
//! BEP 10 handshake ([`crate::wire::peer::P2peExt::lanes`]). Once both
//! extended handshakes were read on a connection (the primary, the one
//! [`NodeHandler::keep_one_per_peer`] kept), the pair uses
//! `lanes = min(ours, theirs)` connections ([`negotiated_lanes`]). The side
//! that dialled the primary opens the `lanes - 1` others, one from each of
//! `lanes - 1` of its other workers, to the same listen address; the
//! accepting node's `SO_REUSEPORT` spreads them over its workers by a hash
//! of the 4-tuple (usually distinct workers, not always). Every worker's core
//! requests from its own connections and the node-wide piece claims keep the
//! workers on distinct pieces, so each lane carries a share of the pieces.
//!
//! Invariants: per peer id, at most `lanes - 1` <= [`MAX_LANES`] - 1 extra
//! connections (`PeerEntry::extra`), at most one per worker on the dialling
//! side; a lane is taken only on top of a primary of the right direction
//! (dialled by us for our lane dials, dialled by the peer for its lanes) and
//! only once both sides advertised more than one lane, so a simultaneous
//! dial is still resolved as before and any other client keeps exactly one
//! connection. A lane is never redialled (it has no address-book entry), and
//! an accepted lane does not count against the per-IP cap once it is known
//! to be a lane. If a lane's handshake is read before the primary's extended
//! handshake on the accepting node (the workers run in parallel, so under
//! load this happens), the new connection is held back from the core as a
//! pending lane and decided by its own extended handshake: a lane if it
//! advertises the p2pe extension with more than one lane and there is room,
//! else closed, as is one with no extended handshake within
//! `SlotConfig::ext_handshake_wait`.

use crate::base::PeerId;
use crate::core::{slots, Time};
use crate::node::dispatch::Ctx;
use crate::rt::ConnId;
use crate::wire::peer::{negotiated_lanes, ExtendedHandshake, MAX_LANES};

use std::net::SocketAddr;

use super::super::peer::Phase;
use super::super::shared::PeerEntry;
use super::super::Command;
use super::NodeHandler;

/// Whether a new connection to the peer of `entry` is one of its lanes:
/// `new_out` is whether we dialled it, `lane_dialled` whether we dialled it
/// as a lane ([`NodeHandler::dial_lane`]). Lanes are dialled only by the
/// side that dialled the primary.
pub(super) fn admits_lane(entry: &PeerEntry, new_out: bool, lane_dialled: bool) -> bool {
    entry.lanes > 1
        && entry.extra + 1 < entry.lanes
        && entry.slot.outbound == new_out
        && (lane_dialled || !new_out)
}

/// Whether a new connection (`new_out`: we dialled it) to the peer of
/// `entry` may turn out to be a lane once its own extended handshake is read:
/// an inbound one while the inbound primary's lanes are not negotiated yet.
pub(super) fn may_be_lane(entry: &PeerEntry, new_out: bool) -> bool {
    !new_out && !entry.slot.outbound && !entry.negotiated && entry.extra + 1 < MAX_LANES
}

impl NodeHandler {
    /// Whether `conn` could carry a lane: we have several workers and its
    /// peer set the BEP 10 bit.
    pub(super) fn may_open_lanes(&self, conn: ConnId) -> bool {
        self.shared.workers > 1
            && self.conns.get(&conn).is_some_and(|pc| match &pc.phase {
                Phase::Open { theirs, .. } => theirs.supports_extended(),
                Phase::Handshake(_) => false,
            })
    }

    /// The extended handshake of `conn` arrived: if it is a pending lane,
    /// decide it (see the module docs). False: close `conn`.
    pub(super) fn resolve_pending_lane(
        &mut self,
        conn: ConnId,
        theirs: &ExtendedHandshake,
    ) -> bool {
        let Some(pc) = self.conns.get_mut(&conn) else {
            return true;
        };
        if !std::mem::take(&mut pc.lane_pending) {
            return true;
        }
        let Some(peer_id) = pc.peer_id else {
            return false;
        };
        let lanes = negotiated_lanes(&self.our_ext, theirs);
        {
            let mut ids = self
                .shared
                .peer_ids
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let Some(e) = ids.get_mut(&peer_id) else {
                return false;
            };
            let lanes = if e.negotiated {
                e.lanes.min(lanes)
            } else {
                lanes
            };
            if e.slot.outbound || lanes <= 1 || e.extra + 1 >= lanes {
                return false;
            }
            e.extra += 1;
        }
        self.take_lane(conn);
        true
    }

    /// Closes pending lanes whose extended handshake is overdue.
    pub(super) fn close_stale_lanes(&mut self, ctx: &mut Ctx, now: Time) {
        let config = &self.slot_config;
        let stale: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, pc)| {
                pc.lane_pending && slots::ext_handshake_overdue(config, now, &pc.activity)
            })
            .map(|(c, _)| *c)
            .collect();
        for conn in stale {
            ctx.close(conn);
        }
    }

    /// `conn`'s peer's extended handshake arrived: on a primary, record the
    /// negotiated lane count and, if we dialled it, ask `lanes - 1` other
    /// workers to open one lane each.
    pub(super) fn open_lanes(&mut self, ctx: &mut Ctx, conn: ConnId, theirs: &ExtendedHandshake) {
        let Some(pc) = self.conns.get(&conn) else {
            return;
        };
        let (Some(peer_id), false) = (pc.peer_id, pc.lane) else {
            return;
        };
        let lanes = negotiated_lanes(&self.our_ext, theirs).min(MAX_LANES);
        let outbound = pc.outbound();
        let addr = pc.listen_addr;
        {
            let mut ids = self
                .shared
                .peer_ids
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            match ids.get_mut(&peer_id) {
                Some(e) if e.slot.worker == self.worker && e.slot.conn == conn => {
                    e.lanes = lanes;
                    e.negotiated = true;
                }
                _ => return,
            }
        }
        let Some(addr) = addr.filter(|_| outbound && lanes > 1) else {
            return;
        };
        self.shared.log(format!(
            "{addr}: p2pe peer, opening {} more lane(s)",
            lanes - 1
        ));
        let others = (0..self.shared.workers).filter(|&w| w != self.worker);
        for w in others.take(usize::from(lanes - 1)) {
            // Full mailbox: one lane fewer, nothing else lost.
            let _ = self.post(ctx, w, Command::DialLane(addr, peer_id));
        }
    }

    /// Opens one lane to `addr` (the p2pe peer `peer_id`), unless this worker
    /// already has a connection to that peer or a lane dial to that address
    /// under way.
    pub(super) fn dial_lane(&mut self, ctx: &mut Ctx, addr: SocketAddr, peer_id: PeerId) {
        let busy = self
            .conns
            .values()
            .any(|c| c.peer_id == Some(peer_id) || (c.lane_dialled && c.listen_addr == Some(addr)));
        if busy {
            return;
        }
        let Ok(conn) = ctx.connect(addr) else {
            return;
        };
        self.new_conn(ctx, conn, None, addr);
        if let Some(pc) = self.conns.get_mut(&conn) {
            pc.lane_dialled = true;
            pc.listen_addr = Some(addr);
        }
    }

    /// `conn` was admitted as a lane of an existing peer: mark it, and let it
    /// stop counting against its IP's cap (a lane is part of one peer).
    pub(super) fn take_lane(&mut self, conn: ConnId) {
        let Some(pc) = self.conns.get_mut(&conn) else {
            return;
        };
        pc.lane = true;
        let ip = pc.remote.ip();
        if std::mem::take(&mut pc.ip_counted) {
            self.uncount_inbound(ip);
        }
    }
}
