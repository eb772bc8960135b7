// A program for the collector's subprocess tests (test/gc/api_test.cc):
//   gc_prog free    free() of a GC object: must abort with a clear message
//   gc_prog churn   keeps ~6 MiB live, allocates ~64 MiB of garbage, prints the statistics
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gort/gc.h"

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  if (strcmp(argv[1], "free") == 0) {
    void* p = gort_gc_alloc(64, nullptr);
    free(p);
    return 0;
  }
  if (strcmp(argv[1], "churn") == 0) {
    // A live set of ~6 MiB (so that the goal depends on GORT_GC), then
    // 64 MiB of garbage.
    static void* live[100000];
    gort_gc_add_roots(live, sizeof live);
    for (auto& slot : live) gort_gc_write(&slot, gort_gc_alloc(64, nullptr));
    void* keep = nullptr;
    for (int i = 0; i < 1 << 20; i++) {
      void** p = static_cast<void**>(gort_gc_alloc(64, nullptr));
      p[0] = keep;
      if (i % 1000 == 0) keep = nullptr;
      keep = p;
    }
    gort_gc_stats_t st;
    gort_gc_stats(&st);
    printf("cycles=%llu percent=%d alloc=%llu\n", static_cast<unsigned long long>(st.cycles),
           st.percent, static_cast<unsigned long long>(st.total_alloc));
    return keep && live[99999] ? 0 : 1;
  }
  return 2;
}
