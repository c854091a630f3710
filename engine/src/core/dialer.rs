//! The dial policy, sans-IO: which [`AddressBook`] entries to dial now, the bound on
//! open connections, and which of two connections to one peer id stays (issue 10: this
//! was the node's, on the real clock; the node and the simulator now share it).
//!
//! # Driver obligations
//! - Offer every address it learns with [`Dialer::handle_addr`] (`known` when the
//!   address is our own or an open connection's listen address) and call
//!   [`Dialer::handle_timeout`] at [`Dialer::poll_timeout`].
//! - After each `handle_*` call, drain [`Dialer::poll_dial`] with its count of open
//!   connections (inbound, outbound, and dials in progress; the count changes as it
//!   dials, so it passes the current one at each call), dialling each entry returned.
//! - Report each dial: [`Dialer::on_dialled`] once connected (or
//!   [`Dialer::on_closed`] if the dial failed), [`Dialer::on_handshake`] after the
//!   BEP 3 handshake, [`Dialer::on_closed`] when it closes, [`Dialer::retire`] when
//!   it must never be dialled again (ourselves, another torrent, a banned peer, the
//!   duplicate [`duplicate`] dropped).
//! - Two connections to one peer id: keep the one [`duplicate`] says, close the other.
//!
//! # Invariants
//! - A discovered entry (tracker, DHT, PEX) is dialled only while fewer than
//!   [`DialConfig::max_peers`] connections are open; a due one above the bound is
//!   deferred by [`DialConfig::full_recheck`]. Configured entries ignore the bound.
//! - When [`Dialer::poll_dial`] returns `None`, nothing is waiting to be dialled: the
//!   queue of due entries is empty (so it never holds more than the book's entries).
//! - The address book's own bounds, back-off and aging hold ([`super::address_book`]).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use super::address_book::{AddressBook, Admission, BookConfig, Entry, EntryId, Source};
use super::Time;
use crate::base::PeerId;

/// Default bound on a node's connections, inbound and outbound: enough for the choker's
/// unchoke slots many times over, small enough that a tracker's 50 peers and PEX fill
/// it without every node knowing every other (the node's `MAX_PEERS`).
pub const DEFAULT_MAX_PEERS: usize = 60;

/// The early re-announce policy, shared by the node's tracker thread
/// (`discovery::announcer`) and the simulator's tracker discovery: a leecher with
/// `open` connections (inbound, outbound and dials in progress) asks its trackers for
/// more peers before the announce interval is over when it holds fewer than a quarter
/// of `max_peers` (rounded up; at least one, so a node with none always asks). The
/// driver still waits out the tracker's `min interval` (BEP 3 tracker answer; the
/// simulator's is half the interval) between two announces; a seeder never asks
/// early, since leechers come to it.
pub fn wants_more_peers(open: usize, max_peers: usize, complete: bool) -> bool {
    !complete && open < max_peers.max(1).div_ceil(4)
}

/// Tunables of the dial policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DialConfig {
    /// Most open connections (inbound, outbound and dials in progress) before
    /// discovered addresses wait; at least 1.
    pub max_peers: usize,
    /// How long a due discovered entry waits when the bound is reached: 1 s, a few
    /// choker rounds, long enough that a full node does not spin on its book.
    pub full_recheck: Duration,
}

impl Default for DialConfig {
    /// [`DEFAULT_MAX_PEERS`] connections, 1 s recheck.
    fn default() -> Self {
        DialConfig {
            max_peers: DEFAULT_MAX_PEERS,
            full_recheck: Duration::from_secs(1),
        }
    }
}

/// Counts of what the dialer decided, for reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DialStats {
    /// Entries handed out to dial.
    pub dials: u64,
    /// Dials or connections reported closed before a handshake, or failed.
    pub failures: u64,
    /// Due discovered entries deferred at the connection bound.
    pub deferred: u64,
}

/// Which of two connections to one peer id stays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// The connection that just completed its handshake.
    New,
    /// The one open before it.
    Existing,
}

/// Two connections to the peer `theirs` (we are `ours`): the new one (`new_outbound`:
/// we dialled it) and an existing one. Both ends decide alike: of two connections in
/// the same direction the existing stays; otherwise the one dialled by the peer with
/// the smaller id.
pub fn duplicate(
    ours: PeerId,
    theirs: PeerId,
    new_outbound: bool,
    existing_outbound: bool,
) -> Keep {
    let drop_new = new_outbound == existing_outbound || new_outbound != (ours < theirs);
    if drop_new {
        Keep::Existing
    } else {
        Keep::New
    }
}

/// The dial policy over an [`AddressBook`] (see the module docs).
#[derive(Debug)]
pub struct Dialer {
    config: DialConfig,
    book: AddressBook,
    /// Entries to dial, preferred first, with their addresses (an entry removed from the
    /// book meanwhile, its slot reused, is skipped). Empty after `poll_dial` says `None`.
    ready: VecDeque<(EntryId, SocketAddr)>,
    stats: DialStats,
}

impl Dialer {
    /// A dialer with an empty book.
    pub fn new(config: DialConfig, book: BookConfig) -> Self {
        Dialer {
            config: DialConfig {
                max_peers: config.max_peers.max(1),
                ..config
            },
            book: AddressBook::new(book),
            ready: VecDeque::new(),
            stats: DialStats::default(),
        }
    }

    /// The address book.
    pub fn book(&self) -> &AddressBook {
        &self.book
    }

    /// The policy's tunables.
    pub fn config(&self) -> &DialConfig {
        &self.config
    }

    /// What was decided so far.
    pub fn stats(&self) -> DialStats {
        self.stats
    }

    /// Whether `open` connections leave room for one more (inbound or discovered).
    pub fn below_bound(&self, open: usize) -> bool {
        open < self.config.max_peers
    }

    /// Offers `addr` from `source`. `known`: the address is our own or an open
    /// connection's listen address (a discovered one is then not admitted, unless
    /// the book has it already). A new or revived entry is queued for
    /// [`Dialer::poll_dial`].
    pub fn handle_addr(&mut self, addr: SocketAddr, source: Source, known: bool) -> Admission {
        if source != Source::Configured && known && self.book.find(addr).is_none() {
            return Admission::Known;
        }
        let admission = self.book.admit(addr, source);
        match admission {
            Admission::New(id) => self.ready.push_back((id, addr)),
            Admission::Revived(id) => {
                if !self.book.get(id).is_some_and(|e| e.connected) {
                    self.ready.push_back((id, addr));
                }
            }
            Admission::Known | Admission::Refused => {}
        }
        admission
    }

    /// Forgets aged-out entries and queues those due a dial at `now` (preferred
    /// sources first).
    pub fn handle_timeout(&mut self, now: Time) {
        self.book.handle_timeout(now);
        for id in self.book.due(now) {
            if let Some(e) = self.book.get(id) {
                self.ready.push_back((id, e.addr));
            }
        }
    }

    /// The next entry to dial at `now` with `open` connections, or `None` when nothing
    /// is left to dial (discovered entries above the bound are deferred meanwhile).
    pub fn poll_dial(&mut self, now: Time, open: usize) -> Option<(EntryId, SocketAddr)> {
        while let Some((id, addr)) = self.ready.pop_front() {
            let Some(e) = self.book.get(id).filter(|e| e.addr == addr) else {
                continue;
            };
            if e.connected || e.retired_at.is_some() {
                continue;
            }
            if e.source == Source::Configured || self.below_bound(open) {
                self.stats.dials += 1;
                return Some((id, addr));
            }
            self.stats.deferred += 1;
            self.book.defer(id, now + self.config.full_recheck);
        }
        None
    }

    /// The earliest scheduled dial (the driver calls [`Dialer::handle_timeout`] then).
    pub fn poll_timeout(&self) -> Option<Time> {
        self.book.poll_timeout()
    }

    /// The entry `id`, if it is in the book.
    pub fn entry(&self, id: EntryId) -> Option<&Entry> {
        self.book.get(id)
    }

    /// A connection to entry `id` was opened.
    pub fn on_dialled(&mut self, id: EntryId) {
        self.book.on_dialled(id);
    }

    /// Entry `id`'s connection completed its handshake: its back-off starts over.
    pub fn on_handshake(&mut self, id: EntryId) {
        self.book.on_handshake(id);
    }

    /// Entry `id`'s dial failed or its connection closed at `now`: redial with back-off
    /// while `redial` (the download is incomplete), or retire (see the book's policy).
    pub fn on_closed(&mut self, now: Time, id: EntryId, redial: bool) {
        if self.book.get(id).is_some_and(|e| !e.connected) {
            self.stats.failures += 1;
        }
        self.book.on_closed(now, id, redial);
    }

    /// Never dials entry `id` again.
    pub fn retire(&mut self, now: Time, id: EntryId) {
        self.book.retire(now, id);
    }
}

#[cfg(test)]
mod tests;
