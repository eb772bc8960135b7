// Workload: larson-like server simulation (after Larson and Krishnan, "Memory
// allocation for long-running server applications", ISMM '98).
//
// 8 lanes each own an array of 1000 slots holding one block each. The main
// thread fills every slot, then each lane is worked by a chain of threads: a
// thread repeatedly picks a random slot, frees its block and puts a new block
// of 16..1024 B there; after a fixed number of such replacements it starts a
// fresh thread that continues on the same array and exits. So almost every
// free is of a block another (often already exited) thread allocated, and
// threads come and go during the run, as in a server whose worker threads pick
// up each other's connections. GORT_BENCH_SCALE scales the number of thread
// generations.
//
// Prints (stdout):
//   result throughput <M ops/s> higher   (one op = one free + one malloc)
//   result time <ms> lower               (from starting the first threads to the
//                                         last one finishing)
// Self-check: every block carries a pattern derived from its id, checked before
// it is freed; on a mismatch the program reports it on stderr and exits 1.
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <cstdint>

#include "workload.h"

namespace {

using namespace workload;

// ---- the workload ----

constexpr int kLanes = 8;
constexpr int kSlots = 1000;
constexpr int kOpsPerThread = 25000;  // replacements before a thread hands its lane on
constexpr int kGenerations = 80;      // threads per lane at scale 1

struct slot {
  unsigned char* p;
  size_t n;
  uint64_t id;
};

// One per lane, on its own cache lines so the lanes' bookkeeping does not
// false-share (that would blur what the allocator does).
struct alignas(64) lane {
  slot slots[kSlots];
  xorshift rng{0};
  uint64_t next_id = 0;
  int gens_left = 0;
  long bad = 0;
  pthread_t pred{};  // the thread that worked the lane before; joined by its successor
  bool has_pred = false;
  pthread_t current{};  // the latest thread started on the lane; joined by main at the end
};

lane* g_lanes;
std::atomic<int> g_running{kLanes};

void* work(void* arg) {
  lane* l = static_cast<lane*>(arg);
  // The predecessor started us as its last act; joining it keeps the number of
  // live threads near kLanes and makes its writes to the lane visible here.
  if (l->has_pred) pthread_join(l->pred, nullptr);
  xorshift rng = l->rng;
  uint64_t id = l->next_id;
  long bad = 0;
  for (int op = 0; op < kOpsPerThread; op++) {
    slot& s = l->slots[rng.below(kSlots)];
    if (!check(s.p, s.n, s.id)) bad++;
    free(s.p);
    size_t n = 16 + rng.below(1024 - 16 + 1);
    unsigned char* p = xmalloc(n);
    stamp(p, n, id);
    s = {p, n, id++};
  }
  l->rng = rng;
  l->next_id = id;
  l->bad += bad;
  if (--l->gens_left > 0) {
    l->pred = pthread_self();
    l->has_pred = true;
    pthread_t next;
    if (pthread_create(&next, nullptr, work, l) != 0) {
      fprintf(stderr, "larson: pthread_create failed\n");
      exit(1);
    }
    l->current = next;  // read by main only after the chain's last thread joined us
  } else if (g_running.fetch_sub(1) == 1) {
    g_running.notify_all();
  }
  return nullptr;
}

}  // namespace

int main() {
  const double scale = bench_scale();
  const int gens = static_cast<int>(fmax(1.0, round(kGenerations * scale)));

  g_lanes = new lane[kLanes];
  for (int li = 0; li < kLanes; li++) {
    lane& l = g_lanes[li];
    l.rng = xorshift(static_cast<uint64_t>(li) + 1);
    l.next_id = static_cast<uint64_t>(li) << 48;
    l.gens_left = gens;
    for (slot& s : l.slots) {
      size_t n = 16 + l.rng.below(1024 - 16 + 1);
      s = {xmalloc(n), n, l.next_id++};
      stamp(s.p, s.n, s.id);
    }
  }

  auto t0 = std::chrono::steady_clock::now();
  for (int li = 0; li < kLanes; li++) {
    if (pthread_create(&g_lanes[li].current, nullptr, work, &g_lanes[li]) != 0) {
      fprintf(stderr, "larson: pthread_create failed\n");
      return 1;
    }
  }
  for (int v; (v = g_running.load()) != 0;) g_running.wait(v);
  for (int li = 0; li < kLanes; li++) pthread_join(g_lanes[li].current, nullptr);
  auto t1 = std::chrono::steady_clock::now();

  long bad = 0;
  for (int li = 0; li < kLanes; li++) {
    bad += g_lanes[li].bad;
    for (slot& s : g_lanes[li].slots) {
      if (!check(s.p, s.n, s.id)) bad++;
      free(s.p);
    }
  }
  delete[] g_lanes;
  if (bad != 0) {
    fprintf(stderr, "larson: %ld corrupted blocks\n", bad);
    return 1;
  }

  double ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
  double ops = static_cast<double>(kLanes) * gens * kOpsPerThread;
  fprintf(stderr, "larson: %d lanes x %d generations x %d ops\n", kLanes, gens, kOpsPerThread);
  printf("result throughput %.3f Mops/s higher\n", ops / ms / 1e3);
  printf("result time %.1f ms lower\n", ms);
  return 0;
}
