//! BEP 9 `ut_metadata` messages: the info dictionary traded in 16 KiB pieces
//! over the BEP 10 extension protocol.
//!
//! Each message is the payload of an extended message under the id the
//! receiver assigned to `ut_metadata` in its extended handshake: a bencoded
//! dictionary `{msg_type, piece[, total_size]}`, and for `data` the piece's
//! raw bytes right after the dictionary. Every piece is
//! [`METADATA_PIECE_LEN_BYTES`] but the last.
//!
//! Decoding is strict on what BEP 9 fixes (types, ranges, a `data` message's
//! `total_size`) and ignores unknown keys; it never panics on any input.

use bendy::decoding::{Decoder as BDecoder, Object};
use bytes::Bytes;

use crate::wire::bencode;

/// The extension's name in a BEP 10 `m` dictionary.
pub const UT_METADATA: &str = "ut_metadata";

/// Length of every metadata piece but the last, in bytes (BEP 9: 16 KiB).
pub const METADATA_PIECE_LEN_BYTES: u32 = 16 * 1024;

/// Nesting allowed in the message dictionary: the known keys need 1;
/// unknown values get some slack, bounded so bendy's skipping stays shallow.
const MAX_BENCODE_DEPTH: usize = 8;

/// One `ut_metadata` message (BEP 9 §extension message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataMessage {
    /// `msg_type` 0: asks for metadata piece `piece`.
    Request {
        /// Metadata piece index (piece `i` starts at byte `i * 16 KiB`).
        piece: u32,
    },
    /// `msg_type` 1: metadata piece `piece` of an info dictionary of
    /// `total_size_bytes`; `data` is at most 16 KiB.
    Data {
        /// Metadata piece index.
        piece: u32,
        /// Size of the whole info dictionary in bytes (BEP 9 `total_size`).
        total_size_bytes: u64,
        /// The piece's bytes (the bytes after the dictionary).
        data: Bytes,
    },
    /// `msg_type` 2: the sender will not send piece `piece`.
    Reject {
        /// Metadata piece index.
        piece: u32,
    },
}

/// Why a `ut_metadata` payload was refused: the peer broke BEP 9, close the
/// connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// Not a bencoded dictionary, or a known key of the wrong type or range.
    #[error("bad ut_metadata message: {0}")]
    Malformed(String),
    /// A `msg_type` other than 0, 1, 2.
    #[error("unknown ut_metadata msg_type {0}")]
    UnknownType(i64),
    /// A required key is absent.
    #[error("ut_metadata message without `{0}`")]
    Missing(&'static str),
    /// Bytes after the dictionary of a message that is not `data`, or a
    /// `data` piece longer than 16 KiB.
    #[error("ut_metadata message with {len_bytes} unexpected trailing bytes")]
    Trailing {
        /// Bytes after the dictionary.
        len_bytes: usize,
    },
}

fn malformed(e: impl std::fmt::Display) -> MetadataError {
    MetadataError::Malformed(e.to_string())
}

/// An integer value parsed as `T` (a negative or overflowing one is
/// [`MetadataError::Malformed`]).
fn int<T: std::str::FromStr>(value: Object<'_, '_>) -> Result<T, MetadataError> {
    let text = value.try_into_integer().map_err(malformed)?;
    text.parse()
        .map_err(|_| malformed(format!("integer {text} out of range")))
}

impl MetadataMessage {
    /// Decodes the payload of a `ut_metadata` extended message (after the
    /// extended id byte). A `data` message's bytes are a slice of `payload`
    /// (no copy).
    ///
    /// # Errors
    /// [`MetadataError::Malformed`] (not a dictionary, a key of the wrong
    /// type, a negative or overflowing integer), [`MetadataError::UnknownType`],
    /// [`MetadataError::Missing`] (`msg_type`, `piece`, or a `data` message's
    /// `total_size`), [`MetadataError::Trailing`].
    pub fn from_payload(payload: &Bytes) -> Result<Self, MetadataError> {
        let mut decoder = BDecoder::new(payload).with_max_depth(MAX_BENCODE_DEPTH);
        let (mut msg_type, mut piece, mut total_size) = (None, None, None);
        let dict_len = {
            let Some(Object::Dict(mut dict)) = decoder.next_object().map_err(malformed)? else {
                return Err(malformed("not a dictionary"));
            };
            while let Some((key, value)) = dict.next_pair().map_err(malformed)? {
                match key {
                    b"msg_type" => msg_type = Some(int::<i64>(value)?),
                    b"piece" => piece = Some(int::<u32>(value)?),
                    b"total_size" => total_size = Some(int::<u64>(value)?),
                    _ => {} // unknown keys are skipped (dropping consumes them)
                }
            }
            dict.into_raw().map_err(malformed)?.len()
        };
        let rest = payload.slice(dict_len.min(payload.len())..);
        let piece = piece.ok_or(MetadataError::Missing("piece"))?;
        let no_trailing = |msg: Self| {
            if rest.is_empty() {
                Ok(msg)
            } else {
                Err(MetadataError::Trailing {
                    len_bytes: rest.len(),
                })
            }
        };
        match msg_type.ok_or(MetadataError::Missing("msg_type"))? {
            0 => no_trailing(Self::Request { piece }),
            2 => no_trailing(Self::Reject { piece }),
            1 => {
                let total_size_bytes = total_size.ok_or(MetadataError::Missing("total_size"))?;
                if rest.len() > METADATA_PIECE_LEN_BYTES as usize {
                    return Err(MetadataError::Trailing {
                        len_bytes: rest.len(),
                    });
                }
                Ok(Self::Data {
                    piece,
                    total_size_bytes,
                    data: rest,
                })
            }
            other => Err(MetadataError::UnknownType(other)),
        }
    }

    /// Appends the payload (dictionary, and a `data` message's bytes) to
    /// `out`; the caller frames it as an extended message.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (msg_type, piece) = match self {
            Self::Request { piece } => (0, piece),
            Self::Data { piece, .. } => (1, piece),
            Self::Reject { piece } => (2, piece),
        };
        out.push(b'd');
        bencode::key_int(out, b"msg_type", msg_type);
        bencode::key_int(out, b"piece", i64::from(*piece));
        if let Self::Data {
            total_size_bytes,
            data,
            ..
        } = self
        {
            let size = i64::try_from(*total_size_bytes).unwrap_or(i64::MAX);
            bencode::key_int(out, b"total_size", size);
            out.push(b'e');
            out.extend_from_slice(data);
        } else {
            out.push(b'e');
        }
    }

    /// The payload as bytes ([`Self::encode`] into a fresh buffer).
    pub fn to_payload(&self) -> Bytes {
        let mut out = Vec::new();
        self.encode(&mut out);
        Bytes::from(out)
    }
}

/// Number of metadata pieces of an info dictionary of `size_bytes`:
/// `ceil(size / 16 KiB)`.
pub fn metadata_piece_count(size_bytes: u64) -> u64 {
    size_bytes.div_ceil(u64::from(METADATA_PIECE_LEN_BYTES))
}

/// Byte range (`start..end`) of metadata piece `piece` in an info
/// dictionary of `size_bytes`; `None` past the end.
pub fn metadata_piece_range(size_bytes: u64, piece: u32) -> Option<std::ops::Range<usize>> {
    let start = u64::from(piece).checked_mul(u64::from(METADATA_PIECE_LEN_BYTES))?;
    if start >= size_bytes {
        return None;
    }
    let end = size_bytes.min(start + u64::from(METADATA_PIECE_LEN_BYTES));
    Some(usize::try_from(start).ok()?..usize::try_from(end).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode(raw: &[u8]) -> Result<MetadataMessage, MetadataError> {
        MetadataMessage::from_payload(&Bytes::copy_from_slice(raw))
    }

    #[test]
    fn bep9_examples() {
        assert_eq!(
            decode(b"d8:msg_typei0e5:piecei0ee"),
            Ok(MetadataMessage::Request { piece: 0 })
        );
        assert_eq!(
            decode(b"d8:msg_typei2e5:piecei3ee"),
            Ok(MetadataMessage::Reject { piece: 3 })
        );
        assert_eq!(
            decode(b"d8:msg_typei1e5:piecei0e10:total_sizei5eeHELLO"),
            Ok(MetadataMessage::Data {
                piece: 0,
                total_size_bytes: 5,
                data: Bytes::from_static(b"HELLO"),
            })
        );
        let mut out = Vec::new();
        MetadataMessage::Data {
            piece: 1,
            total_size_bytes: 16390,
            data: Bytes::from_static(b"xyz"),
        }
        .encode(&mut out);
        assert_eq!(out, b"d8:msg_typei1e5:piecei1e10:total_sizei16390eexyz");
    }

    #[test]
    fn malformed_is_err() {
        for raw in [
            &b""[..],
            b"le",
            b"d5:piecei0ee",
            b"d8:msg_typei0ee",
            b"d8:msg_typei1e5:piecei0ee",
            b"d8:msg_typei7e5:piecei0ee",
            b"d8:msg_typei0e5:piecei-1ee",
            b"d8:msg_type1:x5:piecei0ee",
            b"d8:msg_typei0e5:piecei0eeXX",
            b"d5:piecei0e8:msg_typei0ee", // unsorted keys
            b"d8:msg_typei0e5:piecei0e",  // truncated
        ] {
            assert!(decode(raw).is_err(), "{raw:?}");
        }
        let mut big = b"d8:msg_typei1e5:piecei0e10:total_sizei99999ee".to_vec();
        big.extend(vec![0; 16 * 1024 + 1]);
        assert!(matches!(decode(&big), Err(MetadataError::Trailing { .. })));
    }

    #[test]
    fn piece_ranges() {
        assert_eq!(metadata_piece_count(1), 1);
        assert_eq!(metadata_piece_count(16384), 1);
        assert_eq!(metadata_piece_count(16385), 2);
        assert_eq!(metadata_piece_range(16385, 0), Some(0..16384));
        assert_eq!(metadata_piece_range(16385, 1), Some(16384..16385));
        assert_eq!(metadata_piece_range(16385, 2), None);
        assert_eq!(metadata_piece_range(10, u32::MAX), None);
    }

    proptest! {
        #[test]
        fn round_trip(kind in 0u8..3, piece in any::<u32>(), size in 0u64..(1 << 40),
                      data in proptest::collection::vec(any::<u8>(), 0..100)) {
            let msg = match kind {
                0 => MetadataMessage::Request { piece },
                1 => MetadataMessage::Data { piece, total_size_bytes: size, data: Bytes::from(data) },
                _ => MetadataMessage::Reject { piece },
            };
            prop_assert_eq!(MetadataMessage::from_payload(&msg.to_payload()), Ok(msg));
        }

        #[test]
        fn never_panics(raw in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&raw);
        }
    }
}
