//! The UDP tracker protocol (BEP 15), with BEP 41 URL data carrying p2pe's
//! topology labels. All integers are big-endian.
//!
//! Requests: connect (16 bytes), announce (98 bytes + BEP 41 options), scrape
//! (16 + 20·n bytes, 1 ≤ n ≤ 74). Responses: connect (16), announce (20 + 6·n
//! for IPv4 or 18·n for IPv6: the family is that of the socket the exchange
//! used, so the decoder is told which), scrape (8 + 12·n), error (8 + text).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::query::{percent_decode, Announce, Topology};
use super::MAX_SCRAPE_HASHES;
use super::{AnnounceResponse, Event, ScrapeStats, TrackerError, MAX_LABEL_BYTES, MAX_PEERS};
use crate::base::{InfoHash, PeerId, SHA1_LEN_BYTES};

/// The magic first field of a connect request (BEP 15).
pub const PROTOCOL_ID: u64 = 0x0417_2710_1980;

/// Length of an announce request without BEP 41 options, in bytes.
pub const ANNOUNCE_REQUEST_LEN_BYTES: usize = 98;

/// Largest datagram either side sends or accepts, in bytes. BEP 15 packets are
/// at most 98 + options (≤ 255 + a few) or 20 + 18·[`MAX_PEERS`]; 64 KiB is
/// the UDP limit anyway.
pub const MAX_PACKET_BYTES: usize = 65_507;

const ACTION_CONNECT: u32 = 0;
const ACTION_ANNOUNCE: u32 = 1;
const ACTION_SCRAPE: u32 = 2;
const ACTION_ERROR: u32 = 3;

/// The connection id a tracker hands out in a connect response (BEP 15).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnectionId(pub u64);

/// The id a client puts in a request and the tracker echoes (BEP 15).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TransactionId(pub u32);

/// Address family of the peers in an announce response: that of the socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerFamily {
    /// 6-byte peers (IPv4 address, port).
    V4,
    /// 18-byte peers (IPv6 address, port).
    V6,
}

/// A client-to-tracker packet (BEP 15).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Ask for a connection id.
    Connect {
        /// Echoed by the tracker.
        transaction_id: TransactionId,
    },
    /// Announce (fields as in HTTP; `ip` is always 0 = "the sender's address").
    Announce {
        /// From the connect response.
        connection_id: ConnectionId,
        /// Echoed by the tracker.
        transaction_id: TransactionId,
        /// The announce; topology labels travel as BEP 41 URL data.
        announce: Announce,
    },
    /// Scrape 1 to 74 torrents.
    Scrape {
        /// From the connect response.
        connection_id: ConnectionId,
        /// Echoed by the tracker.
        transaction_id: TransactionId,
        /// The torrents, 1 to [`MAX_SCRAPE_HASHES`].
        info_hashes: Vec<InfoHash>,
    },
}

/// A tracker-to-client packet (BEP 15).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// A connection id, valid for about a minute.
    Connect {
        /// The request's id.
        transaction_id: TransactionId,
        /// To use in announce and scrape requests.
        connection_id: ConnectionId,
    },
    /// Announce answer: `interval_s`, `incomplete` (leechers), `complete`
    /// (seeders) and peers; `min_interval_s` and `warning_message` are always `None`.
    Announce {
        /// The request's id.
        transaction_id: TransactionId,
        /// The answer.
        response: AnnounceResponse,
    },
    /// Scrape answer, one entry per requested hash in order.
    Scrape {
        /// The request's id.
        transaction_id: TransactionId,
        /// Counters.
        stats: Vec<ScrapeStats>,
    },
    /// The request was refused.
    Error {
        /// The request's id.
        transaction_id: TransactionId,
        /// Why (lossy UTF-8).
        message: String,
    },
}

/// A cursor over untrusted bytes; every read checks the length.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], TrackerError> {
        if self.0.len() < n {
            return Err(TrackerError::BadPacket("truncated"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], TrackerError> {
        self.take(N)?
            .try_into()
            .map_err(|_| TrackerError::BadPacket("truncated"))
    }
    fn u16(&mut self) -> Result<u16, TrackerError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, TrackerError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, TrackerError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
}

fn check_packet_len(packet: &[u8]) -> Result<(), TrackerError> {
    if packet.len() > MAX_PACKET_BYTES {
        return Err(TrackerError::TooLong {
            len_bytes: packet.len(),
            max_bytes: MAX_PACKET_BYTES,
        });
    }
    Ok(())
}

impl Request {
    /// Appends the packet to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Request::Connect { transaction_id } => {
                out.extend_from_slice(&PROTOCOL_ID.to_be_bytes());
                out.extend_from_slice(&ACTION_CONNECT.to_be_bytes());
                out.extend_from_slice(&transaction_id.0.to_be_bytes());
            }
            Request::Announce {
                connection_id,
                transaction_id,
                announce: a,
            } => {
                out.extend_from_slice(&connection_id.0.to_be_bytes());
                out.extend_from_slice(&ACTION_ANNOUNCE.to_be_bytes());
                out.extend_from_slice(&transaction_id.0.to_be_bytes());
                out.extend_from_slice(&a.info_hash.0);
                out.extend_from_slice(&a.peer_id.0);
                out.extend_from_slice(&a.downloaded_bytes.to_be_bytes());
                out.extend_from_slice(&a.left_bytes.to_be_bytes());
                out.extend_from_slice(&a.uploaded_bytes.to_be_bytes());
                out.extend_from_slice(&a.event.udp_id().to_be_bytes());
                out.extend_from_slice(&0u32.to_be_bytes()); // ip: the sender's
                out.extend_from_slice(&a.key.to_be_bytes());
                let numwant = a
                    .numwant
                    .map_or(-1, |n| i32::try_from(n).unwrap_or(i32::MAX));
                out.extend_from_slice(&numwant.to_be_bytes());
                out.extend_from_slice(&a.port.to_be_bytes());
                encode_topology(&a.topology, out);
            }
            Request::Scrape {
                connection_id,
                transaction_id,
                info_hashes,
            } => {
                out.extend_from_slice(&connection_id.0.to_be_bytes());
                out.extend_from_slice(&ACTION_SCRAPE.to_be_bytes());
                out.extend_from_slice(&transaction_id.0.to_be_bytes());
                for hash in info_hashes.iter().take(MAX_SCRAPE_HASHES) {
                    out.extend_from_slice(&hash.0);
                }
            }
        }
    }

    /// Decodes a datagram received by the tracker.
    ///
    /// # Errors
    /// [`TrackerError::BadPacket`] for a short packet, an unknown action, a
    /// connect without the protocol id, or a scrape of 0 or more than 74 hashes;
    /// [`TrackerError::TooLong`] past [`MAX_PACKET_BYTES`].
    pub fn decode(packet: &[u8]) -> Result<Self, TrackerError> {
        check_packet_len(packet)?;
        let mut r = Reader(packet);
        let connection_id = r.u64()?;
        let action = r.u32()?;
        let transaction_id = TransactionId(r.u32()?);
        match action {
            ACTION_CONNECT if connection_id == PROTOCOL_ID => {
                Ok(Request::Connect { transaction_id })
            }
            ACTION_CONNECT => Err(TrackerError::BadPacket("connect without the protocol id")),
            ACTION_ANNOUNCE => Ok(Request::Announce {
                connection_id: ConnectionId(connection_id),
                transaction_id,
                announce: decode_announce(&mut r)?,
            }),
            ACTION_SCRAPE => {
                let n = r.0.len() / SHA1_LEN_BYTES;
                if n == 0 || n > MAX_SCRAPE_HASHES {
                    return Err(TrackerError::BadPacket(
                        "scrape of 0 or more than 74 hashes",
                    ));
                }
                let info_hashes = (0..n)
                    .map(|_| r.array().map(InfoHash))
                    .collect::<Result<_, _>>()?;
                Ok(Request::Scrape {
                    connection_id: ConnectionId(connection_id),
                    transaction_id,
                    info_hashes,
                })
            }
            _ => Err(TrackerError::BadPacket("unknown action")),
        }
    }
}

fn decode_announce(r: &mut Reader<'_>) -> Result<Announce, TrackerError> {
    let info_hash = InfoHash(r.array()?);
    let peer_id = PeerId(r.array()?);
    let downloaded_bytes = r.u64()?;
    let left_bytes = r.u64()?;
    let uploaded_bytes = r.u64()?;
    let event = Event::from_udp_id(r.u32()?);
    let _ip = r.u32()?;
    let key = r.u32()?;
    let numwant = u32::try_from(r.u32()? as i32).ok();
    let port = r.u16()?;
    Ok(Announce {
        info_hash,
        peer_id,
        port,
        uploaded_bytes,
        downloaded_bytes,
        left_bytes,
        event,
        numwant,
        key,
        topology: decode_topology(r.0),
    })
}

/// BEP 41 option types.
const OPTION_END: u8 = 0;
const OPTION_NOP: u8 = 1;
const OPTION_URL_DATA: u8 = 2;

/// Appends topology labels as BEP 41 URL data (`?p2pe_rack=..&p2pe_zone=..`),
/// split into options of at most 255 bytes.
fn encode_topology(topology: &Topology, out: &mut Vec<u8>) {
    if topology.rack.is_none() && topology.zone.is_none() {
        return;
    }
    let mut url = String::from("?");
    for (name, label) in [("p2pe_rack", &topology.rack), ("p2pe_zone", &topology.zone)] {
        if let Some(label) = label {
            if url.len() > 1 {
                url.push('&');
            }
            url.push_str(name);
            url.push('=');
            super::query::percent_encode(label.as_bytes(), &mut url);
        }
    }
    for chunk in url.as_bytes().chunks(255) {
        out.push(OPTION_URL_DATA);
        out.push(u8::try_from(chunk.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(chunk);
    }
    out.push(OPTION_END);
}

/// Reads topology labels from BEP 41 options; anything malformed is ignored
/// (options are advisory, the announce itself stays valid).
fn decode_topology(options: &[u8]) -> Topology {
    let mut url = Vec::new();
    let mut r = Reader(options);
    while let Ok([kind]) = r.array::<1>() {
        match kind {
            OPTION_END => break,
            OPTION_NOP => {}
            OPTION_URL_DATA => {
                let Ok([len]) = r.array::<1>() else { break };
                let Ok(data) = r.take(usize::from(len)) else {
                    break;
                };
                url.extend_from_slice(data);
            }
            _ => break,
        }
    }
    let mut topology = Topology::default();
    let Some(q) = url.iter().position(|&b| b == b'?') else {
        return topology;
    };
    for pair in url.get(q + 1..).unwrap_or_default().split(|&b| b == b'&') {
        let (slot, value) = if let Some(v) = pair.strip_prefix(b"p2pe_rack=") {
            (&mut topology.rack, v)
        } else if let Some(v) = pair.strip_prefix(b"p2pe_zone=") {
            (&mut topology.zone, v)
        } else {
            continue;
        };
        if let Ok(raw) = percent_decode(value, "p2pe label") {
            if raw.len() <= MAX_LABEL_BYTES {
                *slot = String::from_utf8(raw).ok();
            }
        }
    }
    topology
}

impl Response {
    /// Appends the packet to `out`. Announce peers not of `family` (that of
    /// the socket it goes out on) are skipped: a response carries one family.
    pub fn encode(&self, family: PeerFamily, out: &mut Vec<u8>) {
        let (action, tid) = match self {
            Response::Connect { transaction_id, .. } => (ACTION_CONNECT, transaction_id),
            Response::Announce { transaction_id, .. } => (ACTION_ANNOUNCE, transaction_id),
            Response::Scrape { transaction_id, .. } => (ACTION_SCRAPE, transaction_id),
            Response::Error { transaction_id, .. } => (ACTION_ERROR, transaction_id),
        };
        out.extend_from_slice(&action.to_be_bytes());
        out.extend_from_slice(&tid.0.to_be_bytes());
        match self {
            Response::Connect { connection_id, .. } => {
                out.extend_from_slice(&connection_id.0.to_be_bytes())
            }
            Response::Announce { response, .. } => {
                out.extend_from_slice(&response.interval_s.to_be_bytes());
                out.extend_from_slice(&response.incomplete.unwrap_or(0).to_be_bytes());
                out.extend_from_slice(&response.complete.unwrap_or(0).to_be_bytes());
                for peer in &response.peers {
                    match (peer.ip(), family) {
                        (IpAddr::V4(ip), PeerFamily::V4) => out.extend_from_slice(&ip.octets()),
                        (IpAddr::V6(ip), PeerFamily::V6) => out.extend_from_slice(&ip.octets()),
                        _ => continue,
                    }
                    out.extend_from_slice(&peer.port().to_be_bytes());
                }
            }
            Response::Scrape { stats, .. } => {
                for s in stats {
                    out.extend_from_slice(&s.complete.to_be_bytes());
                    out.extend_from_slice(&s.downloaded.to_be_bytes());
                    out.extend_from_slice(&s.incomplete.to_be_bytes());
                }
            }
            Response::Error { message, .. } => out.extend_from_slice(message.as_bytes()),
        }
    }

    /// Appends a BEP 15 announce answer (action 1) whose peers are already in
    /// compact form: `compact_peers` holds 6-byte (IPv4) or 18-byte (IPv6)
    /// entries of one family, the address then the port, network byte order.
    /// The same bytes as [`Response::encode`] of a [`Response::Announce`] with
    /// those peers, `interval_s`, and `incomplete` leechers and `complete`
    /// seeders; for a tracker that builds the entries straight from its lists.
    pub fn encode_announce_compact(
        transaction_id: TransactionId,
        interval_s: u32,
        incomplete: u32,
        complete: u32,
        compact_peers: &[u8],
        out: &mut Vec<u8>,
    ) {
        out.extend_from_slice(&ACTION_ANNOUNCE.to_be_bytes());
        out.extend_from_slice(&transaction_id.0.to_be_bytes());
        out.extend_from_slice(&interval_s.to_be_bytes());
        out.extend_from_slice(&incomplete.to_be_bytes());
        out.extend_from_slice(&complete.to_be_bytes());
        out.extend_from_slice(compact_peers);
    }

    /// Decodes a datagram received by the client; announce peers are read as
    /// `family` (that of the socket), at most [`MAX_PEERS`].
    ///
    /// # Errors
    /// [`TrackerError::BadPacket`] for a short packet, an unknown action or a
    /// peer list / scrape list whose length is not a multiple of the entry size;
    /// [`TrackerError::TooLong`] past [`MAX_PACKET_BYTES`].
    pub fn decode(packet: &[u8], family: PeerFamily) -> Result<Self, TrackerError> {
        check_packet_len(packet)?;
        let mut r = Reader(packet);
        let action = r.u32()?;
        let transaction_id = TransactionId(r.u32()?);
        match action {
            ACTION_CONNECT => Ok(Response::Connect {
                transaction_id,
                connection_id: ConnectionId(r.u64()?),
            }),
            ACTION_ANNOUNCE => Ok(Response::Announce {
                transaction_id,
                response: decode_announce_response(&mut r, family)?,
            }),
            ACTION_SCRAPE => {
                if !r.0.len().is_multiple_of(12) {
                    return Err(TrackerError::BadPacket("scrape response length"));
                }
                let mut stats = Vec::with_capacity(r.0.len() / 12);
                while !r.0.is_empty() {
                    stats.push(ScrapeStats {
                        complete: r.u32()?,
                        downloaded: r.u32()?,
                        incomplete: r.u32()?,
                    });
                }
                Ok(Response::Scrape {
                    transaction_id,
                    stats,
                })
            }
            ACTION_ERROR => Ok(Response::Error {
                transaction_id,
                message: String::from_utf8_lossy(r.0).into_owned(),
            }),
            _ => Err(TrackerError::BadPacket("unknown action")),
        }
    }
}

fn decode_announce_response(
    r: &mut Reader<'_>,
    family: PeerFamily,
) -> Result<AnnounceResponse, TrackerError> {
    let interval_s = r.u32()?;
    let incomplete = Some(r.u32()?);
    let complete = Some(r.u32()?);
    let peer_len = match family {
        PeerFamily::V4 => 6,
        PeerFamily::V6 => 18,
    };
    if !r.0.len().is_multiple_of(peer_len) {
        return Err(TrackerError::BadPacket("peer list length"));
    }
    let mut peers = Vec::with_capacity((r.0.len() / peer_len).min(MAX_PEERS));
    while !r.0.is_empty() && peers.len() < MAX_PEERS {
        let ip = match family {
            PeerFamily::V4 => IpAddr::V4(Ipv4Addr::from(r.array::<4>()?)),
            PeerFamily::V6 => IpAddr::V6(Ipv6Addr::from(r.array::<16>()?)),
        };
        peers.push(SocketAddr::new(ip, r.u16()?));
    }
    Ok(AnnounceResponse {
        interval_s,
        min_interval_s: None,
        complete,
        incomplete,
        warning_message: None,
        peers,
    })
}
