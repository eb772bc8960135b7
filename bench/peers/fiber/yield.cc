// yield (Boost.Fiber peer of bench/workloads/sched_yield.cc): two fibers call
// boost::this_fiber::yield() in a loop, M times each. Metric: wall time per
// yield. Self-check: both finished, and with one thread a yield let the
// other fiber run at least half the time.
#include "fiber_common.h"

int main() {
  peer::Threads threads;
  long m = peer::scaled(500000, 1000);
  static std::atomic<long> count[2];
  static long switched[2];
  static peer::WaitGroup wg;
  wg.add(2);
  auto t0 = peer::Clock::now();
  for (int k = 0; k < 2; k++) {
    peer::go([k, m] {
      std::atomic<long>& other = count[1 - k];
      for (long i = 0; i < m; i++) {
        long before = other.load(std::memory_order_relaxed);
        boost::this_fiber::yield();
        if (other.load(std::memory_order_relaxed) != before) switched[k]++;
        count[k].fetch_add(1, std::memory_order_relaxed);
      }
      wg.done();
    });
  }
  wg.wait();
  double el = peer::ns_since(t0);
  if (count[0].load() != m || count[1].load() != m) peer::fail("yield: wrong counts");
  if (threads.count() == 1 && switched[0] + switched[1] < m)
    peer::fail("yield: a yield did not switch to the other fiber");
  peer::result("switch_ns", el / (2 * m), "ns/yield", "lower");
}
