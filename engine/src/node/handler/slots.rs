//! The node side of the connection-slot policy ([`crate::core::slots`]):
//! inbound admission (per-IP cap, reclaiming an idle slot when the node is
//! full) and the periodic handshake / inactivity timeouts.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use crate::core::slots::{self, Expiry};
use crate::node::dispatch::Ctx;
use crate::rt::ConnId;

use super::NodeHandler;

impl NodeHandler {
    /// Whether an inbound connection from `peer` may take a slot. When the node
    /// is full, the oldest idle connection of this worker is closed to make room
    /// (the new peer is refused if there is none).
    /// On success the peer is counted against its IP's cap: call
    /// [`NodeHandler::uncount_inbound`] when it closes.
    pub(super) fn admit_inbound(&mut self, ctx: &mut Ctx, peer: SocketAddr) -> bool {
        let same_ip = |s: &Self| {
            let per_ip = s.shared.inbound_per_ip.lock();
            per_ip
                .unwrap_or_else(|e| e.into_inner())
                .get(&peer.ip())
                .copied()
                .unwrap_or(0)
        };
        // The cap first, so that a refused peer never costs another its slot.
        if !slots::ip_allows(&self.slot_config, peer.ip(), same_ip(self))
            || !self.admit_slot(ctx, peer)
        {
            return false;
        }
        let mut per_ip = self
            .shared
            .inbound_per_ip
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *per_ip.entry(peer.ip()).or_insert(0) += 1;
        true
    }

    /// An admitted inbound peer's connection closed: it no longer counts
    /// against its IP's cap.
    pub(super) fn uncount_inbound(&self, ip: std::net::IpAddr) {
        let mut per_ip = self
            .shared
            .inbound_per_ip
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = per_ip.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                per_ip.remove(&ip);
            }
        }
    }

    /// Whether the node has a slot for a new inbound peer, reclaiming one from
    /// the oldest idle connection of this worker when it is full.
    fn admit_slot(&mut self, ctx: &mut Ctx, peer: SocketAddr) -> bool {
        if self
            .dialer
            .below_bound(self.shared.open_conns.load(Ordering::Acquire))
        {
            return true;
        }
        self.refresh_interest();
        let now = self.now();
        let victim = slots::reclaim_victim(
            &self.slot_config,
            now,
            self.conns.iter().map(|(c, pc)| (*c, &pc.activity)),
        );
        let Some(victim) = victim else {
            return false;
        };
        if let Some(pc) = self.conns.get(&victim) {
            self.shared.log(format!(
                "{}: idle connection closed to make room for {peer}",
                pc.remote
            ));
        }
        ctx.close(victim);
        true
    }

    /// Copies the core's interest flags into each connection's activity.
    fn refresh_interest(&mut self) {
        for pc in self.conns.values_mut() {
            pc.activity.interested = pc.registered && self.torrent.is_engaged(pc.key);
        }
    }

    /// Closes connections past their handshake or inactivity timeout.
    pub(super) fn expire_slots(&mut self, ctx: &mut Ctx) {
        let now = self.now();
        let expired: Vec<(ConnId, Expiry)> = self
            .conns
            .iter()
            .filter_map(|(c, pc)| {
                slots::expired(&self.slot_config, now, &pc.activity).map(|e| (*c, e))
            })
            .collect();
        for (conn, why) in expired {
            if let Some(pc) = self.conns.get(&conn) {
                let what = match why {
                    Expiry::Handshake => "no handshake",
                    Expiry::Inactive => "nothing received",
                };
                self.shared
                    .log(format!("{}: closed ({what} within the timeout)", pc.remote));
            }
            ctx.close(conn);
        }
    }
}
