//! Stateless BEP 15 connection ids: a keyed hash of the client IP address and
//! the current minute, so the tracker keeps no per-client state and a spoofed
//! source address cannot announce (it never sees the connect response).
//!
//! The port is left out, as opentracker and aquatic do: libtorrent may send the
//! connect and the announce from different local sockets of one host.
//!
//! The keyed hash is SipHash-2-4 (Aumasson and Bernstein, 2012), a pseudorandom
//! function made for short inputs under a 128-bit secret key: what a MAC of 12 or
//! 24 bytes needs, at ~20 ns where SHA-1 over the key and input took several
//! times that on every announce (perf/tracker.md). The key is drawn per process
//! and the input carries the minute, so ids rotate every minute as BEP 15
//! suggests, and an id from one process means nothing to another.

use std::net::{IpAddr, SocketAddr};

use crate::core::time::Time;
use crate::wire::tracker::udp::ConnectionId;

/// Length of one validity epoch in nanoseconds: 60 s. An id is accepted in its
/// epoch and the next, so for 60 to 120 s (BEP 15: clients use an id for up
/// to a minute).
const EPOCH_NANOS: u64 = 60_000_000_000;

/// Issues and checks connection ids (BEP 15).
#[derive(Clone, Debug)]
pub struct ConnectionIds {
    /// SipHash key halves, from the 16-byte secret (little-endian).
    k0: u64,
    k1: u64,
}

impl ConnectionIds {
    /// A generator keyed by `secret` (random per tracker process).
    pub fn new(secret: [u8; 16]) -> Self {
        let [a, b] = [&secret[..8], &secret[8..]].map(|half| {
            let mut w = [0u8; 8];
            w.copy_from_slice(half);
            u64::from_le_bytes(w)
        });
        Self { k0: a, k1: b }
    }

    /// SipHash-2-4 of the epoch (8 bytes) and the IP address (4 or 16 bytes):
    /// the two families differ in length, which the hash takes in.
    fn mac(&self, epoch: u64, peer: SocketAddr) -> ConnectionId {
        let mut input = [0u8; 24];
        input[..8].copy_from_slice(&epoch.to_le_bytes());
        let len = match peer.ip() {
            IpAddr::V4(ip) => {
                input[8..12].copy_from_slice(&ip.octets());
                12
            }
            IpAddr::V6(ip) => {
                input[8..24].copy_from_slice(&ip.octets());
                24
            }
        };
        ConnectionId(siphash24(
            self.k0,
            self.k1,
            input.get(..len).unwrap_or(&input),
        ))
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

/// One SipRound on the state `v`.
fn sip_round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

/// SipHash-2-4 of `data` under the key (`k0`, `k1`), as the reference
/// implementation computes it (little-endian words, the length in the last
/// byte of the final word).
fn siphash24(k0: u64, k1: u64, data: &[u8]) -> u64 {
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        let m = u64::from_le_bytes(b);
        v[3] ^= m;
        sip_round(&mut v);
        sip_round(&mut v);
        v[0] ^= m;
    }
    let mut last = [0u8; 8];
    let tail = words.remainder();
    last[..tail.len()].copy_from_slice(tail);
    // Only the low byte of the length enters (the reference does the same).
    last[7] = data.len() as u8;
    let m = u64::from_le_bytes(last);
    v[3] ^= m;
    sip_round(&mut v);
    sip_round(&mut v);
    v[0] ^= m;
    v[2] ^= 0xff;
    for _ in 0..4 {
        sip_round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
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
        // Another process's key: another id.
        assert_ne!(ConnectionIds::new([8; 16]).issue(t0, a), id);
        // The port is not bound (see the module docs); the family is.
        let a_other_port: SocketAddr = "127.0.0.1:2000".parse().unwrap();
        assert!(ids.is_valid(t0, a_other_port, id));
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:1000".parse().unwrap();
        assert!(!ids.is_valid(t0, mapped, id));
    }

    #[test]
    fn siphash_matches_the_reference_vectors() {
        // Key 00 01 .. 0f; message 00 01 .. (n-1): vectors of the SipHash paper's
        // reference implementation (vectors.h), as little-endian u64.
        let key: [u8; 16] = std::array::from_fn(|i| i as u8);
        let ids = ConnectionIds::new(key);
        let msg: Vec<u8> = (0u8..64).collect();
        let expected = [
            (0, 0x726f_db47_dd0e_0e31u64),
            (1, 0x74f8_39c5_93dc_67fd),
            (8, 0x93f5_f579_9a93_2462),
            (15, 0xa129_ca61_49be_45e5),
            (63, 0x958a_324c_eb06_4572),
        ];
        for (n, want) in expected {
            assert_eq!(siphash24(ids.k0, ids.k1, &msg[..n]), want, "length {n}");
        }
    }
}
