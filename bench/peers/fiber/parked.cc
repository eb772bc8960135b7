// parked (Boost.Fiber peer of bench/workloads/sched_parked.cc): N fibers
// (1M at GORT_BENCH_SCALE=4) each parked on a pop from one unbuffered
// channel; VmRSS before and once all are parked gives the bytes per parked
// fiber. Closing the channel wakes them all; then they are joined.
// Self-check: every fiber woke exactly once, by the close.
#include "fiber_common.h"

int main() {
  peer::Threads threads;
  long n = peer::scaled(250000, 1000);
  static boost::fibers::unbuffered_channel<int> start;
  static peer::WaitGroup ready, done;
  static std::atomic<long> woke{0};

  long rss0 = peer::rss_bytes();
  auto t0 = peer::Clock::now();
  ready.add(n);
  done.add(n);
  for (long i = 0; i < n; i++) {
    peer::go([] {
      ready.done();
      int v;
      if (start.pop(v) == boost::fibers::channel_op_status::closed) woke.fetch_add(1);
      done.done();
    });
  }
  ready.wait();
  double park = peer::ns_since(t0);
  long rss1 = peer::rss_bytes();

  t0 = peer::Clock::now();
  start.close();
  done.wait();
  double release = peer::ns_since(t0);

  if (woke.load() != n) peer::fail("parked: not every fiber woke by the close");
  peer::result("bytes_per_task", static_cast<double>(rss1 - rss0) / n, "B", "lower");
  peer::result("park_ns", park / n, "ns/task", "lower");
  peer::result("release_ns", release / n, "ns/task", "lower");
}
