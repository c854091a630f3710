//! One torrent's peers, indexed so a hand-out costs O(numwant), not O(swarm).
//!
//! # Layout
//!
//! - `v4` and `v6`, each `hot[class]` and `cold[class]`: every peer, by
//!   family and [`Class`] (seeder, near-complete leecher, other leecher),
//!   unordered (removal is a swap-remove). `hot` holds what a hand-out reads
//!   (the address and group: 8 bytes for IPv4, 20 for IPv6), `cold` the rest
//!   (`left`, expiry), at the same positions: a hand-out of 50 IPv4 peers
//!   streams through 400 bytes, where 56-byte entries took 2.8 KiB.
//! - `index`: address → [`Loc`] (its class, its position in `hot[class]`
//!   and in its group's list).
//! - `groups`: a peer with rack/zone labels also sits, by class, in the
//!   group of its (rack, zone) pair, so a labelled announcer reaches its
//!   rack and zone without ranking the swarm. At most [`MAX_GROUPS`] groups;
//!   a peer with a new pair past that is kept without a group (handed out as
//!   "the rest").
//!
//! # Invariants
//!
//! - `hot[c].len() == cold[c].len()` for every class `c` of each family.
//! - For every key `a` of `index`: `hot[loc.class][loc.pos]` of `a`'s family
//!   holds `a`, and
//!   when that peer has a group `g`: `groups[g].lists[loc.class][loc.gpos] == a`.
//! - Every listed peer is in `index`; every group in `group_ids` is non-empty.
//! - A leecher is [`Class::Near`] iff `left_bytes <= near_left_bytes`, as of
//!   the last classification (its announce, a threshold doubling or a sweep).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use foldhash::fast::RandomState;
use smallvec::SmallVec;

use crate::core::time::Time;
use crate::wire::tracker::{Announce, ScrapeStats, Topology};

/// Most (rack, zone) groups indexed in one swarm. A labelled announce scans
/// the groups once to place them (one label comparison each, ~1 µs for 1024),
/// the cost of ranking a 1024-peer swarm that it replaces; a cluster has
/// far fewer racks than this in one swarm.
pub const MAX_GROUPS: usize = 1024;

/// Peers looked at to choose one to evict at a cap (the one closest to expiry
/// goes): 8 random draws find a peer from the oldest quarter of the swarm
/// with probability 1 − 0.75⁸ ≈ 90 %.
pub const EVICTION_SAMPLE: usize = 8;

/// `Packed::group` of a peer without a group.
const NO_GROUP: u16 = u16::MAX;

/// How useful a peer is to others: the list it sits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// `left` is 0.
    Seeder = 0,
    /// A leecher with `left` at most a quarter of the largest `left`.
    Near = 1,
    /// Any other leecher.
    Far = 2,
}

/// A peer's address packed for the lists and the index: the address bytes
/// (an IPv4 address in the first 4), port and family; 20 bytes where a
/// `SocketAddr` takes 32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PeerAddr {
    ip: [u8; 16],
    port: u16,
    v6: bool,
}

impl Hash for PeerAddr {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Two words, where the derived impl feeds four pieces.
        state.write_u128(u128::from_ne_bytes(self.ip));
        state.write_u32(u32::from(self.port) | (u32::from(self.v6) << 16));
    }
}

impl From<SocketAddr> for PeerAddr {
    fn from(a: SocketAddr) -> Self {
        let mut ip = [0u8; 16];
        let v6 = match a.ip() {
            IpAddr::V4(v4) => {
                ip[..4].copy_from_slice(&v4.octets());
                false
            }
            IpAddr::V6(v6) => {
                ip = v6.octets();
                true
            }
        };
        Self {
            ip,
            port: a.port(),
            v6,
        }
    }
}

impl From<PeerAddr> for SocketAddr {
    fn from(a: PeerAddr) -> Self {
        let ip = if a.v6 {
            IpAddr::V6(Ipv6Addr::from(a.ip))
        } else {
            IpAddr::V4(Ipv4Addr::new(a.ip[0], a.ip[1], a.ip[2], a.ip[3]))
        };
        SocketAddr::new(ip, a.port)
    }
}

/// What a hand-out reads of a peer, packed by family: 8 bytes for IPv4
/// (the compact address and the group), 20 for IPv6.
trait Packed: Copy + std::fmt::Debug {
    fn pack(addr: PeerAddr, group: u16) -> Self;
    fn addr(&self) -> PeerAddr;
    fn group(&self) -> u16;
    /// Whether this entry is the peer at `a` (without unpacking it).
    fn is(&self, a: &PeerAddr) -> bool;
    /// Hands this peer out into `out`.
    fn take_into<O: HandOut>(&self, out: &mut O);
}

/// An IPv4 peer in a hot list (8 bytes).
#[derive(Clone, Copy, Debug)]
struct Hot4 {
    ip: [u8; 4],
    port: u16,
    group: u16,
}

impl Packed for Hot4 {
    fn pack(addr: PeerAddr, group: u16) -> Self {
        let [a, b, c, d, ..] = addr.ip;
        Self {
            ip: [a, b, c, d],
            port: addr.port,
            group,
        }
    }
    fn addr(&self) -> PeerAddr {
        let mut ip = [0u8; 16];
        ip[..4].copy_from_slice(&self.ip);
        PeerAddr {
            ip,
            port: self.port,
            v6: false,
        }
    }
    fn group(&self) -> u16 {
        self.group
    }
    fn is(&self, a: &PeerAddr) -> bool {
        !a.v6 && a.port == self.port && a.ip[..4] == self.ip
    }
    fn take_into<O: HandOut>(&self, out: &mut O) {
        out.push_v4(self.ip, self.port);
    }
}

/// An IPv6 peer in a hot list (20 bytes).
#[derive(Clone, Copy, Debug)]
struct Hot6 {
    ip: [u8; 16],
    port: u16,
    group: u16,
}

impl Packed for Hot6 {
    fn pack(addr: PeerAddr, group: u16) -> Self {
        Self {
            ip: addr.ip,
            port: addr.port,
            group,
        }
    }
    fn addr(&self) -> PeerAddr {
        PeerAddr {
            ip: self.ip,
            port: self.port,
            v6: true,
        }
    }
    fn group(&self) -> u16 {
        self.group
    }
    fn is(&self, a: &PeerAddr) -> bool {
        a.v6 && a.port == self.port && a.ip == self.ip
    }
    fn take_into<O: HandOut>(&self, out: &mut O) {
        out.push_v6(self.ip, self.port);
    }
}

/// Where a hand-out goes ([`Swarm::select`], [`Swarm::select_compact`]): the
/// peers taken, in order. Every peer taken counts in `len`, whatever the sink
/// keeps of it.
trait HandOut {
    /// Peers taken so far.
    fn len(&self) -> usize;
    /// Takes the IPv4 peer `ip:port`.
    fn push_v4(&mut self, ip: [u8; 4], port: u16);
    /// Takes the IPv6 peer `[ip]:port`.
    fn push_v6(&mut self, ip: [u8; 16], port: u16);
    /// Whether the IPv4 peer `ip:port` was taken already.
    fn contains_v4(&self, ip: [u8; 4], port: u16) -> bool;
}

/// Hands the peer at `a` out into `out`.
fn take_addr<O: HandOut>(a: &PeerAddr, out: &mut O) {
    if a.v6 {
        out.push_v6(a.ip, a.port);
    } else {
        let [b0, b1, b2, b3, ..] = a.ip;
        out.push_v4([b0, b1, b2, b3], a.port);
    }
}

impl HandOut for Vec<SocketAddr> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn push_v4(&mut self, ip: [u8; 4], port: u16) {
        Vec::push(self, SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port));
    }
    fn push_v6(&mut self, ip: [u8; 16], port: u16) {
        Vec::push(self, SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port));
    }
    fn contains_v4(&self, ip: [u8; 4], port: u16) -> bool {
        let a = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port);
        self.contains(&a)
    }
}

/// A hand-out written straight into a BEP 15 announce answer: the compact
/// form (4-byte IPv4 address or 16-byte IPv6 address, then the port, network
/// byte order) of the peers of the announcer's family, appended to `out`; the
/// other family's peers count as taken but are not written, as BEP 15 answers
/// carry one family (so the answer is the one [`Swarm::select`]'s peers give,
/// without building a `SocketAddr` per peer).
#[derive(Debug)]
pub(super) struct CompactPeers<'a> {
    out: &'a mut Vec<u8>,
    /// Where the entries start in `out`.
    start: usize,
    v6: bool,
    taken: usize,
    /// IPv4 peers taken by an IPv6 announcer (not written; for `contains_v4`).
    other_v4: SmallVec<[([u8; 4], u16); 8]>,
}

impl<'a> CompactPeers<'a> {
    /// Appends the entries of family `v6` (IPv6 when true) to `out`.
    pub(super) fn new(out: &'a mut Vec<u8>, v6: bool) -> Self {
        Self {
            start: out.len(),
            out,
            v6,
            taken: 0,
            other_v4: SmallVec::new(),
        }
    }
}

impl HandOut for CompactPeers<'_> {
    fn len(&self) -> usize {
        self.taken
    }
    fn push_v4(&mut self, ip: [u8; 4], port: u16) {
        self.taken += 1;
        if self.v6 {
            self.other_v4.push((ip, port));
        } else {
            self.out.extend_from_slice(&ip);
            self.out.extend_from_slice(&port.to_be_bytes());
        }
    }
    fn push_v6(&mut self, ip: [u8; 16], port: u16) {
        self.taken += 1;
        if self.v6 {
            self.out.extend_from_slice(&ip);
            self.out.extend_from_slice(&port.to_be_bytes());
        }
    }
    fn contains_v4(&self, ip: [u8; 4], port: u16) -> bool {
        if self.v6 {
            return self.other_v4.contains(&(ip, port));
        }
        let [p0, p1] = port.to_be_bytes();
        let entry = [ip[0], ip[1], ip[2], ip[3], p0, p1];
        self.out
            .get(self.start..)
            .is_some_and(|e| e.chunks_exact(6).any(|c| c == entry))
    }
}

/// One family's peers by class: `hot[c]` and `cold[c]` at the same positions.
#[derive(Debug)]
struct Lists<H> {
    hot: [Vec<H>; 3],
    cold: [Vec<Cold>; 3],
}

impl<H> Default for Lists<H> {
    fn default() -> Self {
        Self {
            hot: Default::default(),
            cold: Default::default(),
        }
    }
}

impl<H: Packed> Lists<H> {
    fn len(&self) -> usize {
        self.hot.iter().map(Vec::len).sum()
    }

    fn push(&mut self, class: Class, hot: H, cold: Cold) -> u32 {
        let list = &mut self.hot[class as usize];
        let pos = list.len() as u32;
        list.push(hot);
        self.cold[class as usize].push(cold);
        pos
    }

    /// Removes the entry at `pos`: it, and the address of the entry moved
    /// into `pos` (if any).
    fn swap_remove(&mut self, class: Class, pos: usize) -> Option<(H, Cold, Option<PeerAddr>)> {
        let (hot, cold) = (
            &mut self.hot[class as usize],
            &mut self.cold[class as usize],
        );
        if pos >= hot.len() || pos >= cold.len() {
            return None;
        }
        let h = hot.swap_remove(pos);
        let c = cold.swap_remove(pos);
        Some((h, c, hot.get(pos).map(Packed::addr)))
    }

    fn iter(&self) -> impl Iterator<Item = (Class, H, Cold)> + '_ {
        [Class::Seeder, Class::Near, Class::Far]
            .into_iter()
            .flat_map(move |c| {
                let (hot, cold) = (&self.hot[c as usize], &self.cold[c as usize]);
                hot.iter().zip(cold).map(move |(h, k)| (c, *h, *k))
            })
    }
}

/// The rest of a peer.
#[derive(Clone, Copy, Debug)]
struct Cold {
    left_bytes: u64,
    expires_at: Time,
}

/// One peer, as [`Swarm::iter`] shows it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Slot {
    pub(super) addr: SocketAddr,
    pub(super) left_bytes: u64,
    pub(super) expires_at: Time,
}

/// Where a peer sits (see the module invariants).
#[derive(Clone, Copy, Debug)]
struct Loc {
    class: Class,
    pos: u32,
    gpos: u32,
}

/// The peers of one (rack, zone) label pair, by class.
#[derive(Debug, Default)]
struct Group {
    /// Shared with the group's key in `group_ids`: labels are stored once.
    topology: Arc<Topology>,
    lists: [Vec<PeerAddr>; 3],
}

impl Group {
    fn is_empty(&self) -> bool {
        self.lists.iter().all(Vec::is_empty)
    }
}

/// One torrent's peers (see the module docs).
#[derive(Debug, Default)]
pub(super) struct Swarm {
    v4: Lists<Hot4>,
    v6: Lists<Hot6>,
    index: HashMap<PeerAddr, Loc, RandomState>,
    groups: Vec<Group>,
    free_groups: Vec<u16>,
    group_ids: HashMap<Arc<Topology>, u16, RandomState>,
    /// Largest `left` announced by a leecher since the last sweep.
    max_left_bytes: u64,
    /// Leechers with `left` at most this are [`Class::Near`]: a quarter of
    /// `max_left_bytes` when last classified (a proxy for a quarter of the
    /// torrent's size, which the tracker does not know).
    near_left_bytes: u64,
    /// Completed downloads (BEP 48 `downloaded`).
    pub(super) downloaded: u32,
}

fn is_labelled(t: &Topology) -> bool {
    t.rack.is_some() || t.zone.is_some()
}

/// Place of a peer labelled `peer` for an announcer labelled `me`: 0 same
/// rack, 1 same zone, 2 the rest. Rack labels may repeat across zones: a rack
/// matches only if the zones do not contradict each other.
pub(super) fn place(peer: &Topology, me: &Topology) -> u8 {
    let same = |a: &Option<String>, b: &Option<String>| a.is_some() && a == b;
    let zone_eq = same(&peer.zone, &me.zone);
    let zone_conflict = peer.zone.is_some() && me.zone.is_some() && !zone_eq;
    if same(&peer.rack, &me.rack) && !zone_conflict {
        0
    } else if zone_eq {
        1
    } else {
        2
    }
}

/// A cheap 64-bit mix (splitmix64 finaliser) to derive sampling parameters
/// from one random draw per announce.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Appends to `out`, until it holds `want` peers, the peers of the
/// concatenation of `parts` that `take` hands out into it, reading
/// consecutively (wrapping) from a random start.
///
/// Lists are unordered (arrival order shuffled by swap-removes), so a run at a
/// uniform start gives each peer the same chance. Consecutive reads cost one
/// cache miss per line with the prefetcher streaming, where random picks
/// missed on every peer (most swarms are cold in cache: perf/tracker.md).
/// Cost O(`want` + elements `keep` refuses), not O(total).
fn take_tier<T, O: HandOut>(
    parts: &[&[T]],
    want: usize,
    salt: u64,
    mut take: impl FnMut(&T, &mut O),
    out: &mut O,
) {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    if total == 0 || out.len() >= want {
        return;
    }
    // Uniform in 0..total by a multiply (Lemire), not a 64-bit division.
    let mut k = ((u128::from(mix(salt)) * total as u128) >> 64) as usize;
    let Some(first) = parts.iter().position(|p| {
        let here = k < p.len();
        if !here {
            k -= p.len();
        }
        here
    }) else {
        return;
    };
    let (head, tail) = parts.split_at(first);
    let (part, tail) = tail.split_first().unwrap_or((&(&[] as &[T]), &[]));
    let (before, after) = part.split_at(k.min(part.len()));
    let run = after
        .iter()
        .chain(tail.iter().flat_map(|p| p.iter()))
        .chain(head.iter().flat_map(|p| p.iter()))
        .chain(before);
    for item in run {
        take(item, out);
        if out.len() >= want {
            return;
        }
    }
}

/// Runs `$body` with `$l` bound to the lists of the family (`$v6`).
macro_rules! family {
    ($self:expr, $v6:expr, |$l:ident| $body:expr) => {
        if $v6 {
            let $l = &mut $self.v6;
            $body
        } else {
            let $l = &mut $self.v4;
            $body
        }
    };
}

/// The entry at `i` of the concatenation of `l`'s class lists, or `i` minus
/// their length.
fn nth_in<H: Packed>(l: &Lists<H>, i: &mut usize) -> Option<(PeerAddr, Cold)> {
    for (hot, cold) in l.hot.iter().zip(&l.cold) {
        if let Some((h, c)) = hot.get(*i).zip(cold.get(*i)) {
            return Some((h.addr(), *c));
        }
        *i = i.checked_sub(hot.len())?;
    }
    None
}

/// Appends the peers of `l` in `tier` that are not `me` and are "the rest"
/// by `places`, until `out` holds `want`, as one run from a random start
/// (see [`take_tier`]); with `dedup`, skips peers already in `out`.
/// With `dedup` (asked for IPv4 lists only) a peer already in `out` is
/// skipped; a list holds each peer once, so peers taken in this same run need
/// no check.
fn take_rest<H: Packed, O: HandOut>(
    l: &Lists<H>,
    tier: &[Class],
    want: usize,
    salt: u64,
    (me, places, dedup): (PeerAddr, &[u8], bool),
    out: &mut O,
) {
    let parts: SmallVec<[&[H]; 2]> = tier.iter().map(|&c| l.hot[c as usize].as_slice()).collect();
    let rest = |h: &H, out: &mut O| {
        let far = places.get(usize::from(h.group())).is_none_or(|&gp| gp == 2);
        if h.is(&me) || !far {
            return;
        }
        if dedup {
            let a = h.addr();
            let [b0, b1, b2, b3, ..] = a.ip;
            if !a.v6 && out.contains_v4([b0, b1, b2, b3], a.port) {
                return;
            }
        }
        h.take_into(out);
    };
    take_tier(&parts, want, salt, rest, out);
}

impl Swarm {
    /// Peers in the swarm.
    pub(super) fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Whether no peer is left.
    pub(super) fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Whether `addr` is in the swarm.
    pub(super) fn contains(&self, addr: &SocketAddr) -> bool {
        self.index.contains_key(&PeerAddr::from(*addr))
    }

    /// Every peer, in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = Slot> + '_ {
        let slot = |addr: PeerAddr, c: Cold| Slot {
            addr: addr.into(),
            left_bytes: c.left_bytes,
            expires_at: c.expires_at,
        };
        let v4 = self.v4.iter().map(move |(_, h, c)| slot(h.addr(), c));
        v4.chain(self.v6.iter().map(move |(_, h, c)| slot(h.addr(), c)))
    }

    /// Counters for a scrape or an announce answer.
    pub(super) fn stats(&self) -> ScrapeStats {
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let seeder_list = Class::Seeder as usize;
        let seeders = self.v4.hot[seeder_list].len() + self.v6.hot[seeder_list].len();
        ScrapeStats {
            complete: count(seeders),
            downloaded: self.downloaded,
            incomplete: count(self.len() - seeders),
        }
    }

    fn classify(&self, left_bytes: u64) -> Class {
        if left_bytes == 0 {
            Class::Seeder
        } else if left_bytes <= self.near_left_bytes {
            Class::Near
        } else {
            Class::Far
        }
    }

    /// Stores or refreshes the peer at `addr`; its previous `left` if it was
    /// already there.
    pub(super) fn upsert(
        &mut self,
        addr: SocketAddr,
        left_bytes: u64,
        topology: &Topology,
        expires_at: Time,
    ) -> Option<u64> {
        let addr = PeerAddr::from(addr);
        if left_bytes > self.max_left_bytes {
            self.raise_max_left(left_bytes);
        }
        let class = self.classify(left_bytes);
        let cold = Cold {
            left_bytes,
            expires_at,
        };
        if let Some(loc) = self.index.get(&addr).copied() {
            let (c, pos) = (loc.class as usize, loc.pos as usize);
            let (group, slot) = family!(self, addr.v6, |l| (
                l.hot[c].get(pos).map(Packed::group),
                l.cold[c].get_mut(pos)
            ));
            let (group, slot) = (group?, slot?);
            let old_left = slot.left_bytes;
            let same_group = match self.groups.get(usize::from(group)) {
                Some(g) => *g.topology == *topology,
                None => !is_labelled(topology),
            };
            if loc.class == class && same_group {
                *slot = cold;
                return Some(old_left);
            }
            self.remove_packed(&addr);
            self.insert(addr, cold, topology, class);
            return Some(old_left);
        }
        self.insert(addr, cold, topology, class);
        None
    }

    fn insert(&mut self, addr: PeerAddr, cold: Cold, topology: &Topology, class: Class) {
        let group = if is_labelled(topology) {
            self.group_of(topology)
        } else {
            NO_GROUP
        };
        let mut gpos = 0;
        if let Some(g) = self.groups.get_mut(usize::from(group)) {
            let list = &mut g.lists[class as usize];
            gpos = list.len() as u32;
            list.push(addr);
        }
        let pos = family!(self, addr.v6, |l| l.push(
            class,
            Packed::pack(addr, group),
            cold
        ));
        self.index.insert(addr, Loc { class, pos, gpos });
    }

    /// The group of `topology`, created if there is room; [`NO_GROUP`] if not.
    fn group_of(&mut self, topology: &Topology) -> u16 {
        if let Some(&g) = self.group_ids.get(topology) {
            return g;
        }
        if self.group_ids.len() >= MAX_GROUPS {
            return NO_GROUP;
        }
        let topology = Arc::new(topology.clone());
        let group = Group {
            topology: Arc::clone(&topology),
            lists: Default::default(),
        };
        let id = match self.free_groups.pop() {
            Some(id) => {
                if let Some(slot) = self.groups.get_mut(usize::from(id)) {
                    *slot = group;
                }
                id
            }
            None => {
                self.groups.push(group);
                // Below MAX_GROUPS (< u16::MAX) by the check above.
                u16::try_from(self.groups.len() - 1).unwrap_or(NO_GROUP)
            }
        };
        self.group_ids.insert(topology, id);
        id
    }

    /// Removes the peer at `addr`; it, if it was there.
    pub(super) fn remove(&mut self, addr: &SocketAddr) -> Option<Slot> {
        let (_, cold) = self.remove_packed(&PeerAddr::from(*addr))?;
        Some(Slot {
            addr: *addr,
            left_bytes: cold.left_bytes,
            expires_at: cold.expires_at,
        })
    }

    /// Removes the peer at `addr`: its group and cold part, if it was there.
    fn remove_packed(&mut self, addr: &PeerAddr) -> Option<(u16, Cold)> {
        let loc = self.index.remove(addr)?;
        let (class, pos) = (loc.class, loc.pos as usize);
        let (group, cold, moved) = family!(self, addr.v6, |l| l
            .swap_remove(class, pos)
            .map(|(h, c, m)| (h.group(), c, m)))?;
        if let Some(l) = moved.and_then(|m| self.index.get_mut(&m)) {
            l.pos = loc.pos;
        }
        if let Some(g) = self.groups.get_mut(usize::from(group)) {
            let glist = &mut g.lists[class as usize];
            let gpos = loc.gpos as usize;
            if gpos < glist.len() {
                glist.swap_remove(gpos);
                if let Some(moved) = glist.get(gpos) {
                    if let Some(l) = self.index.get_mut(moved) {
                        l.gpos = loc.gpos;
                    }
                }
            }
            if g.is_empty() {
                self.group_ids.remove(&*g.topology);
                // Give the memory back (labels and lists).
                *g = Group::default();
                self.free_groups.push(group);
            }
        }
        Some((group, cold))
    }

    /// `left` rose to a new maximum: the near-complete threshold follows. It
    /// is re-applied to the leechers only when it at least doubles (at most
    /// 64 times between sweeps, each O(leechers)), so a peer announcing ever
    /// larger `left` cannot make every announce O(swarm).
    fn raise_max_left(&mut self, left_bytes: u64) {
        self.max_left_bytes = left_bytes;
        let threshold = left_bytes / 4;
        if threshold >= self.near_left_bytes.saturating_mul(2).max(1) {
            self.near_left_bytes = threshold;
            self.reclassify(Class::Far);
        }
    }

    /// Moves the peers of `from` whose class changed under the current
    /// threshold to their class.
    fn reclassify(&mut self, from: Class) {
        let f = from as usize;
        let moving = |(h, c): (PeerAddr, &Cold)| (self.classify(c.left_bytes) != from).then_some(h);
        let v4 = self.v4.hot[f]
            .iter()
            .map(Packed::addr)
            .zip(&self.v4.cold[f]);
        let v6 = self.v6.hot[f]
            .iter()
            .map(Packed::addr)
            .zip(&self.v6.cold[f]);
        let moves: Vec<PeerAddr> = v4.chain(v6).filter_map(moving).collect();
        for addr in moves {
            if let Some((group, cold)) = self.remove_packed(&addr) {
                let topology = self
                    .groups
                    .get(usize::from(group))
                    .map(|g| Arc::clone(&g.topology))
                    .unwrap_or_default();
                let class = self.classify(cold.left_bytes);
                self.insert(addr, cold, &topology, class);
            }
        }
    }

    /// Drops peers that expired by `now` and recomputes the near-complete
    /// threshold from the peers left; how many were dropped. O(peers).
    pub(super) fn expire(&mut self, now: Time) -> usize {
        let expired: Vec<SocketAddr> = self
            .iter()
            .filter(|p| p.expires_at <= now)
            .map(|p| p.addr)
            .collect();
        let dropped = expired.iter().filter(|a| self.remove(a).is_some()).count();
        self.max_left_bytes = self.iter().map(|p| p.left_bytes).max().unwrap_or(0);
        let threshold = self.max_left_bytes / 4;
        if threshold != self.near_left_bytes {
            self.near_left_bytes = threshold;
            self.reclassify(Class::Near);
            self.reclassify(Class::Far);
        }
        dropped
    }

    /// Removes the peer closest to expiry among [`EVICTION_SAMPLE`] random
    /// ones (`rand` gives the draws); whether one was removed.
    pub(super) fn evict_one(&mut self, mut rand: impl FnMut(usize) -> usize) -> bool {
        let n = self.len();
        if n == 0 {
            return false;
        }
        let victim = (0..EVICTION_SAMPLE)
            .filter_map(|_| self.nth(rand(n)))
            .min_by_key(|(_, c)| c.expires_at)
            .map(|(a, _)| a);
        victim.is_some_and(|a| self.remove_packed(&a).is_some())
    }

    fn nth(&self, mut i: usize) -> Option<(PeerAddr, Cold)> {
        nth_in(&self.v4, &mut i).or_else(|| nth_in(&self.v6, &mut i))
    }

    /// Appends to `out` up to `want` peers for the announcer at `me`, best
    /// first by the policy of the parent module: (place, usefulness) for the
    /// announcer's labels and `left`, random among equals. `salt` is one
    /// random draw; `places` is scratch.
    pub(super) fn select(
        &self,
        me: SocketAddr,
        announce: &Announce,
        want: usize,
        salt: u64,
        places: &mut Vec<u8>,
        out: &mut Vec<SocketAddr>,
    ) {
        self.select_into(me, announce, want, salt, places, out);
    }

    /// [`Self::select`] written in BEP 15 compact form (see [`CompactPeers`]):
    /// the same peers for the same `salt`, those of the other family left out.
    pub(super) fn select_compact(
        &self,
        me: SocketAddr,
        announce: &Announce,
        want: usize,
        salt: u64,
        places: &mut Vec<u8>,
        out: &mut CompactPeers<'_>,
    ) {
        self.select_into(me, announce, want, salt, places, out);
    }

    fn select_into<O: HandOut>(
        &self,
        me: SocketAddr,
        announce: &Announce,
        want: usize,
        salt: u64,
        places: &mut Vec<u8>,
        out: &mut O,
    ) {
        let (topology, me_left_bytes) = (&announce.topology, announce.left_bytes);
        let me = PeerAddr::from(me);
        let want = out.len() + want;
        // Usefulness tiers, best first: for a leecher seeders, near-complete
        // leechers, the others; for a seeder leechers, then seeders.
        let tiers: [&[Class]; 3] = if me_left_bytes == 0 {
            [&[Class::Near, Class::Far], &[Class::Seeder], &[]]
        } else {
            [&[Class::Seeder], &[Class::Near], &[Class::Far]]
        };
        places.clear();
        let labelled = is_labelled(topology) && !self.group_ids.is_empty();
        if labelled {
            places.extend(self.groups.iter().map(|g| {
                if g.is_empty() {
                    2
                } else {
                    place(&g.topology, topology)
                }
            }));
        }
        let mut salt = salt;
        for p in 0..2u8 {
            if !places.contains(&p) {
                continue;
            }
            for tier in tiers {
                let parts: SmallVec<[&[PeerAddr]; 8]> = self
                    .groups
                    .iter()
                    .zip(places.iter())
                    .filter(|&(_, &gp)| gp == p)
                    .flat_map(|(g, _)| tier.iter().map(|&c| g.lists[c as usize].as_slice()))
                    .collect();
                salt = mix(salt);
                let keep = |a: &PeerAddr, out: &mut O| {
                    if *a != me {
                        take_addr(a, out);
                    }
                };
                take_tier(&parts, want, salt, keep, out);
                if out.len() >= want {
                    return;
                }
            }
        }
        for tier in tiers {
            // Each family gets its share of what is missing, by size; then
            // IPv4 fills what IPv6 could not (skipping peers already taken).
            let n4: usize = tier.iter().map(|&c| self.v4.hot[c as usize].len()).sum();
            let n6: usize = tier.iter().map(|&c| self.v6.hot[c as usize].len()).sum();
            let need = want - out.len();
            let share4 = if n4 + n6 == 0 {
                0
            } else {
                (need * n4).div_ceil(n4 + n6)
            };
            salt = mix(salt);
            take_rest(
                &self.v4,
                tier,
                out.len() + share4,
                salt,
                (me, places, false),
                out,
            );
            if n6 > 0 {
                salt = mix(salt);
                take_rest(&self.v6, tier, want, salt, (me, places, false), out);
                if out.len() < want && n4 > share4 {
                    salt = mix(salt);
                    take_rest(&self.v4, tier, want, salt, (me, places, true), out);
                }
            }
            if out.len() >= want {
                return;
            }
        }
    }

    /// The labels `addr` is indexed under (tests).
    #[cfg(test)]
    pub(super) fn topology_of(&self, addr: &SocketAddr) -> Option<Topology> {
        let loc = self.index.get(&PeerAddr::from(*addr))?;
        let (c, pos) = (loc.class as usize, loc.pos as usize);
        let v6 = addr.is_ipv6();
        let group = if v6 {
            self.v6.hot[c].get(pos)?.group
        } else {
            self.v4.hot[c].get(pos)?.group
        };
        Some(
            self.groups
                .get(usize::from(group))
                .map(|g| (*g.topology).clone())
                .unwrap_or_default(),
        )
    }

    /// Usefulness of `addr` to an announcer with `me_left_bytes` (0 best; tests).
    #[cfg(test)]
    pub(super) fn usefulness(&self, addr: &SocketAddr, me_left_bytes: u64) -> u8 {
        let class = self
            .index
            .get(&PeerAddr::from(*addr))
            .map_or(Class::Far, |l| l.class);
        match (me_left_bytes == 0, class) {
            (true, Class::Seeder) => 1,
            (true, _) => 0,
            (false, c) => c as u8,
        }
    }

    /// Checks the module invariants (tests).
    #[cfg(test)]
    pub(super) fn check(&self) {
        assert_eq!(self.index.len(), self.len());
        for (hot, cold) in self.v4.hot.iter().zip(&self.v4.cold) {
            assert_eq!(hot.len(), cold.len());
        }
        for (hot, cold) in self.v6.hot.iter().zip(&self.v6.cold) {
            assert_eq!(hot.len(), cold.len());
        }
        let (c4, c6) = (
            |(c, h, k): (Class, Hot4, Cold)| (c, h.addr(), h.group, k),
            |(c, h, k): (Class, Hot6, Cold)| (c, h.addr(), h.group, k),
        );
        let all: Vec<(Class, PeerAddr, u16, Cold)> = self
            .v4
            .iter()
            .map(c4)
            .chain(self.v6.iter().map(c6))
            .collect();
        for (class, addr, group, cold) in &all {
            let loc = self.index[addr];
            assert_eq!(loc.class, *class);
            assert_eq!(self.classify(cold.left_bytes), loc.class, "{cold:?}");
            if let Some(g) = self.groups.get(usize::from(*group)) {
                assert_eq!(g.lists[loc.class as usize][loc.gpos as usize], *addr);
            }
        }
        for (addr, loc) in &self.index {
            let pos = loc.pos as usize;
            let listed = if addr.v6 {
                self.v6.hot[loc.class as usize][pos].addr()
            } else {
                self.v4.hot[loc.class as usize][pos].addr()
            };
            assert_eq!(listed, *addr);
        }
        for (t, &g) in &self.group_ids {
            assert_eq!(*self.groups[usize::from(g)].topology, **t);
            assert!(!self.groups[usize::from(g)].is_empty());
        }
        let grouped: usize = self
            .groups
            .iter()
            .map(|g| g.lists.iter().map(Vec::len).sum::<usize>())
            .sum();
        assert_eq!(grouped, all.iter().filter(|a| a.2 != NO_GROUP).count());
    }
}
