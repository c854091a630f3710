//! Send path: per-connection FIFO, blocks as gathered sends.

use std::sync::atomic::Ordering;

use smallvec::SmallVec;

use crate::core::{Block, PeerKey, PeerMessage};
use crate::node::dispatch::Ctx;
use crate::rt::{ConnId, Region};
use crate::wire::peer::{encode_control, piece_header};

use super::super::peer::Outgoing;
use super::NodeHandler;

/// Most bytes of control messages (anything but block payload) queued for one
/// peer and not yet taken by its socket. An honest peer reads: at most
/// `max_requests_per_peer` rejects (17 bytes each) plus a bitfield and a few
/// `have`s are ever waiting. A peer past it is not reading its socket while it
/// keeps sending (e.g. a request flood answered with BEP 6 rejects) and is
/// disconnected, so its backlog cannot grow the process (issue 11 item 5).
pub(crate) const MAX_CONTROL_BACKLOG_BYTES: u64 = 1 << 20;

impl NodeHandler {
    /// Sends `item` to `peer` now (rate limits are the core's: it only emits what
    /// they allow, see `core::rate_limit`).
    pub(super) fn enqueue(&mut self, ctx: &mut Ctx, peer: PeerKey, item: Outgoing) {
        let Some(&conn) = self.keys.get(&peer) else {
            return;
        };
        match item {
            Outgoing::Msg(msg) => self.send_msg(ctx, conn, &msg),
            Outgoing::Block(b) => self.send_block(ctx, conn, b),
        }
    }

    fn send_msg(&mut self, ctx: &mut Ctx, conn: ConnId, msg: &PeerMessage) {
        let mut buf = Vec::new();
        encode_control(msg, &mut buf);
        if let Some(pc) = self.conns.get_mut(&conn) {
            pc.queued_total_bytes += buf.len() as u64;
            if let PeerMessage::Request(b) = msg {
                if pc.requests_sent == 0 {
                    // Shows whether whole-piece requests (p2pe extension) are in use.
                    self.shared.log(format!(
                        "{}: first request of {} bytes (max {} bytes)",
                        pc.remote, b.len_bytes, pc.caps.max_request_len_bytes
                    ));
                }
                pc.requests_sent += 1;
            }
        }
        ctx.send(conn, buf);
        let backlog = self.conns.get(&conn).map_or(0, |pc| {
            ctx.queued_bytes(conn)
                .saturating_sub(pc.unsent_payload_bytes)
        });
        if backlog > MAX_CONTROL_BACKLOG_BYTES {
            if let Some(pc) = self.conns.get(&conn) {
                self.shared.log(format!(
                    "{}: closed ({backlog} bytes of messages unread: not reading its socket)",
                    pc.remote
                ));
            }
            ctx.close(conn);
        }
    }

    /// Queues the `piece` message for `block`: header plus the block's file
    /// regions (one per file it spans), without copying the data.
    fn send_block(&mut self, ctx: &mut Ctx, conn: ConnId, block: Block) {
        let len = block.len_bytes;
        let regions = self.regions(block);
        let header = piece_header(&block);
        let (Some(regions), Ok(header)) = (regions, header) else {
            // Not servable (the core only asks for verified pieces, so the
            // data changed on disk): report it done so the upload slot frees,
            // and tell a BEP 6 peer with a `reject` so that it asks elsewhere
            // at once instead of waiting for its snub deadline.
            let Some((key, fast)) = self
                .conns
                .get(&conn)
                .map(|pc| (pc.key, pc.caps.fast_extension))
            else {
                return;
            };
            let now = self.now();
            self.torrent.handle_block_sent(now, key, block);
            if fast {
                self.send_msg(ctx, conn, &PeerMessage::Reject(block));
            }
            return;
        };
        for (i, region) in regions.into_iter().enumerate() {
            let h: &[u8] = if i == 0 { &header } else { &[] };
            ctx.send_region(conn, h, region);
        }
        if let Some(pc) = self.conns.get_mut(&conn) {
            pc.queued_total_bytes += header.len() as u64 + u64::from(len);
            pc.blocks_in_flight
                .push_back((pc.queued_total_bytes, block));
            pc.unsent_payload_bytes += u64::from(len);
        }
    }

    /// The file regions of a verified block, `None` if it cannot be served:
    /// the store makes regions of verified pieces only (and re-checks that
    /// their files are unchanged, store rules).
    fn regions(&self, block: Block) -> Option<SmallVec<[Region; 2]>> {
        self.storage.servable_regions(block).ok()
    }

    /// The runtime handed bytes of `conn` to the kernel: report the blocks
    /// whose last byte has left.
    pub(super) fn sent(&mut self, ctx: &mut Ctx, conn: ConnId) {
        let still_queued = ctx.queued_bytes(conn);
        let Some(pc) = self.conns.get_mut(&conn) else {
            return;
        };
        let sent_mark = pc.queued_total_bytes.saturating_sub(still_queued);
        let key = pc.key;
        let mut done = Vec::new();
        while pc
            .blocks_in_flight
            .front()
            .is_some_and(|(mark, _)| *mark <= sent_mark)
        {
            if let Some((_, b)) = pc.blocks_in_flight.pop_front() {
                pc.unsent_payload_bytes = pc
                    .unsent_payload_bytes
                    .saturating_sub(u64::from(b.len_bytes));
                done.push(b);
            }
        }
        if pc.dropped_by_core {
            return;
        }
        let sent_bytes = done.iter().map(|b| u64::from(b.len_bytes)).sum::<u64>();
        pc.unbooked_up_bytes += sent_bytes;
        pc.activity.up_payload_bytes += sent_bytes;
        let now = self.now();
        for b in done {
            self.shared
                .uploaded_bytes
                .fetch_add(u64::from(b.len_bytes), Ordering::AcqRel);
            self.torrent.handle_block_sent(now, key, b);
        }
    }
}
