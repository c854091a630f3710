//! Peer discovery: the tracker client (sans-IO logic and a blocking driver) and
//! the embedded tracker server (`p2pe tracker`). Codecs live in
//! [`crate::wire::tracker`].
//!
//! - [`tracker_client`]: which tracker to announce to and when (BEP 3, BEP 12
//!   tiers, BEP 15 connect and retransmit), sans-IO.
//! - [`tracker_io`]: a blocking driver running a [`tracker_client::TrackerClient`]
//!   over std sockets, for a node's control thread.
//! - [`http`]: the TLS settings every HTTP client shares, and a bounded
//!   one-shot GET (a `.torrent` by URL).
//! - [`metadata`]: a blocking driver fetching a magnet link's info dictionary
//!   from peers (BEP 9 over BEP 10), running [`crate::core::metadata`].
//! - [`tracker_server`]: in-memory swarms with a cluster-aware hand-out policy,
//!   and its UDP + HTTP sockets.

pub mod http;
pub mod metadata;
pub mod tracker_client;
pub mod tracker_io;
pub mod tracker_server;

pub use http::tls_config;
