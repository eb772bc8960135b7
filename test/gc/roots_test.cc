// Roots the runtime must not miss and GC pointers the runtime itself moves
// (docs/gc.md, "What is a root" and "What the runtime barriers"): a local of
// the function that called gort::run, values in flight through channels
// (buffered, unbuffered, select) and in timer payloads and task closures,
// threads that unregister, weak references read during sweeping, a fork
// during a mark, and the stop signal (its stack, its number, deadlocks).
// Each test holds fresh objects only where the runtime is responsible for
// them, runs collections back to back, and checks the objects' contents.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <vector>

#include "alloc/lock.h"
#include "common.h"
#include "gort/runtime.h"
#include "tagged.h"
#include "test/alloc/helpers.h"

using namespace gc_test;
using namespace std::chrono_literals;

namespace {

using namespace gc_tagged;

// Collections back to back on a thread of its own, with garbage between.
struct back_to_back {
  std::atomic<bool> stop{false};
  std::thread t;
  back_to_back() {
    t = std::thread([this] {
      while (!stop.load()) {
        gort_gc_collect();
        churn(500);
      }
    });
  }
  ~back_to_back() {
    stop = true;
    t.join();
  }
};

__attribute__((noinline)) bool run_holding_a_local() {
  // Only this frame (below the main task, on the thread that runs it) holds
  // the object; the run's closure holds its address, not the object.
  tagged* volatile local = fresh(11);
  gort_gc_weak* w = gort_gc_weak_new(local);
  bool alive_in_run = false;
  gort::run(
      [&] {
        for (int c = 0; c < 3; c++) {
          gort_gc_collect();
          churn(20000);
        }
        alive_in_run = alive(w);
      },
      gort::RunOptions{2, 0});
  bool ok = alive_in_run && intact(local, 11);
  gort_gc_weak_free(w);
  return ok;
}

enum class pipe_kind { buffered1, unbuffered, select_recv, select_send };

// One sender, one receiver that keeps the last four values it received in
// locals and checks them all after every receive.
uint64_t pipe_losses(pipe_kind kind, uint64_t n) {
  std::atomic<uint64_t> bad{0}, got{0};
  back_to_back load;
  gort::run(
      [&] {
        // select goes through the buffer's slots (the case that loses objects
        // without the barrier) as well as the direct hand-off.
        gort::Chan<tagged*> ch(kind == pipe_kind::unbuffered ? 0 : 1);
        gort::Chan<int> other;  // never ready: select must take ch
        gort::WaitGroup wg;
        wg.go([&] {
          for (uint64_t i = 1; i <= n; i++) {
            tagged* p = fresh(i);
            if (kind == pipe_kind::select_send)
              gort::select(gort::on_send(ch, p), gort::on_recv(other));
            else
              ch.send(p);
            if (i % 16 == 0) churn(32);
          }
          ch.close();
        });
        wg.go([&] {
          tagged* keep[4] = {};
          uint64_t ids[4] = {};
          for (uint64_t i = 1;; i++) {
            tagged* p = nullptr;
            bool ok = false;
            if (kind == pipe_kind::select_recv) {
              gort::select(gort::on_recv(ch,
                                         [&](tagged* v, bool o) {
                                           p = v;
                                           ok = o;
                                         }),
                           gort::on_recv(other));
            } else {
              ok = ch.recv(p);
            }
            if (!ok) break;
            keep[i % 4] = p;
            ids[i % 4] = i;
            for (int k = 0; k < 4; k++)
              if (keep[k] && !intact(keep[k], ids[k])) bad++;
            got++;
          }
        });
        wg.wait();
      },
      gort::RunOptions{2, 0});
  BOOST_CHECK_EQUAL(got.load(), n);
  return bad.load();
}

std::atomic<uint64_t> g_fired{0}, g_fire_bad{0};

}  // namespace

BOOST_AUTO_TEST_SUITE(roots)

BOOST_AUTO_TEST_CASE(a_local_of_the_caller_of_run_is_a_root) {
  bool ok = false;
  on_thread([&] { ok = run_holding_a_local(); });
  BOOST_CHECK_MESSAGE(ok, "an object held only below the main task was freed during the run");
}

BOOST_AUTO_TEST_CASE(buffered_channel_of_one_keeps_what_the_receiver_holds) {
  BOOST_CHECK_EQUAL(pipe_losses(pipe_kind::buffered1, 30000), 0u);
}

BOOST_AUTO_TEST_CASE(unbuffered_hand_off_keeps_what_the_receiver_holds) {
  BOOST_CHECK_EQUAL(pipe_losses(pipe_kind::unbuffered, 20000), 0u);
}

BOOST_AUTO_TEST_CASE(select_keeps_what_it_moves) {
  BOOST_CHECK_EQUAL(pipe_losses(pipe_kind::select_recv, 15000), 0u);
  BOOST_CHECK_EQUAL(pipe_losses(pipe_kind::select_send, 15000), 0u);
}

BOOST_AUTO_TEST_CASE(timer_payloads_and_their_tasks_keep_what_they_capture) {
  // AfterFunc callbacks capture fresh objects (small captures inside the
  // std::function, large ones in a block of its own); nothing else holds
  // them while collections run before and after they fire. The fired
  // callbacks wait in their own tasks (their closures hold the objects)
  // until the collections are done.
  g_fired = 0;
  g_fire_bad = 0;
  constexpr int kN = 200;
  gort::run(
      [] {
        gort::WaitGroup fired;
        gort::Chan<int> release;
        std::vector<std::unique_ptr<gort::AfterFunc>> timers;
        fired.add(kN);
        for (int i = 0; i < kN; i++) {
          uint64_t id = 1000 + static_cast<uint64_t>(i);
          tagged* p = fresh(id);
          if (i % 2) {
            timers.push_back(std::make_unique<gort::AfterFunc>(30ms, [p, id] {
              if (!intact(p, id)) g_fire_bad++;
              g_fired++;
            }));
            fired.done();
          } else {
            gort::WaitGroup* wg = &fired;
            gort::Chan<int>* rel = &release;
            timers.push_back(std::make_unique<gort::AfterFunc>(30ms, [p, id, wg, rel] {
              wg->done();
              rel->recv();  // parked: the task's closure holds p
              if (!intact(p, id)) g_fire_bad++;
              g_fired++;
            }));
          }
          p = nullptr;
        }
        std::thread([] {
          for (int c = 0; c < 3; c++) {
            gort_gc_collect();
            churn(20000);
          }
        }).join();
        fired.wait();
        std::thread([] {
          for (int c = 0; c < 3; c++) {
            gort_gc_collect();
            churn(20000);
          }
        }).join();
        release.close();
        while (g_fired.load() < kN) gort::sleep_for(1ms);
      },
      gort::RunOptions{2, 0});
  BOOST_CHECK_EQUAL(g_fired.load(), static_cast<uint64_t>(kN));
  BOOST_CHECK_EQUAL(g_fire_bad.load(), 0u);
}

BOOST_AUTO_TEST_CASE(unregistering_drops_the_threads_gc_cache) {
  // After gort_gc_unregister_thread, the thread's next GC allocation must
  // register it again (its stack is a root once more) instead of taking an
  // object from a cache the collector no longer stops.
  std::atomic<uint64_t> bad{0};
  back_to_back load;
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; t++)
    ts.emplace_back([&, t] {
      for (int round = 0; round < 40; round++) {
        gort_gc_register_thread();
        churn(64);
        gort_gc_unregister_thread();
        tagged* keep[8];
        for (int k = 0; k < 8; k++) keep[k] = fresh(static_cast<uint64_t>(t * 1000 + k));
        for (int spin = 0; spin < 2000; spin++) churn(1);
        for (int k = 0; k < 8; k++)
          if (!intact(keep[k], static_cast<uint64_t>(t * 1000 + k))) bad++;
      }
      gort_gc_unregister_thread();
    });
  for (auto& t : ts) t.join();
  BOOST_CHECK_EQUAL(bad.load(), 0u);
}

BOOST_AUTO_TEST_CASE(a_thread_blocking_the_stop_signal_stops_where_it_allocates) {
  // A registered thread that then blocks every signal (as worker pools
  // often do) never takes the stop signal; it stops at its next allocation,
  // where it polls the stop request. Collections must go on completing while
  // it runs, and what it holds must stay intact.
  std::atomic<uint64_t> bad{0};
  std::atomic<int> blocked{0};
  std::atomic<bool> done{false};
  std::vector<std::thread> ts;
  for (int t = 0; t < 3; t++)
    ts.emplace_back([&, t] {
      churn(1);  // registers the thread (and unblocks the stop signal)
      sigset_t all, old;
      sigfillset(&all);
      pthread_sigmask(SIG_BLOCK, &all, &old);
      blocked++;
      // volatile: otherwise the compiler may keep only a strength-reduced
      // form of the pointer (p - 8 * id * K) for intact's loop, which no
      // conservative collector can see.
      tagged* volatile keep[8] = {};
      uint64_t round = 0;
      while (!done.load()) {
        uint64_t id = static_cast<uint64_t>(t) << 32 | round++;
        keep[round % 8] = fresh(id);
        churn(16);
        if (!intact(keep[round % 8], id)) bad++;
      }
      pthread_sigmask(SIG_SETMASK, &old, nullptr);
      gort_gc_unregister_thread();
    });
  while (blocked.load() < 3) std::this_thread::yield();
  gort_gc_stats_t st;
  gort_gc_stats(&st);
  uint64_t before = st.cycles;
  // Without the poll, the first stop would wait for a signal the threads
  // never take: no cycle completes while they run (the collector gives up
  // after 20 s). Collections run on a thread of their own, so that this one
  // can end the workers' loop whatever happens.
  std::atomic<int> collected{0};
  std::thread collector([&] {
    for (int i = 0; i < 5; i++) {
      gort_gc_collect();
      collected++;
    }
  });
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (collected.load() < 5 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(1ms);
  int got = collected.load();
  done = true;
  for (auto& t : ts) t.join();
  collector.join();
  gort_gc_stats(&st);
  BOOST_CHECK_EQUAL(got, 5);
  BOOST_CHECK_GE(st.cycles - before, 5u);
  BOOST_CHECK_EQUAL(bad.load(), 0u);
}

BOOST_AUTO_TEST_CASE(a_thread_blocking_the_stop_signal_stops_while_it_waits_for_a_lock) {
  // A thread that blocks the stop signal sleeps on one of gort's locks
  // whose holder (a thread that takes the signal) the collector stopped
  // inside its critical section: as on the mheap's lock, which allocation
  // takes outside busy regions. The sleeper must poll for the stop, or the
  // stop never completes (the collector gives up after 20 s). The same
  // happened when an unlock woke a waiter that the signal then stopped
  // before it took the lock: the other waiter slept on a free lock.
  static gort::alloc::mutex m;
  std::atomic<int> phase{0};
  std::atomic<bool> release{false}, rescued{false};
  std::thread holder([&] {
    gort_gc_register_thread();
    m.lock();
    phase = 1;
    while (!release.load()) {
    }
    if (!rescued.load()) m.unlock();
    gort_gc_unregister_thread();
  });
  while (phase.load() < 1) std::this_thread::yield();
  std::thread waiter([&] {
    gort_gc_register_thread();
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    phase = 2;
    m.lock();
    m.unlock();
    churn(1);
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    gort_gc_unregister_thread();
  });
  while (phase.load() < 2) std::this_thread::yield();
  std::this_thread::sleep_for(20ms);  // the waiter sleeps in the lock
  std::atomic<bool> done{false};
  std::thread collector([&] {
    gort_gc_collect();
    done = true;
  });
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!done.load() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(1ms);
  bool in_time = done.load();
  if (!in_time) {  // let the waiter go, so that the stop completes
    rescued = true;
    m.unlock();
  }
  release = true;
  holder.join();
  waiter.join();
  collector.join();
  BOOST_CHECK_MESSAGE(in_time, "the collection waited for the lock's sleeper");
}

BOOST_AUTO_TEST_CASE(weak_get_never_answers_null_for_a_live_object) {
  constexpr int kN = 4096;
  static tagged* live[kN];
  static gort_gc_weak* weak[kN];
  std::atomic<uint64_t> nulls{0};
  on_thread([&] {
    gort_gc_add_roots(live, sizeof live);
    for (int i = 0; i < kN; i++) {
      gort_gc_write(reinterpret_cast<void**>(&live[i]), fresh(static_cast<uint64_t>(i)));
      weak[i] = gort_gc_weak_new(live[i]);
    }
  });
  {
    back_to_back load;
    std::vector<std::thread> readers;
    for (int r = 0; r < 3; r++)
      readers.emplace_back([&] {
        for (int pass = 0; pass < 300; pass++)
          for (int i = 0; i < kN; i++)
            if (!gort_gc_weak_get(weak[i])) nulls++;
        gort_gc_unregister_thread();
      });
    for (auto& t : readers) t.join();
  }
  on_thread([&] {
    for (int i = 0; i < kN; i++) gort_gc_weak_free(weak[i]);
    gort_gc_remove_roots(live);
  });
  BOOST_CHECK_EQUAL(nulls.load(), 0u);
}

BOOST_AUTO_TEST_CASE(a_child_forked_during_a_mark_has_no_barrier_on) {
  // The child has no collector: a barrier left on would shade into work
  // buffers nobody drains, on every pointer store, for good.
  static void* live[20000];
  on_thread([&] {
    gort_gc_add_roots(live, sizeof live);
    for (auto& s : live) gort_gc_write(&s, gort_gc_alloc(64, nullptr));
  });
  int during_mark = 0, bad = 0;
  {
    back_to_back load;
    for (int tries = 0; tries < 100000 && during_mark < 3; tries++) {
      if (!__atomic_load_n(&gort_gc_marking, __ATOMIC_ACQUIRE)) {
        usleep(50);
        continue;
      }
      pid_t pid = fork();
      if (pid == 0) _exit(__atomic_load_n(&gort_gc_marking, __ATOMIC_RELAXED) ? 1 : 0);
      bool marking = __atomic_load_n(&gort_gc_marking, __ATOMIC_ACQUIRE);
      int st = 0;
      waitpid(pid, &st, 0);
      if (!marking) continue;  // the mark may have ended before the fork
      during_mark++;
      if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) bad++;
    }
  }
  on_thread([] { gort_gc_remove_roots(live); });
  BOOST_TEST_MESSAGE("forks during a mark: " << during_mark);
  BOOST_CHECK_GT(during_mark, 0);
  BOOST_CHECK_EQUAL(bad, 0);
}

BOOST_AUTO_TEST_CASE(all_tasks_asleep_after_a_collection_is_a_deadlock) {
  auto r = gort_test::run({gort_test::test_prog("gc_roots"), "deadlock"}, {}, "", 20);
  BOOST_CHECK_MESSAGE(!r.timed_out, "the program hung instead of reporting the deadlock");
  BOOST_CHECK_EQUAL(r.status, 2);
  BOOST_CHECK_MESSAGE(r.err.find("all tasks are asleep - deadlock!") != std::string::npos, r.err);
}

BOOST_AUTO_TEST_CASE(stops_of_a_task_near_its_stack_end_do_not_overflow_it) {
  auto r = gort_test::run({gort_test::test_prog("gc_roots"), "nearend"}, {}, "", 60);
  BOOST_CHECK_EQUAL(r.status, 0);
  BOOST_CHECK_MESSAGE(r.out.find("ok") != std::string::npos, r.out << r.err);
}

BOOST_AUTO_TEST_CASE(a_task_interrupted_on_the_alternate_stack_is_scanned) {
  auto r = gort_test::run({gort_test::test_prog("gc_roots"), "altstack"}, {}, "", 60);
  BOOST_CHECK_EQUAL(r.status, 0);
  BOOST_CHECK_MESSAGE(r.out.find("ok") != std::string::npos, r.out << r.err);
}

BOOST_AUTO_TEST_CASE(a_thread_blocking_the_stop_signal_stops_while_it_waits_for_a_cycle) {
  auto r = gort_test::run({gort_test::test_prog("gc_roots"), "blockedwait"}, {}, "", 60);
  BOOST_CHECK_EQUAL(r.status, 0);
  BOOST_CHECK_MESSAGE(r.out.find("ok") != std::string::npos, r.out << r.err);
}

BOOST_AUTO_TEST_CASE(the_stop_signal_is_configurable_and_never_stolen) {
  // SIGPWR taken by the program: a clear refusal naming the setting.
  auto taken = gort_test::run({gort_test::test_prog("gc_roots"), "sigpwr"}, {}, "", 30);
  BOOST_CHECK_NE(taken.status, 0);
  BOOST_CHECK_MESSAGE(taken.err.find("GORT_GC_SIGNAL") != std::string::npos, taken.err);
  // Another signal: the program keeps its handler.
  for (const char* sig :
       {"GORT_GC_SIGNAL=SIGXCPU", "GORT_GC_SIGNAL=SIGRTMIN+3", "GORT_GC_SIGNAL=24"}) {
    auto r = gort_test::run({gort_test::test_prog("gc_roots"), "sigpwr"}, {sig}, "", 30);
    BOOST_CHECK_MESSAGE(r.status == 0, sig << ": " << r.out << r.err);
  }
  // Bad values: an error naming the variable.
  for (const char* bad :
       {"GORT_GC_SIGNAL=SIGNOPE", "GORT_GC_SIGNAL=9", "GORT_GC_SIGNAL=SIGRTMIN+99"}) {
    auto r = gort_test::run({gort_test::test_prog("gc_roots"), "sigpwr"}, {bad}, "", 30);
    BOOST_CHECK_NE(r.status, 0);
    BOOST_CHECK_MESSAGE(r.err.find(bad) != std::string::npos, bad << ": " << r.err);
  }
}

BOOST_AUTO_TEST_SUITE_END()
