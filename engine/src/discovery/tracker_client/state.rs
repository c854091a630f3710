//! Per-tracker state and one exchange (HTTP GET, or BEP 15 connect + announce).

use crate::core::time::Time;
use crate::wire::tracker::query::join_url;
use crate::wire::tracker::udp::{self, ConnectionId, PeerFamily, TransactionId};
use crate::wire::tracker::{Announce, AnnounceResponse, Event, TrackerError};
use rand::RngExt;

use super::{Request, TrackerClient, TrackerId, MAX_BUFFERED_PEERS};

/// How a tracker is reached.
#[derive(Clone, Debug)]
pub(super) enum Kind {
    /// `http://` or `https://` announce URL.
    Http,
    /// `udp://host:port[/path]`.
    Udp {
        host_port: String,
        family: PeerFamily,
    },
}

/// One tracker of the announce-list.
#[derive(Clone, Debug)]
pub(super) struct TrackerState {
    pub(super) url: String,
    pub(super) kind: Kind,
    /// The BEP 15 connection id and when it was received.
    pub(super) connection: Option<(ConnectionId, Time)>,
}

impl TrackerState {
    /// Recognises `http(s)://…` and `udp://host:port…`; `None` otherwise.
    pub(super) fn parse(url: &str) -> Option<Self> {
        let kind = if url.starts_with("http://") || url.starts_with("https://") {
            Kind::Http
        } else if let Some(rest) = url.strip_prefix("udp://") {
            let host_port = rest.split(['/', '?']).next().unwrap_or_default();
            if host_port.is_empty() || !host_port.contains(':') {
                return None;
            }
            let family = if host_port.starts_with('[') {
                PeerFamily::V6
            } else {
                PeerFamily::V4
            };
            Kind::Udp {
                host_port: host_port.to_owned(),
                family,
            }
        } else {
            return None;
        };
        Some(Self {
            url: url.to_owned(),
            kind,
            connection: None,
        })
    }
}

/// Where an exchange with a tracker stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stage {
    Http,
    UdpConnect,
    UdpAnnounce(ConnectionId),
}

/// The one request in flight.
#[derive(Clone, Debug)]
pub(super) struct InFlight {
    pub(super) tracker: usize,
    pub(super) tier: usize,
    pub(super) pos: usize,
    pub(super) stage: Stage,
    pub(super) deadline: Time,
    /// BEP 15 retransmits done for the current packet.
    pub(super) attempt: u32,
    pub(super) transaction_id: TransactionId,
    pub(super) request: Request,
    /// The event this announce carries.
    pub(super) event: Event,
}

impl TrackerClient {
    fn announce_now(&self) -> Announce {
        let stopping = self.pending_event == Event::Stopped;
        Announce {
            info_hash: self.info_hash,
            peer_id: self.peer_id,
            port: self.port,
            uploaded_bytes: self.uploaded_bytes,
            downloaded_bytes: self.downloaded_bytes,
            left_bytes: self.left_bytes,
            event: self.pending_event,
            numwant: if stopping {
                Some(0)
            } else {
                self.config.numwant
            },
            key: self.key,
            topology: self.config.topology.clone(),
        }
    }

    /// Starts (or continues) an exchange with tracker `idx` at round position (tier, pos).
    pub(super) fn send_to(&mut self, now: Time, idx: usize, tier: usize, pos: usize) {
        let stage = self.stage_of(idx, now);
        let transaction_id = TransactionId(self.rng.random());
        let Some(tracker) = self.trackers.get(idx) else {
            return;
        };
        let announce = self.announce_now();
        let request = match (&tracker.kind, stage) {
            (Kind::Udp { host_port, .. }, Stage::UdpConnect) => {
                let mut payload = Vec::with_capacity(16);
                udp::Request::Connect { transaction_id }.encode(&mut payload);
                Request::Udp {
                    host_port: host_port.clone(),
                    payload,
                }
            }
            (Kind::Udp { host_port, .. }, Stage::UdpAnnounce(connection_id)) => {
                let mut payload = Vec::with_capacity(128);
                udp::Request::Announce {
                    connection_id,
                    transaction_id,
                    announce: announce.clone(),
                }
                .encode(&mut payload);
                Request::Udp {
                    host_port: host_port.clone(),
                    payload,
                }
            }
            _ => Request::Http {
                url: join_url(&tracker.url, &announce.to_query()),
            },
        };
        let timeout = match stage {
            Stage::Http => self.config.http_timeout,
            _ => self.config.udp_timeout,
        };
        self.outbox = Some((TrackerId(idx as u32), request.clone()));
        self.in_flight = Some(InFlight {
            tracker: idx,
            tier,
            pos,
            stage,
            deadline: now + timeout,
            attempt: 0,
            transaction_id,
            request,
            event: announce.event,
        });
    }

    /// The in-flight request timed out: BEP 15 retransmit, or give up on the tracker.
    pub(super) fn on_deadline(&mut self, now: Time) {
        let max_retries = self.config.udp_max_retries;
        let base = self.config.udp_timeout;
        let Some(flight) = self.in_flight.as_mut() else {
            return;
        };
        if flight.stage != Stage::Http && flight.attempt < max_retries {
            flight.attempt += 1;
            flight.deadline = now + base.saturating_mul(1u32 << flight.attempt.min(16));
            self.outbox = Some((TrackerId(flight.tracker as u32), flight.request.clone()));
            return;
        }
        self.fail_current(now, "no answer (timed out)".into());
    }

    /// The driver could not complete the request to `tracker` (connect refused,
    /// DNS failure, I/O timeout, HTTP status other than 200, body over the size cap).
    /// Ignored unless `tracker` is the one in flight.
    pub fn handle_error(&mut self, now: Time, tracker: TrackerId, reason: &str) {
        if self.in_flight.as_ref().map(|f| f.tracker) == Some(tracker.0 as usize) {
            self.fail_current(now, reason.to_owned());
        }
    }

    /// An answer from `tracker`: an HTTP body, or a BEP 15 datagram. Stale
    /// answers (another tracker, another transaction id) are ignored.
    pub fn handle_response(&mut self, now: Time, tracker: TrackerId, bytes: &[u8]) {
        let Some(flight) = self.in_flight.clone() else {
            return;
        };
        if flight.tracker != tracker.0 as usize {
            return;
        }
        let family = match self.trackers.get(flight.tracker).map(|t| &t.kind) {
            Some(Kind::Udp { family, .. }) => *family,
            _ => PeerFamily::V4,
        };
        let parsed = match flight.stage {
            Stage::Http => AnnounceResponse::from_bencode(bytes),
            _ => match udp::Response::decode(bytes, family) {
                Ok(r) if transaction_id(&r) != flight.transaction_id => return,
                Ok(udp::Response::Connect { connection_id, .. }) => {
                    if let Some(t) = self.trackers.get_mut(flight.tracker) {
                        t.connection = Some((connection_id, now));
                    }
                    self.in_flight = None;
                    self.send_to(now, flight.tracker, flight.tier, flight.pos);
                    return;
                }
                Ok(udp::Response::Announce { response, .. }) => Ok(response),
                Ok(udp::Response::Error { message, .. }) => Err(TrackerError::Failure(message)),
                Ok(udp::Response::Scrape { .. }) => {
                    Err(TrackerError::BadPacket("scrape answer to an announce"))
                }
                Err(e) => Err(e),
            },
        };
        match parsed {
            Ok(response) => self.on_success(now, &flight, response),
            Err(e) => self.fail_current(now, e.to_string()),
        }
    }

    fn on_success(&mut self, now: Time, flight: &InFlight, response: AnnounceResponse) {
        self.in_flight = None;
        self.announces_ok = self.announces_ok.saturating_add(1);
        if let Some(warning) = &response.warning_message {
            let url = self.trackers.get(flight.tracker).map_or("?", |t| &t.url);
            self.warnings
                .push(format!("tracker {url} warns: {warning}"));
        }
        // BEP 12: a tracker that answered moves to the front of its tier.
        if let Some(tier) = self.tiers.get_mut(flight.tier) {
            if flight.pos < tier.len() {
                let idx = tier.remove(flight.pos);
                tier.insert(0, idx);
            }
        }
        if self.pending_event == flight.event {
            self.pending_event = Event::None;
        }
        if let (Some(c), Some(i)) = (response.complete, response.incomplete) {
            self.swarm_counts = Some((c, i));
        }
        let room = MAX_BUFFERED_PEERS.saturating_sub(self.peers.len());
        self.peers.extend(response.peers.iter().copied().take(room));
        self.finish_round(now, true);
        self.schedule_after_success(now, response.interval_s, response.min_interval_s);
    }
}

fn transaction_id(r: &udp::Response) -> TransactionId {
    match r {
        udp::Response::Connect { transaction_id, .. }
        | udp::Response::Announce { transaction_id, .. }
        | udp::Response::Scrape { transaction_id, .. }
        | udp::Response::Error { transaction_id, .. } => *transaction_id,
    }
}
