#!/usr/bin/python3
"""Summarises `p2pe bench swarm --json` rows (one JSON object per line, each
with a "row" label added by bench/swarm_matrix.sh) into a markdown table of
medians per row and client, appended to --out with machine, kernel, commit;
then a second table of who got their payload from whom (the rows'
`from_whom` figures, medians over reps) where the rows have them."""
import argparse
import json
import os
import platform
import statistics
import time


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, spec):
    return "n/a" if x is None else format(x, spec)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("rows")
    p.add_argument("--out", required=True)
    p.add_argument("--reps", type=int, required=True)
    p.add_argument("--commit", required=True)
    a = p.parse_args()
    groups = {}
    order = []
    with open(a.rows) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            r = json.loads(line)
            if r["row"] not in groups:
                order.append(r["row"])
                groups[r["row"]] = {}
            groups[r["row"]].setdefault(r["client"], []).append(r)

    def stats(rs):
        if not rs:
            return None
        copies = [r.get("origin_upload_copies") or r["origin_wire_copies"] for r in rs]
        return {
            "n": len(rs),
            "total": med([r["max_s"] for r in rs]),
            "ratio": med([r["ratio"] for r in rs]),
            "median": med([r["median_s"] for r in rs]),
            "copies": med(copies),
            "mbcpu": med([r["payload_mb_per_cpu_s"] for r in rs]),
        }

    lines = []
    lines.append("## %s: swarm matrix, medians of %d reps (commit %s)\n" % (
        time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), a.reps, a.commit))
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    lines.append("- machine: %s, %d cores; kernel %s; load at the end %s" % (
        cpu, os.cpu_count() or 0, platform.release(),
        " ".join("%.2f" % x for x in os.getloadavg())))
    lines.append("- run: `bench/swarm_matrix.sh --reps %d`; every rep's row is also in "
                 "perf/swarm-bench.md. Total = last leecher's completion; ratio = total / "
                 "D_p2p (~1.046 is the TCP goodput floor); origin copies = origin upload ÷ F "
                 "(payload where the client reports it, else link bytes); MB/CPU-s = leecher "
                 "payload per CPU-second of all peers.\n" % a.reps)
    lines.append("| row | D_p2p s | sim s (ratio) | p2pe total s (ratio) | p2pe median s | "
                 "p2pe origin copies | p2pe MB/CPU-s | libtorrent total s (ratio) | "
                 "libtorrent origin copies | libtorrent MB/CPU-s | p2pe faster |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for label in order:
        g = groups[label]
        any_row = next(iter(g.values()))[0]
        sim = any_row.get("sim")
        pe, lt = stats(g.get("p2pe")), stats(g.get("libtorrent"))
        faster = "n/a"
        if pe and lt:
            faster = "yes" if pe["total"] < lt["total"] else "no"

        def cell(s, key, spec):
            return fmt(s[key], spec) if s else "missing"

        def total(s):
            if not s:
                return "missing"
            return "%s (%s)%s" % (fmt(s["total"], ".2f"), fmt(s["ratio"], ".3f"),
                                  "" if s["n"] >= a.reps else " [%d reps]" % s["n"])

        lines.append("| %s | %.2f | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            label, any_row["d_p2p_s"],
            "%.2f (%.3f)" % (sim["total_s"], sim["ratio"]) if sim else "n/a",
            total(pe), cell(pe, "median", ".2f"), cell(pe, "copies", ".2f"),
            cell(pe, "mbcpu", ".0f"), total(lt), cell(lt, "copies", ".2f"),
            cell(lt, "mbcpu", ".0f"), faster))
    lines.extend(from_whom_table(order, groups))
    text = "\n".join(lines) + "\n\n"
    with open(a.out, "a") as f:
        f.write(text)
    print(text)


def from_whom_table(order, groups):
    """Markdown lines: per row and client, medians over reps of the share of
    each leecher's payload that came from the origin (the leechers' median and
    max) and, with slow leechers, what the slow ones got from the origin /
    fast / slow leechers and what fast ones got from slow ones, and the payload
    received beyond the file (duplicates) as a fraction of the file."""
    keys = ["from_origin_share_median", "from_origin_share_max", "slow_share_from_origin",
            "slow_share_from_fast", "slow_share_from_slow", "fast_share_from_slow",
            "received_excess_median", "received_excess_max"]
    out = []
    for label in order:
        for client, rs in sorted(groups[label].items()):
            figs = [r.get("from_whom") for r in rs if r.get("from_whom")]
            if not figs:
                continue
            cells = [fmt(med([f.get(k) for f in figs]), ".2f") for k in keys]
            out.append("| %s | %s | %s |" % (label, client, " | ".join(cells)))
    if not out:
        return []
    head = ["", "Who got their payload from whom (shares of each leecher's payload; "
            "medians over reps; per-row matrices in each row's from-whom.tsv with --keep):\n",
            "| row | client | from origin (median leecher) | from origin (max leecher) | "
            "slow from origin | slow from fast | slow from slow | fast from slow | "
            "received excess (median leecher) | received excess (max leecher) |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    return head + out


if __name__ == "__main__":
    main()
