use super::*;

fn t(ms: u64) -> Time {
    Time::ZERO + Duration::from_millis(ms)
}

fn a(i: u16) -> SocketAddr {
    SocketAddr::from(([198, 18, 0, 1], 1000 + i))
}

fn dialer(max_peers: usize) -> Dialer {
    Dialer::new(
        DialConfig {
            max_peers,
            ..DialConfig::default()
        },
        BookConfig::default(),
    )
}

/// Drains `poll_dial`, the driver opening each dial (its count grows by one each).
fn drain(d: &mut Dialer, now: Time, open: &mut usize) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    while let Some((id, addr)) = d.poll_dial(now, *open) {
        d.on_dialled(id);
        *open += 1;
        out.push(addr);
    }
    out
}

#[test]
fn discovered_addresses_wait_at_the_bound_configured_ones_do_not() {
    let mut d = dialer(3);
    let mut open = 1; // one inbound connection
    for i in 0..5 {
        assert!(matches!(
            d.handle_addr(a(i), Source::Tracker, false),
            Admission::New(_)
        ));
    }
    assert_eq!(drain(&mut d, t(0), &mut open), vec![a(0), a(1)]);
    assert_eq!(open, 3);
    assert_eq!(d.stats().deferred, 3);
    // The deferred ones are due a full recheck later, not before.
    let recheck = t(0) + DialConfig::default().full_recheck;
    assert_eq!(d.poll_timeout(), Some(recheck));
    d.handle_timeout(t(1));
    assert!(drain(&mut d, t(1), &mut open).is_empty());
    // A configured address is dialled above the bound.
    d.handle_addr(a(100), Source::Configured, false);
    assert_eq!(drain(&mut d, t(2), &mut open), vec![a(100)]);
    // At the recheck with one connection gone, one deferred entry goes out and the
    // others wait again.
    open -= 2;
    d.handle_timeout(recheck);
    assert_eq!(drain(&mut d, recheck, &mut open), vec![a(2)]);
    assert_eq!(
        d.poll_timeout(),
        Some(recheck + DialConfig::default().full_recheck)
    );
    assert!(d.poll_dial(recheck, 0).is_none(), "queue empty after None");
}

#[test]
fn failed_dials_back_off_then_retire() {
    let book = BookConfig::default();
    let mut d = dialer(60);
    d.handle_addr(a(1), Source::Tracker, false);
    let Some((id, _)) = d.poll_dial(t(0), 0) else {
        panic!("not dialled");
    };
    // Refused max_failures times: the waits double, then the entry is retired.
    let mut now = t(0);
    let mut waits = Vec::new();
    for _ in 0..book.max_failures {
        d.on_closed(now, id, true);
        let Some(at) = d.poll_timeout() else { break };
        waits.push(at.saturating_duration_since(now));
        assert!(d.poll_dial(now, 0).is_none(), "not before its back-off");
        now = at;
        d.handle_timeout(now);
        assert_eq!(d.poll_dial(now, 0).map(|(_, addr)| addr), Some(a(1)));
        assert!(d.poll_dial(now, 0).is_none());
    }
    assert_eq!(waits.len() as u32, book.max_failures - 1);
    assert!(waits.windows(2).all(|w| w[1] == w[0] * 2), "{waits:?}");
    assert!(waits[0] >= book.backoff_min);
    assert!(d.entry(id).is_some_and(|e| e.retired_at.is_some()));
    assert_eq!(d.stats().failures, u64::from(book.max_failures));
    let later = now + Duration::from_secs(60);
    d.handle_timeout(later);
    assert!(d.poll_dial(later, 0).is_none(), "retired: never dialled");
}

#[test]
fn a_connected_listen_address_or_our_own_is_not_admitted() {
    let mut d = dialer(60);
    assert_eq!(
        d.handle_addr(a(1), Source::Pex(a(9)), true),
        Admission::Known
    );
    assert!(d.book().is_empty());
    assert!(d.poll_dial(t(0), 0).is_none());
    // A configured one is, and one already in the book stays known.
    assert!(matches!(
        d.handle_addr(a(1), Source::Configured, true),
        Admission::New(_)
    ));
    assert_eq!(d.handle_addr(a(1), Source::Tracker, true), Admission::Known);
}

#[test]
fn an_evicted_queued_entry_is_skipped() {
    let mut d = Dialer::new(
        DialConfig::default(),
        BookConfig {
            capacity: 1,
            max_pex: 1,
            max_per_pex_source: 1,
            ..BookConfig::default()
        },
    );
    d.handle_addr(a(1), Source::Pex(a(9)), false);
    // A tracker address evicts the queued PEX entry and takes its slot.
    assert!(matches!(
        d.handle_addr(a(2), Source::Tracker, false),
        Admission::New(_)
    ));
    let mut open = 0;
    assert_eq!(drain(&mut d, t(0), &mut open), vec![a(2)]);
}

#[test]
fn duplicates_resolve_alike_at_both_ends() {
    let small = PeerId([1; 20]);
    let big = PeerId([2; 20]);
    // Two dials crossing: each end sees its own dial as new or existing.
    for new_is_ours in [true, false] {
        // At `small`: its dial is outbound, `big`'s inbound.
        let at_small = duplicate(small, big, new_is_ours, !new_is_ours);
        // At `big`: the same two connections, directions swapped.
        let at_big = duplicate(big, small, !new_is_ours, new_is_ours);
        // Both keep the one `small` dialled.
        let small_kept_its_own = (at_small == Keep::New) == new_is_ours;
        let big_kept_smalls = (at_big == Keep::New) == new_is_ours;
        assert!(small_kept_its_own && big_kept_smalls, "{new_is_ours}");
    }
    // Same direction twice: the existing stays.
    assert_eq!(duplicate(small, big, true, true), Keep::Existing);
    assert_eq!(duplicate(small, big, false, false), Keep::Existing);
}

#[test]
fn a_leecher_asks_early_below_a_quarter_of_its_bound_a_seeder_never() {
    // 60 peers: a quarter is 15.
    assert!(wants_more_peers(0, 60, false));
    assert!(wants_more_peers(14, 60, false));
    assert!(!wants_more_peers(15, 60, false));
    assert!(!wants_more_peers(0, 60, true));
    // A bound under 4 still asks at zero connections only.
    assert!(wants_more_peers(0, 1, false));
    assert!(!wants_more_peers(1, 1, false));
    assert!(!wants_more_peers(1, 3, false));
    // A zero bound counts as one.
    assert!(wants_more_peers(0, 0, false));
}
