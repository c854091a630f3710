//! The 68-byte BEP 3 handshake and its incremental decoder.

use bytes::BytesMut;

use super::{Decoder, DecoderLimits, WireError};
use crate::base::{InfoHash, PeerId};

/// BEP 3 protocol string.
const PSTR: &[u8; 19] = b"BitTorrent protocol";

/// BEP 3 handshake: `pstrlen=19`, `pstr`, 8 reserved bytes, info-hash,
/// peer id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Handshake {
    /// Reserved bytes; extension bits per BEP 6 and BEP 10.
    pub reserved: [u8; 8],
    /// SHA-1 of the bencoded info dictionary (v1).
    pub info_hash: InfoHash,
    /// The sender's peer id.
    pub peer_id: PeerId,
}

impl Handshake {
    /// Encoded length in bytes.
    pub const LEN_BYTES: usize = 68;

    /// A handshake advertising both the fast extension (BEP 6) and the
    /// extension protocol (BEP 10), as p2pe always sends.
    pub fn new(info_hash: InfoHash, peer_id: PeerId) -> Self {
        let mut hs = Self {
            reserved: [0; 8],
            info_hash,
            peer_id,
        };
        hs.set_fast(true);
        hs.set_extended(true);
        hs
    }

    /// Whether the BEP 6 fast extension bit (`reserved[7] & 0x04`) is set.
    pub fn supports_fast(&self) -> bool {
        self.reserved[7] & 0x04 != 0
    }

    /// Whether the BEP 10 extension protocol bit (`reserved[5] & 0x10`) is set.
    pub fn supports_extended(&self) -> bool {
        self.reserved[5] & 0x10 != 0
    }

    /// Sets or clears the BEP 6 fast extension bit.
    pub fn set_fast(&mut self, on: bool) {
        set_bit(&mut self.reserved[7], 0x04, on);
    }

    /// Sets or clears the BEP 10 extension protocol bit.
    pub fn set_extended(&mut self, on: bool) {
        set_bit(&mut self.reserved[5], 0x10, on);
    }

    /// The 68 encoded bytes.
    pub fn to_bytes(&self) -> [u8; Self::LEN_BYTES] {
        let mut out = [0u8; Self::LEN_BYTES];
        out[0] = 19;
        out[1..20].copy_from_slice(PSTR);
        out[20..28].copy_from_slice(&self.reserved);
        out[28..48].copy_from_slice(&self.info_hash.0);
        out[48..68].copy_from_slice(&self.peer_id.0);
        out
    }

    /// Appends the 68 encoded bytes to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_bytes());
    }

    /// Decodes exactly 68 bytes.
    ///
    /// # Errors
    ///
    /// [`WireError::BadHandshake`] if `bytes` is not 68 bytes long or does
    /// not start with `\x13BitTorrent protocol`.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let bytes: &[u8; Self::LEN_BYTES] =
            bytes.try_into().map_err(|_| WireError::BadHandshake {
                reason: "not 68 bytes",
            })?;
        check_prefix(bytes)?;
        let (_, rest) = bytes.split_at(20);
        let (reserved, rest) = rest.split_at(8);
        let (info_hash, peer_id) = rest.split_at(20);
        Ok(Self {
            reserved: to_array(reserved)?,
            info_hash: InfoHash(to_array(info_hash)?),
            peer_id: PeerId(to_array(peer_id)?),
        })
    }
}

fn set_bit(byte: &mut u8, mask: u8, on: bool) {
    if on {
        *byte |= mask;
    } else {
        *byte &= !mask;
    }
}

fn to_array<const N: usize>(s: &[u8]) -> Result<[u8; N], WireError> {
    s.try_into().map_err(|_| WireError::BadHandshake {
        reason: "truncated",
    })
}

/// Checks as much of `pstrlen` + `pstr` as `bytes` holds, so a non-BitTorrent
/// peer is rejected on its first byte rather than after 68.
fn check_prefix(bytes: &[u8]) -> Result<(), WireError> {
    let mut expected = [0u8; 20];
    expected[0] = 19;
    expected[1..].copy_from_slice(PSTR);
    let n = bytes.len().min(expected.len());
    match (bytes.first(), bytes.get(..n), expected.get(..n)) {
        (Some(&len), _, _) if len != 19 => Err(WireError::BadHandshake {
            reason: "pstrlen is not 19",
        }),
        (_, Some(got), Some(want)) if got != want => Err(WireError::BadHandshake {
            reason: "pstr is not \"BitTorrent protocol\"",
        }),
        _ => Ok(()),
    }
}

/// Incremental handshake decoder: buffers bytes until the 68-byte handshake
/// is complete, then hands its leftover bytes to a message [`Decoder`].
///
/// The split exists because a listening peer learns which torrent (and so
/// which [`DecoderLimits`]) applies only from the handshake's info-hash.
#[derive(Debug, Default)]
pub struct HandshakeDecoder {
    buf: BytesMut,
}

impl HandshakeDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The handshake, once all 68 bytes have arrived; `Ok(None)` until then.
    /// Bytes after it stay buffered for [`HandshakeDecoder::into_decoder`];
    /// once it returned `Some`, call that rather than this again.
    ///
    /// # Errors
    ///
    /// [`WireError::BadHandshake`] as soon as the buffered prefix differs from
    /// `\x13BitTorrent protocol`.
    pub fn next_handshake(&mut self) -> Result<Option<Handshake>, WireError> {
        check_prefix(&self.buf)?;
        if self.buf.len() < Handshake::LEN_BYTES {
            return Ok(None);
        }
        let bytes = self.buf.split_to(Handshake::LEN_BYTES);
        Handshake::decode(&bytes).map(Some)
    }

    /// A message decoder for the rest of the stream, seeded with any bytes
    /// received after the handshake.
    pub fn into_decoder(self, limits: DecoderLimits) -> Decoder {
        let mut dec = Decoder::new(limits);
        dec.receive_buf().unsplit(self.buf);
        dec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Handshake {
        Handshake::new(InfoHash([0xab; 20]), PeerId(*b"-P2PE01-abcdefghijkl"))
    }

    #[test]
    fn round_trip_and_bits() {
        let hs = sample();
        assert!(hs.supports_fast() && hs.supports_extended());
        let bytes = hs.to_bytes();
        assert_eq!(bytes[25], 0x10);
        assert_eq!(bytes[27], 0x04);
        assert_eq!(Handshake::decode(&bytes).unwrap(), hs);
        let mut plain = hs;
        plain.set_fast(false);
        plain.set_extended(false);
        assert_eq!(plain.reserved, [0; 8]);
    }

    #[test]
    fn bad_pstr_and_len_are_errors() {
        let mut bytes = sample().to_bytes();
        bytes[5] = b'x';
        assert!(matches!(
            Handshake::decode(&bytes),
            Err(WireError::BadHandshake { .. })
        ));
        assert!(matches!(
            Handshake::decode(&bytes[..67]),
            Err(WireError::BadHandshake { .. })
        ));
        let mut dec = HandshakeDecoder::new();
        dec.extend(b"GET / HTTP/1.1");
        assert!(matches!(
            dec.next_handshake(),
            Err(WireError::BadHandshake { .. })
        ));
    }

    #[test]
    fn incremental_with_leftover() {
        let mut stream = sample().to_bytes().to_vec();
        stream.extend_from_slice(&[0, 0, 0, 1, 1]); // unchoke
        let mut dec = HandshakeDecoder::new();
        let mut got = None;
        for chunk in stream.chunks(7) {
            dec.extend(chunk);
            if got.is_none() {
                got = dec.next_handshake().unwrap();
            }
        }
        assert_eq!(got, Some(sample()));
        let mut msgs = dec.into_decoder(DecoderLimits::new(8));
        assert_eq!(
            msgs.next_message().unwrap(),
            Some(super::super::Message::Control(
                super::super::PeerMessage::Unchoke
            ))
        );
    }
}
