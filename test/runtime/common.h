// Shared helpers for the scheduler tests.
//
// Boost.Test is not thread-safe, and a BOOST_REQUIRE that throws out of a task
// would end the whole process (an exception escaping a task is fatal). So code
// running inside tasks checks with TCHECK / TCHECK_EQ, which only record the
// failure; run_checked() runs gort::run and then reports what was recorded
// from the test's own thread. BOOST_TEST is used outside gort::run only.
#pragma once

#include <atomic>
#include <boost/test/unit_test.hpp>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "gort/runtime.h"

namespace rt_test {

using namespace std::chrono_literals;
using gort::Clock;

struct failure_log {
  std::mutex mu;
  std::vector<std::string> list;
};
inline failure_log& failures() {
  static failure_log f;
  return f;
}
inline void record_failure(const char* file, int line, const std::string& msg) {
  std::ostringstream os;
  os << file << ":" << line << ": check failed in task " << gort::task_id() << ": " << msg;
  std::lock_guard<std::mutex> g(failures().mu);
  if (failures().list.size() < 50) failures().list.push_back(os.str());
}
inline size_t failure_count() {
  std::lock_guard<std::mutex> g(failures().mu);
  return failures().list.size();
}

#define TCHECK(cond)                                                   \
  do {                                                                 \
    if (!(cond)) ::rt_test::record_failure(__FILE__, __LINE__, #cond); \
  } while (0)
#define TCHECK_MSG(cond, msg)                                          \
  do {                                                                 \
    if (!(cond)) {                                                     \
      std::ostringstream tcheck_os_;                                   \
      tcheck_os_ << #cond << " [" << msg << "]";                       \
      ::rt_test::record_failure(__FILE__, __LINE__, tcheck_os_.str()); \
    }                                                                  \
  } while (0)
#define TCHECK_EQ(a, b)                                                                    \
  do {                                                                                     \
    const auto tcheck_a_ = (a); /* a copy: (a) may refer into a temporary */               \
    const auto tcheck_b_ = (b);                                                            \
    if (!(tcheck_a_ == tcheck_b_)) {                                                       \
      std::ostringstream tcheck_os_;                                                       \
      tcheck_os_ << #a << " == " << #b << " [" << tcheck_a_ << " != " << tcheck_b_ << "]"; \
      ::rt_test::record_failure(__FILE__, __LINE__, tcheck_os_.str());                     \
    }                                                                                      \
  } while (0)

// gort::run(f, opts), then the failures recorded by TCHECK reported to
// Boost.Test. Returns run's result (also checked to be 0).
template <class F>
int run_checked(F&& f, gort::RunOptions opts = {}) {
  {
    std::lock_guard<std::mutex> g(failures().mu);
    failures().list.clear();
  }
  int rc = gort::run(std::forward<F>(f), opts);
  BOOST_TEST(rc == 0);
  std::lock_guard<std::mutex> g(failures().mu);
  for (const auto& s : failures().list) BOOST_ERROR(s);
  failures().list.clear();
  return rc;
}

// The maxprocs the suite runs with (GORT_MAXPROCS, set by the Makefile).
inline int suite_maxprocs() {
  return gort::default_maxprocs();
}

// A bound for waits that must end in a correct runtime: long enough that only
// a bug (a lost wake-up) reaches it, so that such a bug fails the test instead
// of hanging the suite.
constexpr auto kHang = std::chrono::seconds(10);

// Receives from c, or gives up after d (nullopt, *timed_out set).
template <class T>
std::optional<T> recv_within(gort::Chan<T>& c, gort::Duration d, bool* timed_out = nullptr) {
  std::optional<T> r;
  bool to = false;
  auto timeout = gort::after(d);
  gort::select(gort::on_recv(c, [&](std::optional<T> v) { r = std::move(v); }),
               gort::on_recv(timeout, [&] { to = true; }));
  if (timed_out) *timed_out = to;
  return r;
}

// Waits (sleeping 1 ms at a time, in a task or a thread) until pred() holds or
// d has passed; returns pred().
template <class P>
bool wait_until(P pred, gort::Duration d = kHang) {
  auto deadline = Clock::now() + d;
  while (!pred()) {
    if (Clock::now() > deadline) return pred();
    gort::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// Waits for wg, or gives up after d: false if it timed out (the waiter task is
// then abandoned, which gort::run allows).
inline bool wait_group_within(gort::WaitGroup& wg, gort::Duration d = kHang) {
  gort::Chan<int> done(1);
  gort::go([&wg, done]() mutable {
    wg.wait();
    done.send(1);
  });
  bool to = false;
  recv_within(done, d, &to);
  return !to;
}

// Busy work that the compiler cannot drop, for about `us` microseconds.
inline void spin_for(std::chrono::microseconds us) {
  auto end = Clock::now() + us;
  volatile unsigned x = 0;
  while (Clock::now() < end)
    for (int i = 0; i < 100; i++) x = x + static_cast<unsigned>(i);
}

// An element type that counts its constructions and destructions and catches
// double destruction or use of a destroyed object.
struct Counted {
  static std::atomic<long> live, constructed, destroyed, bad;
  static constexpr uint32_t kAlive = 0xC0FFEE11, kDead = 0xDEADDEAD;
  uint32_t magic = kAlive;
  int value = 0;
  Counted() { live++, constructed++; }
  explicit Counted(int v) : value(v) { live++, constructed++; }
  Counted(const Counted& o) : value(o.value) {
    if (o.magic != kAlive) bad++;
    live++, constructed++;
  }
  Counted(Counted&& o) noexcept : value(o.value) {
    if (o.magic != kAlive) bad++;
    o.value = -1;
    live++, constructed++;
  }
  Counted& operator=(const Counted& o) {
    if (o.magic != kAlive || magic != kAlive) bad++;
    value = o.value;
    return *this;
  }
  Counted& operator=(Counted&& o) noexcept {
    if (o.magic != kAlive || magic != kAlive) bad++;
    value = o.value;
    o.value = -1;
    return *this;
  }
  ~Counted() {
    if (magic != kAlive) bad++;
    magic = kDead;
    live--, destroyed++;
  }
  static void reset() { live = constructed = destroyed = bad = 0; }
};
inline std::atomic<long> Counted::live{0}, Counted::constructed{0}, Counted::destroyed{0},
    Counted::bad{0};

}  // namespace rt_test
