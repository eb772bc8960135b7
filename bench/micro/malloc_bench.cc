// Allocator micro benchmarks (Google Benchmark). Built against plain malloc;
// bench/run.py runs the same binary under LD_PRELOAD for each allocator, so
// every allocator executes identical code.
//
//  pair/N        malloc(N) + free on one thread (the fast path)
//  batch/N       100 mallocs of N bytes then 100 frees (lists, not one slot)
//  realloc_grow  grow a buffer by doubling and by +1 byte
//  cross_thread  one thread allocates 64 B objects, another frees them
//  churn         8 threads, random sizes log-distributed from 8 B to 64 KiB (so about
//                1 in 13 requests is over 32 KiB, a large block), bounded live set
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

static void pair(benchmark::State& st) {
  size_t n = static_cast<size_t>(st.range(0));
  for (auto _ : st) {
    void* p = malloc(n);
    benchmark::DoNotOptimize(p);
    free(p);
  }
}
BENCHMARK(pair)->Arg(16)->Arg(64)->Arg(256)->Arg(1024)->Arg(8192)->Arg(65536);

static void batch(benchmark::State& st) {
  size_t n = static_cast<size_t>(st.range(0));
  void* ps[100];
  for (auto _ : st) {
    for (auto& p : ps) {
      p = malloc(n);
      benchmark::DoNotOptimize(p);
    }
    for (auto& p : ps) free(p);
  }
  st.SetItemsProcessed(st.iterations() * 100);
}
BENCHMARK(batch)->Arg(16)->Arg(64)->Arg(256)->Arg(1024)->Arg(8192);

static void realloc_grow(benchmark::State& st) {
  for (auto _ : st) {
    char* p = nullptr;
    for (size_t n = 16; n <= (1 << 20); n *= 2) {
      p = static_cast<char*>(realloc(p, n));
      p[n - 1] = 1;
    }
    for (size_t n = 1; n <= 4096; n++) {
      p = static_cast<char*>(realloc(p, (1 << 20) + n));
      p[n] = 2;
    }
    free(p);
  }
}
BENCHMARK(realloc_grow);

// A single-producer single-consumer ring of pointers: the producer mallocs,
// the consumer frees. Items per second is the figure.
static void cross_thread(benchmark::State& st) {
  constexpr size_t kRing = 4096;
  std::vector<std::atomic<void*>> ring(kRing);
  std::atomic<bool> stop{false};
  std::thread consumer([&] {
    size_t i = 0;
    for (;;) {
      void* p = ring[i % kRing].exchange(nullptr, std::memory_order_acquire);
      if (p) {
        free(p);
        i++;
      } else if (stop.load(std::memory_order_acquire)) {
        break;
      }
    }
  });
  size_t i = 0;
  for (auto _ : st) {
    void* p = malloc(64);
    while (ring[i % kRing].load(std::memory_order_relaxed) != nullptr) std::this_thread::yield();
    ring[i % kRing].store(p, std::memory_order_release);
    i++;
  }
  stop = true;
  consumer.join();
  st.SetItemsProcessed(st.iterations());
}
BENCHMARK(cross_thread)->UseRealTime();

static size_t log_size(uint64_t& x) {
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  unsigned bits = 3 + static_cast<unsigned>(x % 13);  // 8 B .. 32 KiB
  return (size_t{1} << bits) + (x >> 20) % (size_t{1} << bits);
}

static void churn(benchmark::State& st) {
  constexpr size_t kLive = 2000;
  std::vector<void*> live(kLive, nullptr);
  uint64_t x = 0x9e3779b97f4a7c15ULL ^ static_cast<uint64_t>(st.thread_index() + 1);
  for (auto _ : st) {
    size_t slot = x % kLive;
    free(live[slot]);
    size_t n = log_size(x);
    live[slot] = malloc(n);
    static_cast<char*>(live[slot])[0] = 1;
  }
  for (void* p : live) free(p);
  st.SetItemsProcessed(st.iterations());
}
BENCHMARK(churn)->Threads(1)->Threads(8)->UseRealTime();

BENCHMARK_MAIN();
