// Workload: allocator-induced false sharing, after mimalloc-bench's
// cache-scratch (from Hoard, Berger et al., ASPLOS 2000).
//
// Phase 1 ("scratch"): the main thread allocates one small object (8..32 B)
// per worker, back to back, and hands one to each of 8 workers. A worker frees
// it, then many times allocates its own object of the same size, writes every
// byte of it over and over, and frees it. An allocator that gives the worker back the
// object it just freed (or any slot next to another thread's object) puts
// objects of different threads on one cache line, and the writes of two
// threads running on the two cores bounce that line between them.
// Phase 2 ("direct"): the main thread again allocates one object per worker
// back to back, and each worker writes its object directly for as long, then
// frees it. Here the sharing comes from how tightly the allocator packs one
// thread's consecutive small allocations.
// GORT_BENCH_SCALE scales the number of allocate-write-free rounds (phase 1) and
// of write rounds (phase 2).
//
// Prints (stdout):
//   result time <ms> lower   (both phases; per-phase times go to stderr)
// Self-check: objects start with a pattern derived from their id, and after
// the writes each byte must have advanced by exactly the number of writes; on a
// mismatch the program reports it on stderr and exits 1.
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

constexpr int kWorkers = 8;
constexpr int kRounds = 60000;        // phase 1 allocate-write-free rounds per worker at scale 1
constexpr int kWrites = 100;          // passes over the object per round
constexpr int kDirectRounds = 60000;  // phase 2 rounds (of kWrites passes) at scale 1

struct object {
  unsigned char* p;
  size_t n;
  uint64_t id;
};

object make_object(size_t n, uint64_t id) {
  object o{xmalloc(n), n, id};
  for (size_t i = 0; i < n; i++) o.p[i] = pat(id, i);
  return o;
}

// Writes every byte of o `passes` times through a volatile pointer, so each
// write really reaches the cache line (and the malloc cannot be elided), then
// checks every byte has moved by `before + passes` since it was stamped.
bool hammer(const object& o, int passes, long before = 0) {
  volatile unsigned char* v = o.p;
  for (int r = 0; r < passes; r++)
    for (size_t i = 0; i < o.n; i++) v[i] = static_cast<unsigned char>(v[i] + 1);
  bool ok = true;
  for (size_t i = 0; i < o.n; i++)
    ok &= o.p[i] == static_cast<unsigned char>(pat(o.id, i) + before + passes);
  return ok;
}

// Runs fn(worker) on kWorkers threads released together, so the writers
// overlap in time as much as 2 cores allow.
template <class F>
double run_workers(F fn) {
  std::atomic<bool> go{false};
  std::vector<std::thread> ts;
  for (int w = 0; w < kWorkers; w++)
    ts.emplace_back([&, w] {
      go.wait(false);
      fn(w);
    });
  auto t0 = std::chrono::steady_clock::now();
  go.store(true);
  go.notify_all();
  for (auto& th : ts) th.join();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main() {
  const double scale = bench_scale();
  const int rounds = static_cast<int>(fmax(1.0, round(kRounds * scale)));
  const int direct_rounds = static_cast<int>(fmax(1.0, round(kDirectRounds * scale)));
  std::atomic<long> bad{0};
  // Each worker keeps one object size (as in cache-scratch), so the object it
  // was handed is a candidate for its own allocations.
  xorshift rng(1);
  size_t size[kWorkers];
  for (size_t& n : size) n = 8 + rng.below(32 - 8 + 1);

  // Phase 1: scratch.
  std::vector<object> handed;
  for (int w = 0; w < kWorkers; w++)
    handed.push_back(make_object(size[w], static_cast<uint64_t>(w)));
  double scratch_ms = run_workers([&](int w) {
    const object& h = handed[static_cast<size_t>(w)];
    bool ok = hammer(h, 0);
    free(h.p);
    uint64_t id = (static_cast<uint64_t>(w) + 1) << 40;
    for (int r = 0; r < rounds; r++) {
      object o = make_object(size[w], id++);
      ok &= hammer(o, kWrites);
      free(o.p);
    }
    if (!ok) bad++;
  });

  // Phase 2: direct.
  std::vector<object> mine;
  for (int w = 0; w < kWorkers; w++)
    mine.push_back(make_object(size[w], static_cast<uint64_t>(w) + 1000));
  double direct_ms = run_workers([&](int w) {
    const object& o = mine[static_cast<size_t>(w)];
    bool ok = true;
    for (int r = 0; r < direct_rounds; r++)
      ok &= hammer(o, kWrites, static_cast<long>(r) * kWrites);
    free(o.p);
    if (!ok) bad++;
  });

  if (bad.load() != 0) {
    fprintf(stderr, "false_sharing: %ld workers saw corrupted objects\n", bad.load());
    return 1;
  }
  fprintf(stderr, "false_sharing: scratch %.1f ms, direct %.1f ms\n", scratch_ms, direct_ms);
  printf("result time %.1f ms lower\n", scratch_ms + direct_ms);
  return 0;
}
