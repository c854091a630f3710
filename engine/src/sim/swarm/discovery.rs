//! Tracker discovery ([`crate::sim::Discovery::Tracker`]): peers find each other as p2pe
//! nodes do, through the core's dial policy and address book ([`crate::core::dialer`]), a
//! tracker and PEX ([`crate::core::pex`]), instead of starting connected.
//!
//! Model (tunables in [`crate::sim::DiscoveryConfig`]):
//! - Node `n` listens at `198.18.x.y:6881` with `x.y` = `n` (198.18.0.0/15, so fewer than
//!   [`MAX_TRACKER_NODES`] nodes); its peer id ends in `n`, big-endian.
//! - Every peer has the origin as a configured address (a fleet's nodes are given their
//!   origin), so it dials the origin at once, beyond its bound, and redials it with
//!   back-off while incomplete. The origin accepts every peer (it is sized for the fleet,
//!   as in the connected-at-start runs) and never announces or dials.
//! - A peer announces when it joins, every `announce_interval`, and after half of that
//!   while incomplete with fewer than a quarter of `max_peers` connections
//!   ([`crate::core::dialer::wants_more_peers`], the node's policy). The answer comes one
//!   round trip later: up to `numwant` random announced peers, itself excluded. A leaver
//!   sends `stopped` (the tracker forgets it); a frozen peer stays listed.
//! - A dial reaches its peer one latency after it leaves and opens the connection there
//!   and then (both cores learn of it at once, as after the handshakes). It fails if the
//!   peer left (refused at once) or froze (the connection opens, no handshake ever
//!   comes: it holds the dialler's slot until the node's handshake timeout,
//!   [`crate::core::slots`]), or when the peer has `max_peers` connections and none of
//!   them is idle (otherwise, as in the node, its oldest idle connection is closed to
//!   make room); the dialler's book then backs off or retires the entry. A dial
//!   to a peer already connected resolves with [`crate::core::dialer::duplicate`].
//! - Dials in progress count toward the dialler's bound, as the node counts a socket from
//!   `connect`. A closed connection's dialler redials it with back-off while incomplete;
//!   one its core dropped (ban, both seeders) is retired, as in the node.
//! - Connected peers send each other `ut_pex` messages on their [`PexSchedule`]s; a
//!   message arrives one latency later, ahead of any data queued on the connection.
//!
//! Bounds: a node's book is the core's (2,000 addresses); its PEX schedules and peer map
//! hold one entry per open connection; the tracker lists present peers only (frozen ones
//! included); a PEX event holds at most 50 addresses.

use std::collections::{BTreeMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use rand::RngExt;

use crate::base::PeerId;
use crate::core::address_book::{Admission, BookConfig, EntryId, Source};
use crate::core::dialer::{duplicate, wants_more_peers, DialConfig, Dialer, Keep};
use crate::core::pex::{PexSchedule, MAX_ADDED_PER_MESSAGE};
use crate::core::slots::{self, ConnActivity};
use crate::core::{PeerKey, Time};
use crate::sim::Discovery;

use super::{Event, Swarm, NEVER};

/// Nodes tracker discovery can address (198.18.0.0/15).
pub(crate) const MAX_TRACKER_NODES: u32 = 1 << 17;

/// The port every simulated node listens on.
const PORT: u16 = 6881;

/// Where node `n` listens.
pub(super) fn addr_of(node: u32) -> SocketAddr {
    let ip = Ipv4Addr::from(0xC612_0000 | (node & (MAX_TRACKER_NODES - 1)));
    SocketAddr::V4(SocketAddrV4::new(ip, PORT))
}

/// The node listening at `addr`, if any.
fn node_of(addr: SocketAddr) -> Option<u32> {
    let SocketAddr::V4(a) = addr else {
        return None;
    };
    let ip = u32::from(*a.ip());
    (a.port() == PORT && ip & !(MAX_TRACKER_NODES - 1) == 0xC612_0000)
        .then_some(ip & (MAX_TRACKER_NODES - 1))
}

/// Node `n`'s peer id.
fn peer_id_of(node: u32) -> PeerId {
    let mut id = [0u8; PeerId::LEN_BYTES];
    id[PeerId::LEN_BYTES - 4..].copy_from_slice(&node.to_be_bytes());
    PeerId(id)
}

/// One node's discovery state.
#[derive(Debug)]
pub(super) struct Disc {
    dialer: Dialer,
    /// PEX schedule per open connection (by connection id).
    pex: BTreeMap<u32, PexSchedule>,
    /// Open connections by the node at their other end.
    peers: BTreeMap<u32, u32>,
    /// Dials in flight.
    dialling: usize,
    /// When the next announce goes out (`NEVER`: one is in flight, or the origin).
    next_announce: Time,
    last_announce: Time,
    timer_at: Time,
    timer_version: u32,
}

/// What the discovery counters add up to, for the report.
#[derive(Debug, Default)]
pub(super) struct DiscCounters {
    pub dials: u64,
    pub connections_made: u64,
    pub failed_dials: u64,
    pub refused_dials: u64,
    pub timed_out_dials: u64,
    pub reclaimed_slots: u64,
    pub joiner_connections: u64,
    pub pex_learned: u64,
    pub tracker_learned: u64,
    pub announces: u64,
}

impl Swarm<'_> {
    /// Whether this run uses tracker discovery.
    pub(super) fn tracker_mode(&self) -> bool {
        self.config.discovery == Discovery::Tracker
    }

    fn disc_mut(&mut self, node: u32) -> Option<&mut Disc> {
        self.nodes.get_mut(node as usize)?.disc.as_deref_mut()
    }

    /// Node `node`'s connections for its bound: open ones and dials in flight.
    fn open_of(&self, node: u32) -> usize {
        let n = &self.nodes[node as usize];
        n.open as usize + n.disc.as_ref().map_or(0, |d| d.dialling)
    }

    /// `node` joins at `now` (tracker discovery): it gets the origin as a configured
    /// address and announces (the origin only listens).
    pub(super) fn tracker_join(&mut self, now: Time, node: u32) {
        let c = self.config.discovery_config;
        let dial = DialConfig {
            max_peers: c.max_peers as usize,
            ..DialConfig::default()
        };
        let mut disc = Disc {
            dialer: Dialer::new(dial, BookConfig::default()),
            pex: BTreeMap::new(),
            peers: BTreeMap::new(),
            dialling: 0,
            next_announce: NEVER,
            last_announce: now,
            timer_at: NEVER,
            timer_version: 0,
        };
        if node != 0 {
            disc.dialer
                .handle_addr(addr_of(0), Source::Configured, false);
            self.queue
                .push(now + self.config.latency * 2, Event::Announce { node });
        }
        self.nodes[node as usize].disc = Some(Box::new(disc));
        self.dial_ready(now, node);
        self.arm_disc(now, node);
    }

    /// The tracker's answer to `node`'s announce arrives.
    pub(super) fn on_announce(&mut self, now: Time, node: u32) {
        let n = &self.nodes[node as usize];
        if !n.present || n.frozen || n.disc.is_none() {
            return;
        }
        self.disc_counters.announces += 1;
        if !self.tracker.contains(&node) {
            self.tracker.push(node);
        }
        let want = self.config.discovery_config.numwant as usize;
        let others = self.tracker.len() - 1;
        let mut picked: Vec<u32> = Vec::with_capacity(want.min(others));
        if others <= want {
            picked.extend(self.tracker.iter().copied().filter(|&q| q != node));
        } else {
            let mut seen = HashSet::with_capacity(want);
            while picked.len() < want {
                let q = self.tracker[self.tracker_rng.random_range(0..self.tracker.len())];
                if q != node && seen.insert(q) {
                    picked.push(q);
                }
            }
        }
        let interval = self.config.discovery_config.announce_interval;
        let Some(d) = self.disc_mut(node) else {
            return;
        };
        d.last_announce = now;
        d.next_announce = now + interval;
        let mut new = 0;
        for q in picked {
            let known = d.peers.contains_key(&q);
            if let Admission::New(_) = d.dialer.handle_addr(addr_of(q), Source::Tracker, known) {
                new += 1;
            }
        }
        self.disc_counters.tracker_learned += new;
        self.dial_ready(now, node);
        self.arm_disc(now, node);
    }

    /// Hands out what `node`'s dial policy says to dial now.
    fn dial_ready(&mut self, now: Time, node: u32) {
        let latency = self.config.latency;
        loop {
            let open = self.open_of(node);
            let Some(d) = self.disc_mut(node) else {
                return;
            };
            let Some((entry, addr)) = d.dialer.poll_dial(now, open) else {
                return;
            };
            match node_of(addr).filter(|&to| to != node) {
                Some(to) => {
                    d.dialling += 1;
                    self.disc_counters.dials += 1;
                    self.queue.push(
                        now + latency,
                        Event::Dial {
                            from: node,
                            to,
                            entry,
                        },
                    );
                }
                None => d.dialer.retire(now, entry),
            }
        }
    }

    /// `from`'s dial of its book entry `entry` reaches `to`.
    pub(super) fn on_dial(&mut self, now: Time, from: u32, to: u32, entry: EntryId) {
        let Some(d) = self.disc_mut(from) else {
            return; // the dialler left
        };
        d.dialling = d.dialling.saturating_sub(1);
        if self.nodes[from as usize].frozen {
            return;
        }
        let max_peers = self.config.discovery_config.max_peers as usize;
        let t = &self.nodes[to as usize];
        if t.present && t.frozen {
            // The kernel accepts, no handshake comes: the dial holds its slot until
            // the slot policy's handshake timeout closes it.
            if let Some(d) = self.disc_mut(from) {
                d.dialling += 1;
            }
            let timeout = self.config.discovery_config.slots.handshake_timeout;
            self.queue
                .push(now + timeout, Event::DialTimeout { from, entry });
            return;
        }
        let gone = !t.present || t.disc.is_none();
        let mut full = !gone && to != 0 && self.open_of(to) >= max_peers;
        if full {
            // The node's inbound rule: the oldest idle connection gives its slot up.
            if let Some(victim) = self.reclaim_victim(now, to) {
                self.disc_counters.reclaimed_slots += 1;
                self.close_conn_with(now, victim, false);
                full = false;
            }
        }
        if gone || full {
            if gone {
                self.disc_counters.failed_dials += 1;
            } else {
                self.disc_counters.refused_dials += 1;
            }
            self.dial_failed(now, from, entry);
            return;
        }
        let existing = self.nodes[from as usize]
            .disc
            .as_ref()
            .and_then(|d| d.peers.get(&to).copied());
        if let Some(old) = existing {
            let existing_out = self.conns[old as usize]
                .dialler
                .is_some_and(|(n, _)| n == from);
            match duplicate(peer_id_of(from), peer_id_of(to), true, existing_out) {
                Keep::Existing => {
                    // Opened, then dropped after the handshake: never dialled again.
                    if let Some(d) = self.disc_mut(from) {
                        d.dialer.on_dialled(entry);
                        d.dialer.retire(now, entry);
                        d.dialer.on_closed(now, entry, false);
                    }
                    self.after_change(now, from);
                    return;
                }
                Keep::New => self.close_conn_with(now, old, true),
            }
        }
        let id = self.connect(now, from, to);
        self.conns[id as usize].dialler = Some((from, entry));
        self.disc_counters.connections_made += 1;
        let late = |n: u32| n > self.config.peers;
        if from != 0 && to != 0 && (late(from) || late(to)) {
            self.disc_counters.joiner_connections += 1;
        }
        if let Some(d) = self.disc_mut(from) {
            d.dialer.on_dialled(entry);
            d.dialer.on_handshake(entry);
        }
        self.after_change(now, from);
        self.arm_disc(now, to);
    }

    /// `from`'s dial of `entry` reached a frozen peer and timed out without a handshake.
    pub(super) fn on_dial_timeout(&mut self, now: Time, from: u32, entry: EntryId) {
        if self.nodes[from as usize].frozen {
            return;
        }
        let Some(d) = self.disc_mut(from) else {
            return; // the dialler left
        };
        d.dialling = d.dialling.saturating_sub(1);
        self.disc_counters.failed_dials += 1;
        self.disc_counters.timed_out_dials += 1;
        self.dial_failed(now, from, entry);
    }

    /// The connection of `node` whose slot a new inbound peer may take: the oldest idle
    /// one by the node's slot policy ([`slots::reclaim_victim`]; the simulator models
    /// neither silence nor half-open handshakes, so idle means no payload either way and
    /// no interest either way, past the grace period).
    fn reclaim_victim(&self, now: Time, node: u32) -> Option<u32> {
        let n = &self.nodes[node as usize];
        let torrent = n.torrent.as_ref()?;
        let activities: Vec<(u32, ConnActivity)> = n
            .conns
            .iter()
            .filter_map(|&id| {
                let c = &self.conns[id as usize];
                let out = c.out_dir(id, node).filter(|_| c.open)?;
                let inbound = out ^ 1;
                Some((
                    id,
                    ConnActivity {
                        opened_at: c.opened_at,
                        handshake_at: Some(c.opened_at),
                        last_recv_at: now,
                        down_payload_bytes: self.dirs[inbound as usize].sent_bytes,
                        up_payload_bytes: self.dirs[out as usize].sent_bytes,
                        interested: torrent.is_engaged(PeerKey(u64::from(id))),
                    },
                ))
            })
            .collect();
        let config = &self.config.discovery_config.slots;
        slots::reclaim_victim(config, now, activities.iter().map(|(k, a)| (*k, a)))
    }

    /// `from`'s dial of `entry` failed: back off or retire, maybe announce again.
    fn dial_failed(&mut self, now: Time, from: u32, entry: EntryId) {
        let redial = !self.is_complete(from);
        if let Some(d) = self.disc_mut(from) {
            d.dialer.on_closed(now, entry, redial);
        }
        self.starving_check(now, from);
        self.after_change(now, from);
    }

    fn is_complete(&self, node: u32) -> bool {
        self.nodes[node as usize]
            .torrent
            .as_ref()
            .is_none_or(|t| t.is_complete())
    }

    /// Dials what is due and re-arms the discovery timer of `node`.
    fn after_change(&mut self, now: Time, node: u32) {
        self.dial_ready(now, node);
        self.arm_disc(now, node);
    }

    /// With few connections ([`wants_more_peers`], the node's policy too), the next
    /// announce comes after the tracker's `min interval` (half the interval) rather
    /// than the whole interval.
    fn starving_check(&mut self, now: Time, node: u32) {
        if node == 0 {
            return;
        }
        let c = self.config.discovery_config;
        let complete = self.is_complete(node);
        let starving = wants_more_peers(self.open_of(node), c.max_peers as usize, complete);
        if let Some(d) = self.disc_mut(node).filter(|_| starving) {
            if d.next_announce != NEVER {
                let soon = (d.last_announce + c.announce_interval / 2).max(now);
                d.next_announce = d.next_announce.min(soon);
            }
        }
    }

    /// Connection `id` between `a` and `b` opened (both present).
    pub(super) fn disc_on_connect(&mut self, now: Time, id: u32, a: u32, b: u32) {
        let interval = self.config.discovery_config.pex_interval;
        for (x, y) in [(a, b), (b, a)] {
            if let Some(d) = self.disc_mut(x) {
                d.peers.insert(y, id);
                d.pex.insert(id, PexSchedule::new(now, interval, true));
            }
        }
    }

    /// Connection `id` between `a` and `b` closed; its dialler redials it with
    /// back-off while incomplete (`retire`: never again).
    pub(super) fn disc_on_close(&mut self, now: Time, id: u32, retire: bool) {
        let conn = &self.conns[id as usize];
        let (a, b, dialler) = (conn.a, conn.b, conn.dialler);
        for (x, y) in [(a, b), (b, a)] {
            if let Some(d) = self.disc_mut(x) {
                if d.peers.get(&y) == Some(&id) {
                    d.peers.remove(&y);
                }
                d.pex.remove(&id);
            }
        }
        let Some((x, entry)) = dialler else {
            return;
        };
        if !self.nodes[x as usize].present {
            return;
        }
        let redial = !self.is_complete(x);
        if let Some(d) = self.disc_mut(x) {
            if retire {
                d.dialer.retire(now, entry);
            }
            d.dialer.on_closed(now, entry, redial);
        }
        self.starving_check(now, x);
        self.after_change(now, x);
    }

    /// The discovery timer of `node` fired: dials due, PEX, announce.
    pub(super) fn on_disc_timer(&mut self, now: Time, node: u32, version: u32) {
        let n = &self.nodes[node as usize];
        if !n.present || n.frozen {
            return;
        }
        let latency = self.config.latency;
        let Some(d) = self.disc_mut(node) else {
            return;
        };
        if d.timer_version != version {
            return;
        }
        d.timer_at = NEVER;
        d.dialer.handle_timeout(now);
        let announce = d.next_announce <= now;
        if announce {
            d.next_announce = NEVER;
        }
        if announce {
            self.queue.push(now + latency * 2, Event::Announce { node });
        }
        self.pex_tick(now, node);
        self.after_change(now, node);
    }

    /// Sends `node`'s due `ut_pex` messages.
    fn pex_tick(&mut self, now: Time, node: u32) {
        let latency = self.config.latency;
        let Some(d) = self.nodes[node as usize].disc.as_deref_mut() else {
            return;
        };
        // Node ids in order: addresses in order (as `PexSchedule::poll` wants).
        let current: Vec<(SocketAddr, ())> = d.peers.keys().map(|&q| (addr_of(q), ())).collect();
        let set: HashSet<SocketAddr> = current.iter().map(|(a, _)| *a).collect();
        let mut out = Vec::new();
        for (&conn, schedule) in &mut d.pex {
            let c = &self.conns[conn as usize];
            let to = if c.a == node { c.b } else { c.a };
            if let Some(delta) = schedule.poll(now, Some(addr_of(to)), &current, &set) {
                if !delta.added.is_empty() {
                    let added: Vec<SocketAddr> = delta.added.into_iter().map(|(a, ())| a).collect();
                    out.push((to, conn, added));
                }
            }
        }
        for (to, conn, added) in out {
            let from = node;
            self.queue.push(
                now + latency,
                Event::Pex {
                    from,
                    to,
                    conn,
                    added,
                },
            );
        }
    }

    /// A `ut_pex` message from `from` arrives at `to` over connection `conn`.
    pub(super) fn on_pex(
        &mut self,
        now: Time,
        from: u32,
        to: u32,
        conn: u32,
        added: &[SocketAddr],
    ) {
        let n = &self.nodes[to as usize];
        if !self.conns[conn as usize].open || !n.present || n.frozen {
            return;
        }
        let Some(d) = self.disc_mut(to) else {
            return;
        };
        let mut new = 0;
        for &addr in added.iter().take(MAX_ADDED_PER_MESSAGE) {
            let known = node_of(addr).is_some_and(|q| q == to || d.peers.contains_key(&q));
            let admitted = d
                .dialer
                .handle_addr(addr, Source::Pex(addr_of(from)), known);
            if let Admission::New(_) = admitted {
                new += 1;
            }
        }
        self.disc_counters.pex_learned += new;
        self.after_change(now, to);
    }

    /// Arms `node`'s discovery timer at its earliest deadline (dial, PEX, announce).
    fn arm_disc(&mut self, now: Time, node: u32) {
        let Some(d) = self.disc_mut(node) else {
            return;
        };
        let pex = d.pex.values().map(PexSchedule::next_at).min();
        let at = [d.dialer.poll_timeout(), pex, Some(d.next_announce)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(NEVER);
        if at == NEVER {
            return;
        }
        let at = at.max(now + std::time::Duration::from_nanos(1));
        if at < d.timer_at {
            d.timer_at = at;
            d.timer_version = d.timer_version.wrapping_add(1);
            let version = d.timer_version;
            self.queue.push(at, Event::DiscTimer { node, version });
        }
    }

    /// `node` leaves (tracker discovery): the tracker forgets it (`stopped`).
    pub(super) fn tracker_leave(&mut self, node: u32) {
        if let Some(pos) = self.tracker.iter().position(|&p| p == node) {
            self.tracker.swap_remove(pos);
        }
    }

    /// Forgets `node`'s discovery state (it left; its connections are closed).
    pub(super) fn drop_disc(&mut self, node: u32) {
        self.nodes[node as usize].disc = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_peer_ids_round_trip_in_order() {
        for n in [0, 1, 255, 256, 70_000, MAX_TRACKER_NODES - 1] {
            assert_eq!(node_of(addr_of(n)), Some(n));
        }
        assert!(addr_of(3) < addr_of(256) && peer_id_of(3) < peer_id_of(256));
        assert_eq!(node_of(SocketAddr::from(([198, 18, 0, 1], 80))), None);
        assert_eq!(node_of(SocketAddr::from(([10, 0, 0, 1], PORT))), None);
    }
}
