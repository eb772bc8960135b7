// Workload: how fast and how far memory goes back to the kernel once a
// program has freed most of it and gone idle (a server after a burst).
//
// 4 worker threads together allocate ~256 MiB, half of it in small blocks
// (log-distributed 16 B..8 KiB) and half in large ones (log-distributed
// 64 KiB..4 MiB), interleaved, touching every page. Then the workers free a
// random 15/16 of all blocks, most of them allocated by another worker, and
// block on a futex: the survivors pin scattered pages and the workers' caches
// hold whatever the allocator keeps per thread. For the next 2 s nothing calls
// the allocator; the main thread samples RSS every 100 ms, reading
// /proc/self/statm with plain system calls (fopen or printf would allocate)
// into a preallocated array. An allocator that returns memory only when it is
// next called keeps its peak for the whole 2 s; one with a background
// scavenger comes down. GORT_BENCH_SCALE scales the 256 MiB, not the 2 s.
//
// Prints (stdout):
//   series rss_mib <ms> <MiB>       for ms = 0, 100, ..., 2000 (0 = right after
//                                   the last free)
//   result peak_rss <MiB> lower     (getrusage ru_maxrss)
//   result rss_after_1s <MiB> lower
//   result rss_after_2s <MiB> lower
// Self-check: every block carries a pattern derived from its id, checked before
// it is freed (the survivors after the idle period); on a mismatch the program
// reports it on stderr and exits 1.
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "workload.h"

namespace {

using namespace workload;

// ---- helpers of this workload ----

const double kPageMiB = static_cast<double>(sysconf(_SC_PAGESIZE)) / 1048576.0;

// Resident set size from /proc/self/statm, without calling the allocator.
double rss_mib() {
  char buf[128];
  int fd = open("/proc/self/statm", O_RDONLY);
  if (fd < 0) return 0;
  ssize_t k = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (k <= 0) return 0;
  buf[k] = '\0';
  char* p = buf;
  strtoull(p, &p, 10);  // size
  unsigned long long resident = strtoull(p, nullptr, 10);
  return static_cast<double>(resident) * kPageMiB;
}

// ---- the workload ----

constexpr int kWorkers = 4;
constexpr double kTotalMiB = 256;  // at scale 1
constexpr int kSamples = 21;       // 0, 100, ..., 2000 ms
constexpr long kSampleNs = 100 * 1000000L;

struct block {
  unsigned char* p;
  size_t n;
  uint64_t id;
};

size_t log_size(xorshift& rng, unsigned lo_bits, unsigned hi_bits) {
  unsigned bits = lo_bits + static_cast<unsigned>(rng.below(hi_bits - lo_bits));
  return (size_t{1} << bits) + rng.below(size_t{1} << bits);
}

}  // namespace

int main() {
  const double scale = bench_scale();
  const size_t per_worker =
      static_cast<size_t>(fmax(1.0, kTotalMiB * scale * 1048576.0 / kWorkers));

  std::vector<std::vector<block>> made(kWorkers);
  std::vector<block> doomed;  // filled by main between the phases
  std::atomic<int> phase{0};  // 0 allocate, 1 free then idle, 2 exit
  std::atomic<int> pending{kWorkers};
  std::atomic<long> bad{0};

  auto done = [&] {
    if (pending.fetch_sub(1) == 1) pending.notify_all();
  };
  auto wait_all = [&] {
    for (int v; (v = pending.load()) != 0;) pending.wait(v);
    pending.store(kWorkers);
  };
  auto set_phase = [&](int p) {
    phase.store(p);
    phase.notify_all();
  };

  std::vector<std::thread> ts;
  for (int w = 0; w < kWorkers; w++)
    ts.emplace_back([&, w] {
      xorshift rng(static_cast<uint64_t>(w) + 1);
      uint64_t id = static_cast<uint64_t>(w) << 48;
      std::vector<block>& mine = made[static_cast<size_t>(w)];
      mine.reserve(per_worker / 1024);
      // Whichever half is behind gets the next block, so small and large
      // blocks interleave in the address space.
      size_t small = 0, large = 0;
      while (small + large < per_worker) {
        bool want_small = small <= large;
        size_t n = want_small ? log_size(rng, 4, 13) : log_size(rng, 16, 22);
        (want_small ? small : large) += n;
        auto* p = xmalloc(n);
        stamp(p, n, id);
        mine.push_back({p, n, id++});
      }
      done();
      phase.wait(0);

      // Frees a contiguous share of `doomed`, which main shuffled.
      long nbad = 0;
      size_t lo = doomed.size() * static_cast<size_t>(w) / kWorkers;
      size_t hi = doomed.size() * static_cast<size_t>(w + 1) / kWorkers;
      for (size_t i = lo; i < hi; i++) {
        if (!check(doomed[i].p, doomed[i].n, doomed[i].id)) nbad++;
        free(doomed[i].p);
      }
      if (nbad != 0) bad += nbad;
      done();
      phase.wait(1);  // idle, holding whatever the allocator caches per thread
    });

  wait_all();
  // Pick the 15/16 to free at random: shuffle all blocks, keep the first 1/16.
  std::vector<block> all;
  for (auto& v : made) all.insert(all.end(), v.begin(), v.end());
  made.clear();
  xorshift rng(99);
  for (size_t i = all.size(); i > 1; i--) std::swap(all[i - 1], all[rng.below(i)]);
  size_t keep = all.size() / 16;
  doomed.assign(all.begin() + static_cast<long>(keep), all.end());
  all.resize(keep);
  set_phase(1);
  wait_all();

  // Idle: from here to the last sample, nothing calls the allocator.
  double samples[kSamples];
  struct timespec start;
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (int k = 0; k < kSamples; k++) {
    struct timespec at = start;
    long ns = at.tv_nsec + k * kSampleNs;
    at.tv_sec += ns / 1000000000L;
    at.tv_nsec = ns % 1000000000L;
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, nullptr) == EINTR) {
    }
    samples[k] = rss_mib();
  }

  set_phase(2);
  for (auto& th : ts) th.join();
  for (block& b : all) {
    if (!check(b.p, b.n, b.id)) bad++;
    free(b.p);
  }
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  if (bad.load() != 0) {
    fprintf(stderr, "memory_return: %ld corrupted blocks\n", bad.load());
    return 1;
  }
  fprintf(stderr, "memory_return: %.0f MiB allocated, %zu of %zu blocks kept\n", kTotalMiB * scale,
          keep, keep + doomed.size());
  for (int k = 0; k < kSamples; k++) printf("series rss_mib %d %.1f\n", k * 100, samples[k]);
  printf("result peak_rss %.1f MiB lower\n", static_cast<double>(ru.ru_maxrss) / 1024.0);
  printf("result rss_after_1s %.1f MiB lower\n", samples[10]);
  printf("result rss_after_2s %.1f MiB lower\n", samples[20]);
  return 0;
}
