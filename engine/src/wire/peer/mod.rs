//! Peer wire protocol codec: BEP 3 messages, BEP 6 fast extension, BEP 10
//! extension protocol, BEP 9 `ut_metadata` ([`metadata`]), and the p2pe
//! large-request extension. No I/O.
//!
//! A connection starts with a 68-byte [`Handshake`], decoded by
//! [`HandshakeDecoder`]; its leftover bytes then move into a [`Decoder`]
//! built from the torrent's [`DecoderLimits`], which yields [`Message`]s
//! from any split of the byte stream. The control messages are the base type
//! [`PeerMessage`] (`Message::Control`), shared with the core, so the node passes
//! them through without a mapping. Encoding appends to a caller-supplied
//! `Vec<u8>` ([`Message::encode`], [`encode_control`]); the send path for blocks uses
//! [`piece_header`] so header and block data (straight from storage) go out
//! in one gathered send.
//!
//! # Payloads without an extra copy
//!
//! The decoder owns a [`bytes::BytesMut`] receive buffer (callers may read
//! into it directly via [`Decoder::receive_buf`]). A complete frame is split
//! off that buffer and frozen into a [`bytes::Bytes`], and a piece message's
//! `data` is a slice of it: no copy after the socket read, and the
//! [`Message`] owns its payload (no lifetime tied to the decoder), so a block
//! can be queued for hashing or writing while decoding continues. We chose
//! `Bytes` over a `Message<'a>` borrowing the decoder for exactly that
//! reason; the cost is one reference count per payload-carrying message.
//!
//! # Invariants
//!
//! - Peer input never panics: every malformed frame is a [`WireError`], and
//!   after any error the connection should be closed.
//! - A decoded message is valid against the limits: known id, exact length
//!   for its id, piece index `< piece_count`, bitfield of exactly
//!   `ceil(piece_count / 8)` bytes with spare bits zero, request/cancel/reject
//!   lengths and piece blocks at most the negotiated maximum request length.
//! - After [`Decoder::set_negotiated`], BEP 6 and BEP 10 messages are
//!   accepted only if both handshakes advertised the extension.
//! - A frame longer than the limit is rejected as soon as its 4-byte length
//!   prefix arrives, before it is buffered.
//!
//! # The p2pe large-request extension (not a BEP)
//!
//! BEP 3 clients serve 16 KiB blocks ([`BLOCK_LEN_BYTES`]). Two p2pe peers
//! may request up to a whole piece in one request, which cuts per-request
//! overhead on fast links. Each side advertises it in its BEP 10 extended
//! handshake (see [`P2peExt`]); [`negotiated_max_request_len`] gives the
//! length both may use, and [`Decoder::set_max_request_len`] applies it.
//! With any other client p2pe stays at 16 KiB.
//!
//! The same extension carries the sender's worker count (`p2pe_lanes`):
//! [`negotiated_lanes`] gives how many parallel connections two p2pe nodes
//! open, at most [`MAX_LANES`].

mod body;
mod decoder;
mod error;
mod extended;
mod handshake;
mod message;
pub mod metadata;
mod stream;
#[cfg(test)]
mod tests;

pub use decoder::{Decoder, DecoderLimits};
pub use error::WireError;
pub use extended::{
    negotiated_lanes, negotiated_max_request_len, ExtendedHandshake, P2peExt, MAX_LANES,
    P2PE_EXTENSION_NAME,
};
pub use handshake::{Handshake, HandshakeDecoder};
pub use message::{encode_control, piece_header, ExtendedMessage, Message, MessageId};
pub use stream::Decoded;

pub use crate::base::{Bitfield, Block, BlockOffset, PeerMessage, PieceIndex, BLOCK_LEN_BYTES};
