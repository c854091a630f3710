//! The payload and torrent of `p2pe swarm`: a random file or the user's
//! file/directory, hashed in parallel into a v1 .torrent.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use p2pe::wire::metainfo::{auto_piece_len_bytes, FileSpec, Info, Layout, Metainfo, PieceHash};
use rayon::prelude::*;

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

/// Regular files below `dir`, sorted, as (path components, path, length).
fn walk(
    dir: &Path,
    prefix: &[String],
    out: &mut Vec<(Vec<String>, PathBuf, u64)>,
) -> anyhow::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("read {}", dir.display()))?
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e
            .file_name()
            .into_string()
            .map_err(|n| anyhow::anyhow!("non-UTF-8 file name {n:?}"))?;
        let mut comps = prefix.to_vec();
        comps.push(name);
        let ft = e.file_type()?;
        if ft.is_dir() {
            walk(&e.path(), &comps, out)?;
        } else if ft.is_file() {
            out.push((comps, e.path(), e.metadata()?.len()));
        }
    }
    Ok(())
}

/// Makes the torrent of `path` (a file or a directory).
pub fn torrent_of(path: &Path) -> anyhow::Result<Metainfo> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .context("payload path has no UTF-8 file name")?
        .to_string();
    let (layout, files) = if path.is_dir() {
        let mut files = Vec::new();
        walk(path, &[], &mut files)?;
        let specs = files
            .iter()
            .map(|(c, _, len)| FileSpec {
                path_components: c.clone(),
                len_bytes: *len,
                padding: false,
            })
            .collect();
        let files = files.into_iter().map(|(_, p, len)| (p, len)).collect();
        (Layout::MultiFile(specs), files)
    } else {
        let len = std::fs::metadata(path)?.len();
        (
            Layout::SingleFile { len_bytes: len },
            vec![(path.to_path_buf(), len)],
        )
    };
    let total: u64 = files.iter().map(|(_, l)| l).sum();
    if total == 0 {
        bail!("{} holds no data", path.display());
    }
    let piece_len = auto_piece_len_bytes(total);
    let hashes = hash_pieces(&files, total, piece_len)?;
    let info = Info::new(name, layout, piece_len, hashes, false)?;
    Ok(Metainfo::new(
        info,
        vec![],
        None,
        Some("p2pe swarm".into()),
        None,
    ))
}

/// SHA-1 of every piece of the concatenation of `files`, in parallel.
fn hash_pieces(
    files: &[(PathBuf, u64)],
    total: u64,
    piece_len: u32,
) -> anyhow::Result<Vec<PieceHash>> {
    let handles: Vec<(File, u64, u64)> = {
        let mut off = 0;
        let mut v = Vec::new();
        for (p, len) in files {
            v.push((
                File::open(p).with_context(|| format!("open {}", p.display()))?,
                off,
                *len,
            ));
            off += len;
        }
        v
    };
    let count = total.div_ceil(u64::from(piece_len));
    (0..count)
        .into_par_iter()
        .map(|i| {
            let start = i * u64::from(piece_len);
            let end = (start + u64::from(piece_len)).min(total);
            let mut buf = vec![0u8; (end - start) as usize];
            for (f, off, len) in &handles {
                let (lo, hi) = (start.max(*off), end.min(off + len));
                if lo < hi {
                    let dst = &mut buf[(lo - start) as usize..(hi - start) as usize];
                    f.read_exact_at(dst, lo - off)?;
                }
            }
            Ok(PieceHash::of_piece(&buf))
        })
        .collect()
}
