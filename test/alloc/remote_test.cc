// Owned spans and remote frees (alloc/mcentral.h "Owned spans" and "Remote
// frees", alloc/mcache.h "Remote frees"): a thread that frees another
// thread's object never gets it (or its cache line) back from its own stack;
// objects freed remotely go back to their owner, which reuses them, and to no
// third thread; remote frees from many threads at once lose and duplicate
// nothing and leave the heap's counts where they were; a thread that exits
// hands its owned spans back; fork() in the middle of remote traffic leaves
// a usable heap.
// Every test uses more threads than the machine's 2 cores, so that threads
// are preempted inside the allocator.
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <boost/test/unit_test.hpp>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "alloc/mcache.h"
#include "alloc/mcentral.h"
#include "gort/malloc.h"

using namespace gort::alloc;

namespace {

bool share_line(const void* a, size_t an, const void* b, size_t bn) {
  uintptr_t x = reinterpret_cast<uintptr_t>(a), y = reinterpret_cast<uintptr_t>(b);
  return x >> 6 <= (y + bn - 1) >> 6 && y >> 6 <= (x + an - 1) >> 6;
}

template <class F>
void run_threads(int n, F fn) {
  std::vector<std::thread> ts;
  for (int i = 0; i < n; i++) ts.emplace_back(fn, i);
  for (auto& t : ts) t.join();
}

}  // namespace

BOOST_AUTO_TEST_SUITE(remote)

// mimalloc-bench's cache-scratch, as an assertion: the main thread allocates
// objects back to back and hands one to each of 16 threads; each frees it and
// allocates objects of the same size. None of those may share a cache line
// with the main thread's objects that are still live (the handed objects'
// neighbours). Before owned spans, each thread got its handed object back at
// once from its own stack.
BOOST_AUTO_TEST_CASE(freeing_thread_does_not_reuse_anothers_object) {
  for (size_t size : {8, 16, 48, 80}) {
    const int kThreads = 16;
    std::vector<void*> mine;  // live for the whole test: the neighbours
    for (int i = 0; i < 4 * kThreads; i++) mine.push_back(malloc(size));
    std::vector<void*> handed(mine.begin(), mine.begin() + kThreads);
    std::vector<void*> keep(mine.begin() + kThreads, mine.end());
    std::atomic<int> shared{0}, running{kThreads};
    run_threads(kThreads, [&](int w) {
      free(handed[static_cast<size_t>(w)]);
      std::vector<void*> got;
      for (int r = 0; r < 200; r++) {
        void* p = malloc(size);
        for (void* k : keep)
          if (share_line(p, size, k, size)) shared++;
        memset(p, 0xab, size);
        // Half are freed at once (the scratch pattern), half kept a while.
        if (r % 2)
          free(p);
        else
          got.push_back(p);
      }
      for (void* p : got) free(p);
      // Stay until all are done: an exiting thread sends its remote frees
      // (the handed objects) back to their span for the owner's reuse.
      running--;
      while (running.load() > 0) std::this_thread::yield();
    });
    BOOST_TEST(shared.load() == 0, size << "-byte objects: " << shared.load()
                                        << " allocations shared a line with the main thread's");
    for (void* k : keep) free(k);
  }
}

// Objects freed by the thread whose cache owns their span come back to it
// (the local stack), so a single thread's malloc/free pairs stay on the fast
// path; objects it did not allocate do not.
BOOST_AUTO_TEST_CASE(owner_reuses_its_own_objects) {
  // On a new thread: its first refills come from a span it owns (a long-lived
  // thread may hold objects of other threads' batches, which it does not own).
  void *p = nullptr, *again = nullptr;
  std::thread([&] {
    p = malloc(32);
    free(p);
    again = malloc(32);
    free(again);
  }).join();
  BOOST_TEST(again == p);
  void* q = nullptr;
  std::thread([&] { q = malloc(32); }).join();
  free(q);
  void* r = malloc(32);
  BOOST_TEST(r != q);
  free(r);
}

// One owner, many freeing threads (bench/shapes.py "xfer 1:63" in small):
// the owner allocates 320 objects and 16 threads free 20 each, fewer than a
// batch of the class, then stay alive. When the owner allocates 320 more,
// most must be the ones it got back, not new memory. When remote frees
// waited in the freeing threads' caches for a whole batch of a class, none
// came back while those threads lived (0 of 320 reused): with 63 consumers
// that parked thousands of objects and the producer carved new spans.
BOOST_AUTO_TEST_CASE(remote_frees_come_back_to_their_owner) {
  const int kThreads = 16, kPer = 20, kN = kThreads * kPer;
  const size_t kSize = 96;
  BOOST_REQUIRE(kPer < static_cast<int>(class_batch(size_to_class(kSize))));
  std::vector<void*> first(kN), second(kN);
  const uint32_t cls = size_to_class(kSize);
  std::atomic<int> freed{0}, phase{0};
  uint64_t spans_before = 0, spans_after = 0;
  std::thread owner([&] {
    for (void*& p : first) memset(p = malloc(kSize), 1, kSize);
    phase = 1;
    while (freed.load() != kThreads) std::this_thread::yield();
    __atomic_load(&g_central[cls].nspans, &spans_before, __ATOMIC_RELAXED);
    for (void*& p : second) memset(p = malloc(kSize), 2, kSize);
    __atomic_load(&g_central[cls].nspans, &spans_after, __ATOMIC_RELAXED);
    phase = 2;
  });
  while (phase.load() != 1) std::this_thread::yield();
  run_threads(kThreads, [&](int w) {
    for (int i = 0; i < kPer; i++) free(first[static_cast<size_t>(w * kPer + i)]);
    freed++;
    // Alive until the owner has allocated again: a thread that exits gives
    // back what its cache holds.
    while (phase.load() != 2) std::this_thread::yield();
  });
  owner.join();
  std::set<void*> before(first.begin(), first.end());
  int reused = 0;
  for (void* p : second) reused += before.count(p) ? 1 : 0;
  // The owner's stack may hold fresh objects from its last refill (under a
  // batch), and its current span fresh ones (under a span's worth), which
  // come first; everything after those is what the other threads freed.
  const int fresh = static_cast<int>(class_batch(cls) + kPageSize * class_to_npages[cls] / kSize);
  BOOST_TEST(reused >= kN - fresh, reused << " of " << kN << " objects reused by their owner");
  BOOST_TEST(spans_after == spans_before,
             "the owner took " << spans_after - spans_before << " new spans to allocate again");
  for (void* p : second) free(p);
}

// A thread that only frees objects other threads allocated makes no cache
// (a remote free goes to the span and needs none): the 63 consumers of
// bench/shapes.py "xfer 1:63" each made one, about 100 KiB of slots and a
// pass over every class at exit. The objects still come back to their owner.
BOOST_AUTO_TEST_CASE(a_thread_that_only_frees_makes_no_cache) {
  const size_t kSize = 200;
  std::vector<void*> objs(100);
  for (void*& p : objs) memset(p = malloc(kSize), 1, kSize);
  std::set<void*> freed(objs.begin(), objs.end());
  bool had_cache = true;
  std::thread([&] {
    for (void* p : objs) free(p);
    had_cache = tl_thread.cache != nullptr;
  }).join();
  BOOST_TEST(!had_cache, "the freeing thread made a cache");
  // The main thread owns their span: its refills merge them and reuse them.
  int reused = 0;
  for (void*& p : objs) reused += freed.count(p = malloc(kSize)) ? 1 : 0;
  BOOST_TEST(reused > 0, "none of the 100 objects freed by the other thread came back");
  for (void* p : objs) free(p);
}

// Remote frees go to no third thread while their owner lives: thread A
// allocates 8 spans' worth of 64-byte objects and keeps every other one;
// thread B frees the others; thread C then allocates as many objects of the
// class as A had. C's refills are the ones that merge B's frees into A's
// spans (mcentral::merge_remote), and none of C's objects may be one B freed
// or share a line with an object A still holds.
BOOST_AUTO_TEST_CASE(remote_frees_reach_no_third_thread) {
  const size_t kSize = 64;
  const int kN = 1024;
  std::vector<void*> objs(kN);
  std::atomic<int> phase{0};
  std::thread a([&] {
    for (void*& p : objs) memset(p = malloc(kSize), 1, kSize);
    phase = 1;
    while (phase.load() != 3) std::this_thread::yield();
  });
  while (phase.load() != 1) std::this_thread::yield();
  std::thread([&] {
    for (int i = 1; i < kN; i += 2) free(objs[static_cast<size_t>(i)]);
  }).join();
  std::set<void*> freed;
  std::vector<void*> kept;
  for (int i = 0; i < kN; i++) {
    if (i % 2)
      freed.insert(objs[static_cast<size_t>(i)]);
    else
      kept.push_back(objs[static_cast<size_t>(i)]);
  }
  int bad = 0;
  std::thread([&] {
    std::vector<void*> got(kN);
    for (void*& p : got) {
      p = malloc(kSize);
      if (freed.count(p)) bad++;
      for (void* k : kept)
        if (share_line(p, kSize, k, kSize)) {
          bad++;
          break;
        }
    }
    for (void* p : got) free(p);
  }).join();
  BOOST_TEST(bad == 0, bad << " of the third thread's objects were its owner's");
  phase = 3;
  a.join();
  for (void* p : kept) free(p);
}

// No leak: after 8 threads pass 200,000 objects of 1100-1791 bytes to each
// other (nearly every free remote), and while they are all still alive, the
// heap's count of objects in use in those classes (1152-1792 B, which the
// test's own vectors, of power-of-two sizes, do not use) is back where it
// was (remote frees merged or counted), and it still is once they exit.
BOOST_AUTO_TEST_CASE(remote_frees_leave_no_objects_behind) {
  const uint32_t lo = size_to_class(1100), hi = size_to_class(1791);
  auto inuse = [&] {
    gort_malloc_stats_t st;
    gort_malloc_stats(&st);
    uint64_t n = 0;
    for (uint32_t c = lo; c <= hi; c++) n += st.classes[c].inuse;
    return n;
  };
  const uint64_t before = inuse();
  uint64_t during = 0;
  const int kThreads = 8, kRounds = 25000;
  struct slot {
    std::mutex mu;
    std::vector<void*> q;
  };
  std::vector<slot> ring(kThreads);
  std::atomic<int> done{0};
  std::atomic<bool> checked{false};
  run_threads(kThreads, [&](int w) {
    unsigned seed = static_cast<unsigned>(w) * 7919u + 3;
    for (int r = 0; r < kRounds; r++) {
      seed = seed * 1103515245 + 12345;
      void* p = malloc(1100 + (seed >> 8) % 692);
      {
        slot& s = ring[static_cast<size_t>((w + 1 + r % (kThreads - 1)) % kThreads)];
        std::lock_guard g(s.mu);
        s.q.push_back(p);
      }
      if (r % 64 == 63) {
        std::vector<void*> take;
        {
          slot& s = ring[static_cast<size_t>(w)];
          std::lock_guard g(s.mu);
          take.swap(s.q);
        }
        for (void* q : take) free(q);
      }
    }
    done++;
    while (done.load() < kThreads) std::this_thread::yield();
    if (w == 0)
      for (auto& s : ring) {
        std::lock_guard g(s.mu);
        for (void* q : s.q) free(q);
        s.q.clear();
      }
    done++;
    while (done.load() < 2 * kThreads) std::this_thread::yield();
    if (w == 0) {
      during = inuse();
      checked = true;
    }
    while (!checked.load()) std::this_thread::yield();
  });
  BOOST_TEST(during == before, "objects in use: " << before << " before, " << during
                                                  << " with the threads alive after freeing all");
  const uint64_t after = inuse();
  BOOST_TEST(after == before,
             "objects in use: " << before << " before, " << after << " after the threads exited");
}

// 24 threads pass stamped blocks of many sizes round a ring: each block is
// freed by a thread other than its allocator, so nearly every free is
// remote. A block handed out twice or lost shows as a bad stamp or a count
// that does not return to zero.
BOOST_AUTO_TEST_CASE(remote_frees_from_many_threads) {
  const int kThreads = 24, kRounds = 4000;
  struct slot {
    std::mutex mu;
    std::vector<std::pair<unsigned char*, size_t>> q;
  };
  std::vector<slot> ring(kThreads);
  std::atomic<long> bad{0}, live{0};
  run_threads(kThreads, [&](int w) {
    unsigned seed = static_cast<unsigned>(w) * 2654435761u + 1;
    for (int r = 0; r < kRounds; r++) {
      seed = seed * 1103515245 + 12345;
      size_t n = 1 + (seed >> 8) % (r % 16 == 0 ? 40000 : 600);
      auto* p = static_cast<unsigned char*>(malloc(n));
      if (!p) abort();  // no Boost.Test assertions off the main thread: it is not thread-safe
      memset(p, static_cast<int>(n & 0xff), n);
      live++;
      {
        slot& s = ring[static_cast<size_t>((w + 1) % kThreads)];
        std::lock_guard g(s.mu);
        s.q.emplace_back(p, n);
      }
      std::vector<std::pair<unsigned char*, size_t>> take;
      {
        slot& s = ring[static_cast<size_t>(w)];
        std::lock_guard g(s.mu);
        take.swap(s.q);
      }
      for (auto [b, bn] : take) {
        if (b[0] != (bn & 0xff) || b[bn - 1] != (bn & 0xff)) bad++;
        memset(b, 0x5a, bn);
        free(b);
        live--;
      }
    }
  });
  for (auto& s : ring)
    for (auto [b, bn] : s.q) {
      if (b[0] != (bn & 0xff) || b[bn - 1] != (bn & 0xff)) bad++;
      free(b);
      live--;
    }
  BOOST_TEST(bad.load() == 0);
  BOOST_TEST(live.load() == 0);
}

// A thread that exits gives its owned spans back: 3000 threads that each
// allocate and free one object of a class nobody else uses must not leave
// 3000 spans of that class behind (each would be an owned span that no cache
// can allocate from any more). A few more than the 10 threads of a wave may
// stay: spans whose objects sit in the transfer cache are not empty, and how
// many that is depends on the interleaving, so the bound is far above that
// and far below a leak.
BOOST_AUTO_TEST_CASE(thread_exit_hands_back_owned_spans) {
  const size_t kSize = 27000;  // class 27264: nothing else in the suite uses it
  const uint32_t cls = size_to_class(kSize);
  for (int wave = 0; wave < 300; wave++) {
    run_threads(10, [&](int) {
      void* p = malloc(kSize);
      memset(p, 1, kSize);
      free(p);
    });
  }
  uint64_t nspans;
  {
    lock_guard g(g_central[cls].lock);
    nspans = g_central[cls].nspans;
  }
  BOOST_TEST(nspans <= 64u, nspans << " spans of class " << cls << " left by 3000 exited threads");
}

// fork() while threads free each other's objects (spans with remote frees
// pending, owned spans held): the child's one thread allocates and frees through every
// class, remote frees of the parent's objects included, and exits cleanly.
BOOST_AUTO_TEST_CASE(fork_during_remote_frees) {
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::vector<void*> shared;
  std::vector<std::thread> ts;
  for (int w = 0; w < 6; w++)
    ts.emplace_back([&, w] {
      unsigned seed = static_cast<unsigned>(w) + 11;
      while (!stop.load()) {
        seed = seed * 1103515245 + 12345;
        void* p = malloc(16 + (seed >> 8) % 2000);
        std::lock_guard g(mu);
        shared.push_back(p);
        if (shared.size() > 64) {
          for (size_t i = 0; i < 32; i++) {
            free(shared.back());
            shared.pop_back();
          }
        }
      }
    });
  for (int i = 0; i < 20; i++) {
    usleep(2000);
    std::vector<void*> inherited;
    {
      std::lock_guard g(mu);
      inherited = shared;
      shared.clear();
      pid_t pid = fork();
      if (pid == 0) {
        for (void* p : inherited) free(p);  // the parent's threads allocated these
        for (size_t n = 8; n <= 70000; n += n / 3 + 8) {
          void* ps[100];
          for (void*& p : ps) memset(p = malloc(n), 3, n);
          for (void* p : ps) free(p);
        }
        _exit(0);
      }
      BOOST_REQUIRE(pid > 0);
      int st = 0;
      BOOST_REQUIRE(waitpid(pid, &st, 0) == pid);
      BOOST_TEST((WIFEXITED(st) && WEXITSTATUS(st) == 0), "fork child " << i << " status " << st);
    }
    for (void* p : inherited) free(p);
  }
  stop = true;
  for (auto& t : ts) t.join();
  for (void* p : shared) free(p);
}

// A remote double free is caught: free(p) twice from a thread that does not
// own p's span (its owner is the thread that allocated it, which the fork
// child does not have). The second free finds p's bit set in the span's
// remote-free bitmap, or, when a merge took the bit in between, the next
// merge finds p free (make test saw the child exit 0 twice in about twenty runs
// before the child forced that merge: a scavenger started in the child). The child first frees k
// other remote objects of p's class, for every k up to a batch (with remote slots, one of those
// children met p's first free at the moment its slots went back to the mcentral, and the second
// free once did not see p).
BOOST_AUTO_TEST_CASE(remote_double_free_is_reported) {
  constexpr size_t kSize = 64;
  const uint32_t batch = class_batch(size_to_class(kSize));
  std::vector<void*> others;
  void* p = nullptr;
  std::atomic<int> phase{0};
  std::thread owner([&] {
    p = malloc(kSize);
    for (uint32_t i = 0; i < 2 * batch; i++) others.push_back(malloc(kSize));
    phase = 1;
    while (phase.load() != 2) std::this_thread::yield();
  });
  while (phase.load() != 1) std::this_thread::yield();
  for (uint32_t k = 0; k <= batch + 1; k++) {
    pid_t pid = fork();
    if (pid == 0) {
      signal(SIGABRT, SIG_DFL);  // not Boost.Test's handler: the child must die of it
      int devnull = open("/dev/null", O_WRONLY);
      dup2(devnull, 2);
      for (uint32_t i = 0; i < k; i++) free(others[i]);
      free(p);
      free(p);
      // A merge between the two frees (the child's scavenger, started by
      // the first one when enough memory is free, merges pending spans) took
      // p's bit: then the second free set it again, and the next merge finds
      // p already free. The child makes that merge happen before it exits.
      gort_scavenge();
      _exit(0);
    }
    int st = 0;
    BOOST_REQUIRE(waitpid(pid, &st, 0) == pid);
    BOOST_TEST(WIFSIGNALED(st), "a remote double free after "
                                    << k << " other remote frees was not caught (status " << st
                                    << ")");
  }
  phase = 2;
  owner.join();
  free(p);
  for (void* o : others) free(o);
}

BOOST_AUTO_TEST_SUITE_END()
