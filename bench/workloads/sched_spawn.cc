// spawn: spawn and join N tasks that add their index to a shared sum (N =
// 50000 * GORT_BENCH_SCALE), first all at once (burst: N live tasks), then
// in batches of 100 (steady state: tasks and stacks are reused). Metrics: ns
// per task for each. Self-check: the sum of all indices. Peers:
// bench/peers/go/spawn.go, bench/peers/fiber/spawn.cc.
#include <atomic>

#include "sched_common.h"

int main() {
  return sched::main_task([] {
    const long batch = 100;
    long n = sched::scaled(50000, batch);
    n -= n % batch;
    std::atomic<int64_t> sum{0};
    gort::WaitGroup wg;

    auto t0 = sched::Clock::now();
    wg.add(n);
    for (long i = 0; i < n; i++) {
      gort::go([&sum, &wg, i] {
        sum.fetch_add(i, std::memory_order_relaxed);
        wg.done();
      });
    }
    wg.wait();
    double burst = sched::ns_since(t0);

    t0 = sched::Clock::now();
    for (long b = 0; b < n; b += batch) {
      wg.add(batch);
      for (long i = b; i < b + batch; i++) {
        gort::go([&sum, &wg, i] {
          sum.fetch_add(i, std::memory_order_relaxed);
          wg.done();
        });
      }
      wg.wait();
    }
    double batched = sched::ns_since(t0);

    int64_t want = static_cast<int64_t>(n) * (n - 1);
    if (sum.load() != want)
      sched::fail("spawn: sum %lld, want %lld", static_cast<long long>(sum.load()),
                  static_cast<long long>(want));
    sched::result("spawn_ns", burst / n, "ns/task", "lower");
    sched::result("spawn_batch_ns", batched / n, "ns/task", "lower");
  });
}
