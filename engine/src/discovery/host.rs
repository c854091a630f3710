//! What a discovery thread ([`super::announcer`], [`super::dht`]) needs from
//! the node it finds peers for, as a trait: discovery never reaches into the
//! node's state, and the node implements it in a few lines of glue
//! (`node/shared.rs`).

use std::net::SocketAddr;

pub(crate) use crate::core::address_book::Source;

/// A torrent's progress as a discovery thread reads it (BEP 3 announce fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SwarmProgress {
    /// Payload bytes uploaded this session (BEP 3 `uploaded`).
    pub(crate) uploaded_bytes: u64,
    /// Payload bytes downloaded this session (BEP 3 `downloaded`).
    pub(crate) downloaded_bytes: u64,
    /// Payload bytes still missing (BEP 3 `left`).
    pub(crate) left_bytes: u64,
    /// Every piece is verified.
    pub(crate) complete: bool,
    /// Peers connected now, over all workers.
    pub(crate) peers: u32,
}

/// The node a discovery thread serves: it reads the torrent's progress and
/// hands over what it found. Called from the discovery threads, so `Sync`.
pub(crate) trait DiscoveryHost: Send + Sync {
    /// The torrent's progress now.
    fn progress(&self) -> SwarmProgress;
    /// Peers `source` returned, for the workers to dial (the host bounds
    /// its queues; addresses beyond them are dropped).
    fn found_peers(&self, peers: Vec<SocketAddr>, source: Source);
    /// One line for the node's log.
    fn log(&self, line: String);
    /// The tracker client's counters: announces accepted, and announces
    /// that failed (each tracker tried counts once).
    fn set_announce_counts(&self, ok: u32, failed: u32);
}
