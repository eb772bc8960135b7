// yield: two tasks call gort::yield() in a loop, M times each (M = 500000 *
// GORT_BENCH_SCALE). Metric: wall time per yield (with MAXPROCS 1, the cost
// of one switch). Self-check: both finished, and with MAXPROCS 1 a yield let
// the other task run (it made progress in between) at least half the time:
// a yield that does not switch would make a fast, wrong figure. Peers:
// bench/peers/go/yield.go, bench/peers/fiber/yield.cc.
#include <atomic>

#include "sched_common.h"

int main() {
  return sched::main_task([] {
    long m = sched::scaled(500000, 1000);
    std::atomic<long> count[2] = {0, 0};
    long switched[2] = {0, 0};
    gort::WaitGroup wg;
    wg.add(2);
    auto t0 = sched::Clock::now();
    for (int k = 0; k < 2; k++) {
      gort::go([&, k] {
        std::atomic<long>& other = count[1 - k];
        for (long i = 0; i < m; i++) {
          long before = other.load(std::memory_order_relaxed);
          gort::yield();
          if (other.load(std::memory_order_relaxed) != before) switched[k]++;
          count[k].fetch_add(1, std::memory_order_relaxed);
        }
        wg.done();
      });
    }
    wg.wait();
    double el = sched::ns_since(t0);
    if (count[0].load() != m || count[1].load() != m)
      sched::fail("yield: counts %ld %ld, want %ld", count[0].load(), count[1].load(), m);
    if (gort::maxprocs() == 1 && switched[0] + switched[1] < m)
      sched::fail("yield: only %ld of %ld yields switched to the other task",
                  switched[0] + switched[1], 2 * m);
    sched::result("switch_ns", el / (2 * m), "ns/yield", "lower");
  });
}
