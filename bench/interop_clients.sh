#!/usr/bin/env bash
# Interop transfer times on 127.0.0.1 (issue 15): one seeder, one leecher,
# peers found through a `p2pe tracker` named in the torrent (aria2 and
# Transmission cannot be told a peer address). Rows, seeder -> leecher:
#   p2pe -> aria2c            libtorrent -> aria2c
#   Transmission -> p2pe get  Transmission -> libtorrent
#   libtorrent -> p2pe get    p2pe -> libtorrent        libtorrent -> libtorrent
# Each measurement: fresh tracker, torrent (`p2pe create`) and seeder; the
# clock starts once the tracker counts the seeder (HTTP scrape: complete=1)
# and stops when the leecher has finished. p2pe get: start to exit (it exits
# on completion); aria2c: start to its --on-bt-download-complete hook (aria2
# exits 1-2 s after completing); libtorrent (bench/scripts/lt_peer.py): its
# elapsed_s, from the start barrier (session up) to completion. The copy
# is then compared with the original (cmp). --reps K repetitions, interleaved
# (rep 1 of every row, then rep 2, ...); the table gives each rep and the median.
# Each measurement holds `flock /tmp/p2pe-measure.lock` (other measurements wait).
# Prints a markdown table on stdout and appends it, with the machine (nproc,
# kernel, CPU model), client versions and commit, to perf/interop-clients.md.
#
# Usage: bench/interop_clients.sh [--size 256MiB] [--reps 3] [--bin PATH] [--out FILE]
#   --bin: the p2pe binary (default: build and use target/release/p2pe).
# Needs root, aria2c, transmission-daemon + transmission-remote,
# python3-libtorrent (/usr/bin/python3) and curl.
set -euo pipefail
cd "$(dirname "$0")/.."
size_arg=256MiB
reps=3
bin=
out=perf/interop-clients.md
while [ $# -gt 0 ]; do
    case "$1" in
        --size) size_arg="$2"; shift 2 ;;
        --reps) reps="$2"; shift 2 ;;
        --bin) bin="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        *) echo "usage: $0 [--size 256MiB] [--reps 3] [--bin PATH] [--out FILE]" >&2; exit 2 ;;
    esac
done
if [ "$(id -u)" != 0 ]; then
    echo "interop_clients: run as root (the lead's measurement set-up)" >&2
    exit 1
fi
for tool in aria2c transmission-daemon transmission-remote curl /usr/bin/python3; do
    command -v "$tool" >/dev/null || { echo "interop_clients: $tool is missing" >&2; exit 1; }
done
/usr/bin/python3 -c 'import libtorrent' || { echo "interop_clients: python3-libtorrent is missing" >&2; exit 1; }
case "$size_arg" in
    *GiB) size=$(( ${size_arg%GiB} << 30 )) ;;
    *MiB) size=$(( ${size_arg%MiB} << 20 )) ;;
    *KiB) size=$(( ${size_arg%KiB} << 10 )) ;;
    *[!0-9]*) echo "interop_clients: --size takes BYTES or N{KiB,MiB,GiB}" >&2; exit 2 ;;
    *) size=$size_arg ;;
esac
if [ -z "$bin" ]; then
    cargo build --release -p p2pe-tools --bin p2pe --quiet
    bin=target/release/p2pe
fi
bin=$(realpath "$bin")
lt_peer=$(realpath bench/scripts/lt_peer.py)

work=$(mktemp -d /tmp/p2pe-interop-XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
stop_all() { # ends the processes this measurement started, by PID
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    pids=()
}
free_port() {
    /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# wait_for WHAT SECONDS CMD...: polls CMD every 0.1 s until it succeeds.
wait_for() {
    local what="$1" bound="$2"; shift 2
    local end=$(( $(date +%s) + bound ))
    until "$@" >/dev/null 2>&1; do
        if [ "$(date +%s)" -ge "$end" ]; then
            echo "interop_clients: $what: not within ${bound}s" >&2
            return 1
        fi
        sleep 0.1
    done
}
now() { date +%s.%N; }

echo "interop_clients: writing a ${size_arg} payload" >&2
mkdir -p "$work/src"
head -c "$size" /dev/urandom >"$work/src/payload.bin"

tracker_addr=
info_hash_url=
# A fresh tracker and torrent for one measurement.
start_tracker() {
    "$bin" tracker --listen 127.0.0.1:0 --interval 5 >"$work/tracker.out" 2>/dev/null &
    pids+=($!)
    wait_for "tracker address" 30 grep -q '^listening on ' "$work/tracker.out" || return 1
    tracker_addr=$(sed -n 's/^listening on //p' "$work/tracker.out")
    "$bin" create "$work/src/payload.bin" -o "$work/t.torrent" -f \
        --tracker "http://$tracker_addr/announce" >"$work/create.out" || return 1
    local ih
    ih=$(sed -n 's/^info-hash //p' "$work/create.out")
    info_hash_url=$(echo "$ih" | sed 's/../%&/g')
}
seeder_counted() {
    curl -s --max-time 2 "http://$tracker_addr/scrape?info_hash=$info_hash_url" \
        | grep -aq '8:completei[1-9]'
}

start_seed() { # p2pe | libtorrent | transmission
    case "$1" in
        p2pe)
            "$bin" seed "$work/t.torrent" --path "$work/src" --listen 127.0.0.1:0 \
                >/dev/null 2>"$work/seed.err" &
            pids+=($!) ;;
        libtorrent)
            /usr/bin/python3 "$lt_peer" seed --torrent "$work/t.torrent" --save "$work/src" \
                --listen 127.0.0.1:0 --timeout 3600 >/dev/null 2>"$work/seed.err" &
            pids+=($!) ;;
        transmission)
            local cfg="$work/tr-config" rpc
            rm -rf "$cfg"; mkdir -p "$cfg"
            rpc=$(free_port)
            cat >"$cfg/settings.json" <<EOF
{"rpc-enabled": true, "rpc-port": $rpc, "rpc-bind-address": "127.0.0.1",
 "rpc-authentication-required": false, "rpc-whitelist-enabled": false,
 "rpc-host-whitelist-enabled": false, "dht-enabled": false, "lpd-enabled": false,
 "pex-enabled": false, "utp-enabled": false, "port-forwarding-enabled": false,
 "peer-port": $(free_port), "peer-port-random-on-start": false,
 "bind-address-ipv4": "127.0.0.1", "download-dir": "$work/src",
 "incomplete-dir-enabled": false, "rename-partial-files": false,
 "start-added-torrents": true, "encryption": 0, "message-level": 1,
 "watch-dir-enabled": false, "ratio-limit-enabled": false,
 "idle-seeding-limit-enabled": false, "speed-limit-up-enabled": false,
 "speed-limit-down-enabled": false, "alt-speed-enabled": false}
EOF
            transmission-daemon -f -g "$cfg" >/dev/null 2>"$work/seed.err" &
            pids+=($!)
            wait_for "transmission-daemon RPC" 30 transmission-remote "127.0.0.1:$rpc" -l \
                || return 1
            transmission-remote "127.0.0.1:$rpc" -a "$work/t.torrent" >/dev/null || return 1 ;;
    esac
    # Transmission checks the data first: allow for that.
    wait_for "$1 seed announced" 300 seeder_counted
}

# leech p2pe|libtorrent|aria2c: runs a leecher to completion into $work/out;
# sets t0 (its start) and t1 (its completion), epoch seconds.
t0=
t1=
leech() {
    local dir="$work/out"
    rm -rf "$dir"; mkdir -p "$dir"
    case "$1" in
        p2pe)
            t0=$(now)
            timeout 900 "$bin" get "$work/t.torrent" -o "$dir" --listen 127.0.0.1:0 \
                --connect-timeout 120 >/dev/null 2>"$work/leech.err" || return 1
            t1=$(now) ;;
        libtorrent)
            # lt_peer.py's start barrier: the clock starts once its session is
            # up (Python and libtorrent loaded) and it got EOF on stdin; it
            # reports the seconds from there to completion (elapsed_s).
            rm -f "$work/lt.fifo"; mkfifo "$work/lt.fifo"
            timeout 900 /usr/bin/python3 "$lt_peer" leech --torrent "$work/t.torrent" \
                --save "$dir" --listen 127.0.0.1:0 --timeout 600 \
                <"$work/lt.fifo" >"$work/lt.out" 2>"$work/leech.err" &
            local pid=$!
            pids+=("$pid")
            exec 8>"$work/lt.fifo"
            wait_for "libtorrent leecher ready" 60 grep -q '"ready"' "$work/lt.out" \
                || { exec 8>&-; return 1; }
            t0=$(now)
            exec 8>&-
            wait "$pid" || return 1
            local secs
            secs=$(sed -n 's/.*"elapsed_s": \([0-9.e+-]*\).*/\1/p' "$work/lt.out")
            [ -n "$secs" ] || return 1
            t1=$(awk -v a="$t0" -v s="$secs" 'BEGIN { printf "%.6f", a + s }') ;;
        aria2c)
            # aria2 exits a second or two after completing (its 1 s ticks):
            # the --on-bt-download-complete hook marks the completion.
            printf '#!/bin/sh\ndate +%%s.%%N >"%s"\n' "$work/done.ts" >"$work/done.sh"
            chmod +x "$work/done.sh"
            rm -f "$work/done.ts"
            t0=$(now)
            timeout 900 aria2c --on-bt-download-complete="$work/done.sh" --dir="$dir" \
                --enable-dht=false --enable-dht6=false --bt-enable-lpd=false \
                --enable-peer-exchange=false --seed-time=0 --bt-external-ip=127.0.0.1 \
                --listen-port="$(free_port)" --file-allocation=none --summary-interval=0 \
                --console-log-level=warn --bt-save-metadata=false "$work/t.torrent" \
                >/dev/null 2>"$work/leech.err" || return 1
            [ -s "$work/done.ts" ] || return 1
            t1=$(cat "$work/done.ts") ;;
    esac
}

# measure SEED LEECH: sets $result to the leecher's seconds, or "fail".
# (Not in a subshell: the EXIT trap must see the PIDs it started.)
result=fail
measure() {
    result=fail
    exec 9>/tmp/p2pe-measure.lock
    flock 9
    if start_tracker && start_seed "$1"; then
        if leech "$2"; then
            if cmp -s "$work/src/payload.bin" "$work/out/payload.bin"; then
                result=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
            else
                echo "interop_clients: $1 -> $2: the copy differs" >&2
            fi
        else
            echo "interop_clients: $1 -> $2 failed:" >&2
            tail -5 "$work/leech.err" "$work/seed.err" >&2 || true
        fi
    fi
    stop_all
    rm -rf "$work/out"
    flock -u 9
    exec 9>&-
}

rows=("p2pe aria2c" "libtorrent aria2c" "transmission p2pe" "transmission libtorrent"
    "libtorrent p2pe" "p2pe libtorrent" "libtorrent libtorrent")
declare -A times
for rep in $(seq 1 "$reps"); do
    for i in "${!rows[@]}"; do
        read -r s l <<<"${rows[$i]}"
        measure "$s" "$l"
        echo "interop_clients: rep $rep: $s -> $l: $result s" >&2
        times[$i]="${times[$i]:-} $result"
    done
done

median() { # of the numeric arguments (fail ignored); "fail" if none
    printf '%s\n' "$@" | grep -v '^fail$' | sort -g | awk '
        { v[NR] = $1 }
        END {
            if (NR == 0) { print "fail"; exit }
            if (NR % 2) m = v[(NR + 1) / 2]; else m = (v[NR / 2] + v[NR / 2 + 1]) / 2
            printf "%.2f\n", m
        }'
}
label() { case "$1" in p2pe) echo "p2pe seed" ;; *) echo "$1" ;; esac; }
table=$(
    echo "| seeder | leecher | runs (s) | median (s) | median MB/s |"
    echo "|---|---|---|---|---|"
    for i in "${!rows[@]}"; do
        read -r s l <<<"${rows[$i]}"
        # shellcheck disable=SC2086
        m=$(median ${times[$i]})
        rate=fail
        [ "$m" != fail ] && rate=$(awk -v b="$size" -v s="$m" 'BEGIN { printf "%.1f", b / s / 1e6 }')
        lname=$l; [ "$l" = p2pe ] && lname="p2pe get"
        echo "| $(label "$s") | $lname | $(echo ${times[$i]} | sed 's/ /, /g') | $m | $rate |"
    done
)
echo "$table"
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
lt_version=$(/usr/bin/python3 -c 'import libtorrent; print(libtorrent.__version__)')
{
    echo
    echo "## $(date -u +%Y-%m-%d) interop, ${size_arg} on 127.0.0.1, $reps reps interleaved"
    echo
    echo "Commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- engine tools || echo ' (+ local changes)');" \
        "$(nproc) CPUs, $cpu; kernel $(uname -r)."
    echo "Clients: $(aria2c --version | head -1), $(transmission-daemon --version 2>&1 | head -1)," \
        "python3-libtorrent $lt_version."
    echo "Command: \`bench/interop_clients.sh --size $size_arg --reps $reps\`. Time: the leecher's" \
        "wall time from the moment the tracker counts the seeder to the leecher's completion (see the script's header), copy compared after."
    echo
    echo "$table"
} >>"$out"
echo "interop_clients: appended to $out" >&2
