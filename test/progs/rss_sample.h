// What the scavenger tests' programs share (rss_return.cc, rss_remote.cc):
// the process's resident set, and the report test/alloc/scavenger_test.cc
// parses: "peak <bytes>", then "t <ms> <rss>" every 100 ms for two seconds
// of idling (no allocator calls at all).
#pragma once

#include <stdio.h>
#include <time.h>
#include <unistd.h>

static inline size_t rss() {
  FILE* f = fopen("/proc/self/statm", "r");
  size_t a = 0, b = 0;
  if (f) {
    if (fscanf(f, "%zu %zu", &a, &b) != 2) b = 0;
    fclose(f);
  }
  return b * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

static inline void report_idle_rss(size_t peak) {
  printf("peak %zu\n", peak);
  fflush(stdout);
  struct timespec ts = {0, 100 * 1000 * 1000};
  for (int t = 100; t <= 2000; t += 100) {
    nanosleep(&ts, nullptr);
    printf("t %d %zu\n", t, rss());
    fflush(stdout);
  }
}
