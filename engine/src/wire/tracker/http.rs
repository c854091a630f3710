//! Bencoded HTTP tracker responses: announce (BEP 3, BEP 23 compact `peers`,
//! BEP 7 `peers6`) and scrape (BEP 48), parsed (client) and encoded (server).
//!
//! Parsing uses bendy's strict decoder: keys must be sorted, as every
//! mainstream tracker (opentracker, aquatic, libtorrent-based) writes them.
//! Peers in the dictionary model (`peers` as a list of `{ip, port}`) are
//! accepted; entries whose `ip` is a host name rather than an address are skipped.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bendy::decoding::{Decoder, DictDecoder, ListDecoder, Object};

use super::{TrackerError, MAX_HTTP_RESPONSE_BYTES, MAX_PEERS};
use crate::wire::metainfo::{InfoHash, SHA1_LEN_BYTES};

/// Nesting depth accepted: a dictionary-model peer list needs 3.
const MAX_DEPTH: usize = 8;

/// A successful announce response (BEP 3 §Tracker responses).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct AnnounceResponse {
    /// Seconds the client should wait before its next regular announce.
    pub interval_s: u32,
    /// Seconds the client must wait at least between announces, if given.
    pub min_interval_s: Option<u32>,
    /// Seeders in the swarm, if given.
    pub complete: Option<u32>,
    /// Leechers in the swarm, if given.
    pub incomplete: Option<u32>,
    /// A `warning message`: the announce worked, but the tracker has a complaint.
    pub warning_message: Option<String>,
    /// Peers, IPv4 and IPv6 (from `peers` and `peers6`), at most [`MAX_PEERS`].
    pub peers: Vec<SocketAddr>,
}

/// Swarm counters for one torrent in a scrape (BEP 48; BEP 15 uses the same three).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ScrapeStats {
    /// Seeders.
    pub complete: u32,
    /// Completed downloads the tracker has seen (`event=completed`).
    pub downloaded: u32,
    /// Leechers.
    pub incomplete: u32,
}

/// A scrape response: counters per info-hash (BEP 48).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ScrapeResponse {
    /// One entry per torrent the tracker knows among those asked for.
    pub files: BTreeMap<InfoHash, ScrapeStats>,
}

fn bencode_err(err: bendy::decoding::Error) -> TrackerError {
    TrackerError::Bencode(err.to_string())
}

fn bad(field: &'static str, reason: &'static str) -> TrackerError {
    TrackerError::BadField { field, reason }
}

fn check_len(body: &[u8]) -> Result<(), TrackerError> {
    if body.len() > MAX_HTTP_RESPONSE_BYTES {
        return Err(TrackerError::TooLong {
            len_bytes: body.len(),
            max_bytes: MAX_HTTP_RESPONSE_BYTES,
        });
    }
    Ok(())
}

/// A non-negative integer that fits `u32`; larger values saturate (a tracker
/// announcing an interval of 2^40 s means "a long time", not an error).
fn uint32(obj: Object<'_, '_>, field: &'static str) -> Result<u32, TrackerError> {
    match obj {
        Object::Integer(digits) => {
            let value: i128 = digits.parse().map_err(|_| bad(field, "not an integer"))?;
            if value < 0 {
                return Err(bad(field, "negative"));
            }
            Ok(u32::try_from(value).unwrap_or(u32::MAX))
        }
        _ => Err(bad(field, "not an integer")),
    }
}

fn text(obj: Object<'_, '_>, field: &'static str) -> Result<String, TrackerError> {
    match obj {
        Object::Bytes(raw) => Ok(String::from_utf8_lossy(raw).into_owned()),
        _ => Err(bad(field, "not a byte string")),
    }
}

/// Appends compact peers (`chunk` bytes each: address then big-endian port).
fn compact_peers(raw: &[u8], v6: bool, peers: &mut Vec<SocketAddr>) -> Result<(), TrackerError> {
    let (field, chunk) = if v6 { ("peers6", 18) } else { ("peers", 6) };
    if !raw.len().is_multiple_of(chunk) {
        return Err(bad(field, "length not a multiple of the peer size"));
    }
    for entry in raw.chunks_exact(chunk) {
        if peers.len() >= MAX_PEERS {
            break;
        }
        let (ip_bytes, port_bytes) = entry.split_at(chunk - 2);
        let port = u16::from_be_bytes(port_bytes.try_into().map_err(|_| bad(field, "size"))?);
        let ip = if v6 {
            let octets: [u8; 16] = ip_bytes.try_into().map_err(|_| bad(field, "size"))?;
            IpAddr::V6(Ipv6Addr::from(octets))
        } else {
            let octets: [u8; 4] = ip_bytes.try_into().map_err(|_| bad(field, "size"))?;
            IpAddr::V4(Ipv4Addr::from(octets))
        };
        peers.push(SocketAddr::new(ip, port));
    }
    Ok(())
}

/// Appends dictionary-model peers (`[{ip, port, peer id}, ...]`).
fn dict_peers(
    mut list: ListDecoder<'_, '_>,
    peers: &mut Vec<SocketAddr>,
) -> Result<(), TrackerError> {
    while let Some(item) = list.next_object().map_err(bencode_err)? {
        let Object::Dict(mut dict) = item else {
            return Err(bad("peers", "entry not a dictionary"));
        };
        let (mut ip, mut port) = (None, None);
        while let Some((key, value)) = dict.next_pair().map_err(bencode_err)? {
            match key {
                b"ip" => ip = Some(text(value, "ip")?),
                b"port" => {
                    let p = uint32(value, "port")?;
                    port = Some(u16::try_from(p).map_err(|_| bad("port", "above 65535"))?);
                }
                _ => {}
            }
        }
        let ip = ip.ok_or(TrackerError::MissingField("ip"))?;
        let port = port.ok_or(TrackerError::MissingField("port"))?;
        if let Ok(addr) = ip.parse::<IpAddr>() {
            if peers.len() < MAX_PEERS {
                peers.push(SocketAddr::new(addr, port));
            }
        }
    }
    Ok(())
}

/// Runs `f` on the single top-level dictionary of `body`, rejecting trailing bytes.
fn with_dict<T>(
    body: &[u8],
    f: impl FnOnce(DictDecoder<'_, '_>) -> Result<T, TrackerError>,
) -> Result<T, TrackerError> {
    check_len(body)?;
    let mut decoder = Decoder::new(body).with_max_depth(MAX_DEPTH);
    let value = {
        let root = decoder
            .next_object()
            .map_err(bencode_err)?
            .ok_or_else(|| TrackerError::Bencode("empty response".into()))?;
        let Object::Dict(dict) = root else {
            return Err(TrackerError::Bencode("response is not a dictionary".into()));
        };
        f(dict)?
    };
    let trailing = match decoder.next_object() {
        Ok(None) => Ok(value),
        Ok(Some(_)) => Err(TrackerError::Bencode("trailing bytes".into())),
        Err(err) => Err(bencode_err(err)),
    };
    trailing
}

impl AnnounceResponse {
    /// Parses an HTTP announce response body (BEP 3, BEP 23, BEP 7).
    ///
    /// # Errors
    /// [`TrackerError::Failure`] when the tracker sent a `failure reason`;
    /// [`TrackerError::TooLong`] past [`MAX_HTTP_RESPONSE_BYTES`];
    /// [`TrackerError::Bencode`] for invalid bencode; [`TrackerError::MissingField`]
    /// without `interval`; [`TrackerError::BadField`] for a malformed field.
    pub fn from_bencode(body: &[u8]) -> Result<Self, TrackerError> {
        with_dict(body, |mut dict| {
            let mut resp = AnnounceResponse::default();
            let mut interval = None;
            let mut failure = None;
            while let Some((key, value)) = dict.next_pair().map_err(bencode_err)? {
                match key {
                    b"failure reason" => failure = Some(text(value, "failure reason")?),
                    b"warning message" => {
                        resp.warning_message = Some(text(value, "warning message")?)
                    }
                    b"interval" => interval = Some(uint32(value, "interval")?),
                    b"min interval" => resp.min_interval_s = Some(uint32(value, "min interval")?),
                    b"complete" => resp.complete = Some(uint32(value, "complete")?),
                    b"incomplete" => resp.incomplete = Some(uint32(value, "incomplete")?),
                    b"peers" => match value {
                        Object::Bytes(raw) => compact_peers(raw, false, &mut resp.peers)?,
                        Object::List(list) => dict_peers(list, &mut resp.peers)?,
                        _ => return Err(bad("peers", "neither a string nor a list")),
                    },
                    b"peers6" => match value {
                        Object::Bytes(raw) => compact_peers(raw, true, &mut resp.peers)?,
                        _ => return Err(bad("peers6", "not a byte string")),
                    },
                    _ => {}
                }
            }
            if let Some(reason) = failure {
                return Err(TrackerError::Failure(reason));
            }
            resp.interval_s = interval.ok_or(TrackerError::MissingField("interval"))?;
            Ok(resp)
        })
    }

    /// Encodes the response as the p2pe tracker sends it. With `compact`
    /// (BEP 23), IPv4 peers go in `peers` and IPv6 peers in `peers6`; without,
    /// all peers go in a dictionary-model `peers` list.
    pub fn to_bencode(&self, compact: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.peers.len() * 18);
        out.push(b'd');
        // Keys in sorted order (bencode requires it).
        if let Some(n) = self.complete {
            put_int(&mut out, "complete", n.into());
        }
        if let Some(n) = self.incomplete {
            put_int(&mut out, "incomplete", n.into());
        }
        put_int(&mut out, "interval", self.interval_s.into());
        if let Some(n) = self.min_interval_s {
            put_int(&mut out, "min interval", n.into());
        }
        if compact {
            let (mut v4, mut v6) = (Vec::new(), Vec::new());
            for peer in &self.peers {
                match peer.ip() {
                    IpAddr::V4(ip) => v4.extend_from_slice(&ip.octets()),
                    IpAddr::V6(ip) => v6.extend_from_slice(&ip.octets()),
                }
                let buf = if peer.is_ipv4() { &mut v4 } else { &mut v6 };
                buf.extend_from_slice(&peer.port().to_be_bytes());
            }
            put_bytes(&mut out, b"peers", &v4);
            if !v6.is_empty() {
                put_bytes(&mut out, b"peers6", &v6);
            }
        } else {
            put_bytes_key(&mut out, b"peers");
            out.push(b'l');
            for peer in &self.peers {
                out.push(b'd');
                put_bytes(&mut out, b"ip", peer.ip().to_string().as_bytes());
                put_int(&mut out, "port", peer.port().into());
                out.push(b'e');
            }
            out.push(b'e');
        }
        if let Some(warning) = &self.warning_message {
            put_bytes(&mut out, b"warning message", warning.as_bytes());
        }
        out.push(b'e');
        out
    }
}

/// Encodes a `failure reason` response (BEP 3).
pub fn failure_to_bencode(reason: &str) -> Vec<u8> {
    let mut out = vec![b'd'];
    put_bytes(&mut out, b"failure reason", reason.as_bytes());
    out.push(b'e');
    out
}

impl ScrapeResponse {
    /// Parses an HTTP scrape response body (BEP 48). Entries whose key is not
    /// a 20-byte info-hash are skipped; at most [`MAX_PEERS`] entries are kept.
    ///
    /// # Errors
    /// [`TrackerError::Failure`] for a `failure reason`; [`TrackerError::TooLong`],
    /// [`TrackerError::Bencode`], [`TrackerError::MissingField`] without `files`,
    /// [`TrackerError::BadField`] for a malformed entry.
    pub fn from_bencode(body: &[u8]) -> Result<Self, TrackerError> {
        with_dict(body, |mut dict| {
            let mut files = None;
            while let Some((key, value)) = dict.next_pair().map_err(bencode_err)? {
                match (key, value) {
                    (b"failure reason", value) => {
                        return Err(TrackerError::Failure(text(value, "failure reason")?))
                    }
                    (b"files", Object::Dict(entries)) => files = Some(scrape_files(entries)?),
                    (b"files", _) => return Err(bad("files", "not a dictionary")),
                    _ => {}
                }
            }
            Ok(ScrapeResponse {
                files: files.ok_or(TrackerError::MissingField("files"))?,
            })
        })
    }

    /// Encodes the response (BEP 48).
    pub fn to_bencode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.files.len() * 80);
        out.extend_from_slice(b"d5:filesd");
        for (hash, stats) in &self.files {
            put_bytes_key(&mut out, &hash.0);
            out.push(b'd');
            put_int(&mut out, "complete", stats.complete.into());
            put_int(&mut out, "downloaded", stats.downloaded.into());
            put_int(&mut out, "incomplete", stats.incomplete.into());
            out.push(b'e');
        }
        out.extend_from_slice(b"ee");
        out
    }
}

fn scrape_files(
    mut entries: DictDecoder<'_, '_>,
) -> Result<BTreeMap<InfoHash, ScrapeStats>, TrackerError> {
    let mut files = BTreeMap::new();
    while let Some((key, value)) = entries.next_pair().map_err(bencode_err)? {
        let Object::Dict(mut counters) = value else {
            return Err(bad("files", "entry not a dictionary"));
        };
        let mut stats = ScrapeStats::default();
        while let Some((name, n)) = counters.next_pair().map_err(bencode_err)? {
            match name {
                b"complete" => stats.complete = uint32(n, "complete")?,
                b"downloaded" => stats.downloaded = uint32(n, "downloaded")?,
                b"incomplete" => stats.incomplete = uint32(n, "incomplete")?,
                _ => {}
            }
        }
        if let Ok(hash) = <[u8; SHA1_LEN_BYTES]>::try_from(key) {
            if files.len() < MAX_PEERS {
                files.insert(InfoHash(hash), stats);
            }
        }
    }
    Ok(files)
}

use crate::wire::bencode;

/// Appends a dictionary key (or any byte string).
fn put_bytes_key(out: &mut Vec<u8>, key: &[u8]) {
    bencode::bytes(out, key);
}

fn put_bytes(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    bencode::key_bytes(out, key, value);
}

fn put_int(out: &mut Vec<u8>, key: &str, value: i64) {
    bencode::key_int(out, key.as_bytes(), value);
}
