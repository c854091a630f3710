use super::*;

fn t(ms: u64) -> Time {
    Time::ZERO + Duration::from_millis(ms)
}

fn a(i: u32) -> SocketAddr {
    let [_, b, c, d] = i.to_be_bytes();
    SocketAddr::from(([127, b, c, d.max(1)], 1000 + (i % 50_000) as u16))
}

fn small() -> BookConfig {
    BookConfig {
        capacity: 10,
        max_pex: 5,
        max_per_pex_source: 3,
        ..BookConfig::default()
    }
}

fn new_id(x: Admission) -> EntryId {
    match x {
        Admission::New(id) => id,
        other => panic!("expected New, got {other:?}"),
    }
}

#[test]
fn pex_is_capped_per_source_and_in_total() {
    let mut b = AddressBook::new(small());
    let (p1, p2, p3) = (a(900), a(901), a(902));
    let mut admitted = 0;
    for i in 0..100 {
        if matches!(b.admit(a(i), Source::Pex(p1)), Admission::New(_)) {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 3, "per-source cap");
    for i in 100..102 {
        new_id(b.admit(a(i), Source::Pex(p2)));
    }
    assert_eq!(
        b.admit(a(102), Source::Pex(p2)),
        Admission::Refused,
        "total cap"
    );
    assert_eq!(
        b.admit(a(200), Source::Pex(p3)),
        Admission::Refused,
        "total cap"
    );
    assert_eq!(b.pex_len(), 5);
    assert_eq!(b.admit(a(0), Source::Tracker), Admission::Known);
}

#[test]
fn a_tracker_address_always_gets_in_over_pex() {
    let mut b = AddressBook::new(BookConfig {
        max_pex: 10,
        max_per_pex_source: 10,
        ..small()
    });
    for i in 0..10 {
        new_id(b.admit(a(i), Source::Pex(a(900))));
    }
    assert_eq!(b.len(), 10);
    assert_eq!(b.admit(a(500), Source::Pex(a(901))), Admission::Refused);
    let seeder = a(1000);
    let id = new_id(b.admit(seeder, Source::Tracker));
    assert_eq!(b.get(id).map(|e| e.addr), Some(seeder));
    assert_eq!((b.len(), b.pex_len()), (10, 9), "one PEX entry evicted");
    // A connected PEX entry is never evicted; once all are, trackers are refused.
    let mut b = AddressBook::new(BookConfig {
        max_pex: 10,
        max_per_pex_source: 10,
        ..small()
    });
    for i in 0..10 {
        let id = new_id(b.admit(a(i), Source::Pex(a(900))));
        b.on_dialled(id);
    }
    assert_eq!(b.admit(seeder, Source::Tracker), Admission::Refused);
    // Configured addresses always get in.
    assert!(matches!(
        b.admit(seeder, Source::Configured),
        Admission::New(_)
    ));
}

#[test]
fn failed_addresses_retire_then_age_out() {
    let c = small();
    let mut b = AddressBook::new(c);
    let id = new_id(b.admit(a(1), Source::Pex(a(900))));
    let mut now = t(0);
    for _ in 0..c.max_failures {
        b.on_dialled(id);
        b.on_closed(now, id, true);
        if let Some(at) = b.get(id).and_then(|e| e.retry_at) {
            now = at;
            assert_eq!(b.due(now), vec![id]);
        }
    }
    let e = b.get(id).unwrap();
    assert_eq!(e.retired_at, Some(now));
    assert!(
        b.due(t(1_000_000)).is_empty(),
        "a retired entry is never due"
    );
    b.handle_timeout(now + (c.retired_ttl - Duration::from_millis(1)));
    assert_eq!(b.len(), 1);
    b.handle_timeout(now + c.retired_ttl);
    assert!(b.is_empty(), "aged out");
    assert_eq!(b.pex_len(), 0);
    // Its source may send more again, and the address itself comes back fresh.
    assert!(matches!(b.admit(a(1), Source::Tracker), Admission::New(_)));
}

#[test]
fn retired_entries_make_room_before_the_ttl_but_connected_ones_stay() {
    let mut b = AddressBook::new(small());
    let pex = new_id(b.admit(a(1), Source::Pex(a(900))));
    b.retire(t(5), pex);
    let live = new_id(b.admit(a(2), Source::Tracker));
    b.on_dialled(live);
    b.retire(t(0), live);
    for i in 3..11 {
        new_id(b.admit(a(i), Source::Tracker));
    }
    assert_eq!(b.len(), 10);
    // The retired, unconnected PEX entry goes, not the connected retired one.
    new_id(b.admit(a(20), Source::Dht));
    assert_eq!(b.find(a(1)), None);
    assert_eq!(b.find(a(2)), Some(live));
    b.handle_timeout(t(1_000_000));
    assert_eq!(b.find(a(2)), Some(live), "connected: kept");
    b.on_closed(t(1_000_000), live, true);
    b.handle_timeout(t(1_000_000) + small().retired_ttl);
    assert_eq!(b.find(a(2)), None);
}

#[test]
fn due_dials_come_out_preferred_sources_first() {
    let mut b = AddressBook::new(BookConfig::default());
    let pex = new_id(b.admit(a(1), Source::Pex(a(900))));
    let dht = new_id(b.admit(a(2), Source::Dht));
    let tracker = new_id(b.admit(a(3), Source::Tracker));
    let conf = new_id(b.admit(a(4), Source::Configured));
    for id in [pex, dht, tracker, conf] {
        b.defer(id, t(10));
    }
    b.defer(pex, t(1));
    assert_eq!(b.poll_timeout(), Some(t(1)));
    assert_eq!(b.due(t(10)), vec![conf, tracker, dht, pex]);
    assert_eq!(b.poll_timeout(), None);
}

#[test]
fn configured_revives_and_is_never_retired_by_failures() {
    let mut b = AddressBook::new(small());
    let id = new_id(b.admit(a(1), Source::Pex(a(900))));
    b.retire(t(0), id);
    assert_eq!(b.admit(a(1), Source::Configured), Admission::Revived(id));
    assert_eq!(b.pex_len(), 0);
    for i in 0..20 {
        b.on_closed(t(i), id, true);
    }
    let e = b.get(id).unwrap();
    assert_eq!(e.retired_at, None);
    assert_eq!(e.retry_at, Some(t(19) + small().backoff_max));
    b.on_closed(t(20), id, false);
    assert_eq!(b.get(id).unwrap().retry_at, None, "complete: no redial");
}

#[test]
fn slots_are_reused_and_counts_hold_under_churn() {
    let c = BookConfig {
        capacity: 50,
        max_pex: 25,
        max_per_pex_source: 10,
        retired_ttl: Duration::from_secs(1),
        ..BookConfig::default()
    };
    let mut b = AddressBook::new(c);
    let mut now = t(0);
    for round in 0..200u32 {
        for j in 0..20 {
            let from = a(10_000 + j % 4);
            if let Admission::New(id) = b.admit(a(round * 20 + j), Source::Pex(from)) {
                b.retire(now, id);
            }
        }
        let _ = b.admit(a(900_000 + round), Source::Tracker);
        now += Duration::from_millis(300);
        b.handle_timeout(now);
        assert!(b.len() <= c.capacity);
        assert!(b.pex_len() <= c.max_pex);
    }
    assert!(b.slots.len() <= c.capacity, "slots reused");
}
