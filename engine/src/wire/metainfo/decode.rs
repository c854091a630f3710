//! Parsing untrusted `.torrent` bytes with bendy's strict (canonical) decoder.

use bendy::decoding::{Decoder, DictDecoder, ListDecoder, Object};

use super::{
    FileSpec, Info, InfoHash, Layout, Metainfo, MetainfoError, PieceHash, BLAKE3_LEN_BYTES,
    SHA1_LEN_BYTES,
};

/// The directory BEP 47 puts padding files in (`.pad/<len>`).
const PAD_DIR: &str = ".pad";

/// Deepest nesting accepted. A v1 torrent needs 5 levels (root, info, files,
/// file, path); the margin admits unknown extension keys while keeping the
/// decoder's state stack small on hostile input.
const MAX_DEPTH: usize = 32;

fn bencode_err(err: bendy::decoding::Error) -> MetainfoError {
    MetainfoError::Bencode(err.to_string())
}

fn wrong_type(field: &'static str, expected: &'static str) -> MetainfoError {
    MetainfoError::WrongType { field, expected }
}

fn bytes<'s>(obj: Object<'_, 's>, field: &'static str) -> Result<&'s [u8], MetainfoError> {
    match obj {
        Object::Bytes(bytes) => Ok(bytes),
        _ => Err(wrong_type(field, "a byte string")),
    }
}

fn text(obj: Object<'_, '_>, field: &'static str) -> Result<String, MetainfoError> {
    let raw = bytes(obj, field)?;
    String::from_utf8(raw.to_vec()).map_err(|_| MetainfoError::NotUtf8(field))
}

/// A non-negative integer; negative or overflowing values are `OutOfRange`.
fn uint(obj: Object<'_, '_>, field: &'static str) -> Result<u64, MetainfoError> {
    match obj {
        Object::Integer(digits) => digits.parse().map_err(|_| MetainfoError::OutOfRange {
            field,
            value: digits.to_owned(),
        }),
        _ => Err(wrong_type(field, "an integer")),
    }
}

/// The fields of the top-level dictionary p2pe uses.
#[derive(Default)]
struct TopLevel<'s> {
    info_bytes: Option<&'s [u8]>,
    announce: Option<String>,
    announce_list: Vec<Vec<String>>,
    comment: Option<String>,
    created_by: Option<String>,
    creation_date: Option<i64>,
    web_seeds: Vec<String>,
}

/// Parses a whole `.torrent`. See [`Metainfo::from_bytes`].
pub(super) fn metainfo(input: &[u8]) -> Result<Metainfo, MetainfoError> {
    let mut decoder = Decoder::new(input).with_max_depth(MAX_DEPTH);
    let top = {
        let root = decoder
            .next_object()
            .map_err(bencode_err)?
            .ok_or_else(|| MetainfoError::Bencode("empty input".into()))?;
        let Object::Dict(dict) = root else {
            return Err(wrong_type("metainfo", "a dictionary"));
        };
        top_level(dict)?
    };
    match decoder.next_object() {
        Ok(None) => {}
        Ok(Some(_)) => {
            return Err(MetainfoError::Bencode(
                "trailing bytes after the metainfo dictionary".into(),
            ))
        }
        Err(err) => return Err(bencode_err(err)),
    }
    let info_bytes = top.info_bytes.ok_or(MetainfoError::MissingField("info"))?;
    let info = info(info_bytes)?;
    let trackers = if top.announce_list.iter().any(|tier| !tier.is_empty()) {
        top.announce_list
    } else {
        top.announce.into_iter().map(|url| vec![url]).collect()
    };
    // Keep the bytes as written: the info-hash is over them, not a re-encoding.
    Ok(Metainfo {
        comment: top.comment,
        created_by: top.created_by,
        creation_date: top.creation_date,
        web_seeds: top.web_seeds,
        ..assemble(info, info_bytes, trackers)
    })
}

/// A metainfo of `info` parsed from `info_bytes` (kept as given: the
/// info-hash is over them) with the non-empty tiers of `trackers` and no
/// optional top-level keys.
fn assemble(info: Info, info_bytes: &[u8], trackers: Vec<Vec<String>>) -> Metainfo {
    Metainfo {
        info,
        info_bytes: info_bytes.to_vec(),
        info_hash: InfoHash::of_info_bytes(info_bytes),
        trackers: trackers
            .into_iter()
            .filter(|tier| !tier.is_empty())
            .collect(),
        comment: None,
        created_by: None,
        creation_date: None,
        web_seeds: Vec::new(),
    }
}

/// Builds a metainfo from a bare `info` dictionary (BEP 9 metadata). See
/// [`Metainfo::from_info_bytes`].
pub(super) fn from_info(
    info_bytes: &[u8],
    trackers: Vec<Vec<String>>,
) -> Result<Metainfo, MetainfoError> {
    // Exactly one dictionary, nothing after it: the bytes hashed are the
    // bytes parsed.
    let mut decoder = Decoder::new(info_bytes).with_max_depth(MAX_DEPTH);
    let len = match decoder.next_object().map_err(bencode_err)? {
        Some(Object::Dict(d)) => d.into_raw().map_err(bencode_err)?.len(),
        Some(_) => return Err(wrong_type("info", "a dictionary")),
        None => return Err(MetainfoError::Bencode("empty input".into())),
    };
    if len != info_bytes.len() {
        return Err(MetainfoError::Bencode(
            "trailing bytes after the info dictionary".into(),
        ));
    }
    let info = info(info_bytes)?;
    Ok(assemble(info, info_bytes, trackers))
}

fn top_level<'s>(mut dict: DictDecoder<'_, 's>) -> Result<TopLevel<'s>, MetainfoError> {
    let mut top = TopLevel::default();
    while let Some((key, value)) = dict.next_pair().map_err(bencode_err)? {
        match key {
            b"info" => match value {
                Object::Dict(info) => top.info_bytes = Some(info.into_raw().map_err(bencode_err)?),
                _ => return Err(wrong_type("info", "a dictionary")),
            },
            b"announce" => top.announce = Some(text(value, "announce")?),
            b"announce-list" => match value {
                Object::List(tiers) => top.announce_list = announce_list(tiers)?,
                _ => return Err(wrong_type("announce-list", "a list of lists")),
            },
            // Descriptive only: tolerate odd encodings and types rather than
            // refuse an otherwise valid torrent.
            b"comment" => {
                if let Object::Bytes(raw) = value {
                    top.comment = Some(String::from_utf8_lossy(raw).into_owned());
                }
            }
            b"created by" => {
                if let Object::Bytes(raw) = value {
                    top.created_by = Some(String::from_utf8_lossy(raw).into_owned());
                }
            }
            b"creation date" => {
                if let Object::Integer(digits) = value {
                    top.creation_date = digits.parse().ok();
                }
            }
            b"url-list" => top.web_seeds = url_list(value)?,
            // Unknown keys: dropping `value` consumes (and validates) it.
            _ => {}
        }
    }
    Ok(top)
}

/// BEP 19 `url-list`: one URL as a string, or a list of them. Entries that
/// are not UTF-8 strings, are empty (some creators write `""`) or longer
/// than [`super::MAX_WEB_SEED_URL_BYTES`] are skipped, and entries beyond
/// [`super::MAX_WEB_SEEDS`]: a web seed is an optional source, so an odd one
/// never rejects an otherwise valid torrent.
fn url_list(value: Object<'_, '_>) -> Result<Vec<String>, MetainfoError> {
    let keep = |raw: &[u8]| {
        std::str::from_utf8(raw)
            .ok()
            .filter(|u| !u.is_empty() && u.len() <= super::MAX_WEB_SEED_URL_BYTES)
            .map(str::to_owned)
    };
    let mut out = Vec::new();
    match value {
        Object::Bytes(raw) => out.extend(keep(raw)),
        Object::List(mut urls) => {
            while let Some(url) = urls.next_object().map_err(bencode_err)? {
                if let Object::Bytes(raw) = url {
                    if out.len() < super::MAX_WEB_SEEDS {
                        out.extend(keep(raw));
                    }
                }
            }
        }
        // Another type: ignored like an unknown key (dropping consumes it).
        _ => {}
    }
    Ok(out)
}

fn announce_list(mut tiers: ListDecoder<'_, '_>) -> Result<Vec<Vec<String>>, MetainfoError> {
    let mut out = Vec::new();
    while let Some(tier) = tiers.next_object().map_err(bencode_err)? {
        let Object::List(mut urls) = tier else {
            return Err(wrong_type("announce-list", "a list of lists"));
        };
        let mut tier_urls = Vec::new();
        while let Some(url) = urls.next_object().map_err(bencode_err)? {
            tier_urls.push(text(url, "announce-list")?);
        }
        out.push(tier_urls);
    }
    Ok(out)
}

/// The fields of the `info` dictionary, before validation.
#[derive(Default)]
struct RawInfo<'s> {
    files: Option<Vec<FileSpec>>,
    length: Option<u64>,
    name: Option<String>,
    piece_len_bytes: Option<u64>,
    pieces: Option<&'s [u8]>,
    /// The p2pe `p2pe blake3` digests, unsplit.
    blake3: Option<&'s [u8]>,
    private: bool,
    /// BEP 52 `meta version` (2 for v2 and hybrid torrents).
    meta_version: Option<u64>,
}

/// Parses and validates raw `info` bytes (already checked to be one dictionary).
fn info(info_bytes: &[u8]) -> Result<Info, MetainfoError> {
    let mut decoder = Decoder::new(info_bytes).with_max_depth(MAX_DEPTH);
    let mut raw = RawInfo::default();
    {
        let Some(Object::Dict(mut dict)) = decoder.next_object().map_err(bencode_err)? else {
            return Err(wrong_type("info", "a dictionary"));
        };
        while let Some((key, value)) = dict.next_pair().map_err(bencode_err)? {
            match key {
                b"files" => match value {
                    Object::List(list) => raw.files = Some(files(list)?),
                    _ => return Err(wrong_type("files", "a list")),
                },
                b"length" => raw.length = Some(uint(value, "length")?),
                b"name" => raw.name = Some(text(value, "name")?),
                b"piece length" => raw.piece_len_bytes = Some(uint(value, "piece length")?),
                b"pieces" => raw.pieces = Some(bytes(value, "pieces")?),
                b"p2pe blake3" => raw.blake3 = Some(bytes(value, "p2pe blake3")?),
                b"private" => raw.private = uint(value, "private")? == 1,
                b"meta version" => raw.meta_version = Some(uint(value, "meta version")?),
                _ => {}
            }
        }
    }
    if raw.meta_version == Some(2) && raw.pieces.is_none() {
        return Err(MetainfoError::V2Only);
    }
    let layout = match (raw.length, raw.files) {
        (Some(len_bytes), None) => Layout::SingleFile { len_bytes },
        (None, Some(specs)) => Layout::MultiFile(specs),
        _ => return Err(MetainfoError::AmbiguousLayout),
    };
    let name = raw.name.ok_or(MetainfoError::MissingField("name"))?;
    let piece_len = raw
        .piece_len_bytes
        .ok_or(MetainfoError::MissingField("piece length"))?;
    let piece_len_bytes = u32::try_from(piece_len)
        .ok()
        .filter(|&len| len > 0)
        .ok_or_else(|| MetainfoError::OutOfRange {
            field: "piece length",
            value: piece_len.to_string(),
        })?;
    let pieces = raw.pieces.ok_or(MetainfoError::MissingField("pieces"))?;
    let chunks = pieces.chunks_exact(SHA1_LEN_BYTES);
    if !chunks.remainder().is_empty() {
        return Err(MetainfoError::PieceHashesLen {
            len_bytes: pieces.len(),
        });
    }
    let piece_hashes = chunks
        .map(|chunk| {
            let mut hash = [0; SHA1_LEN_BYTES];
            hash.copy_from_slice(chunk);
            PieceHash(hash)
        })
        .collect();
    let info = Info::new(name, layout, piece_len_bytes, piece_hashes, raw.private)?;
    match raw.blake3 {
        None => Ok(info),
        Some(blake3) => {
            let chunks = blake3.chunks_exact(BLAKE3_LEN_BYTES);
            if !chunks.remainder().is_empty() {
                return Err(MetainfoError::Blake3HashesLen {
                    len_bytes: blake3.len(),
                });
            }
            let hashes = chunks
                .map(|chunk| {
                    let mut hash = [0; BLAKE3_LEN_BYTES];
                    hash.copy_from_slice(chunk);
                    hash
                })
                .collect();
            info.with_blake3_hashes(hashes)
        }
    }
}

fn files(mut list: ListDecoder<'_, '_>) -> Result<Vec<FileSpec>, MetainfoError> {
    let mut specs = Vec::new();
    while let Some(item) = list.next_object().map_err(bencode_err)? {
        let Object::Dict(mut dict) = item else {
            return Err(wrong_type("files", "a list of dictionaries"));
        };
        let mut len_bytes = None;
        let mut path_components = None;
        let mut padding = false;
        while let Some((key, value)) = dict.next_pair().map_err(bencode_err)? {
            match key {
                // BEP 47: `attr` is a string of flags; `p` marks padding.
                b"attr" => padding = bytes(value, "attr")?.contains(&b'p'),
                b"length" => len_bytes = Some(uint(value, "length")?),
                b"path" => match value {
                    Object::List(parts) => path_components = Some(path(parts)?),
                    _ => return Err(wrong_type("path", "a list of byte strings")),
                },
                _ => {}
            }
        }
        let path_components = path_components.ok_or(MetainfoError::MissingField("path"))?;
        // BEP 47 names padding files `.pad/<len>`; older writers set no `attr`.
        padding |= matches!(path_components.as_slice(), [dir, _] if dir == PAD_DIR);
        specs.push(FileSpec {
            path_components,
            len_bytes: len_bytes.ok_or(MetainfoError::MissingField("length"))?,
            padding,
        });
    }
    Ok(specs)
}

fn path(mut parts: ListDecoder<'_, '_>) -> Result<Vec<String>, MetainfoError> {
    let mut components = Vec::new();
    while let Some(part) = parts.next_object().map_err(bencode_err)? {
        components.push(text(part, "path")?);
    }
    Ok(components)
}
