//! One piece from one web seed: a ranged `GET` per file the piece lies in
//! (BEP 19 URL layout, [`crate::wire::web_seed::file_url`]), the body written
//! to storage chunk by chunk as it arrives, in piece order, so the piece is
//! hashed on arrival (`store::arrival`) and its hash check only compares
//! digests.
//!
//! What is accepted: `206 Partial Content` whose `Content-Range` (when
//! present) is exactly the range asked for and whose total length is the
//! file's length in the torrent; or `200 OK` when the range is the whole file
//! (a server that ignores `Range` sends the file). The body must be exactly
//! the range's length. Anything else is a [`FetchError::Http`] naming the URL
//! and what was wrong. The bytes are never trusted: the caller verifies the
//! piece's hash before anything else may use it.
//!
//! Time bounds, per request ([`agent`]): connect 5 s, no response head or no
//! byte for the stall timeout ([`super::WebSeedConfig::stall_timeout`],
//! default [`STALL_TIMEOUT`]: a stalled seed), and the body of one piece at
//! most [`MIN_BODY_TIMEOUT`] or the piece at [`MIN_RATE_BYTES_PER_S`],
//! whichever is longer (a trickling seed).

use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::core::{BlockOffset, PieceIndex};
use crate::store::{Storage, StoreError};
use crate::wire::web_seed::file_url;

use super::super::handler::retry_busy;

/// Default stall timeout: no byte from a web seed for this long, the request
/// has stalled (a server under load answers within a second or two; 10 s
/// also covers a cold object store).
pub const STALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Least time allowed for one piece's body.
const MIN_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Slowest rate a web seed may serve a piece at before the request is given
/// up (256 KiB/s: a 16 MiB piece gets 64 s).
const MIN_RATE_BYTES_PER_S: u64 = 256 * 1024;

/// Bytes read from the HTTP body per storage write: a few socket reads,
/// small enough to stay in cache while it is hashed on arrival.
const CHUNK_BYTES: usize = 64 * 1024;

/// Zeros for BEP 47 padding files (never fetched: they are not on the server).
static ZEROS: [u8; 16 * 1024] = [0; 16 * 1024];

/// Why a piece could not be had from a web seed.
#[derive(Debug)]
pub(crate) enum FetchError {
    /// The web seed failed: connection, status, headers, short or long body,
    /// a stall. The text names the URL and the fault.
    Http(String),
    /// The piece was verified meanwhile by a worker (a node-wide endgame
    /// duplicate): nothing to do.
    AlreadyVerified,
    /// The node is stopping.
    Stopped,
    /// Storage failed (a disk error; the node stops).
    Store(StoreError),
}

/// The HTTP client of one web seed: keep-alive connections in its pool
/// (`max_idle_per_host`, one per fetcher thread), the time bounds of the
/// module docs for a piece of `piece_len_bytes` with `stall` as the stall
/// timeout, redirects followed (at most 4), `https://` through
/// [`crate::discovery::tls_config`].
pub(crate) fn agent(
    piece_len_bytes: u32,
    max_idle_per_host: usize,
    stall: Duration,
) -> ureq::Agent {
    let body = Duration::from_secs(u64::from(piece_len_bytes) / MIN_RATE_BYTES_PER_S)
        .max(MIN_BODY_TIMEOUT);
    ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(5)))
        .timeout_recv_response(Some(stall))
        .timeout_per_read(Some(stall))
        .timeout_recv_body(Some(body))
        .http_status_as_error(false)
        .max_redirects(4)
        .max_idle_connections_per_host(max_idle_per_host.max(1))
        .user_agent(concat!("p2pe/", env!("CARGO_PKG_VERSION")))
        .tls_config(crate::discovery::tls_config())
        .build()
        .into()
}

/// Where one piece's bytes go and what they count toward.
pub(crate) struct Target<'a> {
    pub(crate) storage: &'a Storage,
    pub(crate) multi_file: bool,
    /// Payload bytes received from this web seed (added as they arrive).
    pub(crate) received_bytes: &'a AtomicU64,
    pub(crate) stop: &'a AtomicBool,
}

/// Fetches piece `piece` from the web seed `base` into storage (not verified).
///
/// # Errors
/// See [`FetchError`].
pub(crate) fn fetch_piece(
    agent: &ureq::Agent,
    base: &str,
    piece: PieceIndex,
    t: &Target<'_>,
) -> Result<(), FetchError> {
    let layout = t.storage.layout();
    let segments: Vec<_> = layout
        .piece_segments(piece)
        .map_err(FetchError::Store)?
        .collect();
    let files: Vec<_> = layout.files().collect();
    let mut offset_bytes = 0u32;
    for seg in segments {
        let spec = files
            .get(seg.file_index)
            .ok_or_else(|| FetchError::Store(StoreError::InvalidLayout("no such file".into())))?;
        if spec.padding {
            let mut left = seg.len_bytes;
            while left > 0 {
                let n = left.min(ZEROS.len() as u32);
                write(t, piece, BlockOffset(offset_bytes), &ZEROS[..n as usize])?;
                offset_bytes += n;
                left -= n;
            }
            continue;
        }
        let url = file_url(base, &spec.path_components, t.multi_file);
        fetch_range(
            agent,
            &url,
            spec.len_bytes,
            seg.file_offset_bytes,
            seg.len_bytes,
            |data| {
                write(t, piece, BlockOffset(offset_bytes), data)?;
                offset_bytes += data.len() as u32;
                Ok(())
            },
            t,
        )?;
    }
    Ok(())
}

/// Writes `data` at `offset` of `piece` (waiting out a shadow commit).
fn write(
    t: &Target<'_>,
    piece: PieceIndex,
    offset: BlockOffset,
    data: &[u8],
) -> Result<(), FetchError> {
    match retry_busy(|| t.storage.write_block(piece, offset, data)) {
        Ok(()) => Ok(()),
        Err(StoreError::AlreadyVerified { .. }) => Err(FetchError::AlreadyVerified),
        Err(e) => Err(FetchError::Store(e)),
    }
}

/// `GET url` with `Range: bytes=first-(first+len-1)` of a file of
/// `file_len_bytes`; hands the body to `sink` chunk by chunk.
fn fetch_range(
    agent: &ureq::Agent,
    url: &str,
    file_len_bytes: u64,
    first_bytes: u64,
    len_bytes: u32,
    mut sink: impl FnMut(&[u8]) -> Result<(), FetchError>,
    t: &Target<'_>,
) -> Result<(), FetchError> {
    let last = first_bytes + u64::from(len_bytes) - 1;
    let http = |what: String| FetchError::Http(format!("{url}: {what}"));
    let mut response = agent
        .get(url)
        .header("Range", format!("bytes={first_bytes}-{last}"))
        .call()
        .map_err(|e| http(e.to_string()))?;
    let status = response.status().as_u16();
    match status {
        206 => {
            if let Some(cr) = response.headers().get("content-range") {
                let cr = cr.to_str().unwrap_or("");
                match parse_content_range(cr) {
                    Some((a, b, total)) if a == first_bytes && b == last => {
                        if total.is_some_and(|n| n != file_len_bytes) {
                            return Err(http(format!(
                                "the file is {} bytes there, {file_len_bytes} in the torrent",
                                total.unwrap_or(0)
                            )));
                        }
                    }
                    _ => {
                        return Err(http(format!(
                            "Content-Range {cr:?} is not the range asked for (bytes {first_bytes}-{last})"
                        )))
                    }
                }
            }
        }
        200 if first_bytes == 0 && u64::from(len_bytes) == file_len_bytes => {}
        200 => return Err(http("the server ignores Range requests (200 OK)".into())),
        _ => {
            let reason = response
                .status()
                .canonical_reason()
                .unwrap_or("unexpected status");
            return Err(http(format!("HTTP {status} {reason}")));
        }
    }
    // One byte over the range is enough to know the body is too long.
    let mut reader = response
        .body_mut()
        .with_config()
        .limit(u64::from(len_bytes) + 1)
        .reader();
    let mut buf = vec![0u8; CHUNK_BYTES.min(len_bytes as usize + 1)];
    let mut got = 0u64;
    loop {
        if t.stop.load(Ordering::Acquire) {
            return Err(FetchError::Stopped);
        }
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(http(format!("reading the body: {e}"))),
        };
        if got + n as u64 > u64::from(len_bytes) {
            return Err(http(format!(
                "body longer than the {len_bytes} bytes asked for"
            )));
        }
        got += n as u64;
        t.received_bytes.fetch_add(n as u64, Ordering::Relaxed);
        sink(&buf[..n])?;
    }
    if got != u64::from(len_bytes) {
        return Err(http(format!("body of {got} bytes, {len_bytes} asked for")));
    }
    Ok(())
}

/// `bytes A-B/TOTAL` (TOTAL may be `*`): `(A, B, Some(TOTAL))`.
fn parse_content_range(v: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (a, b) = range.trim().split_once('-')?;
    let total = match total.trim() {
        "*" => None,
        n => Some(n.parse().ok()?),
    };
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_forms() {
        assert_eq!(
            parse_content_range("bytes 0-99/1000"),
            Some((0, 99, Some(1000)))
        );
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, 9, None)));
        assert_eq!(parse_content_range("bytes */1000"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
        assert_eq!(parse_content_range("bytes 0-x/2"), None);
    }
}
