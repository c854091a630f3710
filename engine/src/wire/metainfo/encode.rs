//! Canonical bencode output of a metainfo (BEP 3).
//!
//! Written with the wire's one bencode writer ([`crate::wire::bencode`]): the
//! top-level dictionary splices the `info` bytes in verbatim (to keep the
//! info-hash). Keys are written in sorted order by construction; the tests
//! check the output with bendy's strict decoder.

use super::{Info, Metainfo};

use crate::wire::bencode::{bytes as put_bytes, bytes_list as put_str_list};

/// Appends `i<value>e` (lengths and dates fit i64; larger values saturate, and
/// the decoder refuses a torrent that large anyway).
fn put_int(out: &mut Vec<u8>, value: impl TryInto<i64>) {
    crate::wire::bencode::int(out, value.try_into().unwrap_or(i64::MAX));
}

/// The canonical bencoding of `info` (keys in sorted order).
pub(super) fn info_bytes(info: &Info) -> Vec<u8> {
    let hashes_len = info.piece_hashes.len() * super::SHA1_LEN_BYTES;
    let blake3_len = info.blake3_hashes.as_ref().map_or(0, |b| b.len()) * super::BLAKE3_LEN_BYTES;
    let mut out = Vec::with_capacity(hashes_len + blake3_len + 64 * info.files.len() + 128);
    out.push(b'd');
    if info.multi_file {
        put_bytes(&mut out, b"files");
        out.push(b'l');
        for file in &info.files {
            out.push(b'd');
            if file.is_padding() {
                put_bytes(&mut out, b"attr");
                put_bytes(&mut out, b"p");
            }
            put_bytes(&mut out, b"length");
            put_int(&mut out, file.len_bytes());
            put_bytes(&mut out, b"path");
            // The first component is the torrent name, not part of `path`.
            put_str_list(&mut out, file.path_components().get(1..).unwrap_or(&[]));
            out.push(b'e');
        }
        out.push(b'e');
    } else {
        put_bytes(&mut out, b"length");
        put_int(&mut out, info.total_len_bytes);
    }
    put_bytes(&mut out, b"name");
    put_bytes(&mut out, info.name.as_bytes());
    // `p2pe blake3` sorts after `name` and before `piece length` ('2' < 'i').
    if let Some(blake3) = &info.blake3_hashes {
        put_bytes(&mut out, super::BLAKE3_KEY.as_bytes());
        out.extend_from_slice(
            (blake3.len() * super::BLAKE3_LEN_BYTES)
                .to_string()
                .as_bytes(),
        );
        out.push(b':');
        for hash in blake3 {
            out.extend_from_slice(hash);
        }
    }
    put_bytes(&mut out, b"piece length");
    put_int(&mut out, info.piece_len_bytes);
    put_bytes(&mut out, b"pieces");
    out.extend_from_slice(hashes_len.to_string().as_bytes());
    out.push(b':');
    for hash in &info.piece_hashes {
        out.extend_from_slice(&hash.0);
    }
    if info.private {
        put_bytes(&mut out, b"private");
        put_int(&mut out, 1);
    }
    out.push(b'e');
    out
}

/// The canonical bencoding of the whole metainfo, `info` spliced in verbatim.
///
/// `announce` is the first tracker; `announce-list` (BEP 12) is written when
/// there is more than one tracker URL; `url-list` (BEP 19) when there are web
/// seeds (sorted keys: it follows `info`).
pub(super) fn metainfo_bytes(meta: &Metainfo) -> Vec<u8> {
    let mut out = Vec::with_capacity(meta.info_bytes.len() + 256);
    out.push(b'd');
    let first_tracker = meta.trackers.first().and_then(|tier| tier.first());
    if let Some(url) = first_tracker {
        put_bytes(&mut out, b"announce");
        put_bytes(&mut out, url.as_bytes());
    }
    let url_count: usize = meta.trackers.iter().map(Vec::len).sum();
    if url_count > 1 {
        put_bytes(&mut out, b"announce-list");
        out.push(b'l');
        for tier in &meta.trackers {
            put_str_list(&mut out, tier);
        }
        out.push(b'e');
    }
    if let Some(comment) = &meta.comment {
        put_bytes(&mut out, b"comment");
        put_bytes(&mut out, comment.as_bytes());
    }
    if let Some(created_by) = &meta.created_by {
        put_bytes(&mut out, b"created by");
        put_bytes(&mut out, created_by.as_bytes());
    }
    if let Some(date) = meta.creation_date {
        put_bytes(&mut out, b"creation date");
        put_int(&mut out, date);
    }
    put_bytes(&mut out, b"info");
    out.extend_from_slice(&meta.info_bytes);
    // BEP 19: one URL as a string (as mktorrent writes it), several as a list.
    match meta.web_seeds.as_slice() {
        [] => {}
        [url] => {
            put_bytes(&mut out, b"url-list");
            put_bytes(&mut out, url.as_bytes());
        }
        urls => {
            put_bytes(&mut out, b"url-list");
            put_str_list(&mut out, urls);
        }
    }
    out.push(b'e');
    out
}
