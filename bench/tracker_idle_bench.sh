#!/bin/bash
# `p2pe tracker` with IDLE HTTP keep-alive connections held open through a 10 s
# announce flood (UDP, or HTTP with `http`), on loopback: does the flood stall,
# and how far does the tracker's anonymous memory grow?
# Prints one line: flood responses per tracker CPU-second, the flood's answer
# latency p50/p99/max (ms) and poll stalls, how many idle connections were
# still open after the flood and answered one more announce on the same socket,
# and the tracker's RssAnon before the idle connections, with them (at the
# flood's start) and at its peak (KiB, sampled every 100 ms). The tracker's CPU
# is taken over the flood alone (the load's `flood: start`/`end` markers).
# usage: bench/tracker_idle_bench.sh IDLE [udp|http] [LOAD_THREADS]
# needs: cargo build --release -p p2pe-tools --bin p2pe -p p2pe-bench --bin tracker_load
set -e
cd "$(dirname "$0")/.."
IDLE=${1:?usage: bench/tracker_idle_bench.sh IDLE [udp|http] [LOAD_THREADS]}
MODE=${2:-udp}
THREADS=${3:-1}
mkdir -p /tmp/tib
TCK=$(getconf CLK_TCK)
./target/release/p2pe tracker --listen 127.0.0.1:0 --udp-threads 1 > /tmp/tib/trk.out 2>/tmp/tib/trk.err &
PID=$!
trap 'kill -TERM $PID 2>/dev/null || true' EXIT
for i in $(seq 100); do grep -q listening /tmp/tib/trk.out && break; sleep 0.05; done
ADDR=$(awk '{print $3}' /tmp/tib/trk.out)
rss() { awk '/^RssAnon/ {print $2}' /proc/$PID/status; }
RSS0=$(rss)
read -r _ _ _ _ _ _ _ _ _ _ _ _ _ U0 S0 _ < /proc/$PID/stat
FLAG=""
[ "$MODE" = http ] && FLAG=--http
./target/release/tracker_load --target "$ADDR" --threads "$THREADS" --sockets 16 --window 8 \
  --duration 10 --idle-conns "$IDLE" $FLAG > /tmp/tib/load.json 2> /tmp/tib/load.err &
LOAD=$!
PEAK=$RSS0
WITH_IDLE=$RSS0
# CPU over the flood alone (between the load's stderr markers, to 100 ms).
# Bounded: the load runs at most 10 s of flood plus 2 x 30 s of idle answers.
STARTED=""; ENDED=""
for i in $(seq 1000); do
  kill -0 $LOAD 2>/dev/null || break
  R=$(rss); [ "$R" -gt "$PEAK" ] && PEAK=$R
  if [ -z "$STARTED" ] && grep -q "flood: start" /tmp/tib/load.err; then
    STARTED=1; WITH_IDLE=$R
    read -r _ _ _ _ _ _ _ _ _ _ _ _ _ U0 S0 _ < /proc/$PID/stat
  fi
  if [ -z "$ENDED" ] && grep -q "flood: end" /tmp/tib/load.err; then
    ENDED=1
    read -r _ _ _ _ _ _ _ _ _ _ _ _ _ U1 S1 _ < /proc/$PID/stat
  fi
  sleep 0.1
done
wait $LOAD || { echo "tracker_load failed:" >&2; cat /tmp/tib/load.err >&2; exit 1; }
[ -n "$ENDED" ] || read -r _ _ _ _ _ _ _ _ _ _ _ _ _ U1 S1 _ < /proc/$PID/stat
kill -TERM $PID; wait $PID 2>/dev/null || true
trap - EXIT
python3 - "$IDLE" "$MODE" "$(( U1 + S1 - U0 - S0 ))" "$TCK" "$RSS0" "$PEAK" /tmp/tib/load.json "$WITH_IDLE" <<'PY'
import json, sys
idle, mode, ticks, tck, rss0, peak, path, with_idle = sys.argv[1:]
r = json.load(open(path))
cpu = int(ticks) / int(tck)
print(f"idle={idle} mode={mode} responses={r['responses']} errors={r['errors']} stalls={r['stalls']} "
      f"tracker_cpu_s={cpu:.2f} responses_per_cpu_s={r['responses']/cpu:.0f} "
      f"p50_ms={r['latency_p50_ms']} p99_ms={r['latency_p99_ms']} max_ms={r['latency_max_ms']} "
      f"idle_open={r['idle_open']} idle_answered_after={r['idle_answered_after']} "
      f"rss_anon_before_kib={rss0} rss_anon_with_idle_kib={with_idle} rss_anon_peak_kib={peak}")
PY
