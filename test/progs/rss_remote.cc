// Remote frees that no refill merges still go back to the OS: one thread
// allocates ~64 MiB in 1000-byte blocks and exits; a second thread frees them
// all (every free remote: the spans are the first thread's) and exits; then
// the process stays idle (no allocator calls at all) and samples its RSS
// every 100 ms for two seconds. Nobody allocates that class again, so only
// the scavenger merges those frees (alloc/mcentral.h "Remote frees"); before
// it started for them, RSS stayed at the peak. Prints "peak <bytes>" and
// "t <ms> <rss>" lines, as rss_return does; run under LD_PRELOAD=libgort.so
// by test/alloc/scavenger_test.cc.
#include <stdlib.h>
#include <string.h>

#include <thread>
#include <vector>

#include "rss_sample.h"

int main() {
  std::vector<void*> blocks(64 << 10);
  std::thread([&] {
    for (void*& p : blocks) {
      p = malloc(1000);
      if (!p) abort();
      memset(p, 1, 1000);
    }
  }).join();
  size_t peak = rss();
  std::thread([&] {
    for (void* p : blocks) free(p);
  }).join();
  report_idle_rss(peak);
  return 0;
}
