//! Unit tests of the runtime's bookkeeping (the I/O paths are exercised by
//! `engine/tests/rt.rs`).

use super::conn::{split_user_data, user_data, Slab, WORKER_SLOT};
use super::*;

#[test]
fn user_data_round_trips() {
    for (slot, gen, kind) in [(0, 0, 1), (7, u32::MAX, 9), (WORKER_SLOT, 3, 2)] {
        assert_eq!(
            split_user_data(user_data(slot, gen, kind)),
            (slot, gen, kind)
        );
    }
}

#[test]
fn slab_generations_reject_stale_ids() {
    let mut slab = Slab::default();
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let a = slab.insert(conn::Conn::new(sock, peer, conn::ConnState::Open, 16));
    assert!(slab.remove(a).is_some());
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let b = slab.insert(conn::Conn::new(sock, peer, conn::ConnState::Open, 16));
    assert_eq!(a.slot, b.slot);
    assert!(slab.get_mut(a).is_none());
    assert!(slab.get_mut(b).is_some());
    assert_eq!(slab.live, 1);
}
