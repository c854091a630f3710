//! Web seed (BEP 19) options of `p2pe get` and their part of its summary.

use std::time::Duration;

use anyhow::Context;
use p2pe::node::{NodeConfig, WebSeedStats};
use p2pe::wire::metainfo::Metainfo;

/// Web seed options of `p2pe get`.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct WebSeedArgs {
    /// Also fetch from this web seed (BEP 19: an HTTP URL laid out as a
    /// torrent's `url-list` entry), beside the torrent's own; repeat for more.
    #[arg(long = "web-seed", value_name = "URL")]
    pub web_seeds: Vec<String>,
    /// Ignore the torrent's web seeds (`url-list`); `--web-seed` ones still apply.
    #[arg(long)]
    pub no_web_seeds: bool,
    /// Concurrent HTTP requests (keep-alive connections) per web seed, 1..=8.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub web_seed_connections: usize,
    /// Seconds without a response or a byte after which a web seed request
    /// has stalled (it fails and the web seed is backed off).
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub web_seed_timeout: f64,
}

impl WebSeedArgs {
    /// The web seed URLs to use: the torrent's (unless `--no-web-seeds`),
    /// then `--web-seed` ones.
    pub(crate) fn urls(&self, meta: &Metainfo) -> Vec<String> {
        let torrent = if self.no_web_seeds {
            &[][..]
        } else {
            meta.web_seeds()
        };
        torrent
            .iter()
            .chain(&self.web_seeds)
            .filter(|u| !u.is_empty())
            .cloned()
            .collect()
    }

    /// Puts the web seeds of `meta` and these options into `config`.
    ///
    /// # Errors
    /// `--web-seed-timeout` is not a positive number of seconds.
    pub(crate) fn apply(&self, meta: &Metainfo, config: &mut NodeConfig) -> anyhow::Result<()> {
        config.web_seeds.urls = self.urls(meta);
        config.web_seeds.connections_per_seed = self.web_seed_connections;
        config.web_seeds.stall_timeout = Duration::try_from_secs_f64(self.web_seed_timeout)
            .ok()
            .filter(|d| !d.is_zero())
            .context("--web-seed-timeout: a positive number of seconds")?;
        Ok(())
    }
}

/// The summary's `web_seeds`: one object per web seed, `{"url",
/// "downloaded_bytes", "pieces", "failures", "hash_failures", "last_error"}`.
pub(crate) fn web_seeds_json(stats: &[WebSeedStats]) -> serde_json::Value {
    stats
        .iter()
        .map(|s| {
            serde_json::json!({
                "url": s.url,
                "downloaded_bytes": s.downloaded_bytes,
                "pieces": s.pieces,
                "failures": s.failures,
                "hash_failures": s.hash_failures,
                "last_error": s.last_error,
            })
        })
        .collect()
}

/// One line per web seed that failed, for an error message.
pub(crate) fn failures_text(stats: &[WebSeedStats]) -> String {
    stats
        .iter()
        .map(|s| match &s.last_error {
            Some(e) => format!(
                "web seed {}: {} pieces, {} failures, last: {e}",
                s.url, s.pieces, s.failures
            ),
            None => format!("web seed {}: {} pieces, no failure", s.url, s.pieces),
        })
        .collect::<Vec<_>>()
        .join("; ")
}
