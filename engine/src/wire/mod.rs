//! Codecs: `.torrent` metainfo (BEP 3), magnet links (BEP 9) and the peer wire
//! protocol (BEP 3, 6, 9, 10). No I/O.
#![deny(clippy::disallowed_methods)]

pub(crate) mod bencode;
pub mod magnet;
pub mod metainfo;
pub mod peer;
pub mod pex;
pub mod tracker;
pub mod web_seed;
