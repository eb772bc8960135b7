// A small program outside gort's tree that uses an installed gort: built by
// test/bench/install_test.cc against a `make install` prefix both with
// pkg-config (gort.pc) and with CMake (find_package(gort)). It checks that
// the malloc it gets is gort's: the block shows in gort's own statistics.
#include <gort/gort.h>
#include <stdio.h>
#include <stdlib.h>

int main() {
  gort_malloc_stats_t before, after;
  gort_malloc_stats(&before);
  void* p = malloc(1 << 20);  // a large block: counted at once by the mheap
  gort_malloc_stats(&after);
  if (p == nullptr || after.large_allocs <= before.large_allocs) {
    fprintf(stderr, "consumer: malloc is not gort's (large_allocs %llu -> %llu)\n",
            (unsigned long long)before.large_allocs, (unsigned long long)after.large_allocs);
    return 1;
  }
  free(p);
  printf("consumer: gort malloc ok\n");
  return 0;
}
