// pingpong (Boost.Fiber peer of bench/workloads/sched_pingpong.cc): two
// fibers pass a counter back and forth over two unbuffered channels, each
// incrementing it. Metric: ns per round trip. Self-check: the final value.
#include "fiber_common.h"

int main() {
  peer::Threads threads;
  long rounds = peer::scaled(200000, 1000);
  static boost::fibers::unbuffered_channel<int64_t> ping, pong;
  peer::go([] {
    int64_t v;
    while (ping.pop(v) == boost::fibers::channel_op_status::success) pong.push(v + 1);
    pong.close();
  });
  auto t0 = peer::Clock::now();
  int64_t v = 0;
  for (long i = 0; i < rounds; i++) {
    ping.push(v + 1);
    if (pong.pop(v) != boost::fibers::channel_op_status::success)
      peer::fail("pingpong: pong closed");
  }
  double el = peer::ns_since(t0);
  ping.close();
  int64_t x;
  if (pong.pop(x) != boost::fibers::channel_op_status::closed)
    peer::fail("pingpong: pong not closed");
  if (v != 2 * rounds) peer::fail("pingpong: wrong final value");
  peer::result("roundtrip_ns", el / rounds, "ns/roundtrip", "lower");
}
