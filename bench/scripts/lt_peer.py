#!/usr/bin/python3
"""One libtorrent peer (seeder or leecher) for `p2pe bench swarm` and `p2pe bench linerate`.

Run with /usr/bin/python3 (Debian's python3-libtorrent is importable only there).

Leecher: sets up the session, prints {"event": "ready"}, waits for EOF on stdin
(the harness's start barrier), adds the torrent, and on completion prints
{"event": "complete", "elapsed_s", "downloaded_bytes", "uploaded_bytes", "cpu_s",
"sources", "uploaded_to"} and exits (with --stay: keeps seeding until
SIGTERM/SIGINT). Seeder: adds the torrent (data already in --save), prints
{"event": "ready"} once the tracker answered (at once if the torrent names
no tracker), serves until SIGTERM/SIGINT, then prints {"event": "stopped", "uploaded_bytes", "cpu_s", "uploaded_to"}.

Per peer, with the field names of `p2pe get --json` (keyed by the peer's
"IP:PORT" as libtorrent sees the connection: for an inbound peer that is its
ephemeral source port, so the harness groups by IP):
- "sources": [{"addr", "peer_id", "downloaded_bytes", "pieces"}] and
  "uploaded_to": [{"addr", "peer_id", "uploaded_bytes"}] from peer_info's
  total_download / total_upload (payload, duplicates included as in p2pe),
  polled every PEER_POLL_S and once more at the end; counters of a reconnect
  under the same address and peer id are added. A connection that closed since
  the last poll takes at most PEER_POLL_S of its bytes with it, so the sums can
  fall short of the totals by that much per closed connection; to keep that
  rare, seed-to-seed connections are not closed (close_redundant_connections
  off: they are idle, neither side is interested). "pieces" is
  null: per-block attribution (block_finished_alert) costs ~25% of a
  leecher's CPU in Python, which would distort libtorrent's CPU figure.

A leecher also dials each --peer IP:PORT (torrents without trackers).

Settings: announce to the torrent's tracker only (no DHT, LSD, UPnP, NAT-PMP),
TCP only (no uTP), several connections per IP allowed, no rate limits, local
peers not rate-limited, seed-to-seed connections kept.
"""
import argparse
import json
import resource
import signal
import sys
import time

import libtorrent as lt

# How often the leecher polls its status; the harness timestamps the
# completion line itself, so this only bounds reporting lag.
POLL_S = 0.02
# How often peer_info is polled for the per-peer totals: a connection that
# closes takes the bytes since the last poll with it (libtorrent drops a
# connection between two seeds as soon as a leecher completes).
PEER_POLL_S = 0.05


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def cpu_s():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def peer_id_text(pid):
    """A peer id as p2pe prints it: text if printable ASCII, else hex."""
    raw = pid.to_bytes() if hasattr(pid, "to_bytes") else bytes(pid)
    if raw and all(0x20 <= b < 0x7F for b in raw):
        return raw.decode("ascii")
    return raw.hex()


def addr_text(endpoint):
    ip, port = endpoint[0], endpoint[1]
    return ("[%s]:%d" if ":" in ip else "%s:%d") % (ip, port)


class Ledger:
    """Per-peer payload totals from peer_info (see the module docstring)."""

    def __init__(self):
        self.ids = {}  # addr -> peer id text
        self.banked = {}  # (addr, pid) -> (down, up) of earlier connections
        self.last = {}  # (addr, pid) -> (down, up) at the last poll
        self.next_poll = 0.0

    def poll(self, h, force=False):
        now = time.monotonic()
        if not force and now < self.next_poll:
            return
        self.next_poll = now + PEER_POLL_S
        for pi in h.get_peer_info():
            addr = addr_text(pi.ip)
            pid = peer_id_text(pi.pid)
            self.ids[addr] = pid
            key = (addr, pid)
            cur = (pi.total_download, pi.total_upload)
            last = self.last.get(key, (0, 0))
            if cur[0] < last[0] or cur[1] < last[1]:  # a new connection, same key
                b = self.banked.get(key, (0, 0))
                self.banked[key] = (b[0] + last[0], b[1] + last[1])
            self.last[key] = cur

    def totals(self, i):
        per = {}
        for key, last in self.last.items():
            banked = self.banked.get(key, (0, 0))
            per[key[0]] = per.get(key[0], 0) + last[i] + banked[i]
        return sorted((a, n) for a, n in per.items() if n > 0)

    def sources(self):
        return [{"addr": a, "peer_id": self.ids.get(a), "downloaded_bytes": n, "pieces": None}
                for a, n in self.totals(0)]

    def uploaded_to(self):
        return [{"addr": a, "peer_id": self.ids.get(a), "uploaded_bytes": n}
                for a, n in self.totals(1)]


def make_session(listen):
    settings = {
        "listen_interfaces": listen,
        "outgoing_interfaces": "",
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_incoming_utp": False,
        "enable_outgoing_utp": False,
        "allow_multiple_connections_per_ip": True,
        "upload_rate_limit": 0,
        "download_rate_limit": 0,
        "ignore_limits_on_local_network": True,
        "rate_limit_ip_overhead": False,
        "announce_to_all_trackers": True,
        # Keep seed-to-seed connections (idle: neither side is interested) so
        # the per-peer counters of the origin and of completed leechers are
        # still there at the final poll (see the module docstring).
        "close_redundant_connections": False,
        "alert_mask": lt.alert.category_t.status_notification
        | lt.alert.category_t.error_notification
        | lt.alert.category_t.tracker_notification,
    }
    return lt.session(settings)


def add(ses, torrent, save, seed_mode):
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(torrent)
    params.save_path = save
    if seed_mode:
        # The data is known good (the harness wrote it): skip the hash check.
        params.flags |= lt.torrent_flags.seed_mode
    return ses.add_torrent(params)


def wait_tracker(ses, deadline_s):
    """Waits (bounded) for the first tracker reply."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        ses.wait_for_alert(100)
        for a in ses.pop_alerts():
            if isinstance(a, lt.tracker_reply_alert):
                return True
            if isinstance(a, lt.tracker_error_alert):
                print("tracker error: %s" % a.message(), file=sys.stderr)
    return False


def connect_peers(h, peers):
    """Dials each --peer IP:PORT (a torrent without trackers, e.g. the
    whole-process pairs of `p2pe bench linerate`)."""
    for p in peers:
        ip, port = p.rsplit(":", 1)
        h.connect_peer((ip, int(port)))


def run_seeder(args):
    ses = make_session(args.listen)
    h = add(ses, args.torrent, args.save, True)
    # Without a tracker there is nothing to wait for: seed mode serves at once.
    has_tracker = any(True for _ in lt.torrent_info(args.torrent).trackers())
    ok = wait_tracker(ses, args.timeout) if has_tracker else False
    emit({"event": "ready", "announced": ok})
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    ledger = Ledger()
    end = time.monotonic() + args.timeout
    while not stop and time.monotonic() < end:
        time.sleep(0.05)
        ses.pop_alerts()
        ledger.poll(h)
    ledger.poll(h, force=True)
    st = h.status()
    emit({"event": "stopped", "uploaded_bytes": st.total_payload_upload, "cpu_s": cpu_s(),
          "uploaded_to": ledger.uploaded_to()})
    return 0


def run_leecher(args):
    ses = make_session(args.listen)
    emit({"event": "ready"})
    sys.stdin.read()  # start barrier: returns at EOF, when the harness lets go
    t0 = time.monotonic()
    h = add(ses, args.torrent, args.save, False)
    connect_peers(h, args.peer)
    ledger = Ledger()
    end = t0 + args.timeout
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    while time.monotonic() < end:
        st = h.status()
        if st.is_seeding or st.state == lt.torrent_status.seeding:
            elapsed_s = time.monotonic() - t0
            ledger.poll(h, force=True)
            emit({
                "event": "complete",
                "elapsed_s": elapsed_s,
                "downloaded_bytes": st.total_payload_download,
                "uploaded_bytes": st.total_payload_upload,
                "cpu_s": cpu_s(),
                "sources": ledger.sources(),
                "uploaded_to": ledger.uploaded_to(),
            })
            if not args.stay:
                return 0
            # --stay: keep seeding (bounded by --timeout) until terminated.
            while not stop and time.monotonic() < end:
                time.sleep(POLL_S)
                ses.pop_alerts()
            return 0
        time.sleep(POLL_S)
        ses.pop_alerts()
        ledger.poll(h)
    print("timed out after %.0f s" % args.timeout, file=sys.stderr)
    return 1


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("role", choices=["seed", "leech"])
    p.add_argument("--torrent", required=True)
    p.add_argument("--save", required=True, help="directory holding (or receiving) the data")
    p.add_argument("--listen", required=True, help="IP:PORT")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds before giving up")
    p.add_argument("--peer", action="append", default=[], metavar="IP:PORT",
                   help="leecher: also dial this peer (repeatable; for torrents without trackers)")
    p.add_argument("--stay", action="store_true",
                   help="leecher: keep seeding after completion until terminated")
    args = p.parse_args()
    if args.role == "seed":
        return run_seeder(args)
    return run_leecher(args)


if __name__ == "__main__":
    sys.exit(main())
