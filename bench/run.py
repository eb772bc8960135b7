#!/usr/bin/python3
"""gort's benchmark harness: `gort bench`, `make run` (quick) and `make bench`.

    bench/run.py [--quick] [--runs N] [--workloads a,b] [--allocators a,b]
                 [--allocator NAME=/path/lib.so ...] [--add-workload NAME=/path/prog ...]
                 [--sched-peers a,b] [--gc-peers a,b] [--maxprocs 1,2] [--out DIR]

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

The scheduler workloads (SchedWorkload: spawn, parked, yield, pingpong,
skynet, sieve) are three programs each, doing the same work: gort's
(build/bench/workloads/sched_NAME, GORT_MAXPROCS), Go's
(build/bench/peers/go/NAME, GOMAXPROCS) and Boost.Fiber's
(build/bench/peers/fiber/NAME, FIBER_THREADS), each run with every --maxprocs
value (default 1 and 2). A peer program that was not built (no Go toolchain,
say) is reported missing, not run. They get their own report, sched-KIND.md:
each figure per MAXPROCS, the speed-up from 1 to 2 for skynet and sieve, and
gort's ratio to Go and to Boost.Fiber against the target (gort at or below Go).

The garbage collector workloads (GcWorkload: binarytrees, livechurn) work
the same way, with Boehm GC in Boost.Fiber's place: gort's
(build/bench/workloads/gc_NAME), Go's (build/bench/peers/go/NAME) and Boehm
GC's (build/bench/peers/boehm/NAME, GC_MARKERS), run at MAXPROCS 2 unless
--maxprocs is given (--gc-peers picks the peers). Their report, gc-KIND.md,
gives each figure against the best peer and judges gort's medians against
its targets: binarytrees' time at or below Boehm's and within 1.5x of Go's
(peak RSS beside them), livechurn's longest stop-the-world pause at most
1 ms, and its pauses and slowest mutator operation at or below Go's.

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

# Two homes: the source tree (bench/run.py, programs under build/) and an
# installed copy (`make install`: PREFIX/libexec/gort/run.py beside the
# programs it runs, bench/..., and a REVISION file; libgort.so in PREFIX/lib).
# `gort bench` sets GORT_BUILD_DIR and GORT_LIB_DIR for either.
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
INSTALLED = os.path.isfile(os.path.join(HERE, "REVISION"))
BUILD = os.environ.get("GORT_BUILD_DIR", HERE if INSTALLED else os.path.join(ROOT, "build"))
GORT_LIB = os.environ.get("GORT_LIB_DIR", os.path.join(ROOT, "..", "lib") if INSTALLED
                          else os.path.join(BUILD, "lib"))
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
    ("gort", os.path.join(GORT_LIB, "libgort.so"), None),
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

    # --quick runs every workload at a fraction of scale 1 so that `make run`
    # (build and quick run together) stays within 3 minutes on 2 cores: a
    # smoke comparison, not a measurement. quick_scale is that fraction;
    # quick_rounds caps the rounds of a workload whose cost is mostly fixed
    # (memory_return sleeps 2 s whatever the scale).
    def __init__(self, name, path, about, quick_scale=0.1, quick_rounds=None):
        self.name, self.path, self.about = name, path, about
        self.quick_scale, self.quick_rounds = quick_scale, quick_rounds

    def peers(self, allocators):
        return [(n, [self.path], {"LD_PRELOAD": p} if p else {}) for n, p in allocators]

    def effective_scale(self, scale):
        # scale is 1 in --quick mode, 4 in a full run; quick_scale trims --quick only.
        return self.quick_scale * scale if scale <= 1 else scale

    def run(self, cmd, env, scale):
        env = dict(env, GORT_BENCH_SCALE="%g" % self.effective_scale(scale))
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
                cmd + ["--benchmark_format=json",
                       "--benchmark_min_time=%g" % (0.1 * self.effective_scale(scale)),
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
        Workload("churn", w("churn"), "8 threads, random log-distributed sizes, bounded live set",
                 quick_rounds=1),
        Workload("realloc_growth", w("realloc_growth"), "buffers grown by doubling and by small steps",
                 quick_rounds=1),
        Workload("short_threads", w("short_threads"), "2000 short-lived threads"),
        Workload("memory_return", w("memory_return"), "RSS over time after freeing most memory",
                 quick_scale=0.25, quick_rounds=1),
        Workload("fragmentation", w("fragmentation"), "free 90% of small objects at random, then allocate large blocks"),
        Workload("churn_then_free", w("rss_after_free"), "4 threads churn ~256 MiB, free it all, RSS 1 s later",
                 quick_rounds=1),
        MicroWorkload(os.path.join(BUILD, "bench", "micro", "malloc_bench")),
    ] + sched_workloads() + gc_workloads()


# ---- peer workloads: the scheduler's and the collector's ----------------

def peer_label(peer, procs):
    return "%s P=%d" % (peer, procs)


class PeerWorkload(Workload):
    """The same work written once per peer (gort's program, Go's, ...), each
    program run once per MAXPROCS value. Peer labels are "PEER P=N". PEERS is
    the subclass's peer table: (name, path of a workload's program, the
    environment variable that sets its number of Ps, hint when not built)."""

    PEERS = []
    PROCS = [1, 2]  # the default MAXPROCS values

    def __init__(self, name, about, quick_scale=0.1, speedup=None):
        super().__init__(name, self.PEERS[0][1](name), about, quick_scale)
        self.speedup = speedup          # the time metric whose 1 -> N speed-up the report gives
        self.peer_names = [n for n, _, _, _ in self.PEERS]
        self.procs = list(self.PROCS)
        self.missing = []               # (peer, path, hint) of programs that were not built

    def configure(self, peer_names, procs):
        self.peer_names, self.procs = peer_names, procs
        self.missing = []
        for peer, path_of, _, hint in self.PEERS:
            if peer in peer_names and not os.access(path_of(self.name), os.X_OK):
                self.missing.append((peer, path_of(self.name), hint))

    def peers(self, allocators):
        out = []
        gone = {m[0] for m in self.missing}
        for procs in self.procs:
            for peer, path_of, var, _ in self.PEERS:
                if peer in self.peer_names and peer not in gone:
                    out.append((peer_label(peer, procs), [path_of(self.name)], {var: str(procs)}))
        return out


# ---- scheduler workloads -------------------------------------------------

# The scheduler peers: name, program path for a workload, the environment
# variable that sets its number of Ps (threads running tasks), what provides it.
SCHED_PEERS = [
    ("gort", lambda w: os.path.join(BUILD, "bench", "workloads", "sched_" + w), "GORT_MAXPROCS",
     "`make sched-benches` builds it; it needs the scheduler in build/lib/libgort.a"),
    ("go", lambda w: os.path.join(BUILD, "bench", "peers", "go", w), "GOMAXPROCS",
     "`make sched-benches` builds it; it needs `go`: `make deps` installs golang-go"),
    ("fiber", lambda w: os.path.join(BUILD, "bench", "peers", "fiber", w), "FIBER_THREADS",
     "`make sched-benches` builds it; it needs Boost.Fiber: `make deps` installs libboost-fiber-dev"),
]
SCHED_PEER_NAMES = [n for n, _, _, _ in SCHED_PEERS]


class SchedWorkload(PeerWorkload):
    """A scheduler workload: the same work as a gort, a Go and a Boost.Fiber
    program, each run once per MAXPROCS value (default 1 and 2)."""

    PEERS = SCHED_PEERS


def sched_workloads():
    return [
        SchedWorkload("spawn", "spawn and join N trivial tasks (50000 x scale): all at once (spawn_ns), "
                      "then in batches of 100 (spawn_batch_ns)"),
        SchedWorkload("parked", "N tasks (250000 x scale: 1M in a full run, 10000 in --quick) parked on "
                      "a channel receive: RSS per parked task; then all released by a close and joined",
                      quick_scale=0.04),
        SchedWorkload("yield", "two tasks yielding in a loop (500000 x scale yields each): wall time per yield"),
        SchedWorkload("pingpong", "two tasks passing a value over two unbuffered channels "
                      "(200000 x scale round trips)"),
        SchedWorkload("skynet", "a 10-ary tree of tasks (100000 leaves, 1M in a full run) summing "
                      "its leaves over unbuffered channels", speedup="time"),
        SchedWorkload("sieve", "concurrent prime sieve, a chain of filter tasks joined by unbuffered "
                      "channels: the first 1000 x scale primes", speedup="time"),
    ]


# ---- collector workloads -------------------------------------------------

# The collector peers, as SCHED_PEERS: Boehm GC's number of Ps is its number
# of parallel mark threads.
GC_PEERS = [
    ("gort", lambda w: os.path.join(BUILD, "bench", "workloads", "gc_" + w), "GORT_MAXPROCS",
     "`make gc-benches` builds it"),
    ("go", lambda w: os.path.join(BUILD, "bench", "peers", "go", w), "GOMAXPROCS",
     "`make gc-benches` builds it; it needs `go`: `make deps` installs golang-go"),
    ("boehm", lambda w: os.path.join(BUILD, "bench", "peers", "boehm", w), "GC_MARKERS",
     "`make gc-benches` builds it; it needs Boehm GC: `make deps` installs libgc-dev"),
]
GC_PEER_NAMES = [n for n, _, _, _ in GC_PEERS]


class Target:
    """A goal for gort's median of one metric, judged in the GC report: with
    vs=None, at most `limit` (in `unit`); else gort's cost relative to peer
    vs at most `limit` (1: at or below it). limit=None: reported, not judged."""

    def __init__(self, metric, vs=None, limit=None, unit=""):
        self.metric, self.vs, self.limit, self.unit = metric, vs, limit, unit

    def text(self):
        if self.vs is None:
            return "%s at most %s %s" % (self.metric, fmt_num(self.limit), self.unit)
        if self.limit is None:
            return "%s vs %s's" % (self.metric, self.vs)
        if self.limit == 1:
            return "%s at or below %s's" % (self.metric, self.vs)
        return "%s within %gx of %s's" % (self.metric, self.limit, self.vs)


class GcWorkload(PeerWorkload):
    """A collector workload: the same work as a gort, a Go and a Boehm GC
    program, each run once per MAXPROCS value (default 2 only); targets are
    the Targets the report judges it by."""

    PEERS = GC_PEERS
    PROCS = [2]

    def __init__(self, name, about, targets=()):
        super().__init__(name, about, quick_scale=0.25)
        self.targets = list(targets)


def gc_workloads():
    return [
        GcWorkload("binarytrees", "binary-trees (the Benchmarks Game, single-threaded): depth 21 in a "
                   "full run, 13 in --quick; allocation-bound GC throughput and peak RSS",
                   [Target("time_ms", "boehm", 1.0), Target("time_ms", "go", 1.5),
                    Target("peak_rss_wait4", "boehm"), Target("peak_rss_wait4", "go")]),
        GcWorkload("livechurn", "a live set of 1 KiB objects (200 MiB in a full run, 12.5 MiB in --quick) "
                   "under churn: stop-the-world pauses and the worst latency a mutator operation sees",
                   [Target("pause_max_us", None, 1000.0, "us"), Target("pause_max_us", "go", 1.0),
                    Target("pause_p99_us", "go", 1.0), Target("op_max_us", "go", 1.0)]),
    ]


# ---- the report ----------------------------------------------------------

def versions(allocators):
    lines = []
    pkgs = {n: pkg for n, _, pkg in ALLOCATORS}
    for name, path in allocators:
        if name == "gort":
            lines.append("gort %s" % _gort_rev())
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
    once = [w.name for w in workloads if w.quick_rounds is not None]
    if kind == "quick" and once:
        # Their cost is mostly fixed (sleeps, first touches): one round keeps
        # `make run` short; their cells are single samples.
        L[4] += " In --quick, %s run %s only." % (", ".join(once), "in the first round")
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


def chart_bars(path, title, rows, names,
               xlabel="ratio to the best allocator (1 = best; lower is better; log scale)"):
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
    ax.set_xlabel(xlabel)
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


# ---- the scheduler and collector reports --------------------------------

def _out(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _gort_rev():
    if INSTALLED:
        with open(os.path.join(HERE, "REVISION")) as f:
            return "%s (installed in %s)" % (f.read().strip() or "?", os.path.dirname(ROOT))
    return "%s (this tree)" % (_out(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]) or "?")


def _compiler():
    gxx = subprocess.run(["g++", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    return "compiler: " + gxx


def sched_versions(peers):
    lines = []
    for peer in peers:
        if peer == "gort":
            lines.append("gort %s: bench/workloads/sched_*.cc, GORT_MAXPROCS" % _gort_rev())
        elif peer == "go":
            v = _out(["go", "version"])
            lines.append("go: %s: bench/peers/go, GOMAXPROCS" % (v or "no go command"))
        elif peer == "fiber":
            v = _out(["dpkg-query", "-W", "-f=${Version}", "libboost-fiber-dev"])
            idle = ("sleep (FIBER_SUSPEND=1)" if os.environ.get("FIBER_SUSPEND") == "1"
                    else "spin (work_stealing's default)")
            lines.append("fiber: Boost.Fiber %s (Debian package libboost-fiber-dev): bench/peers/fiber, "
                         "FIBER_THREADS (1: round_robin; N > 1: work_stealing on N threads, idle threads "
                         "%s), 8 KiB fixedsize stacks" % (v or "?", idle))
    lines.append(_compiler())
    return lines


def gc_versions(peers):
    lines = []
    for peer in peers:
        if peer == "gort":
            lines.append("gort %s: bench/workloads/gc_*.cc, GORT_MAXPROCS, GORT_GC=%s"
                         % (_gort_rev(), os.environ.get("GORT_GC") or "unset (100)"))
        elif peer == "go":
            v = _out(["go", "version"])
            lines.append("go: %s: bench/peers/go, GOMAXPROCS, GOGC=%s"
                         % (v or "no go command", os.environ.get("GOGC") or "unset (100)"))
        elif peer == "boehm":
            v = _out(["dpkg-query", "-W", "-f=${Version}", "libgc-dev"])
            lines.append("boehm: Boehm GC %s (Debian package libgc-dev): bench/peers/boehm, GC_MARKERS "
                         "(parallel mark threads), default settings otherwise" % (v or "?"))
    lines.append(_compiler())
    return lines


def fmt_num(v):
    a = abs(v)
    if a >= 1000:
        return "%.0f" % v
    if a >= 100:
        return "%.1f" % v
    return "%.3g" % v


def peer_rows(w, samples, peers):
    """Rows of one peer workload: (figure, P, unit, better, {peer: [values]},
    {peer: median}), one per figure and MAXPROCS, then the speed-ups."""
    rows = []
    per_metric = samples.get(w.name, {})
    procs = sorted(w.procs)
    for metric, (unit, better, per) in per_metric.items():
        for p in procs:
            vals = {peer: per[peer_label(peer, p)] for peer in peers if per.get(peer_label(peer, p))}
            if vals:
                rows.append((metric, str(p), unit, better, vals,
                             {peer: statistics.median(v) for peer, v in vals.items()}))
    if w.speedup and w.speedup in per_metric and len(procs) > 1:
        per = per_metric[w.speedup][2]
        for p in procs[1:]:
            med = {}
            for peer in peers:
                a, b = per.get(peer_label(peer, procs[0])), per.get(peer_label(peer, p))
                if a and b and statistics.median(b) > 0:
                    med[peer] = statistics.median(a) / statistics.median(b)
            if med:
                rows.append(("speed-up (%s)" % w.speedup, "%d->%d" % (procs[0], p), "x", "high", {}, med))
    return rows


def cost_ratio(a, b, better):
    """a's cost relative to b: < 1 means a is better, whichever way is better."""
    if better == "low":
        return a / b if b else float("inf")
    return b / a if a else float("inf")


def peer_report_head(title, args, runs, workloads, maxprocs_is, version_lines):
    """The top of a peer report: date, machine, method, command, versions."""
    procs = sorted({p for w in workloads for p in w.procs})
    speedups = any(w.speedup for w in workloads)
    L = [title, "",
         "- date: %s" % datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
         "- machine: %s" % machine(),
         "- method: %d rounds; in each round every workload runs every peer at every MAXPROCS (%s) "
         "back to back, the order rotating each round. MAXPROCS is %s. Cells: median (min-max) and "
         "the ratio to the best median at the same MAXPROCS (x1.00 = best).%s `wall` and "
         "`peak_rss_wait4` are measured by the harness (wait4), the rest are the programs' own "
         "figures, each program checks its own result."
         % (runs, ", ".join(str(p) for p in procs), maxprocs_is,
            " Speed-ups are the ratio of the medians." if speedups else ""),
         "- command: `gort bench %s`" % " ".join(args), "", "Versions:", ""]
    return L + ["- " + v for v in version_lines] + [""]


def peer_report_problems(workloads, failures):
    """The peers that were not built and the runs that failed."""
    L = []
    missing = {}  # peer -> ([workloads], hint, a path)
    for w in workloads:
        for peer, path, hint in w.missing:
            missing.setdefault(peer, ([], hint, path))[0].append(w.name)
    if missing:
        L += ["## Missing peers", "", "These programs were not built, so they did not run:", ""]
        L += ["- **missing** %s for %s (e.g. %s): %s" % (peer, ", ".join(ws), path, hint)
              for peer, (ws, hint, path) in missing.items()] + [""]
    if failures:
        L += ["## Failures", "", "These runs failed (a failed self-check is not a number):", ""]
        L += ["- **FAILED** %s on %s, round %d: %s" % f for f in failures] + [""]
    return L


def peer_summary(workloads, samples, peers, target):
    """The summary table: each figure's medians and gort's cost relative to
    every other peer; with target, each row judged against Go (gort at or
    below it). Returns (lines, rows per workload, rows met, rows judged)."""
    others = [p for p in peers if p != "gort"]
    with_gort = "gort" in peers
    ratio_cols = ["gort / %s" % p for p in others] if with_gort else []
    head = ["workload: figure", "P", "unit"] + peers + ratio_cols + (["target"] if target else [])
    L = ["| " + " | ".join(head) + " |", "|---|---|---|" + "---|" * (len(head) - 3)]
    per_workload, met, total = {}, 0, 0
    for w in workloads:
        rows = peer_rows(w, samples, peers)
        per_workload[w.name] = rows
        gone = {m[0] for m in w.missing}
        absent = lambda peer: "missing" if peer in gone else "FAILED"
        for metric, p, unit, better, _, med in rows:
            if metric in ("wall", "peak_rss_wait4"):
                continue
            cells = [fmt_num(med[peer]) if peer in med else absent(peer) for peer in peers]
            for o in others if with_gort else []:
                cells.append("%.2f" % cost_ratio(med["gort"], med[o], better)
                             if "gort" in med and o in med else "-")
            if target:
                if "gort" in med and "go" in med:
                    ok = cost_ratio(med["gort"], med["go"], better) <= 1.0
                    met += ok
                    total += 1
                    cells.append("met" if ok else "**missed**")
                else:
                    cells.append("-")
            L.append("| %s: %s | %s | %s | %s |" % (w.name, metric, p, unit, " | ".join(cells)))
    L.append("")
    return L, per_workload, met, total


def peer_sections(out_dir, charts, prefix, subsystem, workloads, per_workload, peers):
    """One section per workload: every figure with its spread and ratio to
    the best, and a chart of the ratios (charts/PREFIX-NAME.png)."""
    L = []
    for w in workloads:
        rows = per_workload[w.name]
        L += ["## %s" % w.name, "", w.about, ""]
        if not rows:
            L += ["No successful runs.", ""]
            continue
        L += ["| figure | P | unit | " + " | ".join(peers) + " |", "|---|---|---|" + "---|" * len(peers)]
        chart_rows = []
        gone = {m[0] for m in w.missing}
        for metric, p, unit, better, vals, med in rows:
            best = min(med.values()) if better == "low" else max(med.values())
            cells, ratios = [], {}
            for peer in peers:
                if peer not in med:
                    cells.append("missing" if peer in gone else "FAILED")
                    continue
                r = cost_ratio(med[peer], best, better) if best else 1.0
                ratios[peer] = r
                spread = (" (%s-%s)" % (fmt_num(min(vals[peer])), fmt_num(max(vals[peer])))
                          if peer in vals else "")
                cells.append("%s%s x%.2f%s" % (fmt_num(med[peer]), spread, r,
                                               " **best**" if med[peer] == best else ""))
            L.append("| %s | %s | %s, %s is better | %s |" % (
                metric, p, unit, "lower" if better == "low" else "higher", " | ".join(cells)))
            chart_rows.append(("%s P=%s" % (metric, p), unit, better, cells, ratios))
        L.append("")
        png = chart_bars(os.path.join(charts, "%s-%s.png" % (prefix, w.name)),
                         "%s: %s" % (subsystem, w.name), chart_rows, peers, "ratio to the best at the same MAXPROCS "
                         "(1 = best; lower is better; log scale)")
        if png:
            L += ["![%s](%s)" % (w.name, os.path.relpath(png, out_dir)), ""]
    return L


def write_peer_report(out_dir, kind, prefix, L):
    path = os.path.join(out_dir, "%s-%s.md" % (prefix, kind))
    with open(path, "w") as f:
        f.write("\n".join(L))
    return path, "\n".join(L)


def write_sched_report(out_dir, kind, args, runs, peers, workloads, samples, failures):
    os.makedirs(out_dir, exist_ok=True)
    charts = os.path.join(out_dir, "charts-%s" % kind)
    os.makedirs(charts, exist_ok=True)
    L = peer_report_head("# Scheduler benchmarks (%s): gort vs Go vs Boost.Fiber" % kind, args, runs,
                         workloads, "GORT_MAXPROCS for gort, GOMAXPROCS for Go and FIBER_THREADS for "
                         "Boost.Fiber", sched_versions(peers))
    L += peer_report_problems(workloads, failures)
    target = "gort" in peers and "go" in peers
    L += ["## Summary", ""]
    if "gort" in peers:
        L += ["`gort / X`: gort's cost relative to X (its value over X's, inverted for speed-ups): "
              "below 1.00 gort is better. Target: gort at or below Go in every row.", ""]
    table, per_workload, met, total = peer_summary(workloads, samples, peers, target)
    L += table
    if target:
        L += ["Target (gort at or below Go): met in %d of %d rows." % (met, total) if total else
              "Target (gort at or below Go): no row has figures from both gort and Go.", ""]
    L += peer_sections(out_dir, charts, "sched", "scheduler", workloads, per_workload, peers)
    return write_peer_report(out_dir, kind, "sched", L)


def gc_targets(workloads, samples):
    """The Targets section: every target of every workload at each MAXPROCS,
    judged from the medians."""
    L = ["| workload | target | P | gort | peer | gort / peer | result |", "|---|---|---|---|---|---|---|"]
    met = judged = unjudged = 0
    reported = set()
    for w in workloads:
        per_metric = samples.get(w.name, {})
        ran = per_metric.get("wall", ("", "", {}))[2]  # labels with a successful run
        gone = {m[0] for m in w.missing}

        def absent(peer, p):
            if peer in gone:
                return "missing"
            if peer not in w.peer_names:
                return "not run"
            return "no figure" if ran.get(peer_label(peer, p)) else "FAILED"

        for t in w.targets:
            unit, better, per = per_metric.get(t.metric, (t.unit, "low", {}))
            for p in sorted(w.procs):
                med = {peer: statistics.median(per[peer_label(peer, p)])
                       for peer in ("gort", t.vs) if peer and per.get(peer_label(peer, p))}
                g = med.get("gort")
                gort_cell = "%s %s" % (fmt_num(g), unit) if g is not None else absent("gort", p)
                if t.vs is None:
                    peer_cell = ratio_cell = "-"
                    ok = None if g is None else cost_ratio(g, t.limit, better) <= 1.0
                else:
                    o = med.get(t.vs)
                    peer_cell = "%s: %s" % (t.vs, "%s %s" % (fmt_num(o), unit) if o is not None
                                            else absent(t.vs, p))
                    r = cost_ratio(g, o, better) if g is not None and o is not None else None
                    ratio_cell = "%.2f" % r if r is not None else "-"
                    ok = None if r is None or t.limit is None else r <= t.limit
                if t.limit is None:
                    result = "reported" if ratio_cell != "-" else "-"
                    reported.add(t.metric)
                elif ok is None:
                    result = "-"
                    unjudged += 1
                else:
                    met += ok
                    judged += 1
                    result = "met" if ok else "**missed**"
                L.append("| %s | %s | %s | %s | %s | %s | %s |"
                         % (w.name, t.text(), p, gort_cell, peer_cell, ratio_cell, result))
    L.append("")
    why = "a program missing, failed, not run or without that figure"
    if not judged:
        tally = "No target could be judged (%s)." % why
    else:
        tally = "Targets met: %d of %d." % (met, judged)
        if unjudged:
            tally += " %d more could not be judged (%s)." % (unjudged, why)
    L += [tally, ""]
    if reported:
        note = "Rows marked `reported` have no target."
        if "peak_rss_wait4" in reported:
            note += (" `peak_rss_wait4` is the harness's wait4 figure; it has a floor of about 15 MiB "
                     "(Linux carries the forked python harness's RSS into each child's max-RSS figure).")
        L += [note, ""]
    return L


def write_gc_report(out_dir, kind, args, runs, peers, workloads, samples, failures):
    os.makedirs(out_dir, exist_ok=True)
    charts = os.path.join(out_dir, "charts-%s" % kind)
    os.makedirs(charts, exist_ok=True)
    L = peer_report_head("# Garbage collector benchmarks (%s): gort vs Go vs Boehm GC" % kind, args, runs,
                         workloads, "GORT_MAXPROCS for gort, GOMAXPROCS for Go and GC_MARKERS (its "
                         "parallel mark threads) for Boehm GC", gc_versions(peers))
    L += peer_report_problems(workloads, failures)
    L += ["## Summary", ""]
    if "gort" in peers:
        L += ["`gort / X`: gort's cost relative to X (its value over X's): below 1.00 gort is better. "
              "The goals are judged under [Targets](#targets).", ""]
    table, per_workload, _, _ = peer_summary(workloads, samples, peers, False)
    L += table
    L += ["## Targets", "", "gort's medians against the goals; `gort / peer` is gort's cost relative "
          "to that peer (below 1.00 gort is better).", ""]
    L += gc_targets(workloads, samples)
    L += peer_sections(out_dir, charts, "gc", "garbage collector", workloads, per_workload, peers)
    return write_peer_report(out_dir, kind, "gc", L)


# ---- main ----------------------------------------------------------------

def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="gort bench",
        description="Compare allocators side by side, gort's scheduler with Go and Boost.Fiber, "
                    "and gort's garbage collector with Go and Boehm GC.",
        epilog="--workloads also takes the groups alloc, sched and gc.")
    ap.add_argument("--quick", action="store_true",
                    help="3 short rounds, each workload at a fraction of scale 1 (default: 5 rounds at scale 4)")
    ap.add_argument("--runs", help="rounds (a positive integer)")
    ap.add_argument("--workloads", help="comma-separated workload names (default: all)")
    ap.add_argument("--allocators", help="comma-separated allocator names to run (default: all found)")
    ap.add_argument("--allocator", action="append", default=[], metavar="NAME=PATH",
                    help="add an allocator .so to the comparison (repeatable)")
    ap.add_argument("--add-workload", action="append", default=[], metavar="NAME=PATH",
                    help="add a workload program that follows the output protocol (repeatable)")
    ap.add_argument("--sched-peers", metavar="a,b",
                    help="scheduler peers to run (default: %s)" % ",".join(SCHED_PEER_NAMES))
    ap.add_argument("--gc-peers", metavar="a,b",
                    help="garbage collector peers to run (default: %s)" % ",".join(GC_PEER_NAMES))
    ap.add_argument("--maxprocs", metavar="1,2",
                    help="MAXPROCS values the scheduler and GC workloads run with "
                    "(default: 1,2 for the scheduler workloads, 2 for the GC ones)")
    ap.add_argument("--out", default=os.path.join(os.getcwd(), "gort-bench-results") if INSTALLED
                    else os.path.join(ROOT, "bench", "results"),
                    help="report directory (default: bench/results in the source tree, "
                    "./gort-bench-results for an installed copy)")
    a = ap.parse_args(argv)
    if a.runs is not None and not re.fullmatch(r"[1-9][0-9]{0,3}", a.runs):
        die("--runs wants a positive integer, got %r" % a.runs)
    if a.maxprocs is not None:
        if not re.fullmatch(r"[1-9][0-9]{0,2}(,[1-9][0-9]{0,2})*", a.maxprocs):
            die("--maxprocs wants positive integers separated by commas, got %r" % a.maxprocs)
        a.maxprocs = sorted(set(int(p) for p in a.maxprocs.split(",")))
    a.sched_peers = pick_peers(a.sched_peers, SCHED_PEER_NAMES, "scheduler")
    a.gc_peers = pick_peers(a.gc_peers, GC_PEER_NAMES, "GC")
    return a


def pick_peers(spec, known, what):
    """The peers named in spec (a,b; None: all), in the order of known."""
    if spec is None:
        return list(known)
    want = spec.split(",")
    for n in want:
        if n not in known:
            die("unknown %s peer %r (known: %s)" % (what, n, ", ".join(known)))
    return [n for n in known if n in want]


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
        workloads.append(Workload(name, os.path.abspath(path), "user workload %s" % path, quick_scale=1.0))
    if a.workloads:
        groups = {"alloc": [w.name for w in workloads if not isinstance(w, PeerWorkload)],
                  "sched": [w.name for w in workloads if isinstance(w, SchedWorkload)],
                  "gc": [w.name for w in workloads if isinstance(w, GcWorkload)]}
        want = [m for n in a.workloads.split(",") for m in groups.get(n, [n])]
        known = [w.name for w in workloads]
        for n in want:
            if n not in known:
                die("unknown workload %r (known: %s; groups: alloc, sched, gc)" % (n, ", ".join(known)))
        workloads = [w for w in workloads if w.name in want]
    for w in workloads:
        if isinstance(w, PeerWorkload):
            # A peer that was not built is reported missing, not run.
            w.configure(a.gc_peers if isinstance(w, GcWorkload) else a.sched_peers, a.maxprocs or w.PROCS)
            for peer, path, hint in w.missing:
                print("gort bench: %s: %s peer missing: %s not found (%s)" % (w.name, peer, path, hint),
                      file=sys.stderr)
        elif not os.path.exists(w.path):
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
            if not peers or (a.quick and w.quick_rounds is not None and r >= w.quick_rounds):
                continue
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
    alloc_wl = [w for w in workloads if not isinstance(w, PeerWorkload)]
    sched_wl = [w for w in workloads if isinstance(w, SchedWorkload)]
    gc_wl = [w for w in workloads if isinstance(w, GcWorkload)]
    printed = False
    for wl, write in ((alloc_wl, lambda f: write_report(a.out, kind, argv, runs, names, allocators,
                                                         alloc_wl, samples, series, f)),
                      (sched_wl, lambda f: write_sched_report(a.out, kind, argv, runs, a.sched_peers,
                                                               sched_wl, samples, f)),
                      (gc_wl, lambda f: write_gc_report(a.out, kind, argv, runs, a.gc_peers,
                                                         gc_wl, samples, f))):
        if not wl:
            continue
        group = {w.name for w in wl}
        path, text = write([f for f in failures if f[0] in group])
        if printed:
            print()
        print(text)
        print("gort bench: wrote %s" % path, file=sys.stderr)
        printed = True
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
