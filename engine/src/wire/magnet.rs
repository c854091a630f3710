//! Magnet links (BEP 9 §magnet URI format): parsing and formatting. No I/O.
//!
//! ```text
//! magnet:?xt=urn:btih:<info-hash>&dn=<name>&tr=<tracker>&ws=<web seed>&x.pe=<host:port>
//! ```
//!
//! - `xt=urn:btih:` carries the v1 info-hash as 40 hex digits or as 32
//!   base32 characters (RFC 4648, either case); exactly one distinct btih is
//!   accepted (the same hash twice is fine). A v2-only link (`urn:btmh:`
//!   without a `urn:btih:`) is refused: p2pe speaks v1.
//! - `dn` (display name), `tr` (tracker, repeatable), `ws` (BEP 19 web seed,
//!   repeatable) and `x.pe` (a peer `host:port`, repeatable; BEP 9) are
//!   percent-decoded (`+` reads as a space, as libtorrent does) and must be
//!   UTF-8. Unknown keys are ignored.
//! - `x.pe` is kept as written (`host:port`, IPv6 in brackets): resolving a
//!   name is I/O, the caller's. The port must be a number 1..=65535.
//!
//! Invariants: parsing never panics on any input; a link longer than
//! [`MAX_MAGNET_LEN_BYTES`] is refused before anything is decoded, which
//! bounds every list. [`MagnetLink::to_uri`] writes a link that
//! [`MagnetLink::parse`] reads back equal (property-tested).

use std::fmt;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::metainfo::{InfoHash, Metainfo, SHA1_LEN_BYTES};

/// Longest magnet link accepted, in bytes: 64 KiB. Sized far above any
/// real link (a few hundred trackers would fit); it bounds the lists a link
/// can grow.
pub const MAX_MAGNET_LEN_BYTES: usize = 64 * 1024;

/// The scheme and query start every magnet link begins with.
const PREFIX: &str = "magnet:?";

/// Bytes escaped in a query value: everything but RFC 3986 unreserved
/// characters (`A-Z a-z 0-9 - . _ ~`), so `&`, `=`, `+`, `%` and `#` inside
/// a URL or name cannot change the link's structure.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Bytes escaped in an `x.pe` value: as [`QUERY_VALUE`] but `:`, `[` and
/// `]` stay, because libtorrent reads `x.pe` without percent-decoding it
/// (checked with libtorrent 2.0).
const PEER_VALUE: &AsciiSet = &QUERY_VALUE.remove(b':').remove(b'[').remove(b']');

/// Why a magnet link was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MagnetError {
    /// It does not start with `magnet:?`.
    #[error("not a magnet link (expected `magnet:?…`)")]
    NotMagnet,
    /// Longer than [`MAX_MAGNET_LEN_BYTES`].
    #[error("magnet link of {len_bytes} bytes is longer than the limit of {MAX_MAGNET_LEN_BYTES}")]
    TooLong {
        /// The link's length in bytes.
        len_bytes: usize,
    },
    /// No `xt=urn:btih:…` parameter.
    #[error("magnet link has no `xt=urn:btih:` info-hash")]
    MissingInfoHash,
    /// Only a BitTorrent v2 hash (`xt=urn:btmh:`); p2pe needs the v1 btih.
    #[error("BitTorrent v2-only magnet links (`urn:btmh:` without `urn:btih:`) are not supported")]
    V2Only,
    /// The btih is neither 40 hex digits nor 32 base32 characters.
    #[error("bad info-hash {0:?}: expected 40 hex digits or 32 base32 characters")]
    BadInfoHash(String),
    /// Two different btih values.
    #[error("magnet link names two different info-hashes")]
    ConflictingInfoHash,
    /// A value's percent-encoding is not UTF-8.
    #[error("parameter `{key}` is not valid UTF-8 once percent-decoded")]
    NotUtf8 {
        /// The parameter's key.
        key: String,
    },
    /// An `x.pe` value is not `host:port` with a port in 1..=65535.
    #[error("bad peer address {0:?} in `x.pe`: expected HOST:PORT")]
    BadPeer(String),
}

/// A parsed magnet link (BEP 9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MagnetLink {
    /// The v1 info-hash (`xt=urn:btih:`).
    pub info_hash: InfoHash,
    /// Display name (`dn`), a suggestion only: the name used is the info
    /// dictionary's.
    pub display_name: Option<String>,
    /// Tracker URLs (`tr`), in link order, each its own BEP 12 tier.
    pub trackers: Vec<String>,
    /// Web seed URLs (`ws`, BEP 19), in link order.
    pub web_seeds: Vec<String>,
    /// Peers (`x.pe`), `host:port` as written (unresolved).
    pub peers: Vec<String>,
}

impl MagnetLink {
    /// A link with `info_hash` only.
    pub fn new(info_hash: InfoHash) -> Self {
        Self {
            info_hash,
            display_name: None,
            trackers: Vec::new(),
            web_seeds: Vec::new(),
            peers: Vec::new(),
        }
    }

    /// The link for a torrent: its info-hash, name, trackers (all tiers, in
    /// order) and web seeds.
    pub fn of_metainfo(meta: &Metainfo) -> Self {
        Self {
            info_hash: meta.info_hash(),
            display_name: Some(meta.info().name().to_owned()),
            trackers: meta.trackers().iter().flatten().cloned().collect(),
            web_seeds: meta.web_seeds().to_vec(),
            peers: Vec::new(),
        }
    }

    /// Whether `text` looks like a magnet link (starts with `magnet:`, any
    /// case), to tell it from a file path before parsing.
    pub fn is_magnet(text: &str) -> bool {
        text.get(..7)
            .is_some_and(|s| s.eq_ignore_ascii_case("magnet:"))
    }

    /// Parses a magnet link (untrusted input).
    ///
    /// # Errors
    /// [`MagnetError::TooLong`] over [`MAX_MAGNET_LEN_BYTES`];
    /// [`MagnetError::NotMagnet`] without the `magnet:?` prefix;
    /// [`MagnetError::MissingInfoHash`] or [`MagnetError::V2Only`] without a
    /// btih; [`MagnetError::BadInfoHash`], [`MagnetError::ConflictingInfoHash`],
    /// [`MagnetError::NotUtf8`], [`MagnetError::BadPeer`] for bad values.
    pub fn parse(text: &str) -> Result<Self, MagnetError> {
        if text.len() > MAX_MAGNET_LEN_BYTES {
            return Err(MagnetError::TooLong {
                len_bytes: text.len(),
            });
        }
        let query = strip_prefix_ci(text, PREFIX).ok_or(MagnetError::NotMagnet)?;
        let mut info_hash: Option<InfoHash> = None;
        let mut v2 = false;
        let mut link = Self::new(InfoHash([0; SHA1_LEN_BYTES]));
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, raw) = pair.split_once('=').unwrap_or((pair, ""));
            // `xt.1`, `tr.2`, …: numbered forms of the same keys (BEP 9 allows them).
            let base = key.split_once('.').map_or(key, |(k, n)| {
                if n.bytes().all(|b| b.is_ascii_digit()) {
                    k
                } else {
                    key
                }
            });
            match base {
                "xt" => {
                    let value = decode(key, raw)?;
                    if let Some(hash) = strip_prefix_ci(&value, "urn:btih:") {
                        let hash = parse_btih(hash)?;
                        match info_hash {
                            Some(h) if h != hash => return Err(MagnetError::ConflictingInfoHash),
                            _ => info_hash = Some(hash),
                        }
                    } else if strip_prefix_ci(&value, "urn:btmh:").is_some() {
                        v2 = true;
                    }
                }
                "dn" => link.display_name = Some(decode(key, raw)?),
                "tr" => link.trackers.push(decode(key, raw)?),
                "ws" => link.web_seeds.push(decode(key, raw)?),
                "x.pe" => {
                    let peer = decode(key, raw)?;
                    check_peer(&peer)?;
                    link.peers.push(peer);
                }
                _ => {}
            }
        }
        link.info_hash = match (info_hash, v2) {
            (Some(h), _) => h,
            (None, true) => return Err(MagnetError::V2Only),
            (None, false) => return Err(MagnetError::MissingInfoHash),
        };
        Ok(link)
    }

    /// The link as text: `xt` (40 lowercase hex digits), then `dn`, each
    /// `tr`, `ws` and `x.pe`, values percent-encoded.
    pub fn to_uri(&self) -> String {
        let mut out = format!("{PREFIX}xt=urn:btih:{}", self.info_hash);
        let mut push = |key: &str, value: &str, set: &'static AsciiSet| {
            out.push('&');
            out.push_str(key);
            out.push('=');
            out.extend(utf8_percent_encode(value, set));
        };
        if let Some(dn) = &self.display_name {
            push("dn", dn, QUERY_VALUE);
        }
        for tr in &self.trackers {
            push("tr", tr, QUERY_VALUE);
        }
        for ws in &self.web_seeds {
            push("ws", ws, QUERY_VALUE);
        }
        for pe in &self.peers {
            push("x.pe", pe, PEER_VALUE);
        }
        out
    }
}

impl fmt::Display for MagnetLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_uri())
    }
}

impl std::str::FromStr for MagnetLink {
    type Err = MagnetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// `text` without `prefix` (ASCII case-insensitive), if it starts with it.
fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    match text.get(..prefix.len()) {
        Some(p) if p.eq_ignore_ascii_case(prefix) => text.get(prefix.len()..),
        _ => None,
    }
}

/// Percent-decodes a query value (`+` is a space) into UTF-8.
fn decode(key: &str, raw: &str) -> Result<String, MagnetError> {
    let spaced = raw.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| MagnetError::NotUtf8 {
            key: key.to_owned(),
        })
}

/// A btih: 40 hex digits (either case) or 32 base32 characters (RFC 4648,
/// either case, no padding).
fn parse_btih(text: &str) -> Result<InfoHash, MagnetError> {
    let bad = || MagnetError::BadInfoHash(text.chars().take(64).collect());
    let bytes = match text.len() {
        40 => hex::decode(text).map_err(|_| bad())?,
        32 => data_encoding::BASE32_NOPAD
            .decode(text.to_ascii_uppercase().as_bytes())
            .map_err(|_| bad())?,
        _ => return Err(bad()),
    };
    <[u8; SHA1_LEN_BYTES]>::try_from(bytes.as_slice())
        .map(InfoHash)
        .map_err(|_| bad())
}

/// Checks that `peer` is `host:port` (IPv6 literal in brackets) with a
/// port in 1..=65535 and a non-empty host.
fn check_peer(peer: &str) -> Result<(), MagnetError> {
    let bad = || MagnetError::BadPeer(peer.chars().take(256).collect());
    let (host, port) = peer.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let bracketed = host.starts_with('[') && host.ends_with(']') && host.len() > 2;
    if port == 0 || host.is_empty() || (host.contains(':') && !bracketed) {
        return Err(bad());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HEX: &str = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";

    fn hash() -> InfoHash {
        let mut h = [0; 20];
        h.copy_from_slice(&hex::decode(HEX).unwrap());
        InfoHash(h)
    }

    #[test]
    fn hex_and_base32_btih() {
        let m = MagnetLink::parse(&format!("magnet:?xt=urn:btih:{HEX}")).unwrap();
        assert_eq!(m.info_hash, hash());
        let upper = MagnetLink::parse(&format!("MAGNET:?xt=urn:BTIH:{}", HEX.to_uppercase()));
        assert_eq!(upper.unwrap().info_hash, hash());
        let b32 = data_encoding::BASE32_NOPAD.encode(&hash().0);
        assert_eq!(b32.len(), 32);
        for text in [b32.clone(), b32.to_lowercase()] {
            let m = MagnetLink::parse(&format!("magnet:?xt=urn:btih:{text}")).unwrap();
            assert_eq!(m.info_hash, hash());
        }
    }

    #[test]
    fn decodes_names_trackers_peers() {
        let link = format!(
            "magnet:?xt=urn:btih:{HEX}&dn=my+model%20v2.bin&tr=http%3A%2F%2Ft1%3A80%2Fannounce\
             &tr=udp%3A%2F%2Ft2%3A6969&x.pe=10.0.0.1:6881&x.pe=%5B%3A%3A1%5D:7000\
             &x.pe=seed.example:51413&ws=http%3A%2F%2Fw%2Fd%2F&xl=123&unknown=1"
        );
        let m = MagnetLink::parse(&link).unwrap();
        assert_eq!(m.display_name.as_deref(), Some("my model v2.bin"));
        assert_eq!(m.trackers, ["http://t1:80/announce", "udp://t2:6969"]);
        assert_eq!(
            m.peers,
            ["10.0.0.1:6881", "[::1]:7000", "seed.example:51413"]
        );
        assert_eq!(m.web_seeds, ["http://w/d/"]);
        // Numbered keys (BEP 9) and the same btih twice.
        let m = MagnetLink::parse(&format!(
            "magnet:?xt.1=urn:btih:{HEX}&xt.2=urn:btih:{HEX}&tr.1=x"
        ))
        .unwrap();
        assert_eq!((m.info_hash, m.trackers), (hash(), vec!["x".to_string()]));
    }

    #[test]
    fn bad_input_is_a_typed_error() {
        let b32_bad = "0".repeat(32); // '0' is not in the base32 alphabet
        let cases: Vec<(String, MagnetError)> = vec![
            ("http://x".into(), MagnetError::NotMagnet),
            ("magnet:".into(), MagnetError::NotMagnet),
            ("magnet:?dn=x".into(), MagnetError::MissingInfoHash),
            (
                format!("magnet:?xt=urn:btmh:1220{}", "ab".repeat(32)),
                MagnetError::V2Only,
            ),
            (
                "magnet:?xt=urn:btih:abc".into(),
                MagnetError::BadInfoHash("abc".into()),
            ),
            (
                format!("magnet:?xt=urn:btih:{}", "zz".repeat(20)),
                MagnetError::BadInfoHash("zz".repeat(20)),
            ),
            (
                format!("magnet:?xt=urn:btih:{b32_bad}"),
                MagnetError::BadInfoHash(b32_bad.clone()),
            ),
            (
                format!("magnet:?xt=urn:btih:{HEX}&xt=urn:btih:{}", "0".repeat(40)),
                MagnetError::ConflictingInfoHash,
            ),
            (
                format!("magnet:?xt=urn:btih:{HEX}&dn=%FF%FE"),
                MagnetError::NotUtf8 { key: "dn".into() },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(MagnetLink::parse(&text), Err(want), "{text}");
        }
        for pe in [
            "1.2.3.4",
            "1.2.3.4:0",
            "1.2.3.4:70000",
            ":80",
            "::1:80",
            "h:x",
        ] {
            let r = MagnetLink::parse(&format!("magnet:?xt=urn:btih:{HEX}&x.pe={pe}"));
            assert!(matches!(r, Err(MagnetError::BadPeer(_))), "{pe}: {r:?}");
        }
        let long = format!("magnet:?xt=urn:btih:{HEX}&dn={}", "a".repeat(70_000));
        assert!(matches!(
            MagnetLink::parse(&long),
            Err(MagnetError::TooLong { .. })
        ));
    }

    #[test]
    fn formats_what_libtorrent_reads() {
        let mut m = MagnetLink::new(hash());
        m.display_name = Some("a b&c".into());
        m.trackers = vec!["http://t/announce?x=1".into()];
        m.peers = vec!["127.0.0.1:6881".into()];
        // libtorrent reads `x.pe` as written: `:` stays (checked with 2.0).
        assert_eq!(
            m.to_uri(),
            format!(
                "magnet:?xt=urn:btih:{HEX}&dn=a%20b%26c&tr=http%3A%2F%2Ft%2Fannounce%3Fx%3D1\
                 &x.pe=127.0.0.1:6881"
            )
        );
    }

    proptest! {
        #[test]
        fn round_trip(
            h in any::<[u8; 20]>(),
            dn in proptest::option::of(".{0,20}"),
            tr in proptest::collection::vec(".{0,30}", 0..4),
            ws in proptest::collection::vec(".{0,30}", 0..3),
            pe in proptest::collection::vec(("[a-z0-9.-]{1,20}", 1u16..), 0..3),
        ) {
            let m = MagnetLink {
                info_hash: InfoHash(h),
                display_name: dn,
                trackers: tr,
                web_seeds: ws,
                peers: pe.into_iter().map(|(h, p)| format!("{h}:{p}")).collect(),
            };
            prop_assert_eq!(MagnetLink::parse(&m.to_uri()), Ok(m));
        }

        #[test]
        fn never_panics(text in "magnet:\\?.{0,200}") {
            let _ = MagnetLink::parse(&text);
        }
    }
}
