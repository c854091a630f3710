//! Unit tests and proptest round trips of the tracker codecs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proptest::prelude::*;

use super::query::{parse_scrape_query, scrape_query, scrape_url};
use super::udp::{ConnectionId, PeerFamily, Request, Response, TransactionId};
use super::*;
use crate::base::{InfoHash, PeerId};

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        Just(Event::None),
        Just(Event::Started),
        Just(Event::Completed),
        Just(Event::Stopped)
    ]
}

fn label() -> impl Strategy<Value = Option<String>> {
    proptest::option::of("[a-zA-Z0-9 _./&=%+é-]{0,20}")
}

prop_compose! {
    fn announce()(
        info_hash in any::<[u8; 20]>(),
        peer_id in any::<[u8; 20]>(),
        port in any::<u16>(),
        uploaded_bytes in any::<u64>(),
        downloaded_bytes in any::<u64>(),
        left_bytes in any::<u64>(),
        event in event(),
        numwant in proptest::option::of(0u32..=i32::MAX as u32),
        key in any::<u32>(),
        rack in label(),
        zone in label(),
    ) -> Announce {
        Announce {
            info_hash: InfoHash(info_hash), peer_id: PeerId(peer_id), port, uploaded_bytes,
            downloaded_bytes, left_bytes, event, numwant, key,
            topology: Topology { rack, zone },
        }
    }
}

fn peer(v6: bool) -> impl Strategy<Value = SocketAddr> {
    (any::<[u8; 16]>(), any::<u16>()).prop_map(move |(ip, port)| {
        let ip = if v6 {
            IpAddr::V6(Ipv6Addr::from(ip))
        } else {
            IpAddr::V4(Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]))
        };
        SocketAddr::new(ip, port)
    })
}

prop_compose! {
    fn http_response()(
        interval_s in any::<u32>(),
        min_interval_s in proptest::option::of(any::<u32>()),
        complete in proptest::option::of(any::<u32>()),
        incomplete in proptest::option::of(any::<u32>()),
        warning_message in proptest::option::of("[ -~]{0,30}"),
        v4 in proptest::collection::vec(peer(false), 0..20),
        v6 in proptest::collection::vec(peer(true), 0..20),
    ) -> AnnounceResponse {
        AnnounceResponse {
            interval_s, min_interval_s, complete, incomplete, warning_message,
            peers: v4.into_iter().chain(v6).collect(),
        }
    }
}

proptest! {
    #[test]
    fn announce_query_round_trips(a in announce()) {
        let query = a.to_query();
        prop_assert!(query.is_ascii());
        let (back, compact) = Announce::from_query(query.as_bytes()).unwrap();
        prop_assert!(compact);
        prop_assert_eq!(back, a);
    }

    #[test]
    fn http_response_round_trips(resp in http_response(), compact in any::<bool>()) {
        let body = resp.to_bencode(compact);
        prop_assert_eq!(AnnounceResponse::from_bencode(&body).unwrap(), resp);
    }

    #[test]
    fn scrape_round_trips(
        files in proptest::collection::btree_map(any::<[u8; 20]>(), any::<(u32, u32, u32)>(), 0..10)
    ) {
        let resp = ScrapeResponse {
            files: files.into_iter().map(|(h, (complete, downloaded, incomplete))| {
                (InfoHash(h), ScrapeStats { complete, downloaded, incomplete })
            }).collect(),
        };
        prop_assert_eq!(ScrapeResponse::from_bencode(&resp.to_bencode()).unwrap(), resp.clone());
        let hashes: Vec<InfoHash> = resp.files.keys().copied().collect();
        prop_assert_eq!(parse_scrape_query(scrape_query(&hashes).as_bytes()).unwrap(), hashes);
    }

    #[test]
    fn udp_requests_round_trip(
        a in announce(), tid in any::<u32>(), cid in any::<u64>(),
        hashes in proptest::collection::vec(any::<[u8; 20]>(), 1..=74)
    ) {
        let transaction_id = TransactionId(tid);
        let connection_id = ConnectionId(cid);
        let requests = [
            Request::Connect { transaction_id },
            Request::Announce { connection_id, transaction_id, announce: a },
            Request::Scrape {
                connection_id, transaction_id,
                info_hashes: hashes.into_iter().map(InfoHash).collect(),
            },
        ];
        for req in requests {
            let mut buf = Vec::new();
            req.encode(&mut buf);
            prop_assert_eq!(Request::decode(&buf).unwrap(), req);
        }
    }

    #[test]
    fn udp_responses_round_trip(
        tid in any::<u32>(), cid in any::<u64>(), v6 in any::<bool>(),
        interval_s in any::<u32>(), seeders in any::<u32>(), leechers in any::<u32>(),
        peers in proptest::collection::vec(peer(false), 0..10),
        peers6 in proptest::collection::vec(peer(true), 0..10),
        message in "[ -~]{0,40}",
        stats in proptest::collection::vec(any::<(u32, u32, u32)>(), 0..10),
    ) {
        let transaction_id = TransactionId(tid);
        let family = if v6 { PeerFamily::V6 } else { PeerFamily::V4 };
        let responses = [
            Response::Connect { transaction_id, connection_id: ConnectionId(cid) },
            Response::Announce { transaction_id, response: AnnounceResponse {
                interval_s, min_interval_s: None, complete: Some(seeders),
                incomplete: Some(leechers), warning_message: None,
                peers: if v6 { peers6 } else { peers },
            }},
            Response::Scrape { transaction_id, stats: stats.into_iter().map(|(c, d, i)| {
                ScrapeStats { complete: c, downloaded: d, incomplete: i }
            }).collect() },
            Response::Error { transaction_id, message },
        ];
        for resp in responses {
            let mut buf = Vec::new();
            resp.encode(family, &mut buf);
            prop_assert_eq!(Response::decode(&buf, family).unwrap(), resp);
        }
    }

    #[test]
    fn compact_announce_answer_is_the_encoded_one(
        tid in any::<u32>(), v6 in any::<bool>(),
        interval_s in any::<u32>(), seeders in any::<u32>(), leechers in any::<u32>(),
        peers in proptest::collection::vec(peer(false), 0..10),
        peers6 in proptest::collection::vec(peer(true), 0..10),
    ) {
        let transaction_id = TransactionId(tid);
        let family = if v6 { PeerFamily::V6 } else { PeerFamily::V4 };
        let mut compact = Vec::new();
        for p in if v6 { &peers6 } else { &peers } {
            match p.ip() {
                IpAddr::V4(ip) => compact.extend_from_slice(&ip.octets()),
                IpAddr::V6(ip) => compact.extend_from_slice(&ip.octets()),
            }
            compact.extend_from_slice(&p.port().to_be_bytes());
        }
        let mut direct = Vec::new();
        Response::encode_announce_compact(
            transaction_id, interval_s, leechers, seeders, &compact, &mut direct,
        );
        // Both families' peers given: encode keeps the answer's family only.
        let mut all = peers.clone();
        all.extend_from_slice(&peers6);
        let resp = Response::Announce { transaction_id, response: AnnounceResponse {
            interval_s, min_interval_s: None, complete: Some(seeders),
            incomplete: Some(leechers), warning_message: None, peers: all,
        }};
        let mut encoded = Vec::new();
        resp.encode(family, &mut encoded);
        prop_assert_eq!(direct, encoded);
    }

    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = AnnounceResponse::from_bencode(&bytes);
        let _ = ScrapeResponse::from_bencode(&bytes);
        let _ = Announce::from_query(&bytes);
        let _ = parse_scrape_query(&bytes);
        let _ = Request::decode(&bytes);
        let _ = Response::decode(&bytes, PeerFamily::V4);
        let _ = Response::decode(&bytes, PeerFamily::V6);
    }
}

#[test]
fn parses_opentracker_style_response() {
    let body = b"d8:completei1e10:downloadedi0e10:incompletei2e8:intervali1800e\
12:min intervali900e5:peers12:\x7f\x00\x00\x01\x1a\xe1\x0a\x00\x00\x02\x00\x50e";
    let resp = AnnounceResponse::from_bencode(body).unwrap();
    assert_eq!(resp.interval_s, 1800);
    assert_eq!(resp.min_interval_s, Some(900));
    assert_eq!(resp.complete, Some(1));
    assert_eq!(
        resp.peers,
        vec![
            "127.0.0.1:6881".parse().unwrap(),
            "10.0.0.2:80".parse().unwrap()
        ]
    );
}

#[test]
fn failure_reason_is_an_error() {
    let body = http::failure_to_bencode("not whitelisted");
    assert_eq!(
        AnnounceResponse::from_bencode(&body),
        Err(TrackerError::Failure("not whitelisted".into()))
    );
}

#[test]
fn rejects_garbage_and_oversized() {
    assert!(matches!(
        AnnounceResponse::from_bencode(b"<html>502</html>"),
        Err(TrackerError::Bencode(_))
    ));
    assert!(matches!(
        AnnounceResponse::from_bencode(b"d5:peers5:abcdee"),
        Err(TrackerError::BadField { field: "peers", .. })
    ));
    assert_eq!(
        AnnounceResponse::from_bencode(b"d5:peers0:e"),
        Err(TrackerError::MissingField("interval"))
    );
    let big = vec![b'x'; MAX_HTTP_RESPONSE_BYTES + 1];
    assert!(matches!(
        AnnounceResponse::from_bencode(&big),
        Err(TrackerError::TooLong { .. })
    ));
    assert!(Announce::from_query(b"info_hash=%zz").is_err());
    assert_eq!(
        Announce::from_query(b"port=1"),
        Err(TrackerError::MissingField("info_hash"))
    );
}

#[test]
fn dict_model_peers_skip_host_names() {
    let body = b"d8:intervali60e5:peersld2:ip9:127.0.0.14:porti7eed2:ip4:host4:porti8eeee";
    let resp = AnnounceResponse::from_bencode(body).unwrap();
    assert_eq!(resp.peers, vec!["127.0.0.1:7".parse().unwrap()]);
}

#[test]
fn too_many_peers_are_capped() {
    let resp = AnnounceResponse {
        interval_s: 1,
        peers: (0..MAX_PEERS as u32 + 10)
            .map(|i| SocketAddr::new(Ipv4Addr::from(i).into(), 1))
            .collect(),
        ..Default::default()
    };
    let back = AnnounceResponse::from_bencode(&resp.to_bencode(true)).unwrap();
    assert_eq!(back.peers.len(), MAX_PEERS);
}

#[test]
fn scrape_url_follows_bep48_convention() {
    assert_eq!(
        scrape_url("http://t:1/announce").as_deref(),
        Some("http://t:1/scrape")
    );
    assert_eq!(
        scrape_url("http://t/x/announce.php?k=1").as_deref(),
        Some("http://t/x/scrape.php?k=1")
    );
    assert_eq!(scrape_url("http://t/a"), None);
}

#[test]
fn udp_connect_needs_protocol_id() {
    let mut buf = Vec::new();
    Request::Connect {
        transaction_id: TransactionId(7),
    }
    .encode(&mut buf);
    assert_eq!(buf.len(), 16);
    buf[0] ^= 1;
    assert!(Request::decode(&buf).is_err());
}
