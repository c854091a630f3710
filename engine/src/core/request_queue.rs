//! How many requests we keep outstanding to one peer (our request queue toward it).
//!
//! A p2pe peer takes whole-piece requests: one piece in flight per peer (the torrent's
//! `pipeline_bytes`) keeps a downlink busy, since many peers unchoke us at once. Other
//! clients take 16 KiB blocks and answer each request after their own queueing delay
//! (Transmission serves its peers in bandwidth pulses): a fixed queue of one piece caps
//! such a peer at `piece_len / delay`, e.g. 256 KiB per ~0.5 s. So, as libtorrent does
//! (`peer_connection::update_desired_queue_size`), the queue toward a block peer grows
//! with its measured rate: it holds [`REQUEST_QUEUE_TIME`] worth of the rate, never less
//! than `pipeline_bytes` (which is at least 16 blocks), and at most the peer's BEP 10
//! `reqq` and our `max_request_queue` requests.

use super::config::BLOCK_LEN_BYTES;
use std::time::Duration;

/// How much of a block peer's measured download rate we keep requested: libtorrent's
/// `request_queue_time` (3 s). Long enough to cover a client that answers in pulses of
/// up to a second; the queue is bounded in requests anyway.
pub(crate) const REQUEST_QUEUE_TIME: Duration = Duration::from_secs(3);

/// Bounds on our requests in flight to one peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct QueueLimit {
    /// Bytes requested and not yet received.
    pub bytes: u64,
    /// Requests outstanding.
    pub requests: usize,
}

/// The request queue toward a peer taking requests of at most `max_request_len_bytes`
/// (16 KiB: a block peer) that sends at `rate_bytes_per_s` and accepts `reqq` queued
/// requests (BEP 10; `None` when it did not say). `pipeline_bytes` is the floor (whole
/// queue of a p2pe peer) and `max_requests` our own cap (at least 1).
pub(crate) fn queue_limit(
    max_request_len_bytes: u32,
    rate_bytes_per_s: f64,
    reqq: Option<u32>,
    pipeline_bytes: u64,
    max_requests: u32,
) -> QueueLimit {
    let cap = reqq.map_or(max_requests, |r| r.min(max_requests)).max(1);
    let bytes = if max_request_len_bytes <= BLOCK_LEN_BYTES {
        // `as` saturates: a NaN or huge rate cannot wrap.
        let wanted = (rate_bytes_per_s.max(0.0) * REQUEST_QUEUE_TIME.as_secs_f64()) as u64;
        let most = u64::from(cap) * u64::from(BLOCK_LEN_BYTES);
        pipeline_bytes.max(wanted.min(most))
    } else {
        pipeline_bytes
    };
    QueueLimit {
        bytes,
        requests: cap as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: u64 = BLOCK_LEN_BYTES as u64;

    #[test]
    fn a_block_peers_queue_grows_with_its_rate_up_to_the_caps() {
        let pipe = 16 * BLOCK;
        // Idle or slow: the floor.
        assert_eq!(queue_limit(16384, 0.0, None, pipe, 500).bytes, pipe);
        assert_eq!(queue_limit(16384, 1e3, None, pipe, 500).bytes, pipe);
        // 10 MB/s for 3 s: 30 MB, capped at 500 blocks.
        let fast = queue_limit(16384, 10e6, None, pipe, 500);
        assert_eq!(
            fast,
            QueueLimit {
                bytes: 500 * BLOCK,
                requests: 500
            }
        );
        // 1 MB/s: 3 MB of blocks.
        assert_eq!(queue_limit(16384, 1e6, None, pipe, 500).bytes, 3_000_000);
        // The peer's reqq bounds both.
        let small = queue_limit(16384, 10e6, Some(100), pipe, 500);
        assert_eq!(
            small,
            QueueLimit {
                bytes: 100 * BLOCK,
                requests: 100
            }
        );
        assert_eq!(queue_limit(16384, 10e6, Some(0), pipe, 500).requests, 1);
        assert_eq!(queue_limit(16384, f64::NAN, None, pipe, 500).bytes, pipe);
    }

    #[test]
    fn a_whole_piece_peer_keeps_one_pipeline() {
        let pipe = 4 << 20;
        let l = queue_limit(4 << 20, 1e9, Some(250), pipe, 500);
        assert_eq!(
            l,
            QueueLimit {
                bytes: pipe,
                requests: 250
            }
        );
    }
}
