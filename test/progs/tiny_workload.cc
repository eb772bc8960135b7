// A minimal workload for the harness tests: a few mallocs, two figures and a
// short series, in well under a second.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main() {
  const char* s = getenv("GORT_BENCH_SCALE");
  if (!s || atof(s) <= 0) {
    fprintf(stderr, "tiny_workload: bad GORT_BENCH_SCALE\n");
    return 2;
  }
  size_t total = 0;
  for (int i = 0; i < 1000; i++) {
    char* p = static_cast<char*>(malloc(16 + i));
    memset(p, 1, 16 + i);
    total += static_cast<size_t>(p[i]);
    free(p);
  }
  printf("result work_time %.3f ms lower\n", total / 1000.0);
  printf("result items %d count higher\n", 1000);
  for (int t = 0; t <= 200; t += 100) printf("series rss_mib %d %d\n", t, 10 - t / 100);
  return 0;
}
