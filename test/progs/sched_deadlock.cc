// Deadlock detection, for test/runtime/exit_test.cc: every task blocked with
// no timer pending must end the program with exit code 2 and "all tasks are
// asleep - deadlock!" listing the blocked tasks; a program whose tasks wait
// on a timer is not deadlocked. Usage: sched_deadlock MODE
//   recv        the main task receives on a channel nobody sends on
//   many        five tasks blocked in different ways (their ids on stdout:
//               "blocked: ID ID ID ID ID"), then the main task too
//   select_nil  the main task selects on nil channels only
//   mutex       the main task locks a Mutex it holds
//   cond        the main task waits on a Cond nobody signals
//   after_sleep the main task sleeps 20 ms, then receives forever
//   timer_ok    the main task waits for a task that sends after 100 ms (exit 0)
//   timer_chan_ok  the main task waits for a Timer's channel (exit 0)
//   timer_relay_ok a task sleeps 20 us and sends, 10,000 times; another
//               receives and spins 0-60 us; the main task waits for both
//               (exit 0). The timer sleeper runs a due timer with no P while
//               the receiver's M parks: a deadlock check that counted only
//               Ps and queues saw nothing runnable then.
#include <gort/runtime.h>
#include <stdio.h>
#include <string.h>

#include <atomic>
#include <chrono>
#include <mutex>

using namespace std::chrono_literals;

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "recv";
  return gort::run([mode]() -> int {
    if (!strcmp(mode, "recv")) {
      gort::Chan<int> c;
      c.recv();
    } else if (!strcmp(mode, "many")) {
      gort::Mutex m;
      gort::Chan<int> c1, c2, never;
      gort::Chan<int> nil(gort::nil);
      gort::WaitGroup forever, all;
      forever.add(1);
      std::atomic<uint64_t> ids[5] = {};
      m.lock();
      all.go([&] {
        ids[0] = gort::task_id();
        m.lock();
      });
      all.go([&] {
        ids[1] = gort::task_id();
        c1.recv();
      });
      all.go([&] {
        ids[2] = gort::task_id();
        c2.send(1);
      });
      all.go([&] {
        ids[3] = gort::task_id();
        gort::select(gort::on_recv(nil), gort::on_recv(never));
      });
      all.go([&] {
        ids[4] = gort::task_id();
        forever.wait();
      });
      gort::sleep_for(50ms);
      printf("blocked:");
      for (auto& id : ids) printf(" %llu", static_cast<unsigned long long>(id.load()));
      printf("\n");
      fflush(stdout);
      all.wait();
    } else if (!strcmp(mode, "select_nil")) {
      gort::Chan<int> a(gort::nil), b(gort::nil);
      gort::select(gort::on_recv(a), gort::on_send(b, 1));
    } else if (!strcmp(mode, "mutex")) {
      gort::Mutex m;
      m.lock();
      m.lock();
    } else if (!strcmp(mode, "cond")) {
      gort::Mutex m;
      gort::Cond c(m);
      std::lock_guard<gort::Mutex> g(m);
      c.wait();
    } else if (!strcmp(mode, "after_sleep")) {
      gort::sleep_for(20ms);
      gort::Chan<int> c;
      c.recv();
    } else if (!strcmp(mode, "timer_ok")) {
      gort::Chan<int> c;
      gort::go([c]() mutable {
        gort::sleep_for(100ms);
        c.send(5);
      });
      if (c.recv() != 5) return 1;
    } else if (!strcmp(mode, "timer_relay_ok")) {
      gort::WaitGroup wg;
      gort::Chan<int> c;
      constexpr int kRounds = 10000;
      wg.go([&] {
        for (int i = 0; i < kRounds; i++) {
          gort::sleep_for(20us);
          c.send(i);
        }
      });
      wg.go([&] {
        uint32_t s = 1;
        for (int i = 0; i < kRounds; i++) {
          c.recv();
          s = s * 1103515245u + 12345u;
          auto end = std::chrono::steady_clock::now() + std::chrono::nanoseconds((s >> 8) % 60000);
          while (std::chrono::steady_clock::now() < end) {
          }
        }
      });
      wg.wait();
    } else if (!strcmp(mode, "timer_chan_ok")) {
      gort::Timer t(50ms);
      if (!t.channel().recv()) return 1;
    } else {
      fprintf(stderr, "unknown mode %s\n", mode);
      return 64;
    }
    printf("ok\n");
    return 0;
  });
}
