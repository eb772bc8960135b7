#!/usr/bin/python3
"""gort's allocator benchmark runner (make run / make bench).

Runs the same benchmark binaries once per allocator, choosing the allocator
with LD_PRELOAD (glibc is the run without it), interleaved at the finest grain
that is practical: each round runs every micro benchmark on every allocator
back to back (A B C D E), then the workloads, and the allocator order rotates
from round to round. A shared machine drifts between faster and slower states
within seconds; neighbours in time see the same state. Reports the median over rounds with the min-max spread and the
ratio to the best allocator of the same run, and writes a Markdown report (and
a PNG chart when matplotlib is installed) under bench/results/.

  bench/run.py [--quick] [--runs N] [--allocator NAME=/path/lib.so ...] [--out DIR]
"""
import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build")
LIBDIR = "/usr/lib/x86_64-linux-gnu"
PEERS = [
    ("gort", os.path.join(BUILD, "lib", "libgort.so")),
    ("glibc", ""),
    ("jemalloc", os.path.join(LIBDIR, "libjemalloc.so.2")),
    ("mimalloc", os.path.join(LIBDIR, "libmimalloc.so.2")),
    ("tcmalloc", os.path.join(LIBDIR, "libtcmalloc_minimal.so.4")),
]
PACKAGES = {"glibc": "libc6", "jemalloc": "libjemalloc2", "mimalloc": "libmimalloc2.0",
            "tcmalloc": "libgoogle-perftools4"}

# Each metric: (key, label, unit, better) where better is "low" or "high".
MICRO = os.path.join(BUILD, "bench", "micro", "malloc_bench")
RSS = os.path.join(BUILD, "bench", "workloads", "rss_after_free")


def die(msg):
    print("bench: " + msg, file=sys.stderr)
    sys.exit(2)


def run(cmd, preload, timeout=600):
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if preload:
        env["LD_PRELOAD"] = preload
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (os.path.basename(cmd[0]), p.returncode,
                                                   p.stderr.strip()[-500:]))
    return p.stdout


def micro_names():
    out = run([MICRO, "--benchmark_list_tests"], "")
    return [l.strip() for l in out.splitlines() if l.strip()]


def micro(preload, min_time, name):
    out = run([MICRO, "--benchmark_format=json", "--benchmark_min_time=%g" % min_time,
               "--benchmark_filter=^%s$" % re.escape(name)], preload)
    res = {}
    for b in json.loads(out)["benchmarks"]:
        name = b["name"].replace("/real_time", "")
        if name.startswith("batch/"):
            res[name] = ("ns per malloc+free", b["real_time"] / 100.0, "low")
        elif "items_per_second" in b and not name.startswith("pair"):
            res[name] = ("M ops/s", b["items_per_second"] / 1e6, "high")
        else:
            res[name] = ("ns per op", b["real_time"], "low")
    return res


def rss_workload(preload):
    out = run([RSS], preload)
    vals = dict((k, float(v)) for k, v in re.findall(r"(\w+) (\d+)", out))
    return {
        "churn-then-free: peak RSS": ("MiB", vals["peak_rss_kb"] / 1024, "low"),
        "churn-then-free: RSS 1 s after free": ("MiB", vals["rss_1s_kb"] / 1024, "low"),
        "churn-then-free: time": ("ms", vals["time_ms"], "low"),
    }


def versions(allocs):
    lines = []
    for name, path in allocs:
        if name == "gort":
            rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                 capture_output=True, text=True).stdout.strip()
            lines.append("gort %s (this tree)" % (rev or "?"))
        elif name in PACKAGES:
            v = subprocess.run(["dpkg-query", "-W", "-f=${Version}", PACKAGES[name]],
                               capture_output=True, text=True).stdout.strip()
            lines.append("%s %s (Debian package %s)" % (name, v or "?", PACKAGES[name]))
        else:
            lines.append("%s %s" % (name, path))
    return lines


def machine():
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") >> 30
    thp = "?"
    try:
        thp = open("/sys/kernel/mm/transparent_hugepage/enabled").read().strip()
    except OSError:
        pass
    return "%s, %d CPUs, %d GiB, Linux %s, THP %s" % (model, os.cpu_count(), mem,
                                                       platform.release(), thp)


def main():
    ap = argparse.ArgumentParser(description="Compare allocators side by side.")
    ap.add_argument("--quick", action="store_true", help="fewer runs, shorter timings")
    ap.add_argument("--runs", type=int, help="rounds (default 3 quick, 7 full)")
    ap.add_argument("--allocator", action="append", default=[], metavar="NAME=PATH",
                    help="add an allocator .so to the comparison")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    a = ap.parse_args()
    runs = a.runs if a.runs is not None else (3 if a.quick else 7)
    if runs < 1:
        die("--runs must be at least 1")
    allocs = []
    for name, path in PEERS:
        if path and not os.path.exists(path):
            print("bench: skipping %s: %s not found" % (name, path), file=sys.stderr)
            continue
        allocs.append((name, path))
    for spec in a.allocator:
        if "=" not in spec:
            die("--allocator wants NAME=/path/lib.so, got %r" % spec)
        name, path = spec.split("=", 1)
        if not os.path.isfile(path):
            die("--allocator %s: no such file %s" % (name, path))
        allocs.append((name, os.path.abspath(path)))
    for exe in (MICRO, RSS):
        if not os.path.exists(exe):
            die("%s is missing: run make first" % exe)
    min_time = 0.1 if a.quick else 0.4
    benches = micro_names()

    samples = {}  # metric -> alloc -> [values]
    meta = {}

    def record(name, results):
        for metric, (unit, value, better) in results.items():
            meta[metric] = (unit, better)
            samples.setdefault(metric, {}).setdefault(name, []).append(value)

    for r in range(runs):
        order = allocs[r % len(allocs):] + allocs[:r % len(allocs)]
        print("bench: round %d/%d" % (r + 1, runs), file=sys.stderr)
        for bench in benches:
            for name, path in order:
                record(name, micro(path, min_time, bench))
        for name, path in order:
            record(name, rss_workload(path))

    names = [n for n, _ in allocs]
    rows = []
    for metric, per in samples.items():
        unit, better = meta[metric]
        med = {n: statistics.median(per[n]) for n in names if n in per}
        best = min(med.values()) if better == "low" else max(med.values())
        cells = []
        for n in names:
            v = per.get(n)
            if not v:
                cells.append("-")
                continue
            m = med[n]
            ratio = (m / best) if better == "low" else (best / m if m else float("inf"))
            mark = " **best**" if m == best else ""
            cells.append("%.3g (%.3g-%.3g) x%.2f%s" % (m, min(v), max(v), ratio, mark))
        rows.append((metric, unit, better, cells, med))

    os.makedirs(a.out, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d")
    kind = "quick" if a.quick else "full"
    report = os.path.join(a.out, "alloc-%s.md" % kind)
    lines = ["# Allocator comparison (%s)" % kind, "",
             "- date: %s" % stamp,
             "- machine: %s" % machine(),
             "- runs: %d rounds, allocators interleaved each round; cells are median "
             "(min-max) and the ratio to the best median of this run (x1.00 = best)" % runs,
             "- command: `bench/run.py %s`" % " ".join(sys.argv[1:]), ""]
    lines += ["Versions:", ""] + ["- " + v for v in versions(allocs)] + [""]
    lines.append("| benchmark | unit | " + " | ".join(names) + " |")
    lines.append("|---|---|" + "---|" * len(names))
    for metric, unit, better, cells, _ in rows:
        lines.append("| %s | %s (%s is better) | %s |" % (metric, unit, "lower" if better == "low" else "higher", " | ".join(cells)))
    lines.append("")
    chart = chart_png(rows, names, os.path.join(a.out, "alloc-%s.png" % kind))
    if chart:
        lines += ["![ratios to the best](%s)" % os.path.basename(chart), ""]
    text = "\n".join(lines)
    with open(report, "w") as f:
        f.write(text)
    print(text)
    print("bench: wrote %s" % report, file=sys.stderr)


def chart_png(rows, names, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    metrics = [r[0] for r in rows]
    fig, ax = plt.subplots(figsize=(12, max(4, 0.32 * len(metrics) * len(names) / 2)))
    height = 0.8 / len(names)
    for i, n in enumerate(names):
        vals = []
        for metric, unit, better, cells, med in rows:
            best = min(med.values()) if better == "low" else max(med.values())
            m = med.get(n)
            vals.append(0 if m is None else (m / best if better == "low" else best / m))
        ax.barh([k + i * height for k in range(len(metrics))], vals, height, label=n)
    ax.set_yticks([k + 0.4 - height / 2 for k in range(len(metrics))])
    ax.set_yticklabels(metrics, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xlabel("cost relative to the best allocator (1 = best, lower is better; log scale)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
