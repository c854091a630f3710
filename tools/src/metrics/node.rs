//! The metrics of a `p2pe seed` or `p2pe get` node, read from each served
//! torrent's [`NodeWatch`] (one torrent, or the torrents of a `p2pe seed`
//! serving several, added and dropped while it runs through
//! [`TorrentSet`]). Every series has the label `torrent` (the info-hash in
//! hex); byte counters also `kind`, the kind of source: `peer` (a
//! BitTorrent peer) or, for downloads, `web_seed` (an HTTP server of the
//! torrent's BEP 19 `url-list`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use p2pe::node::{NodeWatch, Progress};
use prometheus::{GaugeVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use super::{encode_registry, Source};

/// Window the live rates are averaged over: long enough to smooth the
/// per-piece bursts of a transfer, short enough to show a stall in seconds.
pub(crate) const RATE_WINDOW: Duration = Duration::from_secs(5);

/// Byte totals sampled over the last [`RATE_WINDOW`], for the live rates.
#[derive(Debug, Default)]
pub(crate) struct RateWindow {
    /// (time, uploaded bytes, downloaded bytes), oldest first; bounded by
    /// the window (one sample a second: about six entries).
    samples: VecDeque<(Instant, u64, u64)>,
}

impl RateWindow {
    /// Records the totals at `now`, forgetting samples older than the window
    /// (the newest older one is kept as the window's start).
    pub(crate) fn push(&mut self, now: Instant, up_bytes: u64, down_bytes: u64) {
        self.samples.push_back((now, up_bytes, down_bytes));
        while self.samples.len() > 2
            && self
                .samples
                .get(1)
                .is_some_and(|&(t, _, _)| now.saturating_duration_since(t) >= RATE_WINDOW)
        {
            self.samples.pop_front();
        }
    }

    /// (upload, download) in bytes per second over the window; zeros until
    /// two samples exist.
    pub(crate) fn rates_bytes_per_s(&self) -> (f64, f64) {
        let (Some(&(t0, up0, down0)), Some(&(t1, up1, down1))) =
            (self.samples.front(), self.samples.back())
        else {
            return (0.0, 0.0);
        };
        let secs = t1.saturating_duration_since(t0).as_secs_f64();
        if secs <= 0.0 {
            return (0.0, 0.0);
        }
        (
            up1.saturating_sub(up0) as f64 / secs,
            down1.saturating_sub(down0) as f64 / secs,
        )
    }
}

/// The node's metric families (see `docs/metrics.md`).
struct Families {
    downloaded: IntCounterVec,
    uploaded: IntCounterVec,
    wasted: IntCounterVec,
    pieces_verified: IntCounterVec,
    hash_failures: IntCounterVec,
    web_seed_failures: IntCounterVec,
    peers_banned: IntCounterVec,
    peers_seen: IntCounterVec,
    announces: IntCounterVec,
    peers_learned: IntCounterVec,
    pieces_have: IntGaugeVec,
    pieces: IntGaugeVec,
    size: IntGaugeVec,
    progress: GaugeVec,
    complete: IntGaugeVec,
    peers_connected: IntGaugeVec,
    peers_choked: IntGaugeVec,
    copies_uploaded: GaugeVec,
    rate: GaugeVec,
    link_rate: Option<IntGauge>,
    link_utilization: Option<GaugeVec>,
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric name");
    r.register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric name");
    r.register(Box::new(g.clone()))
        .expect("metric registered once");
    g
}

fn gauge_f64(r: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let g = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric name");
    r.register(Box::new(g.clone()))
        .expect("metric registered once");
    g
}

/// Raises counter `c` to `total` (a counter only goes up: the engine's
/// totals only grow, so nothing is lost).
fn set_counter(c: &prometheus::IntCounter, total: u64) {
    let now = c.get();
    if total > now {
        c.inc_by(total - now);
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// One served torrent's source of numbers.
struct Tracked {
    watch: NodeWatch,
    size_bytes: u64,
    rates: RateWindow,
}

/// The torrents a [`NodeMetrics`] exposes, keyed by info-hash (hex); shared
/// with the owner of the node or session, which adds and drops them.
#[derive(Clone, Default)]
pub(crate) struct TorrentSet {
    torrents: Arc<Mutex<BTreeMap<String, Tracked>>>,
}

impl TorrentSet {
    /// Exposes the torrent with info-hash `info_hash_hex` and `size_bytes` of
    /// payload, read from `watch` (replacing an earlier one with that hash).
    pub(crate) fn add(&self, watch: NodeWatch, info_hash_hex: String, size_bytes: u64) {
        self.lock().insert(
            info_hash_hex,
            Tracked {
                watch,
                size_bytes,
                rates: RateWindow::default(),
            },
        );
    }

    /// Stops exposing torrent `info_hash_hex`: its series leave the next
    /// scrape (Prometheus marks them stale).
    pub(crate) fn remove(&self, info_hash_hex: &str) {
        self.lock().remove(info_hash_hex);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Tracked>> {
        self.torrents.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Metrics of one node or session, for [`super::MetricsServer`].
pub(crate) struct NodeMetrics {
    torrents: TorrentSet,
    link_rate_bytes_per_s: Option<u64>,
    registry: Registry,
    f: Families,
}

impl NodeMetrics {
    /// Metrics of the torrents in `torrents`, as many as it holds at each
    /// scrape (none: only the link rate, if given).
    pub(crate) fn with_set(torrents: TorrentSet, link_rate_bytes_per_s: Option<u64>) -> Self {
        let r = Registry::new();
        let t = &["torrent"][..];
        let tk = &["torrent", "kind"][..];
        let f = Families {
            downloaded: counter(
                &r,
                "p2pe_downloaded_bytes_total",
                "Payload bytes received, by kind of source (peer, web_seed).",
                tk,
            ),
            uploaded: counter(
                &r,
                "p2pe_uploaded_bytes_total",
                "Payload bytes sent, by kind of receiver (peer).",
                tk,
            ),
            wasted: counter(
                &r,
                "p2pe_wasted_bytes_total",
                "Payload bytes received but of no use: endgame duplicates, blocks after our cancel, pieces failing the hash.",
                t,
            ),
            pieces_verified: counter(
                &r,
                "p2pe_pieces_verified_total",
                "Pieces that passed their hash check (SHA-1, or BLAKE3 where the torrent has it) since the node started (pieces found at start excluded).",
                t,
            ),
            hash_failures: counter(
                &r,
                "p2pe_hash_failures_total",
                "Pieces that failed their hash check.",
                t,
            ),
            web_seed_failures: counter(
                &r,
                "p2pe_web_seed_failures_total",
                "Web seed (BEP 19) requests that failed: HTTP error or status, stall, wrong length, bytes failing the hash check.",
                t,
            ),
            peers_banned: counter(
                &r,
                "p2pe_peers_banned_total",
                "Peers banned for sending data that failed the hash check.",
                t,
            ),
            peers_seen: counter(
                &r,
                "p2pe_peers_seen_total",
                "Peers that completed a handshake with the node.",
                t,
            ),
            announces: counter(
                &r,
                "p2pe_announces_total",
                "Tracker announces by result (ok, failed: no answer, I/O error, failure reason, malformed answer).",
                &["torrent", "result"],
            ),
            peers_learned: counter(
                &r,
                "p2pe_peers_learned_total",
                "New peer addresses learned, by source (tracker, pex, dht).",
                &["torrent", "source"],
            ),
            pieces_have: gauge(
                &r,
                "p2pe_torrent_pieces_verified",
                "Pieces the node has, verified (including those present at start).",
                t,
            ),
            pieces: gauge(&r, "p2pe_torrent_pieces", "Pieces in the torrent.", t),
            size: gauge(
                &r,
                "p2pe_torrent_size_bytes",
                "Payload bytes of the torrent.",
                t,
            ),
            progress: gauge_f64(
                &r,
                "p2pe_torrent_progress_ratio",
                "Verified pieces / pieces (1 when complete).",
                t,
            ),
            complete: gauge(
                &r,
                "p2pe_torrent_complete",
                "1 when every piece is verified, else 0.",
                t,
            ),
            peers_connected: gauge(
                &r,
                "p2pe_peers_connected",
                "Peers connected now (handshake done).",
                t,
            ),
            peers_choked: gauge(
                &r,
                "p2pe_peers_choked",
                "Connected peers the node chokes now (does not upload to).",
                t,
            ),
            copies_uploaded: gauge_f64(
                &r,
                "p2pe_copies_uploaded_ratio",
                "Payload bytes uploaded / torrent size: on the origin seed, the copies it sent (the ideal is about 1).",
                t,
            ),
            rate: gauge_f64(
                &r,
                "p2pe_transfer_rate_bytes_per_second",
                "Live payload rate over the last 5 s, by direction (up, down).",
                &["torrent", "direction"],
            ),
            link_rate: link_rate_bytes_per_s.map(|_| {
                let g = IntGauge::new(
                    "p2pe_link_rate_bytes_per_second",
                    "The link rate given with --link-rate (bytes per second, each direction).",
                )
                .expect("valid metric name");
                r.register(Box::new(g.clone()))
                    .expect("metric registered once");
                g
            }),
            link_utilization: link_rate_bytes_per_s.map(|_| {
                gauge_f64(
                    &r,
                    "p2pe_link_utilization_ratio",
                    "Live payload rate / --link-rate, by direction (up, down).",
                    &["torrent", "direction"],
                )
            }),
        };
        NodeMetrics {
            torrents,
            link_rate_bytes_per_s,
            registry: r,
            f,
        }
    }

    /// Drops every torrent's series (the torrents still served are set again
    /// right after, so a dropped one leaves the exposition).
    fn reset(&self) {
        let f = &self.f;
        for c in [
            &f.downloaded,
            &f.uploaded,
            &f.wasted,
            &f.pieces_verified,
            &f.hash_failures,
            &f.web_seed_failures,
            &f.peers_banned,
            &f.peers_seen,
            &f.announces,
            &f.peers_learned,
        ] {
            c.reset();
        }
        for g in [
            &f.pieces_have,
            &f.pieces,
            &f.size,
            &f.complete,
            &f.peers_connected,
            &f.peers_choked,
        ] {
            g.reset();
        }
        for g in [&f.progress, &f.copies_uploaded, &f.rate] {
            g.reset();
        }
        if let Some(u) = &f.link_utilization {
            u.reset();
        }
    }

    /// Copies torrent `t`'s progress `p` (and its live rates) into the registry.
    fn update(&self, t: &str, tracked: &Tracked, p: &Progress) {
        let f = &self.f;
        set_counter(
            &f.downloaded.with_label_values(&[t, "peer"]),
            p.downloaded_bytes,
        );
        set_counter(
            &f.downloaded.with_label_values(&[t, "web_seed"]),
            p.web_seed_bytes,
        );
        set_counter(
            &f.web_seed_failures.with_label_values(&[t]),
            p.web_seed_failures,
        );
        set_counter(
            &f.uploaded.with_label_values(&[t, "peer"]),
            p.uploaded_bytes,
        );
        set_counter(&f.wasted.with_label_values(&[t]), p.wasted_bytes);
        let verified_now = p.verified_pieces.saturating_sub(p.pieces_verified_at_start);
        set_counter(
            &f.pieces_verified.with_label_values(&[t]),
            u64::from(verified_now),
        );
        set_counter(&f.hash_failures.with_label_values(&[t]), p.hash_failures);
        set_counter(&f.peers_banned.with_label_values(&[t]), p.peers_banned);
        set_counter(
            &f.peers_seen.with_label_values(&[t]),
            u64::from(p.peers_seen),
        );
        for (result, n) in [("ok", p.announces_ok), ("failed", p.announces_failed)] {
            set_counter(&f.announces.with_label_values(&[t, result]), u64::from(n));
        }
        for (source, n) in [
            ("tracker", p.tracker_peers_learned),
            ("pex", p.pex_peers_learned),
            ("dht", p.dht_peers_learned),
        ] {
            set_counter(
                &f.peers_learned.with_label_values(&[t, source]),
                u64::from(n),
            );
        }
        f.pieces_have
            .with_label_values(&[t])
            .set(i64::from(p.verified_pieces));
        f.pieces
            .with_label_values(&[t])
            .set(i64::from(p.piece_count));
        f.size
            .with_label_values(&[t])
            .set(to_i64(tracked.size_bytes));
        let progress = f64::from(p.verified_pieces) / f64::from(p.piece_count.max(1));
        f.progress.with_label_values(&[t]).set(progress);
        f.complete
            .with_label_values(&[t])
            .set(i64::from(p.complete));
        f.peers_connected
            .with_label_values(&[t])
            .set(i64::from(p.peers));
        let choked = p.peers.saturating_sub(p.peers_unchoked);
        f.peers_choked
            .with_label_values(&[t])
            .set(i64::from(choked));
        let copies = p.uploaded_bytes as f64 / tracked.size_bytes.max(1) as f64;
        f.copies_uploaded.with_label_values(&[t]).set(copies);
        let (up, down) = tracked.rates.rates_bytes_per_s();
        f.rate.with_label_values(&[t, "up"]).set(up);
        f.rate.with_label_values(&[t, "down"]).set(down);
        if let (Some(link), Some(u)) = (self.link_rate_bytes_per_s, &f.link_utilization) {
            let link = link.max(1) as f64;
            u.with_label_values(&[t, "up"]).set(up / link);
            u.with_label_values(&[t, "down"]).set(down / link);
        }
    }
}

impl Source for NodeMetrics {
    fn sample(&mut self, now: Instant) {
        for tracked in self.torrents.lock().values_mut() {
            let p = tracked.watch.progress();
            tracked
                .rates
                .push(now, p.uploaded_bytes, p.downloaded_bytes + p.web_seed_bytes);
        }
    }

    fn encode(&mut self) -> String {
        self.reset();
        if let (Some(link), Some(g)) = (self.link_rate_bytes_per_s, &self.f.link_rate) {
            g.set(to_i64(link));
        }
        for (t, tracked) in self.torrents.lock().iter() {
            let p = tracked.watch.progress();
            self.update(t, tracked, &p);
        }
        encode_registry(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_average_over_the_window() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let mut w = RateWindow::default();
        assert_eq!(w.rates_bytes_per_s(), (0.0, 0.0));
        w.push(s(0), 0, 0);
        assert_eq!(w.rates_bytes_per_s(), (0.0, 0.0));
        for i in 1..=10 {
            w.push(s(i), i * 100, i * 1000);
        }
        assert!(w.samples.len() <= 7, "bounded: {}", w.samples.len());
        let (up, down) = w.rates_bytes_per_s();
        assert!((up - 100.0).abs() < 1e-9, "{up}");
        assert!((down - 1000.0).abs() < 1e-9, "{down}");
        // A stall shows within the window.
        for i in 11..=16 {
            w.push(s(i), 1000, 10_000);
        }
        assert_eq!(w.rates_bytes_per_s(), (0.0, 0.0));
    }
}
