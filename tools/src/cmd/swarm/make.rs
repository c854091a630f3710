//! The payload and torrent of `p2pe swarm`: a random file or the user's
//! file/directory, hashed in parallel into a v1 .torrent.

use std::path::Path;

use anyhow::Context;
use p2pe::wire::metainfo::Metainfo;

use crate::cmd::create::Progress;

/// Writes `size_bytes` of pseudo-random bytes (seeded from the clock: content
/// need not be reproducible, only incompressible) to `path`.
pub(super) fn random_file(path: &Path, size_bytes: u64) -> anyhow::Result<()> {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x9e37_79b9_7f4a_7c15, |d| d.as_nanos() as u64);
    p2pe_bench::swarm_bench::write_data(path, size_bytes, seed)
        .with_context(|| format!("write {}", path.display()))
}

/// Makes the torrent of `path` (a file or a directory), the same way as
/// `p2pe create` (auto piece length), announcing to `tracker_url`.
pub(super) fn torrent_of(path: &Path, tracker_url: &str) -> anyhow::Result<Metainfo> {
    let trackers = vec![vec![tracker_url.to_string()]];
    crate::cmd::create::make_metainfo(path, None, trackers, false, None, true, Progress::Hidden)
}
