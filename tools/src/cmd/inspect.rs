//! `p2pe inspect`: show what a `.torrent` holds, for people or (`--json`) for scripts.

use std::path::PathBuf;

use indicatif::HumanBytes;
use p2pe::wire::magnet::MagnetLink;
use p2pe::wire::metainfo::{Metainfo, PieceHashKind};
use serde::Serialize;

/// Arguments of `p2pe inspect`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The .torrent to read: a file, or an http:// or https:// URL.
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
/// See [`super::node_common::load_torrent`]; also a failed JSON encoding.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let meta = super::node_common::load_torrent(&args.file)?;
    let report = report(&meta);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&report);
    }
    Ok(())
}
