// Roots and the stop signal, tried the way programs break them; for
// test/gc/roots_test.cc. Usage: gc_roots MODE; prints "ok" and exits 0, or
// prints what broke and exits 1.
//   deadlock    after a collection (collector and finalizer threads
//               running), the main task blocks forever: the runtime must
//               report "all tasks are asleep - deadlock!" (exit 2)
//   nearend     a task spins with ~600 bytes left on its stack while the
//               collector stops the world over and over (the stop signal's
//               frame must not go on the task's stack)
//   altstack    a task is interrupted by the program's own signal handler,
//               which runs on the alternate signal stack while collections
//               run: the task's stack must still be scanned
//   sigpwr      installs a SIGPWR handler, then uses the GC (refused
//               clearly unless GORT_GC_SIGNAL names another signal; with
//               one, the program's handler still gets SIGPWR)
//   blockedwait a registered thread that blocks every signal calls
//               gort_gc_collect and gort_gc_run_finalizers: the stops of
//               those cycles wait for that thread, which must stop where it
//               waits (before, the collector gave up after 20 s)
#include <gort/gc.h>
#include <gort/runtime.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "../gc/tagged.h"

namespace {

using namespace gc_tagged;

int fail(const char* what) {
  printf("FAIL: %s\n", what);
  return 1;
}

int deadlock() {
  return gort::run([] {
    void* obj = gort_gc_alloc(64, nullptr);
    gort_gc_set_finalizer(
        obj, [](void*, void*) {}, nullptr);  // starts the finalizer thread
    obj = nullptr;
    gort_gc_collect();
    gort_gc_collect();
    gort::Chan<int> never;
    never.recv();
  });
}

constexpr size_t kStack = 64 << 10;
std::atomic<bool> g_stop{false};
std::atomic<int> g_bad{0};

__attribute__((noinline)) void spin_near_end() {
  tagged* volatile p = fresh(42);
  gort_gc_weak* w = gort_gc_weak_new(p);
  while (!g_stop.load(std::memory_order_relaxed)) {
  }
  if (!intact(p, 42) || !gort_gc_weak_get(w)) g_bad++;
  gort_gc_weak_free(w);
}

__attribute__((noinline)) void near_end() {
  // Task stacks are 8 KiB-aligned spans: the top is the frame address
  // rounded up, and the usable part ends a 4 KiB guard page above the base.
  uintptr_t here = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
  uintptr_t hi = (here + 8191) & ~uintptr_t{8191};
  uintptr_t lo = hi - kStack + 4096;
  size_t n = here - lo - 1100;
  char* a = static_cast<char*>(__builtin_alloca(n));
  a[0] = 1;
  asm volatile("" : : "r"(a) : "memory");
  spin_near_end();
}

int nearend() {
  gort::run(
      [] {
        // The collector's threads start at the first GC allocation; that
        // (pthread_create, a heap refill) is not the stop this case is about
        // and must not happen with 1 KiB of stack left.
        gort_gc_collect();
        gort::WaitGroup wg;
        wg.go(near_end);
        std::thread t([] {
          for (int i = 0; i < 100; i++) {
            gort_gc_collect();
            churn(2000);
          }
          g_stop = true;
        });
        t.join();
        wg.wait();
      },
      gort::RunOptions{2, kStack});
  return g_bad ? fail("an object on a task's stack near its end was lost") : 0;
}

std::atomic<bool> g_in_handler{false}, g_release{false};

void usr1(int) {
  g_in_handler = true;
  while (!g_release.load()) {
  }
}

__attribute__((noinline)) void interrupted() {
  tagged* volatile p = fresh(7);
  gort_gc_weak* w = gort_gc_weak_new(p);
  pthread_kill(pthread_self(), SIGUSR1);
  if (!intact(p, 7) || !gort_gc_weak_get(w)) g_bad++;
  gort_gc_weak_free(w);
}

int altstack() {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = usr1;
  sa.sa_flags = SA_ONSTACK;
  sigaction(SIGUSR1, &sa, nullptr);
  gort::run(
      [] {
        std::thread t([] {
          while (!g_in_handler) usleep(100);
          for (int i = 0; i < 3; i++) {
            gort_gc_collect();
            churn(20000);
          }
          g_release = true;
        });
        gort::WaitGroup wg;
        wg.go(interrupted);
        wg.wait();
        t.join();
      },
      gort::RunOptions{2, 0});
  return g_bad ? fail("a task interrupted on the alternate signal stack lost an object") : 0;
}

std::atomic<int> g_pwr{0};

int sigpwr() {
  signal(SIGPWR, [](int) { g_pwr++; });
  void* keep = gort_gc_alloc(64, nullptr);
  gort_gc_register_thread();
  std::thread t([] { gort_gc_collect(); });
  t.join();
  raise(SIGPWR);
  if (g_pwr != 1) return fail("the program's SIGPWR handler was replaced");
  asm volatile("" : : "r"(keep) : "memory");
  return 0;
}

int blockedwait() {
  std::thread t([] {
    gort_gc_register_thread();
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);
    void* keep = gort_gc_alloc(64, nullptr);
    for (int i = 0; i < 3; i++) {
      gort_gc_collect();
      gort_gc_run_finalizers();
    }
    asm volatile("" : : "r"(keep) : "memory");
    gort_gc_unregister_thread();
  });
  t.join();  // a hang ends in the collector's fatal error after 20 s
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "";
  int r = 2;
  if (!strcmp(mode, "deadlock"))
    r = deadlock();
  else if (!strcmp(mode, "nearend"))
    r = nearend();
  else if (!strcmp(mode, "altstack"))
    r = altstack();
  else if (!strcmp(mode, "sigpwr"))
    r = sigpwr();
  else if (!strcmp(mode, "blockedwait"))
    r = blockedwait();
  else
    fprintf(stderr, "usage: gc_roots deadlock|nearend|altstack|sigpwr|blockedwait\n");
  if (r == 0) printf("ok\n");
  return r;
}
