// Workload: many short-lived threads, as in a thread-per-request server or a
// program that spawns helpers for small jobs. The main thread creates 2000
// threads, at most 16 alive at once; each allocates 600 blocks of mixed size
// (log-distributed 8 B..16 KiB, plus 1 in 50 between 64 and 256 KiB) over a
// small live set, frees most of them itself and hands about 1 in 8 to the main
// thread, which frees them while later threads run. What an allocator does at
// thread exit (returning or orphaning the thread's cache and heap) and with
// blocks that outlive their thread shows up in both time and peak RSS.
// GORT_BENCH_SCALE scales the number of threads.
//
// Prints (stdout):
//   result time <ms> lower
//   result peak_rss <MiB> lower   (getrusage ru_maxrss)
// Self-check: every block carries a pattern derived from its id, checked before
// it is freed (by its thread or by main); on a mismatch the program reports it
// on stderr and exits 1.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "workload.h"

namespace {

using namespace workload;

// ---- the workload ----

constexpr int kThreads = 2000;  // at scale 1
constexpr int kAlive = 16;
constexpr int kAllocsPerThread = 600;
constexpr int kLive = 48;  // a thread's live set

struct block {
  unsigned char* p;
  size_t n;
  uint64_t id;
};

size_t pick_size(xorshift& rng) {
  if (rng.below(50) == 0) return (64u << 10) + rng.below((192u << 10) + 1);
  unsigned bits = 3 + static_cast<unsigned>(rng.below(11));  // [2^3, 2^14)
  return (size_t{1} << bits) + rng.below(size_t{1} << bits);
}

std::mutex g_handoff_mu;
std::vector<block> g_handoff;  // blocks threads left for main to free
std::atomic<long> g_bad{0};

void thread_body(uint64_t tid) {
  xorshift rng(tid + 1);
  uint64_t id = tid << 32;
  block live[kLive] = {};
  std::vector<block> to_main;
  long bad = 0;
  auto release = [&](block& b) {
    if (b.p == nullptr) return;
    if (rng.below(8) == 0) {
      to_main.push_back(b);
    } else {
      if (!check(b.p, b.n, b.id)) bad++;
      free(b.p);
    }
    b.p = nullptr;
  };
  for (int k = 0; k < kAllocsPerThread; k++) {
    block& b = live[rng.below(kLive)];
    release(b);
    size_t n = pick_size(rng);
    auto* p = static_cast<unsigned char*>(malloc(n));
    if (p == nullptr) {
      fprintf(stderr, "short_threads: malloc(%zu) failed\n", n);
      exit(1);
    }
    stamp(p, n, id);
    b = {p, n, id++};
  }
  for (block& b : live) release(b);
  {
    std::lock_guard<std::mutex> lk(g_handoff_mu);
    g_handoff.insert(g_handoff.end(), to_main.begin(), to_main.end());
  }
  if (bad != 0) g_bad += bad;
}

// Main's share of the frees: whatever threads have handed over so far.
void drain() {
  std::vector<block> mine;
  {
    std::lock_guard<std::mutex> lk(g_handoff_mu);
    mine.swap(g_handoff);
  }
  long bad = 0;
  for (block& b : mine) {
    if (!check(b.p, b.n, b.id)) bad++;
    free(b.p);
  }
  if (bad != 0) g_bad += bad;
}

}  // namespace

int main() {
  const double scale = bench_scale();
  const int threads = static_cast<int>(fmax(1.0, round(kThreads * scale)));

  auto t0 = std::chrono::steady_clock::now();
  // Slot i % kAlive holds the i-th thread; it is joined before its slot is
  // reused, so at most kAlive run at once.
  std::thread alive[kAlive];
  for (int i = 0; i < threads; i++) {
    std::thread& slot = alive[i % kAlive];
    if (slot.joinable()) slot.join();
    slot = std::thread(thread_body, static_cast<uint64_t>(i));
    drain();
  }
  for (std::thread& th : alive)
    if (th.joinable()) th.join();
  drain();
  auto t1 = std::chrono::steady_clock::now();

  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  if (g_bad.load() != 0) {
    fprintf(stderr, "short_threads: %ld corrupted blocks\n", g_bad.load());
    return 1;
  }
  double ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
  fprintf(stderr, "short_threads: %d threads x %d allocations\n", threads, kAllocsPerThread);
  printf("result time %.1f ms lower\n", ms);
  printf("result peak_rss %.1f MiB lower\n", static_cast<double>(ru.ru_maxrss) / 1024.0);
  return 0;
}
