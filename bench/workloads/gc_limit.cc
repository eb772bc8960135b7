// The soft memory limit on gort's collector (issue 10's targets). Run with
// GORT_MEMLIMIT=256MiB; peer: bench/peers/go/gclimit.go (GOMEMLIMIT=256MiB).
//
//   gc_limit drop   (with GORT_GC=off): the live set grows to 150 MB of
//                   1 KiB objects (with as much garbage again), drops to
//                   10 MB, and the program idles. Reports the peak RSS while
//                   live data was under the limit, the RSS 2 s after the
//                   drop and when it first fell to 30 MB or less.
//   gc_limit over   a live set of 300 MB (over the limit) under churn:
//                   reports the GC CPU fraction (GC CPU / (wall x procs), as
//                   Go's GCCPUFraction) and the peak RSS; must finish.
#include <gort/gc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <vector>

#include "gc_common.h"

namespace {

long rss_kib() {
  FILE* f = fopen("/proc/self/statm", "r");
  long pages = 0, res = 0;
  if (f) {
    if (fscanf(f, "%ld %ld", &pages, &res) != 2) res = 0;
    fclose(f);
  }
  return res * (sysconf(_SC_PAGESIZE) / 1024);
}

constexpr size_t kObj = 1024;

void drop() {
  constexpr size_t kPeak = 150000, kKeep = 10000;  // 1 KiB objects: ~150 MB, ~10 MB
  auto* live = static_cast<void**>(calloc(kPeak, sizeof(void*)));
  gort_gc_add_roots(live, kPeak * sizeof(void*));
  long peak = 0;
  for (size_t i = 0; i < kPeak; i++) {
    void* p = gort_gc_alloc_noscan(kObj);
    memset(p, 1, kObj);
    gort_gc_write(&live[i], p);
    memset(gort_gc_alloc_noscan(kObj), 2, kObj);  // as much garbage
    if (i % 1000 == 0) {
      long r = rss_kib();
      if (r > peak) peak = r;
    }
  }
  for (size_t i = kKeep; i < kPeak; i++) gort_gc_write(&live[i], nullptr);
  int64_t t0 = gcb_now_ns();
  double to30 = -1;
  long at2s = 0;
  for (;;) {
    long r = rss_kib();
    double ms = (gcb_now_ns() - t0) / 1e6;
    if (to30 < 0 && r <= 30 * 1024) to30 = ms;
    if (ms >= 2000) {
      at2s = r;
      break;
    }
    struct timespec ts = {0, 10 * 1000000};
    nanosleep(&ts, nullptr);
  }
  for (size_t i = 0; i < kKeep; i++)
    if (static_cast<unsigned char*>(live[i])[kObj - 1] != 1) gcb_fail("lost a live object");
  gcb_result("peak_rss_mb", peak / 1024.0, "MB", "lower");
  gcb_result("rss_2s_after_drop_mb", at2s / 1024.0, "MB", "lower");
  gcb_result("ms_to_30mb", to30, "ms", "lower");
}

void over() {
  constexpr size_t kLive = 300000;  // 1 KiB objects: ~300 MB
  auto* live = static_cast<void**>(calloc(kLive, sizeof(void*)));
  gort_gc_add_roots(live, kLive * sizeof(void*));
  int64_t t0 = gcb_now_ns();
  long peak = 0;
  uint64_t x = 88172645463325252ull;
  for (size_t i = 0; i < kLive * 4; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    void* p = gort_gc_alloc_noscan(kObj);
    memset(p, 3, 64);
    gort_gc_write(&live[i < kLive ? i : x % kLive], p);
    if (i % 4096 == 0) {
      long r = rss_kib();
      if (r > peak) peak = r;
    }
  }
  double wall = static_cast<double>(gcb_now_ns() - t0);
  gort_gc_stats_t st;
  gort_gc_stats(&st);
  long procs = sysconf(_SC_NPROCESSORS_ONLN);
  gcb_result("gc_cpu_percent", 100.0 * (st.assist_ns + st.background_ns) / (wall * procs), "%",
             "lower");
  gcb_result("peak_rss_mb", peak / 1024.0, "MB", "lower");
  gcb_result("time_ms", wall / 1e6, "ms", "lower");
  gcb_result("cycles", static_cast<double>(st.cycles), "n", "lower");
}

}  // namespace

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "drop";
  if (strcmp(mode, "drop") == 0)
    drop();
  else if (strcmp(mode, "over") == 0)
    over();
  else
    gcb_fail("usage: gc_limit drop|over");
  return 0;
}
