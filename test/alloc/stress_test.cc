// Multi-threaded stress with verification: more threads than cores, random
// sizes, frees on other threads, every byte checked against its pattern;
// fork() while other threads allocate; 1,000 short-lived threads with bounded
// RSS. GORT_STRESS_SCALE multiplies the work (make stress).
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <boost/test/unit_test.hpp>
#include <deque>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "gort/malloc.h"
#include "helpers.h"

namespace {

int scale() {
  const char* s = getenv("GORT_STRESS_SCALE");
  int v = s ? atoi(s) : 1;
  return v > 0 ? v : 1;
}

struct block {
  unsigned char* p;
  size_t n;
  uint32_t tag;
};

void stamp(const block& b) {
  for (size_t i = 0; i < b.n; i++) b.p[i] = static_cast<unsigned char>(b.tag * 31 + i);
}
bool intact(const block& b) {
  for (size_t i = 0; i < b.n; i++)
    if (b.p[i] != static_cast<unsigned char>(b.tag * 31 + i)) return false;
  return true;
}

size_t random_size(std::mt19937_64& rng) {
  unsigned bits = 3 + static_cast<unsigned>(rng() % 13);  // 8 B .. 64 KiB
  size_t n = (size_t{1} << bits) + rng() % (size_t{1} << bits);
  if (rng() % 200 == 0) n = 100000 + rng() % 900000;  // a few large ones
  return n;
}

// A mailbox per thread: other threads drop blocks here for it to free.
struct mailbox {
  std::mutex mu;
  std::deque<block> q;
};

}  // namespace

BOOST_AUTO_TEST_SUITE(stress)

BOOST_AUTO_TEST_CASE(threads_random_sizes_cross_thread_frees) {
  const int kThreads = 8;  // four per core on the CI machine
  const int kOps = 60000 * scale();
  std::vector<mailbox> boxes(kThreads);
  std::atomic<int> corrupt{0}, done{0};
  auto worker = [&](int id) {
    std::mt19937_64 rng(static_cast<uint64_t>(id) * 7919 + 1);
    std::vector<block> live;
    uint32_t tag = static_cast<uint32_t>(id) << 24;
    for (int op = 0; op < kOps; op++) {
      unsigned what = static_cast<unsigned>(rng() % 10);
      if (what < 5 || live.empty()) {
        size_t n = random_size(rng);
        block b{nullptr, n, ++tag};
        bool zeroed = rng() % 4 == 0;
        b.p = static_cast<unsigned char*>(zeroed ? calloc(1, n) : malloc(n));
        if (!b.p) {
          corrupt++;
          continue;
        }
        if (zeroed)
          for (size_t i = 0; i < n; i += 61)
            if (b.p[i] != 0) corrupt++;
        stamp(b);
        live.push_back(b);
      } else if (what < 7) {
        size_t k = rng() % live.size();
        if (!intact(live[k])) corrupt++;
        free(live[k].p);
        live[k] = live.back();
        live.pop_back();
      } else if (what < 8) {
        size_t k = rng() % live.size();
        block& b = live[k];
        if (!intact(b)) corrupt++;
        size_t n = random_size(rng);
        auto* q = static_cast<unsigned char*>(realloc(b.p, n));
        if (!q) {
          corrupt++;
          continue;
        }
        block nb{q, n, b.tag};
        size_t keep = b.n < n ? b.n : n;
        block old{q, keep, b.tag};
        if (!intact(old)) corrupt++;
        stamp(nb);
        b = nb;
      } else {
        // Hand a block to another thread, which frees it.
        size_t k = rng() % live.size();
        int to = static_cast<int>(rng() % kThreads);
        {
          std::lock_guard<std::mutex> g(boxes[to].mu);
          boxes[to].q.push_back(live[k]);
        }
        live[k] = live.back();
        live.pop_back();
      }
      if (op % 64 == 0) {
        std::deque<block> mine;
        {
          std::lock_guard<std::mutex> g(boxes[id].mu);
          mine.swap(boxes[id].q);
        }
        for (auto& b : mine) {
          if (!intact(b)) corrupt++;
          free(b.p);
        }
      }
      if (live.size() > 3000) {
        if (!intact(live.back())) corrupt++;
        free(live.back().p);
        live.pop_back();
      }
    }
    for (auto& b : live) {
      if (!intact(b)) corrupt++;
      free(b.p);
    }
    done++;
  };
  std::vector<std::thread> ts;
  for (int i = 0; i < kThreads; i++) ts.emplace_back(worker, i);
  for (auto& t : ts) t.join();
  for (auto& box : boxes)
    for (auto& b : box.q) {
      if (!intact(b)) corrupt++;
      free(b.p);
    }
  BOOST_TEST(done.load() == kThreads);
  BOOST_TEST(corrupt.load() == 0);
}

BOOST_AUTO_TEST_CASE(producer_consumer_pairs) {
  // Two producers allocate, two consumers verify and free: every object is
  // freed by a thread that did not allocate it.
  const int kItems = 200000 * scale();
  std::mutex mu;
  std::deque<block> q;
  std::atomic<int> produced{0}, consumed{0}, corrupt{0};
  auto producer = [&](int id) {
    std::mt19937_64 rng(static_cast<uint64_t>(id));
    for (int i = 0; i < kItems / 2; i++) {
      size_t n = 8 + rng() % 600;
      block b{static_cast<unsigned char*>(malloc(n)), n, static_cast<uint32_t>(i)};
      stamp(b);
      for (;;) {
        std::lock_guard<std::mutex> g(mu);
        if (q.size() < 10000) {
          q.push_back(b);
          break;
        }
      }
      produced++;
    }
  };
  auto consumer = [&] {
    while (consumed.load() < kItems) {
      block b{};
      {
        std::lock_guard<std::mutex> g(mu);
        if (q.empty()) continue;
        b = q.front();
        q.pop_front();
      }
      if (!intact(b)) corrupt++;
      free(b.p);
      consumed++;
    }
  };
  std::thread p1(producer, 1), p2(producer, 2), c1(consumer), c2(consumer);
  p1.join();
  p2.join();
  c1.join();
  c2.join();
  BOOST_TEST(consumed.load() >= kItems);
  BOOST_TEST(corrupt.load() == 0);
}

BOOST_AUTO_TEST_CASE(fork_while_other_threads_allocate) {
  std::atomic<bool> stop{false};
  auto churn = [&](int id) {
    std::mt19937_64 rng(static_cast<uint64_t>(id));
    std::vector<void*> v(512, nullptr);
    while (!stop.load(std::memory_order_relaxed)) {
      size_t k = rng() % v.size();
      free(v[k]);
      v[k] = malloc(random_size(rng));
    }
    for (void* p : v) free(p);
  };
  std::vector<std::thread> ts;
  for (int i = 0; i < 4; i++) ts.emplace_back(churn, i);
  int failures = 0;
  for (int i = 0; i < 40; i++) {
    pid_t pid = fork();
    if (pid == 0) {
      // The child must be able to allocate: no allocator lock may be stuck.
      std::mt19937_64 rng(static_cast<uint64_t>(i));
      std::vector<block> bs;
      for (int k = 0; k < 2000; k++) {
        size_t n = random_size(rng);
        block b{static_cast<unsigned char*>(malloc(n)), n, static_cast<uint32_t>(k)};
        if (!b.p) _exit(2);
        stamp(b);
        bs.push_back(b);
      }
      for (auto& b : bs) {
        if (!intact(b)) _exit(3);
        free(b.p);
      }
      _exit(0);
    }
    BOOST_REQUIRE(pid > 0);
    int st = 0;
    bool exited = false;
    for (int t = 0; t < 2000 && !exited; t++) {  // up to 20 s
      if (waitpid(pid, &st, WNOHANG) == pid)
        exited = true;
      else
        usleep(10000);
    }
    if (!exited) {
      kill(pid, SIGKILL);
      waitpid(pid, &st, 0);
      failures++;
      BOOST_ERROR("fork child " << i << " hung (allocator lock held across fork?)");
    } else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      failures++;
      BOOST_ERROR("fork child " << i << " failed with status " << st);
    }
  }
  stop = true;
  for (auto& t : ts) t.join();
  BOOST_TEST(failures == 0);
}

BOOST_AUTO_TEST_CASE(thousand_short_lived_threads_bounded_rss) {
  // Each thread allocates ~1 MiB in mixed sizes, frees most of it, and hands
  // the rest to the main thread. Thread caches must be flushed at exit and
  // reused: RSS may not grow with the number of threads.
  std::mutex mu;
  std::vector<block> leftovers;
  auto body = [&](int id) {
    std::mt19937_64 rng(static_cast<uint64_t>(id));
    std::vector<block> mine;
    size_t total = 0;
    while (total < (1 << 20)) {
      size_t n = 16 + rng() % 16000;
      block b{static_cast<unsigned char*>(malloc(n)), n, static_cast<uint32_t>(id)};
      stamp(b);
      mine.push_back(b);
      total += n;
    }
    std::lock_guard<std::mutex> g(mu);
    for (size_t i = 0; i < mine.size(); i++) {
      if (i % 10 == 0)
        leftovers.push_back(mine[i]);
      else
        free(mine[i].p);
    }
  };
  auto run_wave = [&](int first, int count) {
    std::vector<std::thread> ts;
    for (int i = 0; i < count; i++) ts.emplace_back(body, first + i);
    for (auto& t : ts) t.join();
    for (auto& b : leftovers) {
      BOOST_REQUIRE(intact(b));
      free(b.p);
    }
    leftovers.clear();
  };
  run_wave(0, 16);  // warm up: the heap grows to the working set of one wave
  size_t rss0 = gort_test::rss_bytes();
  for (int wave = 1; wave < 1000 / 16 + 1; wave++) run_wave(wave * 16, 16);
  size_t rss1 = gort_test::rss_bytes();
  gort_malloc_stats_t st;
  gort_malloc_stats(&st);
  BOOST_TEST_MESSAGE("RSS before " << (rss0 >> 20) << " MiB, after 1000 threads " << (rss1 >> 20)
                                   << " MiB, live caches " << st.thread_caches);
  BOOST_TEST(rss1 < rss0 + (48u << 20));
  BOOST_TEST(st.thread_caches < 16u);  // the exited threads' caches were retired
}

BOOST_AUTO_TEST_SUITE_END()
