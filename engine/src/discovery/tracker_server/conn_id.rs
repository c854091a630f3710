//! Stateless BEP 15 connection ids: a keyed hash of the client IP address and
//! the current minute, so the tracker keeps no per-client state and a spoofed
//! source address cannot announce (it never sees the connect response).
//!
//! The port is left out, as opentracker and aquatic do: libtorrent may send the
//! connect and the announce from different local sockets of one host.

use std::net::{IpAddr, SocketAddr};

use sha1::{Digest, Sha1};

use crate::core::time::Time;
use crate::wire::tracker::udp::ConnectionId;

/// Length of one validity epoch in nanoseconds: 60 s. An id is accepted in its
/// epoch and the next, so for 60 to 120 s (BEP 15: clients use an id for up
/// to a minute).
const EPOCH_NANOS: u64 = 60_000_000_000;

/// Issues and checks connection ids (BEP 15).
#[derive(Clone, Debug)]
pub struct ConnectionIds {
    secret: [u8; 16],
}

impl ConnectionIds {
    /// A generator keyed by `secret` (random per tracker process).
    pub fn new(secret: [u8; 16]) -> Self {
        Self { secret }
    }

    fn mac(&self, epoch: u64, peer: SocketAddr) -> ConnectionId {
        let mut h = Sha1::new();
        h.update(self.secret);
        h.update(epoch.to_be_bytes());
        match peer.ip() {
            IpAddr::V4(ip) => h.update(ip.octets()),
            IpAddr::V6(ip) => h.update(ip.octets()),
        }
        let digest = h.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
        ConnectionId(u64::from_be_bytes(first))
    }

    /// The id for `peer` (its IP address) at `now`.
    pub fn issue(&self, now: Time, peer: SocketAddr) -> ConnectionId {
        self.mac(now.as_nanos() / EPOCH_NANOS, peer)
    }

    /// Whether `id` was issued to `peer` in this epoch or the previous one.
    pub fn is_valid(&self, now: Time, peer: SocketAddr, id: ConnectionId) -> bool {
        let epoch = now.as_nanos() / EPOCH_NANOS;
        id == self.mac(epoch, peer) || (epoch > 0 && id == self.mac(epoch - 1, peer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_expire_after_two_epochs_and_bind_the_address() {
        let ids = ConnectionIds::new([7; 16]);
        let a: SocketAddr = "127.0.0.1:1000".parse().unwrap();
        let b: SocketAddr = "127.0.0.2:1000".parse().unwrap();
        let t0 = Time::from_nanos(5);
        let id = ids.issue(t0, a);
        assert!(ids.is_valid(t0, a, id));
        assert!(!ids.is_valid(t0, b, id));
        assert!(ids.is_valid(Time::from_nanos(EPOCH_NANOS + 1), a, id));
        assert!(!ids.is_valid(Time::from_nanos(2 * EPOCH_NANOS + 1), a, id));
    }
}
