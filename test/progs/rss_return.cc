// Allocates ~256 MiB in small and large blocks, frees all but ~8 MiB, then
// stays idle (no allocator calls at all) and samples its RSS every 100 ms for
// two seconds. Prints "peak <bytes>" and "t <ms> <rss>" lines.
// The scavenger tests run it under LD_PRELOAD=libgort.so.
#include <stdlib.h>
#include <string.h>

#include "rss_sample.h"

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
  report_idle_rss(peak);
  return 0;
}
