// A malloc-only program for the memory limit under LD_PRELOAD (test/alloc
// scavenger tests): it frees half of 96 MiB of 40 KiB blocks, every other
// one (48 MiB of holes no 64 KiB block fits), then allocates 48 MiB of
// 64 KiB blocks. Its live data never passes 96 MiB; without a scavenger that
// releases the holes, its RSS reaches about 144 MiB. Every page is touched.
// Prints "peak_rss_kib N live_peak_kib M" (VmHWM, and the largest live data).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vector>

namespace {

long status_kib(const char* key) {
  FILE* f = fopen("/proc/self/status", "r");
  if (!f) return -1;
  char line[256];
  long v = -1;
  size_t n = strlen(key);
  while (fgets(line, sizeof line, f))
    if (strncmp(line, key, n) == 0) v = atol(line + n);
  fclose(f);
  return v;
}

}  // namespace

int main() {
  constexpr size_t kSmall = 40 << 10, kLarge = 64 << 10, kTotal = 96 << 20, kLargeTotal = 48 << 20;
  std::vector<void*> small, large;
  small.reserve(kTotal / kSmall);
  large.reserve(kLargeTotal / kLarge);
  for (size_t i = 0; i < kTotal / kSmall; i++) {
    void* p = malloc(kSmall);
    if (!p) return 1;
    memset(p, 1, kSmall);
    small.push_back(p);
  }
  size_t live = kTotal / kSmall * kSmall;
  for (size_t i = 0; i < small.size(); i += 2) {
    free(small[i]);
    small[i] = nullptr;
    live -= kSmall;
  }
  size_t live_peak = live;
  for (size_t i = 0; i < kLargeTotal / kLarge; i++) {
    void* p = malloc(kLarge);
    if (!p) return 1;
    memset(p, 2, kLarge);
    large.push_back(p);
    live += kLarge;
    if (live > live_peak) live_peak = live;
  }
  long hwm = status_kib("VmHWM:");
  // Check the data survived.
  for (void* p : large)
    if (static_cast<unsigned char*>(p)[kLarge - 1] != 2) return 2;
  for (void* p : small)
    if (p && static_cast<unsigned char*>(p)[0] != 1) return 2;
  printf("peak_rss_kib %ld live_peak_kib %zu\n", hwm, live_peak >> 10);
  for (void* p : large) free(p);
  for (void* p : small) free(p);
  return 0;
}
