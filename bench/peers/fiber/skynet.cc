// skynet (Boost.Fiber peer of bench/workloads/sched_skynet.cc): a 10-ary tree
// of fibers, SIZE leaves (1M at GORT_BENCH_SCALE=4); each leaf pushes its
// number to its parent over an unbuffered channel, each inner node sums its
// 10 children and pushes the sum up. Metric: time in ms. Self-check: the sum
// is SIZE*(SIZE-1)/2 (499999500000 for 1M).
#include "fiber_common.h"

using chan = boost::fibers::unbuffered_channel<int64_t>;

static void skynet(chan& c, int64_t num, int64_t size) {
  if (size == 1) {
    c.push(num);
    return;
  }
  chan rc;
  int64_t sub = size / 10;
  for (int64_t i = 0; i < 10; i++) peer::go([&rc, num, i, sub] { skynet(rc, num + i * sub, sub); });
  int64_t sum = 0;
  for (int i = 0; i < 10; i++) sum += rc.value_pop();
  c.push(sum);
}

int main() {
  peer::Threads threads;
  // The largest power of 10 not above 250000 * scale: 100000, 1M at scale 4.
  int64_t limit = peer::scaled(250000, 10), size = 10;
  while (size * 10 <= limit) size *= 10;
  auto t0 = peer::Clock::now();
  static chan c;
  peer::go([size] { skynet(c, 0, size); });
  int64_t sum = c.value_pop();
  double el = peer::ns_since(t0);
  if (sum != size * (size - 1) / 2) {
    fprintf(stderr, "workload: skynet: sum %lld, want %lld\n", static_cast<long long>(sum),
            static_cast<long long>(size * (size - 1) / 2));
    peer::fail("skynet: wrong sum");
  }
  peer::result("time", el / 1e6, "ms", "lower");
}
