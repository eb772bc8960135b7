// Timers: sleep, wake-up order, Timer stop/reset, after, AfterFunc, many
// timers on many tasks. Only lower bounds on elapsed time are checked ("a 10
// ms sleep takes at least 10 ms"); upper bounds are generous hang guards.
#include <algorithm>
#include <atomic>
#include <boost/test/unit_test.hpp>
#include <memory>
#include <mutex>
#include <random>
#include <vector>

#include "common.h"

using namespace rt_test;

namespace {

// N tasks sleep (i+1)*slot in a shuffled spawn order and record the order in
// which they wake. Empty string if they woke in order of duration.
std::string sleep_order_attempt(gort::Duration slot, bool use_until, std::mt19937& rng) {
  constexpr int N = 6;
  std::vector<int> perm(N);
  for (int i = 0; i < N; i++) perm[i] = i;
  std::shuffle(perm.begin(), perm.end(), rng);
  std::mutex mu;
  std::vector<int> order;
  std::atomic<int> too_early{0};
  gort::WaitGroup wg;
  auto base = Clock::now();
  for (int k : perm) {
    wg.go([&, k] {
      auto d = slot * (k + 1);
      auto start = Clock::now();
      if (use_until) {
        gort::sleep_until(base + d);
        if (Clock::now() < base + d) too_early++;
      } else {
        gort::sleep_for(d);
        if (Clock::now() - start < d) too_early++;
      }
      std::lock_guard<std::mutex> g(mu);
      order.push_back(k);
    });
  }
  wg.wait();
  TCHECK_EQ(too_early.load(), 0);
  std::string s;
  for (int k : order) s += std::to_string(k) + " ";
  return std::is_sorted(order.begin(), order.end()) ? std::string() : s;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(timers)

BOOST_AUTO_TEST_CASE(sleep_takes_at_least_its_duration) {
  run_checked([] {
    for (auto d : {1ms, 10ms, 25ms}) {
      auto t0 = Clock::now();
      gort::sleep_for(d);
      TCHECK(Clock::now() - t0 >= d);
    }
    auto until = Clock::now() + 15ms;
    gort::sleep_until(until);
    TCHECK(Clock::now() >= until);
    // Zero, negative and past deadlines return (promptly: the hang guard of
    // the suite is the only bound).
    gort::sleep_for(0ns);
    gort::sleep_for(-5ms);
    gort::sleep_until(Clock::now() - 1s);
  });
}

// Wake-up order follows the durations. A machine stall longer than a slot
// can legitimately reorder wake-ups, so a wrong order is retried with wider
// slots (as Go's TestAfterQueuing does); a real ordering bug fails all three.
BOOST_AUTO_TEST_CASE(sleepers_wake_in_order_of_duration) {
  std::string fail_for, fail_until;
  run_checked([&] {
    std::mt19937 rng(12345);
    for (auto slot : {10ms, 40ms, 100ms}) {
      fail_for = sleep_order_attempt(slot, false, rng);
      if (fail_for.empty()) break;
    }
    for (auto slot : {10ms, 40ms, 100ms}) {
      fail_until = sleep_order_attempt(slot, true, rng);
      if (fail_until.empty()) break;
    }
  });
  BOOST_TEST(fail_for.empty(), "sleep_for wake order: " << fail_for);
  BOOST_TEST(fail_until.empty(), "sleep_until wake order: " << fail_until);
}

BOOST_AUTO_TEST_CASE(timer_fires_once) {
  run_checked([] {
    auto t0 = Clock::now();
    gort::Timer t(10ms);
    bool timed_out = false;
    auto v = recv_within(t.channel(), kHang, &timed_out);
    TCHECK(!timed_out);
    TCHECK(v.has_value());
    if (v) TCHECK(*v >= t0 + 10ms);
    TCHECK(Clock::now() - t0 >= 10ms);
    TCHECK(!t.stop());  // already fired
    // Fires once only.
    gort::sleep_for(20ms);
    TCHECK_EQ(gort::select(gort::on_recv(t.channel()), gort::on_default()), 1);
  });
}

// The timer is already due when the task blocks on its channel (it expired
// while the task was busy and no scheduling point ran it): the receive must
// still get the value.
BOOST_AUTO_TEST_CASE(timer_due_when_receiving) {
  int got = 0;
  run_checked([&] {
    for (int i = 0; i < 20; i++) {
      gort::Timer t(std::chrono::microseconds(100));
      spin_for(std::chrono::microseconds(500));
      got += t.channel().recv().has_value();
    }
  });
  BOOST_TEST(got == 20);
}

BOOST_AUTO_TEST_CASE(timer_stop_before_fire) {
  bool first = false, second = true;
  int idx = -1;
  run_checked([&] {
    gort::Timer t(100ms);
    first = t.stop();
    second = t.stop();
    gort::sleep_for(150ms);
    idx = gort::select(gort::on_recv(t.channel()), gort::on_default());
  });
  BOOST_TEST(first);
  BOOST_TEST(!second);
  BOOST_TEST(idx == 1, "a stopped timer sent on its channel");
}

BOOST_AUTO_TEST_CASE(timer_reset) {
  run_checked([] {
    // Pending: reset rearms it sooner.
    {
      auto t0 = Clock::now();
      gort::Timer t(30s);
      TCHECK(t.reset(20ms));
      bool timed_out = false;
      auto v = recv_within(t.channel(), 10s, &timed_out);
      TCHECK_MSG(!timed_out, "reset(20ms) did not rearm a 30 s timer");
      if (v) TCHECK(*v >= t0 + 20ms);
    }
    // Pending: reset pushes it later.
    {
      auto t0 = Clock::now();
      gort::Timer t(10ms);
      TCHECK(t.reset(60ms));
      auto v = t.channel().recv();
      TCHECK(v && *v >= t0 + 60ms);
      TCHECK(Clock::now() - t0 >= 60ms);
    }
    // Stopped: reset returns false and arms it again.
    {
      gort::Timer t(30s);
      TCHECK(t.stop());
      auto t0 = Clock::now();
      TCHECK(!t.reset(10ms));
      bool timed_out = false;
      auto v = recv_within(t.channel(), 10s, &timed_out);
      TCHECK(!timed_out);
      if (v) TCHECK(*v >= t0 + 10ms);
    }
    // Fired but not received: reset drains the stale value (Go 1.23).
    {
      gort::Timer t(1ms);
      gort::sleep_for(100ms);
      auto t0 = Clock::now();
      TCHECK(!t.reset(40ms));
      TCHECK_EQ(gort::select(gort::on_recv(t.channel()), gort::on_default()), 1);
      auto v = t.channel().recv();
      TCHECK(v && *v >= t0 + 40ms);
    }
    // A pending timer destroyed: nothing happens after.
    { gort::Timer t(5ms); }
    gort::sleep_for(20ms);
  });
}

BOOST_AUTO_TEST_CASE(after_channel) {
  run_checked([] {
    auto t0 = Clock::now();
    auto c = gort::after(20ms);
    auto v = c.recv();
    TCHECK(v && *v >= t0 + 20ms);
    TCHECK(Clock::now() - t0 >= 20ms);
    // As a select timeout.
    gort::Chan<int> never;
    auto to = gort::after(10ms);
    TCHECK_EQ(gort::select(gort::on_recv(never), gort::on_recv(to)), 1);
    // Zero and negative durations fire at once.
    auto z = gort::after(0ns);
    TCHECK(z.recv().has_value());
    auto n = gort::after(-1s);
    TCHECK(n.recv().has_value());
  });
}

BOOST_AUTO_TEST_CASE(after_func) {
  uint64_t fn_task = 0;
  bool ran_stopped = false, stop1 = false, stop2 = true, reset_pending = false;
  int ran_after_scope = 0;
  run_checked([&] {
    // Runs, in a task of its own, after d.
    {
      gort::Chan<int> done(1);
      auto t0 = Clock::now();
      gort::Duration elapsed{};
      gort::AfterFunc f(10ms, [&, done]() mutable {
        fn_task = gort::task_id();
        elapsed = Clock::now() - t0;
        done.send(1);
      });
      bool timed_out = false;
      recv_within(done, kHang, &timed_out);
      TCHECK(!timed_out);
      TCHECK(elapsed >= 10ms);
      TCHECK(!f.stop());  // already ran
    }
    // Stopped before it fires: never runs.
    {
      gort::AfterFunc f(100ms, [&] { ran_stopped = true; });
      stop1 = f.stop();
      stop2 = f.stop();
      gort::sleep_for(150ms);
    }
    // reset rearms a pending one.
    {
      gort::Chan<int> done(1);
      gort::AfterFunc f(30s, [done]() mutable { done.send(1); });
      reset_pending = f.reset(10ms);
      bool timed_out = false;
      recv_within(done, 10s, &timed_out);
      TCHECK_MSG(!timed_out, "reset(10ms) did not rearm a 30 s AfterFunc");
    }
    // The destructor does not stop it; the function may block.
    {
      gort::Chan<int> done(1);
      {
        gort::AfterFunc f(10ms, [&, done]() mutable {
          gort::sleep_for(1ms);
          ran_after_scope++;
          done.send(1);
        });
      }
      bool timed_out = false;
      recv_within(done, kHang, &timed_out);
      TCHECK(!timed_out);
    }
  });
  BOOST_TEST(fn_task != 0u);
  BOOST_TEST(fn_task != 1u);
  BOOST_TEST(!ran_stopped);
  BOOST_TEST(stop1);
  BOOST_TEST(!stop2);
  BOOST_TEST(reset_pending);
  BOOST_TEST(ran_after_scope == 1);
}

// Many tasks with sleeps, Timers (half of them stopped) and AfterFuncs at
// once. A Timer's stop() result and whether a value arrived always agree.
BOOST_AUTO_TEST_CASE(timers_on_many_tasks) {
  constexpr int N = 1000;
  std::atomic<int> early{0}, inconsistent{0}, done_tasks{0}, funcs_ran{0};
  bool all_done = false, funcs_done = false;
  run_checked([&] {
    gort::WaitGroup wg;
    for (int i = 0; i < N; i++) {
      wg.go([&, i] {
        std::mt19937 rng(static_cast<unsigned>(i));
        for (int k = 0; k < 3; k++) {
          auto d = std::chrono::microseconds(rng() % 10'000);
          auto t0 = Clock::now();
          gort::sleep_for(d);
          if (Clock::now() - t0 < d) early++;
        }
        auto d = std::chrono::microseconds(500 + rng() % 10'000);
        auto t0 = Clock::now();
        gort::Timer t(d);
        if (i % 2) {
          bool stopped = t.stop();
          gort::sleep_for(d + 5ms);
          bool got = gort::select(gort::on_recv(t.channel()), gort::on_default()) == 0;
          if (stopped == got) inconsistent++;
        } else {
          auto v = t.channel().recv();
          if (!v || *v < t0 + d) early++;
        }
        done_tasks++;
      });
    }
    all_done = wait_group_within(wg);
    std::vector<std::unique_ptr<gort::AfterFunc>> funcs;
    std::mt19937 rng(7);
    for (int i = 0; i < N; i++)
      funcs.push_back(std::make_unique<gort::AfterFunc>(std::chrono::microseconds(rng() % 20'000),
                                                        [&] { funcs_ran++; }));
    funcs_done = wait_until([&] { return funcs_ran.load() == N; });
  });
  BOOST_TEST(all_done);
  BOOST_TEST(done_tasks.load() == N);
  BOOST_TEST(early.load() == 0);
  BOOST_TEST(inconsistent.load() == 0);
  BOOST_TEST(funcs_done);
  BOOST_TEST(funcs_ran.load() == N);
}

BOOST_AUTO_TEST_SUITE_END()
