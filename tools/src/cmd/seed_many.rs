//! `p2pe seed` with several torrents or `--dir`: one [`Session`] (one runtime,
//! one listen port) serving them all, the directory polled for torrents added
//! and removed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use p2pe::node::{NodeConfig, Session, TorrentId};
use p2pe::store::OpenMode;

use crate::metrics::node::TorrentSet;

use super::node_common::{
    load_torrent, open_storage, parse_limit, print_listening, stop_flag, stopped,
};
use super::seed::{data_dir, data_root, Args};

/// How often `--dir` is listed for torrents added or removed.
pub(crate) const DIR_POLL: Duration = Duration::from_secs(2);

/// Most `*.torrent` files of `--dir` served at once; beyond it, files are
/// left alone (and one warning says so). Each torrent costs a few threads'
/// worth of memory at most (announcer, resume flusher) plus its pieces' state.
pub(crate) const MAX_DIR_TORRENTS: usize = 4096;

/// A torrent file as listed: its length and modification time, so a file
/// rewritten in place is taken again.
type Stamp = (u64, Option<SystemTime>);

/// One torrent served by the session.
struct Served {
    id: TorrentId,
    stamp: Stamp,
    /// The torrent's name and info-hash, for log lines.
    label: String,
    /// The info-hash in hex (the metrics' `torrent` label).
    info_hash: String,
}

/// The torrents of this run and what the last listing saw.
struct Seeds {
    session: Session,
    config: NodeConfig,
    write_resume: bool,
    served: BTreeMap<PathBuf, Served>,
    /// Files that failed (malformed torrent, data missing): not retried until
    /// they change.
    failed: BTreeMap<PathBuf, Stamp>,
    warned_cap: bool,
    /// The session's DHT address was logged (at the first torrent with one).
    dht_logged: bool,
    /// The torrents `--metrics` exposes (`None`: no `--metrics`).
    metrics: Option<TorrentSet>,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    m.is_file().then(|| (m.len(), m.modified().ok()))
}

impl Seeds {
    /// Serves `torrent` with its data below `data`; an error is logged (one
    /// line) and remembered, and never stops the other torrents.
    fn add(&mut self, torrent: &Path, data: &Path, stamp: Stamp) -> bool {
        match self.try_add(torrent, data) {
            Ok((id, label, info_hash)) => {
                tracing::info!("added {label} from {}", torrent.display());
                self.served.insert(
                    torrent.to_path_buf(),
                    Served {
                        id,
                        stamp,
                        label,
                        info_hash,
                    },
                );
                self.failed.remove(torrent);
                true
            }
            Err(e) => {
                tracing::error!("{}: not served: {e:#}", torrent.display());
                self.failed.insert(torrent.to_path_buf(), stamp);
                false
            }
        }
    }

    /// Adds `torrent` to the session (and the metrics): its id, log label
    /// and info-hash in hex.
    fn try_add(
        &mut self,
        torrent: &Path,
        data: &Path,
    ) -> anyhow::Result<(TorrentId, String, String)> {
        let meta = load_torrent(torrent)?;
        let root = data_root(&meta, data);
        let (storage, _) = open_storage(&meta, &root, OpenMode::Seed)?;
        storage.set_write_resume(self.write_resume);
        let label = format!("{} ({})", meta.info().name(), meta.info_hash());
        if !storage.is_complete() {
            tracing::warn!(
                "{label}: only {} of {} pieces verified; serving those",
                storage.verified_count(),
                storage.piece_count()
            );
        }
        let config = NodeConfig {
            log_label: Some(label.clone()),
            ..self.config.clone()
        };
        let id = self.session.add(&meta, storage, &config)?;
        if !self.dht_logged {
            if let Some(a) = self.session.dht_addr(id) {
                tracing::info!("dht listening on {a}");
                self.dht_logged = true;
            }
        }
        let info_hash = meta.info_hash().to_string();
        if let Some(set) = &self.metrics {
            set.add(
                self.session.watch(id)?,
                info_hash.clone(),
                meta.info().total_len_bytes(),
            );
        }
        Ok((id, label, info_hash))
    }

    /// Stops serving the torrent of `path` (its file is gone or changed).
    fn drop_file(&mut self, path: &Path, why: &str) {
        let Some(s) = self.served.remove(path) else {
            return;
        };
        if let Some(set) = &self.metrics {
            set.remove(&s.info_hash);
        }
        match self.session.remove(s.id) {
            Ok(p) => tracing::info!(
                "dropped {} ({why}); uploaded {} bytes to {} peers",
                s.label,
                p.uploaded_bytes,
                p.peers_seen
            ),
            Err(e) => tracing::error!("dropped {} ({why}): {e:#}", s.label),
        }
    }

    /// Lists `dir` and brings the served set in line with it.
    fn sync_dir(&mut self, dir: &Path) {
        let mut listed: BTreeMap<PathBuf, Stamp> = BTreeMap::new();
        match std::fs::read_dir(dir) {
            Ok(entries) => {
                for e in entries.flatten() {
                    let path = e.path();
                    if path.extension().is_some_and(|x| x == "torrent") {
                        if let Some(st) = stamp(&path) {
                            listed.insert(path, st);
                        }
                    }
                }
            }
            Err(e) => {
                // A transient error must not drop every torrent.
                tracing::warn!("list {}: {e}", dir.display());
                return;
            }
        }
        let gone: Vec<PathBuf> = self
            .served
            .iter()
            .filter(|(p, s)| listed.get(*p) != Some(&s.stamp))
            .map(|(p, _)| p.clone())
            .collect();
        for p in gone {
            let why = if listed.contains_key(&p) {
                "file changed"
            } else {
                "file removed"
            };
            self.drop_file(&p, why);
        }
        self.failed.retain(|p, st| listed.get(p) == Some(st));
        for (path, st) in listed {
            if self.served.contains_key(&path) || self.failed.contains_key(&path) {
                continue;
            }
            if self.served.len() >= MAX_DIR_TORRENTS {
                if !std::mem::replace(&mut self.warned_cap, true) {
                    tracing::warn!(
                        "{}: serving at most {MAX_DIR_TORRENTS} torrents; the others are left alone",
                        dir.display()
                    );
                }
                break;
            }
            self.add(&path, dir, st);
        }
    }

    /// Logs each torrent's pending events; drops a torrent whose storage
    /// failed (the others go on).
    fn poll(&mut self) {
        let mut failed = Vec::new();
        for (path, s) in &self.served {
            if let Some(e) = self.session.take_error(s.id) {
                tracing::error!("{}: storage failed: {e:#}", s.label);
                failed.push(path.clone());
            }
        }
        for p in failed {
            self.drop_file(&p, "storage failed");
            if let Some(st) = stamp(&p) {
                self.failed.insert(p, st);
            }
        }
    }

    /// Connected peers over all torrents.
    fn peers(&self) -> u32 {
        self.served
            .values()
            .filter_map(|s| self.session.progress(s.id).ok())
            .map(|p| p.peers)
            .sum()
    }
}

/// Runs `p2pe seed` with several torrents or `--dir`.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let stop = stop_flag()?;
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
    let session = Session::start(&config).context("start session")?;
    let addr = session.local_addr().context("no listen address")?;
    let metrics_set = args.metrics.metrics.map(|_| TorrentSet::default());
    let metrics = match &metrics_set {
        Some(set) => args.metrics.start_set(set.clone())?,
        None => None,
    };
    let mut seeds = Seeds {
        session,
        config,
        write_resume: args.write_resume,
        served: BTreeMap::new(),
        failed: BTreeMap::new(),
        warned_cap: false,
        dht_logged: false,
        metrics: metrics_set,
    };
    match &args.dir {
        Some(dir) => {
            anyhow::ensure!(dir.is_dir(), "--dir {}: not a directory", dir.display());
            seeds.sync_dir(dir);
        }
        None => {
            for t in &args.torrents {
                let st = stamp(t).unwrap_or((0, None));
                seeds.add(t, &data_dir(args.path.as_deref(), t), st);
            }
            anyhow::ensure!(!seeds.served.is_empty(), "no torrent could be served");
        }
    }
    print_listening(addr, args.json)?;
    tracing::info!(
        "seeding {} torrent(s) on {addr} with {workers} worker(s), send strategy {}",
        seeds.served.len(),
        args.cores.send_strategy.as_arg()
    );
    let started = Instant::now();
    let mut last_busy = Instant::now();
    let mut last_listing = Instant::now();
    let mut seen_peer = false;
    while !stopped(&stop) {
        std::thread::sleep(Duration::from_millis(100));
        seeds.poll();
        if let Some(dir) = &args.dir {
            if last_listing.elapsed() >= DIR_POLL {
                seeds.sync_dir(dir);
                last_listing = Instant::now();
            }
        }
        if seeds.peers() > 0 {
            seen_peer = true;
            last_busy = Instant::now();
        }
        if let Some(idle) = args.exit_after_idle {
            if seen_peer && last_busy.elapsed() >= Duration::from_secs(idle) {
                break;
            }
        }
    }
    let labels: BTreeMap<TorrentId, String> = seeds
        .served
        .values()
        .map(|s| (s.id, s.label.clone()))
        .collect();
    let mut torrents = Vec::new();
    let (mut uploaded, mut failures) = (0u64, 0usize);
    let results = seeds.session.shutdown();
    if let Some(m) = metrics {
        m.stop();
    }
    for (id, r) in results {
        let label = labels.get(&id).cloned().unwrap_or_default();
        match r {
            Ok(p) => {
                uploaded += p.uploaded_bytes;
                torrents.push(serde_json::json!({
                    "torrent": label,
                    "uploaded_bytes": p.uploaded_bytes,
                    "peers": p.peers_seen,
                }));
            }
            Err(e) => {
                failures += 1;
                tracing::error!("{label}: {e:#}");
            }
        }
    }
    tracing::info!(
        "uploaded {uploaded} bytes over {} torrent(s)",
        torrents.len()
    );
    if args.json {
        let summary = serde_json::json!({
            "uploaded_bytes": uploaded,
            "seconds": started.elapsed().as_secs_f64(),
            "torrents": torrents,
        });
        println!("{summary}");
    }
    anyhow::ensure!(failures == 0, "{failures} torrent(s) failed at shutdown");
    Ok(())
}
