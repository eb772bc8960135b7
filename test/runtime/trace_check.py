#!/usr/bin/env python3
"""Checks an execution trace written by gort (GORT_TRACE, gort_trace_stop).

Usage: trace_check.py TRACE.json [EXPECT ...]
An EXPECT is one of
  task:ID:TEXT   task ID has a run on a P that ended with TEXT in its reason
  name:TEXT      some slice's name contains TEXT
  thread:NAME    some slice on a thread track is named NAME exactly
  pid:N          otherData.pid is N
  dropped        the rings wrapped (otherData.dropped_events > 0)
Always checked: the file parses as JSON in the Chrome trace-event format;
complete (X) events have non-negative times; on every track slices nest
(none ends after the slice around it); on P tracks and thread tracks, task
runs never overlap; a task never runs on two Ps, or two threads, at once.
Prints one line per problem and exits 1 if there is any, else prints "ok" and
exits 0."""
import collections
import json
import sys


def ns(v):
    return round(float(v) * 1000)


def main():
    path, expects = sys.argv[1], sys.argv[2:]
    problems = []
    with open(path) as f:
        doc = json.load(f)
    events = doc.get("traceEvents")
    if not isinstance(events, list) or not events:
        print("no traceEvents list")
        return 1
    other = doc.get("otherData", {})
    tracks = collections.defaultdict(list)
    runs_by_task = collections.defaultdict(list)
    for e in events:
        ph = e.get("ph")
        if ph not in ("X", "i", "M"):
            problems.append("unexpected phase %r in %r" % (ph, e))
            continue
        for k in ("pid", "tid", "name"):
            if k not in e:
                problems.append("event without %s: %r" % (k, e))
        if ph == "M":
            continue
        if ns(e["ts"]) < 0:
            problems.append("negative time stamp: %r" % e)
        if ph != "X":
            continue
        start, dur = ns(e["ts"]), ns(e["dur"])
        if dur < 0:
            problems.append("negative duration: %r" % e)
        tracks[(e["pid"], e["tid"])].append((start, start + dur, e))
        if e.get("cat") == "task" and e["pid"] in (1, 2):
            runs_by_task[(e["pid"], e["args"]["goid"])].append((start, start + dur, e))
    # Nesting per track, and task runs one after the other on each track.
    for key, sl in tracks.items():
        sl.sort(key=lambda s: (s[0], -(s[1] - s[0])))
        stack = []
        last_task_end = None
        for start, end, e in sl:
            while stack and stack[-1][1] <= start:
                stack.pop()
            if stack and end > stack[-1][1]:
                problems.append("track %r: %r ends after the slice around it, %r"
                                % (key, e, stack[-1][2]))
            stack.append((start, end, e))
            if e.get("cat") == "task" and key[0] in (1, 2):
                if last_task_end is not None and start < last_task_end:
                    problems.append("track %r: task run %r starts before the previous run ended"
                                    % (key, e))
                last_task_end = end
    # A task never runs on two Ps (or two threads) at once.
    for (pid, goid), runs in runs_by_task.items():
        runs.sort(key=lambda r: r[0])
        what = "P" if pid == 1 else "thread "
        for a, b in zip(runs, runs[1:]):
            if b[0] < a[1]:
                problems.append("task %s runs on %s%s and %s%s at once (%r, %r)"
                                % (goid, what, a[2]["tid"], what, b[2]["tid"], a[2], b[2]))
    names = [e["name"] for e in events if e.get("ph") == "X"]
    for x in expects:
        kind, _, rest = x.partition(":")
        if kind == "task":
            goid, _, text = rest.partition(":")
            ends = [r[2]["args"].get("end", "") for r in runs_by_task.get((1, int(goid)), [])]
            if not any(text in s for s in ends):
                problems.append("task %s: no run on a P ended with %r (ends: %r)"
                                % (goid, text, ends))
        elif kind == "name":
            if not any(rest in n for n in names):
                problems.append("no slice named like %r" % rest)
        elif kind == "thread":
            if not any(e.get("ph") == "X" and e["pid"] == 2 and e["name"] == rest for e in events):
                problems.append("no slice named %r on a thread track" % rest)
        elif kind == "pid":
            if other.get("pid") != int(rest):
                problems.append("otherData.pid is %r, not %s" % (other.get("pid"), rest))
        elif kind == "dropped":
            if not other.get("dropped_events"):
                problems.append("the rings did not wrap: %r" % other)
        else:
            problems.append("unknown expectation %r" % x)
    for p in problems[:40]:
        print(p)
    if problems:
        print("%d problems" % len(problems))
        return 1
    print("ok: %d events, %d tracks" % (len(events), len(tracks)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
