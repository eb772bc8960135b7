// Workload: the allocation shapes of issue 14, each a small program with
// parameters on the command line, so that one binary covers several parameter
// sets of each shape (bench/shapes.py runs them against the peers):
//
//   shapes scratch THREADS ROUNDS SIZE WRITES
//     mimalloc-bench's cache-scratch (Hoard): the main thread allocates one
//     SIZE-byte object per thread back to back and hands them out; each thread
//     frees its object, then ROUNDS times allocates an object of SIZE bytes,
//     writes it WRITES times and frees it. An allocator that gives a thread
//     back the object it was handed (or any slot on a line another thread
//     writes) makes the threads' writes fight over cache lines.
//   shapes thrash THREADS ROUNDS SIZE WRITES
//     cache-thrash: the same without the hand-over; only how an allocator
//     packs different threads' objects matters.
//   shapes xfer PRODUCERS CONSUMERS TOTAL MINSIZE MAXSIZE
//     xmalloc-test's shape: producers allocate blocks of MINSIZE..MAXSIZE bytes
//     (log-distributed), stamp them and pass them in batches of 64 through a
//     queue per consumer; consumers check and free them. TOTAL blocks in all.
//     1:1, N:1 and 1:N are PRODUCERS:CONSUMERS.
//   shapes realloc THREADS ROUNDS MAXSIZE
//     each thread ROUNDS times grows a buffer from 16 bytes to MAXSIZE by
//     steps of a quarter of its size (realloc), writing the new tail, then
//     frees it.
//   shapes threads WAVES PERWAVE OBJS SIZE
//     many short-lived threads: WAVES waves of PERWAVE threads, each allocating
//     OBJS blocks of up to SIZE bytes, freeing half of them itself and handing
//     the other half to the next wave.
//   shapes hugepages LIVE_MIB ROUNDS
//     transparent huge pages over a live heap: allocates LIVE_MIB MiB in
//     blocks of 16 B to 64 KiB (log-distributed), touching every page, and
//     reports how much of the process's anonymous memory huge pages back
//     (AnonHugePages over Anonymous in /proc/self/smaps_rollup); then ROUNDS
//     times frees a quarter of the blocks at random and allocates as much
//     again, idles 1.5 s (scavengers run), and reports the coverage and RSS.
//     Run under the kernel's THP settings always and madvise (bench/thp.py).
//
// Prints (stdout): result time <ms> lower (hugepages also: work, the time
// without the idle 1.5 s); scratch and thrash also print
// shared_lines, the percentage of rounds whose new object shared a cache line
// with another thread's object in use at that moment. Self-checks: every object's
// contents are verified before it is freed; a mismatch exits 1.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "workload.h"

namespace {

using namespace workload;
using clk = std::chrono::steady_clock;

std::atomic<long> g_bad{0};

long arg(char** argv, int argc, int i) {
  if (i >= argc) {
    fprintf(stderr, "shapes: missing argument %d\n", i);
    exit(2);
  }
  char* end;
  long v = strtol(argv[i], &end, 10);
  if (*end != '\0' || v <= 0) {
    fprintf(stderr, "shapes: bad argument %s\n", argv[i]);
    exit(2);
  }
  return v;
}

// Writes every byte of p[0..n) `passes` times through a volatile pointer.
void hammer(unsigned char* p, size_t n, long passes) {
  volatile unsigned char* v = p;
  for (long r = 0; r < passes; r++)
    for (size_t i = 0; i < n; i++) v[i] = static_cast<unsigned char>(v[i] + 1);
}

template <class F>
void run_threads(int n, F fn) {
  std::atomic<bool> go{false};
  std::vector<std::thread> ts;
  for (int w = 0; w < n; w++)
    ts.emplace_back([&, w] {
      go.wait(false);
      fn(w);
    });
  go.store(true);
  go.notify_all();
  for (auto& t : ts) t.join();
}

// Rounds in which a thread's new object shared a 64-byte line with another
// thread's current object: the false sharing an allocator causes, counted
// rather than timed (a machine whose cores share a cache, or that runs the
// threads one at a time, hides it from the clock).
std::atomic<long> g_shared{0};

bool lines_meet(uintptr_t a, size_t an, uintptr_t b, size_t bn) {
  return a >> 6 <= (b + bn - 1) >> 6 && b >> 6 <= (a + an - 1) >> 6;
}

void scratch(int threads, long rounds, size_t size, long writes, bool handed) {
  std::vector<unsigned char*> objs;
  std::vector<std::atomic<uintptr_t>> current(static_cast<size_t>(threads));
  if (handed)
    for (int w = 0; w < threads; w++) {
      objs.push_back(xmalloc(size));
      memset(objs.back(), w, size);
    }
  run_threads(threads, [&](int w) {
    if (handed) {
      for (size_t i = 0; i < size; i++)
        if (objs[static_cast<size_t>(w)][i] != static_cast<unsigned char>(w)) g_bad++;
      free(objs[static_cast<size_t>(w)]);
    }
    for (long r = 0; r < rounds; r++) {
      unsigned char* p = xmalloc(size);
      current[static_cast<size_t>(w)].store(reinterpret_cast<uintptr_t>(p));
      for (int o = 0; o < threads; o++) {
        uintptr_t q = current[static_cast<size_t>(o)].load();
        if (o != w && q && lines_meet(reinterpret_cast<uintptr_t>(p), size, q, size)) {
          g_shared++;
          break;
        }
      }
      memset(p, 0, size);
      hammer(p, size, writes);
      for (size_t i = 0; i < size; i++)
        if (p[i] != static_cast<unsigned char>(writes)) g_bad++;
      current[static_cast<size_t>(w)].store(0);
      free(p);
    }
  });
  printf("result shared_lines %.2f %% lower\n",
         100.0 * static_cast<double>(g_shared.load()) / static_cast<double>(rounds * threads));
}

// A queue of batches of blocks from producers to one consumer.
struct queue {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::vector<std::pair<unsigned char*, uint64_t>>> q;
  int producers_left = 0;
};

void xfer(int producers, int consumers, long total, size_t minsize, size_t maxsize) {
  std::vector<queue> qs(static_cast<size_t>(consumers));
  for (auto& q : qs) q.producers_left = producers;
  const long per = total / producers;
  double lmin = log(static_cast<double>(minsize)), lmax = log(static_cast<double>(maxsize));
  run_threads(producers + consumers, [&](int w) {
    if (w < producers) {
      xorshift rng(static_cast<uint64_t>(w) + 7);
      std::vector<std::pair<unsigned char*, uint64_t>> batch;
      uint64_t id = static_cast<uint64_t>(w) << 30;
      for (long i = 0; i < per; i++) {
        double u = static_cast<double>(rng.below(1 << 20)) / (1 << 20);
        size_t n = static_cast<size_t>(exp(lmin + u * (lmax - lmin)));
        unsigned char* p = xmalloc(n);
        stamp(p, n, id);
        batch.emplace_back(p, id++ << 24 | n);
        if (batch.size() == 64 || i == per - 1) {
          queue& q = qs[static_cast<size_t>((i / 64 + w) % consumers)];
          std::lock_guard g(q.mu);
          q.q.push_back(std::move(batch));
          batch.clear();
          q.cv.notify_one();
        }
      }
      for (auto& q : qs) {
        std::lock_guard g(q.mu);
        q.producers_left--;
        q.cv.notify_all();
      }
    } else {
      queue& q = qs[static_cast<size_t>(w - producers)];
      for (;;) {
        std::vector<std::pair<unsigned char*, uint64_t>> batch;
        {
          std::unique_lock g(q.mu);
          q.cv.wait(g, [&] { return !q.q.empty() || q.producers_left == 0; });
          if (q.q.empty()) return;
          batch = std::move(q.q.front());
          q.q.pop_front();
        }
        for (auto& [p, tag] : batch) {
          size_t n = tag & 0xffffff;
          if (!check(p, n, tag >> 24)) g_bad++;
          free(p);
        }
      }
    }
  });
}

void grow(int threads, long rounds, size_t maxsize) {
  run_threads(threads, [&](int) {
    for (long r = 0; r < rounds; r++) {
      size_t n = 16;
      auto* p = static_cast<unsigned char*>(malloc(n));
      if (!p) exit(1);
      memset(p, 1, n);
      while (n < maxsize) {
        size_t m = n + n / 4 + 1;
        if (m > maxsize) m = maxsize;
        p = static_cast<unsigned char*>(realloc(p, m));
        if (!p) exit(1);
        if (p[0] != 1 || p[n - 1] != 1) g_bad++;
        memset(p + n, 1, m - n);
        n = m;
      }
      free(p);
    }
  });
}

void short_threads(int waves, int perwave, long objs, size_t size) {
  std::vector<std::pair<unsigned char*, uint64_t>> carry;
  std::mutex mu;
  for (int wv = 0; wv < waves; wv++) {
    std::vector<std::pair<unsigned char*, uint64_t>> in;
    in.swap(carry);
    run_threads(perwave, [&](int w) {
      xorshift rng(static_cast<uint64_t>(wv * perwave + w) + 1);
      std::vector<std::pair<unsigned char*, uint64_t>> mine, pass;
      // Free our share of the previous wave's blocks.
      for (size_t i = static_cast<size_t>(w); i < in.size(); i += static_cast<size_t>(perwave)) {
        auto [p, tag] = in[i];
        if (!check(p, tag & 0xffffff, tag >> 24)) g_bad++;
        free(p);
      }
      for (long i = 0; i < objs; i++) {
        size_t n = 8 + rng.below(size);
        uint64_t id = (static_cast<uint64_t>(wv * perwave + w) << 20) + static_cast<uint64_t>(i);
        unsigned char* p = xmalloc(n);
        stamp(p, n, id);
        (i % 2 ? pass : mine).emplace_back(p, id << 24 | n);
      }
      for (auto [p, tag] : mine) {
        if (!check(p, tag & 0xffffff, tag >> 24)) g_bad++;
        free(p);
      }
      std::lock_guard g(mu);
      carry.insert(carry.end(), pass.begin(), pass.end());
    });
  }
  for (auto [p, tag] : carry) {
    if (!check(p, tag & 0xffffff, tag >> 24)) g_bad++;
    free(p);
  }
}

// Anonymous and AnonHugePages of the whole process, in KiB.
void smaps_rollup(long* anon, long* huge) {
  *anon = *huge = 0;
  FILE* f = fopen("/proc/self/smaps_rollup", "r");
  if (!f) return;
  char line[256];
  while (fgets(line, sizeof line, f)) {
    sscanf(line, "Anonymous: %ld kB", anon);
    sscanf(line, "AnonHugePages: %ld kB", huge);
  }
  fclose(f);
}

double coverage() {
  long anon, huge;
  smaps_rollup(&anon, &huge);
  return anon > 0 ? 100.0 * static_cast<double>(huge) / static_cast<double>(anon) : 0;
}

void hugepages(long live_mib, long rounds) {
  struct blk {
    unsigned char* p;
    size_t n;
    uint64_t id;
  };
  std::vector<blk> v;
  xorshift rng(7);
  uint64_t next_id = 1;
  auto make = [&](std::vector<blk>& out) {
    // 16 B .. 64 KiB, log-distributed: most blocks small, most bytes large.
    size_t n = static_cast<size_t>(16.0 * pow(4096.0, static_cast<double>(rng.below(1000)) / 1000));
    unsigned char* p = xmalloc(n);
    memset(p, 0, n);  // every page touched: a live heap, not a reservation
    stamp(p, n, next_id);
    out.push_back(blk{p, n, next_id++});
    return n;
  };
  auto t0 = clk::now();
  const size_t target = static_cast<size_t>(live_mib) << 20;
  size_t live = 0;
  while (live < target) live += make(v);
  printf("result coverage_live %.1f %% higher\n", coverage());
  for (long r = 0; r < rounds; r++) {
    size_t freed = 0;
    for (size_t i = 0; i < v.size(); i++) {
      if (rng.below(4) != 0) continue;
      if (!check(v[i].p, v[i].n, v[i].id)) g_bad++;
      freed += v[i].n;
      free(v[i].p);
      v[i].p = nullptr;
    }
    std::vector<blk> keep;
    keep.reserve(v.size());
    for (auto& b : v)
      if (b.p) keep.push_back(b);
    v.swap(keep);
    size_t made = 0;
    while (made < freed) made += make(v);
  }
  printf("result work %.1f ms lower\n",
         std::chrono::duration<double, std::milli>(clk::now() - t0).count());
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  long anon, huge;
  smaps_rollup(&anon, &huge);
  printf("result coverage_after_churn %.1f %% higher\n",
         anon > 0 ? 100.0 * static_cast<double>(huge) / static_cast<double>(anon) : 0);
  printf("result anon_after_churn %.1f MiB lower\n", static_cast<double>(anon) / 1024);
  for (auto& b : v) {
    if (!check(b.p, b.n, b.id)) g_bad++;
    free(b.p);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: shapes scratch|thrash|xfer|realloc|threads|hugepages ARGS...\n");
    return 2;
  }
  const char* shape = argv[1];
  auto t0 = clk::now();
  if (!strcmp(shape, "scratch") || !strcmp(shape, "thrash")) {
    scratch(static_cast<int>(arg(argv, argc, 2)), arg(argv, argc, 3),
            static_cast<size_t>(arg(argv, argc, 4)), arg(argv, argc, 5), !strcmp(shape, "scratch"));
  } else if (!strcmp(shape, "xfer")) {
    xfer(static_cast<int>(arg(argv, argc, 2)), static_cast<int>(arg(argv, argc, 3)),
         arg(argv, argc, 4), static_cast<size_t>(arg(argv, argc, 5)),
         static_cast<size_t>(arg(argv, argc, 6)));
  } else if (!strcmp(shape, "realloc")) {
    grow(static_cast<int>(arg(argv, argc, 2)), arg(argv, argc, 3),
         static_cast<size_t>(arg(argv, argc, 4)));
  } else if (!strcmp(shape, "hugepages")) {
    hugepages(arg(argv, argc, 2), arg(argv, argc, 3));
  } else if (!strcmp(shape, "threads")) {
    short_threads(static_cast<int>(arg(argv, argc, 2)), static_cast<int>(arg(argv, argc, 3)),
                  arg(argv, argc, 4), static_cast<size_t>(arg(argv, argc, 5)));
  } else {
    fprintf(stderr, "shapes: unknown shape %s\n", shape);
    return 2;
  }
  double ms = std::chrono::duration<double, std::milli>(clk::now() - t0).count();
  if (g_bad.load() != 0) {
    fprintf(stderr, "shapes: %ld corrupted objects\n", g_bad.load());
    return 1;
  }
  printf("result time %.1f ms lower\n", ms);
  return 0;
}
