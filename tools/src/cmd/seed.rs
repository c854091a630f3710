//! `p2pe seed`: verify a local copy, then serve it until killed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use p2pe::base::PeerId;
use p2pe::node::{Node, NodeConfig, PeerTransfer};
use p2pe::rt::SendStrategy;
use p2pe::store::OpenMode;
use p2pe::wire::metainfo::Metainfo;

use super::node_common::{
    load_torrent, open_storage, parse_limit, print_dht_addr, print_listening, stop_flag, stopped,
    DiscoveryArgs, MetricsArgs,
};

/// Arguments of `p2pe seed`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The .torrent file(s) to serve, all on one listen port (the info-hash
    /// of each peer's handshake selects the torrent).
    #[arg(value_name = "TORRENT", required_unless_present = "dir")]
    pub torrents: Vec<PathBuf>,
    /// The data: the directory holding each torrent's file or top directory
    /// (or, with one torrent, that file / top directory itself). Default: the
    /// directory of the .torrent file.
    #[arg(long, value_name = "DATA")]
    pub path: Option<PathBuf>,
    /// Serve every `*.torrent` in DIR, its data beside it in DIR (by the
    /// torrent's name); DIR is polled every few seconds: a torrent added is
    /// served, one removed is dropped (its peers closed).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["torrents", "path"])]
    pub dir: Option<PathBuf>,
    /// Address to accept peers on.
    #[arg(long, default_value = "0.0.0.0:6881", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Upload limit for payload, e.g. `20MB` (per second), `20MB/s`, `400Mbit`.
    #[arg(long, value_name = "RATE")]
    pub upload_limit: Option<String>,
    /// Download limit for payload, as for `p2pe get` (a complete seeder downloads
    /// nothing; accepted so one set of limits fits both commands).
    #[arg(long, value_name = "RATE")]
    pub download_limit: Option<String>,
    /// Exit once no peer has been connected for this many seconds (after the
    /// first one came); for scripts and tests.
    #[arg(long, value_name = "SECS")]
    pub exit_after_idle: Option<u64>,
    /// Write the resume record (`.p2pe.resume.<info-hash>`) into the data
    /// directory at exit, so the next start checks the data by xxh3 instead of
    /// SHA-1. Off by default: without it, seed writes nothing into `--path`.
    #[arg(long)]
    pub write_resume: bool,
    /// At exit, print one JSON summary object on stdout (`uploaded_bytes`,
    /// `seconds`, `peers`, tracker/PEX/DHT counters, `uploaded_to`: payload
    /// bytes per peer).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub discovery: DiscoveryArgs,
    #[command(flatten)]
    pub cores: CoreArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
}

/// Thread-per-core options shared by `p2pe seed` and `p2pe get`.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct CoreArgs {
    /// Runtime workers (threads, one io_uring each); default: the available
    /// cores, at most 8.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub workers: Option<u16>,
    /// Pin worker i to core i (for a machine dedicated to this node).
    #[arg(long)]
    pub pin_cores: bool,
    /// How block payloads go from the mapped files to the sockets. `send`
    /// (default) was the fastest measured (perf/send-path.md); `send-zc` only
    /// pays on a real NIC.
    #[arg(long, value_enum, default_value_t = SendStrategyArg::Send, value_name = "HOW")]
    pub send_strategy: SendStrategyArg,
}

/// `--send-strategy`: the runtime's [`SendStrategy`].
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum SendStrategyArg {
    /// sendmsg from the file mapping, header and block in one gathered send:
    /// the fastest and cheapest measured.
    #[default]
    Send,
    /// splice file -> pipe -> socket: no user-space copy, but one kernel
    /// worker operation per header and block; pays only with large blocks.
    Splice,
    /// Zero-copy sendmsg (pages pinned, not copied): only pays on a real NIC
    /// (on loopback the kernel copies anyway).
    SendZc,
}

impl SendStrategyArg {
    /// The runtime's strategy.
    pub(crate) fn strategy(self) -> SendStrategy {
        match self {
            SendStrategyArg::Send => SendStrategy::Send,
            SendStrategyArg::Splice => SendStrategy::Splice,
            SendStrategyArg::SendZc => SendStrategy::SendZc,
        }
    }

    /// The option value naming it (`send`, `splice`, `send-zc`).
    pub(crate) fn as_arg(self) -> &'static str {
        match self {
            SendStrategyArg::Send => "send",
            SendStrategyArg::Splice => "splice",
            SendStrategyArg::SendZc => "send-zc",
        }
    }
}

impl CoreArgs {
    /// Applies these options to `config`.
    pub(crate) fn apply(&self, config: &mut NodeConfig) {
        if let Some(n) = self.workers {
            config.workers = usize::from(n);
        }
        config.pin_cores = self.pin_cores;
        config.send_strategy = self.send_strategy.strategy();
    }
}

/// The directory `Storage` opens: the parent of the torrent's `name` entry.
pub(crate) fn data_root(meta: &Metainfo, data: &Path) -> PathBuf {
    let name = meta.info().name();
    if data.join(name).exists() {
        return data.to_path_buf();
    }
    if data.file_name().is_some_and(|n| n == name) {
        if let Some(parent) = data.parent() {
            return if parent.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                parent.to_path_buf()
            };
        }
    }
    data.to_path_buf()
}

/// Where the data of the torrent file `torrent` is: `--path`, else the
/// directory of the .torrent file.
pub(crate) fn data_dir(path: Option<&Path>, torrent: &Path) -> PathBuf {
    match path {
        Some(p) => p.to_path_buf(),
        None => match torrent.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        },
    }
}

/// Runs `p2pe seed`.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let [torrent] = args.torrents.as_slice() else {
        return super::seed_many::run(args);
    };
    let meta = load_torrent(torrent)?;
    let stop = stop_flag()?;
    let root = data_root(&meta, &data_dir(args.path.as_deref(), torrent));
    let (storage, _) = open_storage(&meta, &root, OpenMode::Seed)?;
    storage.set_write_resume(args.write_resume);
    if !storage.is_complete() {
        tracing::warn!(
            "only {} of {} pieces verified; serving those",
            storage.verified_count(),
            storage.piece_count()
        );
    }
    let mut config = NodeConfig {
        listen: Some(args.listen),
        upload_limit_bytes_per_s: args.upload_limit.as_deref().map(parse_limit).transpose()?,
        download_limit_bytes_per_s: args
            .download_limit
            .as_deref()
            .map(parse_limit)
            .transpose()?,
        ..NodeConfig::new()
    };
    args.discovery.apply(&mut config);
    args.cores.apply(&mut config);
    let workers = config.workers;
    let node = Node::start(&meta, storage, config).context("start node")?;
    let metrics = args.metrics.start(&node, &meta)?;
    print_dht_addr(&node);
    let addr = node.local_addr().context("no listen address")?;
    print_listening(addr, args.json)?;
    tracing::info!(
        "seeding {} ({}) with {} worker(s), send strategy {}",
        meta.info().name(),
        meta.info_hash(),
        workers,
        args.cores.send_strategy.as_arg()
    );
    let transfers = node.transfers();
    let started = Instant::now();
    let mut last_busy = Instant::now();
    let mut seen_peer = false;
    while !stopped(&stop) {
        std::thread::sleep(Duration::from_millis(100));
        if let Some(e) = node.take_error() {
            let _ = node.shutdown();
            return Err(anyhow::Error::new(e).context("seeding stopped"));
        }
        let p = node.progress();
        if p.peers > 0 {
            seen_peer = true;
            last_busy = Instant::now();
        }
        if let Some(idle) = args.exit_after_idle {
            if seen_peer && last_busy.elapsed() >= Duration::from_secs(idle) {
                break;
            }
        }
    }
    let p = node.shutdown().context("shut down")?;
    if let Some(m) = metrics {
        m.stop();
    }
    tracing::info!(
        "announces accepted: {}; peers learned: {} from trackers, {} from PEX, {} from the DHT",
        p.announces_ok,
        p.tracker_peers_learned,
        p.pex_peers_learned,
        p.dht_peers_learned
    );
    tracing::info!(
        "uploaded {} bytes to {} peers",
        p.uploaded_bytes,
        p.peers_seen
    );
    if args.json {
        let summary = serde_json::json!({
            "uploaded_bytes": p.uploaded_bytes,
            "seconds": started.elapsed().as_secs_f64(),
            "peers": p.peers_seen,
            "announces_ok": p.announces_ok,
            "tracker_peers_learned": p.tracker_peers_learned,
            "pex_peers_learned": p.pex_peers_learned,
            "dht_peers_learned": p.dht_peers_learned,
            "uploaded_to": uploaded_to_json(&transfers.snapshot()),
        });
        println!("{summary}");
    }
    Ok(())
}

/// A peer id for JSON: its `Display` form, as text when every byte is
/// printable ASCII (most clients' `-XX1234-` ids), else 40 lowercase hex
/// digits.
fn peer_id_json(id: Option<PeerId>) -> serde_json::Value {
    id.map_or(serde_json::Value::Null, |id| id.to_string().into())
}

/// The summary's `sources`: one object per peer we received payload from,
/// `{"addr", "peer_id", "downloaded_bytes", "pieces"}` (see
/// [`PeerTransfer`] for what counts), ordered by address.
pub(crate) fn sources_json(transfers: &[PeerTransfer]) -> serde_json::Value {
    transfers
        .iter()
        .filter(|t| t.downloaded_bytes > 0)
        .map(|t| {
            serde_json::json!({
                "addr": t.addr.to_string(),
                "peer_id": peer_id_json(t.peer_id),
                "downloaded_bytes": t.downloaded_bytes,
                "pieces": t.pieces,
            })
        })
        .collect()
}

/// The summary's `uploaded_to`: one object per peer we sent payload to,
/// `{"addr", "peer_id", "uploaded_bytes"}`, ordered by address.
pub(crate) fn uploaded_to_json(transfers: &[PeerTransfer]) -> serde_json::Value {
    transfers
        .iter()
        .filter(|t| t.uploaded_bytes > 0)
        .map(|t| {
            serde_json::json!({
                "addr": t.addr.to_string(),
                "peer_id": peer_id_json(t.peer_id),
                "uploaded_bytes": t.uploaded_bytes,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn per_peer_json_lists_only_peers_with_payload() {
        let t = |port, down, up, id| PeerTransfer {
            addr: std::net::SocketAddr::from(([10, 0, 0, 1], port)),
            peer_id: id,
            downloaded_bytes: down,
            uploaded_bytes: up,
            pieces: 2,
        };
        let mut raw = *b"-LT2000-............";
        raw[19] = 0xff;
        let ts = [
            t(1, 10, 0, Some(PeerId(*b"-PE0001-abcdefghijkl"))),
            t(2, 0, 7, Some(PeerId(raw))),
            t(3, 0, 0, None),
        ];
        let src = sources_json(&ts);
        assert_eq!(src.as_array().map(Vec::len), Some(1));
        assert_eq!(src[0]["addr"], "10.0.0.1:1");
        assert_eq!(src[0]["peer_id"], "-PE0001-abcdefghijkl");
        assert_eq!(src[0]["downloaded_bytes"], 10);
        assert_eq!(src[0]["pieces"], 2);
        let up = uploaded_to_json(&ts);
        assert_eq!(up.as_array().map(Vec::len), Some(1));
        assert_eq!(up[0]["uploaded_bytes"], 7);
        assert_eq!(up[0]["peer_id"], hex::encode(raw));
    }

    #[test]
    fn send_strategy_names_round_trip() {
        for v in SendStrategyArg::value_variants() {
            assert_eq!(SendStrategyArg::from_str(v.as_arg(), false), Ok(*v));
        }
        assert_eq!(
            SendStrategyArg::default().strategy(),
            SendStrategy::default()
        );
    }
}
