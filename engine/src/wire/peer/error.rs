//! Errors of the peer wire codec.

/// Why a peer's bytes were rejected (BEP 3, BEP 6, BEP 10).
///
/// Every variant means the peer broke the protocol (or sent more than we
/// allow): the connection should be closed. The decoder never panics on
/// input; it returns one of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The 68-byte handshake was malformed (wrong `pstrlen` or `pstr`).
    #[error("bad handshake: {reason}")]
    BadHandshake {
        /// What was wrong.
        reason: &'static str,
    },
    /// A frame announced a length above the decoder's limit.
    #[error("frame of {len_bytes} bytes exceeds the limit of {max_bytes} bytes")]
    FrameTooLong {
        /// Announced frame length in bytes (without the 4-byte prefix).
        len_bytes: u32,
        /// The limit in bytes.
        max_bytes: u32,
    },
    /// A message id this codec does not know (BEP 3/6/10 define 0-9, 13-17, 20).
    #[error("unknown message id {id}")]
    UnknownMessageId {
        /// The id byte.
        id: u8,
    },
    /// A BEP 6 (fast) or BEP 10 (extended) message although the handshakes
    /// did not both advertise that extension.
    #[error("message id {id} needs an extension that was not negotiated")]
    NotNegotiated {
        /// The id byte.
        id: u8,
    },
    /// A message whose frame length is wrong for its id.
    #[error("message id {id} with bad frame length {len_bytes} bytes")]
    BadLength {
        /// The id byte.
        id: u8,
        /// Frame length in bytes (id byte included, 4-byte prefix excluded).
        len_bytes: u32,
    },
    /// A piece index at or beyond the torrent's piece count.
    #[error("piece index {index} out of range (piece count {piece_count})")]
    PieceOutOfRange {
        /// The index the peer sent.
        index: u32,
        /// Pieces in the torrent.
        piece_count: u32,
    },
    /// A bitfield with the wrong byte length or with spare bits set (BEP 3).
    #[error("bad bitfield: {reason}")]
    BadBitfield {
        /// What was wrong.
        reason: &'static str,
    },
    /// A request, cancel or reject for more bytes than the negotiated maximum.
    #[error("request of {len_bytes} bytes exceeds the maximum of {max_bytes} bytes")]
    RequestTooLarge {
        /// Requested block length in bytes.
        len_bytes: u32,
        /// Negotiated maximum request length in bytes.
        max_bytes: u32,
    },
    /// A piece message carrying a block larger than the negotiated maximum.
    #[error("block of {len_bytes} bytes exceeds the maximum of {max_bytes} bytes")]
    BlockTooLarge {
        /// Block length in bytes.
        len_bytes: u32,
        /// Negotiated maximum request length in bytes.
        max_bytes: u32,
    },
    /// The BEP 10 extended handshake dictionary was malformed.
    #[error("bad extended handshake: {0}")]
    BadExtendedHandshake(String),
    /// A payload too large to frame (over `u32::MAX` bytes with its header).
    #[error("payload of {len_bytes} bytes is too long to frame")]
    PayloadTooLong {
        /// Payload length in bytes.
        len_bytes: usize,
    },
    /// Bencoding our own extended handshake failed.
    #[error("cannot encode extended handshake: {0}")]
    Encode(String),
}
