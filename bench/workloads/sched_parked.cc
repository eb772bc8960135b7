// parked: N tasks (250000 * GORT_BENCH_SCALE: 1M in `make bench`) each
// parked on a receive from one unbuffered channel; VmRSS before spawning and
// once all are parked gives the bytes per parked task (Go: about 2.7 KB).
// Closing the channel wakes them all; then they are joined. Self-check: every
// task woke exactly once, by the close. Peers: bench/peers/go/parked.go,
// bench/peers/fiber/parked.cc.
#include <atomic>

#include "sched_common.h"

int main() {
  return sched::main_task([] {
    long n = sched::scaled(250000, 1000);
    gort::Chan<int> start;
    gort::WaitGroup ready, done;
    std::atomic<long> woke{0};

    long rss0 = sched::rss_bytes();
    auto t0 = sched::Clock::now();
    ready.add(n);
    done.add(n);
    for (long i = 0; i < n; i++) {
      gort::go([&] {
        ready.done();
        if (!start.recv()) woke.fetch_add(1, std::memory_order_relaxed);
        done.done();
      });
    }
    ready.wait();
    double park = sched::ns_since(t0);
    long rss1 = sched::rss_bytes();

    t0 = sched::Clock::now();
    start.close();
    done.wait();
    double release = sched::ns_since(t0);

    if (woke.load() != n) sched::fail("parked: %ld of %ld tasks woke by the close", woke.load(), n);
    sched::result("bytes_per_task", static_cast<double>(rss1 - rss0) / n, "B", "lower");
    sched::result("park_ns", park / n, "ns/task", "lower");
    sched::result("release_ns", release / n, "ns/task", "lower");
  });
}
