// Workload: general churn over a bounded live set. 8 threads each keep 4000
// slots; each operation picks a random slot, frees its block and allocates a
// new one. Sizes are log-distributed from 8 B to 32 KiB (as many 8-15 B blocks
// as 16-31 B ones, and so on), plus 1 in 200 between 64 KiB and 1 MiB, so the
// small-object caches, the mid-size classes and the large-block path all take
// part, with a live set (~200 MiB over all threads) far beyond any per-thread
// cache. Every block is touched once per 4 KiB page, as a program would use
// it, so an allocator that keeps returning pages to the kernel and faulting
// them back in pays for it here. GORT_BENCH_SCALE scales the number of
// operations.
//
// Prints (stdout):
//   result throughput <M ops/s> higher   (one op = one free + one malloc; the
//                                         initial fill counts one op per block)
//   result time <ms> lower               (fill and churn; the final frees excluded)
// Self-check: every block carries a pattern derived from its id, checked before
// it is freed; on a mismatch the program reports it on stderr and exits 1.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include "workload.h"

namespace {

using namespace workload;

// ---- the workload ----

constexpr int kThreads = 8;
constexpr int kSlots = 4000;
constexpr long kOpsPerThread = 200000;  // at scale 1, after the fill

size_t pick_size(xorshift& rng) {
  if (rng.below(200) == 0) return (64u << 10) + rng.below((1u << 20) - (64u << 10) + 1);
  unsigned bits = 3 + static_cast<unsigned>(rng.below(12));  // [2^3, 2^15)
  return (size_t{1} << bits) + rng.below(size_t{1} << bits);
}

struct slot {
  unsigned char* p;
  size_t n;
  uint64_t id;
};

}  // namespace

int main() {
  const double scale = bench_scale();
  const long ops = static_cast<long>(fmax(1.0, round(kOpsPerThread * scale)));
  std::atomic<long> bad{0};
  std::vector<std::vector<slot>> live(kThreads, std::vector<slot>(kSlots));

  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; t++)
    ts.emplace_back([&, t] {
      xorshift rng(static_cast<uint64_t>(t) + 1);
      uint64_t id = static_cast<uint64_t>(t) << 48;
      std::vector<slot>& slots = live[static_cast<size_t>(t)];
      auto fresh = [&](slot& s) {
        size_t n = pick_size(rng);
        auto* p = static_cast<unsigned char*>(malloc(n));
        if (p == nullptr) {
          fprintf(stderr, "churn: malloc(%zu) failed\n", n);
          exit(1);
        }
        stamp(p, n, id);
        s = {p, n, id++};
      };
      long nbad = 0;
      for (slot& s : slots) fresh(s);
      for (long op = 0; op < ops; op++) {
        slot& s = slots[rng.below(kSlots)];
        if (!check(s.p, s.n, s.id)) nbad++;
        free(s.p);
        fresh(s);
      }
      bad += nbad;
    });
  for (auto& th : ts) th.join();
  auto t1 = std::chrono::steady_clock::now();

  for (auto& slots : live)
    for (slot& s : slots) {
      if (!check(s.p, s.n, s.id)) bad++;
      free(s.p);
    }
  if (bad.load() != 0) {
    fprintf(stderr, "churn: %ld corrupted blocks\n", bad.load());
    return 1;
  }
  double ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
  double total = static_cast<double>(kThreads) * (kSlots + ops);
  fprintf(stderr, "churn: %d threads x (%d fill + %ld ops)\n", kThreads, kSlots, ops);
  printf("result throughput %.3f Mops/s higher\n", total / ms / 1e3);
  printf("result time %.1f ms lower\n", ms);
  return 0;
}
