#!/usr/bin/python3
"""One libtorrent peer (seeder or leecher) for `p2pe bench swarm`.

Run with /usr/bin/python3 (Debian's python3-libtorrent is importable only there).

Leecher: sets up the session, prints {"event": "ready"}, waits for EOF on stdin
(the harness's start barrier), adds the torrent, and on completion prints
{"event": "complete", "elapsed_s", "downloaded_bytes", "uploaded_bytes", "cpu_s"}
and exits (with --stay: keeps seeding until SIGTERM/SIGINT). Seeder: adds the torrent (data already in --save), prints
{"event": "ready"} once the tracker answered, serves until SIGTERM/SIGINT,
then prints {"event": "stopped", "uploaded_bytes", "cpu_s"}.

Settings: announce to the torrent's tracker only (no DHT, LSD, UPnP, NAT-PMP),
TCP only (no uTP), several connections per IP allowed, no rate limits, local
peers not rate-limited.
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


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def cpu_s():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


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


def run_seeder(args):
    ses = make_session(args.listen)
    h = add(ses, args.torrent, args.save, True)
    ok = wait_tracker(ses, args.timeout)
    emit({"event": "ready", "announced": ok})
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    end = time.monotonic() + args.timeout
    while not stop and time.monotonic() < end:
        time.sleep(0.05)
        ses.pop_alerts()
    st = h.status()
    emit({"event": "stopped", "uploaded_bytes": st.total_payload_upload, "cpu_s": cpu_s()})
    return 0


def run_leecher(args):
    ses = make_session(args.listen)
    emit({"event": "ready"})
    sys.stdin.read()  # start barrier: returns at EOF, when the harness lets go
    t0 = time.monotonic()
    h = add(ses, args.torrent, args.save, False)
    end = t0 + args.timeout
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    while time.monotonic() < end:
        st = h.status()
        if st.is_seeding or st.state == lt.torrent_status.seeding:
            emit({
                "event": "complete",
                "elapsed_s": time.monotonic() - t0,
                "downloaded_bytes": st.total_payload_download,
                "uploaded_bytes": st.total_payload_upload,
                "cpu_s": cpu_s(),
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
    print("timed out after %.0f s" % args.timeout, file=sys.stderr)
    return 1


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("role", choices=["seed", "leech"])
    p.add_argument("--torrent", required=True)
    p.add_argument("--save", required=True, help="directory holding (or receiving) the data")
    p.add_argument("--listen", required=True, help="IP:PORT")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds before giving up")
    p.add_argument("--stay", action="store_true",
                   help="leecher: keep seeding after completion until terminated")
    args = p.parse_args()
    if args.role == "seed":
        return run_seeder(args)
    return run_leecher(args)


if __name__ == "__main__":
    sys.exit(main())
