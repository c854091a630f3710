//! The HTTP announce and scrape query string (BEP 3, BEP 23, BEP 48), both ways.
//!
//! Binary parameters (`info_hash`, `peer_id`) are percent-encoded byte by byte;
//! every byte outside RFC 3986's unreserved set is escaped, so the query is
//! plain ASCII. Parsing accepts any escaping (and `+` for a space in labels).

use std::fmt::Write as _;

use super::{Event, TrackerError, MAX_LABEL_BYTES, MAX_QUERY_BYTES, MAX_SCRAPE_HASHES};
use crate::base::{InfoHash, PeerId, SHA1_LEN_BYTES};

/// Where the announcing node sits in the cluster: p2pe's extra announce
/// parameters `p2pe_rack` and `p2pe_zone` (not a BEP; other trackers ignore them).
///
/// Labels are at most [`MAX_LABEL_BYTES`] bytes of UTF-8.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Topology {
    /// The rack label, if given.
    pub rack: Option<String>,
    /// The zone label, if given.
    pub zone: Option<String>,
}

/// One announce: what a peer tells the tracker (BEP 3 §Trackers; BEP 15 carries
/// the same fields).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announce {
    /// The torrent.
    pub info_hash: InfoHash,
    /// The announcing peer's id.
    pub peer_id: PeerId,
    /// The TCP port the peer listens on for the peer wire.
    pub port: u16,
    /// Bytes uploaded this session.
    pub uploaded_bytes: u64,
    /// Bytes downloaded this session.
    pub downloaded_bytes: u64,
    /// Bytes still missing; 0 means a seeder.
    pub left_bytes: u64,
    /// The event, if any.
    pub event: Event,
    /// How many peers the client wants; `None` leaves it to the tracker.
    pub numwant: Option<u32>,
    /// A random key identifying the client across IP changes (BEP 7 `key`).
    pub key: u32,
    /// Cluster topology labels (p2pe extension).
    pub topology: Topology,
}

/// Whether `byte` is RFC 3986 unreserved (never escaped).
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// Appends `bytes` percent-encoded to `out`.
pub fn percent_encode(bytes: &[u8], out: &mut String) {
    for &byte in bytes {
        if is_unreserved(byte) {
            out.push(char::from(byte));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{byte:02X}");
        }
    }
}

fn hex_val(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// Decodes a percent-encoded query component (`+` reads as a space).
///
/// # Errors
/// [`TrackerError::BadField`] for a `%` not followed by two hex digits.
pub fn percent_decode(input: &[u8], field: &'static str) -> Result<Vec<u8>, TrackerError> {
    let mut out = Vec::with_capacity(input.len());
    let mut rest = input;
    while let Some((&byte, tail)) = rest.split_first() {
        match byte {
            b'%' => {
                let bad = TrackerError::BadField {
                    field,
                    reason: "bad percent escape",
                };
                let (hi, lo) = match tail {
                    [hi, lo, ..] => (hex_val(*hi).ok_or(bad.clone())?, hex_val(*lo).ok_or(bad)?),
                    _ => return Err(bad),
                };
                out.push(hi << 4 | lo);
                rest = tail.get(2..).unwrap_or_default();
            }
            b'+' => {
                out.push(b' ');
                rest = tail;
            }
            _ => {
                out.push(byte);
                rest = tail;
            }
        }
    }
    Ok(out)
}

/// Appends `query` to `base_url` with `?`, or `&` when the URL already has a query.
pub fn join_url(base_url: &str, query: &str) -> String {
    let sep = if base_url.contains('?') { '&' } else { '?' };
    format!("{base_url}{sep}{query}")
}

/// The scrape URL of an announce URL (BEP 48 convention): the last path
/// segment `announce` becomes `scrape`; `None` if it does not start with `announce`.
pub fn scrape_url(announce_url: &str) -> Option<String> {
    let (path, query) = match announce_url.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (announce_url, None),
    };
    let slash = path.rfind('/')?;
    let last = path.get(slash + 1..)?;
    let rest = last.strip_prefix("announce")?;
    let mut url = format!("{}/scrape{rest}", path.get(..slash)?);
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    Some(url)
}

impl Announce {
    /// The announce query string (without `?`), with `compact=1` (BEP 23).
    pub fn to_query(&self) -> String {
        let mut q = String::with_capacity(256);
        q.push_str("info_hash=");
        percent_encode(&self.info_hash.0, &mut q);
        q.push_str("&peer_id=");
        percent_encode(&self.peer_id.0, &mut q);
        let _ = write!(
            q,
            "&port={}&uploaded={}&downloaded={}&left={}&compact=1&key={:08x}",
            self.port, self.uploaded_bytes, self.downloaded_bytes, self.left_bytes, self.key
        );
        if let Some(event) = self.event.query_value() {
            let _ = write!(q, "&event={event}");
        }
        if let Some(numwant) = self.numwant {
            let _ = write!(q, "&numwant={numwant}");
        }
        for (name, label) in [
            ("p2pe_rack", &self.topology.rack),
            ("p2pe_zone", &self.topology.zone),
        ] {
            if let Some(label) = label {
                let _ = write!(q, "&{name}=");
                percent_encode(label.as_bytes(), &mut q);
            }
        }
        q
    }

    /// Parses an announce query string (the part after `?`), as the tracker
    /// receives it. Returns the announce and whether the client asked for
    /// compact peers (`compact=1`, BEP 23). Unknown parameters are ignored.
    ///
    /// # Errors
    /// [`TrackerError::TooLong`] past [`MAX_QUERY_BYTES`];
    /// [`TrackerError::MissingField`] without `info_hash`, `peer_id` or `port`;
    /// [`TrackerError::BadField`] for a malformed value.
    pub fn from_query(query: &[u8]) -> Result<(Announce, bool), TrackerError> {
        check_query_len(query)?;
        let mut info_hash = None;
        let mut peer_id = None;
        let mut port = None;
        let mut a = Announce {
            info_hash: InfoHash([0; SHA1_LEN_BYTES]),
            peer_id: PeerId([0; PeerId::LEN_BYTES]),
            port: 0,
            uploaded_bytes: 0,
            downloaded_bytes: 0,
            left_bytes: 0,
            event: Event::None,
            numwant: None,
            key: 0,
            topology: Topology::default(),
        };
        let mut compact = false;
        for (name, value) in pairs(query) {
            match name {
                b"info_hash" => info_hash = Some(hash20(value, "info_hash")?),
                b"peer_id" => peer_id = Some(hash20(value, "peer_id")?),
                b"port" => port = Some(number::<u16>(value, "port")?),
                b"uploaded" => a.uploaded_bytes = number(value, "uploaded")?,
                b"downloaded" => a.downloaded_bytes = number(value, "downloaded")?,
                b"left" => a.left_bytes = number(value, "left")?,
                b"numwant" => a.numwant = Some(number(value, "numwant")?),
                b"compact" => compact = value == b"1",
                b"key" => a.key = key(value),
                b"event" => a.event = event(value)?,
                b"p2pe_rack" => a.topology.rack = Some(label(value, "p2pe_rack")?),
                b"p2pe_zone" => a.topology.zone = Some(label(value, "p2pe_zone")?),
                _ => {}
            }
        }
        a.info_hash = InfoHash(info_hash.ok_or(TrackerError::MissingField("info_hash"))?);
        a.peer_id = PeerId(peer_id.ok_or(TrackerError::MissingField("peer_id"))?);
        a.port = port.ok_or(TrackerError::MissingField("port"))?;
        Ok((a, compact))
    }
}

/// The scrape query string for `info_hashes` (BEP 48): `info_hash=..&info_hash=..`.
pub fn scrape_query(info_hashes: &[InfoHash]) -> String {
    let mut q = String::with_capacity(info_hashes.len() * 70);
    for (i, hash) in info_hashes.iter().enumerate() {
        if i > 0 {
            q.push('&');
        }
        q.push_str("info_hash=");
        percent_encode(&hash.0, &mut q);
    }
    q
}

/// Parses a scrape query string: every `info_hash` parameter, at most
/// [`MAX_SCRAPE_HASHES`] of them (an empty list means "all", which the p2pe
/// tracker refuses to answer in full).
///
/// # Errors
/// [`TrackerError::TooLong`] past [`MAX_QUERY_BYTES`] or too many hashes;
/// [`TrackerError::BadField`] for a hash that is not 20 bytes.
pub fn parse_scrape_query(query: &[u8]) -> Result<Vec<InfoHash>, TrackerError> {
    check_query_len(query)?;
    let mut hashes = Vec::new();
    for (name, value) in pairs(query) {
        if name == b"info_hash" {
            if hashes.len() == MAX_SCRAPE_HASHES {
                return Err(TrackerError::TooLong {
                    len_bytes: (hashes.len() + 1) * SHA1_LEN_BYTES,
                    max_bytes: MAX_SCRAPE_HASHES * SHA1_LEN_BYTES,
                });
            }
            hashes.push(InfoHash(hash20(value, "info_hash")?));
        }
    }
    Ok(hashes)
}

fn check_query_len(query: &[u8]) -> Result<(), TrackerError> {
    if query.len() > MAX_QUERY_BYTES {
        return Err(TrackerError::TooLong {
            len_bytes: query.len(),
            max_bytes: MAX_QUERY_BYTES,
        });
    }
    Ok(())
}

/// `name=value` pairs of a query, split on `&`; a pair without `=` has an empty value.
fn pairs(query: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    query
        .split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (
                pair.get(..eq).unwrap_or_default(),
                pair.get(eq + 1..).unwrap_or_default(),
            ),
            None => (pair, &[][..]),
        })
}

fn hash20(value: &[u8], field: &'static str) -> Result<[u8; SHA1_LEN_BYTES], TrackerError> {
    percent_decode(value, field)?
        .try_into()
        .map_err(|_| TrackerError::BadField {
            field,
            reason: "not 20 bytes",
        })
}

fn number<T: std::str::FromStr>(value: &[u8], field: &'static str) -> Result<T, TrackerError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(TrackerError::BadField {
            field,
            reason: "not a number in range",
        })
}

/// The `key` parameter: hex (as libtorrent and p2pe send it), at most 8 digits.
/// Other clients send other shapes; the key is advisory, so those read as 0.
fn key(value: &[u8]) -> u32 {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| u32::from_str_radix(s, 16).ok())
        .unwrap_or(0)
}

fn event(value: &[u8]) -> Result<Event, TrackerError> {
    match value {
        b"started" => Ok(Event::Started),
        b"completed" => Ok(Event::Completed),
        b"stopped" => Ok(Event::Stopped),
        b"" | b"empty" | b"paused" => Ok(Event::None),
        _ => Err(TrackerError::BadField {
            field: "event",
            reason: "unknown event",
        }),
    }
}

fn label(value: &[u8], field: &'static str) -> Result<String, TrackerError> {
    let raw = percent_decode(value, field)?;
    if raw.len() > MAX_LABEL_BYTES {
        return Err(TrackerError::BadField {
            field,
            reason: "label longer than 64 bytes",
        });
    }
    String::from_utf8(raw).map_err(|_| TrackerError::BadField {
        field,
        reason: "label not UTF-8",
    })
}
