//! `p2pe get`: download a torrent (a `.torrent` file or a magnet link) from
//! peers (resume-aware), optionally keep seeding.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use p2pe::base::PieceHashKind;
use p2pe::node::{Node, NodeConfig, PeerTransfer, Progress};
use p2pe::store::{OpenMode, Storage};

use super::node_common::{
    open_storage, parse_limit, print_dht_addr, print_listening, stop_flag, stopped, Bar,
    DiscoveryArgs, MetricsArgs,
};
use super::progress_log::ProgressLog;
use super::seed::{sources_json, uploaded_to_json, CoreArgs};
use super::source::{resolve, FetchArgs, Source};
use super::web_seed::{failures_text, web_seeds_json, WebSeedArgs};
use p2pe::node::WebSeedStats;

/// Arguments of `p2pe get`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// What to download: a .torrent file, an `http(s)://` URL of one, or a
    /// magnet link (`magnet:?xt=urn:btih:…`, BEP 9; quote it in a shell)
    /// whose info dictionary is fetched from its peers (`x.pe`, `--peer`)
    /// and trackers (`tr`, `--tracker`) and checked against its info-hash
    /// first.
    #[arg(value_name = "TORRENT|URL|MAGNET", value_parser = Source::parse)]
    pub source: Source,
    /// Output directory (the torrent's file or top directory goes inside).
    #[arg(short, long, value_name = "DIR")]
    pub output: PathBuf,
    /// A peer to connect to, HOST:PORT; repeat for more.
    #[arg(long = "peer", value_name = "HOST:PORT")]
    pub peers: Vec<String>,
    /// Address to accept other peers on.
    #[arg(long, default_value = "0.0.0.0:0", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Keep seeding after the download completes, until killed (SIGINT or
    /// SIGTERM). With `--json` the summary is printed at completion.
    #[arg(long)]
    pub seed_after: bool,
    /// Exit only once every byte is on disk (msync of all data, resume record
    /// listing every piece). By default the exit does not wait for the disk's
    /// writeback: the data is complete in the page cache for any reader, its
    /// writeback is started, and the resume record lists only pieces already
    /// on disk, so after a machine crash the rest are hashed again, never trusted.
    #[arg(long)]
    pub durable: bool,
    /// Print one JSON summary object on stdout at the end (at completion with
    /// `--seed-after`), with `sources` (payload bytes and whole pieces per
    /// peer we downloaded from) and `uploaded_to` (payload bytes per peer).
    #[arg(long)]
    pub json: bool,
    /// Upload limit for payload, e.g. `20MB` (per second), `400Mbit`.
    #[arg(long, value_name = "RATE")]
    pub upload_limit: Option<String>,
    /// Download limit for payload, e.g. `20MB` (per second), `400Mbit`.
    #[arg(long, value_name = "RATE")]
    pub download_limit: Option<String>,
    /// When stderr is not a terminal: seconds between progress lines (bytes,
    /// rate, peers, ETA) on stderr, or with `--json` `{"event":"progress",…}`
    /// objects on stdout. On a terminal a progress bar is drawn instead.
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    pub progress_interval: f64,
    /// Give up when no peer completed a handshake within this many seconds.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub connect_timeout: u64,
    /// Magnet links: give up when no peer delivered the info dictionary
    /// (verified against the info-hash) within this many seconds. (A URL's
    /// .torrent has its own 60 s bound.)
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub metadata_timeout: u64,
    #[command(flatten)]
    pub discovery: DiscoveryArgs,
    #[command(flatten)]
    pub cores: CoreArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
    #[command(flatten)]
    pub web_seeds: WebSeedArgs,
}

/// Runs `p2pe get`.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let stop = stop_flag()?;
    let base = NodeConfig::new();
    let mut peers = resolve(&args.peers, "--peer")?;
    // The DHT settings `--dht` and its options make, for the magnet fetch.
    let mut discovery = NodeConfig::new();
    args.discovery.apply(&mut discovery);
    let loaded = args.source.load(&FetchArgs {
        peers: peers.clone(),
        trackers: (!args.discovery.trackers.is_empty())
            .then(|| vec![args.discovery.trackers.clone()]),
        no_tracker: args.discovery.no_tracker,
        timeout: Duration::from_secs(args.metadata_timeout),
        connect_timeout: Duration::from_secs(args.connect_timeout),
        // Another id than the node's (`FetchConfig::peer_id`).
        peer_id: NodeConfig::new().peer_id,
        listen_port: args.listen.port(),
        stop: stop.clone(),
        dht: discovery.dht,
    })?;
    for addr in loaded.peers {
        if !peers.contains(&addr) {
            peers.push(addr);
        }
    }
    let meta = loaded.meta;
    if let (Some(seconds), true) = (loaded.metadata_seconds, args.json) {
        // Scripts learn the name and size before the download starts.
        let event = serde_json::json!({
            "event": "metadata",
            "info_hash": meta.info_hash().to_string(),
            "name": meta.info().name(),
            "total_size_bytes": meta.info().total_len_bytes(),
            "metadata_bytes": meta.info_bytes().len(),
            "seconds": seconds,
        });
        println!("{event}");
    }
    let no_tracker = args.discovery.no_tracker
        || (args.discovery.trackers.is_empty() && meta.trackers().iter().all(Vec::is_empty));
    let web_seeds = args.web_seeds.urls(&meta);
    // Before the output files are created and preallocated.
    if peers.is_empty() && no_tracker && !args.discovery.dht && web_seeds.is_empty() {
        bail!("no peers to ask: give --peer, --tracker, --dht or --web-seed, or use a torrent with trackers or web seeds");
    }
    let (storage, _) = open_storage(&meta, &args.output, OpenMode::Create)?;
    let mut config = NodeConfig {
        listen: Some(args.listen),
        peers,
        upload_limit_bytes_per_s: args.upload_limit.as_deref().map(parse_limit).transpose()?,
        download_limit_bytes_per_s: args
            .download_limit
            .as_deref()
            .map(parse_limit)
            .transpose()?,
        durable_exit: args.durable,
        ..base
    };
    args.discovery.apply(&mut config);
    args.cores.apply(&mut config);
    args.web_seeds.apply(&meta, &mut config)?;
    // Kept to report how pieces were hashed (on arrival or read back).
    let store = storage.clone();
    let node = Node::start(&meta, storage, config).context("start node")?;
    let metrics = args.metrics.start(&node, &meta)?;
    print_dht_addr(&node);
    if let Some(addr) = node.local_addr() {
        print_listening(addr, args.json)?;
    }
    let transfers = node.transfers();
    let watch = node.watch();
    let bar = Bar::new(meta.info().total_len_bytes(), meta.info().piece_count());
    let interval = Duration::try_from_secs_f64(args.progress_interval)
        .context("--progress-interval: a number of seconds")?;
    let mut log = ProgressLog::new(meta.info().total_len_bytes(), interval, args.json);
    let started = Instant::now();
    let mut completed_at = None;
    let mut first_peer_logged = false;
    let deadline = Duration::from_secs(args.connect_timeout);
    loop {
        if let Some(e) = node.take_error() {
            bar.finish();
            let _ = node.shutdown();
            return Err(anyhow::Error::new(e).context("download stopped"));
        }
        let p = node.progress();
        if completed_at.is_none() {
            bar.update(&p);
            if let Some(log) = &mut log {
                log.tick(&p)?;
            }
        }
        if p.peers_seen > 0 && !first_peer_logged {
            first_peer_logged = true;
            tracing::info!("first peer connected");
        }
        if p.complete && completed_at.is_none() {
            let at = started.elapsed();
            completed_at = Some(at);
            if !args.seed_after {
                break;
            }
            bar.finish();
            summarize(
                &p,
                &store,
                &transfers.snapshot(),
                &watch.web_seeds(),
                at.as_secs_f64(),
                args.json,
            );
            std::io::stdout().flush()?;
            tracing::info!("download complete; seeding until killed");
        }
        if stopped(&stop) {
            break;
        }
        if !p.complete
            && p.peers_seen == 0
            && p.web_seed_pieces == 0
            && started.elapsed() >= deadline
        {
            bar.finish();
            let web = node.web_seeds();
            let _ = node.shutdown();
            let web = if web.is_empty() {
                String::new()
            } else {
                format!(
                    ", and no web seed delivered a piece ({})",
                    failures_text(&web)
                )
            };
            bail!(
                "no peer reachable within {}s (peers tried: {}; {} from trackers, {} from PEX){web}",
                args.connect_timeout,
                args.peers.join(", "),
                p.tracker_peers_learned,
                p.pex_peers_learned
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bar.finish();
    let p = node.shutdown().context("shut down")?;
    if let Some(m) = metrics {
        m.stop();
    }
    print_events_after(&p);
    match completed_at {
        // The summary went out at completion; say what seeding added.
        Some(_) if args.seed_after => tracing::info!(
            "seeded until stopped: {} bytes uploaded in total",
            p.uploaded_bytes
        ),
        _ => {
            let seconds = completed_at.unwrap_or_else(|| started.elapsed());
            summarize(
                &p,
                &store,
                &transfers.snapshot(),
                &watch.web_seeds(),
                seconds.as_secs_f64(),
                args.json,
            );
        }
    }
    if !p.complete {
        bail!(
            "interrupted before completion ({} of {} pieces)",
            p.verified_pieces,
            p.piece_count
        );
    }
    Ok(())
}

/// Logs where peers came from (stderr).
fn print_events_after(p: &Progress) {
    tracing::info!(
        "announces accepted: {}; peers learned: {} from trackers, {} from PEX, {} from the DHT",
        p.announces_ok,
        p.tracker_peers_learned,
        p.pex_peers_learned,
        p.dht_peers_learned
    );
}

/// Prints the final summary: one JSON object on stdout, or a line on stderr.
/// `bytes` counts payload from peers and web seeds (`peer_bytes`,
/// `web_seed_bytes`).
fn summarize(
    p: &Progress,
    store: &Storage,
    transfers: &[PeerTransfer],
    web_seeds: &[WebSeedStats],
    seconds: f64,
    json: bool,
) {
    let bytes = p.downloaded_bytes + p.web_seed_bytes;
    let rate = bytes as f64 / seconds.max(1e-9);
    let hashed = store.verify_counts();
    if json {
        let summary = serde_json::json!({
            "bytes": bytes,
            "peer_bytes": p.downloaded_bytes,
            "web_seed_bytes": p.web_seed_bytes,
            "web_seed_pieces": p.web_seed_pieces,
            "seconds": seconds,
            "rate_bytes_per_s": rate,
            "peers": p.peers_seen,
            "verified_pieces": p.verified_pieces,
            "piece_count": p.piece_count,
            "piece_hash": match store.layout().piece_hashes().kind() {
                PieceHashKind::Sha1 => "sha1",
                PieceHashKind::Blake3 => "blake3",
            },
            "hashed_on_arrival": hashed.on_arrival,
            "hashed_read_back": hashed.read_back,
            "uploaded_bytes": p.uploaded_bytes,
            "complete": p.complete,
            "announces_ok": p.announces_ok,
            "tracker_peers_learned": p.tracker_peers_learned,
            "pex_peers_learned": p.pex_peers_learned,
            "dht_peers_learned": p.dht_peers_learned,
            "sources": sources_json(transfers),
            "uploaded_to": uploaded_to_json(transfers),
            "web_seeds": web_seeds_json(web_seeds),
        });
        println!("{summary}");
    } else {
        tracing::info!(
            "{} of {} pieces; downloaded {} bytes in {seconds:.2}s ({:.1} MB/s) from {} peers",
            p.verified_pieces,
            p.piece_count,
            bytes,
            rate / 1e6,
            p.peers_seen
        );
        if !web_seeds.is_empty() {
            tracing::info!(
                "web seeds: {} bytes, {} pieces ({})",
                p.web_seed_bytes,
                p.web_seed_pieces,
                failures_text(web_seeds)
            );
        }
        tracing::info!(
            "{} verified: {} pieces hashed on arrival, {} read back",
            store.layout().piece_hashes().kind(),
            hashed.on_arrival,
            hashed.read_back
        );
    }
}
