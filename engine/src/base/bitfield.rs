//! Fixed-length set of pieces, as carried by the BEP 3 `bitfield` message: the
//! peer-wire decoder builds it from the message's bytes (so a bad bitfield is a wire
//! error), the core keeps each peer's pieces in it, and the encoder writes it back.
//!
//! Invariant: bits at positions `>= len` are always zero, so whole-word operations
//! (`count_ones`, `and_not_count`) need no masking.

use super::PieceIndex;
use thiserror::Error;

/// Errors decoding a bitfield from the wire.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BitfieldError {
    /// The byte length is not `ceil(len_pieces / 8)`.
    #[error("bitfield is {got_bytes} bytes, expected {expected_bytes}")]
    Length {
        /// Bytes received.
        got_bytes: usize,
        /// Bytes required for the torrent's piece count.
        expected_bytes: usize,
    },
    /// A spare bit past the last piece is set (BEP 3: spare bits must be cleared).
    #[error("bitfield has spare bits set")]
    SpareBits,
}

/// A fixed-length bitset of pieces; bit `i` is piece `i`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Bitfield {
    words: Vec<u64>,
    len: u32,
    ones: u32,
}

impl Bitfield {
    /// An empty bitfield of `len_pieces` pieces (no piece set).
    pub fn new(len_pieces: u32) -> Self {
        Bitfield {
            words: vec![0; (len_pieces as usize).div_ceil(64)],
            len: len_pieces,
            ones: 0,
        }
    }

    /// A bitfield of `len_pieces` pieces with every piece set (a seeder's).
    pub fn full(len_pieces: u32) -> Self {
        let mut b = Bitfield::new(len_pieces);
        for w in b.words.iter_mut() {
            *w = u64::MAX;
        }
        b.clear_spare_bits();
        b.ones = len_pieces;
        b
    }

    /// Number of pieces (set or not).
    pub fn len(&self) -> u32 {
        self.len
    }

    /// True when the torrent has zero pieces.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `piece` is set; pieces out of range are reported as not set.
    pub fn get(&self, piece: PieceIndex) -> bool {
        let i = piece.0 as usize;
        match self.words.get(i / 64) {
            Some(w) if piece.0 < self.len => w & (1u64 << (i % 64)) != 0,
            _ => false,
        }
    }

    /// Sets `piece`; returns true if it was not set before. Out-of-range pieces are ignored
    /// (returns false): callers validate indices from the wire first.
    pub fn set(&mut self, piece: PieceIndex) -> bool {
        if piece.0 >= self.len {
            return false;
        }
        let i = piece.0 as usize;
        let Some(w) = self.words.get_mut(i / 64) else {
            return false;
        };
        let mask = 1u64 << (i % 64);
        let was = *w & mask != 0;
        *w |= mask;
        if !was {
            self.ones += 1;
        }
        !was
    }

    /// Clears `piece`; returns true if it was set before. Out-of-range pieces are ignored.
    pub fn clear(&mut self, piece: PieceIndex) -> bool {
        if piece.0 >= self.len {
            return false;
        }
        let i = piece.0 as usize;
        let Some(w) = self.words.get_mut(i / 64) else {
            return false;
        };
        let mask = 1u64 << (i % 64);
        let was = *w & mask != 0;
        *w &= !mask;
        if was {
            self.ones -= 1;
        }
        was
    }

    /// Number of set pieces (O(1): maintained incrementally).
    pub fn count_ones(&self) -> u32 {
        self.ones
    }

    /// True when every piece is set.
    pub fn is_full(&self) -> bool {
        self.ones == self.len
    }

    /// Set pieces in increasing order.
    pub fn iter_ones(&self) -> impl Iterator<Item = PieceIndex> + '_ {
        self.words.iter().enumerate().flat_map(|(wi, &w)| {
            let mut rest = w;
            std::iter::from_fn(move || {
                if rest == 0 {
                    return None;
                }
                let bit = rest.trailing_zeros();
                rest &= rest - 1;
                Some(PieceIndex(wi as u32 * 64 + bit))
            })
        })
    }

    /// Number of pieces set in `self` and not in `other` (O(len / 64)).
    ///
    /// Both bitfields should have the same length; extra words of either side are ignored.
    pub fn and_not_count(&self, other: &Bitfield) -> u32 {
        self.words
            .iter()
            .zip(other.words.iter())
            .map(|(a, b)| (a & !b).count_ones())
            .sum()
    }

    /// Decodes the BEP 3 wire form: byte 0's high bit is piece 0; `bytes` must be exactly
    /// `ceil(len_pieces / 8)` long.
    ///
    /// # Errors
    /// [`BitfieldError::Length`] on a wrong byte count, [`BitfieldError::SpareBits`] when a
    /// bit past the last piece is set.
    pub fn from_bytes(bytes: &[u8], len_pieces: u32) -> Result<Self, BitfieldError> {
        let expected_bytes = (len_pieces as usize).div_ceil(8);
        if bytes.len() != expected_bytes {
            return Err(BitfieldError::Length {
                got_bytes: bytes.len(),
                expected_bytes,
            });
        }
        let mut b = Bitfield::new(len_pieces);
        for (bi, &byte) in bytes.iter().enumerate() {
            for bit in 0..8u32 {
                if byte & (0x80 >> bit) == 0 {
                    continue;
                }
                let piece = bi as u32 * 8 + bit;
                if piece >= len_pieces {
                    return Err(BitfieldError::SpareBits);
                }
                b.set(PieceIndex(piece));
            }
        }
        Ok(b)
    }

    /// Encodes the BEP 3 wire form (`ceil(len / 8)` bytes, spare bits zero).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![0u8; (self.len as usize).div_ceil(8)];
        for p in self.iter_ones() {
            if let Some(byte) = out.get_mut(p.0 as usize / 8) {
                *byte |= 0x80 >> (p.0 % 8);
            }
        }
        out
    }

    /// The backing words: bit `i % 64` of word `i / 64` is piece `i`.
    pub(crate) fn words(&self) -> &[u64] {
        &self.words
    }

    fn clear_spare_bits(&mut self) {
        let rem = self.len % 64;
        if rem != 0 {
            if let Some(last) = self.words.last_mut() {
                *last &= (1u64 << rem) - 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn full_and_empty() {
        let f = Bitfield::full(70);
        assert!(f.is_full());
        assert_eq!(f.count_ones(), 70);
        assert_eq!(f.iter_ones().count(), 70);
        assert!(!f.get(PieceIndex(70)));
        let e = Bitfield::new(0);
        assert!(e.is_full() && e.is_empty());
    }

    #[test]
    fn wire_order_is_high_bit_first() {
        let mut b = Bitfield::new(10);
        b.set(PieceIndex(0));
        b.set(PieceIndex(9));
        assert_eq!(b.to_bytes(), vec![0x80, 0x40]);
    }

    #[test]
    fn rejects_bad_wire_input() {
        assert_eq!(
            Bitfield::from_bytes(&[0xff], 10),
            Err(BitfieldError::Length {
                got_bytes: 1,
                expected_bytes: 2
            })
        );
        assert_eq!(
            Bitfield::from_bytes(&[0xff, 0x20], 10),
            Err(BitfieldError::SpareBits)
        );
    }

    proptest! {
        #[test]
        fn bytes_round_trip(len in 0u32..300, seed in proptest::collection::vec(any::<u32>(), 0..50)) {
            let mut b = Bitfield::new(len);
            for s in seed {
                if len > 0 { b.set(PieceIndex(s % len)); }
            }
            let back = Bitfield::from_bytes(&b.to_bytes(), len).unwrap();
            prop_assert_eq!(&back, &b);
            prop_assert_eq!(back.count_ones() as usize, back.iter_ones().count());
        }

        #[test]
        fn set_clear_count(len in 1u32..200, ops in proptest::collection::vec((any::<bool>(), any::<u32>()), 0..100)) {
            let mut b = Bitfield::new(len);
            let mut model = vec![false; len as usize];
            for (set, i) in ops {
                let i = i % len;
                if set { b.set(PieceIndex(i)); model[i as usize] = true; }
                else { b.clear(PieceIndex(i)); model[i as usize] = false; }
            }
            prop_assert_eq!(b.count_ones() as usize, model.iter().filter(|x| **x).count());
            for (i, m) in model.iter().enumerate() { prop_assert_eq!(b.get(PieceIndex(i as u32)), *m); }
        }
    }
}
