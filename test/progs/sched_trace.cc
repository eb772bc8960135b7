// A small program for the execution trace's tests (test/runtime/trace_test.cc):
// tasks that stop in every way the trace tells apart, and a GC cycle. Each
// task prints its id and how it will stop ("chan 5"), so the test can find
// that very task in the trace. Usage: sched_trace MODE
//   env   tracing through GORT_TRACE, written at exit
//   api   gort_trace_start(argv[2]) before the run, gort_trace_stop() from the
//         main task at its end; prints "stopped"
//   fork  like env, and a child forked after the run allocates, collects
//         and exits with exit(0), and a vfork child leaves with _exit(0):
//         neither may write the parent's trace
//   long  like env, with many more switches (to wrap a small ring)
#include <gort/gc.h>
#include <gort/runtime.h>
#include <gort/trace.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <vector>

using namespace std::chrono_literals;

namespace {

struct node {
  node* next;
  char pad[48];
};

void workload(bool longer) {
  gort::WaitGroup wg;
  gort::Chan<int> c;
  wg.go([&] {
    printf("chan %llu\n", static_cast<unsigned long long>(gort::task_id()));
    c.recv();  // blocks: the main task sends after a sleep
  });
  wg.go([&] {
    printf("yield %llu\n", static_cast<unsigned long long>(gort::task_id()));
    // A yield switches only if something else can run on this P: a new
    // task goes to this P's runnext (an idle P may steal it first, so 20
    // times).
    for (int i = 0; i < 20; i++) {
      gort::go([] {});
      gort::yield();
    }
  });
  if (longer) {
    // Many switches: two tasks hand a value back and forth.
    gort::Chan<int> ping, pong;
    wg.go([ping, pong]() mutable {
      for (int i = 0; i < 50000; i++) pong.send(*ping.recv());
    });
    wg.go([ping, pong]() mutable {
      for (int i = 0; i < 50000; i++) {
        ping.send(i);
        pong.recv();
      }
    });
  }
  wg.go([&] {
    printf("sleep %llu\n", static_cast<unsigned long long>(gort::task_id()));
    gort::sleep_for(5ms);
  });
  gort::Mutex mu;
  mu.lock();
  wg.go([&] {
    printf("mutex %llu\n", static_cast<unsigned long long>(gort::task_id()));
    mu.lock();  // blocks: the main task holds it for a while
    mu.unlock();
  });
  wg.go([&] {
    printf("spin %llu\n", static_cast<unsigned long long>(gort::task_id()));
    // No runtime call for 60 ms: sysmon preempts it (by signal: the loop
    // is the program's own code, the clock is read only now and then).
    auto end = std::chrono::steady_clock::now() + 60ms;
    std::atomic<uint64_t> n{0};
    for (uint64_t i = 1;; i++) {
      n.fetch_add(i, std::memory_order_relaxed);
      if ((i & 0xffff) == 0 && std::chrono::steady_clock::now() >= end) break;
    }
  });
  wg.go([&] {
    printf("syscall %llu\n", static_cast<unsigned long long>(gort::task_id()));
    gort::blocking([] { usleep(20000); });
  });
  // Long enough for the tasks above to be parked first, even on a loaded
  // machine (sysmon gives the syscall task's P to the others within ~10 ms).
  gort::sleep_for(50ms);
  c.send(1);
  mu.unlock();
  // A GC cycle with some garbage to sweep.
  node* keep = nullptr;
  for (int i = 0; i < 20000; i++) {
    node* n = static_cast<node*>(gort_gc_alloc(sizeof(node), nullptr));
    n->next = i % 16 == 0 ? keep : nullptr;
    if (i % 16 == 0) keep = n;
  }
  gort_gc_collect();
  // Memory for the scavenger to return (the env test sets GORT_SCAVENGE=0:
  // at once, on its own thread).
  {
    std::vector<void*> blocks;
    for (int i = 0; i < 160; i++) {
      blocks.push_back(malloc(64 << 10));
      memset(blocks.back(), 1, 64 << 10);
    }
    for (void* b : blocks) free(b);
  }
  gort::sleep_for(100ms);
  wg.wait();
  gort::SchedStats st = gort::sched_stats();
  printf("preemptions %llu async %llu\n", static_cast<unsigned long long>(st.preemptions),
         static_cast<unsigned long long>(st.async_preemptions));
  fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "env";
  setvbuf(stdout, nullptr, _IOLBF, 0);
  printf("pid %d\n", static_cast<int>(getpid()));
  if (!strcmp(mode, "api")) {
    if (argc < 3 || gort_trace_start(argv[2]) != 0) {
      perror("gort_trace_start");
      return 1;
    }
    if (gort_trace_start(argv[2]) == 0 || errno != EBUSY) {
      fprintf(stderr, "a second gort_trace_start did not fail with EBUSY\n");
      return 1;
    }
  }
  int rc = gort::run([&] {
    workload(!strcmp(mode, "long"));
    if (!strcmp(mode, "api")) {
      if (gort_trace_stop() != 0) {
        perror("gort_trace_stop");
        return 1;
      }
      printf("stopped\n");
    }
    return 0;
  });
  if (!strcmp(mode, "fork")) {
    pid_t pid = fork();
    if (pid == 0) {
      // Allocates and collects (events the child must not record) and
      // leaves through exit(), which writes a trace if one is on.
      for (int i = 0; i < 1000; i++) gort_gc_alloc(64, nullptr);
      gort_gc_collect();
      exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    printf("child %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    // A vfork child shares the parent's memory and runs no atfork handler;
    // its _exit must not write (nor stop) the parent's trace.
    pid = vfork();
    if (pid == 0) _exit(0);
    waitpid(pid, &st, 0);
    printf("vfork child %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
  }
  return rc;
}
