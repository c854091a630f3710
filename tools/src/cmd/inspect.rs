//! `p2pe inspect`: show what a `.torrent` holds, for people or (`--json`) for scripts.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{bail, Context};
use indicatif::HumanBytes;
use p2pe::wire::magnet::MagnetLink;
use p2pe::wire::metainfo::{Metainfo, PieceHashKind};
use serde::Serialize;

/// Largest `.torrent` read: 256 MiB. A 1 PiB payload in 16 MiB pieces needs
/// ~1.3 MB of hashes, so this only stops runaway input (e.g. `/dev/zero`).
pub const MAX_TORRENT_LEN_BYTES: u64 = 256 * 1024 * 1024;

/// Arguments of `p2pe inspect`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The .torrent file to read.
    pub file: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The `--json` output; field names are a stable interface.
#[derive(Serialize, Debug)]
struct Report<'a> {
    name: &'a str,
    info_hash: String,
    /// The BEP 9 magnet link: info-hash, name, trackers, web seeds.
    magnet: String,
    total_size_bytes: u64,
    piece_length_bytes: u32,
    piece_count: u32,
    /// `"blake3"` when the torrent carries the p2pe `p2pe blake3` key (p2pe
    /// verifies with it), else `"sha1"`.
    piece_hash: &'static str,
    files: Vec<ReportFile>,
    trackers: &'a [Vec<String>],
    private: bool,
    comment: Option<&'a str>,
    /// BEP 19 `url-list`.
    web_seeds: &'a [String],
}

/// One file of [`Report`]; `path` is relative to the download directory, `/`-separated.
#[derive(Serialize, Debug)]
struct ReportFile {
    path: String,
    length_bytes: u64,
    /// BEP 47 padding file (not written to disk); the key is present only when true.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    padding: bool,
}

fn report(meta: &Metainfo) -> Report<'_> {
    let info = meta.info();
    Report {
        name: info.name(),
        info_hash: meta.info_hash().to_string(),
        magnet: MagnetLink::of_metainfo(meta).to_uri(),
        total_size_bytes: info.total_len_bytes(),
        piece_length_bytes: info.piece_len_bytes(),
        piece_count: info.piece_count(),
        piece_hash: match info.piece_hash_kind() {
            PieceHashKind::Sha1 => "sha1",
            PieceHashKind::Blake3 => "blake3",
        },
        files: info
            .files()
            .iter()
            .map(|f| ReportFile {
                path: f.path(),
                length_bytes: f.len_bytes(),
                padding: f.is_padding(),
            })
            .collect(),
        trackers: meta.trackers(),
        private: info.is_private(),
        comment: meta.comment(),
        web_seeds: meta.web_seeds(),
    }
}

/// Reads and parses a `.torrent`.
///
/// # Errors
/// The file cannot be read, is larger than 256 MiB, or is not a valid metainfo.
pub fn read_torrent(path: &std::path::Path) -> anyhow::Result<Metainfo> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_TORRENT_LEN_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() as u64 > MAX_TORRENT_LEN_BYTES {
        bail!("{}: larger than 256 MiB, not a .torrent", path.display());
    }
    Metainfo::from_bytes(&bytes)
        .with_context(|| format!("{}: not a valid .torrent", path.display()))
}

fn print_text(report: &Report<'_>) {
    let size = |bytes: u64| format!("{} ({bytes} bytes)", HumanBytes(bytes));
    println!("name:          {}", report.name);
    println!("info-hash:     {}", report.info_hash);
    println!("magnet:        {}", report.magnet);
    println!("total size:    {}", size(report.total_size_bytes));
    println!(
        "piece length:  {}",
        size(u64::from(report.piece_length_bytes))
    );
    println!("pieces:        {}", report.piece_count);
    println!(
        "piece hash:    {}",
        match report.piece_hash {
            "blake3" => "BLAKE3 (p2pe `p2pe blake3` key) and SHA-1 (`pieces`)",
            _ => "SHA-1 (`pieces`)",
        }
    );
    println!(
        "private:       {}",
        if report.private { "yes" } else { "no" }
    );
    if let Some(comment) = report.comment {
        println!("comment:       {comment}");
    }
    if report.trackers.is_empty() {
        println!("trackers:      none");
    } else {
        println!("trackers:");
        for (tier, urls) in report.trackers.iter().enumerate() {
            println!("  tier {}: {}", tier + 1, urls.join(", "));
        }
    }
    if report.web_seeds.is_empty() {
        println!("web seeds:     none");
    } else {
        println!("web seeds:");
        for url in report.web_seeds {
            println!("  {url}");
        }
    }
    println!("files ({}):", report.files.len());
    for file in &report.files {
        println!(
            "  {:>12}  {}",
            HumanBytes(file.length_bytes).to_string(),
            file.path
        );
    }
}

/// Runs `p2pe inspect`.
///
/// # Errors
/// See [`read_torrent`]; also a failed JSON encoding.
pub fn run(args: Args) -> anyhow::Result<()> {
    let meta = read_torrent(&args.file)?;
    let report = report(&meta);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&report);
    }
    Ok(())
}
