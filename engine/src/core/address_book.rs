//! The address book: peer addresses to dial, where each came from, back-off, and
//! which addresses are forgotten (issue 11: 6,000 unreachable addresses from one PEX
//! peer, never forgotten, filled the book and made a leecher ignore a live seeder its
//! tracker returned).
//!
//! Sans-IO like the rest of `core`: the driver admits addresses with
//! [`AddressBook::admit`], dials what [`AddressBook::due`] returns, reports each
//! dial's outcome ([`AddressBook::on_dialled`], [`AddressBook::on_handshake`],
//! [`AddressBook::on_closed`], [`AddressBook::retire`]) and calls
//! [`AddressBook::handle_timeout`] now and then; it passes its own [`Time`] in.
//!
//! Bounds and policy ([`BookConfig::default`] values):
//! - at most [`BookConfig::capacity`] (2,000) addresses; configured addresses
//!   (command line, `Node::connect`) are always admitted and may exceed it;
//! - addresses from trackers and the DHT are preferred over PEX ones: when the book is
//!   full one always gets in, evicting an unconnected PEX entry (or a retired one);
//! - PEX-learned addresses are at most [`BookConfig::max_pex`] (1,000, half the book)
//!   in total and [`BookConfig::max_per_pex_source`] (100) per peer that sent them (the
//!   driver also reads at most 50 `added` addresses per `ut_pex` message, BEP 11's
//!   limit, as libtorrent does);
//! - a discovered address (tracker, DHT, PEX) is retired after
//!   [`BookConfig::max_failures`] (3) failed dials in a row; configured ones are
//!   redialled with back-off ([`BookConfig::backoff_min`] doubling to
//!   [`BookConfig::backoff_max`]) while the driver wants them;
//! - a retired, unconnected address is forgotten [`BookConfig::retired_ttl`] (300 s)
//!   after it was retired (sooner if a new address needs its place), so the book never
//!   fills with dead entries, and an address that comes back (from a tracker's next
//!   answer, say) is dialled afresh;
//! - due dials come out configured first, then tracker, DHT and PEX ones, so under the
//!   connection bound a flood of PEX addresses never delays a tracker's.
//!
//! Entries are slots of a slab: an [`EntryId`] stays valid while its entry is
//! connected (only unconnected entries are ever removed), so a connection may keep its
//! entry's id.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::Time;

/// Where an address came from, in order of preference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// Given by the operator (command line, `Node::connect`).
    Configured,
    /// A tracker's announce answer (BEP 3, BEP 15).
    Tracker,
    /// A BEP 5 DHT `get_peers` answer.
    Dht,
    /// A BEP 11 `ut_pex` message from the peer at this (socket) address.
    Pex(SocketAddr),
}

impl Source {
    /// Lower is preferred (dialled first, kept longer).
    fn rank(self) -> u8 {
        match self {
            Source::Configured => 0,
            Source::Tracker => 1,
            Source::Dht => 2,
            Source::Pex(_) => 3,
        }
    }
}

/// Tunables of the address book (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BookConfig {
    /// Most addresses in the book, configured ones aside.
    pub capacity: usize,
    /// Most PEX-learned addresses in the book.
    pub max_pex: usize,
    /// Most PEX-learned addresses in the book from one peer.
    pub max_per_pex_source: usize,
    /// Failed dials in a row after which a discovered address is retired.
    pub max_failures: u32,
    /// How long a retired, unconnected address stays before it is forgotten.
    pub retired_ttl: Duration,
    /// First redial back-off; doubles with each failure up to `backoff_max`.
    pub backoff_min: Duration,
    /// Longest redial back-off.
    pub backoff_max: Duration,
}

impl Default for BookConfig {
    /// 2,000 addresses, 1,000 from PEX, 100 per PEX peer, 3 failures, 300 s, 0.2–5 s.
    fn default() -> Self {
        BookConfig {
            capacity: 2000,
            max_pex: 1000,
            max_per_pex_source: 100,
            max_failures: 3,
            retired_ttl: Duration::from_secs(300),
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(5),
        }
    }
}

/// Identifies an entry while it is in the book (a slab index).
pub type EntryId = usize;

/// One address in the book.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The peer's listen address.
    pub addr: SocketAddr,
    /// Where the address came from (a configured one overrides any other).
    pub source: Source,
    /// A connection dialled from this entry is open.
    pub connected: bool,
    /// When to dial again (`None`: not scheduled).
    pub retry_at: Option<Time>,
    /// Failed dials in a row.
    pub failures: u32,
    /// When it was retired (never dialled again; forgotten after the TTL).
    pub retired_at: Option<Time>,
}

/// What [`AddressBook::admit`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// A new entry: the driver dials it (or defers it at the connection bound).
    New(EntryId),
    /// A configured address revived an existing entry: dial it unless connected.
    Revived(EntryId),
    /// Already in the book; nothing changed.
    Known,
    /// Not admitted: a bound is reached (see the module docs) or port 0.
    Refused,
}

/// The address book (see the module docs).
#[derive(Debug, Default)]
pub struct AddressBook {
    config: BookConfig,
    slots: Vec<Option<Entry>>,
    free: Vec<EntryId>,
    by_addr: HashMap<SocketAddr, EntryId>,
    /// Entries not configured (they count against `capacity`).
    discovered: usize,
    pex: usize,
    per_pex_source: HashMap<SocketAddr, usize>,
}

impl AddressBook {
    /// An empty book.
    pub fn new(config: BookConfig) -> Self {
        AddressBook {
            config,
            ..Self::default()
        }
    }

    /// Entries in the book.
    pub fn len(&self) -> usize {
        self.by_addr.len()
    }

    /// Whether the book is empty.
    pub fn is_empty(&self) -> bool {
        self.by_addr.is_empty()
    }

    /// PEX-learned entries in the book.
    pub fn pex_len(&self) -> usize {
        self.pex
    }

    /// The entry `id`, if it is in the book.
    pub fn get(&self, id: EntryId) -> Option<&Entry> {
        self.slots.get(id).and_then(Option::as_ref)
    }

    /// The entry for `addr`, if any.
    pub fn find(&self, addr: SocketAddr) -> Option<EntryId> {
        self.by_addr.get(&addr).copied()
    }

    /// Offers `addr` from `source` (see the module docs for what is refused
    /// and what is evicted to make room).
    pub fn admit(&mut self, addr: SocketAddr, source: Source) -> Admission {
        if let Some(id) = self.find(addr) {
            if source != Source::Configured {
                return Admission::Known;
            }
            // An explicit request revives a retired or discovered entry.
            self.set_source(id, Source::Configured);
            if let Some(e) = self.slots.get_mut(id).and_then(Option::as_mut) {
                e.retired_at = None;
                e.failures = 0;
            }
            return Admission::Revived(id);
        }
        if addr.port() == 0 && source != Source::Configured {
            return Admission::Refused;
        }
        if let Source::Pex(from) = source {
            let c = &self.config;
            if self.per_pex_source.get(&from).copied().unwrap_or(0) >= c.max_per_pex_source {
                return Admission::Refused;
            }
            if self.pex >= c.max_pex && !self.evict(|e| matches!(e.source, Source::Pex(_))) {
                return Admission::Refused;
            }
        }
        if source != Source::Configured && self.discovered >= self.config.capacity {
            let rank = source.rank();
            // A retired entry first, else a less preferred unconnected one.
            if !self.evict(|e| e.source != Source::Configured) && !self.evict_rank_above(rank) {
                return Admission::Refused;
            }
        }
        let entry = Entry {
            addr,
            source: Source::Configured,
            connected: false,
            retry_at: None,
            failures: 0,
            retired_at: None,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id] = Some(entry);
                id
            }
            None => {
                self.slots.push(Some(entry));
                self.slots.len() - 1
            }
        };
        self.by_addr.insert(addr, id);
        self.set_source(id, source);
        Admission::New(id)
    }

    /// A connection to entry `id` was opened.
    pub fn on_dialled(&mut self, id: EntryId) {
        if let Some(e) = self.slots.get_mut(id).and_then(Option::as_mut) {
            e.connected = true;
            e.retry_at = None;
        }
    }

    /// Entry `id`'s connection completed its handshake: its back-off starts over.
    pub fn on_handshake(&mut self, id: EntryId) {
        if let Some(e) = self.slots.get_mut(id).and_then(Option::as_mut) {
            e.failures = 0;
        }
    }

    /// Entry `id`'s connection closed, or its dial failed, at `now`: schedules the
    /// redial with back-off, or retires a discovered entry after too many failures.
    /// With `redial` false (the download is complete) nothing is scheduled.
    pub fn on_closed(&mut self, now: Time, id: EntryId, redial: bool) {
        let c = self.config;
        let Some(e) = self.slots.get_mut(id).and_then(Option::as_mut) else {
            return;
        };
        e.connected = false;
        e.retry_at = None;
        if e.retired_at.is_some() || !redial {
            return;
        }
        e.failures = e.failures.saturating_add(1);
        if e.source != Source::Configured && e.failures >= c.max_failures {
            e.retired_at = Some(now);
            return;
        }
        let backoff = c
            .backoff_min
            .saturating_mul(1 << e.failures.min(6))
            .min(c.backoff_max);
        e.retry_at = Some(now + backoff);
    }

    /// Never dials entry `id` again (forgotten after the TTL once unconnected).
    pub fn retire(&mut self, now: Time, id: EntryId) {
        if let Some(e) = self.slots.get_mut(id).and_then(Option::as_mut) {
            e.retired_at.get_or_insert(now);
            e.retry_at = None;
        }
    }

    /// Schedules entry `id`'s next dial at `at` (the connection bound is reached).
    pub fn defer(&mut self, id: EntryId, at: Time) {
        if let Some(e) = self.slots.get_mut(id).and_then(Option::as_mut) {
            e.retry_at = Some(at);
        }
    }

    /// Entries due a dial at `now`, preferred sources first (their schedule is
    /// cleared: the driver dials or defers each).
    pub fn due(&mut self, now: Time) -> Vec<EntryId> {
        let mut due: Vec<(u8, Time, EntryId)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(id, e)| {
                let e = e.as_ref()?;
                let at = e.retry_at.filter(|&at| at <= now)?;
                Some((e.source.rank(), at, id))
            })
            .collect();
        due.sort_unstable();
        due.into_iter()
            .map(|(_, _, id)| {
                if let Some(e) = self.slots[id].as_mut() {
                    e.retry_at = None;
                }
                id
            })
            .collect()
    }

    /// The earliest scheduled dial.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.slots.iter().flatten().filter_map(|e| e.retry_at).min()
    }

    /// Forgets retired, unconnected entries older than the TTL at `now`.
    pub fn handle_timeout(&mut self, now: Time) {
        let ttl = self.config.retired_ttl;
        let old: Vec<EntryId> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(id, e)| {
                let e = e.as_ref()?;
                let at = e.retired_at?;
                (!e.connected && now.saturating_duration_since(at) >= ttl).then_some(id)
            })
            .collect();
        for id in old {
            self.remove(id);
        }
    }

    /// Removes the unconnected, retired entry matching `pick` retired longest ago;
    /// false if there is none.
    fn evict(&mut self, pick: impl Fn(&Entry) -> bool) -> bool {
        let victim = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(id, e)| e.as_ref().map(|e| (id, e)))
            .filter(|(_, e)| !e.connected && pick(e))
            .filter_map(|(id, e)| e.retired_at.map(|at| (at, id)))
            .min();
        victim.is_some_and(|(_, id)| self.remove(id))
    }

    /// Removes an unconnected entry of a source less preferred than `rank` (the least
    /// preferred, most failed); false if there is none.
    fn evict_rank_above(&mut self, rank: u8) -> bool {
        let victim = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(id, e)| e.as_ref().map(|e| (id, e)))
            .filter(|(_, e)| !e.connected && e.source.rank() > rank)
            .max_by_key(|(id, e)| (e.source.rank(), e.failures, *id))
            .map(|(id, _)| id);
        victim.is_some_and(|id| self.remove(id))
    }

    /// Removes unconnected entry `id`; false if absent or connected.
    fn remove(&mut self, id: EntryId) -> bool {
        if self.get(id).is_none_or(|e| e.connected) {
            return false;
        }
        self.set_source(id, Source::Configured);
        if let Some(e) = self.slots[id].take() {
            self.by_addr.remove(&e.addr);
            self.free.push(id);
        }
        true
    }

    /// Changes entry `id`'s source, keeping the counts.
    fn set_source(&mut self, id: EntryId, to: Source) {
        let Some(e) = self.slots.get_mut(id).and_then(Option::as_mut) else {
            return;
        };
        let from = std::mem::replace(&mut e.source, to);
        if from != Source::Configured {
            self.discovered -= 1;
        }
        if let Source::Pex(peer) = from {
            self.pex -= 1;
            if let Some(n) = self.per_pex_source.get_mut(&peer) {
                *n -= 1;
                if *n == 0 {
                    self.per_pex_source.remove(&peer);
                }
            }
        }
        if to != Source::Configured {
            self.discovered += 1;
        }
        if let Source::Pex(peer) = to {
            self.pex += 1;
            *self.per_pex_source.entry(peer).or_insert(0) += 1;
        }
    }
}

#[cfg(test)]
mod tests;
