//! Tracker protocol codecs: HTTP announce and scrape (BEP 3, BEP 23 compact peers,
//! BEP 7 `peers6`, BEP 48 scrape) and the UDP tracker protocol (BEP 15, BEP 41
//! URL data). Pure: no sockets, no clock.
//!
//! - [`query`]: the announce / scrape URL query (percent-encoded info-hash and
//!   peer id bytes, p2pe's topology parameters `p2pe_rack` / `p2pe_zone`), both
//!   ways: the client builds it, the embedded tracker parses it.
//! - [`http`]: bencoded HTTP responses, both ways.
//! - [`udp`]: BEP 15 packets, both ways.
//!
//! # Invariants
//!
//! - Tracker and client input are untrusted: every decoder returns a
//!   [`TrackerError`] on malformed input and never panics; sizes are capped
//!   ([`MAX_HTTP_RESPONSE_BYTES`], [`MAX_QUERY_BYTES`], [`MAX_PEERS`]) before
//!   anything is allocated from a length the peer chose.
//! - Every encoder's output decodes back to the same value (proptests in
//!   `tests.rs`).

pub mod http;
pub mod query;
pub mod udp;

#[cfg(test)]
mod tests;

pub use http::{AnnounceResponse, ScrapeResponse, ScrapeStats};
pub use query::{Announce, Topology};

/// Largest HTTP tracker response body accepted, in bytes: 256 KiB.
///
/// Sized for [`MAX_PEERS`] dictionary-model peers (about 60 bytes each) with
/// room to spare; a compact response of 200 peers is 1.2 KiB.
pub const MAX_HTTP_RESPONSE_BYTES: usize = 256 * 1024;

/// Largest announce / scrape query string accepted by the server, in bytes: 4 KiB.
///
/// An announce query is about 250 bytes; a scrape of the BEP 15 maximum of 74
/// info-hashes percent-encoded is about 4.5 KiB, so scrapes are capped at
/// [`MAX_SCRAPE_HASHES`] hashes instead.
pub const MAX_QUERY_BYTES: usize = 4 * 1024;

/// Most peers decoded from one response (compact, dictionary or UDP): 4096.
///
/// Trackers hand out 50 to 200 peers; more is a lying tracker, and the rest are
/// dropped rather than growing the peer list without bound.
pub const MAX_PEERS: usize = 4096;

/// Most info-hashes in one scrape (BEP 15 fits 74 in one UDP packet).
pub const MAX_SCRAPE_HASHES: usize = 74;

/// Longest `p2pe_rack` / `p2pe_zone` label accepted, in bytes.
pub const MAX_LABEL_BYTES: usize = 64;

/// Length of a peer id in bytes (BEP 3).
pub const PEER_ID_LEN_BYTES: usize = crate::base::PeerId::LEN_BYTES;

/// Why tracker protocol bytes were rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrackerError {
    /// The tracker answered with a `failure reason` (BEP 3) or a BEP 15 error
    /// packet: the request was understood and refused.
    #[error("tracker failure: {0}")]
    Failure(String),
    /// The response is not valid bencode, or not a dictionary.
    #[error("bad bencode: {0}")]
    Bencode(String),
    /// A required key is missing.
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    /// A field has the wrong bencode type or an invalid value.
    #[error("bad field `{field}`: {reason}")]
    BadField {
        /// The key or query parameter.
        field: &'static str,
        /// What was wrong.
        reason: &'static str,
    },
    /// Input longer than the limit for its kind.
    #[error("input of {len_bytes} bytes exceeds the limit of {max_bytes} bytes")]
    TooLong {
        /// Input length in bytes.
        len_bytes: usize,
        /// The limit in bytes.
        max_bytes: usize,
    },
    /// A BEP 15 packet too short for its action, or with an unknown action.
    #[error("bad UDP tracker packet: {0}")]
    BadPacket(&'static str),
}

/// The announce `event` (BEP 3; numbered as in BEP 15).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Event {
    /// A regular announce (no `event` parameter; BEP 15 id 0).
    #[default]
    None,
    /// The download completed (BEP 15 id 1).
    Completed,
    /// The first announce of this session (BEP 15 id 2).
    Started,
    /// The peer is leaving the swarm (BEP 15 id 3).
    Stopped,
}

impl Event {
    /// The BEP 15 event id.
    pub fn udp_id(self) -> u32 {
        match self {
            Event::None => 0,
            Event::Completed => 1,
            Event::Started => 2,
            Event::Stopped => 3,
        }
    }

    /// The event of a BEP 15 id; unknown ids read as [`Event::None`] (lenient, as
    /// opentracker is).
    pub fn from_udp_id(id: u32) -> Self {
        match id {
            1 => Event::Completed,
            2 => Event::Started,
            3 => Event::Stopped,
            _ => Event::None,
        }
    }

    /// The HTTP `event` query value, or `None` for a regular announce.
    pub fn query_value(self) -> Option<&'static str> {
        match self {
            Event::None => None,
            Event::Completed => Some("completed"),
            Event::Started => Some("started"),
            Event::Stopped => Some("stopped"),
        }
    }
}
