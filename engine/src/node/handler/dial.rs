//! Outbound connections: driving the core's dial policy ([`crate::core::dialer`]:
//! the address book of peers to dial, configured, from trackers, DHT and PEX, with
//! its bounds, preference, back-off and aging; the connection bound; which of two
//! connections to one peer id stays). This module opens sockets and keeps the
//! node-wide registry of peer ids; the core decides.
//!
//! Invariants: every address has at most one book entry; peers from trackers, the
//! DHT and PEX are dialled only while fewer than `max_peers` connections are open
//! (due dials go out tracker ones before PEX ones) and are retired after
//! [`BookConfig::max_failures`](crate::core::address_book::BookConfig) failed
//! attempts in a row, then forgotten after its `retired_ttl`; configured peers are
//! redialled while the download is incomplete. A `ut_pex` message is read for at
//! most [`MAX_PEX_ADDED_PER_MESSAGE`] addresses. Every address belongs to one worker
//! ([`dial_owner`]): others forward it there, so the book of one address lives on
//! one worker; the bound counts connections of all workers. Two connections to one
//! peer id (on any workers) are resolved the same way on both ends: the one dialled
//! by the peer with the smaller id stays; the exception are the lanes two p2pe
//! nodes negotiated on it ([`super::lanes`]).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use crate::base::PeerId;
use crate::core::address_book::{Admission, EntryId};
use crate::core::dialer::{duplicate, Keep};
use crate::core::{PeerKey, Time};
use crate::node::dispatch::Ctx;
use crate::rt::ConnId;

use super::super::peer::{PeerConn, Source};
use super::super::shared::{dial_owner, PeerEntry, PeerSlot};
use super::super::Command;
use super::NodeHandler;

/// BEP 11: at most 50 `added` peers per `ut_pex` message; the rest are ignored (as
/// libtorrent does).
pub(super) const MAX_PEX_ADDED_PER_MESSAGE: usize = 50;

impl NodeHandler {
    pub(super) fn new_conn(
        &mut self,
        ctx: &mut Ctx,
        conn: ConnId,
        dial: Option<EntryId>,
        remote: SocketAddr,
    ) {
        let key = PeerKey(self.next_key());
        let mut pc = PeerConn::new(key, dial, remote, self.now());
        if let Some(e) = dial.and_then(|i| self.dialer.entry(i)) {
            pc.listen_addr = Some(e.addr);
        }
        let hs = self.ours.to_bytes().to_vec();
        pc.queued_total_bytes += hs.len() as u64;
        ctx.send(conn, hs);
        self.shared.open_conns.fetch_add(1, Ordering::AcqRel);
        self.conns.insert(conn, pc);
        self.keys.insert(key, conn);
    }

    /// Whether `addr` is where we listen ourselves (trackers hand it back).
    fn is_self(&self, addr: SocketAddr) -> bool {
        let port = self.shared.listen_port.load(Ordering::Acquire);
        addr.port() == port && (addr.ip().is_loopback() || addr.ip().is_unspecified())
    }

    /// Offers `addr` to the book and dials it if the bound allows; returns
    /// whether the address was new.
    pub(super) fn add_peer(&mut self, ctx: &mut Ctx, addr: SocketAddr, source: Source) -> bool {
        let owner = dial_owner(addr, self.shared.workers);
        if owner != self.worker {
            // A full mailbox drops the address; PEX repeats it.
            let _ = self.post(ctx, owner, Command::AddPeer(addr, source));
            return false;
        }
        let known = self.is_self(addr) || self.conns.values().any(|c| c.listen_addr == Some(addr));
        let admission = self.dialer.handle_addr(addr, source, known);
        self.dial_ready(ctx);
        matches!(admission, Admission::New(_))
    }

    /// Dials the peers the tracker and DHT threads found.
    pub(super) fn take_discovered(&mut self, ctx: &mut Ctx) {
        let found = self.shared.take_discovered(self.worker);
        let (mut tracker, mut dht) = (0u32, 0u32);
        for (addr, source) in found {
            if self.add_peer(ctx, addr, source) {
                match source {
                    Source::Dht => dht += 1,
                    _ => tracker += 1,
                }
            }
        }
        let s = &self.shared;
        if tracker > 0 {
            s.tracker_peers_learned.fetch_add(tracker, Ordering::AcqRel);
            s.log(format!("tracker: {tracker} new peer(s) to connect to"));
        }
        if dht > 0 {
            s.dht_peers_learned.fetch_add(dht, Ordering::AcqRel);
            s.log(format!("dht: {dht} new peer(s) to connect to"));
        }
    }

    /// Forgets aged-out entries, then redials every due entry (preferred sources
    /// first), discovered ones only below the bound.
    pub(super) fn dial_due(&mut self, ctx: &mut Ctx, now: Time) {
        self.dialer.handle_timeout(now);
        self.dial_ready(ctx);
    }

    /// Dials what the policy says, with the node's (all workers') connection count.
    fn dial_ready(&mut self, ctx: &mut Ctx) {
        let now = self.now();
        loop {
            let open = self.shared.open_conns.load(Ordering::Acquire);
            let Some((i, _)) = self.dialer.poll_dial(now, open) else {
                break;
            };
            self.dial(ctx, i);
        }
    }

    pub(super) fn dial(&mut self, ctx: &mut Ctx, i: EntryId) {
        let Some(addr) = self.dialer.entry(i).map(|e| e.addr) else {
            return;
        };
        match ctx.connect(addr) {
            Ok(conn) => {
                self.dialer.on_dialled(i);
                self.new_conn(ctx, conn, Some(i), addr);
            }
            Err(_) => self.schedule_redial(i),
        }
    }

    /// Entry `i`'s connection closed or its dial failed: redial it later, or
    /// retire it (see the book's policy).
    pub(super) fn schedule_redial(&mut self, i: EntryId) {
        let redial = !self.torrent.is_complete();
        let now = self.now();
        self.dialer.on_closed(now, i, redial);
    }

    /// A dial's connection completed its handshake: reset its back-off.
    pub(super) fn dial_succeeded(&mut self, dial: Option<EntryId>) {
        if let Some(i) = dial {
            self.dialer.on_handshake(i);
        }
    }

    /// Stops reconnecting to a dial's address.
    pub(super) fn retire_dial(&mut self, dial: Option<EntryId>) {
        if let Some(i) = dial {
            let now = self.now();
            self.dialer.retire(now, i);
        }
    }

    /// `conn` completed its handshake with `peer_id`. If another open
    /// connection (on any worker) has the same peer, closes the one the rule
    /// drops (see the module docs); returns false if that was `conn`.
    pub(super) fn keep_one_per_peer(
        &mut self,
        ctx: &mut Ctx,
        conn: ConnId,
        peer_id: PeerId,
    ) -> bool {
        let new_out = self.conns.get(&conn).is_some_and(PeerConn::outbound);
        let lane_dialled = self.conns.get(&conn).is_some_and(|c| c.lane_dialled);
        let mine = PeerSlot {
            worker: self.worker,
            conn,
            outbound: new_out,
        };
        let other = {
            let mut ids = self
                .shared
                .peer_ids
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let Some(entry) = ids.get_mut(&peer_id) else {
                if lane_dialled {
                    // The primary closed meanwhile (or another peer answered).
                    drop(ids);
                    ctx.close(conn);
                    return false;
                }
                ids.insert(peer_id, PeerEntry::new(mine));
                return true;
            };
            if super::lanes::admits_lane(entry, new_out, lane_dialled) {
                entry.extra += 1;
                drop(ids);
                self.take_lane(conn);
                return true;
            }
            if lane_dialled {
                drop(ids);
                ctx.close(conn);
                return false;
            }
            if super::lanes::may_be_lane(entry, new_out) && self.may_open_lanes(conn) {
                drop(ids);
                if let Some(pc) = self.conns.get_mut(&conn) {
                    pc.lane_pending = true;
                }
                return true;
            }
            let other = entry.slot;
            if duplicate(self.ours.peer_id, peer_id, new_out, other.outbound) == Keep::Existing {
                drop(ids);
                self.drop_conn(ctx, conn, Some(other));
                return false;
            }
            entry.slot = mine;
            entry.lanes = 1;
            entry.negotiated = false;
            other
        };
        if other.worker == self.worker {
            self.drop_conn(ctx, other.conn, Some(mine));
        } else {
            // The other worker closes its connection (and retires its dial).
            let msg = Command::ClosePeer(other.conn, peer_id);
            let _ = self.post(ctx, other.worker, msg);
        }
        true
    }

    /// Closes `dropped`, a second connection to a peer, and stops redialling
    /// it. With `kept` on this worker, the kept connection's peer is reachable
    /// at the dropped one's listen address too: remember it for PEX.
    pub(super) fn drop_conn(&mut self, ctx: &mut Ctx, dropped: ConnId, kept: Option<PeerSlot>) {
        if let Some(d) = self.conns.get(&dropped).and_then(|c| c.dial) {
            self.retire_dial(Some(d));
        }
        let addr = self.conns.get(&dropped).and_then(|c| c.listen_addr);
        let kept = kept.filter(|k| k.worker == self.worker).map(|k| k.conn);
        if let Some(kc) = kept.and_then(|k| self.conns.get_mut(&k)) {
            kc.listen_addr = kc.listen_addr.or(addr);
        }
        ctx.close(dropped);
    }

    /// `conn` to `peer_id` closed: forget it in the registry unless another
    /// connection has replaced it there; a closed lane (`lane`) frees its place.
    pub(super) fn forget_peer_id(&self, peer_id: PeerId, conn: ConnId, lane: bool) {
        let mut ids = self
            .shared
            .peer_ids
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let Some(entry) = ids.get_mut(&peer_id) else {
            return;
        };
        if entry.slot.worker == self.worker && entry.slot.conn == conn {
            ids.remove(&peer_id);
        } else if lane {
            entry.extra = entry.extra.saturating_sub(1);
        }
    }
}
