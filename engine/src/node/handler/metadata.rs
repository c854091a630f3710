//! Serving the info dictionary (BEP 9 `ut_metadata`) to peers that joined
//! from a magnet link, p2pe and libtorrent alike.
//!
//! We advertise `ut_metadata` and `metadata_size` in our extended handshake
//! for a public torrent (`NodeHandler::new`) and answer each `request` at
//! once: the 16 KiB piece of the torrent's raw info bytes as a `data`
//! message, or a `reject` for a piece past the end. Invariants:
//! - a peer gets at most [`MAX_METADATA_PIECES_PER_PEER`] `data` messages
//!   (then `reject`s), so a peer asking in a loop costs a bounded amount of
//!   send queue;
//! - `data` and `reject` messages from a peer are ignored: a node with the
//!   torrent never fetches metadata (the fetch runs before the node starts,
//!   `discovery::metadata`);
//! - a malformed message closes the connection, as any wire error does.

use bytes::Bytes;

use crate::node::dispatch::Ctx;
use crate::rt::ConnId;
use crate::wire::peer::metadata::{metadata_piece_range, MetadataMessage};
use crate::wire::peer::{ExtendedMessage, Message};

use super::NodeHandler;

/// Most metadata pieces sent to one connection: 64 MiB of metadata (4,096
/// pieces of 16 KiB), twice over. Sized from the largest info dictionary a
/// p2pe fetch accepts (`core::metadata::MAX_METADATA_SIZE_BYTES`), with room
/// for one full re-fetch; a real peer asks for each piece once.
pub(super) const MAX_METADATA_PIECES_PER_PEER: u32 = 2 * 4096;

impl NodeHandler {
    /// A `ut_metadata` message arrived on `conn` (we advertised it, so
    /// [`NodeHandler::info_bytes`] is set). False closes the connection (a
    /// malformed message).
    pub(super) fn on_metadata(&mut self, ctx: &mut Ctx, conn: ConnId, payload: &Bytes) -> bool {
        let Ok(msg) = MetadataMessage::from_payload(payload) else {
            return false;
        };
        let MetadataMessage::Request { piece } = msg else {
            return true; // we asked for nothing
        };
        let Some(info) = self.info_bytes.clone() else {
            return true;
        };
        let Some(pc) = self.conns.get_mut(&conn) else {
            return true;
        };
        // Only to a peer that told us its id for the extension (BEP 10).
        let Some(id) = pc.metadata_id else {
            return true;
        };
        let size = info.len() as u64;
        let range = metadata_piece_range(size, piece)
            .filter(|_| pc.metadata_pieces_sent < MAX_METADATA_PIECES_PER_PEER);
        let reply = match range.and_then(|r| info.get(r)) {
            Some(data) => {
                pc.metadata_pieces_sent += 1;
                MetadataMessage::Data {
                    piece,
                    total_size_bytes: size,
                    data: Bytes::copy_from_slice(data),
                }
            }
            None => MetadataMessage::Reject { piece },
        };
        let msg = Message::Extended(ExtendedMessage::Other {
            id,
            payload: reply.to_payload(),
        });
        let mut buf = Vec::new();
        if msg.encode(&mut buf).is_ok() {
            pc.queued_total_bytes += buf.len() as u64;
            ctx.send(conn, buf);
        }
        true
    }
}
