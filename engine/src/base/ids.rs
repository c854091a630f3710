//! The two 20-byte identifiers of BEP 3: the info-hash that names a torrent
//! and the peer id a client picks for itself.
//!
//! Both are plain bytes on the wire (handshake, tracker announce, DHT); the
//! newtypes exist so that one cannot be passed where the other is meant.

use std::fmt;

use sha1::{Digest, Sha1};

use super::piece_hash::SHA1_LEN_BYTES;

/// The info-hash: SHA-1 of the raw bencoded `info` dictionary (BEP 3).
///
/// `Display` prints 40 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InfoHash(pub [u8; SHA1_LEN_BYTES]);

impl InfoHash {
    /// Hashes raw bencoded `info` bytes.
    pub fn of_info_bytes(info_bytes: &[u8]) -> Self {
        Self(Sha1::digest(info_bytes).into())
    }
}

impl fmt::Display for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InfoHash({self})")
    }
}

/// A peer id: the 20 bytes a client names itself with in the handshake and
/// in tracker announces (BEP 3 `peer_id`).
///
/// By convention (BEP 20) the first bytes name the client: Azureus style
/// `-XXvvvv-` (two letters for the client, four for its version; p2pe is
/// `-PE0001-`) followed by random bytes. Nothing enforces the convention:
/// any 20 bytes are a valid peer id.
///
/// `Display` prints the 20 bytes as text when every byte is printable ASCII
/// (most clients' ids), else 40 lowercase hex digits; the two forms cannot be
/// confused (20 characters against 40).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PeerId(pub [u8; PeerId::LEN_BYTES]);

impl PeerId {
    /// Length of a peer id in bytes (BEP 3).
    pub const LEN_BYTES: usize = 20;

    /// An Azureus-style peer id (BEP 20): the 8-byte `prefix` (such as
    /// `*b"-PE0001-"`) followed by 12 characters of `[0-9a-z]`, one drawn
    /// from each of the `random` bytes (modulo 36).
    pub fn azureus(prefix: [u8; 8], random: [u8; 12]) -> Self {
        const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
        let mut id = [0u8; Self::LEN_BYTES];
        id[..8].copy_from_slice(&prefix);
        for (dst, b) in id[8..].iter_mut().zip(random) {
            *dst = ALPHABET[usize::from(b) % ALPHABET.len()];
        }
        PeerId(id)
    }

    /// The client prefix of an Azureus-style id (BEP 20), such as
    /// `"-PE0001-"`: the first 8 bytes when they are `-`, six printable ASCII
    /// bytes and `-`; `None` for any other id.
    pub fn azureus_prefix(&self) -> Option<&str> {
        let p = &self.0[..8];
        let printable = p[1..7].iter().all(|b| b.is_ascii_graphic());
        if p[0] == b'-' && p[7] == b'-' && printable {
            std::str::from_utf8(p).ok()
        } else {
            None
        }
    }

    /// Whether every byte is printable ASCII (space to `~`), so that the id
    /// can be shown as text.
    pub fn is_printable(&self) -> bool {
        self.0.iter().all(|b| (0x20..0x7f).contains(b))
    }
}

impl From<[u8; PeerId::LEN_BYTES]> for PeerId {
    fn from(bytes: [u8; PeerId::LEN_BYTES]) -> Self {
        PeerId(bytes)
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_printable() {
            // Printable ASCII is valid UTF-8.
            f.write_str(std::str::from_utf8(&self.0).map_err(|_| fmt::Error)?)
        } else {
            f.write_str(&hex::encode(self.0))
        }
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_id_display_text_or_hex() {
        let id = PeerId(*b"-PE0001-abcdefghijkl");
        assert_eq!(id.to_string(), "-PE0001-abcdefghijkl");
        assert_eq!(format!("{id:?}"), "PeerId(-PE0001-abcdefghijkl)");
        assert_eq!(id.azureus_prefix(), Some("-PE0001-"));
        let raw = PeerId([0xab; 20]);
        assert_eq!(raw.to_string(), "ab".repeat(20));
        assert_eq!(raw.azureus_prefix(), None);
    }

    #[test]
    fn azureus_ids_keep_the_prefix() {
        let id = PeerId::azureus(*b"-PE0001-", [0, 35, 36, 255, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&id.0[..12], b"-PE0001-0z03");
        assert!(id.is_printable());
        assert_eq!(id.azureus_prefix(), Some("-PE0001-"));
    }

    #[test]
    fn info_hash_displays_hex() {
        let h = InfoHash([0x0f; 20]);
        assert_eq!(h.to_string(), "0f".repeat(20));
        assert_eq!(format!("{h:?}"), format!("InfoHash({})", "0f".repeat(20)));
    }
}
