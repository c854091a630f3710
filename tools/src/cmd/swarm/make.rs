//! The payload and torrent of `p2pe swarm`: a random file or the user's
//! file/directory, hashed in parallel into a v1 .torrent.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Context;
use p2pe::wire::metainfo::Metainfo;

use crate::cmd::create::Progress;

/// Writes `size_bytes` of pseudo-random bytes (xorshift64*, seeded from the
/// clock: content need not be reproducible, only incompressible) to `path`.
pub fn random_file(path: &Path, size_bytes: u64) -> anyhow::Result<()> {
    let f = File::create(path).with_context(|| format!("create {}", path.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    let mut x = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x9e37_79b9_7f4a_7c15, |d| d.as_nanos() as u64)
        | 1;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size_bytes;
    while left > 0 {
        for chunk in buf.chunks_exact_mut(8) {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            chunk.copy_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
        }
        let n = left.min(buf.len() as u64) as usize;
        w.write_all(&buf[..n])?;
        left -= n as u64;
    }
    w.flush()?;
    Ok(())
}

/// Makes the torrent of `path` (a file or a directory), the same way as
/// `p2pe create` (auto piece length), announcing to `tracker_url`.
pub fn torrent_of(path: &Path, tracker_url: &str) -> anyhow::Result<Metainfo> {
    let trackers = vec![vec![tracker_url.to_string()]];
    crate::cmd::create::make_metainfo(path, None, trackers, false, None, Progress::Hidden)
}
