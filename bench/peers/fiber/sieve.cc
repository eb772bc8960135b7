// sieve (Boost.Fiber peer of bench/workloads/sched_sieve.cc): the concurrent
// prime sieve: a generator fiber pushes 2, 3, 4, ... into a chain of filter
// fibers joined by unbuffered channels; each prime that comes out of the
// chain adds a filter. Metric: time in ms to get the first N primes
// (N = 1000 * scale). Self-check: the last prime against a sequential sieve.
// As a Go program does, it exits with the chain still blocked (_exit: the
// fibers' stacks and threads are never unwound).
#include <unistd.h>

#include "fiber_common.h"

using chan = boost::fibers::unbuffered_channel<long>;
using boost::fibers::channel_op_status;

static long nth_prime(long n) {
  for (long limit = 64;; limit *= 2) {
    std::vector<bool> composite(limit);
    long count = 0;
    for (long i = 2; i < limit; i++) {
      if (composite[i]) continue;
      if (++count == n) return i;
      for (long j = i * i; j < limit; j += i) composite[j] = true;
    }
  }
}

int main() {
  peer::Threads threads;
  long n = peer::scaled(1000, 10);
  auto t0 = peer::Clock::now();
  chan* ch = new chan;
  peer::go([ch] {  // the generator
    for (long i = 2; ch->push(i) == channel_op_status::success; i++) {
    }
  });
  long prime = 0;
  for (long i = 0; i < n; i++) {
    if (ch->pop(prime) != channel_op_status::success) peer::fail("sieve: chain closed");
    chan* out = new chan;
    peer::go([in = ch, out, p = prime] {  // a filter
      long v;
      while (in->pop(v) == channel_op_status::success) {
        if (v % p != 0 && out->push(v) != channel_op_status::success) break;
      }
    });
    ch = out;
  }
  double el = peer::ns_since(t0);
  if (prime != nth_prime(n)) peer::fail("sieve: wrong last prime");
  peer::result("time", el / 1e6, "ms", "lower");
  fflush(stdout);
  _exit(0);
}
