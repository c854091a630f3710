//! Peer discovery: the tracker client (sans-IO logic and a blocking driver) and
//! the embedded tracker server (`p2pe tracker`). Codecs live in
//! [`crate::wire::tracker`].
//!
//! - [`tracker_client`]: which tracker to announce to and when (BEP 3, BEP 12
//!   tiers, BEP 15 connect and retransmit), sans-IO.
//! - [`tracker_io`]: a blocking driver running a [`tracker_client::TrackerClient`]
//!   over std sockets, for a node's control thread.
//! - [`tracker_server`]: in-memory swarms with a cluster-aware hand-out policy,
//!   and its UDP + HTTP sockets.

pub mod tracker_client;
pub mod tracker_io;
pub mod tracker_server;

/// The TLS settings of every HTTP client p2pe runs (HTTP(S) trackers, web
/// seeds, `.torrent` URLs): rustls, with the certificates the platform
/// trusts (`rustls-platform-verifier`: on Linux the system store under
/// `/etc/ssl`, or the bundle named by `SSL_CERT_FILE` / `SSL_CERT_DIR`, as
/// curl and OpenSSL read them). An `https://` server whose certificate does
/// not chain to one of them fails with a TLS error, never silently.
pub fn tls_config() -> ureq::tls::TlsConfig {
    ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::PlatformVerifier)
        .build()
}
