// pingpong: two tasks pass a counter back and forth over two unbuffered
// channels, each incrementing it (200000 * GORT_BENCH_SCALE round trips).
// Metric: ns per round trip. Self-check: the final value is 2 * rounds, and
// the partner closes its channel when ping is closed. Peers:
// bench/peers/go/pingpong.go, bench/peers/fiber/pingpong.cc.
#include "sched_common.h"

int main() {
  return sched::main_task([] {
    long rounds = sched::scaled(200000, 1000);
    gort::Chan<int64_t> ping, pong;
    gort::go([ping, pong]() mutable {
      for (int64_t v : ping) pong.send(v + 1);
      pong.close();
    });
    auto t0 = sched::Clock::now();
    int64_t v = 0;
    for (long i = 0; i < rounds; i++) {
      ping.send(v + 1);
      if (!pong.recv(v)) sched::fail("pingpong: pong closed early");
    }
    double el = sched::ns_since(t0);
    ping.close();
    if (pong.recv()) sched::fail("pingpong: pong not closed");
    if (v != 2 * static_cast<int64_t>(rounds))
      sched::fail("pingpong: value %lld, want %lld", static_cast<long long>(v),
                  2 * static_cast<long long>(rounds));
    sched::result("roundtrip_ns", el / rounds, "ns/roundtrip", "lower");
  });
}
