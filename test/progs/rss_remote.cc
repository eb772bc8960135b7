// Remote frees that no refill merges still go back to the OS: one thread
// allocates ~64 MiB in 1000-byte blocks and exits; a second thread frees them
// all (every free remote: the spans are the first thread's) and exits; then
// the process stays idle (no allocator calls at all) and samples its RSS
// every 100 ms for two seconds. Nobody allocates that class again, so only
// the scavenger merges those frees (alloc/mcentral.h "Remote frees"); before
// it started for them, RSS stayed at the peak. Prints "peak <bytes>" and
// "t <ms> <rss>" lines, as rss_return does; run under LD_PRELOAD=libgort.so
// by test/alloc/scavenger_test.cc.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <thread>
#include <vector>

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
