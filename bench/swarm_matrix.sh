#!/usr/bin/env bash
# The swarm benchmark matrix of p2pe (needs root): p2pe against libtorrent on
# the same emulated links, N ∈ {8,16,32} hosts × {100,400} Mbit/s × {64,256} MiB,
# plus two uneven-link rows, each with --reps repetitions. Every row is also
# appended to perf/swarm-bench.md by the harness; this script writes the
# medians per row, beside the `p2pe sim` prediction, to perf/swarm-matrix.md.
#
# Usage: bench/swarm_matrix.sh [--reps K] [--quick] [--sizes "64MiB 256MiB"] [--uneven-only] [--out FILE]
#   --quick: only the 64 MiB rows (about a third of the time).
#   --sizes: the sizes of the even rows (default both); with a list that lacks
#     64MiB the two uneven rows (64 MiB) are left out too.
#   --uneven-only: only the two uneven-link rows.
# Takes about 30-40 min with 3 reps on a 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
reps=3
quick=0
uneven_only=0
out=perf/swarm-matrix.md
sizes_arg=""
while [ $# -gt 0 ]; do
    case "$1" in
        --reps) reps="$2"; shift 2 ;;
        --quick) quick=1; shift ;;
        --sizes) sizes_arg="$2"; shift 2 ;;
        --uneven-only) uneven_only=1; shift ;;
        --out) out="$2"; shift 2 ;;
        *) echo "usage: $0 [--reps K] [--quick] [--sizes LIST] [--uneven-only] [--out FILE]" >&2; exit 2 ;;
    esac
done
if [ "$(id -u)" != 0 ]; then
    echo "swarm_matrix: needs root (network namespaces, tc)" >&2
    exit 1
fi
cargo build --release -p p2pe-tools --quiet
bin=target/release/p2pe
rows=$(mktemp /tmp/p2pe-matrix-XXXXXX.jsonl)
sizes="64MiB 256MiB"
[ "$quick" = 1 ] && sizes="64MiB"
[ -n "$sizes_arg" ] && sizes="$sizes_arg"
uneven=1
case " $sizes " in *" 64MiB "*) ;; *) uneven=0 ;; esac
[ "$uneven_only" = 1 ] && uneven=1
[ "$uneven_only" = 1 ] && sizes=""
run() { # label, then bench swarm arguments
    local label="$1"; shift
    echo "== $label: $*" >&2
    if ! "$bin" bench swarm --compare libtorrent --reps "$reps" --json "$@" \
        | sed "s#^{#{\"row\":\"$label\",#" >>"$rows"; then
        echo "swarm_matrix: row $label failed (see above); continuing" >&2
    fi
}
for size in $sizes; do
    for rate in 100 400; do
        for hosts in 8 16 32; do
            run "N=$hosts ${rate}Mbit $size" --hosts "$hosts" --size "$size" --rate "$rate"
        done
    done
done
if [ "$uneven" = 1 ]; then
run "N=16 slow origin 20/100Mbit 64MiB" --hosts 16 --size 64MiB --rate 100 --origin-rate 20
run "N=16 origin 400, 1/4 at 20, rest 100Mbit 64MiB" --hosts 16 --size 64MiB --rate 100 \
    --origin-rate 400 --slow-fraction 0.25 --slow-rate 20
fi
/usr/bin/python3 bench/scripts/matrix_summary.py "$rows" \
    --reps "$reps" --commit "$(git rev-parse --short HEAD)" --out "$out"
echo "swarm_matrix: medians in $out (raw rows: $rows)" >&2
