// Helpers shared by the Boost.Fiber peer programs (bench/peers/fiber/*.cc):
// the thread setup that FIBER_THREADS selects, the stacks, a WaitGroup, RSS,
// and the harness protocol of bench/run.py
// (`result <metric> <value> <unit> <lower|higher>`).
//
// FIBER_THREADS=1 (the default) runs every fiber on the main thread with
// Boost.Fiber's default scheduler (round_robin). FIBER_THREADS=N > 1 installs
// boost::fibers::algo::work_stealing on the main thread and on N-1 helper
// threads, which run (and steal) fibers until the program is done: the
// Boost.Fiber counterpart of GOMAXPROCS=N. Idle threads spin looking for work
// (work_stealing's default); FIBER_SUSPEND=1 makes them sleep until notified
// instead (work_stealing(N, true)): on this 2-CPU VM that made pingpong and
// sieve faster and skynet slower and noisier.
//
// Stacks: 8 KiB from malloc (boost::fibers::fixedsize_stack(2 pages)), what
// Boost.Fiber's own skynet benchmarks use; the default (128 KiB, one mmap
// each) cannot hold a million parked fibers under vm.max_map_count. Build
// with -DFIBER_GUARDED_STACKS to put a guard page under each stack (mmap:
// slow, small runs only) when checking that 8 KiB is enough.
#pragma once

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <atomic>
#include <boost/fiber/all.hpp>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "../../workloads/workload.h"

namespace peer {

using Clock = std::chrono::steady_clock;

// A failed self-check: message, exit 1 without unwinding (fibers may still be
// blocked on other threads).
[[noreturn]] inline void fail(const char* msg) {
  fprintf(stderr, "workload: %s\n", msg);
  fflush(stdout);
  fflush(stderr);
  _Exit(1);
}

// base * GORT_BENCH_SCALE, at least min.
inline long scaled(double base, long min) {
  long n = static_cast<long>(base * workload::bench_scale());
  return n < min ? min : n;
}

// FIBER_THREADS: 1 to 256 (default 1); anything else is an error (exit 2).
inline int fiber_threads() {
  const char* s = getenv("FIBER_THREADS");
  if (s == nullptr || *s == '\0') return 1;
  char* end = nullptr;
  long v = strtol(s, &end, 10);
  if (*end != '\0' || v < 1 || v > 256) {
    fprintf(stderr, "workload: bad FIBER_THREADS=%s\n", s);
    exit(2);
  }
  return static_cast<int>(v);
}

#ifdef FIBER_GUARDED_STACKS
using stack_allocator = boost::fibers::protected_fixedsize_stack;
#else
using stack_allocator = boost::fibers::fixedsize_stack;
#endif
inline stack_allocator stacks() {
  return stack_allocator(2 * boost::context::stack_traits::page_size());
}

// Starts a detached fiber (launch::post: it is queued, the caller goes on,
// like `go f()`).
template <class F>
void go(F&& f) {
  boost::fibers::fiber(std::allocator_arg, stacks(), std::forward<F>(f)).detach();
}

// The scheduler setup for the whole program: construct first in main (before
// any fiber starts), destroy last. See the top of this file.
class Threads {
 public:
  Threads() : n_(fiber_threads()), suspend_(env_flag("FIBER_SUSPEND")) {
    if (n_ == 1) return;  // the default round_robin on the main thread
    for (int i = 1; i < n_; i++) {
      helpers_.emplace_back([this] {
        boost::fibers::use_scheduling_algorithm<boost::fibers::algo::work_stealing>(n_, suspend_);
        ready_.wait();
        // Parks this thread's main fiber; the thread's scheduler runs (and
        // steals) worker fibers until the program is done.
        std::unique_lock<boost::fibers::mutex> lk(mu_);
        cv_.wait(lk, [this] { return done_; });
      });
    }
    boost::fibers::use_scheduling_algorithm<boost::fibers::algo::work_stealing>(n_, suspend_);
    ready_.wait();
  }
  ~Threads() {
    if (n_ == 1) return;
    {
      std::lock_guard<boost::fibers::mutex> lk(mu_);
      done_ = true;
    }
    cv_.notify_all();
    for (auto& t : helpers_) t.join();
  }
  int count() const { return n_; }

 private:
  static bool env_flag(const char* name) {
    const char* s = getenv(name);
    return s != nullptr && strcmp(s, "1") == 0;
  }

  int n_;
  bool suspend_;
  boost::fibers::barrier ready_{static_cast<size_t>(n_)};  // every thread's scheduler is installed
  std::vector<std::thread> helpers_;
  boost::fibers::mutex mu_;
  boost::fibers::condition_variable cv_;
  bool done_ = false;
};

// Go's sync.WaitGroup for fibers: an atomic count; the mutex and condition
// variable are only touched when the count reaches zero or a waiter waits.
class WaitGroup {
 public:
  void add(long d) { n_.fetch_add(d, std::memory_order_relaxed); }
  void done() {
    if (n_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<boost::fibers::mutex> lk(mu_);
      cv_.notify_all();
    }
  }
  void wait() {
    std::unique_lock<boost::fibers::mutex> lk(mu_);
    cv_.wait(lk, [this] { return n_.load(std::memory_order_acquire) == 0; });
  }

 private:
  std::atomic<long> n_{0};
  boost::fibers::mutex mu_;
  boost::fibers::condition_variable cv_;
};

// VmRSS from /proc/self/status, in bytes.
inline long rss_bytes() {
  FILE* f = fopen("/proc/self/status", "r");
  if (f == nullptr) fail("cannot open /proc/self/status");
  char line[256];
  long kb = -1;
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, "VmRSS:", 6) == 0) kb = strtol(line + 6, nullptr, 10);
  }
  fclose(f);
  if (kb < 0) fail("no VmRSS in /proc/self/status");
  return kb * 1024;
}

inline double ns_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::nano>(Clock::now() - t0).count();
}

inline void result(const char* metric, double value, const char* unit, const char* better) {
  printf("result %s %.6g %s %s\n", metric, value, unit, better);
}

}  // namespace peer
