//! Peer exchange (BEP 11, `ut_pex`): telling each peer which peers we are
//! connected to, and dialling the peers others tell us about.
//!
//! Each peer that advertised `ut_pex` in its BEP 10 handshake gets, every
//! interval, the listen addresses of our connected peers (on every worker:
//! each publishes its list on its tick) it has not been told
//! about (`added`, at most [`MAX_ADDED_PER_MESSAGE`], the rest next time) and
//! those it was told about that are gone (`dropped`). Between p2pe nodes the
//! interval is the node's `pex_interval` (2 s in the datacenter profile);
//! with other clients it is BEP 11's one minute (libtorrent disconnects peers
//! that send PEX more often). Private torrents (BEP 27) neither advertise nor
//! accept `ut_pex`.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;

use crate::rt::{ConnId, Ctx};
use crate::wire::peer::{ExtendedHandshake, ExtendedMessage, Message};
use crate::wire::pex::{PexFlags, PexMessage};

use super::super::peer::{PeerConn, Source};
use super::super::PEX_INTERVAL;
use super::dial::MAX_PEX_ADDED_PER_MESSAGE;
use super::NodeHandler;

/// BEP 11: "at most 50 added peers" per message.
const MAX_ADDED_PER_MESSAGE: usize = 50;

impl NodeHandler {
    /// Records what the peer's BEP 10 handshake tells: its `ut_pex` id, its
    /// listen port (for inbound peers), whether it is a p2pe node.
    pub(super) fn on_extended_handshake(&mut self, conn: ConnId, theirs: &ExtendedHandshake) {
        let pex_on = self.pex_interval;
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
        if let (Some(interval), Some(_)) = (pex_on, pc.pex_id) {
            let every = if pc.is_p2pe { interval } else { PEX_INTERVAL };
            pc.next_pex_at = Some(Instant::now() + every);
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
    pub(super) fn pex_tick(&mut self, ctx: &mut Ctx, now: Instant) {
        let Some(interval) = self.pex_interval else {
            return;
        };
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
        let due: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, pc)| pc.registered && pc.next_pex_at.is_some_and(|t| t <= now))
            .map(|(c, _)| *c)
            .collect();
        for conn in due {
            let Some(pc) = self.conns.get_mut(&conn) else {
                continue;
            };
            let every = if pc.is_p2pe { interval } else { PEX_INTERVAL };
            pc.next_pex_at = Some(now + every);
            let Some(id) = pc.pex_id else { continue };
            let Some(payload) = next_message(pc, &current, &current_set) else {
                continue;
            };
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

/// The `ut_pex` message `pc` is due (`None`: nothing changed for it), and
/// records what it has now been told.
fn next_message(
    pc: &mut PeerConn,
    current: &[(SocketAddr, PexFlags)],
    current_set: &HashSet<SocketAddr>,
) -> Option<Vec<u8>> {
    let added: Vec<(SocketAddr, PexFlags)> = current
        .iter()
        .filter(|(a, _)| Some(*a) != pc.listen_addr && !pc.pex_sent.contains(a))
        .take(MAX_ADDED_PER_MESSAGE)
        .copied()
        .collect();
    let dropped: Vec<SocketAddr> = pc
        .pex_sent
        .iter()
        .filter(|a| !current_set.contains(a))
        .take(MAX_ADDED_PER_MESSAGE)
        .copied()
        .collect();
    if added.is_empty() && dropped.is_empty() {
        return None;
    }
    for (a, _) in &added {
        pc.pex_sent.insert(*a);
    }
    for a in &dropped {
        pc.pex_sent.remove(a);
    }
    Some(PexMessage { added, dropped }.to_bencode())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::PeerKey;

    fn addr(i: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], 1000 + i))
    }

    #[test]
    fn at_most_50_added_then_the_rest_then_dropped() {
        let mut pc = PeerConn::new(PeerKey(1), None, addr(0), crate::core::Time::ZERO);
        pc.listen_addr = Some(addr(0));
        // 70 peers plus the recipient itself, which is never advertised to itself.
        let current: Vec<_> = (0..=70).map(|i| (addr(i), PexFlags(0))).collect();
        let set: HashSet<_> = current.iter().map(|(a, _)| *a).collect();
        let first = PexMessage::from_bencode(&next_message(&mut pc, &current, &set).unwrap());
        assert_eq!(first.unwrap().added.len(), MAX_ADDED_PER_MESSAGE);
        let second = PexMessage::from_bencode(&next_message(&mut pc, &current, &set).unwrap());
        assert_eq!(second.unwrap().added.len(), 20);
        assert!(
            next_message(&mut pc, &current, &set).is_none(),
            "nothing new"
        );
        let fewer = &current[..60];
        let set: HashSet<_> = fewer.iter().map(|(a, _)| *a).collect();
        let third = PexMessage::from_bencode(&next_message(&mut pc, fewer, &set).unwrap());
        let third = third.unwrap();
        assert!(third.added.is_empty());
        assert_eq!(third.dropped.len(), 11);
        assert!(!pc.pex_sent.contains(&addr(0)));
    }
}
