// Sync primitives: Mutex (heavy contention, with OS threads too, try_lock,
// starvation mode), RWMutex, WaitGroup, Once, Cond.
#include <atomic>
#include <boost/test/unit_test.hpp>
#include <deque>
#include <mutex>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "common.h"

using namespace rt_test;

namespace {
volatile int spin_sink = 0;
}

BOOST_AUTO_TEST_SUITE(sync_suite)

// Many tasks increment a plain counter under the Mutex, some of them parking
// (yield or sleep) while holding it. The count must be exact and no two
// holders may ever overlap.
BOOST_AUTO_TEST_CASE(mutex_heavy_contention) {
  constexpr int T = 64, N = 20'000;
  long counter = 0;
  std::atomic<int> inside{0}, overlaps{0};
  run_checked([&] {
    gort::Mutex m;
    gort::WaitGroup wg;
    for (int t = 0; t < T; t++) {
      wg.go([&, t] {
        for (int i = 0; i < N; i++) {
          std::lock_guard<gort::Mutex> g(m);
          if (inside.fetch_add(1) != 0) overlaps++;
          long v = counter;
          if (i % 500 == 0) gort::yield();
          if (i % 5000 == 1 && t % 8 == 0) gort::sleep_for(100us);
          for (int k = 0; k < 20; k++) spin_sink = spin_sink + k;  // a longer critical section
          counter = v + 1;
          inside.fetch_sub(1);
        }
      });
    }
    TCHECK(wait_group_within(wg, 60s));
  });
  BOOST_TEST(counter == long{T} * N);
  BOOST_TEST(overlaps.load() == 0);
}

// The same Mutex from tasks and from plain OS threads.
BOOST_AUTO_TEST_CASE(mutex_shared_with_os_threads) {
  constexpr int T = 16, Th = 2, N = 5'000;
  long counter = 0;
  std::atomic<int> inside{0}, overlaps{0};
  run_checked([&] {
    gort::Mutex m;
    auto body = [&](bool in_task) {
      for (int i = 0; i < N; i++) {
        std::unique_lock<gort::Mutex> g(m);
        if (inside.fetch_add(1) != 0) overlaps++;
        long v = counter;
        if (i % 1000 == 0) {
          if (in_task)
            gort::yield();
          else
            std::this_thread::yield();
        }
        counter = v + 1;
        inside.fetch_sub(1);
      }
    };
    std::vector<std::thread> threads;
    for (int i = 0; i < Th; i++) threads.emplace_back(body, false);
    gort::WaitGroup wg;
    for (int t = 0; t < T; t++) wg.go([&] { body(true); });
    TCHECK(wait_group_within(wg, 60s));
    for (auto& th : threads) th.join();
  });
  BOOST_TEST(counter == long{T + Th} * N);
  BOOST_TEST(overlaps.load() == 0);
}

BOOST_AUTO_TEST_CASE(mutex_try_lock) {
  run_checked([] {
    gort::Mutex m;
    TCHECK(m.try_lock());
    bool other = true, thread_other = true;
    gort::WaitGroup wg;
    wg.go([&] { other = m.try_lock(); });
    wg.wait();
    std::thread([&] { thread_other = m.try_lock(); }).join();
    TCHECK(!other);
    TCHECK(!thread_other);
    TCHECK(!m.try_lock());  // not recursive
    m.unlock();
    wg.go([&] {
      other = m.try_lock();
      if (other) m.unlock();
    });
    wg.wait();
    TCHECK(other);
    // try_lock after contention and parking: the lock is free again.
    m.lock();
    std::atomic<int> got{0};
    for (int i = 0; i < 8; i++)
      wg.go([&] {
        m.lock();
        got++;
        m.unlock();
      });
    gort::sleep_for(5ms);
    m.unlock();
    wg.wait();
    TCHECK_EQ(got.load(), 8);
    TCHECK(m.try_lock());
    m.unlock();
  });
}

// A task that keeps relocking the Mutex cannot starve a waiter for long
// (starvation mode hands the lock over once a waiter has waited over 1 ms).
// The hog gives up after 5 s, so a starving waiter fails instead of hanging.
BOOST_AUTO_TEST_CASE(mutex_waiter_not_starved) {
  bool got_it = false;
  long hog_rounds = 0;
  run_checked([&] {
    gort::Mutex m;
    std::atomic<bool> waiter_done{false};
    gort::WaitGroup wg;
    wg.go([&] {
      auto deadline = Clock::now() + 5s;
      while (!waiter_done.load() && Clock::now() < deadline) {
        m.lock();
        spin_for(20us);
        m.unlock();
        hog_rounds++;
      }
    });
    wg.go([&] {
      gort::sleep_for(5ms);  // the hog is looping by now
      m.lock();
      got_it = true;
      waiter_done = true;
      m.unlock();
    });
    wg.wait();
  });
  BOOST_TEST(got_it,
             "the waiter did not get the lock within 5 s (" << hog_rounds << " hog rounds)");
}

BOOST_AUTO_TEST_CASE(rwmutex_readers_share) {
  constexpr int R = 8;
  std::atomic<int> in{0};
  int all_in = 0;
  run_checked([&] {
    gort::RWMutex rw;
    gort::WaitGroup wg;
    std::mutex mu;
    for (int i = 0; i < R; i++) {
      wg.go([&] {
        std::shared_lock<gort::RWMutex> g(rw);
        in++;
        bool ok = wait_until([&] { return in.load() == R; }, 5s);
        std::lock_guard<std::mutex> l(mu);
        all_in += ok;
      });
    }
    TCHECK(wait_group_within(wg));
  });
  BOOST_TEST(all_in == R, "readers did not hold the read lock together");
}

// Random mix of readers and writers: a writer is alone, readers see the
// writers' two plain variables always equal.
BOOST_AUTO_TEST_CASE(rwmutex_writer_exclusive) {
  constexpr int T = 16, N = 2'000;
  long a = 0, b = 0;
  std::atomic<int> readers{0}, writers{0}, violations{0}, writes{0};
  run_checked([&] {
    gort::RWMutex rw;
    gort::WaitGroup wg;
    for (int t = 0; t < T; t++) {
      wg.go([&, t] {
        for (int i = 0; i < N; i++) {
          if ((i + t) % 8 == 0) {
            std::unique_lock<gort::RWMutex> g(rw);
            if (writers.fetch_add(1) != 0 || readers.load() != 0) violations++;
            a++;
            if (i % 64 == 0) gort::yield();
            b++;
            writes++;
            writers.fetch_sub(1);
          } else {
            std::shared_lock<gort::RWMutex> g(rw);
            readers++;
            if (writers.load() != 0) violations++;
            long x = a;
            if (i % 64 == 1) gort::yield();
            if (b != x) violations++;
            readers--;
          }
        }
      });
    }
    TCHECK(wait_group_within(wg, 60s));
  });
  BOOST_TEST(violations.load() == 0);
  BOOST_TEST(a == writes.load());
  BOOST_TEST(b == writes.load());
}

BOOST_AUTO_TEST_CASE(rwmutex_try_locks) {
  run_checked([] {
    gort::RWMutex rw;
    TCHECK(rw.try_lock_shared());
    TCHECK(!rw.try_lock());
    TCHECK(rw.try_lock_shared());  // readers share
    rw.unlock_shared();
    rw.unlock_shared();
    TCHECK(rw.try_lock());
    TCHECK(!rw.try_lock());
    TCHECK(!rw.try_lock_shared());
    bool other = true;
    gort::WaitGroup wg;
    wg.go([&] { other = rw.try_lock_shared(); });
    wg.wait();
    TCHECK(!other);
    rw.unlock();
    TCHECK(rw.try_lock());
    rw.unlock();
  });
}

// Writer preference: with a reader inside and a writer waiting, new readers
// wait; when the first reader leaves, the writer goes before them.
BOOST_AUTO_TEST_CASE(rwmutex_waiting_writer_holds_back_readers) {
  std::vector<std::string> order;
  bool try_shared = true;
  run_checked([&] {
    gort::RWMutex rw;
    std::mutex mu;
    auto log = [&](const char* s) {
      std::lock_guard<std::mutex> g(mu);
      order.push_back(s);
    };
    gort::Chan<int> started;
    gort::WaitGroup wg;
    rw.lock_shared();
    wg.go([&] {
      started.send(1);
      rw.lock();
      log("W");
      gort::sleep_for(2ms);
      rw.unlock();
    });
    started.recv();
    gort::sleep_for(10ms);  // W is waiting in lock()
    try_shared = rw.try_lock_shared();
    if (try_shared) rw.unlock_shared();
    wg.go([&] {
      started.send(1);
      rw.lock_shared();
      log("R");
      rw.unlock_shared();
    });
    started.recv();
    gort::sleep_for(10ms);  // R is waiting in lock_shared()
    log("unlock");
    rw.unlock_shared();
    TCHECK(wait_group_within(wg));
  });
  BOOST_TEST(!try_shared, "try_lock_shared succeeded while a writer was waiting");
  BOOST_TEST((order == std::vector<std::string>{"unlock", "W", "R"}));
}

BOOST_AUTO_TEST_CASE(waitgroup) {
  std::atomic<int> woke{0}, early{0};
  bool all_woke = false;
  int reused = 0;
  run_checked([&] {
    gort::WaitGroup zero;
    zero.wait();  // counter 0: returns at once

    // Many waiters on one WaitGroup, all released by the last done().
    gort::WaitGroup wg, waiters;
    wg.add(1);
    for (int i = 0; i < 16; i++)
      waiters.go([&] {
        wg.wait();
        woke++;
      });
    gort::sleep_for(10ms);
    early = woke.load();
    wg.done();
    all_woke = wait_group_within(waiters);

    // Reuse over many rounds, with add(n) and WaitGroup::go.
    for (int round = 0; round < 200; round++) {
      std::atomic<int> n{0};
      gort::WaitGroup r;
      r.add(5);
      for (int i = 0; i < 5; i++)
        gort::go([&] {
          n++;
          r.done();
        });
      for (int i = 0; i < 5; i++) r.go([&] { n++; });
      r.wait();
      reused += n.load() == 10;
    }
  });
  BOOST_TEST(early.load() == 0);
  BOOST_TEST(all_woke);
  BOOST_TEST(woke.load() == 16);
  BOOST_TEST(reused == 200);
}

BOOST_AUTO_TEST_CASE(once_exactly_once) {
  constexpr int T = 64;
  std::atomic<int> calls{0}, saw_incomplete{0}, after_throw_calls{0};
  bool threw = false;
  run_checked([&] {
    gort::Once once;
    gort::WaitGroup wg;
    for (int i = 0; i < T; i++) {
      wg.go([&] {
        once.call([&] {
          gort::sleep_for(10ms);  // the others must wait for it
          calls++;
        });
        if (calls.load() != 1) saw_incomplete++;
      });
    }
    TCHECK(wait_group_within(wg));
    // An exception out of f propagates; f counts as done.
    gort::Once o2;
    try {
      o2.call([] { throw std::runtime_error("once"); });
    } catch (const std::runtime_error&) {
      threw = true;
    }
    o2.call([&] { after_throw_calls++; });
  });
  BOOST_TEST(calls.load() == 1);
  BOOST_TEST(saw_incomplete.load() == 0, "a caller returned before f completed");
  BOOST_TEST(threw);
  BOOST_TEST(after_throw_calls.load() == 0);
}

// Producer/consumer over a bounded queue with two Conds.
BOOST_AUTO_TEST_CASE(cond_producer_consumer) {
  constexpr int P = 4, C = 4, N = 5'000, Cap = 16;
  long sum = 0;
  int count = 0, overfull = 0;
  run_checked([&] {
    gort::Mutex m;
    gort::Cond not_empty(m), not_full(m);
    std::deque<int> q;
    bool stopping = false;  // the C end markers may take q past Cap
    gort::WaitGroup producers, consumers;
    for (int p = 0; p < P; p++) {
      producers.go([&, p] {
        for (int i = 0; i < N; i++) {
          std::lock_guard<gort::Mutex> g(m);
          while (q.size() >= Cap) not_full.wait();
          q.push_back(p * N + i);
          not_empty.signal();
        }
      });
    }
    for (int c = 0; c < C; c++) {
      consumers.go([&] {
        for (;;) {
          std::lock_guard<gort::Mutex> g(m);
          while (q.empty()) not_empty.wait();
          if (q.size() > Cap && !stopping) overfull++;
          int v = q.front();
          q.pop_front();
          not_full.signal();
          if (v < 0) return;
          sum += v;
          count++;
        }
      });
    }
    TCHECK(wait_group_within(producers, 60s));
    {
      std::lock_guard<gort::Mutex> g(m);
      stopping = true;
      for (int c = 0; c < C; c++) q.push_back(-1);
      not_empty.broadcast();
    }
    TCHECK(wait_group_within(consumers, 60s));
  });
  BOOST_TEST(count == P * N);
  BOOST_TEST(sum == long{P} * N * (long{P} * N - 1) / 2);
  BOOST_TEST(overfull == 0);
}

// broadcast wakes every waiter; signal wakes one. Waiters are known to be
// inside wait() once the test sees them counted under the Mutex (wait
// releases it).
BOOST_AUTO_TEST_CASE(cond_broadcast_and_signal) {
  constexpr int W = 10;
  bool all_enrolled = false, all_woke = false, one_woke = false, rest_woke = false;
  int woke_after_signal = -1;
  run_checked([&] {
    gort::Mutex m;
    gort::Cond c(m);
    int waiting = 0, woke = 0;
    bool go = false;
    gort::WaitGroup wg;
    for (int i = 0; i < W; i++) {
      wg.go([&] {
        std::lock_guard<gort::Mutex> g(m);
        waiting++;
        while (!go) c.wait();
        woke++;
      });
    }
    auto count_is = [&](int& v, int n) {
      return wait_until([&] {
        std::lock_guard<gort::Mutex> g(m);
        return v == n;
      });
    };
    all_enrolled = count_is(waiting, W);
    {
      std::lock_guard<gort::Mutex> g(m);
      go = true;
      c.broadcast();
    }
    all_woke = wait_group_within(wg);

    // signal: tokens make extra wake-ups harmless; a missed signal hangs.
    int tokens = 0;
    waiting = woke = 0;
    for (int i = 0; i < 3; i++) {
      wg.go([&] {
        std::lock_guard<gort::Mutex> g(m);
        waiting++;
        while (tokens == 0) c.wait();
        tokens--;
        woke++;
      });
    }
    count_is(waiting, 3);
    {
      std::lock_guard<gort::Mutex> g(m);
      tokens = 1;
      c.signal();
    }
    one_woke = count_is(woke, 1);
    gort::sleep_for(10ms);
    {
      std::lock_guard<gort::Mutex> g(m);
      woke_after_signal = woke;
      tokens = 2;
      c.signal();
      c.signal();
    }
    rest_woke = wait_group_within(wg);
  });
  BOOST_TEST(all_enrolled);
  BOOST_TEST(all_woke, "broadcast did not wake every waiter");
  BOOST_TEST(one_woke, "signal woke nobody");
  BOOST_TEST(woke_after_signal == 1);
  BOOST_TEST(rest_woke);
}

BOOST_AUTO_TEST_SUITE_END()
