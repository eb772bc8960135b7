// Plain OS threads and the deadlock detector, for test/runtime/exit_test.cc.
// Usage: sched_osthread MODE
//   wait_thread  the only task waits for a value a std::thread sends after
//                100 ms: not a deadlock (exit 0, "ok")
//   after_join   a thread runs and is joined, then the main task blocks
//                forever: a deadlock (exit 2)
//   thread_ends_later  the main task blocks forever while a thread that
//                never touches the runtime sleeps 100 ms and ends: a
//                deadlock once it is gone (exit 2)
#include <gort/runtime.h>
#include <stdio.h>
#include <string.h>

#include <chrono>
#include <thread>

using namespace std::chrono_literals;

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "wait_thread";
  return gort::run([mode]() -> int {
    gort::Chan<int> c;
    if (!strcmp(mode, "wait_thread")) {
      std::thread t([c]() mutable {
        std::this_thread::sleep_for(100ms);
        c.send(7);
      });
      auto v = c.recv();
      t.join();
      if (v != 7) return 1;
    } else if (!strcmp(mode, "after_join")) {
      std::thread t([c]() mutable { c.send(7); });
      if (c.recv() != 7) return 1;
      t.join();
      c.recv();
    } else if (!strcmp(mode, "thread_ends_later")) {
      std::thread([] { std::this_thread::sleep_for(100ms); }).detach();
      c.recv();
    } else {
      fprintf(stderr, "unknown mode %s\n", mode);
      return 64;
    }
    printf("ok\n");
    return 0;
  });
}
