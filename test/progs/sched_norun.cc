// Blocking operations between plain OS threads with no gort::run at all
// (the header: "Blocking operations ... also work from plain OS threads
// outside the scheduler"), for test/runtime/exit_test.cc. Usage:
//   sched_norun sync    channels (buffered, unbuffered, select, close),
//                       Mutex, WaitGroup and Cond between threads
//   sched_norun sleep   sleep_for / sleep_until on a thread
// Prints "ok" and exits 0 when every check passes, else "FAIL ..." and 1.
#include <gort/runtime.h>
#include <stdio.h>
#include <string.h>

#include <chrono>
#include <mutex>
#include <thread>

using namespace std::chrono_literals;

#define CHECK(c)                                          \
  do {                                                    \
    if (!(c)) {                                           \
      printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #c); \
      return 1;                                           \
    }                                                     \
  } while (0)

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "sync";
  if (!strcmp(mode, "sync")) {
    constexpr int N = 2000;
    gort::Chan<int> u, b(4);
    gort::Mutex m;
    gort::Cond cond(m);
    gort::WaitGroup wg;
    long sum = 0, counter = 0;
    bool flag = false, woke = false;
    wg.add(2);
    std::thread producer([&] {
      for (int i = 0; i < N; i++) (i % 2 ? u : b).send(i);
      u.close();
      b.close();
      for (int i = 0; i < N; i++) {
        std::lock_guard<gort::Mutex> g(m);
        counter++;
      }
      wg.done();
    });
    std::thread consumer([&] {
      gort::Chan<int> cu = u, cb = b;
      while (!cu.is_nil() || !cb.is_nil()) {
        gort::select(gort::on_recv(cu,
                                   [&](int v, bool ok) {
                                     if (ok)
                                       sum += v;
                                     else
                                       cu = gort::nil;
                                   }),
                     gort::on_recv(cb, [&](int v, bool ok) {
                       if (ok)
                         sum += v;
                       else
                         cb = gort::nil;
                     }));
      }
      for (int i = 0; i < N; i++) {
        std::lock_guard<gort::Mutex> g(m);
        counter++;
      }
      wg.done();
    });
    std::thread waiter([&] {
      std::lock_guard<gort::Mutex> g(m);
      while (!flag) cond.wait();
      woke = true;
    });
    wg.wait();
    {
      std::lock_guard<gort::Mutex> g(m);
      flag = true;
      cond.broadcast();
    }
    producer.join();
    consumer.join();
    waiter.join();
    CHECK(sum == long{N} * (N - 1) / 2);
    CHECK(counter == 2L * N);
    CHECK(woke);
    CHECK(gort::task_id() == 0);
  } else if (!strcmp(mode, "sleep")) {
    auto t0 = gort::Clock::now();
    gort::sleep_for(10ms);
    CHECK(gort::Clock::now() - t0 >= 10ms);
    auto until = gort::Clock::now() + 5ms;
    std::thread t([until] { gort::sleep_until(until); });
    t.join();
    CHECK(gort::Clock::now() >= until);
  } else {
    fprintf(stderr, "unknown mode %s\n", mode);
    return 64;
  }
  printf("ok\n");
  return 0;
}
