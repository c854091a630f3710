//! Who got their payload from whom: the per-row from-whom matrix (rows =
//! receiving leechers, columns = senders: the origin and every leecher) built
//! from each leecher's completion line (`sources`, as `p2pe get --json` and
//! `lt_peer.py` print it), and the compact figures a row reports.
//!
//! A source is matched to a swarm member by IP address alone (every emulated
//! host has its own address; libtorrent names inbound peers by their source
//! port). Bytes from addresses that are no member go to `other`; what a
//! receiver reports downloading beyond the sum of its sources (a connection
//! that closed between two of libtorrent's polls) is `unattributed`.
//!
//! Shares are fractions of the receiver's attributed bytes (the sum of its
//! sources, duplicates included).

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

/// A swarm member that can send payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Label in the matrix (`origin`, `peer5`).
    pub label: String,
    /// The host's address.
    pub ip: IpAddr,
    /// On a slow link (`--slow-rate`).
    pub slow: bool,
}

/// What one leecher received, by sender.
#[derive(Debug, Clone, PartialEq)]
struct Received {
    /// Bytes from each member (index as in [`Matrix::members`]).
    bytes_from: Vec<u64>,
    /// Whole pieces from each member, where the client counts them.
    pieces_from: Vec<Option<u64>>,
    /// Bytes from addresses that are no member.
    other_bytes: u64,
    /// Payload the receiver reports beyond the sum of its sources.
    unattributed_bytes: u64,
    /// Pieces in the torrent, where the client says.
    piece_count: Option<u64>,
}

impl Received {
    fn attributed_bytes(&self) -> u64 {
        self.bytes_from.iter().sum::<u64>() + self.other_bytes
    }
}

/// The from-whom matrix of one row.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    /// Senders: the origin first, then the leechers in host order.
    pub members: Vec<Member>,
    /// Per leecher (`members[1..]`): what it received, `None` if it reported
    /// no sources.
    received: Vec<Option<Received>>,
}

/// Compact figures of a [`Matrix`] for a row's JSON and table line. Shares are
/// fractions (0..=1) of each leecher's attributed payload; medians and maxima
/// are over the leechers named.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct FromWhomFigures {
    /// Median over leechers of the share that came from the origin.
    pub from_origin_share_median: f64,
    /// Largest share any leecher got from the origin.
    pub from_origin_share_max: f64,
    /// Slow leechers (median): share from the origin.
    pub slow_share_from_origin: Option<f64>,
    /// Slow leechers (median): share from fast leechers.
    pub slow_share_from_fast: Option<f64>,
    /// Slow leechers (median): share from other slow leechers.
    pub slow_share_from_slow: Option<f64>,
    /// Fast leechers (median): share from slow leechers (how much the slow
    /// uplinks were used).
    pub fast_share_from_slow: Option<f64>,
    /// Largest fraction of a leecher's reported payload not in its sources.
    pub unattributed_share_max: f64,
    /// Median over leechers of the payload received beyond the file, as a
    /// fraction of the file: (sources + unattributed − F) / F. Bytes that
    /// arrived twice (endgame duplicates, blocks that crossed a cancel) each
    /// cost the receiver's downlink and a sender's uplink.
    pub received_excess_median: f64,
    /// The largest such excess of any leecher.
    pub received_excess_max: f64,
}

fn median(mut xs: Vec<f64>) -> Option<f64> {
    xs.sort_by(f64::total_cmp);
    (!xs.is_empty()).then(|| super::report::median(&xs))
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// The IP of an `"IP:PORT"` (or bare IP) address string.
fn ip_of(addr: &str) -> Option<IpAddr> {
    addr.parse::<SocketAddr>()
        .map(|a| a.ip())
        .or_else(|_| addr.parse::<IpAddr>())
        .ok()
}

impl Matrix {
    /// Builds the matrix from each leecher's completion line (`reports[i]` is
    /// `members[i + 1]`'s). `None` when no report has a `sources` array (a
    /// client that does not say).
    pub fn build(members: Vec<Member>, reports: &[Option<serde_json::Value>]) -> Option<Matrix> {
        let received: Vec<Option<Received>> = reports
            .iter()
            .map(|r| r.as_ref().and_then(|v| Self::received(&members, v)))
            .collect();
        if received.iter().all(Option::is_none) {
            return None;
        }
        Some(Matrix { members, received })
    }

    fn received(members: &[Member], report: &serde_json::Value) -> Option<Received> {
        let sources = report.get("sources")?.as_array()?;
        let mut r = Received {
            bytes_from: vec![0; members.len()],
            pieces_from: vec![None; members.len()],
            other_bytes: 0,
            unattributed_bytes: 0,
            piece_count: report.get("piece_count").and_then(|v| v.as_u64()),
        };
        for s in sources {
            let bytes = s
                .get("downloaded_bytes")
                .and_then(|v| v.as_u64())
                .unwrap_or(0);
            let pieces = s.get("pieces").and_then(|v| v.as_u64());
            let ip = s.get("addr").and_then(|a| a.as_str()).and_then(ip_of);
            match ip.and_then(|ip| members.iter().position(|m| m.ip == ip)) {
                Some(i) => {
                    if let Some(b) = r.bytes_from.get_mut(i) {
                        *b += bytes;
                    }
                    if let (Some(p), Some(n)) = (r.pieces_from.get_mut(i), pieces) {
                        *p = Some(p.unwrap_or(0) + n);
                    }
                }
                None => r.other_bytes += bytes,
            }
        }
        // p2pe's summary says `bytes`, lt_peer.py `downloaded_bytes`.
        let reported = ["bytes", "downloaded_bytes"]
            .iter()
            .find_map(|k| report.get(*k).and_then(|v| v.as_u64()));
        r.unattributed_bytes = reported.map_or(0, |b| b.saturating_sub(r.attributed_bytes()));
        Some(r)
    }

    /// Receivers with a report: (member index, what it received).
    fn receivers(&self) -> impl Iterator<Item = (usize, &Received)> {
        self.received
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.as_ref().map(|r| (i + 1, r)))
    }

    fn is_slow(&self, i: usize) -> bool {
        self.members.get(i).is_some_and(|m| m.slow)
    }

    /// Median share, over receivers picked by `who`, of bytes from senders
    /// picked by `from` (`None` if no receiver is picked).
    fn share(&self, who: impl Fn(usize) -> bool, from: impl Fn(usize) -> bool) -> Option<f64> {
        let xs = self
            .receivers()
            .filter(|(i, _)| who(*i))
            .map(|(_, r)| {
                let part = (0..r.bytes_from.len())
                    .filter(|&j| from(j))
                    .map(|j| r.bytes_from.get(j).copied().unwrap_or(0))
                    .sum();
                ratio(part, r.attributed_bytes())
            })
            .collect();
        median(xs)
    }

    /// The row's compact figures; `size_bytes` is the file size F.
    pub fn figures(&self, size_bytes: u64) -> FromWhomFigures {
        let origin: Vec<f64> = self
            .receivers()
            .map(|(_, r)| {
                ratio(
                    r.bytes_from.first().copied().unwrap_or(0),
                    r.attributed_bytes(),
                )
            })
            .collect();
        let any_slow = (1..self.members.len()).any(|i| self.is_slow(i));
        let slow = |i: usize| i > 0 && self.is_slow(i);
        let fast = |i: usize| i > 0 && !self.is_slow(i);
        let when_slow = |x: Option<f64>| x.filter(|_| any_slow);
        let excess: Vec<f64> = self
            .receivers()
            .map(|(_, r)| {
                let got = r.attributed_bytes() + r.unattributed_bytes;
                ratio(got.saturating_sub(size_bytes), size_bytes)
            })
            .collect();
        FromWhomFigures {
            received_excess_median: median(excess.clone()).unwrap_or(0.0),
            received_excess_max: excess.iter().copied().fold(0.0, f64::max),
            from_origin_share_median: median(origin.clone()).unwrap_or(0.0),
            from_origin_share_max: origin.iter().copied().fold(0.0, f64::max),
            slow_share_from_origin: when_slow(self.share(slow, |j| j == 0)),
            slow_share_from_fast: when_slow(self.share(slow, fast)),
            slow_share_from_slow: when_slow(self.share(slow, slow)),
            fast_share_from_slow: when_slow(self.share(fast, slow)),
            unattributed_share_max: self
                .receivers()
                .map(|(_, r)| {
                    ratio(
                        r.unattributed_bytes,
                        r.attributed_bytes() + r.unattributed_bytes,
                    )
                })
                .fold(0.0, f64::max),
        }
    }

    fn label(&self, i: usize) -> String {
        self.members.get(i).map_or_else(String::new, |m| {
            format!("{}{}", m.label, if m.slow { "*" } else { "" })
        })
    }

    fn header(&self, extra: &[&str]) -> String {
        let mut s = String::from("receiver\\sender");
        for i in 0..self.members.len() {
            let _ = write!(s, "\t{}", self.label(i));
        }
        for e in extra {
            let _ = write!(s, "\t{e}");
        }
        s.push('\n');
        s
    }

    /// `from-whom.tsv`: MiB each receiver got from each sender (`-` on the
    /// diagonal, `n/a` for a receiver without a report), then `other`,
    /// `unattributed` and the attributed `total`; `*` marks slow hosts.
    pub fn tsv_mib(&self) -> String {
        let mib = |b: u64| format!("{:.2}", b as f64 / (1u64 << 20) as f64);
        let mut s = self.header(&["other", "unattributed", "total"]);
        for (k, r) in self.received.iter().enumerate() {
            let me = k + 1;
            s.push_str(&self.label(me));
            match r {
                None => s.push_str(&"\tn/a".repeat(self.members.len() + 3)),
                Some(r) => {
                    for (j, b) in r.bytes_from.iter().enumerate() {
                        let cell = if j == me { "-".to_owned() } else { mib(*b) };
                        let _ = write!(s, "\t{cell}");
                    }
                    let _ = write!(
                        s,
                        "\t{}\t{}\t{}",
                        mib(r.other_bytes),
                        mib(r.unattributed_bytes),
                        mib(r.attributed_bytes())
                    );
                }
            }
            s.push('\n');
        }
        s
    }

    /// `from-whom-pieces.tsv`: whole pieces each receiver got from one sender
    /// alone, then `mixed` (pieces assembled from several senders, or not
    /// counted) — `None` when no client counted pieces (libtorrent does not).
    pub fn tsv_pieces(&self) -> Option<String> {
        let counted = self
            .receivers()
            .any(|(_, r)| r.pieces_from.iter().any(Option::is_some));
        if !counted {
            return None;
        }
        let mut s = self.header(&["mixed"]);
        for (k, r) in self.received.iter().enumerate() {
            let me = k + 1;
            s.push_str(&self.label(me));
            let Some(r) = r else {
                s.push_str(&"\tn/a".repeat(self.members.len() + 1));
                s.push('\n');
                continue;
            };
            for (j, p) in r.pieces_from.iter().enumerate() {
                let cell = match p {
                    _ if j == me => "-".to_owned(),
                    Some(n) => n.to_string(),
                    None => "0".to_owned(),
                };
                let _ = write!(s, "\t{cell}");
            }
            let whole: u64 = r.pieces_from.iter().flatten().sum();
            let mixed = r
                .piece_count
                .map_or_else(|| "n/a".to_owned(), |n| n.saturating_sub(whole).to_string());
            let _ = writeln!(s, "\t{mixed}");
        }
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn members() -> Vec<Member> {
        let m = |label: &str, last: u8, slow| Member {
            label: label.into(),
            ip: IpAddr::from([198, 18, 0, last]),
            slow,
        };
        vec![
            m("origin", 2, false),
            m("peer2", 3, false),
            m("peer3", 4, false),
            m("peer4", 5, true),
        ]
    }

    fn src(ip: u8, port: u16, bytes: u64, pieces: Option<u64>) -> serde_json::Value {
        json!({"addr": format!("198.18.0.{ip}:{port}"), "peer_id": "x",
               "downloaded_bytes": bytes, "pieces": pieces})
    }

    #[test]
    fn matrix_attributes_by_ip_and_reports_shares() {
        let reports = vec![
            // peer2: 3/4 from the origin, 1/4 from peer3 over two connections.
            Some(json!({"bytes": 400, "piece_count": 4, "sources": [
                src(2, 6881, 300, Some(3)), src(4, 6881, 50, Some(0)), src(4, 40000, 50, Some(0))]})),
            // peer3: all from peer2, a source outside the swarm, lt-style.
            Some(json!({"downloaded_bytes": 500, "sources": [
                src(3, 1, 400, None), {"addr": "10.0.0.1:1", "downloaded_bytes": 50}]})),
            // Slow peer4: half from the origin, half from fast peer2.
            Some(
                json!({"bytes": 400, "sources": [src(2, 6881, 200, None), src(3, 6881, 200, None)]}),
            ),
        ];
        let m = Matrix::build(members(), &reports).unwrap();
        let f = m.figures(400);
        assert_eq!(f.from_origin_share_max, 0.75);
        // Received beyond F = 400: peer2 0, peer3 100 (sources + unattributed), peer4 0.
        assert_eq!(f.received_excess_median, 0.0);
        assert_eq!(f.received_excess_max, 0.25);
        assert_eq!(f.from_origin_share_median, 0.5);
        assert_eq!(f.slow_share_from_origin, Some(0.5));
        assert_eq!(f.slow_share_from_fast, Some(0.5));
        assert_eq!(f.slow_share_from_slow, Some(0.0));
        assert_eq!(f.fast_share_from_slow, Some(0.0));
        // peer3 reported 500, sources sum to 450.
        assert!((f.unattributed_share_max - 0.1).abs() < 1e-12);
        let tsv = m.tsv_mib();
        let lines: Vec<&str> = tsv.lines().collect();
        assert_eq!(
            lines[0],
            "receiver\\sender\torigin\tpeer2\tpeer3\tpeer4*\tother\tunattributed\ttotal"
        );
        assert!(
            lines[1].starts_with("peer2\t0.00\t-\t0.00\t0.00\t"),
            "{tsv}"
        );
        assert_eq!(lines.len(), 4);
        let pieces = m.tsv_pieces().unwrap();
        let p: Vec<&str> = pieces.lines().collect();
        assert_eq!(p[1], "peer2\t3\t-\t0\t0\t1");
        assert_eq!(p[2], "peer3\t0\t0\t-\t0\tn/a");
    }

    #[test]
    fn no_sources_no_matrix_and_missing_reports_are_marked() {
        let reports = vec![Some(json!({"complete": true})), None, None];
        assert!(Matrix::build(members(), &reports).is_none());
        let reports = vec![Some(json!({"sources": [src(2, 1, 10, None)]})), None, None];
        let m = Matrix::build(members(), &reports).unwrap();
        assert!(m.tsv_mib().contains("peer3\tn/a"));
        assert!(m.tsv_pieces().is_none());
        let f = m.figures(10);
        assert_eq!(f.from_origin_share_median, 1.0);
        assert_eq!(f.received_excess_max, 0.0);
        // peer4 (slow) has no report: no slow figures.
        assert_eq!(f.slow_share_from_origin, None);
    }
}
