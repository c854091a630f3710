#!/bin/sh
# Fan-out 1 seeder -> N leechers on loopback with `p2pe swarm`, workers=1 vs
# workers=2 per process, interleaved, REPS runs each; prints one JSON line per
# run (tagged with the worker count) for perf/node-multicore.md.
# Usage: bench/scripts/node-multicore.sh [SIZE] [PEERS] [REPS]
set -eu
SIZE=${1:-256MiB}
PEERS=${2:-8}
REPS=${3:-3}
BIN=${P2PE:-target/release/p2pe}
i=0
while [ "$i" -lt "$REPS" ]; do
  for w in 1 2; do
    out=$("$BIN" swarm --peers "$PEERS" --size "$SIZE" --workers "$w" --json --timeout 900)
    echo "{\"run\":$i,\"workers\":$w,\"result\":$out}"
  done
  i=$((i + 1))
done
