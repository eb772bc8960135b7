#!/usr/bin/python3
"""Transparent huge pages over a live heap (issue 14): bench/thp.py [--runs N] [--live MIB]
[--out FILE].

Runs `shapes hugepages LIVE 3` (bench/workloads/shapes.cc) under every allocator of
bench/run.py and under gort with GORT_THP=on, once with the kernel's THP setting
`always` and once with `madvise`, interleaved (every allocator back to back in each round,
the order rotating). Switching the setting needs root and a writable
/sys/kernel/mm/transparent_hugepage/enabled; the original setting is restored at the end
(and on error). Without that, only the current setting is measured. Reports per setting and
allocator the median (min-max) of: huge-page coverage of the live heap (AnonHugePages over
Anonymous, %), the coverage and anonymous memory after three rounds of churn and an idle
1.5 s, and the time of the allocation and churn. Markdown, default
bench/results/alloc-hugepages.md; docs/benchmarking.md describes it.
"""
import argparse
import datetime
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (bench/run.py: run_measured, parse_figures, ALLOCATORS, machine)

SHAPES = os.path.join(run.BUILD, "bench", "workloads", "shapes")
THP = "/sys/kernel/mm/transparent_hugepage/enabled"
FIGURES = [("coverage_live", "live heap in huge pages, %"),
           ("coverage_after_churn", "after churn and 1.5 s idle, %"),
           ("anon_after_churn", "anonymous memory after, MiB"),
           ("work", "allocation + churn, ms")]


def thp_setting():
    try:
        s = open(THP).read()
        return s[s.index("[") + 1:s.index("]")]
    except (OSError, ValueError):
        return None


def set_thp(mode):
    try:
        with open(THP, "w") as f:
            f.write(mode)
        return thp_setting() == mode
    except OSError:
        return False


def main(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--live", type=int, default=1024)
    ap.add_argument("--out", default=os.path.join(run.ROOT, "bench", "results", "alloc-hugepages.md"))
    a = ap.parse_args(argv)
    if not os.path.exists(SHAPES):
        run.die("%s is not built (make build/bench/workloads/shapes)" % SHAPES)
    gort = run.ALLOCATORS[0][1]
    allocs = [(n, p, {}) for n, p, _ in run.ALLOCATORS if not p or os.path.exists(p)]
    allocs.insert(1, ("gort THP=on", gort, {"GORT_THP": "on"}))
    original = thp_setting()
    modes = [m for m in ("always", "madvise") if m == original or set_thp(m)]
    if original and original not in modes:
        modes.append(original)
    samples = {}  # (mode, alloc) -> figure -> [v]
    try:
        for mode in modes:
            if not set_thp(mode) and thp_setting() != mode:
                continue
            for r in range(a.runs):
                order = allocs[r % len(allocs):] + allocs[:r % len(allocs)]
                for name, path, env in order:
                    e = dict(env)
                    if path:
                        e["LD_PRELOAD"] = path
                    code, out, err, _, _ = run.run_measured(
                        [SHAPES, "hugepages", str(a.live), "3"], e)
                    if code != 0:
                        run.die("hugepages under %s: exit %d: %s" % (name, code, err[-300:]))
                    res, _ = run.parse_figures(out)
                    for m, (_, v, _) in res.items():
                        samples.setdefault((mode, name), {}).setdefault(m, []).append(v)
                    print("THP %s round %d %-12s %s" % (mode, r + 1, name, " ".join(
                        "%s=%.4g" % (m, v[1]) for m, v in res.items())), file=sys.stderr)
    finally:
        if original:
            set_thp(original)
    L = ["# Transparent huge pages over a live heap (issue 14)", "",
         "- date: %s UTC" % datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M"),
         "- machine: %s" % run.machine(),
         "- method: `shapes hugepages %d 3` (bench/workloads/shapes.cc), %d rounds per kernel "
         "setting, every allocator back to back, order rotating; median (min-max)" % (a.live, a.runs),
         "- command: `bench/thp.py %s`" % " ".join(argv), "",
         "Versions:", ""] + ["- " + v for v in run.versions([(n, p) for n, p, _ in allocs
                                                            if n != "gort THP=on"])] + [""]
    L += ["| kernel THP | allocator | " + " | ".join(d for _, d in FIGURES) + " |",
          "|---|---|" + "---|" * len(FIGURES)]
    for mode in modes:
        for name, _, _ in allocs:
            per = samples.get((mode, name))
            if not per:
                continue
            cells = []
            for m, _ in FIGURES:
                v = per.get(m, [])
                cells.append("%.4g (%.4g-%.4g)" % (statistics.median(v), min(v), max(v)) if v else "-")
            L.append("| %s | %s | %s |" % (mode, name, " | ".join(cells)))
    with open(a.out, "w") as f:
        f.write("\n".join(L) + "\n")
    print("wrote " + a.out, file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
