#!/usr/bin/python3
"""The workload shapes of issue 14 against the peers: bench/shapes.py [--runs N] [--out FILE]
[--only SUBSTR].

Runs build/bench/workloads/shapes with each parameter set below under every allocator of
bench/run.py (LD_PRELOAD; glibc without), interleaved: in each round every set runs on
every allocator back to back, the order rotating by one each round. Reports per set the
median (min-max) of each figure and the ratio to the best median, as run.py does, in
Markdown (default bench/results/alloc-shapes.md). docs/benchmarking.md describes the sets.
"""
import argparse
import datetime
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (bench/run.py: run_measured, parse_figures, ALLOCATORS, machine)

SHAPES = os.path.join(run.BUILD, "bench", "workloads", "shapes")

# name, argv, what it is
SETS = [
    ("scratch 8x 8 B", ["scratch", "8", "1000", "8", "2000"], "cache-scratch, 8 threads (> cores)"),
    ("scratch 2x 16 B", ["scratch", "2", "2000", "16", "2000"], "cache-scratch, 2 threads"),
    ("scratch 32x 48 B", ["scratch", "32", "200", "48", "2000"], "cache-scratch, 32 threads"),
    ("thrash 8x 8 B", ["thrash", "8", "1000", "8", "2000"], "cache-thrash, 8 threads"),
    ("xfer 1:1 16-256 B", ["xfer", "1", "1", "500000", "16", "256"], "producer:consumer 1:1, small"),
    ("xfer 4:1 16-1 KiB", ["xfer", "4", "1", "500000", "16", "1024"], "N:1, small"),
    ("xfer 1:4 16-1 KiB", ["xfer", "1", "4", "500000", "16", "1024"], "1:N, small"),
    ("xfer 8:8 16 B-64 KiB", ["xfer", "8", "8", "200000", "16", "65536"], "xmalloc-like, 16 threads"),
    ("xfer 2:2 64 KiB-1 MiB", ["xfer", "2", "2", "2000", "65536", "1048576"], "large blocks"),
    ("realloc 4x to 256 KiB", ["realloc", "4", "300", "262144"], "realloc growth, 4 threads"),
    ("realloc 16x to 256 KiB", ["realloc", "16", "60", "262144"], "realloc growth, 16 threads"),
    ("threads 40x20", ["threads", "40", "20", "200", "2000"], "800 short-lived threads"),
    # Every shape again with 64 threads (issue 14: "a 64-thread run of each workload"); the
    # "64t" prefix selects them (--only 64t).
    ("64t scratch 16 B", ["scratch", "64", "100", "16", "2000"], "cache-scratch, 64 threads"),
    ("64t thrash 16 B", ["thrash", "64", "100", "16", "2000"], "cache-thrash, 64 threads"),
    ("64t xfer 32:32 16 B-1 KiB", ["xfer", "32", "32", "200000", "16", "1024"], "xmalloc-like, 64 threads"),
    ("64t xfer 63:1 16 B-1 KiB", ["xfer", "63", "1", "200000", "16", "1024"], "N:1, 64 threads"),
    ("64t xfer 1:63 16 B-1 KiB", ["xfer", "1", "63", "200000", "16", "1024"], "1:N, 64 threads"),
    ("64t realloc to 256 KiB", ["realloc", "64", "60", "262144"], "realloc growth, 64 threads"),
    ("64t threads 10 waves", ["threads", "10", "64", "200", "2000"], "640 short-lived threads, 64 at a time"),
]


def main(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(run.ROOT, "bench", "results", "alloc-shapes.md"))
    ap.add_argument("--only", default="")
    ap.add_argument("--allocator", action="append", default=[], metavar="NAME=/path/lib.so",
                    help="add an allocator .so to the comparison (repeatable), e.g. an older libgort.so")
    a = ap.parse_args(argv)
    if not os.path.exists(SHAPES):
        run.die("%s is not built (make build/bench/workloads/shapes)" % SHAPES)
    allocs = [(n, p) for n, p, _ in run.ALLOCATORS if not p or os.path.exists(p)]
    for spec in a.allocator:
        n, sep, p = spec.partition("=")
        if not sep or not n or not os.path.exists(p):
            run.die("--allocator wants NAME=/path/lib.so of an existing file, got %r" % spec)
        allocs.append((n, os.path.abspath(p)))
    names = [n for n, _ in allocs]
    sets = [s for s in SETS if a.only in s[0]]
    samples = {s[0]: {} for s in sets}  # set -> metric -> (unit, better, {alloc: [v]})
    for r in range(a.runs):
        order = allocs[r % len(allocs):] + allocs[:r % len(allocs)]
        for name, args, _ in sets:
            for an, path in order:
                code, out, err, wall, rss = run.run_measured([SHAPES] + args, {"LD_PRELOAD": path} if path else {})
                if code != 0:
                    run.die("%s under %s: exit %d: %s" % (name, an, code, err[-300:]))
                res, _ = run.parse_figures(out)
                res["peak_rss"] = ("MiB", rss / 1024.0, "low")
                for m, (unit, v, better) in res.items():
                    samples[name].setdefault(m, (unit, better, {}))[2].setdefault(an, []).append(v)
                print("round %d %-24s %-9s %s" % (r + 1, name, an,
                      " ".join("%s=%.4g" % (m, v[1]) for m, v in res.items())), file=sys.stderr)
    L = ["# Allocator workload shapes (issue 14)", "",
         "- date: %s UTC" % datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M"),
         "- machine: %s; **shared** with other helpers' builds and tests while this ran, so times "
         "drift: compare ratios within a row, not absolute numbers" % run.machine(),
         "- method: %d rounds, every set on every allocator back to back, order rotating; "
         "median (min-max) and ratio to the best median (x1.00 = best)" % a.runs,
         "- command: `bench/shapes.py %s`" % " ".join(argv), "",
         "Versions:", ""] + ["- " + v for v in run.versions(allocs)] + [""]
    L += ["| set | figure | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for name, args, about in sets:
        for m, (unit, better, per) in samples[name].items():
            med = {n: statistics.median(v) for n, v in per.items()}
            best = min(med.values())
            cells = []
            for n in names:
                if n not in per:
                    cells.append("-")
                    continue
                ratio = med[n] / best if best else (1.0 if med[n] == 0 else float("inf"))
                cells.append("%.3g (%.3g-%.3g) x%.2f%s" % (med[n], min(per[n]), max(per[n]), ratio,
                                                           " **best**" if med[n] == best else ""))
            L.append("| %s (`%s`) | %s, %s | %s |" % (name, " ".join(args), m, unit, " | ".join(cells)))
    with open(a.out, "w") as f:
        f.write("\n".join(L) + "\n")
    print("wrote " + a.out, file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
