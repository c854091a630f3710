//! Peer exchange schedule (BEP 11, `ut_pex`), sans-IO: when each peer is due its next
//! message and what it has been told.
//!
//! Each peer that advertised `ut_pex` gets, every interval, the listen addresses of
//! our connected peers it has not been told about (`added`, at most
//! [`MAX_ADDED_PER_MESSAGE`], the rest next time) and those it was told about that are
//! gone (`dropped`, as many at most). Between p2pe nodes the interval is the node's own
//! (2 s in the datacenter profile); with other clients it is BEP 11's one minute
//! ([`BEP11_INTERVAL`]: libtorrent disconnects peers that send PEX more often).
//!
//! Bound: a peer's told-set holds only addresses of our current peer list (those that
//! left it are dropped and forgotten), so it never exceeds that list.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use super::Time;

/// BEP 11: "at most 50 added peers" per message.
pub const MAX_ADDED_PER_MESSAGE: usize = 50;

/// BEP 11's interval toward clients other than p2pe: one message a minute.
pub const BEP11_INTERVAL: Duration = Duration::from_secs(60);

/// The interval between p2pe nodes in the datacenter profile: a fleet on one fabric
/// learns its peers within seconds (the messages are a few hundred bytes). The node
/// and the simulator's tracker discovery both use it.
pub const DATACENTER_INTERVAL: Duration = Duration::from_secs(2);

/// One peer's PEX schedule.
#[derive(Debug, Clone)]
pub struct PexSchedule {
    every: Duration,
    next_at: Time,
    /// Listen addresses this peer has been told about.
    told: HashSet<SocketAddr>,
}

/// One `ut_pex` message's content: addresses added and dropped since the last one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PexDelta<F> {
    /// Newly connected peers (with the caller's per-address flags), at most
    /// [`MAX_ADDED_PER_MESSAGE`].
    pub added: Vec<(SocketAddr, F)>,
    /// Peers told before that are gone, at most [`MAX_ADDED_PER_MESSAGE`].
    pub dropped: Vec<SocketAddr>,
}

impl PexSchedule {
    /// A schedule started at `now`: the first message is due one interval later;
    /// `interval` toward a p2pe peer, [`BEP11_INTERVAL`] toward any other.
    pub fn new(now: Time, interval: Duration, is_p2pe: bool) -> Self {
        let every = if is_p2pe { interval } else { BEP11_INTERVAL };
        PexSchedule {
            every,
            next_at: now + every,
            told: HashSet::new(),
        }
    }

    /// When the next message is due.
    pub fn next_at(&self) -> Time {
        self.next_at
    }

    /// If due at `now`: schedules the next one and returns the message, `None` when
    /// not due or nothing changed for this peer. `current` is our peer list (sorted,
    /// no duplicates) and `current_set` the same addresses; `own` (the recipient's
    /// listen address) is never advertised to it.
    pub fn poll<F: Copy>(
        &mut self,
        now: Time,
        own: Option<SocketAddr>,
        current: &[(SocketAddr, F)],
        current_set: &HashSet<SocketAddr>,
    ) -> Option<PexDelta<F>> {
        if now < self.next_at {
            return None;
        }
        self.next_at = now + self.every;
        let added: Vec<(SocketAddr, F)> = current
            .iter()
            .filter(|(a, _)| Some(*a) != own && !self.told.contains(a))
            .take(MAX_ADDED_PER_MESSAGE)
            .copied()
            .collect();
        let dropped: Vec<SocketAddr> = self
            .told
            .iter()
            .filter(|a| !current_set.contains(a))
            .take(MAX_ADDED_PER_MESSAGE)
            .copied()
            .collect();
        if added.is_empty() && dropped.is_empty() {
            return None;
        }
        for (a, _) in &added {
            self.told.insert(*a);
        }
        for a in &dropped {
            self.told.remove(a);
        }
        Some(PexDelta { added, dropped })
    }

    /// Whether `addr` has been told to this peer (and not dropped since).
    pub fn has_told(&self, addr: &SocketAddr) -> bool {
        self.told.contains(addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(i: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], 1000 + i))
    }

    fn s(secs: u64) -> Time {
        Time::ZERO + Duration::from_secs(secs)
    }

    #[test]
    fn at_most_50_added_then_the_rest_then_dropped() {
        let mut p = PexSchedule::new(Time::ZERO, Duration::from_secs(2), true);
        let own = Some(addr(0));
        // 70 peers plus the recipient itself, which is never advertised to itself.
        let current: Vec<_> = (0..=70).map(|i| (addr(i), ())).collect();
        let set: HashSet<_> = current.iter().map(|(a, _)| *a).collect();
        assert!(p.poll(s(1), own, &current, &set).is_none(), "not due yet");
        let first = p.poll(s(2), own, &current, &set).unwrap();
        assert_eq!(first.added.len(), MAX_ADDED_PER_MESSAGE);
        assert!(
            p.poll(s(3), own, &current, &set).is_none(),
            "next due at 4 s"
        );
        assert_eq!(p.poll(s(4), own, &current, &set).unwrap().added.len(), 20);
        assert!(p.poll(s(6), own, &current, &set).is_none(), "nothing new");
        let fewer = &current[..60];
        let set: HashSet<_> = fewer.iter().map(|(a, _)| *a).collect();
        let third = p.poll(s(8), own, fewer, &set).unwrap();
        assert!(third.added.is_empty());
        assert_eq!(third.dropped.len(), 11);
        assert!(!p.has_told(&addr(0)));
        assert!(!p.has_told(&addr(65)));
    }

    #[test]
    fn other_clients_get_bep_11s_minute() {
        let mut p = PexSchedule::new(Time::ZERO, Duration::from_secs(2), false);
        assert_eq!(p.next_at(), s(60));
        let current = vec![(addr(1), ())];
        let set: HashSet<_> = current.iter().map(|(a, _)| *a).collect();
        assert!(p.poll(s(59), None, &current, &set).is_none());
        assert!(p.poll(s(60), None, &current, &set).is_some());
        assert_eq!(p.next_at(), s(120));
    }
}
