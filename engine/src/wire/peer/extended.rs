//! BEP 10 extended handshake dictionary and the p2pe large-request
//! extension negotiated through it.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use bendy::decoding::{Decoder as BDecoder, Object};
use bendy::encoding::{AsString, Encoder as BEncoder};

use super::{WireError, BLOCK_LEN_BYTES};
use crate::wire::tracker::MAX_LABEL_BYTES;

/// Name of the p2pe extension in a BEP 10 `m` dictionary.
pub const P2PE_EXTENSION_NAME: &str = "p2pe";

/// Top-level handshake key carrying [`P2peExt::max_request_len_bytes`].
const P2PE_MAX_REQUEST_KEY: &[u8] = b"p2pe_max_request";

/// Top-level handshake key carrying [`P2peExt::lanes`].
const P2PE_LANES_KEY: &[u8] = b"p2pe_lanes";

/// Top-level handshake keys carrying the sender's rack and zone labels
/// ([`ExtendedHandshake::p2pe_rack`]); the same labels as the p2pe announce
/// parameters `p2pe_rack` / `p2pe_zone`.
const P2PE_RACK_KEY: &[u8] = b"p2pe_rack";
const P2PE_ZONE_KEY: &[u8] = b"p2pe_zone";

/// Most parallel connections ("lanes") one p2pe pair may open
/// ([`P2peExt::lanes`]); a larger advertised count is read as this one.
/// Sized as a generous worker (core) count: each lane is one worker's
/// connection, and one peer id never holds more than this many slots.
pub const MAX_LANES: u8 = 64;

/// Nesting allowed in a peer's handshake dictionary. The known keys need 2
/// (`m` inside the root); unknown values get some slack. Keeps bendy's
/// recursive skipping of unknown values shallow.
const MAX_BENCODE_DEPTH: usize = 16;

/// The p2pe large-request extension (a p2pe extension, not a BEP).
///
/// Advertised in the BEP 10 handshake as `m["p2pe"] = id` (the standard
/// "I support this extension" marker, reserving an extended message id for
/// future p2pe messages) plus the top-level integer key `p2pe_max_request`:
/// the largest request, in bytes, this peer accepts and serves. Both keys
/// must be present (and `id` non-zero) for the extension to count.
///
/// The optional top-level integer key `p2pe_lanes` is the sender's worker
/// count: how many parallel connections it can carry to one peer (see
/// [`negotiated_lanes`]). Absent means 1; a value above [`MAX_LANES`] reads
/// as [`MAX_LANES`]; 0 or a non-integer is an error. It is sent only when
/// above 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct P2peExt {
    /// Extended message id the sender assigns to p2pe messages (1..=255).
    pub id: u8,
    /// Largest request the sender accepts and serves, in bytes.
    pub max_request_len_bytes: u32,
    /// The sender's worker count: parallel connections it can carry to one
    /// peer, 1..=[`MAX_LANES`].
    pub lanes: u8,
}

/// The BEP 10 extended handshake (extended message id 0).
///
/// Unknown keys are ignored; known keys of the wrong type are errors.
/// `m` never holds the p2pe entry: it lives in [`ExtendedHandshake::p2pe`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtendedHandshake {
    /// Extension name to the extended message id the sender wants to
    /// receive it under; id 0 means disabled (BEP 10 `m`).
    pub m: BTreeMap<String, u8>,
    /// The sender's listen port (BEP 10 `p`).
    pub p: Option<u16>,
    /// Client name and version, UTF-8 (BEP 10 `v`; lossy on invalid UTF-8).
    pub v: Option<String>,
    /// Outstanding requests the sender queues before dropping (BEP 10 `reqq`).
    pub reqq: Option<u32>,
    /// Our address as the sender sees it (BEP 10 `yourip`, 4 or 16 bytes).
    pub yourip: Option<IpAddr>,
    /// Size of the info dictionary in bytes (BEP 9 `metadata_size`).
    pub metadata_size: Option<u64>,
    /// The p2pe large-request extension, if advertised.
    pub p2pe: Option<P2peExt>,
    /// The sender's rack label (p2pe key `p2pe_rack`, not a BEP), at most
    /// [`MAX_LABEL_BYTES`] bytes of UTF-8: peers with the same rack (and zone)
    /// share a rack uplink, see [`crate::core::rack`].
    pub p2pe_rack: Option<String>,
    /// The sender's zone label (p2pe key `p2pe_zone`), bounded the same way;
    /// rack labels are compared within a zone.
    pub p2pe_zone: Option<String>,
}

/// The largest request length both sides may use, in bytes.
///
/// [`BLOCK_LEN_BYTES`] (16 KiB) unless both handshakes advertise
/// [`P2peExt`]; then the smaller of the two advertised maxima, capped by
/// `piece_len_bytes`, and never below 16 KiB (every BitTorrent peer must
/// serve 16 KiB blocks). A p2pe extension, not a BEP.
pub fn negotiated_max_request_len(
    ours: &ExtendedHandshake,
    theirs: &ExtendedHandshake,
    piece_len_bytes: u32,
) -> u32 {
    match (ours.p2pe, theirs.p2pe) {
        (Some(a), Some(b)) => a
            .max_request_len_bytes
            .min(b.max_request_len_bytes)
            .min(piece_len_bytes)
            .max(BLOCK_LEN_BYTES),
        _ => BLOCK_LEN_BYTES,
    }
}

/// How many parallel connections two p2pe peers use, 1..=[`MAX_LANES`]:
/// the smaller of the two advertised [`P2peExt::lanes`] when both handshakes
/// advertise [`P2peExt`], else 1 (any other client gets one connection). A
/// p2pe extension, not a BEP.
pub fn negotiated_lanes(ours: &ExtendedHandshake, theirs: &ExtendedHandshake) -> u8 {
    match (ours.p2pe, theirs.p2pe) {
        (Some(a), Some(b)) => a.lanes.min(b.lanes).clamp(1, MAX_LANES),
        _ => 1,
    }
}

fn bad(e: impl std::fmt::Display) -> WireError {
    WireError::BadExtendedHandshake(e.to_string())
}

fn int<T: FromStr>(key: &str, value: Object<'_, '_>) -> Result<T, WireError> {
    let text = value.try_into_integer().map_err(bad)?;
    text.parse()
        .map_err(|_| bad(format!("`{key}` value {text} out of range")))
}

/// A rack or zone label: UTF-8 of at most [`MAX_LABEL_BYTES`] bytes.
fn label(key: &str, value: Object<'_, '_>) -> Result<String, WireError> {
    let bytes = value.try_into_bytes().map_err(bad)?;
    if bytes.len() > MAX_LABEL_BYTES {
        return Err(bad(format!("`{key}` of {} bytes", bytes.len())));
    }
    String::from_utf8(bytes.to_vec()).map_err(|_| bad(format!("`{key}` is not UTF-8")))
}

fn ip(bytes: &[u8]) -> Result<IpAddr, WireError> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        Ok(IpAddr::V4(Ipv4Addr::from(v4)))
    } else if let Ok(v6) = <[u8; 16]>::try_from(bytes) {
        Ok(IpAddr::V6(Ipv6Addr::from(v6)))
    } else {
        Err(bad(format!("`yourip` of {} bytes", bytes.len())))
    }
}

impl ExtendedHandshake {
    /// An extended handshake advertising the p2pe extension under extended
    /// id `id` with `max_request_len_bytes` and one lane.
    pub fn with_p2pe(id: u8, max_request_len_bytes: u32) -> Self {
        Self {
            p2pe: Some(P2peExt {
                id,
                max_request_len_bytes,
                lanes: 1,
            }),
            ..Self::default()
        }
    }

    /// Decodes the bencoded dictionary of an extended message with id 0.
    /// Bytes after the dictionary are ignored.
    ///
    /// # Errors
    ///
    /// [`WireError::BadExtendedHandshake`] if the payload is not a bencoded
    /// dictionary (keys sorted, as bencode requires), or a known key has the
    /// wrong type or an out-of-range value.
    pub fn from_bencode(bytes: &[u8]) -> Result<Self, WireError> {
        let mut decoder = BDecoder::new(bytes).with_max_depth(MAX_BENCODE_DEPTH);
        let root = decoder.next_object().map_err(bad)?;
        let mut dict = root
            .ok_or_else(|| bad("empty payload"))?
            .try_into_dictionary()
            .map_err(bad)?;
        let mut hs = Self::default();
        let mut p2pe_max = None;
        let mut p2pe_lanes = 1u8;
        while let Some((key, value)) = dict.next_pair().map_err(bad)? {
            match key {
                b"m" => hs.m = decode_m(value)?,
                b"p" => hs.p = Some(int("p", value)?),
                b"v" => {
                    let v = value.try_into_bytes().map_err(bad)?;
                    hs.v = Some(String::from_utf8_lossy(v).into_owned());
                }
                b"reqq" => hs.reqq = Some(int("reqq", value)?),
                b"yourip" => hs.yourip = Some(ip(value.try_into_bytes().map_err(bad)?)?),
                b"metadata_size" => hs.metadata_size = Some(int("metadata_size", value)?),
                P2PE_RACK_KEY => hs.p2pe_rack = Some(label("p2pe_rack", value)?),
                P2PE_ZONE_KEY => hs.p2pe_zone = Some(label("p2pe_zone", value)?),
                P2PE_MAX_REQUEST_KEY => p2pe_max = Some(int("p2pe_max_request", value)?),
                P2PE_LANES_KEY => {
                    let n: u64 = int("p2pe_lanes", value)?;
                    if n == 0 {
                        return Err(bad("`p2pe_lanes` of 0"));
                    }
                    p2pe_lanes = u8::try_from(n.min(u64::from(MAX_LANES))).unwrap_or(MAX_LANES);
                }
                _ => {} // unknown keys are skipped (BEP 10)
            }
        }
        let p2pe_id = hs.m.remove(P2PE_EXTENSION_NAME).filter(|&id| id != 0);
        if let (Some(id), Some(max_request_len_bytes)) = (p2pe_id, p2pe_max) {
            hs.p2pe = Some(P2peExt {
                id,
                max_request_len_bytes,
                lanes: p2pe_lanes,
            });
        }
        Ok(hs)
    }

    /// Bencodes this handshake (keys sorted). A `"p2pe"` entry in `m` is
    /// replaced by [`ExtendedHandshake::p2pe`].
    ///
    /// # Errors
    ///
    /// [`WireError::Encode`] if bendy rejects the structure (not expected).
    pub fn to_bencode(&self) -> Result<Vec<u8>, WireError> {
        let mut m: BTreeMap<&str, u8> = self
            .m
            .iter()
            .filter(|(k, _)| k.as_str() != P2PE_EXTENSION_NAME)
            .map(|(k, v)| (k.as_str(), *v))
            .collect();
        if let Some(ext) = self.p2pe {
            m.insert(P2PE_EXTENSION_NAME, ext.id);
        }
        let enc_err = |e: bendy::encoding::Error| WireError::Encode(e.to_string());
        let mut encoder = BEncoder::new();
        encoder
            .emit_and_sort_dict(|d| {
                d.emit_pair(b"m", &m)?;
                if let Some(p) = self.p {
                    d.emit_pair(b"p", p)?;
                }
                if let Some(v) = &self.v {
                    d.emit_pair(b"v", v)?;
                }
                if let Some(reqq) = self.reqq {
                    d.emit_pair(b"reqq", reqq)?;
                }
                if let Some(ip) = self.yourip {
                    let octets = match ip {
                        IpAddr::V4(a) => a.octets().to_vec(),
                        IpAddr::V6(a) => a.octets().to_vec(),
                    };
                    d.emit_pair(b"yourip", AsString(octets))?;
                }
                if let Some(size) = self.metadata_size {
                    d.emit_pair(b"metadata_size", size)?;
                }
                if let Some(rack) = &self.p2pe_rack {
                    d.emit_pair(P2PE_RACK_KEY, rack)?;
                }
                if let Some(zone) = &self.p2pe_zone {
                    d.emit_pair(P2PE_ZONE_KEY, zone)?;
                }
                if let Some(ext) = self.p2pe {
                    d.emit_pair(P2PE_MAX_REQUEST_KEY, ext.max_request_len_bytes)?;
                    if ext.lanes > 1 {
                        d.emit_pair(P2PE_LANES_KEY, ext.lanes)?;
                    }
                }
                Ok(())
            })
            .map_err(enc_err)?;
        encoder.get_output().map_err(enc_err)
    }
}

/// Decodes the `m` dictionary; names that are not UTF-8 cannot be ones we
/// know, so they are skipped.
fn decode_m(value: Object<'_, '_>) -> Result<BTreeMap<String, u8>, WireError> {
    let mut m = BTreeMap::new();
    let mut dict = value.try_into_dictionary().map_err(bad)?;
    while let Some((name, id)) = dict.next_pair().map_err(bad)? {
        let id: u8 = int("m", id)?;
        if let Ok(name) = std::str::from_utf8(name) {
            m.insert(name.to_owned(), id);
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_libtorrent_style_dict() {
        let raw = b"d12:complete_agoi-1e1:md11:lt_donthavei7e10:share_modei8e11:ut_metadatai2e6:ut_pexi1ee13:metadata_sizei3210e1:pi6881e4:reqqi500e11:upload_onlyi0e1:v17:libtorrent 2.0.10e";
        let hs = ExtendedHandshake::from_bencode(raw).unwrap();
        assert_eq!(hs.m.get("ut_metadata"), Some(&2));
        assert_eq!(hs.p, Some(6881));
        assert_eq!(hs.reqq, Some(500));
        assert_eq!(hs.metadata_size, Some(3210));
        assert_eq!(hs.v.as_deref(), Some("libtorrent 2.0.10"));
        assert_eq!(hs.p2pe, None);
    }

    #[test]
    fn p2pe_round_trip_and_wire_form() {
        let mut hs = ExtendedHandshake::with_p2pe(3, 1 << 20);
        hs.yourip = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)));
        let raw = hs.to_bencode().unwrap();
        assert_eq!(
            raw,
            b"d1:md4:p2pei3ee16:p2pe_max_requesti1048576e6:yourip4:\x7f\x00\x00\x01e".to_vec()
        );
        assert_eq!(ExtendedHandshake::from_bencode(&raw).unwrap(), hs);
    }

    #[test]
    fn rack_and_zone_labels_round_trip_and_are_bounded() {
        let mut hs = ExtendedHandshake::with_p2pe(3, 1 << 20);
        hs.p2pe_rack = Some("r7".into());
        hs.p2pe_zone = Some("eu-1".into());
        let raw = hs.to_bencode().unwrap();
        assert!(raw.windows(15).any(|w| w == b"9:p2pe_rack2:r7"), "{raw:?}");
        assert_eq!(ExtendedHandshake::from_bencode(&raw).unwrap(), hs);
        let long = format!("d9:p2pe_rack65:{}e", "x".repeat(65));
        assert!(ExtendedHandshake::from_bencode(long.as_bytes()).is_err());
        assert!(ExtendedHandshake::from_bencode(b"d9:p2pe_racki1ee").is_err());
        assert!(ExtendedHandshake::from_bencode(b"d9:p2pe_zone2:\xff\xfee").is_err());
    }

    #[test]
    fn p2pe_needs_both_keys() {
        let only_m = ExtendedHandshake::from_bencode(b"d1:md4:p2pei3eee").unwrap();
        assert_eq!(only_m.p2pe, None);
        let disabled =
            ExtendedHandshake::from_bencode(b"d1:md4:p2pei0ee16:p2pe_max_requesti9999999ee")
                .unwrap();
        assert_eq!(disabled.p2pe, None);
    }

    #[test]
    fn lanes_round_trip_and_bounds() {
        let mut hs = ExtendedHandshake::with_p2pe(1, 1 << 20);
        hs.p2pe = hs.p2pe.map(|e| P2peExt { lanes: 8, ..e });
        let raw = hs.to_bencode().unwrap();
        assert_eq!(
            raw,
            b"d1:md4:p2pei1ee10:p2pe_lanesi8e16:p2pe_max_requesti1048576ee".to_vec()
        );
        assert_eq!(ExtendedHandshake::from_bencode(&raw).unwrap(), hs);
        let lanes = |raw: &[u8]| {
            ExtendedHandshake::from_bencode(raw)
                .map(|h| h.p2pe.map(|e| e.lanes))
                .ok()
        };
        // Absent: one lane; above the bound: the bound.
        assert_eq!(
            lanes(b"d1:md4:p2pei1ee16:p2pe_max_requesti16384ee"),
            Some(Some(1))
        );
        assert_eq!(
            lanes(b"d1:md4:p2pei1ee10:p2pe_lanesi1000e16:p2pe_max_requesti16384ee"),
            Some(Some(MAX_LANES))
        );
        // Without the p2pe extension the key means nothing.
        assert_eq!(lanes(b"d10:p2pe_lanesi4ee"), Some(None));
        for bad in [
            &b"d10:p2pe_lanesi0ee"[..],
            b"d10:p2pe_lanesi-3ee",
            b"d10:p2pe_lanes1:xe",
            b"d10:p2pe_lanesi99999999999999999999999ee",
        ] {
            assert_eq!(lanes(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn lanes_negotiation() {
        let with = |n: u8| {
            let mut h = ExtendedHandshake::with_p2pe(1, 1 << 20);
            h.p2pe = h.p2pe.map(|e| P2peExt { lanes: n, ..e });
            h
        };
        assert_eq!(negotiated_lanes(&with(4), &with(2)), 2);
        assert_eq!(negotiated_lanes(&with(2), &with(8)), 2);
        assert_eq!(negotiated_lanes(&with(4), &with(1)), 1);
        assert_eq!(negotiated_lanes(&with(4), &ExtendedHandshake::default()), 1);
        assert_eq!(negotiated_lanes(&ExtendedHandshake::default(), &with(4)), 1);
    }

    #[test]
    fn negotiation() {
        let plain = ExtendedHandshake::default();
        let big = ExtendedHandshake::with_p2pe(1, 4 << 20);
        let mid = ExtendedHandshake::with_p2pe(2, 1 << 20);
        let tiny = ExtendedHandshake::with_p2pe(2, 100);
        assert_eq!(
            negotiated_max_request_len(&big, &plain, 4 << 20),
            BLOCK_LEN_BYTES
        );
        assert_eq!(
            negotiated_max_request_len(&plain, &big, 4 << 20),
            BLOCK_LEN_BYTES
        );
        assert_eq!(negotiated_max_request_len(&big, &mid, 4 << 20), 1 << 20);
        assert_eq!(negotiated_max_request_len(&big, &big, 256 << 10), 256 << 10);
        assert_eq!(
            negotiated_max_request_len(&big, &tiny, 4 << 20),
            BLOCK_LEN_BYTES
        );
    }

    #[test]
    fn malformed_is_err() {
        for raw in [
            &b""[..],
            b"le",
            b"d1:pi70000ee",
            b"d1:pi-1ee",
            b"d1:md1:ai256eee",
            b"d6:yourip3:abce",
            b"d1:p1:xe",
            b"d1:v1:a1:pi1ee", // unsorted keys
            b"d1:pi1e",        // truncated
        ] {
            let r = ExtendedHandshake::from_bencode(raw);
            assert!(
                matches!(r, Err(WireError::BadExtendedHandshake(_))),
                "{raw:?} -> {r:?}"
            );
        }
    }
}
