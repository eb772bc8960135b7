// Races in the scheduler, each found by review and each reproduced here
// before it was fixed: the comment on a test names the interleaving and
// whether the test failed every time or only sometimes.
#include <pthread.h>

#include <atomic>
#include <boost/test/unit_test.hpp>
#include <thread>

#include "common.h"

using namespace rt_test;

BOOST_AUTO_TEST_SUITE(races)

// A task looping on gort::yield() with nothing else on its P must still
// switch once the main task has ended, or its M never parks and run never
// returns (yield returned at once without looking at sched.shutdown). Failed
// every time with 2 Ps: the looper comes from a plain thread (global queue,
// second M) while main spins on P0. (On a loaded machine the second M may
// start late enough for sysmon to preempt main after 10 ms, and main's M
// then runs the looper: the run must still end at once, which is what is
// asserted. The bug kept the run going for the looper's whole 10 s.)
BOOST_AUTO_TEST_CASE(yield_loop_does_not_delay_run_end) {
  std::atomic<bool> started{false};
  std::atomic<pthread_t> main_thread{}, loop_thread{};
  bool same_thread = false;
  std::thread spawner;
  auto t0 = Clock::now();
  run_checked(
      [&] {
        main_thread = pthread_self();
        spawner = std::thread([&] {
          gort::go([&] {
            loop_thread = pthread_self();
            started = true;
            auto end = Clock::now() + 10s;  // bounds the test when the bug is there
            while (Clock::now() < end) gort::yield();
          });
        });
        while (!started.load()) {  // no switch: P0 stays busy, P1 takes the task
        }
        same_thread = pthread_equal(main_thread.load(), loop_thread.load());
      },
      gort::RunOptions{.maxprocs = 2});
  auto took = Clock::now() - t0;
  spawner.join();
  if (same_thread) BOOST_TEST_MESSAGE("main was preempted before a second M ran the looper");
  BOOST_TEST(took < 5s, "run took "
                            << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                            << " ms (main returned at once)");
}

// A plain thread readies a task (global queue, then wakep, which does
// nothing while an M spins). The last spinning M gives its P back and only
// then stops spinning, so it must look at the global queue once more, or the
// task waits with every M parked. The window is a few instructions wide:
// this never failed here (about 50k rounds per run); a failure shows as one
// round trip of seconds.
BOOST_AUTO_TEST_CASE(thread_readies_task_while_last_spinner_parks) {
  std::atomic<long> max_rtt_us{0}, rounds{0};
  bool finished = false;
  run_checked(
      [&] {
        gort::Chan<int> ping, pong, done(1);
        gort::go([&] {
          for (;;) {
            auto v = ping.recv();
            if (!v) return;
            pong.send(*v);
          }
        });
        std::thread t([&] {
          auto end = Clock::now() + 1500ms;
          for (int i = 0; Clock::now() < end; i++) {
            auto a = Clock::now();
            ping.send(i);
            pong.recv();
            long us =
                std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - a).count();
            if (us > max_rtt_us) max_rtt_us = us;
            rounds++;
          }
          ping.close();
          done.send(1);
        });
        bool to = false;
        recv_within(done, 6s, &to);
        finished = !to;
        t.join();
      },
      gort::RunOptions{.maxprocs = 2});
  BOOST_TEST_MESSAGE("rounds " << rounds.load() << ", max round trip " << max_rtt_us.load()
                               << " us");
  BOOST_TEST(finished);
  BOOST_TEST(max_rtt_us.load() < 1'000'000);
}

// Context::err() reporting cancellation implies done() is closed: err is set
// and done closed under one lock, as in Go. Failed every run (2 to 15 of 300)
// when done was closed after the lock.
BOOST_AUTO_TEST_CASE(context_err_implies_done_closed) {
  std::atomic<int> open_after_err{0};
  run_checked(
      [&] {
        for (int i = 0; i < 300; i++) {
          auto ctx = gort::Context::with_cancel(gort::Context::background());
          gort::Chan<char> d = ctx.done();
          std::atomic<bool> go_now{false};
          gort::WaitGroup wg;
          wg.go([&] {
            while (!go_now.load()) {
            }
            ctx.cancel();
          });
          go_now = true;
          auto end = Clock::now() + 10ms;
          while (ctx.err() == gort::Context::Err::none && Clock::now() < end) {
          }
          bool cancelled = ctx.err() != gort::Context::Err::none, closed = false;
          gort::select(gort::on_recv(d, [&] { closed = true; }), gort::on_default());
          if (cancelled && !closed) open_after_err++;
          wg.wait();
        }
      },
      gort::RunOptions{.maxprocs = 2});
  BOOST_TEST(open_after_err.load() == 0);
}

// A timer started from a plain thread lands on P0's heap. With P0 idle and
// its M parked, and P1 busy, someone must still watch P0's timers:
// wake_timer_sleeper starts an M (as Go's wakeNetPoller does) whenever no
// timer sleeper exists. Failed every time with 2 Ps (a 10 ms timer fired
// after ~2 s, when the busy task ended).
BOOST_AUTO_TEST_CASE(timer_from_thread_fires_while_other_p_busy) {
  std::atomic<bool> started{false}, stop{false};
  std::atomic<long> waited_ms{-1};
  std::thread spawner, timer_thread;
  run_checked(
      [&] {
        gort::Chan<int> done(1);
        spawner = std::thread([&] {
          gort::go([&] {  // global queue -> the second M, on P1
            started = true;
            auto end = Clock::now() + 2s;  // bounds the test when the bug is there
            while (!stop.load() && Clock::now() < end) gort::yield();
          });
        });
        while (!started.load()) {  // P0 stays busy until the looper runs on P1
        }
        timer_thread = std::thread([&, done]() mutable {
          std::this_thread::sleep_for(50ms);  // main has parked, P0 is idle
          auto a = Clock::now();
          {
            gort::Timer t(10ms);
            t.channel().recv();
          }
          waited_ms =
              std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - a).count();
          stop = true;
          done.send(1);
        });
        done.recv();  // untimed: P0 goes idle
      },
      gort::RunOptions{.maxprocs = 2});
  spawner.join();
  timer_thread.join();
  BOOST_TEST(waited_ms.load() < 1000, "a 10 ms timer took " << waited_ms.load() << " ms");
}

// Runs back to back: m0 ends a run when every other M is parked, so Ms
// that shutdown_wake_all woke must leave the idle list until they park
// again, and the next run must hold its P and queue its main task before any
// M can look. Otherwise a stray M took the only P (m0 crashed on a null P)
// or declared a false deadlock; failed in 5 of 6 processes. Kept last: a
// failure ends the process.
BOOST_AUTO_TEST_CASE(back_to_back_runs_with_one_p) {
  // Make a few Ms that then sit idle.
  run_checked(
      [&] {
        gort::WaitGroup wg;
        for (int i = 0; i < 8; i++) wg.go([] { spin_for(2000us); });
        wg.wait();
      },
      gort::RunOptions{.maxprocs = 4});
  for (int i = 0; i < 5000; i++) {
    int rc = gort::run([] {}, gort::RunOptions{.maxprocs = 1});
    BOOST_REQUIRE(rc == 0);
  }
}

BOOST_AUTO_TEST_SUITE_END()
