// An exception escaping a task, and the sync types' fatal errors, for
// test/runtime/exit_test.cc. Usage: sched_panic MODE
//   task       a task (not the first: 200 others ran before it) throws
//              std::runtime_error("boom from task"); "thrower ID" on stdout
//   main       the main task throws std::runtime_error("boom from main")
//   chanclosed a task sends on a closed channel and does not catch it
//   nonstd     a task throws an int; "thrower ID" on stdout
//   caught     a task throws and catches: exit 0, "ok"
//   wg_negative   WaitGroup::done() with a zero counter
//   unlock_unlocked  Mutex::unlock() of an unlocked Mutex
#include <gort/runtime.h>
#include <stdio.h>
#include <string.h>

#include <chrono>
#include <stdexcept>

using namespace std::chrono_literals;

namespace {
void say_id() {
  printf("thrower %llu\n", static_cast<unsigned long long>(gort::task_id()));
  fflush(stdout);
}
}  // namespace

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "task";
  return gort::run([mode]() -> int {
    gort::WaitGroup wg;
    for (int i = 0; i < 200; i++) wg.go([] {});
    wg.wait();
    if (!strcmp(mode, "task")) {
      wg.go([] {
        say_id();
        throw std::runtime_error("boom from task");
      });
      wg.wait();
      gort::sleep_for(1s);
    } else if (!strcmp(mode, "main")) {
      throw std::runtime_error("boom from main");
    } else if (!strcmp(mode, "chanclosed")) {
      gort::Chan<int> c(1);
      c.close();
      wg.go([c]() mutable {
        say_id();
        c.send(1);
      });
      wg.wait();
      gort::sleep_for(1s);
    } else if (!strcmp(mode, "nonstd")) {
      wg.go([] {
        say_id();
        throw 42;
      });
      wg.wait();
      gort::sleep_for(1s);
    } else if (!strcmp(mode, "caught")) {
      bool caught = false;
      wg.go([&] {
        try {
          throw std::runtime_error("caught");
        } catch (const std::exception&) {
          caught = true;
        }
      });
      wg.wait();
      if (!caught) return 1;
    } else if (!strcmp(mode, "wg_negative")) {
      gort::WaitGroup z;
      z.done();
    } else if (!strcmp(mode, "unlock_unlocked")) {
      gort::Mutex m;
      m.unlock();
    } else {
      fprintf(stderr, "unknown mode %s\n", mode);
      return 64;
    }
    printf("ok\n");
    return 0;
  });
}
