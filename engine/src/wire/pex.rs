//! Peer exchange (BEP 11): the `ut_pex` extended message payload, a bencoded
//! dictionary of compact peers. Pure: no I/O.
//!
//! Keys: `added` / `added6` (6- / 18-byte compact peers), `added.f` /
//! `added6.f` (one flag byte per added peer), `dropped` / `dropped6`.
//!
//! # Invariants
//!
//! - Decoding never panics on peer input; the payload is capped at
//!   [`MAX_PEX_BYTES`] and each list at [`MAX_PEX_PEERS`] peers (extra peers
//!   are dropped, not an error: BEP 11 asks senders for at most 50, and some
//!   send more).
//! - Decoded `added` lists IPv4 peers before IPv6 peers; a missing or short
//!   flags string reads as flags 0 for the peers it does not cover.
//! - `from_bencode(to_bencode(m)) == m` for messages within the caps whose
//!   IPv4 peers come first (proptest).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bendy::decoding::{Decoder, Object};

/// Largest `ut_pex` payload accepted, in bytes: 64 KiB (BEP 11 messages of 50
/// added and 50 dropped peers of both families are under 3 KiB).
pub const MAX_PEX_BYTES: usize = 64 * 1024;

/// Most peers kept from one list (`added`, `added6`, `dropped`, `dropped6`).
pub const MAX_PEX_PEERS: usize = 200;

/// Flags of an added peer (BEP 11 `added.f`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct PexFlags(pub u8);

impl PexFlags {
    /// The peer prefers encrypted connections.
    pub const PREFERS_ENCRYPTION: u8 = 0x01;
    /// The peer is a seed or upload-only.
    pub const SEED: u8 = 0x02;
    /// The peer supports uTP.
    pub const UTP: u8 = 0x04;
    /// The peer supports `ut_holepunch`.
    pub const HOLEPUNCH: u8 = 0x08;
    /// The peer was reached by an outgoing connection (it is connectable).
    pub const REACHABLE: u8 = 0x10;

    /// Whether all bits of `flag` are set.
    pub fn has(self, flag: u8) -> bool {
        self.0 & flag == flag
    }
}

/// One `ut_pex` message (BEP 11).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PexMessage {
    /// Peers the sender connected to since its last message, with flags.
    pub added: Vec<(SocketAddr, PexFlags)>,
    /// Peers the sender disconnected from since its last message.
    pub dropped: Vec<SocketAddr>,
}

/// Why a `ut_pex` payload was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PexError {
    /// Not one valid bencoded dictionary.
    #[error("bad bencode: {0}")]
    Bencode(String),
    /// A key has the wrong type or a length not a multiple of its peer size.
    #[error("bad field `{0}`")]
    BadField(&'static str),
    /// Payload longer than [`MAX_PEX_BYTES`].
    #[error("payload of {0} bytes exceeds the limit")]
    TooLong(usize),
}

fn compact(raw: &[u8], v6: bool, field: &'static str) -> Result<Vec<SocketAddr>, PexError> {
    let chunk = if v6 { 18 } else { 6 };
    if !raw.len().is_multiple_of(chunk) {
        return Err(PexError::BadField(field));
    }
    let mut out = Vec::with_capacity((raw.len() / chunk).min(MAX_PEX_PEERS));
    for entry in raw.chunks_exact(chunk).take(MAX_PEX_PEERS) {
        let (ip, port) = entry.split_at(chunk - 2);
        let port = u16::from_be_bytes(port.try_into().map_err(|_| PexError::BadField(field))?);
        let ip = if v6 {
            let o: [u8; 16] = ip.try_into().map_err(|_| PexError::BadField(field))?;
            IpAddr::V6(Ipv6Addr::from(o))
        } else {
            let o: [u8; 4] = ip.try_into().map_err(|_| PexError::BadField(field))?;
            IpAddr::V4(Ipv4Addr::from(o))
        };
        out.push(SocketAddr::new(ip, port));
    }
    Ok(out)
}

fn put(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    crate::wire::bencode::key_bytes(out, key.as_bytes(), value);
}

fn push_compact(buf: &mut Vec<u8>, peer: &SocketAddr) {
    match peer.ip() {
        IpAddr::V4(ip) => buf.extend_from_slice(&ip.octets()),
        IpAddr::V6(ip) => buf.extend_from_slice(&ip.octets()),
    }
    buf.extend_from_slice(&peer.port().to_be_bytes());
}

/// The raw byte strings of a payload, by key.
#[derive(Default)]
struct Raw<'a> {
    added: &'a [u8],
    added_f: &'a [u8],
    added6: &'a [u8],
    added6_f: &'a [u8],
    dropped: &'a [u8],
    dropped6: &'a [u8],
}

impl PexMessage {
    /// Decodes a `ut_pex` payload (BEP 11). Unknown keys are ignored.
    ///
    /// # Errors
    /// [`PexError::TooLong`] past [`MAX_PEX_BYTES`]; [`PexError::Bencode`] for
    /// invalid bencode or a non-dictionary; [`PexError::BadField`] for a known
    /// key that is not a byte string or has a bad length.
    pub fn from_bencode(payload: &[u8]) -> Result<Self, PexError> {
        if payload.len() > MAX_PEX_BYTES {
            return Err(PexError::TooLong(payload.len()));
        }
        let bencode = |e: bendy::decoding::Error| PexError::Bencode(e.to_string());
        let mut decoder = Decoder::new(payload).with_max_depth(4);
        let mut raw = Raw::default();
        {
            let Some(Object::Dict(mut dict)) = decoder.next_object().map_err(bencode)? else {
                return Err(PexError::Bencode("not a dictionary".into()));
            };
            while let Some((key, value)) = dict.next_pair().map_err(bencode)? {
                let (slot, name) = match key {
                    b"added" => (&mut raw.added, "added"),
                    b"added.f" => (&mut raw.added_f, "added.f"),
                    b"added6" => (&mut raw.added6, "added6"),
                    b"added6.f" => (&mut raw.added6_f, "added6.f"),
                    b"dropped" => (&mut raw.dropped, "dropped"),
                    b"dropped6" => (&mut raw.dropped6, "dropped6"),
                    _ => continue,
                };
                match value {
                    Object::Bytes(bytes) => *slot = bytes,
                    _ => return Err(PexError::BadField(name)),
                }
            }
        }
        if decoder.next_object().map_err(bencode)?.is_some() {
            return Err(PexError::Bencode("trailing bytes".into()));
        }
        let flagged = |peers: Vec<SocketAddr>, flags: &[u8]| {
            peers
                .into_iter()
                .enumerate()
                .map(|(i, p)| (p, PexFlags(flags.get(i).copied().unwrap_or(0))))
                .collect::<Vec<_>>()
        };
        let mut added = flagged(compact(raw.added, false, "added")?, raw.added_f);
        added.extend(flagged(compact(raw.added6, true, "added6")?, raw.added6_f));
        let mut dropped = compact(raw.dropped, false, "dropped")?;
        dropped.extend(compact(raw.dropped6, true, "dropped6")?);
        Ok(PexMessage { added, dropped })
    }

    /// Encodes the payload (BEP 11), keys sorted; empty IPv6 lists are omitted,
    /// `added`, `added.f` and `dropped` are always present.
    pub fn to_bencode(&self) -> Vec<u8> {
        let (mut a4, mut f4, mut a6, mut f6, mut d4, mut d6) = (
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
        );
        for (peer, flags) in &self.added {
            let (buf, fbuf) = if peer.is_ipv4() {
                (&mut a4, &mut f4)
            } else {
                (&mut a6, &mut f6)
            };
            push_compact(buf, peer);
            fbuf.push(flags.0);
        }
        for peer in &self.dropped {
            push_compact(if peer.is_ipv4() { &mut d4 } else { &mut d6 }, peer);
        }
        let mut out = vec![b'd'];
        put(&mut out, "added", &a4);
        put(&mut out, "added.f", &f4);
        if !a6.is_empty() {
            put(&mut out, "added6", &a6);
            put(&mut out, "added6.f", &f6);
        }
        put(&mut out, "dropped", &d4);
        if !d6.is_empty() {
            put(&mut out, "dropped6", &d6);
        }
        out.push(b'e');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn peer(v6: bool) -> impl Strategy<Value = SocketAddr> {
        (any::<[u8; 16]>(), any::<u16>()).prop_map(move |(o, port)| {
            let ip = if v6 {
                IpAddr::V6(Ipv6Addr::from(o))
            } else {
                IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], o[3]))
            };
            SocketAddr::new(ip, port)
        })
    }

    proptest! {
        #[test]
        fn round_trips(
            a4 in proptest::collection::vec((peer(false), any::<u8>()), 0..60),
            a6 in proptest::collection::vec((peer(true), any::<u8>()), 0..60),
            d4 in proptest::collection::vec(peer(false), 0..60),
            d6 in proptest::collection::vec(peer(true), 0..60),
        ) {
            let msg = PexMessage {
                added: a4.into_iter().chain(a6).map(|(p, f)| (p, PexFlags(f))).collect(),
                dropped: d4.into_iter().chain(d6).collect(),
            };
            prop_assert_eq!(PexMessage::from_bencode(&msg.to_bencode()).unwrap(), msg);
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = PexMessage::from_bencode(&bytes);
        }
    }

    #[test]
    fn libtorrent_style_payload_with_short_flags() {
        let payload =
            b"d5:added12:\x7f\x00\x00\x01\x1a\xe1\x0a\x00\x00\x02\x00\x507:added.f1:\x12e";
        let msg = PexMessage::from_bencode(payload).unwrap();
        assert_eq!(msg.added.len(), 2);
        assert!(msg.added[0].1.has(PexFlags::SEED | PexFlags::REACHABLE));
        assert_eq!(msg.added[1].1, PexFlags(0));
        assert!(msg.dropped.is_empty());
        assert_eq!(
            PexMessage::from_bencode(b"d5:added5:abcdee"),
            Err(PexError::BadField("added"))
        );
        assert!(PexMessage::from_bencode(b"le").is_err());
    }

    #[test]
    fn oversized_lists_are_capped() {
        let msg = PexMessage {
            added: vec![],
            dropped: (0..MAX_PEX_PEERS as u32 + 5)
                .map(|i| SocketAddr::new(Ipv4Addr::from(i).into(), 1))
                .collect(),
        };
        let back = PexMessage::from_bencode(&msg.to_bencode()).unwrap();
        assert_eq!(back.dropped.len(), MAX_PEX_PEERS);
    }
}
