// sieve: the concurrent prime sieve: a generator task sends 2, 3, 4, ... into
// a chain of filter tasks joined by unbuffered channels; each prime that
// comes out of the chain adds a filter for its multiples. Metric: time in ms
// to get the first N primes (N = 1000 * GORT_BENCH_SCALE). Self-check: the
// last prime against a sequential sieve of Eratosthenes. As in Go, the chain
// is left blocked when the main task returns (gort::run abandons it). Peers:
// bench/peers/go/sieve.go, bench/peers/fiber/sieve.cc.
#include <vector>

#include "sched_common.h"

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
  return sched::main_task([] {
    long n = sched::scaled(1000, 10);
    auto t0 = sched::Clock::now();
    gort::Chan<long> ch;
    gort::go([ch]() mutable {  // the generator
      for (long i = 2;; i++) ch.send(i);
    });
    long prime = 0;
    for (long i = 0; i < n; i++) {
      if (!ch.recv(prime)) sched::fail("sieve: chain closed");
      gort::Chan<long> out;
      gort::go([in = ch, out, p = prime]() mutable {  // a filter
        for (;;) {
          long v = 0;
          if (!in.recv(v)) return;
          if (v % p != 0) out.send(v);
        }
      });
      ch = out;
    }
    double el = sched::ns_since(t0);
    long want = nth_prime(n);
    if (prime != want) sched::fail("sieve: prime %ld is %ld, want %ld", n, prime, want);
    sched::result("time", el / 1e6, "ms", "lower");
  });
}
