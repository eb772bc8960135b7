// Helpers shared by the scheduler workloads (bench/workloads/sched_*.cc), the
// gort side of the comparison with Go (bench/peers/go) and Boost.Fiber
// (bench/peers/fiber): the same work, the same figures, the harness protocol
// of bench/run.py. The harness sets GORT_MAXPROCS (1, then 2) and
// GORT_BENCH_SCALE.
#pragma once

#include <gort/runtime.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <chrono>

#include "workload.h"

namespace sched {

using Clock = std::chrono::steady_clock;

// A failed self-check: message, exit 1 (without running destructors: tasks
// may still be running on other threads, as when a Go program calls os.Exit).
[[noreturn]] inline void fail(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("workload: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  fflush(stdout);
  fflush(stderr);
  _Exit(1);
}

// base * GORT_BENCH_SCALE, at least min.
inline long scaled(double base, long min) {
  long n = static_cast<long>(base * workload::bench_scale());
  return n < min ? min : n;
}

// VmRSS from /proc/self/status, in bytes.
inline long rss_bytes() {
  FILE* f = fopen("/proc/self/status", "r");
  if (f == nullptr) fail("cannot open /proc/self/status");
  char line[256];
  long kb = -1;
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, "VmRSS:", 6) == 0) kb = strtol(line + 6, nullptr, 10);
  }
  fclose(f);
  if (kb < 0) fail("no VmRSS in /proc/self/status");
  return kb * 1024;
}

inline double ns_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::nano>(Clock::now() - t0).count();
}

inline void result(const char* metric, double value, const char* unit, const char* better) {
  printf("result %s %.6g %s %s\n", metric, value, unit, better);
}

// Runs body as gort's main task (gort::run) and returns the exit code. Checks
// first that GORT_MAXPROCS, when set, is what the scheduler runs with: a
// figure for the wrong MAXPROCS would be a wrong figure.
template <class F>
int main_task(F&& body) {
  return gort::run([&body]() -> int {
    if (const char* s = getenv("GORT_MAXPROCS")) {
      if (atoi(s) != gort::maxprocs())
        fail("GORT_MAXPROCS=%s but gort::maxprocs() is %d", s, gort::maxprocs());
    }
    body();
    return 0;
  });
}

}  // namespace sched
