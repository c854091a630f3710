//! Peer exchange (BEP 11, `ut_pex`): telling each peer which peers we are
//! connected to, and dialling the peers others tell us about.
//!
//! The schedule and the added/dropped bookkeeping are the core's
//! ([`crate::core::pex`]); this module gathers our peer list (every worker
//! publishes its own on its tick, so a peer hears of all our connections),
//! encodes the messages and dials what others tell us. Private torrents
//! (BEP 27) neither advertise nor accept `ut_pex`.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use crate::core::pex::PexSchedule;
use crate::core::Time;
use crate::node::dispatch::Ctx;
use crate::rt::ConnId;
use crate::wire::peer::metadata::UT_METADATA;
use crate::wire::peer::{ExtendedHandshake, ExtendedMessage, Message};
use crate::wire::pex::{PexFlags, PexMessage};

use super::super::peer::Source;
use super::dial::MAX_PEX_ADDED_PER_MESSAGE;
use super::NodeHandler;

impl NodeHandler {
    /// Records what the peer's BEP 10 handshake tells: its `ut_pex` and
    /// `ut_metadata` ids, its
    /// listen port (for inbound peers), whether it is a p2pe node.
    pub(super) fn on_extended_handshake(&mut self, conn: ConnId, theirs: &ExtendedHandshake) {
        let pex_on = self.pex_interval;
        let now = self.now();
        let Some(pc) = self.conns.get_mut(&conn) else {
            return;
        };
        pc.is_p2pe = theirs.p2pe.is_some();
        if pc.listen_addr.is_none() {
            pc.listen_addr = theirs
                .p
                .filter(|&p| p != 0)
                .map(|p| SocketAddr::new(pc.remote.ip(), p));
        }
        // BEP 10: id 0 in `m` disables an extension.
        pc.pex_id = theirs.m.get("ut_pex").copied().filter(|&id| id != 0);
        pc.metadata_id = theirs.m.get(UT_METADATA).copied().filter(|&id| id != 0);
        // A lane's peer hears our PEX on its primary connection.
        if let (Some(interval), Some(_), false) = (pex_on, pc.pex_id, pc.lane) {
            pc.pex = Some(PexSchedule::new(now, interval, pc.is_p2pe));
        }
    }

    /// A `ut_pex` message arrived: dial its added peers (at most
    /// [`MAX_PEX_ADDED_PER_MESSAGE`] of them, bounded by the address book's PEX
    /// caps and the connection bound). False closes the connection (a malformed
    /// message).
    pub(super) fn on_pex(&mut self, ctx: &mut Ctx, conn: ConnId, payload: &[u8]) -> bool {
        let Ok(msg) = PexMessage::from_bencode(payload) else {
            return false;
        };
        let Some(from) = self.conns.get(&conn).map(|pc| pc.remote) else {
            return true;
        };
        let mut new = 0u32;
        for (addr, _flags) in msg.added.into_iter().take(MAX_PEX_ADDED_PER_MESSAGE) {
            if self.add_peer(ctx, addr, Source::Pex(from)) {
                new += 1;
            }
        }
        if new > 0 {
            self.shared
                .pex_peers_learned
                .fetch_add(new, Ordering::AcqRel);
            self.shared
                .log(format!("pex: {new} new peer(s) from {from}"));
        }
        true
    }

    /// Sends every due peer its `ut_pex` message.
    pub(super) fn pex_tick(&mut self, ctx: &mut Ctx, now: Time) {
        if self.pex_interval.is_none() {
            return;
        }
        let mine: Vec<(SocketAddr, PexFlags)> = self
            .conns
            .values()
            .filter(|pc| pc.registered)
            .filter_map(|pc| {
                let flags = if pc.outbound() {
                    PexFlags(PexFlags::REACHABLE)
                } else {
                    PexFlags(0)
                };
                pc.listen_addr.map(|a| (a, flags))
            })
            .collect();
        // Peers of every worker: a peer hears of all our connections.
        let mut current = self.shared.exchange_pex(self.worker, mine);
        current.sort_by_key(|(a, _)| *a);
        current.dedup_by_key(|(a, _)| *a);
        let current_set: HashSet<SocketAddr> = current.iter().map(|(a, _)| *a).collect();
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in conns {
            let Some(pc) = self.conns.get_mut(&conn) else {
                continue;
            };
            let (Some(id), Some(schedule), true) = (pc.pex_id, pc.pex.as_mut(), pc.registered)
            else {
                continue;
            };
            let Some(delta) = schedule.poll(now, pc.listen_addr, &current, &current_set) else {
                continue;
            };
            let payload = PexMessage {
                added: delta.added,
                dropped: delta.dropped,
            }
            .to_bencode();
            let msg = Message::Extended(ExtendedMessage::Other {
                id,
                payload: Bytes::from(payload),
            });
            let mut buf = Vec::new();
            if msg.encode(&mut buf).is_ok() {
                pc.queued_total_bytes += buf.len() as u64;
                ctx.send(conn, buf);
            }
        }
    }
}
