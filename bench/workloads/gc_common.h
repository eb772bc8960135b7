// Helpers shared by the collector workloads (bench/workloads/gc_*.cc) and
// their Boehm GC peers (bench/peers/boehm/*.c): sizes from
// GORT_BENCH_SCALE, a latency histogram, the harness protocol of
// bench/run.py. The Go peers (bench/peers/go/) do the same in Go.
#pragma once

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

// GORT_BENCH_SCALE: 0.25 in --quick, 4 in a full run.
static inline double gcb_scale(void) {
  const char* s = getenv("GORT_BENCH_SCALE");
  if (!s) return 1.0;
  char* end;
  double v = strtod(s, &end);
  if (end == s || *end || !(v > 0) || !isfinite(v)) {
    fprintf(stderr, "workload: bad GORT_BENCH_SCALE=%s\n", s);
    exit(2);
  }
  return v;
}

// binary-trees depth: 21 at scale 4 (a full run), 17 at scale 1, 13 in --quick.
static inline int gcb_tree_depth(void) {
  int d = (int)lround(17 + 2 * log2(gcb_scale()));
  return d < 10 ? 10 : d > 21 ? 21 : d;
}

// livechurn live set: 200 MiB at scale 4, 50 MiB at scale 1.
static inline long gcb_live_bytes(void) {
  double mib = 50 * gcb_scale();
  if (mib > 200) mib = 200;
  if (mib < 8) mib = 8;
  return (long)(mib * 1024 * 1024);
}

static inline int64_t gcb_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline void gcb_result(const char* metric, double v, const char* unit, const char* better) {
  printf("result %s %.6g %s %s\n", metric, v, unit, better);
}

static inline void gcb_fail(const char* msg) {
  fprintf(stderr, "workload: %s\n", msg);
  exit(1);
}

// A latency histogram: buckets of 1/16 of a power of two (6% resolution)
// from 1 ns to ~70 s.
#define GCB_BUCKETS (36 * 16)
typedef struct {
  uint64_t n[GCB_BUCKETS];
  uint64_t count;
  int64_t max;
} gcb_hist;

static inline void gcb_hist_add(gcb_hist* h, int64_t ns) {
  if (ns < 1) ns = 1;
  int e = 63 - __builtin_clzll((uint64_t)ns);
  int sub = e >= 4 ? (int)((ns >> (e - 4)) & 15) : (int)((ns << (4 - e)) & 15);
  int b = e * 16 + sub;
  if (b >= GCB_BUCKETS) b = GCB_BUCKETS - 1;
  h->n[b]++;
  h->count++;
  if (ns > h->max) h->max = ns;
}

// The value below which a fraction q of the samples lie (bucket's upper bound).
static inline double gcb_hist_quantile(const gcb_hist* h, double q) {
  uint64_t want = (uint64_t)ceil(q * (double)h->count), seen = 0;
  for (int b = 0; b < GCB_BUCKETS; b++) {
    seen += h->n[b];
    if (seen >= want && h->n[b]) {
      int e = b / 16, sub = b % 16;
      double lo = ldexp(1.0 + sub / 16.0, e);
      double hi = ldexp(1.0 + (sub + 1) / 16.0, e);
      return hi < (double)h->max ? hi : (double)h->max;
      (void)lo;
    }
  }
  return (double)h->max;
}

// Sorts pauses (ns) and returns the q-quantile.
static inline int gcb_cmp(const void* a, const void* b) {
  uint64_t x = *(const uint64_t*)a, y = *(const uint64_t*)b;
  return x < y ? -1 : x > y;
}
static inline double gcb_quantile(uint64_t* v, size_t n, double q) {
  if (n == 0) return 0;
  qsort(v, n, sizeof *v, gcb_cmp);
  size_t i = (size_t)ceil(q * (double)n);
  if (i > 0) i--;
  if (i >= n) i = n - 1;
  return (double)v[i];
}
