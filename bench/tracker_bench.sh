#!/bin/bash
# UDP tracker throughput on loopback: `p2pe tracker` or opentracker (reference)
# against bench/src/bin/tracker_load.rs for 10 s; prints responses/s (wall) and
# responses per CPU-second of the tracker process (utime+stime from /proc).
# usage: bench/tracker_bench.sh p2pe|opentracker UDP_THREADS LOAD_THREADS [http]
# (with `http`, the load announces over HTTP on the same port instead of UDP)
# needs: cargo build --release -p p2pe-tools --bin p2pe -p p2pe-bench --bin tracker_load
#        apt-get install opentracker (for the reference)
set -e
cd "$(dirname "$0")/.."
mkdir -p /tmp/tb
./target/release/tracker_load --write-whitelist /tmp/tb/whitelist.txt --torrents 1000
TCK=$(getconf CLK_TCK)
if [ "$1" = p2pe ]; then
  ./target/release/p2pe tracker --listen 127.0.0.1:0 --udp-threads $2 > /tmp/tb/trk.out 2>/tmp/tb/trk.err &
  PID=$!
  for i in $(seq 100); do grep -q listening /tmp/tb/trk.out && break; sleep 0.05; done
  ADDR=$(awk '{print $3}' /tmp/tb/trk.out)
else
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  # opentracker chroots into -d, where glibc cannot dlopen libgcc_s for
  # pthread_cancel ("libgcc_s.so.1 must be installed"): load it before the chroot.
  GCC_S=$(ldconfig -p | awk '/libgcc_s.so.1 .*x86-64/ {print $NF; exit}')
  LD_PRELOAD=${GCC_S} opentracker -i 127.0.0.1 -p $PORT -P $PORT -d /tmp/tb -w whitelist.txt > /tmp/tb/ot.out 2>&1 &
  PID=$!
  for i in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.05; done
  ADDR=127.0.0.1:$PORT
fi
read -r _ _ _ _ _ _ _ _ _ _ _ _ _ U0 S0 _ < /proc/$PID/stat
echo "load before: $(uptime)"
MODE=""
[ "$4" = http ] && MODE=--http
OUT=$(./target/release/tracker_load --target $ADDR --threads $3 --sockets 16 --window 8 --duration 10 $MODE)
read -r _ _ _ _ _ _ _ _ _ _ _ _ _ U1 S1 _ < /proc/$PID/stat
kill -INT $PID; wait $PID 2>/dev/null
CPU=$(python3 -c "print(($U1+$S1-$U0-$S0)/$TCK)")
RESP=$(echo "$OUT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["responses"])')
echo "$1 udp_threads=$2 load_threads=$3 ${4:-udp} $OUT tracker_cpu_s=$CPU responses_per_cpu_s=$(python3 -c "print(round($RESP/$CPU))")"
