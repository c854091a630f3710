//! Fuzz the tracker codecs (`p2pe::wire::tracker`): arbitrary bytes must never
//! panic in any decoder, and whatever decodes must re-encode to bytes that
//! decode to the same value (HTTP announce / scrape responses, BEP 15 packets,
//! announce query strings).
#![no_main]
use libfuzzer_sys::fuzz_target;
use p2pe::wire::tracker::query::parse_scrape_query;
use p2pe::wire::tracker::udp::{PeerFamily, Request, Response};
use p2pe::wire::tracker::{Announce, AnnounceResponse, ScrapeResponse};

fuzz_target!(|data: &[u8]| {
    if let Ok(resp) = AnnounceResponse::from_bencode(data) {
        let v6_free = resp.peers.iter().all(|p| p.is_ipv4());
        let again = AnnounceResponse::from_bencode(&resp.to_bencode(true)).expect("re-encoded");
        // Compact encoding groups IPv4 before IPv6; compare as sets when mixed.
        if v6_free {
            assert_eq!(again, resp);
        } else {
            assert_eq!(again.peers.len(), resp.peers.len());
        }
    }
    if let Ok(resp) = ScrapeResponse::from_bencode(data) {
        assert_eq!(ScrapeResponse::from_bencode(&resp.to_bencode()).expect("re-encoded"), resp);
    }
    if let Ok((announce, _)) = Announce::from_query(data) {
        let (again, compact) = Announce::from_query(announce.to_query().as_bytes()).expect("re-encoded");
        assert!(compact);
        assert_eq!(again, announce);
    }
    let _ = parse_scrape_query(data);
    if let Ok(req) = Request::decode(data) {
        let mut out = Vec::new();
        req.encode(&mut out);
        assert_eq!(Request::decode(&out).expect("re-encoded"), req);
    }
    for family in [PeerFamily::V4, PeerFamily::V6] {
        if let Ok(resp) = Response::decode(data, family) {
            let mut out = Vec::new();
            resp.encode(family, &mut out);
            assert_eq!(Response::decode(&out, family).expect("re-encoded"), resp);
        }
    }
});
