// Workload: fragmentation after a phase change. 4 threads together allocate
// small objects (16..512 B) until ~200 MiB are live, then each frees a random
// 90% of its own objects, leaving the survivors scattered over nearly every
// page, and then allocates large blocks (256 KiB..2 MiB) totalling ~100 MiB and
// touches every page of them. The freed small-object memory is of no use to
// the large blocks unless the allocator can give whole free pages back to the
// kernel or reuse them across size classes, so peak RSS shows how much of the
// dead small-object space the allocator keeps. GORT_BENCH_SCALE scales both
// amounts.
//
// Prints (stdout):
//   result peak_rss <MiB> lower      (getrusage ru_maxrss)
//   result rss_per_live <x> lower    (peak RSS / bytes live at the end: the
//                                     surviving small objects plus the large
//                                     blocks, as requested from malloc)
//   result time <ms> lower           (the three phases; the final frees excluded)
// Self-check: every block carries a pattern derived from its id, checked before
// it is freed; on a mismatch the program reports it on stderr and exits 1.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include "workload.h"

namespace {

using namespace workload;

// ---- the workload ----

constexpr int kThreads = 4;
constexpr double kSmallMiB = 200;  // at scale 1, over all threads
constexpr double kLargeMiB = 100;

struct block {
  unsigned char* p;
  size_t n;
  uint64_t id;
};

struct alignas(64) result {
  std::vector<block> kept;  // surviving small objects, then the large blocks
  size_t live = 0;          // their bytes
  long bad = 0;
};

block make(xorshift& rng, size_t lo, size_t hi, uint64_t& id) {
  size_t n = lo + rng.below(hi - lo + 1);
  auto* p = static_cast<unsigned char*>(malloc(n));
  if (p == nullptr) {
    fprintf(stderr, "fragmentation: malloc(%zu) failed\n", n);
    exit(1);
  }
  stamp(p, n, id);
  return {p, n, id++};
}

}  // namespace

int main() {
  const double scale = bench_scale();
  const size_t small_target =
      static_cast<size_t>(fmax(1.0, kSmallMiB * scale * 1048576.0 / kThreads));
  const size_t large_target =
      static_cast<size_t>(fmax(1.0, kLargeMiB * scale * 1048576.0 / kThreads));

  std::vector<result> res(kThreads);
  // The phases are global: every thread's small objects are in place before
  // anyone frees, and all frees are done before the large blocks come.
  std::barrier sync(kThreads);

  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; t++)
    ts.emplace_back([&, t] {
      result& r = res[static_cast<size_t>(t)];
      xorshift rng(static_cast<uint64_t>(t) + 1);
      uint64_t id = static_cast<uint64_t>(t) << 48;

      std::vector<block> small;
      for (size_t bytes = 0; bytes < small_target;) {
        small.push_back(make(rng, 16, 512, id));
        bytes += small.back().n;
      }
      sync.arrive_and_wait();

      // Shuffle, free the first 90%, keep the rest.
      for (size_t i = small.size(); i > 1; i--) std::swap(small[i - 1], small[rng.below(i)]);
      size_t cut = small.size() - small.size() / 10;
      for (size_t i = 0; i < small.size(); i++) {
        block& b = small[i];
        if (i < cut) {
          if (!check(b.p, b.n, b.id)) r.bad++;
          free(b.p);
        } else {
          r.kept.push_back(b);
          r.live += b.n;
        }
      }
      std::vector<block>().swap(small);
      sync.arrive_and_wait();

      for (size_t bytes = 0; bytes < large_target;) {
        r.kept.push_back(make(rng, 256u << 10, 2u << 20, id));
        bytes += r.kept.back().n;
        r.live += r.kept.back().n;
      }
    });
  for (auto& th : ts) th.join();
  auto t1 = std::chrono::steady_clock::now();

  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  long bad = 0;
  size_t live = 0;
  for (result& r : res) {
    bad += r.bad;
    live += r.live;
    for (block& b : r.kept) {
      if (!check(b.p, b.n, b.id)) bad++;
      free(b.p);
    }
  }
  if (bad != 0) {
    fprintf(stderr, "fragmentation: %ld corrupted blocks\n", bad);
    return 1;
  }
  double peak_mib = static_cast<double>(ru.ru_maxrss) / 1024.0;
  double live_mib = static_cast<double>(live) / 1048576.0;
  double ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
  fprintf(stderr, "fragmentation: %.1f MiB live at the end\n", live_mib);
  printf("result peak_rss %.1f MiB lower\n", peak_mib);
  printf("result rss_per_live %.3f x lower\n", peak_mib / live_mib);
  printf("result time %.1f ms lower\n", ms);
  return 0;
}
