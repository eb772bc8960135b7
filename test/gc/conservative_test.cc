// Conservative roots: words on the stacks and in the registers of stopped
// threads keep objects alive, interior pointers included.
#include <signal.h>

#include <boost/test/unit_test.hpp>
#include <condition_variable>
#include <mutex>

#include "common.h"

using namespace gc_test;

BOOST_AUTO_TEST_SUITE(conservative)

namespace {
constexpr uint64_t kFill = 0x5a5a5a5a5a5a5a5aull;
constexpr size_t kWords = 64;

uint64_t* make_filled() {
  auto* p = static_cast<uint64_t*>(gort_gc_alloc_noscan(kWords * 8));
  for (size_t i = 0; i < kWords; i++) p[i] = kFill ^ i;
  return p;
}
// Makes a filled object and returns its interior address disguised, so
// that no frame but this one (dead after it returns) holds the pointer.
__attribute__((noinline)) uintptr_t make_hidden(gort_gc_weak** w, uintptr_t key) {
  uint64_t* p = make_filled();
  *w = gort_gc_weak_new(p);
  return (reinterpret_cast<uintptr_t>(p) + 8) ^ key;
}
bool intact(const uint64_t* p) {
  for (size_t i = 0; i < kWords; i++)
    if (p[i] != (kFill ^ i)) return false;
  return true;
}
}  // namespace

BOOST_AUTO_TEST_CASE(interior_pointer_on_a_blocked_threads_stack) {
  std::mutex mu;
  std::condition_variable cv;
  bool ready = false, done = false, ok = false;
  gort_gc_weak* w = nullptr;
  std::thread t([&] {
    uint64_t* p = make_filled();
    w = gort_gc_weak_new(p);
    // Only an interior pointer stays on this stack.
    volatile uintptr_t interior = reinterpret_cast<uintptr_t>(p) + 200;
    p = nullptr;
    {
      std::unique_lock<std::mutex> l(mu);
      ready = true;
      cv.notify_all();
      cv.wait(l, [&] { return done; });  // blocked in a futex while the collector runs
    }
    ok = intact(reinterpret_cast<uint64_t*>(interior - 200));
  });
  {
    std::unique_lock<std::mutex> l(mu);
    cv.wait(l, [&] { return ready; });
  }
  collect(3);
  BOOST_CHECK(alive(w));
  {
    std::lock_guard<std::mutex> l(mu);
    done = true;
    cv.notify_all();
  }
  t.join();
  BOOST_CHECK(ok);
  collect();
  BOOST_CHECK(!alive(w));  // the thread is gone, and with it the only reference
  gort_gc_weak_free(w);
}

BOOST_AUTO_TEST_CASE(pointer_only_in_a_register_of_a_running_thread) {
  std::atomic<int> state{0};  // 1: spinning with the pointer in r15; 2: stop
  std::atomic<uintptr_t> hidden{0};
  constexpr uintptr_t kKey = 0x0f0f0f0f0f0f0f00ull;
  gort_gc_weak* w = nullptr;
  bool ok = false;
  std::thread t([&] {
    gort_gc_register_thread();
    hidden = make_hidden(&w, kKey);  // interior, disguised in memory
    // Clear the frames the allocation used, so no copy is left in memory.
    {
      volatile char scrub[16384];
      for (size_t i = 0; i < sizeof scrub; i += 8) scrub[i] = 0;
    }
    uintptr_t h = hidden.load() ^ kKey;
    hidden = 0;
    int* st = reinterpret_cast<int*>(&state);
    uintptr_t out;
    // r15 holds the only copy while this loop spins; the collector stops the
    // thread with a signal and finds it in the saved registers.
    asm volatile(
        "mov %1, %%r15\n"
        "xor %1, %1\n"
        "movl $1, (%2)\n"
        "1: pause\n"
        "cmpl $2, (%2)\n"
        "jne 1b\n"
        "mov %%r15, %0\n"
        "xor %%r15, %%r15\n"
        : "=r"(out), "+r"(h)
        : "r"(st)
        : "r15", "memory");
    ok = intact(reinterpret_cast<uint64_t*>(out - 8));
  });
  while (state.load() != 1) std::this_thread::yield();
  collect(3);
  bool was_alive = alive(w);
  state = 2;
  t.join();
  BOOST_CHECK(was_alive);
  BOOST_CHECK(ok);
  gort_gc_weak_free(w);
}

BOOST_AUTO_TEST_CASE(registered_thread_that_never_allocates_is_scanned) {
  // A thread that only reads GC objects (registered explicitly) keeps what
  // it holds on its stack.
  gort_gc_handle* h = nullptr;
  gort_gc_weak* w = nullptr;
  on_thread([&] {
    uint64_t* p = make_filled();
    h = gort_gc_handle_new(p);
    w = gort_gc_weak_new(p);
  });
  std::atomic<int> phase{0};
  bool ok = false;
  std::thread reader([&] {
    BOOST_REQUIRE_EQUAL(gort_gc_register_thread(), 0);
    volatile uintptr_t held = reinterpret_cast<uintptr_t>(gort_gc_handle_get(h));
    phase = 1;
    while (phase.load() != 2) std::this_thread::yield();
    ok = intact(reinterpret_cast<uint64_t*>(held));
    gort_gc_unregister_thread();
  });
  while (phase.load() != 1) std::this_thread::yield();
  gort_gc_handle_free(h);  // now only the reader's stack holds it
  collect(2);
  BOOST_CHECK(alive(w));
  phase = 2;
  reader.join();
  BOOST_CHECK(ok);
  gort_gc_weak_free(w);
}

BOOST_AUTO_TEST_CASE(thread_started_with_every_signal_blocked_is_stopped) {
  // Threads inherit their creator's signal mask; one started with every
  // signal blocked must still be stoppable once it uses the GC heap.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  std::atomic<bool> stop{false}, started{false};
  std::thread t([&] {
    while (!stop.load()) {
      for (int i = 0; i < 1000; i++) gort_gc_alloc(64, nullptr);
      started = true;
    }
  });
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  while (!started.load()) std::this_thread::yield();
  uint64_t c0 = stat_cycles();
  collect(3);  // a thread that cannot be stopped would abort this after 20 s
  stop = true;
  t.join();
  BOOST_CHECK_GE(stat_cycles(), c0 + 3);
}

BOOST_AUTO_TEST_SUITE_END()
