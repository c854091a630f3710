//! Connection slots: which connections time out, which address may connect, and which
//! idle connection gives its slot up to a new peer (issue 11: a few dozen idle or
//! handshake-only sockets must not lock honest peers out of a seed).
//!
//! Sans-IO like the rest of `core`: the driver keeps a [`ConnActivity`] per connection,
//! stamped with its own [`Time`], and asks [`expired`], [`ip_allows`] and
//! [`reclaim_victim`]; nothing here reads a clock or touches a socket.
//!
//! Policy (libtorrent's `handshake_timeout`, `inactivity_timeout` and "connection
//! slots are reclaimed from peers that are not useful" rules, sized for a datacenter):
//! - a connection without a complete BEP 3 handshake after
//!   [`SlotConfig::handshake_timeout`] is closed;
//! - a connection from which nothing at all (not even a BEP 3 keep-alive) arrived for
//!   [`SlotConfig::inactivity_timeout`] is closed;
//! - when every slot is taken and a new peer arrives, the oldest *idle* connection
//!   gives its slot up: one that gave us no payload, took none, and is interested
//!   neither way (or is still without a handshake), older than
//!   [`SlotConfig::reclaim_grace`]; a new peer is refused only if no connection is idle;
//! - at most [`SlotConfig::max_per_ip`] connections per remote IP address (loopback
//!   addresses are exempt unless [`SlotConfig::cap_loopback`]: one host running many
//!   nodes is the test and single-machine case, not an attack surface).

use std::net::IpAddr;
use std::time::Duration;

use super::Time;

/// Tunables of the slot policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotConfig {
    /// Longest time from connect to a complete 68-byte handshake (libtorrent: 10 s).
    pub handshake_timeout: Duration,
    /// Longest silence from a connected peer: two BEP 3 keep-alive intervals (120 s
    /// each), so a live peer is never closed for idling.
    pub inactivity_timeout: Duration,
    /// Youngest age at which an idle connection may be reclaimed: long enough for a
    /// fresh peer on a datacenter link to exchange handshakes and bitfields and say
    /// `interested`.
    pub reclaim_grace: Duration,
    /// Most connections per remote IP address (0: no cap). A datacenter host runs one
    /// node; 8 leaves room for several nodes and reconnects on one host.
    pub max_per_ip: usize,
    /// Whether loopback addresses (127.0.0.0/8, ::1) count against `max_per_ip`.
    pub cap_loopback: bool,
    /// How long after its handshake a peer that set the BEP 10 bit has to send its
    /// extended handshake before it is taken as a plain peer (16 KiB requests, no PEX).
    pub ext_handshake_wait: Duration,
}

impl Default for SlotConfig {
    /// 10 s handshake, 240 s inactivity, 2 s grace, 8 per IP, loopback exempt, 2 s for
    /// a BEP 10 extended handshake.
    fn default() -> Self {
        SlotConfig {
            handshake_timeout: Duration::from_secs(10),
            inactivity_timeout: Duration::from_secs(240),
            reclaim_grace: Duration::from_secs(2),
            max_per_ip: 8,
            cap_loopback: false,
            ext_handshake_wait: Duration::from_secs(2),
        }
    }
}

/// What the slot policy needs to know about one connection, kept by the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnActivity {
    /// When the connection was opened (accepted or dialled).
    pub opened_at: Time,
    /// When the peer's handshake arrived (`None`: not yet).
    pub handshake_at: Option<Time>,
    /// When any byte last arrived from the peer.
    pub last_recv_at: Time,
    /// Payload bytes received from the peer (`piece` messages).
    pub down_payload_bytes: u64,
    /// Payload bytes sent to the peer.
    pub up_payload_bytes: u64,
    /// We are interested in the peer or it is in us (BEP 3), as the core last said.
    pub interested: bool,
}

impl ConnActivity {
    /// A connection opened at `now`, nothing received yet.
    pub fn new(now: Time) -> Self {
        ConnActivity {
            opened_at: now,
            handshake_at: None,
            last_recv_at: now,
            down_payload_bytes: 0,
            up_payload_bytes: 0,
            interested: false,
        }
    }
}

/// Why a connection is closed by [`expired`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// No complete handshake within [`SlotConfig::handshake_timeout`].
    Handshake,
    /// Nothing received for [`SlotConfig::inactivity_timeout`].
    Inactive,
}

/// Whether the connection described by `a` is to be closed at `now`, and why.
pub fn expired(config: &SlotConfig, now: Time, a: &ConnActivity) -> Option<Expiry> {
    if a.handshake_at.is_none()
        && now.saturating_duration_since(a.opened_at) >= config.handshake_timeout
    {
        return Some(Expiry::Handshake);
    }
    if now.saturating_duration_since(a.last_recv_at) >= config.inactivity_timeout {
        return Some(Expiry::Inactive);
    }
    None
}

/// Whether a peer that set the BEP 10 bit and has not sent its extended handshake is
/// to be taken as a plain peer at `now` ([`SlotConfig::ext_handshake_wait`] after its
/// handshake).
pub fn ext_handshake_overdue(config: &SlotConfig, now: Time, a: &ConnActivity) -> bool {
    a.handshake_at
        .is_some_and(|t| now.saturating_duration_since(t) >= config.ext_handshake_wait)
}

/// Whether the connection is idle (see the module docs): it may give its slot up.
pub fn is_idle(config: &SlotConfig, now: Time, a: &ConnActivity) -> bool {
    let useless = a.handshake_at.is_none()
        || (a.down_payload_bytes == 0 && a.up_payload_bytes == 0 && !a.interested);
    useless && now.saturating_duration_since(a.opened_at) >= config.reclaim_grace
}

/// The connection to close so that a new peer gets a slot: the oldest idle one, or
/// `None` (refuse the new peer). Ties go to the first in iteration order.
pub fn reclaim_victim<'a, K: Copy + 'a>(
    config: &SlotConfig,
    now: Time,
    conns: impl IntoIterator<Item = (K, &'a ConnActivity)>,
) -> Option<K> {
    conns
        .into_iter()
        .filter(|(_, a)| is_idle(config, now, a))
        .min_by_key(|(_, a)| a.opened_at)
        .map(|(k, _)| k)
}

/// Whether one more connection from `ip` is allowed while `same_ip` connections from
/// it are open.
pub fn ip_allows(config: &SlotConfig, ip: IpAddr, same_ip: usize) -> bool {
    config.max_per_ip == 0
        || (ip.is_loopback() && !config.cap_loopback)
        || same_ip < config.max_per_ip
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: u64) -> Time {
        Time::ZERO + Duration::from_secs(s)
    }

    #[test]
    fn handshake_and_inactivity_timeouts() {
        let c = SlotConfig::default();
        let mut a = ConnActivity::new(t(0));
        assert_eq!(expired(&c, t(9), &a), None);
        assert_eq!(expired(&c, t(10), &a), Some(Expiry::Handshake));
        a.handshake_at = Some(t(1));
        a.last_recv_at = t(1);
        assert_eq!(expired(&c, t(100), &a), None);
        assert_eq!(expired(&c, t(241), &a), Some(Expiry::Inactive));
        a.last_recv_at = t(200);
        assert_eq!(expired(&c, t(241), &a), None, "a keep-alive resets it");
    }

    #[test]
    fn the_oldest_idle_connection_is_reclaimed_never_a_useful_one() {
        let c = SlotConfig::default();
        let mut useful = ConnActivity::new(t(0));
        useful.handshake_at = Some(t(0));
        useful.interested = true;
        let mut seeder_pair = ConnActivity::new(t(0));
        seeder_pair.handshake_at = Some(t(0));
        seeder_pair.up_payload_bytes = 1;
        let mut idle_old = ConnActivity::new(t(1));
        idle_old.handshake_at = Some(t(1));
        let no_handshake = ConnActivity::new(t(3));
        let young = ConnActivity::new(t(9));
        let conns = [
            (1, &useful),
            (2, &seeder_pair),
            (3, &idle_old),
            (4, &no_handshake),
            (5, &young),
        ];
        assert_eq!(reclaim_victim(&c, t(10), conns), Some(3));
        assert_eq!(
            reclaim_victim(&c, t(10), conns[3..].iter().copied()),
            Some(4)
        );
        assert_eq!(
            reclaim_victim(&c, t(10), [(5, &young)]),
            None,
            "within its grace"
        );
        assert_eq!(reclaim_victim(&c, t(10), conns[..2].iter().copied()), None);
    }

    #[test]
    fn per_ip_cap_exempts_loopback_unless_asked() {
        let mut c = SlotConfig::default();
        let remote: IpAddr = "198.18.0.7".parse().unwrap();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(ip_allows(&c, remote, 7));
        assert!(!ip_allows(&c, remote, 8));
        assert!(ip_allows(&c, lo, 100));
        c.cap_loopback = true;
        assert!(!ip_allows(&c, lo, 8));
        c.max_per_ip = 0;
        assert!(ip_allows(&c, remote, 1000));
    }
}
