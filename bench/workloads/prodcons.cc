// Workload: producer/consumer. 4 producer threads malloc blocks of 8..512 B,
// stamp them, and pass them in batches of 256 through 4 bounded queues (one per
// consumer; a producer deals its batches round-robin over them) to 4 consumer
// threads that verify and free them. Every block is freed by a thread that did
// not allocate it, in the steady one-way flow of a pipeline or a message
// passing server: the allocator's remote-free path is the hot path.
// Batching keeps the queue locking cost small next to the 256 malloc/free pairs
// it carries, and blocking (not spinning) queues keep 8 threads on 2 cores
// from burning their time slices waiting. GORT_BENCH_SCALE scales the number
// of blocks.
//
// Prints (stdout):
//   result throughput <M ops/s> higher   (one op = one block malloc'ed, passed on
//                                         and freed)
//   result time <ms> lower
// Self-check: each block carries a pattern derived from its id, checked by the
// consumer before free; the consumers also count and sum the ids they saw, so a
// lost or duplicated block is caught. On a mismatch: message on stderr, exit 1.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "workload.h"

namespace {

using namespace workload;

// ---- the workload ----

constexpr int kProducers = 4;
constexpr int kConsumers = 4;
constexpr int kBatch = 256;
constexpr int kDepth = 16;                    // batches a queue holds before producers block
constexpr long kBlocksPerProducer = 1500000;  // at scale 1

struct entry {
  unsigned char* p;
  uint32_t n;
  uint64_t id;
};

struct batch {
  int count;
  entry e[kBatch];
};

// A bounded queue of batches. Sleepers are woken with hysteresis (a consumer
// when kWake batches are waiting, blocked producers when the queue has drained
// to half): waking on every push or pop would make producer and consumer
// ping-pong through the scheduler once per batch.
constexpr size_t kWake = 4;

struct alignas(64) queue {
  std::mutex m;
  std::condition_variable not_empty, not_full;
  batch ring[kDepth];
  size_t head = 0, tail = 0;  // tail - head batches are queued
  bool closed = false;

  void push(const batch& b) {
    std::unique_lock<std::mutex> lk(m);
    if (tail - head == kDepth) not_full.wait(lk, [&] { return tail - head <= kDepth / 2; });
    ring[tail++ % kDepth] = b;
    bool wake = tail - head == kWake;
    lk.unlock();
    if (wake) not_empty.notify_one();
  }
  // False once the queue is closed and drained.
  bool pop(batch& b) {
    std::unique_lock<std::mutex> lk(m);
    if (tail == head) not_empty.wait(lk, [&] { return tail - head >= kWake || closed; });
    if (tail == head) return false;
    b = ring[head++ % kDepth];
    bool wake = tail - head == kDepth / 2;
    lk.unlock();
    if (wake) not_full.notify_all();
    return true;
  }
  void close() {
    {
      std::lock_guard<std::mutex> lk(m);
      closed = true;
    }
    not_empty.notify_all();
  }
};

struct alignas(64) tally {
  long count = 0;
  uint64_t idsum = 0;
  long bad = 0;
};

}  // namespace

int main() {
  const double scale = bench_scale();
  const long per_producer =
      static_cast<long>(fmax(kBatch, round(kBlocksPerProducer * scale / kBatch) * kBatch));

  std::vector<queue> queues(kConsumers);
  std::vector<tally> made(kProducers), seen(kConsumers);
  std::atomic<int> producing{kProducers};

  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> ts;
  for (int c = 0; c < kConsumers; c++)
    ts.emplace_back([&, c] {
      batch b;
      tally t;
      while (queues[c].pop(b)) {
        for (int i = 0; i < b.count; i++) {
          const entry& e = b.e[i];
          if (!check(e.p, e.n, e.id)) t.bad++;
          free(e.p);
          t.count++;
          t.idsum += e.id;
        }
      }
      seen[c] = t;
    });
  for (int p = 0; p < kProducers; p++)
    ts.emplace_back([&, p] {
      xorshift rng(static_cast<uint64_t>(p) + 1);
      uint64_t id = static_cast<uint64_t>(p) << 48;
      tally t;
      batch b;
      for (long k = 0; k < per_producer / kBatch; k++) {
        b.count = kBatch;
        for (entry& e : b.e) {
          uint32_t n = 8 + static_cast<uint32_t>(rng.below(512 - 8 + 1));
          auto* q = static_cast<unsigned char*>(malloc(n));
          if (q == nullptr) {
            fprintf(stderr, "prodcons: malloc(%u) failed\n", n);
            exit(1);
          }
          stamp(q, n, id);
          e = {q, n, id};
          t.count++;
          t.idsum += id++;
        }
        queues[static_cast<size_t>(p + k) % kConsumers].push(b);
      }
      made[p] = t;
      if (producing.fetch_sub(1) == 1)
        for (queue& q : queues) q.close();
    });
  for (auto& th : ts) th.join();
  auto t1 = std::chrono::steady_clock::now();

  tally want, got;
  for (const tally& t : made) want.count += t.count, want.idsum += t.idsum;
  for (const tally& t : seen) got.count += t.count, got.idsum += t.idsum, got.bad += t.bad;
  if (got.bad != 0 || got.count != want.count || got.idsum != want.idsum) {
    fprintf(stderr, "prodcons: %ld corrupted blocks; %ld of %ld blocks arrived (id sums %s)\n",
            got.bad, got.count, want.count, got.idsum == want.idsum ? "match" : "differ");
    return 1;
  }

  double ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
  fprintf(stderr, "prodcons: %d producers x %ld blocks\n", kProducers, per_producer);
  printf("result throughput %.3f Mops/s higher\n", static_cast<double>(want.count) / ms / 1e3);
  printf("result time %.1f ms lower\n", ms);
  return 0;
}
