//! `p2pe create`: make a `.torrent` (BEP 3, v1) from a file or a directory.
//!
//! Files are walked in sorted order (deterministic), pieces hashed in parallel
//! on all cores (rayon), SHA-1 (BEP 3 `pieces`) and BLAKE3 (the p2pe
//! `p2pe blake3` key) from one read of the data, progress shown on stderr
//! when it is a terminal.

mod hash;
mod walk;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use indicatif::{DecimalBytes, HumanBytes, ProgressBar, ProgressStyle};
use p2pe::wire::magnet::MagnetLink;
use p2pe::wire::metainfo::{auto_piece_len_bytes, Info, Metainfo};

/// Smallest piece length `--piece-length` accepts: one 16 KiB block (BEP 3 request size).
const MIN_PIECE_LEN_BYTES: u32 = 16 * 1024;

/// Arguments of `p2pe create`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// File or directory to share (a directory becomes a multi-file torrent).
    pub path: PathBuf,
    /// Where to write the .torrent [default: `NAME.torrent` in the current directory].
    #[arg(short, long, value_name = "OUT.torrent")]
    pub output: Option<PathBuf>,
    /// Piece length: `auto` (a power of two giving ~1,000-2,000 pieces, 256 KiB..16 MiB),
    /// or bytes, a power of two >= 16 KiB, optionally with a KiB or MiB suffix (`4MiB`).
    #[arg(long, default_value = "auto", value_name = "auto|BYTES")]
    pub piece_length: String,
    /// Tracker announce URL; repeat for more tiers, comma-separate URLs of one tier (BEP 12).
    #[arg(long = "tracker", short = 't', value_name = "URL")]
    pub trackers: Vec<String>,
    /// Mark the torrent private (BEP 27: no DHT, PEX or local discovery).
    #[arg(long)]
    pub private: bool,
    /// Free-form comment stored in the .torrent.
    #[arg(long)]
    pub comment: Option<String>,
    /// Web seed URL (BEP 19 `url-list`): an HTTP server holding the same
    /// files; repeat for more. Single file: the file's URL, or a directory URL
    /// ending in `/` (the torrent name is appended). Directory: a URL ending in
    /// `/` under which the torrent's top directory lies.
    #[arg(long = "web-seed", value_name = "URL")]
    pub web_seeds: Vec<String>,
    /// Overwrite OUT.torrent if it exists.
    #[arg(short, long)]
    pub force: bool,
    /// Write SHA-1 `pieces` only, without the p2pe `p2pe blake3` key (the
    /// info dictionary, and so the info-hash, is then the one mktorrent makes).
    #[arg(long)]
    pub no_blake3: bool,
}

/// Parses `--piece-length`: `None` for `auto`, else a power of two >= 16 KiB.
fn parse_piece_len(text: &str) -> anyhow::Result<Option<u32>> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("auto") {
        return Ok(None);
    }
    let (digits, unit) = if let Some(d) = text.strip_suffix("MiB") {
        (d, 1024 * 1024)
    } else if let Some(d) = text.strip_suffix("KiB") {
        (d, 1024)
    } else {
        (text, 1)
    };
    let len = digits
        .trim()
        .parse::<u32>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .with_context(|| format!("--piece-length {text:?}: expected `auto` or a byte count"))?;
    if !len.is_power_of_two() || len < MIN_PIECE_LEN_BYTES {
        bail!("--piece-length {text:?}: must be a power of two of at least 16 KiB");
    }
    Ok(Some(len))
}

/// Tracker tiers from `--tracker` values: one tier per flag, URLs split on commas.
fn tracker_tiers(values: &[String]) -> Vec<Vec<String>> {
    values
        .iter()
        .map(|tier| {
            tier.split(',')
                .map(str::trim)
                .filter(|url| !url.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|tier| !tier.is_empty())
        .collect()
}

fn progress_bar(total_len_bytes: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total_len_bytes);
    let template = "hashing {bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}";
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}

/// Runs `p2pe create`.
///
/// # Errors
/// A bad argument, an unreadable or changing input, a symlink loop, a special
/// file, a non-UTF-8 name, an existing output without `--force`, or a failed write.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let piece_len = parse_piece_len(&args.piece_length)?;
    let started = Instant::now();
    let meta = make_metainfo(
        &args.path,
        piece_len,
        tracker_tiers(&args.trackers),
        args.private,
        args.comment,
        !args.no_blake3,
        Progress::Bar,
    )?
    .with_web_seeds(args.web_seeds);
    let elapsed = started.elapsed();
    let total_len_bytes = meta.info().total_len_bytes();
    let piece_len_bytes = meta.info().piece_len_bytes();
    let source_name = meta.info().name().to_string();

    let output = args
        .output
        .unwrap_or_else(|| PathBuf::from(format!("{source_name}.torrent")));
    write_output(&output, &meta.to_bytes(), args.force)?;

    let info = meta.info();
    let rate_bytes_per_s = total_len_bytes as f64 / elapsed.as_secs_f64().max(1e-9);
    println!("wrote {}", output.display());
    println!("info-hash {}", meta.info_hash());
    println!("magnet {}", MagnetLink::of_metainfo(&meta));
    println!(
        "{}: {} in {} file(s), {} pieces of {}",
        info.name(),
        HumanBytes(total_len_bytes),
        info.files().len(),
        info.piece_count(),
        HumanBytes(u64::from(piece_len_bytes)),
    );
    println!(
        "hashed in {:.2} s ({}/s on {} threads; {})",
        elapsed.as_secs_f64(),
        DecimalBytes(rate_bytes_per_s as u64),
        rayon::current_num_threads(),
        if info.blake3_hashes().is_some() {
            "SHA-1 and BLAKE3 in one read"
        } else {
            "SHA-1"
        },
    );
    Ok(())
}

/// Whether [`make_metainfo`] draws a progress bar on stderr.
pub(crate) enum Progress {
    /// A bar while hashing, when stderr is a terminal.
    Bar,
    /// Nothing (callers with their own progress output, e.g. `p2pe swarm`).
    Hidden,
}

/// Walks `path` (a file or a directory) and hashes its pieces on all cores,
/// giving the metainfo of a v1 torrent (BEP 3). `piece_len_bytes` of `None`
/// picks [`auto_piece_len_bytes`]; `trackers` are BEP 12 tiers; `blake3`
/// adds the p2pe BLAKE3 digests (hashed from the same read as SHA-1).
///
/// # Errors
/// An unreadable or changing input, a symlink loop, a special file, a
/// non-UTF-8 name, or nothing to share (no file data).
pub(crate) fn make_metainfo(
    path: &std::path::Path,
    piece_len_bytes: Option<u32>,
    trackers: Vec<Vec<String>>,
    private: bool,
    comment: Option<String>,
    blake3: bool,
    progress: Progress,
) -> anyhow::Result<Metainfo> {
    let source = walk::walk(path)?;
    let total_len_bytes = source.total_len_bytes();
    if total_len_bytes == 0 {
        bail!(
            "{}: nothing to share (no file data, only empty files or directories)",
            path.display()
        );
    }
    let piece_len_bytes = piece_len_bytes.unwrap_or_else(|| auto_piece_len_bytes(total_len_bytes));
    let bar = match progress {
        Progress::Bar => progress_bar(total_len_bytes),
        Progress::Hidden => ProgressBar::hidden(),
    };
    let digests = hash::hash_pieces(
        &source.files,
        total_len_bytes,
        piece_len_bytes,
        blake3,
        &bar,
    )?;
    bar.finish_and_clear();
    let mut info = Info::new(
        source.name.clone(),
        source.layout(),
        piece_len_bytes,
        digests.sha1,
        private,
    )
    .context("building the info dictionary")?;
    if let Some(blake3) = digests.blake3 {
        info = info
            .with_blake3_hashes(blake3)
            .context("adding the BLAKE3 piece hashes")?;
    }
    let creation_date = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok());
    Ok(Metainfo::new(
        info,
        trackers,
        comment,
        Some(format!("p2pe/{}", env!("CARGO_PKG_VERSION"))),
        creation_date,
    ))
}

/// Writes the .torrent; refuses to replace an existing file unless `force`.
fn write_output(output: &std::path::Path, bytes: &[u8], force: bool) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(output).with_context(|| {
        if output.exists() && !force {
            format!("{} exists (use --force to overwrite)", output.display())
        } else {
            format!("creating {}", output.display())
        }
    })?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", output.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn piece_length_argument() {
        assert_eq!(parse_piece_len("auto").unwrap(), None);
        assert_eq!(parse_piece_len("4MiB").unwrap(), Some(4 << 20));
        assert_eq!(parse_piece_len("16 KiB").unwrap(), Some(16 << 10));
        assert_eq!(parse_piece_len("262144").unwrap(), Some(256 << 10));
        for bad in ["0", "1000", "8KiB", "-1", "4GiB", "9999MiB", "x"] {
            assert!(parse_piece_len(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tracker_tiers_split_on_commas() {
        let tiers = tracker_tiers(&["a, b".into(), ",".into(), "c".into()]);
        assert_eq!(tiers, [vec!["a", "b"], vec!["c"]]);
    }
}
