// Blocking operations from plain OS threads during a gort::run, talking to
// tasks. From a thread they block the thread.
//
// While tasks wait for a thread, every task may be blocked with no timer
// pending; whether the deadlock detector may then fire is checked separately
// (exit suite, sched_osthread). Here a keeper task that sleeps in a loop keeps
// a timer pending, so these tests check the operations only.
#include <atomic>
#include <boost/test/unit_test.hpp>
#include <thread>
#include <vector>

#include "common.h"

using namespace rt_test;

namespace {
struct keeper {
  std::atomic<bool> stop{false};
  gort::WaitGroup wg;
  keeper() {
    wg.go([this] {
      while (!stop.load()) gort::sleep_for(1ms);
    });
  }
  ~keeper() {
    stop = true;
    wg.wait();
  }
};
}  // namespace

BOOST_AUTO_TEST_SUITE(osthread)

BOOST_AUTO_TEST_CASE(thread_sends_task_receives) {
  constexpr int N = 2'000;
  long sum = 0, sum_b = 0;
  run_checked([&] {
    keeper k;
    gort::Chan<int> u, b(8);
    std::thread t([&] {
      for (int i = 0; i < N; i++) u.send(i);
      for (int i = 0; i < N; i++) b.send(i);
      b.close();
    });
    for (int i = 0; i < N; i++) {
      auto v = u.recv();
      TCHECK(v && *v == i);
      sum += v.value_or(0);
    }
    for (int v : b) sum_b += v;
    t.join();
  });
  BOOST_TEST(sum == long{N} * (N - 1) / 2);
  BOOST_TEST(sum_b == long{N} * (N - 1) / 2);
}

BOOST_AUTO_TEST_CASE(task_sends_thread_receives) {
  constexpr int N = 2'000;
  long sum = 0;
  int in_order = 0;
  bool thread_saw_close = false;
  run_checked([&] {
    keeper k;
    gort::Chan<int> u;
    std::thread t([&] {
      int expect = 0;
      for (;;) {
        auto v = u.recv();
        if (!v) break;
        in_order += *v == expect++;
        sum += *v;
      }
      thread_saw_close = true;
    });
    for (int i = 0; i < N; i++) u.send(i);
    u.close();
    t.join();
  });
  BOOST_TEST(sum == long{N} * (N - 1) / 2);
  BOOST_TEST(in_order == N);
  BOOST_TEST(thread_saw_close);
}

// Several threads and several tasks on the same channels, with selects on
// both sides.
BOOST_AUTO_TEST_CASE(threads_and_tasks_mixed) {
  constexpr int Th = 2, T = 8, N = 1'000;
  std::atomic<long> sum{0};
  std::atomic<int> count{0};
  run_checked([&] {
    keeper k;
    gort::Chan<int> a, b(4);
    std::vector<std::thread> threads;
    for (int i = 0; i < Th; i++)
      threads.emplace_back([&, i] {
        for (int j = 0; j < N; j++)
          gort::select(gort::on_send(a, i * N + j), gort::on_send(b, i * N + j));
      });
    gort::WaitGroup producers, consumers;
    for (int i = Th; i < Th + T; i++)
      producers.go([&, i] {
        for (int j = 0; j < N; j++) (j % 2 ? a : b).send(i * N + j);
      });
    std::vector<std::thread> receivers;
    auto consume = [&] {
      for (;;) {
        int v = -1;
        bool ok = true;
        gort::select(gort::on_recv(a, [&](int x, bool k) { v = x, ok = k; }),
                     gort::on_recv(b, [&](int x, bool k) { v = x, ok = k; }));
        if (!ok) return;
        sum += v;
        count++;
      }
    };
    for (int i = 0; i < 2; i++) receivers.emplace_back(consume);
    for (int i = 0; i < 4; i++) consumers.go(consume);
    for (auto& t : threads) t.join();
    producers.wait();
    a.close();
    b.close();
    for (auto& t : receivers) t.join();
    TCHECK(wait_group_within(consumers));
  });
  long total = long{Th + T} * N;
  BOOST_TEST(count.load() == total);
  BOOST_TEST(sum.load() == total * (total - 1) / 2);
}

// WaitGroup, sleep_for, select with a timer, Context and Cond from a thread.
BOOST_AUTO_TEST_CASE(thread_waits_for_tasks) {
  bool wg_ok = false, slept = false, timeout_chosen = false, ctx_woke = false, cond_woke = false;
  run_checked([&] {
    keeper k;
    gort::WaitGroup wg;
    std::atomic<int> n{0};
    for (int i = 0; i < 20; i++)
      wg.go([&] {
        gort::sleep_for(2ms);
        n++;
      });
    auto ctx = gort::Context::with_cancel(gort::Context::background());
    gort::Mutex m;
    gort::Cond c(m);
    bool flag = false;
    std::thread t([&] {
      wg.wait();
      wg_ok = n.load() == 20;
      auto t0 = Clock::now();
      gort::sleep_for(10ms);
      slept = Clock::now() - t0 >= 10ms;
      gort::Chan<int> never;
      auto to = gort::after(5ms);
      timeout_chosen = gort::select(gort::on_recv(never), gort::on_recv(to)) == 1;
      ctx.wait();
      ctx_woke = ctx.cancelled();
      std::lock_guard<gort::Mutex> g(m);
      while (!flag) c.wait();
      cond_woke = true;
    });
    gort::sleep_for(30ms);
    ctx.cancel();
    gort::sleep_for(5ms);
    {
      std::lock_guard<gort::Mutex> g(m);
      flag = true;
      c.broadcast();
    }
    t.join();
  });
  BOOST_TEST(wg_ok);
  BOOST_TEST(slept);
  BOOST_TEST(timeout_chosen);
  BOOST_TEST(ctx_woke);
  BOOST_TEST(cond_woke);
}

// A task waits for a Context a thread cancels.
BOOST_AUTO_TEST_CASE(thread_cancels_task_waits) {
  bool woke = false;
  run_checked([&] {
    keeper k;
    auto ctx = gort::Context::with_cancel(gort::Context::background());
    std::thread t([ctx] {
      std::this_thread::sleep_for(10ms);
      ctx.cancel();
    });
    woke = ctx.wait_for(10s);
    t.join();
  });
  BOOST_TEST(woke);
}

// gort::go from a thread: the task goes to the global run queue and runs.
BOOST_AUTO_TEST_CASE(go_from_thread) {
  constexpr int N = 200;
  std::atomic<int> ran{0};
  uint64_t global_before = 0, global_after = 0;
  bool all = false;
  run_checked([&] {
    global_before = gort::sched_stats().global_runq;
    gort::WaitGroup wg;
    wg.add(N);
    std::thread t([&] {
      for (int i = 0; i < N; i++)
        gort::go([&] {
          ran++;
          wg.done();
        });
    });
    t.join();
    all = wait_group_within(wg);
    global_after = gort::sched_stats().global_runq;
  });
  BOOST_TEST(all);
  BOOST_TEST(ran.load() == N);
  BOOST_TEST(global_after > global_before);
}

// Threads with no gort::run at all: see sched_norun in exit_test.cc (a
// fatal error there must not take the whole suite down).

BOOST_AUTO_TEST_SUITE_END()
