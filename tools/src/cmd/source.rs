//! Where `p2pe get` takes the torrent from: a `.torrent` file or
//! `http(s)://` URL (both read by [`load_torrent`]), or a magnet link
//! (BEP 9), from one positional argument. A new kind is one more variant
//! here and one more arm in [`Source::parse`] and [`Source::load`].

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use p2pe::base::PeerId;
use p2pe::discovery::metadata::{fetch_metadata, FetchConfig};
use p2pe::node::DhtConfig;
use p2pe::wire::magnet::MagnetLink;
use p2pe::wire::metainfo::Metainfo;

use super::node_common::load_torrent;

/// The torrent `p2pe get` downloads.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    /// A `.torrent` file or `http(s)://` URL.
    Torrent(PathBuf),
    /// A magnet link: the info dictionary is fetched from peers first.
    Magnet(MagnetLink),
}

/// What a magnet fetch needs from the command line.
#[derive(Debug, Clone)]
pub(crate) struct FetchArgs {
    /// `--peer` addresses (the link's `x.pe` peers are added to them).
    pub peers: Vec<SocketAddr>,
    /// `--tracker` tiers, or `None` for the link's `tr` trackers.
    pub trackers: Option<Vec<Vec<String>>>,
    /// `--no-tracker`.
    pub no_tracker: bool,
    /// `--metadata-timeout`.
    pub timeout: Duration,
    /// `--connect-timeout`: bound on one TCP connect.
    pub connect_timeout: Duration,
    /// The peer id of the fetch: not the node's (see
    /// [`FetchConfig::peer_id`]).
    pub peer_id: PeerId,
    /// The node's listen port if given (`--listen`), else 0: announced
    /// while fetching.
    pub listen_port: u16,
    /// Set by SIGINT/SIGTERM: ends the fetch early.
    pub stop: Arc<AtomicBool>,
    /// `--dht` (and its bootstrap settings): look peers up in the DHT too.
    pub dht: Option<DhtConfig>,
}

/// A loaded torrent and the peers the source itself names.
pub(crate) struct Loaded {
    /// The torrent.
    pub meta: Metainfo,
    /// Peers to dial besides `--peer`: a magnet link's `x.pe` and the peers
    /// met while fetching its metadata.
    pub peers: Vec<SocketAddr>,
    /// For a magnet link: how long fetching the metadata took, in seconds.
    pub metadata_seconds: Option<f64>,
}

impl Source {
    /// Reads the positional argument: a magnet link if it starts with
    /// `magnet:`, else a path or URL.
    ///
    /// # Errors
    /// A malformed magnet link (the parser's typed error).
    pub(crate) fn parse(text: &str) -> anyhow::Result<Source> {
        if MagnetLink::is_magnet(text) {
            // One line with the cause: clap prints only the top of a chain.
            let link =
                MagnetLink::parse(text).map_err(|e| anyhow::anyhow!("bad magnet link: {e}"))?;
            return Ok(Source::Magnet(link));
        }
        Ok(Source::Torrent(PathBuf::from(text)))
    }

    /// Loads the torrent: reads the file, or fetches the magnet link's info
    /// dictionary from its peers and trackers (verified against its
    /// info-hash) and builds the torrent from it with the link's trackers
    /// and web seeds.
    ///
    /// # Errors
    /// An unreadable or malformed `.torrent` (file or URL: see
    /// [`load_torrent`]); for a magnet link, an `x.pe`
    /// that does not resolve, no metadata within the timeout (the error
    /// says what became of the peers), or metadata that is no valid info
    /// dictionary.
    pub(crate) fn load(&self, args: &FetchArgs) -> anyhow::Result<Loaded> {
        match self {
            Source::Torrent(path) => Ok(Loaded {
                meta: load_torrent(path)?,
                peers: Vec::new(),
                metadata_seconds: None,
            }),
            Source::Magnet(link) => load_magnet(link, args),
        }
    }
}

/// Resolves `host:port` peers (the first address of each).
pub(crate) fn resolve(peers: &[String], what: &str) -> anyhow::Result<Vec<SocketAddr>> {
    let mut out = Vec::new();
    for p in peers {
        let addr = p
            .to_socket_addrs()
            .with_context(|| format!("{what} {p:?}"))?
            .next()
            .with_context(|| format!("{what} {p:?}: no address"))?;
        out.push(addr);
    }
    Ok(out)
}

fn load_magnet(link: &MagnetLink, args: &FetchArgs) -> anyhow::Result<Loaded> {
    let link_peers = resolve(&link.peers, "x.pe")?;
    let mut peers = args.peers.clone();
    peers.extend(
        link_peers
            .iter()
            .copied()
            .filter(|a| !args.peers.contains(a)),
    );
    let trackers: Vec<Vec<String>> = if args.no_tracker {
        Vec::new()
    } else {
        // Each `tr` its own tier, in link order (as libtorrent reads them).
        args.trackers
            .clone()
            .unwrap_or_else(|| link.trackers.iter().map(|t| vec![t.clone()]).collect())
    };
    if peers.is_empty() && trackers.is_empty() && args.dht.is_none() {
        bail!(
            "the magnet link names no peers (x.pe) or trackers (tr): give --peer, --tracker or --dht"
        );
    }
    let mut config = FetchConfig::new(args.peer_id);
    config.port = args.listen_port;
    config.cancel = Some(args.stop.clone());
    config.dht = args.dht.clone();
    config.timeout = args.timeout;
    config.connect_timeout = args.connect_timeout.min(config.connect_timeout);
    // The peer id's random tail seeds the tracker client's choices.
    config.seed = args
        .peer_id
        .0
        .iter()
        .fold(0u64, |h, &b| h.rotate_left(8) ^ u64::from(b));
    tracing::info!(
        "fetching metadata for {} from {} peer(s), {} tracker(s){}",
        link.info_hash,
        peers.len(),
        trackers.len(),
        if args.dht.is_some() {
            " and the DHT"
        } else {
            ""
        }
    );
    let started = std::time::Instant::now();
    let fetched = fetch_metadata(link.info_hash, &peers, &trackers, &config, &mut |line| {
        tracing::info!("{line}")
    })
    .context("fetch metadata")?;
    let meta = Metainfo::from_info_bytes(&fetched.info_bytes, trackers)
        .context("the metadata is no valid info dictionary")?
        .with_web_seeds(link.web_seeds.clone());
    tracing::info!(
        "metadata: {} bytes verified against the info-hash; {} ({} pieces)",
        fetched.info_bytes.len(),
        meta.info().name(),
        meta.info().piece_count()
    );
    Ok(Loaded {
        meta,
        peers: fetched.peers,
        metadata_seconds: Some(started.elapsed().as_secs_f64()),
    })
}
