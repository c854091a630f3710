//! Receive path: handshake, extended handshake, decoding, blocks to storage.
//!
//! `piece` payloads are streamed ([`Decoder::decode_from`]): each chunk goes
//! from the runtime's receive buffer straight into the storage mapping, one
//! copy instead of two (runtime buffer -> decoder -> mapping); measured in
//! `perf/recv-path.md`. Peer input stays untrusted:
//! - a chunk is written only while the core wants that block from this peer
//!   ([`crate::core::Torrent::wants_block`], checked per chunk), only inside
//!   the block (the store bounds-checks every write), and never into a
//!   verified piece (the store refuses);
//! - at most one connection streams a given block into storage; a duplicate
//!   arriving meanwhile (endgame) is buffered and written whole at its end if
//!   still wanted, so two peers' bytes never interleave within one block;
//! - the core learns of the block only once its last byte arrived; a truncated
//!   message leaves the block unreceived, to be overwritten whole by whoever
//!   delivers it, and pieces are verified (piece hash: BLAKE3 or SHA-1)
//!   before they are served or announced. The store hashes each chunk as it
//!   writes it when the chunk continues its piece in order (hash on arrival,
//!   `store::arrival`), so an in-order piece is never read back to verify.

use std::sync::atomic::Ordering;

use crate::core::{slots, Block, BlockOffset, Locality, PeerCaps, PieceIndex, Time};
use crate::node::dispatch::Ctx;
use crate::rt::ConnId;
use crate::store::StoreError;
use crate::wire::peer::{
    negotiated_lanes, negotiated_max_request_len, Decoded, DecoderLimits, ExtendedMessage,
    HandshakeDecoder, Message, BLOCK_LEN_BYTES,
};

use super::super::peer::{Incoming, Phase, Sink};
use super::{NodeHandler, METADATA_EXT_ID, PEX_EXT_ID};

impl NodeHandler {
    /// Feeds received bytes of `conn` through its handshake or message
    /// decoder and handles every complete message. Any error closes `conn`.
    pub(super) fn receive(&mut self, ctx: &mut Ctx, conn: ConnId, data: &[u8]) {
        let now = self.now();
        let Some(pc) = self.conns.get_mut(&conn) else {
            return;
        };
        pc.activity.last_recv_at = now;
        let mut input = data;
        if let Phase::Handshake(hd) = &mut pc.phase {
            // The bytes after the handshake stay in the decoder's buffer.
            input = &[];
            hd.extend(data);
            match hd.next_handshake() {
                Ok(None) => return,
                Ok(Some(theirs)) => {
                    if theirs.info_hash != self.ours.info_hash
                        || theirs.peer_id == self.ours.peer_id
                    {
                        // Another torrent, or ourselves: never dial it again.
                        let dial = pc.dial;
                        self.retire_dial(dial);
                        ctx.close(conn);
                        return;
                    }
                    // The handshake decoder becomes the message decoder (it keeps
                    // the bytes after the handshake); a fresh one holds its place
                    // for the moment, never seen by anything else.
                    let placeholder = Phase::Handshake(HandshakeDecoder::new());
                    let Phase::Handshake(hd) = std::mem::replace(&mut pc.phase, placeholder) else {
                        return;
                    };
                    let mut decoder = hd.into_decoder(DecoderLimits::new(self.piece_count));
                    decoder.set_negotiated(&self.ours, &theirs);
                    let peer_id = theirs.peer_id;
                    pc.peer_id = Some(peer_id);
                    pc.activity.handshake_at = Some(now);
                    pc.phase = Phase::Open { decoder, theirs };
                    if !self.keep_one_per_peer(ctx, conn, peer_id) {
                        return;
                    }
                    self.on_handshake(ctx, conn);
                }
                Err(_) => {
                    ctx.close(conn);
                    return;
                }
            }
        }
        self.decode_all(ctx, conn, input);
    }

    /// The peer's handshake arrived: send our extended handshake, or hand a
    /// peer without BEP 10 to the core right away.
    fn on_handshake(&mut self, ctx: &mut Ctx, conn: ConnId) {
        let Some(pc) = self.conns.get_mut(&conn) else {
            return;
        };
        let Phase::Open { theirs, .. } = &pc.phase else {
            return;
        };
        let ext = theirs.supports_extended() && self.ours.supports_extended();
        if !pc.lane && !pc.lane_pending {
            // A p2pe peer's lanes are one peer.
            self.shared.peers_seen.fetch_add(1, Ordering::AcqRel);
        }
        let dial = pc.dial;
        self.dial_succeeded(dial);
        if ext {
            let mut buf = Vec::new();
            let mut hs = self.our_ext.clone();
            let port = self.shared.listen_port.load(Ordering::Acquire);
            hs.p = hs.p.or(Some(port).filter(|&p| p != 0));
            let msg = Message::Extended(ExtendedMessage::Handshake(hs));
            if msg.encode(&mut buf).is_ok() {
                if let Some(pc) = self.conns.get_mut(&conn) {
                    pc.queued_total_bytes += buf.len() as u64;
                }
                ctx.send(conn, buf);
            }
        } else {
            self.register(conn, BLOCK_LEN_BYTES, None, 1, None);
        }
    }

    /// Hands `conn` to the core with the negotiated request length and the peer's BEP 10
    /// `reqq` (if it sent one).
    /// `lanes`: connections negotiated with this peer ([`negotiated_lanes`]);
    /// above 1, no node-wide endgame duplicates go to it. `locality`: its rack
    /// (BEP 10 `p2pe_rack` / `p2pe_zone`) and peer id, for rack-aware requests.
    fn register(
        &mut self,
        conn: ConnId,
        max_request_len_bytes: u32,
        reqq: Option<u32>,
        lanes: u8,
        locality: Option<Locality>,
    ) {
        let Some(pc) = self.conns.get_mut(&conn) else {
            return;
        };
        if pc.registered || pc.lane_pending {
            return;
        }
        let Phase::Open {
            decoder, theirs, ..
        } = &mut pc.phase
        else {
            return;
        };
        decoder.set_max_request_len(max_request_len_bytes);
        pc.caps = PeerCaps {
            fast_extension: self.ours.supports_fast() && theirs.supports_fast(),
            max_request_len_bytes,
            reqq,
            distinct_first: pc.is_p2pe,
            locality,
            node_endgame: lanes <= 1,
            // Relay parts need part hashes the node does not exchange yet (issue 13).
            relay_part_bytes: 0,
        };
        pc.registered = true;
        let (key, caps) = (pc.key, pc.caps);
        // The bitfield we send must include pieces other workers verified.
        self.sync_have();
        let now = self.now();
        self.torrent.handle_peer_connected(now, key, caps);
    }

    /// Peers that set the BEP 10 bit but sent no extended handshake in time
    /// ([`slots::ext_handshake_overdue`]) are handed to the core as plain peers.
    pub(super) fn register_stale(&mut self, now: Time) {
        let config = &self.slot_config;
        let stale: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, pc)| {
                !pc.registered
                    && matches!(pc.phase, Phase::Open { .. })
                    && slots::ext_handshake_overdue(config, now, &pc.activity)
            })
            .map(|(c, _)| *c)
            .collect();
        for conn in stale {
            self.register(conn, BLOCK_LEN_BYTES, None, 1, None);
        }
    }

    /// Decodes the buffered bytes of `conn`, then `input`, handling each
    /// message and streaming `piece` payloads to storage.
    fn decode_all(&mut self, ctx: &mut Ctx, conn: ConnId, mut input: &[u8]) {
        loop {
            let Some(pc) = self.conns.get_mut(&conn) else {
                return;
            };
            if pc.dropped_by_core {
                return;
            }
            let Phase::Open { decoder, .. } = &mut pc.phase else {
                return;
            };
            let ok = match decoder.decode_from(&mut input) {
                Ok(None) => return,
                Ok(Some(Decoded::Message(msg))) => self.handle_message(ctx, conn, msg),
                Ok(Some(Decoded::PieceStart(h))) => {
                    self.on_piece_start(conn, h);
                    true
                }
                Ok(Some(Decoded::PiecePayload(chunk))) => {
                    self.on_piece_payload(conn, &chunk);
                    true
                }
                Ok(Some(Decoded::PieceEnd(h))) => self.on_piece_end(ctx, conn, h),
                Err(_) => false,
            };
            if !ok {
                ctx.close(conn);
                return;
            }
        }
    }

    /// A `piece` header arrived, carrying `block`: choose where its payload goes.
    fn on_piece_start(&mut self, conn: ConnId, block: Block) {
        self.register(conn, BLOCK_LEN_BYTES, None, 1, None);
        let Some(key) = self.conns.get(&conn).map(|pc| pc.key) else {
            return;
        };
        let sink = if !self.torrent.wants_block(key, &block) {
            Sink::Discard
        } else if self.streamed_elsewhere(conn, &block) {
            // Bounded by the negotiated request length the decoder enforces.
            Sink::Buffer(Vec::with_capacity(block.len_bytes as usize))
        } else {
            Sink::Store
        };
        let Some(pc) = self.conns.get_mut(&conn) else {
            return;
        };
        pc.incoming = Some(Incoming {
            block,
            received_bytes: 0,
            sink,
        });
    }

    /// Whether a connection other than `conn` is streaming a block that
    /// overlaps `block` into storage (only asked for wanted blocks:
    /// O(connections)). Overlap, not equality: a whole-piece block from one
    /// peer and a 16 KiB block of the same bytes from another must not both
    /// write the region chunk by chunk, or the bytes left there could come
    /// from the peer the piece is not attributed to (and smart ban would blame
    /// the wrong one).
    fn streamed_elsewhere(&self, conn: ConnId, block: &Block) -> bool {
        let overlaps = |b: &Block| {
            let (lo, hi) = (u64::from(block.offset.0), block.end_bytes());
            let (blo, bhi) = (u64::from(b.offset.0), b.end_bytes());
            b.piece == block.piece && blo < hi && lo < bhi
        };
        self.conns.iter().any(|(c, pc)| {
            *c != conn
                && pc
                    .incoming
                    .as_ref()
                    .is_some_and(|i| overlaps(&i.block) && matches!(i.sink, Sink::Store))
        })
    }

    /// Payload bytes of the current `piece` message of `conn`.
    fn on_piece_payload(&mut self, conn: ConnId, chunk: &[u8]) {
        let Some(pc) = self.conns.get_mut(&conn) else {
            return;
        };
        let key = pc.key;
        let Some(inc) = pc.incoming.as_mut() else {
            return;
        };
        let at = BlockOffset(inc.block.offset.0.saturating_add(inc.received_bytes));
        // The decoder hands out at most the announced payload length (a u32).
        inc.received_bytes = inc.received_bytes.saturating_add(chunk.len() as u32);
        let block = inc.block;
        let partial = inc.received_bytes < block.len_bytes;
        let store = match &mut inc.sink {
            Sink::Store if self.torrent.wants_block(key, &block) => true,
            // Another connection delivered the block meanwhile.
            Sink::Store => {
                inc.sink = Sink::Discard;
                return;
            }
            Sink::Buffer(buf) => {
                buf.extend_from_slice(chunk);
                false
            }
            Sink::Discard => return,
        };
        // Progress before the last byte keeps a slow but steady sender from being
        // snubbed mid-block (the core ignores blocks not in flight from this peer).
        if partial {
            let now = self.now();
            self.torrent.handle_block_progress(now, key, &block);
        }
        if store && !self.write_payload(block.piece, at, chunk) {
            // The rest of the block is dropped too.
            if let Some(inc) = self.conns.get_mut(&conn).and_then(|c| c.incoming.as_mut()) {
                inc.sink = Sink::Discard;
            }
        }
    }

    /// The last payload byte of a `piece` message arrived: store a buffered
    /// duplicate if still wanted, then tell the core. False closes `conn`.
    fn on_piece_end(&mut self, ctx: &mut Ctx, conn: ConnId, block: Block) -> bool {
        let Some(pc) = self.conns.get_mut(&conn) else {
            return false;
        };
        let key = pc.key;
        let Some(inc) = pc.incoming.take() else {
            return false;
        };
        if inc.block != block || inc.received_bytes != block.len_bytes {
            return false; // cannot happen: the decoder's framing is exact
        }
        let stored = match &inc.sink {
            Sink::Store => true,
            Sink::Buffer(data) if self.torrent.wants_block(key, &inc.block) => {
                self.write_payload(inc.block.piece, inc.block.offset, data)
            }
            Sink::Buffer(_) | Sink::Discard => false,
        };
        if let Some(pc) = self.conns.get_mut(&conn) {
            let (piece, len) = (inc.block.piece, inc.block.len_bytes);
            Self::count_piece_received(&mut self.piece_sources, pc, piece, len, stored);
        }
        let now = self.now();
        // On Err the core already queued the disconnect.
        let _ = self.torrent.handle_block_received(now, key, inc.block);
        // A VerifyPiece sees the whole block written; a Disconnect stops
        // decoding this connection.
        self.drain(ctx);
        true
    }

    /// Handles one decoded message; false closes the connection.
    fn handle_message(&mut self, ctx: &mut Ctx, conn: ConnId, msg: Message) -> bool {
        if let Message::Extended(ExtendedMessage::Handshake(theirs)) = &msg {
            if !self.resolve_pending_lane(conn, theirs) {
                return false;
            }
            let len = negotiated_max_request_len(&self.our_ext, theirs, self.piece_len_bytes);
            let lanes = negotiated_lanes(&self.our_ext, theirs);
            self.on_extended_handshake(conn, theirs);
            let peer_id = self.conns.get(&conn).and_then(|pc| pc.peer_id);
            let locality = theirs
                .p2pe_rack
                .as_deref()
                .zip(peer_id)
                .map(|(rack, id)| Locality::labelled(rack, theirs.p2pe_zone.as_deref(), &id.0));
            self.register(conn, len, theirs.reqq, lanes, locality);
            self.open_lanes(ctx, conn, theirs);
            return true;
        }
        if let Message::Extended(ExtendedMessage::Other { id, payload }) = &msg {
            if *id == PEX_EXT_ID && self.pex_interval.is_some() {
                return self.on_pex(ctx, conn, payload);
            }
            if *id == METADATA_EXT_ID && self.info_bytes.is_some() {
                return self.on_metadata(ctx, conn, payload);
            }
        }
        // BEP 5 `port` and the other extension messages are nothing for the core.
        if matches!(msg, Message::Port { .. } | Message::Extended(_)) {
            return true;
        }
        self.register(conn, BLOCK_LEN_BYTES, None, 1, None);
        let Some(key) = self.conns.get(&conn).map(|pc| pc.key) else {
            return false;
        };
        let now = self.now();
        match msg {
            // The decoder checked it against the torrent: the core takes it as it is.
            Message::Control(m) => {
                // On Err the core already queued the disconnect.
                let _ = self.torrent.handle_message(now, key, m);
            }
            Message::Piece { index, begin, data } => {
                // Only from `next_message`; the streaming decoder hands
                // payloads to `on_piece_payload` instead. The decoder bounds a
                // block by the negotiated request length (a u32).
                let block = Block {
                    piece: index,
                    offset: begin,
                    len_bytes: u32::try_from(data.len()).unwrap_or(u32::MAX),
                };
                let stored = self.torrent.wants_block(key, &block)
                    && self.write_payload(block.piece, block.offset, &data);
                if let Some(pc) = self.conns.get_mut(&conn) {
                    let (piece, len) = (block.piece, block.len_bytes);
                    Self::count_piece_received(&mut self.piece_sources, pc, piece, len, stored);
                }
                let _ = self.torrent.handle_block_received(now, key, block);
            }
            Message::Port { .. } | Message::Extended(_) => {}
        }
        // Actions are run per message, so a VerifyPiece sees its block written
        // and a Disconnect stops decoding this connection.
        self.drain(ctx);
        true
    }

    /// Writes payload the core wants (a whole block, or a chunk of one
    /// streamed in) at `offset` of `piece`; true if it was stored.
    /// A shadow piece's payload goes to its buffer, never to shared storage
    /// (see `shadow`). Writes to a piece verified meanwhile (an endgame
    /// duplicate) or lost are dropped; any other disk error stops the node.
    fn write_payload(&mut self, piece: PieceIndex, offset: BlockOffset, data: &[u8]) -> bool {
        if self.torrent.is_shadow(piece) {
            return self.store_shadow(piece, offset, data);
        }
        match super::retry_busy(|| self.storage.write_block(piece, offset, data)) {
            Ok(()) => true,
            Err(StoreError::AlreadyVerified { .. } | StoreError::PieceLost { .. }) => false,
            Err(e) => {
                self.fail(e);
                false
            }
        }
    }
}

#[cfg(test)]
#[path = "recv_tests.rs"]
mod tests;
