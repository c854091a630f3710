//! Peer discovery, laid out as aquatic is: codecs in [`crate::wire::tracker`]
//! (and [`crate::wire::pex`]), the sans-IO tracker client, and beside it the
//! drivers that run it and the DHT for a node, plus the embedded tracker
//! server (`p2pe tracker`). Nothing here reads a node's state: the drivers
//! talk to it through the `DiscoveryHost` trait (`host`).
//!
//! - [`tracker_client`]: which tracker to announce to and when (BEP 3, BEP 12
//!   tiers, BEP 15 connect and retransmit), sans-IO.
//! - [`tracker_io`]: a blocking driver running a [`tracker_client::TrackerClient`]
//!   over std sockets.
//! - `announcer`: a node's tracker thread, running a `tracker_io` driver for
//!   one torrent and handing the peers to its host.
//! - [`dht`]: the BEP 5 DHT node of a session and each torrent's look-up and
//!   announce thread.
//! - `host`: the `DiscoveryHost` trait a node implements for those threads.
//! - [`http`]: the TLS settings every HTTP client shares, and a bounded
//!   one-shot GET (a `.torrent` by URL).
//! - [`metadata`]: a blocking driver fetching a magnet link's info dictionary
//!   from peers (BEP 9 over BEP 10), running [`crate::core::metadata`].
//! - [`tracker_server`]: in-memory swarms with a cluster-aware hand-out policy,
//!   and its UDP + HTTP sockets.

pub(crate) mod announcer;
pub mod dht;
pub(crate) mod host;
pub mod http;
pub mod metadata;
pub mod tracker_client;
pub mod tracker_io;
pub mod tracker_server;

pub use http::tls_config;
