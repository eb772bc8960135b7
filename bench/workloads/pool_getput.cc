// pool_getput: gort::Pool<T>'s get+put pair against Go's sync.Pool
// (bench/peers/go/poolgetput.go). MAXPROCS tasks share one pool; each
// takes an object, touches it and puts it back, M times. Metric: wall time
// per get+put pair on one task (the tasks run in parallel on their own Ps,
// so with 2 Ps it shows what sharing the pool costs). Self-check: every
// object taken was a live one and not held by another task (an in-use flag),
// and the pool made at most a few objects per task.
#include <gort/pool.h>

#include <atomic>

#include "sched_common.h"

namespace {

struct Obj {
  std::atomic<int> in_use{0};
  long v = 0;
};

std::atomic<long> g_made{0};

}  // namespace

int main() {
  return sched::main_task([] {
    const long m = sched::scaled(4000000, 1000);
    const int procs = gort::maxprocs();
    gort::Pool<Obj> pool([] {
      g_made++;
      return new Obj;
    });
    std::atomic<long> bad{0};
    gort::WaitGroup wg;
    auto t0 = sched::Clock::now();
    for (int k = 0; k < procs; k++) {
      wg.add(1);
      gort::go([&] {
        for (long i = 0; i < m; i++) {
          Obj* o = pool.get();
          if (o->in_use.exchange(1, std::memory_order_relaxed) != 0) bad++;
          o->v++;
          o->in_use.store(0, std::memory_order_relaxed);
          pool.put(o);
        }
        wg.done();
      });
    }
    wg.wait();
    double ns = sched::ns_since(t0);
    if (bad) sched::fail("pool_getput: %ld objects handed to two tasks at once", bad.load());
    if (g_made > 64L * procs) sched::fail("pool_getput: made %ld objects", g_made.load());
    sched::result("getput_ns", ns / m, "ns/op", "lower");
  });
}
