//! Outbound connections: the address book of peers to dial (configured,
//! from trackers, from PEX), back-off, the connection bound, and one
//! connection per peer.
//!
//! Invariants: every address has at most one [`Dial`] (`known` indexes
//! them); peers from trackers and PEX are dialled only while fewer than
//! `max_peers` connections are open and are given up after
//! [`DISCOVERED_MAX_FAILURES`] failed attempts in a row; configured peers are
//! redialled while the download is incomplete. Two connections to one peer id
//! are resolved the same way on both ends: the one dialled by the peer with
//! the smaller id stays.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::core::{PeerKey, PieceIndex, Torrent};
use crate::rt::{ConnId, Ctx};

use super::super::peer::{Dial, PeerConn, Source};
use super::NodeHandler;

/// Back-off bounds for reconnecting to a peer.
const DIAL_BACKOFF_MIN: Duration = Duration::from_millis(200);
const DIAL_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Failed attempts in a row after which a discovered address is dropped.
pub(super) const DISCOVERED_MAX_FAILURES: u32 = 3;
/// Most addresses in the book: a lying tracker or PEX peer cannot grow it
/// without bound (discovered addresses beyond it are ignored).
const MAX_KNOWN: usize = 2000;
/// How long a due dial waits when the connection bound is reached.
const FULL_RECHECK: Duration = Duration::from_secs(1);

/// BEP 3 `left`: bytes of the pieces not yet verified.
pub(crate) fn left_bytes(torrent: &Torrent, total_len_bytes: u64, piece_len_bytes: u32) -> u64 {
    let have = torrent.have();
    let n = have.len();
    let full = u64::from(piece_len_bytes);
    let mut got = 0u64;
    for i in 0..n {
        if have.get(PieceIndex(i)) {
            let start = u64::from(i) * full;
            got += full.min(total_len_bytes.saturating_sub(start));
        }
    }
    total_len_bytes.saturating_sub(got)
}

impl NodeHandler {
    pub(super) fn new_conn(
        &mut self,
        ctx: &mut Ctx,
        conn: ConnId,
        dial: Option<usize>,
        remote: SocketAddr,
    ) {
        let key = PeerKey(self.next_key());
        let mut pc = PeerConn::new(key, dial, remote);
        if let Some(d) = dial.and_then(|i| self.dials.get(i)) {
            pc.listen_addr = Some(d.addr);
        }
        let hs = self.ours.to_bytes().to_vec();
        pc.queued_total_bytes += hs.len() as u64;
        ctx.send(conn, hs);
        self.conns.insert(conn, pc);
        self.keys.insert(key, conn);
    }

    /// Whether `addr` is where we listen ourselves (trackers hand it back).
    fn is_self(&self, addr: SocketAddr) -> bool {
        let port = self.shared.listen_port.load(Ordering::Acquire);
        addr.port() == port && (addr.ip().is_loopback() || addr.ip().is_unspecified())
    }

    /// Adds `addr` to the book and dials it if the bound allows; returns
    /// whether the address was new.
    pub(super) fn add_peer(&mut self, ctx: &mut Ctx, addr: SocketAddr, source: Source) -> bool {
        if let Some(&i) = self.known.get(&addr) {
            if source == Source::Configured {
                if let Some(d) = self.dials.get_mut(i) {
                    // An explicit request revives a retired or discovered entry.
                    d.source = Source::Configured;
                    d.retired = false;
                    d.failures = 0;
                    if !d.connected {
                        self.dial(ctx, i);
                    }
                }
            }
            return false;
        }
        if source != Source::Configured
            && (self.is_self(addr)
                || addr.port() == 0
                || self.known.len() >= MAX_KNOWN
                || self.conns.values().any(|c| c.listen_addr == Some(addr)))
        {
            return false;
        }
        self.dials.push(Dial {
            addr,
            source,
            connected: false,
            retry_at: None,
            failures: 0,
            retired: false,
        });
        let i = self.dials.len() - 1;
        self.known.insert(addr, i);
        if source == Source::Configured || self.conns.len() < self.max_peers {
            self.dial(ctx, i);
        } else {
            self.dials[i].retry_at = Some(Instant::now() + FULL_RECHECK);
        }
        true
    }

    /// Dials the peers the tracker and DHT threads found.
    pub(super) fn take_discovered(&mut self, ctx: &mut Ctx) {
        let found: Vec<(SocketAddr, Source)> = {
            let mut q = self
                .shared
                .discovered
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            std::mem::take(&mut *q)
        };
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

    /// Redials every due entry, discovered ones only below the bound.
    pub(super) fn dial_due(&mut self, ctx: &mut Ctx, now: Instant) {
        let due: Vec<usize> = (0..self.dials.len())
            .filter(|&i| self.dials[i].retry_at.is_some_and(|at| at <= now))
            .collect();
        for i in due {
            let configured = self.dials[i].source == Source::Configured;
            if configured || self.conns.len() < self.max_peers {
                self.dial(ctx, i);
            } else {
                self.dials[i].retry_at = Some(now + FULL_RECHECK);
            }
        }
    }

    pub(super) fn dial(&mut self, ctx: &mut Ctx, i: usize) {
        let Some(d) = self.dials.get_mut(i) else {
            return;
        };
        d.retry_at = None;
        let addr = d.addr;
        match ctx.connect(addr) {
            Ok(conn) => {
                d.connected = true;
                self.new_conn(ctx, conn, Some(i), addr);
            }
            Err(_) => self.schedule_redial(i),
        }
    }

    pub(super) fn schedule_redial(&mut self, i: usize) {
        let complete = self.torrent.is_complete();
        let Some(d) = self.dials.get_mut(i) else {
            return;
        };
        d.connected = false;
        if d.retired || complete {
            return;
        }
        d.failures = d.failures.saturating_add(1);
        if d.source != Source::Configured && d.failures >= DISCOVERED_MAX_FAILURES {
            d.retired = true;
            return;
        }
        let backoff = DIAL_BACKOFF_MIN
            .saturating_mul(1 << d.failures.min(6))
            .min(DIAL_BACKOFF_MAX);
        d.retry_at = Some(Instant::now() + backoff);
    }

    /// A dial's connection completed its handshake: reset its back-off.
    pub(super) fn dial_succeeded(&mut self, dial: Option<usize>) {
        if let Some(d) = dial.and_then(|i| self.dials.get_mut(i)) {
            d.failures = 0;
        }
    }

    /// Stops reconnecting to a dial's address.
    pub(super) fn retire_dial(&mut self, dial: Option<usize>) {
        if let Some(d) = dial.and_then(|i| self.dials.get_mut(i)) {
            d.retired = true;
        }
    }

    /// `conn` completed its handshake with `peer_id`. If another open
    /// connection has the same peer, closes the one the rule drops (see the
    /// module docs); returns false if that was `conn`.
    pub(super) fn keep_one_per_peer(
        &mut self,
        ctx: &mut Ctx,
        conn: ConnId,
        peer_id: [u8; 20],
    ) -> bool {
        let Some(&other) = self.peer_ids.get(&peer_id) else {
            self.peer_ids.insert(peer_id, conn);
            return true;
        };
        let out = |c: ConnId| self.conns.get(&c).is_some_and(PeerConn::outbound);
        let (new_out, old_out) = (out(conn), out(other));
        let drop_new = if new_out == old_out {
            true
        } else {
            // Keep the connection dialled by the smaller peer id.
            let we_are_smaller = self.ours.peer_id < peer_id;
            let keep_out = we_are_smaller;
            new_out != keep_out
        };
        let (dropped, kept) = if drop_new {
            (conn, other)
        } else {
            (other, conn)
        };
        if let Some(d) = self.conns.get(&dropped).and_then(|c| c.dial) {
            self.retire_dial(Some(d));
        }
        // The kept connection's peer is reachable at the dropped one's
        // listen address too: remember it for PEX.
        let addr = self.conns.get(&dropped).and_then(|c| c.listen_addr);
        if let Some(kc) = self.conns.get_mut(&kept) {
            kc.listen_addr = kc.listen_addr.or(addr);
        }
        self.peer_ids.insert(peer_id, kept);
        ctx.close(dropped);
        !drop_new
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Bitfield, TorrentConfig};

    #[test]
    fn left_counts_the_short_last_piece() {
        // 100,000 bytes in 16 KiB pieces: 6 full pieces and 1,696 bytes.
        let tc = TorrentConfig::new(100_000, 16_384);
        let mut have = Bitfield::new(tc.piece_count);
        assert_eq!(
            left_bytes(&Torrent::new(tc.clone(), have.clone(), 1), 100_000, 16_384),
            100_000
        );
        have.set(PieceIndex(6));
        have.set(PieceIndex(0));
        let t = Torrent::new(tc, have, 1);
        assert_eq!(left_bytes(&t, 100_000, 16_384), 100_000 - 1_696 - 16_384);
    }
}
