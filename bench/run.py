#!/usr/bin/python3
"""gort's benchmark harness: `gort bench`, `make run` (quick) and `make bench`.

    bench/run.py [--quick] [--runs N] [--workloads a,b] [--allocators a,b]
                 [--allocator NAME=/path/lib.so ...] [--add-workload NAME=/path/prog ...]
                 [--out DIR]

A workload is a program that does one kind of work, checks its own results
and prints its figures on stdout, one per line (bench/workloads/*.cc):

    result <metric> <value> <unit> <lower|higher>
    series <name> <x> <y>

It exits 0, or non-zero when its self-check failed: the harness then reports
FAILED for that run, never a number. Each workload names its peer set: the
allocator workloads run the same binary once per allocator, chosen with
LD_PRELOAD (glibc is the run without it); the collector and scheduler
workloads of later subsystems name their own peers (Go, Boehm GC,
Boost.Fiber programs) the same way, through Workload.peers().

Method: every round runs every workload on every peer back to back, the peer
order rotating from round to round, so that a shared machine's drift hits all
peers alike. Per metric the report gives the median over rounds, the min-max
spread and the ratio to the best median of the same run; it adds the wall
time and the peak RSS of each run, measured by the harness with wait4(). The
report (Markdown) and its charts (PNG, matplotlib) go to --out.
"""
import argparse
import datetime
import json
import os
import platform
import re
import selectors
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("GORT_BUILD_DIR", os.path.join(ROOT, "build"))
LIBDIR = "/usr/lib/x86_64-linux-gnu"


class Failure(Exception):
    pass


def die(msg):
    print("gort bench: " + msg, file=sys.stderr)
    sys.exit(2)


# ---- running one program -------------------------------------------------

def run_measured(cmd, env_extra, timeout=900):
    """Runs cmd; returns (exit code, stdout, stderr, wall seconds, peak RSS KiB)."""
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    env.update(env_extra)
    start = time.monotonic()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = b"", b""
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    sel.register(p.stderr, selectors.EVENT_READ)
    open_fds = 2
    while open_fds:
        if time.monotonic() - start > timeout:
            p.kill()
            raise Failure("timed out after %d s" % timeout)
        for key, _ in sel.select(timeout=1):
            data = os.read(key.fileobj.fileno(), 65536)
            if not data:
                sel.unregister(key.fileobj)
                open_fds -= 1
            elif key.fileobj is p.stdout:
                out += data
            else:
                err += data
    # wait4 instead of Popen.wait: it also gives this child's own rusage.
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - start
    return p.returncode, out.decode(errors="replace"), err.decode(errors="replace"), wall, ru.ru_maxrss


def parse_figures(out):
    results, series = {}, {}
    for line in out.splitlines():
        f = line.split()
        if len(f) == 5 and f[0] == "result" and f[4] in ("lower", "higher"):
            results[f[1]] = (f[3], float(f[2]), "low" if f[4] == "lower" else "high")
        elif len(f) == 4 and f[0] == "series":
            series.setdefault(f[1], []).append((float(f[2]), float(f[3])))
        elif line.strip():
            raise Failure("unexpected output line: %r" % line[:200])
    return results, series


# ---- peers ---------------------------------------------------------------

ALLOCATORS = [
    ("gort", os.path.join(BUILD, "lib", "libgort.so"), None),
    ("glibc", "", "libc6"),
    ("jemalloc", os.path.join(LIBDIR, "libjemalloc.so.2"), "libjemalloc2"),
    ("mimalloc", os.path.join(LIBDIR, "libmimalloc.so.2"), "libmimalloc2.0"),
    ("tcmalloc", os.path.join(LIBDIR, "libtcmalloc_minimal.so.4"), "libgoogle-perftools4"),
]


def check_preloadable(name, path):
    """ld.so only warns about a preload it cannot load; make that an error."""
    code, out, err, _, _ = run_measured(["/bin/true"], {"LD_PRELOAD": path}, timeout=30)
    if code != 0 or "cannot be preloaded" in err or "ERROR: ld.so" in err:
        die("--allocator %s=%s cannot be loaded: %s" % (name, path, err.strip() or "exit %d" % code))


# ---- workloads -----------------------------------------------------------

class Workload:
    """An allocator workload: one binary, run under each allocator."""

    def __init__(self, name, path, about, quick=True):
        self.name, self.path, self.about, self.quick = name, path, about, quick

    def peers(self, allocators):
        return [(n, [self.path], {"LD_PRELOAD": p} if p else {}) for n, p in allocators]

    def run(self, cmd, env, scale):
        env = dict(env, GORT_BENCH_SCALE="%g" % scale)
        code, out, err, wall, maxrss = run_measured(cmd, env)
        if code != 0:
            raise Failure("exit %d: %s" % (code, err.strip()[-400:]))
        results, series = parse_figures(out)
        if not results:
            raise Failure("printed no result lines")
        results["wall"] = ("s", wall, "low")
        results["peak_rss_wait4"] = ("MiB", maxrss / 1024.0, "low")
        return results, series


class MicroWorkload(Workload):
    """The Google Benchmark micro benchmarks, one run per benchmark."""

    QUICK = ["pair/16", "pair/64", "pair/1024", "pair/8192", "batch/64", "cross_thread/real_time",
             "churn/real_time/threads:8"]

    def __init__(self, path):
        super().__init__("micro", path, "Google Benchmark micro benchmarks (bench/micro)")

    def run(self, cmd, env, scale):
        names = self.QUICK if scale <= 1 else self.all_names(cmd)
        results = {}
        for n in names:
            code, out, err, _, _ = run_measured(
                cmd + ["--benchmark_format=json", "--benchmark_min_time=%g" % (0.1 * scale),
                       "--benchmark_filter=^%s$" % re.escape(n)], env)
            if code != 0:
                raise Failure("%s: exit %d: %s" % (n, code, err.strip()[-300:]))
            for b in json.loads(out)["benchmarks"]:
                key = b["name"].replace("/real_time", "")
                if key.startswith("batch/"):
                    results[key] = ("ns per malloc+free", b["real_time"] / 100.0, "low")
                elif "items_per_second" in b and not key.startswith("pair"):
                    results[key] = ("M ops/s", b["items_per_second"] / 1e6, "high")
                else:
                    results[key] = ("ns", b["real_time"], "low")
        return results, {}

    def all_names(self, cmd):
        code, out, _, _, _ = run_measured(cmd + ["--benchmark_list_tests"], {})
        return [l.strip() for l in out.splitlines() if l.strip()]


def builtin_workloads():
    w = lambda n: os.path.join(BUILD, "bench", "workloads", n)
    return [
        Workload("larson", w("larson"), "larson-like server: blocks freed by the next generation of threads"),
        Workload("prodcons", w("prodcons"), "4 producers allocate, 4 consumers verify and free"),
        Workload("false_sharing", w("false_sharing"), "small objects written by threads other than their allocator's"),
        Workload("churn", w("churn"), "8 threads, random log-distributed sizes, bounded live set"),
        Workload("realloc_growth", w("realloc_growth"), "buffers grown by doubling and by small steps"),
        Workload("short_threads", w("short_threads"), "2000 short-lived threads"),
        Workload("memory_return", w("memory_return"), "RSS over time after freeing most memory"),
        Workload("fragmentation", w("fragmentation"), "free 90% of small objects at random, then allocate large blocks"),
        Workload("churn_then_free", w("rss_after_free"), "4 threads churn ~256 MiB, free it all, RSS 1 s later"),
        MicroWorkload(os.path.join(BUILD, "bench", "micro", "malloc_bench")),
    ]


# ---- the report ----------------------------------------------------------

def versions(allocators):
    lines = []
    pkgs = {n: pkg for n, _, pkg in ALLOCATORS}
    for name, path in allocators:
        if name == "gort":
            rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                 capture_output=True, text=True).stdout.strip()
            lines.append("gort %s (this tree)" % (rev or "?"))
        elif pkgs.get(name):
            v = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkgs[name]],
                               capture_output=True, text=True).stdout.strip()
            lines.append("%s %s (Debian package %s)" % (name, v or "?", pkgs[name]))
        else:
            lines.append("%s %s" % (name, path))
    gxx = subprocess.run(["g++", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    lines.append("compiler: " + gxx)
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
    try:
        thp = open("/sys/kernel/mm/transparent_hugepage/enabled").read().strip()
    except OSError:
        thp = "?"
    return "%s, %d CPUs, %d GiB, Linux %s, THP %s" % (model, os.cpu_count(), mem, platform.release(), thp)


def summarize(samples, names):
    """samples: metric -> peer -> [values]; returns rows for the tables."""
    rows = []
    for metric, (unit, better, per) in samples.items():
        med = {n: statistics.median(per[n]) for n in names if per.get(n)}
        if not med:
            continue
        best = min(med.values()) if better == "low" else max(med.values())
        cells, ratios = [], {}
        for n in names:
            v = per.get(n)
            if not v:
                cells.append("-")
                continue
            m = med[n]
            r = (m / best if best else 1.0) if better == "low" else (best / m if m else float("inf"))
            ratios[n] = r
            cells.append("%.3g (%.3g-%.3g) x%.2f%s" % (m, min(v), max(v), r, " **best**" if m == best else ""))
        rows.append((metric, unit, better, cells, ratios))
    return rows


def write_report(out_dir, kind, args, runs, names, allocators, workloads, samples, series, failures):
    os.makedirs(out_dir, exist_ok=True)
    charts = os.path.join(out_dir, "charts-%s" % kind)
    os.makedirs(charts, exist_ok=True)
    L = ["# Allocator benchmarks (%s)" % kind, "",
         "- date: %s" % datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
         "- machine: %s" % machine(),
         "- method: %d rounds; in each round every workload runs on every allocator back to back, "
         "the order rotating each round. Cells: median (min-max) and the ratio to the best median "
         "of this run (x1.00 = best). `wall` and `peak_rss_wait4` are measured by the harness "
         "(wait4), the rest are the workload's own figures." % runs,
         "- command: `gort bench %s`" % " ".join(args), "", "Versions:", ""]
    L += ["- " + v for v in versions(allocators)] + [""]
    if failures:
        L += ["## Failures", "", "These runs failed (a failed self-check is not a number):", ""]
        L += ["- **FAILED** %s on %s, round %d: %s" % f for f in failures] + [""]
    # Headline: each workload's own figures, ratio only.
    L += ["## Summary (ratio to the best; lower is better)", ""]
    L += ["| workload: figure | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    per_workload = {}
    for w in workloads:
        rows = summarize(samples.get(w.name, {}), names)
        per_workload[w.name] = rows
        for metric, unit, better, cells, ratios in rows:
            if metric in ("wall", "peak_rss_wait4") and w.name != "micro":
                continue
            L.append("| %s: %s | %s |" % (w.name, metric, " | ".join(
                ("%.2f" % ratios[n]) + (" **best**" if ratios[n] == 1.0 else "") if n in ratios else "FAILED"
                for n in names)))
    L.append("")
    for w in workloads:
        rows = per_workload[w.name]
        L += ["## %s" % w.name, "", w.about, ""]
        if not rows:
            L += ["No successful runs.", ""]
            continue
        L += ["| figure | unit | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
        for metric, unit, better, cells, _ in rows:
            L.append("| %s | %s, %s is better | %s |" % (metric, unit, "lower" if better == "low" else "higher",
                                                      " | ".join(cells)))
        L.append("")
        png = chart_bars(os.path.join(charts, "%s.png" % w.name), w.name, rows, names)
        if png:
            L += ["![%s](%s)" % (w.name, os.path.relpath(png, out_dir)), ""]
        for sname, per in sorted(series.get(w.name, {}).items()):
            png = chart_lines(os.path.join(charts, "%s-%s.png" % (w.name, sname)), w.name, sname, per, names)
            if png:
                L += ["![%s %s](%s)" % (w.name, sname, os.path.relpath(png, out_dir)), ""]
    path = os.path.join(out_dir, "alloc-%s.md" % kind)
    with open(path, "w") as f:
        f.write("\n".join(L))
    return path, "\n".join(L)


def _plt():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        return plt
    except ImportError:
        return None


def chart_bars(path, title, rows, names):
    plt = _plt()
    if not plt or not rows:
        return None
    metrics = [r[0] for r in rows]
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.25 * len(metrics) * len(names)))
    h = 0.8 / len(names)
    for i, n in enumerate(names):
        vals = [r[4].get(n, 0) for r in rows]
        ax.barh([k + i * h for k in range(len(metrics))], vals, h, label=n)
    ax.set_yticks([k + 0.4 - h / 2 for k in range(len(metrics))])
    ax.set_yticklabels(metrics, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("ratio to the best allocator (1 = best; lower is better; log scale)")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def chart_lines(path, title, sname, per, names):
    plt = _plt()
    if not plt:
        return None
    fig, ax = plt.subplots(figsize=(8, 4))
    for n in names:
        pts = per.get(n)
        if pts:
            ax.plot([x for x, _ in pts], [y for _, y in pts], marker=".", label=n)
    ax.set_xlabel("ms after freeing")
    ax.set_ylabel(sname)
    ax.set_title("%s: %s (median run)" % (title, sname))
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


# ---- main ----------------------------------------------------------------

def parse_args(argv):
    ap = argparse.ArgumentParser(prog="gort bench", description="Compare allocators side by side.")
    ap.add_argument("--quick", action="store_true", help="3 rounds at scale 1 (default: 5 rounds at scale 4)")
    ap.add_argument("--runs", help="rounds (a positive integer)")
    ap.add_argument("--workloads", help="comma-separated workload names (default: all)")
    ap.add_argument("--allocators", help="comma-separated allocator names to run (default: all found)")
    ap.add_argument("--allocator", action="append", default=[], metavar="NAME=PATH",
                    help="add an allocator .so to the comparison (repeatable)")
    ap.add_argument("--add-workload", action="append", default=[], metavar="NAME=PATH",
                    help="add a workload program that follows the output protocol (repeatable)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"), help="report directory")
    a = ap.parse_args(argv)
    if a.runs is not None and not re.fullmatch(r"[1-9][0-9]{0,3}", a.runs):
        die("--runs wants a positive integer, got %r" % a.runs)
    return a


def main(argv):
    a = parse_args(argv)
    runs = int(a.runs) if a.runs else (3 if a.quick else 5)
    scale = 1.0 if a.quick else 4.0

    allocators = []
    for name, path, _ in ALLOCATORS:
        if path and not os.path.exists(path):
            print("gort bench: skipping %s: %s not found" % (name, path), file=sys.stderr)
            continue
        allocators.append((name, path))
    for spec in a.allocator:
        name, _, path = spec.partition("=")
        if not name or not path:
            die("--allocator wants NAME=/path/lib.so, got %r" % spec)
        if not os.path.isfile(path):
            die("--allocator %s: no such file: %s" % (name, path))
        path = os.path.abspath(path)
        check_preloadable(name, path)
        allocators = [x for x in allocators if x[0] != name] + [(name, path)]
    if a.allocators:
        want = a.allocators.split(",")
        known = [n for n, _ in allocators]
        for n in want:
            if n not in known:
                die("unknown allocator %r (known: %s)" % (n, ", ".join(known)))
        allocators = [x for x in allocators if x[0] in want]
    if not allocators:
        die("no allocators to compare")

    workloads = builtin_workloads()
    for spec in a.add_workload:
        name, _, path = spec.partition("=")
        if not name or not path:
            die("--add-workload wants NAME=/path/program, got %r" % spec)
        if not os.access(path, os.X_OK):
            die("--add-workload %s: not an executable: %s" % (name, path))
        workloads.append(Workload(name, os.path.abspath(path), "user workload %s" % path))
    if a.workloads:
        want = a.workloads.split(",")
        known = [w.name for w in workloads]
        for n in want:
            if n not in known:
                die("unknown workload %r (known: %s)" % (n, ", ".join(known)))
        workloads = [w for w in workloads if w.name in want]
    for w in workloads:
        if not os.path.exists(w.path):
            die("%s is missing: run make first" % w.path)

    names = [n for n, _ in allocators]
    samples = {}  # workload -> metric -> (unit, better, peer -> [values])
    series = {}   # workload -> series -> peer -> points (of the median run by wall time)
    series_all = {}
    failures = []
    for r in range(runs):
        print("gort bench: round %d/%d" % (r + 1, runs), file=sys.stderr)
        for w in workloads:
            peers = w.peers(allocators)
            k = r % len(peers)
            for name, cmd, env in peers[k:] + peers[:k]:
                try:
                    results, ser = w.run(cmd, env, scale)
                except Failure as e:
                    failures.append((w.name, name, r + 1, str(e)))
                    print("gort bench: FAILED %s on %s: %s" % (w.name, name, e), file=sys.stderr)
                    continue
                for metric, (unit, value, better) in results.items():
                    samples.setdefault(w.name, {}).setdefault(metric, (unit, better, {}))[2].setdefault(name, []).append(value)
                for sname, pts in ser.items():
                    series_all.setdefault(w.name, {}).setdefault(sname, {}).setdefault(name, []).append(
                        (results.get("wall", ("", 0, ""))[1], pts))
    for wname, per_s in series_all.items():
        for sname, per_peer in per_s.items():
            for peer, runs_pts in per_peer.items():
                runs_pts.sort(key=lambda t: t[0])
                series.setdefault(wname, {}).setdefault(sname, {})[peer] = runs_pts[len(runs_pts) // 2][1]

    kind = "quick" if a.quick else "full"
    path, text = write_report(a.out, kind, argv, runs, names, allocators, workloads, samples, series, failures)
    print(text)
    print("gort bench: wrote %s" % path, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
