#!/usr/bin/env python3
"""The HTTP end-to-end benchmark (docs/benchmarking.md, "HTTP"): gort::net,
gort with plain blocking libc calls, and Go's net/http, driven by wrk on
loopback at 2, 100 and 1000 connections (interleaved A B C A B C, medians),
then a fairness probe and 10,000 idle keep-alive connections.

usage: run_http.py BUILD_DIR OUT.md [--quick]
"""
import os, re, statistics, subprocess, sys, time

build, out = sys.argv[1], sys.argv[2]
quick = "--quick" in sys.argv
ROUNDS = 1 if quick else 3
DUR = 2 if quick else 5
CONNS = [2, 100, 1000]
IDLE = 10000
SERVERS = {
    "gort::net": [f"{build}/bench/http/http_server", "net", "0"],
    "gort libc": [f"{build}/bench/http/http_server", "libc", "0"],
    "Go net/http": [f"{build}/bench/peers/go/httpserver", "0"],
}
PROBE = f"{build}/bench/http/http_probe"


def start(name):
    env = dict(os.environ)
    env.setdefault("GORT_MAXPROCS", str(os.cpu_count()))
    p = subprocess.Popen(SERVERS[name], stdout=subprocess.PIPE, text=True, env=env)
    line = p.stdout.readline()
    m = re.match(r"ready (\d+)", line)
    if not m:
        p.kill()
        raise SystemExit(f"{name}: no ready line ({line!r})")
    return p, int(m.group(1))


def status(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for l in f:
            if l.startswith(key):
                return int(l.split()[1])  # kB
    return 0


def ms(s):
    v, unit = float(re.match(r"([\d.]+)", s).group(1)), re.sub(r"[\d.]", "", s)
    return v * {"us": 1e-3, "ms": 1, "s": 1e3}.get(unit, 1)


def wrk(port, conns):
    threads = min(2, conns)
    r = subprocess.run(["wrk", f"-t{threads}", f"-c{conns}", f"-d{DUR}s", "--latency",
                        f"http://127.0.0.1:{port}/"], capture_output=True, text=True)
    o = r.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", o).group(1))
    p50 = ms(re.search(r"\s50%\s+(\S+)", o).group(1))
    p99 = ms(re.search(r"\s99%\s+(\S+)", o).group(1))
    errs = re.search(r"Socket errors: (.*)", o)
    return rps, p50, p99, errs.group(1) if errs else ""


def main():
    res = {}
    for rnd in range(ROUNDS):
        for conns in CONNS:
            for name in SERVERS:
                p, port = start(name)
                try:
                    rps, p50, p99, errs = wrk(port, conns)
                    rss = status(p.pid, "VmHWM:")
                finally:
                    p.kill()
                    p.wait()
                res.setdefault((name, conns), []).append((rps, p50, p99, rss, errs))
                print(f"round {rnd} {name} c={conns}: {rps:.0f} req/s p50 {p50:.2f} ms "
                      f"p99 {p99:.2f} ms rss {rss} kB {errs}", flush=True)
    fair = {}
    for name in SERVERS:
        p, port = start(name)
        try:
            r = subprocess.run([PROBE, "fair", "100", "2" if quick else "4", str(port)],
                               capture_output=True, text=True)
            fair[name] = r.stdout.strip() or r.stderr.strip()
        finally:
            p.kill()
            p.wait()
        print(name, fair[name], flush=True)
    idle = {}
    for name in SERVERS:
        p, port = start(name)
        try:
            time.sleep(0.3)
            before = status(p.pid, "VmRSS:")
            pr = subprocess.Popen([PROBE, "idle", str(IDLE), "30", str(port)],
                                  stdout=subprocess.PIPE, text=True)
            line = pr.stdout.readline()
            time.sleep(1.0)
            after = status(p.pid, "VmRSS:")
            pr.kill()
            pr.wait()
            idle[name] = (line.strip(), before, after, (after - before) * 1024 / IDLE)
        finally:
            p.kill()
            p.wait()
        print(name, idle[name], flush=True)

    # Issue 11's rows: pipe round trip and blocking-I/O/busy fairness.
    rows = {}
    env = dict(os.environ)
    env.setdefault("GORT_MAXPROCS", str(os.cpu_count()))
    env.setdefault("GOMAXPROCS", env["GORT_MAXPROCS"])
    for rnd in range(ROUNDS):
        for name, cmd in (("gort", f"{build}/bench/http/io_rows"),
                          ("Go", f"{build}/bench/peers/go/iorows")):
            for mode in ("roundtrip", "fairness"):
                o = subprocess.run([cmd, mode], capture_output=True, text=True, env=env).stdout
                rows.setdefault((name, mode), []).append(o.strip())
                print(name, mode, o.strip(), flush=True)

    med = lambda xs: statistics.median(xs)
    L = ["# HTTP/1.1 keep-alive server: gort::net, gort + blocking libc calls, Go net/http", "",
         f"Machine: {os.cpu_count()} CPUs (a VM shared with other jobs while this ran: "
         "absolute numbers drift, compare within a column). "
         f"wrk {DUR} s per cell, -t min(2, conns), loopback; {ROUNDS} interleaved round(s), "
         "medians; each cell a fresh server process (peak RSS = VmHWM). "
         f"GORT_MAXPROCS={os.environ.get('GORT_MAXPROCS', os.cpu_count())}. "
         f"Go: {subprocess.run(['go', 'version'], capture_output=True, text=True).stdout.strip()}.",
         "", "| conns | server | req/s | p50 ms | p99 ms | peak RSS MiB | req/s vs Go |",
         "|---:|---|---:|---:|---:|---:|---:|"]
    for conns in CONNS:
        go_rps = med([x[0] for x in res[("Go net/http", conns)]])
        for name in SERVERS:
            xs = res[(name, conns)]
            rps = med([x[0] for x in xs])
            L.append(f"| {conns} | {name} | {rps:.0f} | {med([x[1] for x in xs]):.2f} | "
                     f"{med([x[2] for x in xs]):.2f} | {med([x[3] for x in xs]) / 1024:.1f} | "
                     f"{rps / go_rps:.2f} |")
    L += ["", "## Fairness probe (100 keep-alive clients back to back)", "",
          "Responses per connection (min / median / max), connections that got none, and the "
          "worst wait from request to response.", ""]
    for name in SERVERS:
        L.append(f"- {name}: `{fair[name]}`")
    L += ["", f"## {IDLE} idle keep-alive connections", "",
          "| server | answered | RSS before MiB | RSS after MiB | KiB per connection |",
          "|---|---|---:|---:|---:|"]
    for name in SERVERS:
        line, b, a, per = idle[name]
        L.append(f"| {name} | {line} | {b / 1024:.1f} | {a / 1024:.1f} | {per / 1024:.2f} |")
    L += ["", "## Blocking-call round trip and fairness (issue 11's rows)", "",
          "Round trip: a task blocked in read() on a pipe woken by another task's write(), and "
          "back (ns, median of the rounds). Fairness: 8 pipe ping-pong pairs and 8 busy tasks "
          "for 2 s: steps per task (min/max by kind) and the worst gap between two steps of one "
          "task (every round shown).", ""]
    for name in ("gort", "Go"):
        rts = [float(x.split()[1]) for x in rows[(name, "roundtrip")] if x.startswith("roundtrip")]
        L.append(f"- {name} round trip: {med(rts):.0f} ns" if rts else f"- {name} round trip: failed")
    for name in ("gort", "Go"):
        for x in rows[(name, "fairness")]:
            L.append(f"- {name}: `{x}`")
    with open(out, "w") as f:
        f.write("\n".join(L) + "\n")
    print("wrote", out)


main()
