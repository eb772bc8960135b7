// skynet: a 10-ary tree of tasks with SIZE leaves (the largest power of 10
// not above 250000 * GORT_BENCH_SCALE: 100000 in `make run`, 1M in `make
// bench`); each leaf sends its number to its parent over an unbuffered
// channel, each inner node sums its 10 children and sends the sum up.
// Metric: time in ms. Self-check: the sum is SIZE*(SIZE-1)/2 (499999500000
// for 1M). Peers: bench/peers/go/skynet.go, bench/peers/fiber/skynet.cc.
#include "sched_common.h"

static void skynet(gort::Chan<int64_t> c, int64_t num, int64_t size) {
  if (size == 1) {
    c.send(num);
    return;
  }
  gort::Chan<int64_t> rc;
  int64_t sub = size / 10;
  for (int64_t i = 0; i < 10; i++) gort::go([rc, num, i, sub] { skynet(rc, num + i * sub, sub); });
  int64_t sum = 0;
  for (int i = 0; i < 10; i++) {
    int64_t v = 0;
    if (!rc.recv(v)) sched::fail("skynet: channel closed");
    sum += v;
  }
  c.send(sum);
}

int main() {
  return sched::main_task([] {
    int64_t limit = sched::scaled(250000, 10), size = 10;
    while (size * 10 <= limit) size *= 10;
    auto t0 = sched::Clock::now();
    gort::Chan<int64_t> c;
    gort::go([c, size] { skynet(c, 0, size); });
    int64_t sum = 0;
    if (!c.recv(sum)) sched::fail("skynet: channel closed");
    double el = sched::ns_since(t0);
    int64_t want = size * (size - 1) / 2;
    if (sum != want)
      sched::fail("skynet: sum %lld, want %lld", static_cast<long long>(sum),
                  static_cast<long long>(want));
    sched::result("time", el / 1e6, "ms", "lower");
  });
}
