// Shared helpers for the collector's tests.
#pragma once

#include <atomic>
#include <boost/test/unit_test.hpp>
#include <cstdint>
#include <cstring>
#include <functional>
#include <thread>

#include "gort/gc.h"

namespace gc_test {

// Runs fn on a thread of its own and waits for it to exit: what it leaves
// only on its stack is garbage afterwards.
inline void on_thread(const std::function<void()>& fn) {
  std::thread t(fn);
  t.join();
}

// A weak reference's state, read from a fresh thread (reading registers the
// reader, and the main thread stays out of the GC heap).
inline bool alive(gort_gc_weak* w) {
  bool r = false;
  on_thread([&] { r = gort_gc_weak_get(w) != nullptr; });
  return r;
}

// A full collection from the main thread, which first leaves the set of
// registered threads (a gort::run or a handle call may have put it there):
// its stack holds stale words from earlier tests that conservative scanning
// would take for pointers.
inline void collect(int n = 1) {
  gort_gc_unregister_thread();
  for (int i = 0; i < n; i++) gort_gc_collect();
}

inline uint64_t stat_cycles() {
  gort_gc_stats_t st;
  gort_gc_stats(&st);
  return st.cycles;
}

// A small deterministic generator (tests must be repeatable).
struct rng {
  uint64_t s;
  explicit rng(uint64_t seed) : s(seed * 2654435761u + 1) {}
  uint64_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
  uint64_t below(uint64_t n) { return next() % n; }
};

// FNV-1a over a byte range.
inline uint64_t checksum(const void* p, size_t n, uint64_t seed = 1469598103934665603ull) {
  const unsigned char* b = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; i++) seed = (seed ^ b[i]) * 1099511628211ull;
  return seed;
}

}  // namespace gc_test
