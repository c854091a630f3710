//! The metrics of `p2pe tracker`, read from its [`TrackerWatch`].

use std::time::Instant;

use p2pe::discovery::tracker_server::io::{TrackerStats, TrackerWatch};
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use super::{encode_registry, Source};

/// Metrics of one tracker, for [`super::MetricsServer`].
pub(crate) struct TrackerMetrics {
    watch: TrackerWatch,
    registry: Registry,
    announces: IntCounterVec,
    scrapes: IntCounterVec,
    rejected: IntCounter,
    peers: IntGauge,
    swarms: IntGauge,
}

fn register<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, m: T) -> T {
    r.register(Box::new(m.clone()))
        .expect("metric registered once");
    m
}

fn raise(c: &IntCounter, total: u64) {
    let now = c.get();
    if total > now {
        c.inc_by(total - now);
    }
}

impl TrackerMetrics {
    /// Metrics of the tracker behind `watch`.
    pub(crate) fn new(watch: TrackerWatch) -> Self {
        let r = Registry::new();
        let by_protocol = |name: &str, help: &str| {
            register(
                &r,
                IntCounterVec::new(Opts::new(name, help), &["protocol"]).expect("valid name"),
            )
        };
        let announces = by_protocol(
            "p2pe_tracker_announces_total",
            "Announces answered, by protocol (udp: BEP 15, http: BEP 3).",
        );
        let scrapes = by_protocol(
            "p2pe_tracker_scrapes_total",
            "Scrapes answered, by protocol (udp: BEP 15, http: BEP 48).",
        );
        let rejected = register(
            &r,
            IntCounter::new(
                "p2pe_tracker_rejected_total",
                "Announces and scrapes refused with an error (bad BEP 15 connection id, malformed query, full scrape).",
            )
            .expect("valid name"),
        );
        let peers = register(
            &r,
            IntGauge::new("p2pe_tracker_peers", "Peers over all swarms now.").expect("valid name"),
        );
        let swarms = register(
            &r,
            IntGauge::new(
                "p2pe_tracker_swarms",
                "Swarms (torrents with at least one peer) now.",
            )
            .expect("valid name"),
        );
        TrackerMetrics {
            watch,
            registry: r,
            announces,
            scrapes,
            rejected,
            peers,
            swarms,
        }
    }

    fn update(&self, s: &TrackerStats) {
        raise(&self.announces.with_label_values(&["udp"]), s.announces_udp);
        raise(
            &self.announces.with_label_values(&["http"]),
            s.announces_http,
        );
        raise(&self.scrapes.with_label_values(&["udp"]), s.scrapes_udp);
        raise(&self.scrapes.with_label_values(&["http"]), s.scrapes_http);
        raise(&self.rejected, s.rejected);
        self.peers.set(i64::try_from(s.peers).unwrap_or(i64::MAX));
        self.swarms.set(i64::try_from(s.swarms).unwrap_or(i64::MAX));
    }
}

impl Source for TrackerMetrics {
    fn sample(&mut self, _now: Instant) {}

    fn encode(&mut self) -> String {
        let s = self.watch.stats();
        self.update(&s);
        encode_registry(&self.registry)
    }
}
