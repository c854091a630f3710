//! Codecs: `.torrent` metainfo (BEP 3) and the peer wire protocol (BEP 3, 6, 10). No I/O.
#![deny(clippy::disallowed_methods)]

pub(crate) mod bencode;
pub mod metainfo;
pub mod peer;
pub mod pex;
pub mod tracker;
pub mod web_seed;
