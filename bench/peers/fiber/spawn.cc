// spawn (Boost.Fiber peer of bench/workloads/sched_spawn.cc): spawn and join
// N fibers that add their index to a shared sum, first all at once (burst),
// then in batches of 100. Metrics: ns per fiber for each. Self-check: the sum.
#include "fiber_common.h"

int main() {
  peer::Threads threads;
  const long batch = 100;
  long n = peer::scaled(50000, batch);
  n -= n % batch;
  static std::atomic<int64_t> sum{0};
  static peer::WaitGroup wg;

  auto t0 = peer::Clock::now();
  wg.add(n);
  for (long i = 0; i < n; i++) {
    peer::go([i] {
      sum.fetch_add(i, std::memory_order_relaxed);
      wg.done();
    });
  }
  wg.wait();
  double burst = peer::ns_since(t0);

  t0 = peer::Clock::now();
  for (long b = 0; b < n; b += batch) {
    wg.add(batch);
    for (long i = b; i < b + batch; i++) {
      peer::go([i] {
        sum.fetch_add(i, std::memory_order_relaxed);
        wg.done();
      });
    }
    wg.wait();
  }
  double batched = peer::ns_since(t0);

  if (sum.load() != static_cast<int64_t>(n) * (n - 1)) peer::fail("spawn: wrong sum");
  peer::result("spawn_ns", burst / n, "ns/task", "lower");
  peer::result("spawn_batch_ns", batched / n, "ns/task", "lower");
}
