//! Peer discovery: the tracker client (sans-IO logic and a blocking driver) and
//! the embedded tracker server (`p2pe tracker`). Codecs live in
//! [`crate::wire::tracker`].
//!
//! - [`tracker_client`]: which tracker to announce to and when (BEP 3, BEP 12
//!   tiers, BEP 15 connect and retransmit), sans-IO.
//! - [`tracker_io`]: a blocking driver running a [`tracker_client::TrackerClient`]
//!   over std sockets, for a node's control thread.
//! - [`metadata`]: a blocking driver fetching a magnet link's info dictionary
//!   from peers (BEP 9 over BEP 10), running [`crate::core::metadata`].
//! - [`tracker_server`]: in-memory swarms with a cluster-aware hand-out policy,
//!   and its UDP + HTTP sockets.

pub mod metadata;
pub mod tracker_client;
pub mod tracker_io;
pub mod tracker_server;
