#!/usr/bin/env python3
"""The execution tracer's cost on the scheduler benchmarks.

Runs bench/workloads/sched_{pingpong,yield,spawn} in three variants, interleaved
and rotated (A B C, B C A, C A B, ...: the first run of a triple was measurably
slower on a loaded machine), and prints the median of each workload's own metric:
  base   a build without the tracer (--base BUILD_DIR, e.g. main's), if given
  off    this build, GORT_TRACE unset (the hooks compiled in, not taken)
  on     this build, GORT_TRACE=/tmp/... (every switch recorded; the file is
         written at exit, after the workload has measured itself)
Usage: bench/trace_overhead.py [--build build] [--base DIR] [--rounds 7] [--maxprocs N]
Writes a Markdown table on stdout (bench/results/trace-overhead.md has one)."""
import argparse
import os
import statistics
import subprocess
import time

WORKLOADS = ["pingpong", "yield", "spawn"]


def run(binary, env_extra):
    env = dict(os.environ)
    env.update(env_extra)
    t0 = time.monotonic()
    out = subprocess.run([binary], env=env, capture_output=True, text=True, check=True).stdout
    wall = time.monotonic() - t0
    for line in out.splitlines():
        if line.startswith("result "):
            _, metric, value, unit, _ = line.split()
            return metric, float(value), unit, wall
    raise RuntimeError("no result line from %s: %r" % (binary, out))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--base", default=None)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--maxprocs", default=None, help="GORT_MAXPROCS for every run")
    a = ap.parse_args()
    if a.maxprocs:
        os.environ["GORT_MAXPROCS"] = a.maxprocs
    trace_path = "/tmp/trace-overhead-%d.json" % os.getpid()
    variants = []
    if a.base:
        variants.append(("base", a.base, {}))
    variants.append(("off", a.build, {}))
    variants.append(("on", a.build, {"GORT_TRACE": trace_path}))
    res = {}
    for r in range(a.rounds):
        for w in WORKLOADS:
            k = r % len(variants)
            for name, build, env in variants[k:] + variants[:k]:
                b = os.path.join(build, "bench/workloads/sched_" + w)
                metric, v, unit, wall = run(b, env)
                res.setdefault((w, name), []).append((v, wall))
                res[(w, "unit")] = unit
    if os.path.exists(trace_path):
        os.unlink(trace_path)
    names = [v[0] for v in variants]
    print("| workload | unit | " + " | ".join(names) + " | " +
          (" off/base |" if a.base else "") + " on/off | process wall, on/off |")
    print("|---" * (3 + len(names) + (1 if a.base else 0) + 1) + "|")
    for w in WORKLOADS:
        med = {n: statistics.median(x[0] for x in res[(w, n)]) for n in names}
        wall = {n: statistics.median(x[1] for x in res[(w, n)]) for n in names}
        row = "| %s | %s | " % (w, res[(w, "unit")])
        row += " | ".join("%.4g" % med[n] for n in names) + " |"
        if a.base:
            row += " %.3f |" % (med["off"] / med["base"])
        row += " %.3f | %.2f s / %.2f s |" % (med["on"] / med["off"], wall["on"], wall["off"])
        print(row)


if __name__ == "__main__":
    main()
