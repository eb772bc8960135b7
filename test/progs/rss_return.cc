// Allocates ~256 MiB in small and large blocks, frees all but ~8 MiB, then
// stays idle (no allocator calls at all) and samples its RSS every 100 ms for
// two seconds. Prints "peak <bytes>" and "t <ms> <rss>" lines.
// The scavenger tests run it under LD_PRELOAD=libgort.so.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static size_t rss() {
  FILE* f = fopen("/proc/self/statm", "r");
  size_t a = 0, b = 0;
  if (f) {
    if (fscanf(f, "%zu %zu", &a, &b) != 2) b = 0;
    fclose(f);
  }
  return b * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

int main() {
  const size_t kTotal = 256u << 20;
  static void* blocks[200000];
  size_t n = 0, total = 0;
  unsigned x = 12345;
  while (total < kTotal && n < sizeof blocks / sizeof blocks[0]) {
    x = x * 1103515245 + 12345;
    size_t sz = (x >> 8) % 8 == 0 ? 64 * 1024 + (x >> 4) % (4u << 20) : 16 + (x >> 8) % 32000;
    blocks[n] = malloc(sz);
    memset(blocks[n], 1, sz);
    total += sz;
    n++;
  }
  size_t peak = rss();
  // Keep every 32nd block.
  for (size_t i = 0; i < n; i++) {
    if (i % 32 != 0) free(blocks[i]);
  }
  printf("peak %zu\n", peak);
  fflush(stdout);
  struct timespec ts = {0, 100 * 1000 * 1000};
  for (int t = 100; t <= 2000; t += 100) {
    nanosleep(&ts, nullptr);
    printf("t %d %zu\n", t, rss());
    fflush(stdout);
  }
  return 0;
}
