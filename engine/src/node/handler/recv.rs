//! Receive path: handshake, extended handshake, decoding, blocks to storage.

use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;

use crate::core::{Block, PeerCaps};
use crate::rt::{ConnId, Ctx};
use crate::store::StoreError;
use crate::wire::peer::{
    negotiated_max_request_len, DecoderLimits, ExtendedMessage, Message, BLOCK_LEN_BYTES,
};

use super::super::convert::{self, Inbound};
use super::super::peer::Phase;
use super::super::EXT_HANDSHAKE_WAIT;
use super::{NodeHandler, PEX_EXT_ID};

impl NodeHandler {
    /// Feeds received bytes of `conn` through its handshake or message
    /// decoder and handles every complete message. Any error closes `conn`.
    pub(super) fn receive(&mut self, ctx: &mut Ctx, conn: ConnId, data: &[u8]) {
        let Some(pc) = self.conns.get_mut(&conn) else {
            return;
        };
        if let Phase::Handshake(hd) = &mut pc.phase {
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
                    let Phase::Handshake(hd) = std::mem::replace(&mut pc.phase, Phase::Moving)
                    else {
                        return;
                    };
                    let mut decoder = hd.into_decoder(DecoderLimits::new(self.piece_count));
                    decoder.set_negotiated(&self.ours, &theirs);
                    let peer_id = theirs.peer_id;
                    pc.peer_id = Some(peer_id);
                    pc.phase = Phase::Open {
                        decoder,
                        theirs,
                        since: Instant::now(),
                    };
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
        } else if let Phase::Open { decoder, .. } = &mut pc.phase {
            decoder.extend(data);
        }
        self.decode_all(ctx, conn);
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
        self.shared.peers_seen.fetch_add(1, Ordering::AcqRel);
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
            self.register(conn, BLOCK_LEN_BYTES);
        }
    }

    /// Hands `conn` to the core with the negotiated request length.
    fn register(&mut self, conn: ConnId, max_request_len_bytes: u32) {
        let Some(pc) = self.conns.get_mut(&conn) else {
            return;
        };
        if pc.registered {
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
        };
        pc.registered = true;
        let (key, caps) = (pc.key, pc.caps);
        // The bitfield we send must include pieces other workers verified.
        self.sync_have();
        let now = self.now();
        self.torrent.handle_peer_connected(now, key, caps);
    }

    /// Peers that set the BEP 10 bit but sent no extended handshake within
    /// [`EXT_HANDSHAKE_WAIT`] are handed to the core as plain peers.
    pub(super) fn register_stale(&mut self, now: Instant) {
        let stale: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, pc)| {
                !pc.registered
                    && matches!(pc.phase, Phase::Open { since, .. }
                        if now.saturating_duration_since(since) >= EXT_HANDSHAKE_WAIT)
            })
            .map(|(c, _)| *c)
            .collect();
        for conn in stale {
            self.register(conn, BLOCK_LEN_BYTES);
        }
    }

    fn decode_all(&mut self, ctx: &mut Ctx, conn: ConnId) {
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
            match decoder.next_message() {
                Ok(None) => return,
                Ok(Some(msg)) => {
                    if !self.handle_message(ctx, conn, msg) {
                        ctx.close(conn);
                        return;
                    }
                }
                Err(_) => {
                    ctx.close(conn);
                    return;
                }
            }
        }
    }

    /// Handles one decoded message; false closes the connection.
    fn handle_message(&mut self, ctx: &mut Ctx, conn: ConnId, msg: Message) -> bool {
        if let Message::Extended(ExtendedMessage::Handshake(theirs)) = &msg {
            let len = negotiated_max_request_len(&self.our_ext, theirs, self.piece_len_bytes);
            self.on_extended_handshake(conn, theirs);
            self.register(conn, len);
            return true;
        }
        if let Message::Extended(ExtendedMessage::Other { id, payload }) = &msg {
            if *id == PEX_EXT_ID && self.pex_interval.is_some() {
                return self.on_pex(ctx, conn, payload);
            }
        }
        let inbound = match convert::inbound(msg, self.piece_count) {
            Ok(i) => i,
            Err(_) => return false,
        };
        if matches!(inbound, Inbound::Ignore) {
            return true;
        }
        self.register(conn, BLOCK_LEN_BYTES);
        let Some(key) = self.conns.get(&conn).map(|pc| pc.key) else {
            return false;
        };
        let now = self.now();
        match inbound {
            Inbound::Core(m) => {
                // On Err the core already queued the disconnect.
                let _ = self.torrent.handle_message(now, key, m);
            }
            Inbound::Piece(block, data) => {
                if self.torrent.handle_block_received(now, key, block).is_ok() {
                    self.store_block(block, &data);
                }
            }
            Inbound::Ignore => {}
        }
        // Actions are run per message, so a VerifyPiece sees its block written
        // and a Disconnect stops decoding this connection.
        self.drain(ctx);
        true
    }

    /// Writes a block the core accepted. Duplicates of pieces verified
    /// meanwhile (endgame) are dropped; other disk errors stop the node.
    fn store_block(&mut self, block: Block, data: &Bytes) {
        match self
            .storage
            .write_block(block.piece.0, block.offset_bytes, data)
        {
            Ok(()) | Err(StoreError::AlreadyVerified { .. } | StoreError::PieceLost { .. }) => {}
            Err(e) => self.fail(e),
        }
    }
}
