// Workload: churn then free. Four threads churn a bounded live set (sizes
// log-distributed 16 B .. 64 KiB plus 1 in 64 between 64 KiB and 1 MiB) until
// the process holds ~256 MiB (times GORT_BENCH_SCALE, at most 4), verify and
// free everything, then the process sits idle for one second without calling
// the allocator. Prints, in the harness's protocol (bench/run.py):
//   result peak_rss <MiB> MiB lower        (getrusage ru_maxrss)
//   result rss_after_1s <MiB> MiB lower    (/proc/self/statm one second after the last free)
//   result time <ms> ms lower              (the churn and free phase)
// Exits 1 if a block's contents were corrupted (self-check), 2 on a bad
// GORT_BENCH_SCALE.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include "workload.h"

static size_t rss_kb() {
  FILE* f = fopen("/proc/self/statm", "r");
  size_t a = 0, b = 0;
  if (f) {
    if (fscanf(f, "%zu %zu", &a, &b) != 2) b = 0;
    fclose(f);
  }
  return b * static_cast<size_t>(sysconf(_SC_PAGESIZE)) / 1024;
}

struct item {
  unsigned char* p;
  size_t n;
};

int main() {
  double scale = workload::bench_scale();
  // The peak is the point of this workload: more scale means more rounds of
  // churn at the same peak, up to 4x.
  const int kOps = static_cast<int>(100000 * (scale < 4 ? scale : 4));
  const int kThreads = 4;
  const size_t kLivePerThread = 64u << 20;
  std::atomic<int> bad{0};
  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; t++)
    ts.emplace_back([&, t] {
      uint64_t x = 0x9e3779b97f4a7c15ULL * static_cast<uint64_t>(t + 1);
      auto next = [&] {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        return x;
      };
      std::vector<item> live;
      size_t bytes = 0;
      for (int op = 0; op < kOps; op++) {
        size_t n;
        if (next() % 64 == 0) {
          n = (64u << 10) + next() % (960u << 10);
        } else {
          unsigned bits = 4 + static_cast<unsigned>(next() % 12);
          n = (size_t{1} << bits) + next() % (size_t{1} << bits);
        }
        if (bytes + n > kLivePerThread && !live.empty()) {
          size_t k = next() % live.size();
          if (live[k].p[0] != static_cast<unsigned char>(live[k].n) ||
              live[k].p[live[k].n - 1] != static_cast<unsigned char>(t))
            bad++;
          free(live[k].p);
          bytes -= live[k].n;
          live[k] = live.back();
          live.pop_back();
        }
        auto* p = static_cast<unsigned char*>(malloc(n));
        memset(p, 0x5a, n);
        p[0] = static_cast<unsigned char>(n);
        p[n - 1] = static_cast<unsigned char>(t);
        live.push_back({p, n});
        bytes += n;
      }
      for (auto& it : live) {
        if (it.p[0] != static_cast<unsigned char>(it.n) ||
            it.p[it.n - 1] != static_cast<unsigned char>(t))
          bad++;
        free(it.p);
      }
    });
  for (auto& th : ts) th.join();
  auto t1 = std::chrono::steady_clock::now();
  struct timespec one = {1, 0};
  nanosleep(&one, nullptr);
  size_t after = rss_kb();
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  if (bad.load()) {
    fprintf(stderr, "rss_after_free: %d corrupted blocks\n", bad.load());
    return 1;
  }
  printf("result peak_rss %.1f MiB lower\n", ru.ru_maxrss / 1024.0);
  printf("result rss_after_1s %.2f MiB lower\n", after / 1024.0);
  printf("result time %lld ms lower\n",
         static_cast<long long>(
             std::chrono::duration_cast<std::chrono::milliseconds>(t1 - t0).count()));
  return 0;
}
