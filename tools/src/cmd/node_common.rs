//! Shared by `p2pe seed` and `p2pe get`: loading the torrent, opening the
//! storage with a progress spinner, rate parsing, signals, progress display.

use std::io::{IsTerminal, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use p2pe::node::{storage_layout, Node, Progress};
use p2pe::sim::units::{parse_rate_bytes_per_s, parse_size_bytes};
use p2pe::store::{OpenMode, ResumeReport, Storage};
use p2pe::wire::metainfo::Metainfo;

/// Bound on a `.torrent` read from a file or URL: 256 MiB. A 1 PiB payload
/// in 16 MiB pieces needs ~1.3 MB of hashes, so this only stops runaway input
/// (e.g. `/dev/zero`).
pub(crate) const MAX_TORRENT_LEN_BYTES: u64 = 256 * 1024 * 1024;

/// Bound on fetching a `.torrent` by URL, connect to last byte.
const TORRENT_URL_TIMEOUT: Duration = Duration::from_secs(60);

/// Reads and parses a `.torrent`: a file, or an `http://` / `https://` URL
/// (fetched with redirects followed, TLS as for trackers:
/// [`p2pe::discovery::tls_config`]).
///
/// # Errors
/// The file or URL cannot be read (the URL's error names status, TLS or
/// timeout), holds more than [`MAX_TORRENT_LEN_BYTES`], or is not a valid
/// metainfo.
pub(crate) fn load_torrent(source: &Path) -> anyhow::Result<Metainfo> {
    let name = source.display();
    let text = source.to_string_lossy();
    let bytes = if is_http_url(&text) {
        p2pe::discovery::http::get_bounded(&text, MAX_TORRENT_LEN_BYTES, TORRENT_URL_TIMEOUT)
            .with_context(|| format!("fetching {name}"))?
    } else {
        let file = std::fs::File::open(source).with_context(|| format!("opening {name}"))?;
        let mut bytes = Vec::new();
        file.take(MAX_TORRENT_LEN_BYTES + 1)
            .read_to_end(&mut bytes)
            .with_context(|| format!("reading {name}"))?;
        anyhow::ensure!(
            bytes.len() as u64 <= MAX_TORRENT_LEN_BYTES,
            "{name}: larger than 256 MiB, not a .torrent"
        );
        bytes
    };
    Metainfo::from_bytes(&bytes).with_context(|| format!("{name}: not a valid .torrent"))
}

/// Whether `s` starts with `http://` or `https://` (any case).
pub(crate) fn is_http_url(s: &str) -> bool {
    let head = s.get(..8).unwrap_or(s).to_ascii_lowercase();
    head.starts_with("http://") || head.starts_with("https://")
}

/// Parses `--upload-limit` / `--download-limit`: a rate (`400Mbit`, `20MB/s`)
/// or a size read as per second (`20MB`).
pub(crate) fn parse_limit(text: &str) -> anyhow::Result<u64> {
    parse_rate_bytes_per_s(text)
        .or_else(|_| parse_size_bytes(text))
        .with_context(|| format!("rate limit {text:?}: expected e.g. 20MB, 20MB/s or 400Mbit"))
}

/// Opens (and checks) the storage of `meta` in `dir`, with a spinner on a
/// terminal.
pub(crate) fn open_storage(
    meta: &Metainfo,
    dir: &Path,
    mode: OpenMode,
) -> anyhow::Result<(Arc<Storage>, ResumeReport)> {
    let layout = storage_layout(meta).context("torrent layout")?;
    let spinner = std::io::stderr().is_terminal().then(|| {
        let pb = ProgressBar::new_spinner();
        pb.set_message(format!("checking existing data in {}", dir.display()));
        pb.enable_steady_tick(Duration::from_millis(100));
        pb
    });
    let r = Storage::open(dir, layout, meta.info_hash(), mode);
    if let Some(pb) = spinner {
        pb.finish_and_clear();
    }
    let (storage, report) = r.with_context(|| format!("open data in {}", dir.display()))?;
    tracing::info!(
        "checked {}: {} of {} pieces verified ({} by resume record, {} by {}), {} missing, {} bad",
        dir.display(),
        report.verified(),
        storage.piece_count(),
        report.fast_verified,
        report.hash_verified,
        storage.layout().piece_hashes().kind(),
        report.missing,
        report.failed
    );
    Ok((Arc::new(storage), report))
}

/// Set by SIGINT / SIGTERM.
pub(crate) fn stop_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, flag.clone()).context("install signal handler")?;
    }
    Ok(flag)
}

/// Whether a stop was requested.
pub(crate) fn stopped(flag: &AtomicBool) -> bool {
    flag.load(Ordering::Relaxed)
}

/// Progress bar on stderr (hidden unless stderr is a terminal).
pub(crate) struct Bar {
    pb: Option<ProgressBar>,
    total_bytes: u64,
    piece_count: u32,
    started: Instant,
}

impl Bar {
    /// A bar for `total_bytes` of payload in `piece_count` pieces.
    pub(crate) fn new(total_bytes: u64, piece_count: u32) -> Self {
        let pb = std::io::stderr().is_terminal().then(|| {
            let pb = ProgressBar::new(total_bytes);
            pb.set_style(
                ProgressStyle::with_template(
                    "{bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} {msg} ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            pb
        });
        Bar {
            pb,
            total_bytes,
            piece_count,
            started: Instant::now(),
        }
    }

    /// Shows `p`.
    pub(crate) fn update(&self, p: &Progress) {
        if let Some(pb) = &self.pb {
            let have = self.total_bytes * u64::from(p.verified_pieces)
                / u64::from(self.piece_count.max(1));
            pb.set_position(have);
            pb.set_message(format!(
                "{} peers, up {}",
                p.peers,
                HumanBytes(p.uploaded_bytes)
            ));
        }
    }

    /// Removes the bar; returns the seconds since it was made.
    pub(crate) fn finish(&self) -> f64 {
        if let Some(pb) = &self.pb {
            pb.finish_and_clear();
        }
        self.started.elapsed().as_secs_f64()
    }
}

/// Discovery options shared by `p2pe seed` and `p2pe get`.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct DiscoveryArgs {
    /// Announce to this tracker (`http://…/announce` or `udp://host:port`)
    /// instead of the torrent's trackers; repeat for more (one BEP 12 tier).
    #[arg(long = "tracker", value_name = "URL")]
    pub trackers: Vec<String>,
    /// Do not announce to any tracker (peers from --peer and PEX only).
    #[arg(long, conflicts_with = "trackers")]
    pub no_tracker: bool,
    /// Most connections at once (peers from trackers and PEX are dialled
    /// only below it).
    #[arg(long, default_value_t = p2pe::node::MAX_PEERS, value_name = "N")]
    pub max_peers: usize,
    /// Most inbound connections from one IP address (0: no cap). Loopback
    /// addresses are exempt: one host running several nodes is a test, not
    /// an attack.
    #[arg(long, default_value_t = p2pe::core::slots::SlotConfig::default().max_per_ip, value_name = "N")]
    pub max_peers_per_ip: usize,
    /// Disable peer exchange (BEP 11); private torrents never use it.
    #[arg(long)]
    pub no_pex: bool,
    /// Find peers through the Mainline DHT (BEP 5) too; never for private
    /// torrents.
    #[arg(long)]
    pub dht: bool,
    /// DHT bootstrap node HOST:PORT instead of the public routers (a closed
    /// cluster runs its own); repeatable.
    #[arg(long, value_name = "HOST:PORT", requires = "dht")]
    pub dht_bootstrap: Vec<String>,
    /// Start a new DHT (no bootstrap): the first node of a closed cluster.
    #[arg(long, requires = "dht", conflicts_with = "dht_bootstrap")]
    pub dht_no_bootstrap: bool,
    /// UDP address of the DHT node.
    #[arg(
        long,
        default_value = "0.0.0.0:0",
        value_name = "ADDR",
        requires = "dht"
    )]
    pub dht_listen: std::net::SocketAddrV4,
    /// Seconds between DHT look-ups once the node has peers.
    #[arg(long, default_value_t = 300, value_name = "SECS", requires = "dht")]
    pub dht_interval: u64,
    /// This machine's rack label (at most 64 bytes): sent in announces (`p2pe_rack`; the
    /// p2pe tracker hands out same-rack peers first) and in the BEP 10 handshake, and
    /// makes requests rack-aware: each piece enters the rack about once
    /// (docs/topology.md).
    #[arg(long, value_name = "LABEL", value_parser = label)]
    pub rack: Option<String>,
    /// This machine's zone label (at most 64 bytes): announced (`p2pe_zone`) and sent
    /// in the handshake; rack labels are compared within a zone.
    #[arg(long, value_name = "LABEL", value_parser = label)]
    pub zone: Option<String>,
}

/// A rack or zone label: 1 to 64 bytes (the announce's and handshake's bound).
fn label(text: &str) -> Result<String, String> {
    if text.is_empty() || text.len() > p2pe::wire::tracker::MAX_LABEL_BYTES {
        return Err(format!(
            "a label is 1 to {} bytes",
            p2pe::wire::tracker::MAX_LABEL_BYTES
        ));
    }
    Ok(text.to_string())
}

impl DiscoveryArgs {
    /// Applies these options to `config`.
    pub(crate) fn apply(&self, config: &mut p2pe::node::NodeConfig) {
        if self.no_tracker {
            config.trackers = Some(Vec::new());
        } else if !self.trackers.is_empty() {
            config.trackers = Some(vec![self.trackers.clone()]);
        }
        config.max_peers = self.max_peers;
        config.slots.max_per_ip = self.max_peers_per_ip;
        config.tracker.topology.rack.clone_from(&self.rack);
        config.tracker.topology.zone.clone_from(&self.zone);
        if self.no_pex {
            config.pex_interval = None;
        }
        if self.dht {
            let bootstrap = if self.dht_no_bootstrap {
                Some(Vec::new())
            } else if self.dht_bootstrap.is_empty() {
                None
            } else {
                Some(self.dht_bootstrap.clone())
            };
            config.dht = Some(p2pe::node::DhtConfig {
                bootstrap,
                listen: self.dht_listen,
                interval: Duration::from_secs(self.dht_interval.max(1)),
            });
        }
    }
}

/// Announces the address peers (or clients) reach us on. Without `--json`:
/// `listening on ADDR` on stdout. With `--json` stdout carries only JSON (one
/// object per line, so `| jq` works): `{"event":"listening","addr":"ADDR"}`
/// there, and the human line goes to stderr.
///
/// # Errors
/// Writing to stdout fails (closed pipe).
pub(crate) fn print_listening(addr: SocketAddr, json: bool) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout();
    if json {
        let event = serde_json::json!({"event": "listening", "addr": addr.to_string()});
        writeln!(stdout, "{event}")?;
        tracing::info!("listening on {addr}");
    } else {
        writeln!(stdout, "listening on {addr}")?;
    }
    stdout.flush()?;
    Ok(())
}

/// Prints where the DHT node listens (stderr), if it is on.
pub(crate) fn print_dht_addr(node: &Node) {
    if let Some(a) = node.dht_addr() {
        tracing::info!("dht listening on {a}");
    }
}

/// `--metrics` and `--link-rate` of `p2pe seed` and `p2pe get`.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct MetricsArgs {
    /// Serve Prometheus metrics at http://ADDR/metrics (text format 0.0.4;
    /// see docs/metrics.md). Port 0 picks a free port (logged on stderr).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// The node's link rate in each direction, e.g. `10Gbit`, `400Mbit`,
    /// `1GB/s`: the metrics then show the live rate against it
    /// (`p2pe_link_utilization_ratio`).
    #[arg(long, value_name = "RATE", requires = "metrics")]
    pub link_rate: Option<String>,
}

impl MetricsArgs {
    /// Starts the endpoint for `node` serving `meta`, if `--metrics` was given.
    ///
    /// # Errors
    /// `--link-rate` does not parse, or the address cannot be bound.
    pub(crate) fn start(
        &self,
        node: &Node,
        meta: &Metainfo,
    ) -> anyhow::Result<Option<crate::metrics::MetricsServer>> {
        let set = crate::metrics::node::TorrentSet::default();
        set.add(
            node.watch(),
            meta.info_hash().to_string(),
            meta.info().total_len_bytes(),
        );
        self.start_set(set)
    }

    /// Starts the endpoint for the torrents of `set` (a session's, added and
    /// dropped while it runs), if `--metrics` was given.
    ///
    /// # Errors
    /// `--link-rate` does not parse, or the address cannot be bound.
    pub(crate) fn start_set(
        &self,
        set: crate::metrics::node::TorrentSet,
    ) -> anyhow::Result<Option<crate::metrics::MetricsServer>> {
        let Some(listen) = self.metrics else {
            return Ok(None);
        };
        let link = self
            .link_rate
            .as_deref()
            .map(|t| parse_limit(t).with_context(|| format!("--link-rate {t:?}")))
            .transpose()?;
        let source = crate::metrics::node::NodeMetrics::with_set(set, link);
        crate::metrics::MetricsServer::start(listen, source).map(Some)
    }
}
