//! The client against a scripted fake tracker: no sockets, no clock.

use std::time::Duration;

use super::*;
use crate::wire::tracker::udp::{self, ConnectionId};
use crate::wire::tracker::AnnounceResponse;

const HASH: InfoHash = InfoHash([3; 20]);

fn secs(s: u64) -> Time {
    Time::ZERO + Duration::from_secs(s)
}

fn client(tiers: &[&[&str]], seed: u64) -> TrackerClient {
    let tiers: Vec<Vec<String>> = tiers
        .iter()
        .map(|t| t.iter().map(|u| u.to_string()).collect())
        .collect();
    TrackerClient::new(
        ClientConfig::default(),
        &tiers,
        HASH,
        PeerId([1; 20]),
        6881,
        seed,
    )
}

fn http_ok(interval_s: u32, min_interval_s: Option<u32>, peers: &[&str]) -> Vec<u8> {
    AnnounceResponse {
        interval_s,
        min_interval_s,
        complete: Some(1),
        incomplete: Some(2),
        warning_message: None,
        peers: peers.iter().map(|p| p.parse().unwrap()).collect(),
    }
    .to_bencode(true)
}

fn expect_http(c: &mut TrackerClient) -> (TrackerId, String) {
    match c.poll_request() {
        Some((id, Request::Http { url })) => (id, url),
        other => panic!("expected an HTTP request, got {other:?}"),
    }
}

fn expect_udp(c: &mut TrackerClient) -> (TrackerId, udp::Request, Vec<u8>) {
    match c.poll_request() {
        Some((id, Request::Udp { payload, .. })) => {
            (id, udp::Request::decode(&payload).unwrap(), payload)
        }
        other => panic!("expected a UDP request, got {other:?}"),
    }
}

#[test]
fn http_announce_started_then_regular_after_interval() {
    let mut c = client(&[&["http://t/announce"]], 1);
    c.handle_timeout(Time::ZERO);
    let (id, url) = expect_http(&mut c);
    assert!(url.starts_with("http://t/announce?info_hash=%03%03"));
    assert!(
        url.contains("event=started") && url.contains("numwant=50"),
        "{url}"
    );
    assert!(c.poll_request().is_none());
    c.handle_response(secs(1), id, &http_ok(30, None, &["10.0.0.1:1", "[::1]:2"]));
    assert_eq!(c.poll_peers().len(), 2);
    assert_eq!(c.swarm_counts(), Some((1, 2)));
    assert_eq!(c.poll_timeout(), secs(31));
    c.handle_timeout(secs(30));
    assert!(c.poll_request().is_none());
    c.handle_timeout(secs(31));
    let (_, url) = expect_http(&mut c);
    assert!(!url.contains("event="), "{url}");
}

#[test]
fn tiers_fail_over_and_a_responder_moves_to_the_front() {
    for seed in 0..8 {
        let mut c = client(
            &[
                &["http://a/announce", "http://b/announce"],
                &["http://c/announce"],
            ],
            seed,
        );
        c.handle_timeout(Time::ZERO);
        let (first, url1) = expect_http(&mut c);
        c.handle_error(Time::ZERO, first, "connection refused");
        let (second, url2) = expect_http(&mut c);
        assert_ne!(url1.get(..8), url2.get(..8), "the other tracker of tier 1");
        assert!(url1.starts_with("http://a") || url1.starts_with("http://b"));
        c.handle_response(Time::ZERO, second, b"<html>bad gateway</html>");
        let (third, url3) = expect_http(&mut c);
        assert!(url3.starts_with("http://c"));
        assert!(c.poll_warning().unwrap().contains("connection refused"));
        assert_eq!((c.announces_ok(), c.announces_failed()), (0, 2));
        c.handle_response(secs(1), third, &http_ok(10, None, &[]));
        assert_eq!((c.announces_ok(), c.announces_failed()), (1, 2));
        // Next round starts again at tier 1; the tracker that failed first stays first.
        c.handle_timeout(secs(11));
        let (id, url) = expect_http(&mut c);
        assert_eq!(id, first);
        // It fails, the second answers and moves to the front of tier 1.
        c.handle_error(secs(11), id, "timeout");
        let (id2, _) = expect_http(&mut c);
        assert_eq!(id2, second);
        c.handle_response(secs(11), id2, &http_ok(10, None, &[]));
        c.handle_timeout(secs(21));
        assert_eq!(expect_http(&mut c).0, second, "{url}");
    }
}

#[test]
fn udp_connect_retransmit_backoff_and_connection_id_reuse() {
    let mut c = client(&[&["udp://127.0.0.1:9/announce"]], 2);
    c.handle_timeout(Time::ZERO);
    let (id, req, payload) = expect_udp(&mut c);
    let udp::Request::Connect { transaction_id } = req else {
        panic!("{req:?}")
    };
    assert_eq!(c.poll_timeout(), secs(15));
    c.handle_timeout(secs(15));
    assert_eq!(expect_udp(&mut c).2, payload, "retransmitted unchanged");
    assert_eq!(c.poll_timeout(), secs(45), "15 * 2^1 s later");
    // A stale transaction id is ignored.
    let mut stale = Vec::new();
    udp::Response::Connect {
        transaction_id: udp::TransactionId(transaction_id.0 ^ 1),
        connection_id: ConnectionId(1),
    }
    .encode(udp::PeerFamily::V4, &mut stale);
    c.handle_response(secs(20), id, &stale);
    assert!(c.poll_request().is_none());
    let mut resp = Vec::new();
    udp::Response::Connect {
        transaction_id,
        connection_id: ConnectionId(77),
    }
    .encode(udp::PeerFamily::V4, &mut resp);
    c.handle_response(secs(20), id, &resp);
    let (_, req, _) = expect_udp(&mut c);
    let udp::Request::Announce {
        connection_id,
        transaction_id,
        announce,
    } = req
    else {
        panic!()
    };
    assert_eq!(
        (connection_id, announce.event),
        (ConnectionId(77), Event::Started)
    );
    let mut resp = Vec::new();
    udp::Response::Announce {
        transaction_id,
        response: AnnounceResponse {
            interval_s: 20,
            complete: Some(0),
            incomplete: Some(1),
            peers: vec!["127.0.0.1:5".parse().unwrap()],
            ..Default::default()
        },
    }
    .encode(udp::PeerFamily::V4, &mut resp);
    c.handle_response(secs(21), id, &resp);
    assert_eq!(c.poll_peers(), vec!["127.0.0.1:5".parse().unwrap()]);
    // 20 s later the connection id (received at 20 s) is still valid: no connect.
    c.handle_timeout(secs(41));
    assert!(matches!(
        expect_udp(&mut c).1,
        udp::Request::Announce { .. }
    ));
}

#[test]
fn dead_udp_tracker_gives_up_after_retries_and_backs_off() {
    let mut c = client(&[&["udp://127.0.0.1:9"]], 3);
    c.handle_timeout(Time::ZERO);
    let mut now = Time::ZERO;
    for expected_wait in [15, 30, 60] {
        expect_udp(&mut c);
        assert_eq!(c.poll_timeout(), now + Duration::from_secs(expected_wait));
        now = c.poll_timeout();
        c.handle_timeout(now);
    }
    assert!(c.poll_request().is_none());
    assert!(c.poll_warning().unwrap().contains("timed out"));
    assert!(c.poll_warning().unwrap().contains("all trackers failed"));
    assert_eq!(c.poll_timeout(), now + Duration::from_secs(5));
}

#[test]
fn failed_rounds_back_off_exponentially_with_a_cap() {
    let mut c = client(&[&["http://t/announce"]], 4);
    let mut now = Time::ZERO;
    let mut waits = Vec::new();
    for _ in 0..10 {
        c.handle_timeout(now);
        let (id, _) = expect_http(&mut c);
        c.handle_response(
            now,
            id,
            &crate::wire::tracker::http::failure_to_bencode("nope"),
        );
        let next = c.poll_timeout();
        waits.push(next.saturating_duration_since(now).as_secs());
        now = next;
    }
    assert_eq!(waits, [5, 10, 20, 40, 80, 160, 320, 640, 1280, 1800]);
    assert!(c.poll_warning().unwrap().contains("tracker failure: nope"));
}

#[test]
fn lying_intervals_are_clamped_and_min_interval_obeyed() {
    let mut c = client(&[&["http://t/announce"]], 5);
    c.handle_timeout(Time::ZERO);
    let (id, _) = expect_http(&mut c);
    c.handle_response(Time::ZERO, id, &http_ok(0, None, &[]));
    assert_eq!(
        c.poll_timeout(),
        secs(5),
        "interval 0 clamped to the 5 s floor"
    );
    c.handle_timeout(secs(5));
    let (id, _) = expect_http(&mut c);
    c.handle_response(secs(5), id, &http_ok(1000, Some(100), &[]));
    assert_eq!(c.poll_timeout(), secs(1005));
    c.handle_want_peers(secs(10));
    assert_eq!(c.poll_timeout(), secs(105), "not before min interval");
}

#[test]
fn want_peers_does_not_cut_the_failure_back_off() {
    let mut c = client(&[&["http://t/announce"]], 9);
    c.handle_timeout(Time::ZERO);
    let (id, _) = expect_http(&mut c);
    c.handle_error(Time::ZERO, id, "refused");
    let backoff = c.poll_timeout();
    assert!(backoff > Time::ZERO);
    c.handle_want_peers(secs(1));
    assert_eq!(c.poll_timeout(), backoff);
}

#[test]
fn completed_and_stopped_go_out_at_once() {
    let mut c = client(&[&["http://t/announce"]], 6);
    c.set_progress(0, 0, 100);
    c.handle_timeout(Time::ZERO);
    let (id, url) = expect_http(&mut c);
    assert!(url.contains("left=100"));
    c.handle_response(Time::ZERO, id, &http_ok(600, Some(300), &[]));
    c.set_progress(5, 100, 0);
    c.handle_completed(secs(1));
    assert_eq!(c.poll_timeout(), secs(1));
    c.handle_timeout(secs(1));
    let (id, url) = expect_http(&mut c);
    assert!(
        url.contains("event=completed") && url.contains("left=0"),
        "{url}"
    );
    c.handle_response(secs(1), id, &http_ok(600, Some(300), &[]));
    c.handle_stopped(secs(2));
    c.handle_timeout(secs(2));
    let (id, url) = expect_http(&mut c);
    assert!(
        url.contains("event=stopped") && url.contains("numwant=0"),
        "{url}"
    );
    c.handle_response(secs(2), id, &http_ok(600, None, &[]));
    assert!(c.is_done());
    assert_eq!(c.poll_timeout(), Time::MAX);
}

#[test]
fn unsupported_urls_are_skipped_with_a_warning() {
    let mut c = client(&[&["wss://x/announce", "udp://nohostport"]], 7);
    assert!(c.is_done());
    assert!(c.poll_warning().unwrap().contains("wss://x"));
}
