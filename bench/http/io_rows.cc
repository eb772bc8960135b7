// Issue 11's rows, measured next to the HTTP benchmark (run_http.py):
//   io_rows roundtrip   a task blocked in read() on a pipe, woken by another
//                       task's write(), and back: ns per round trip
//   io_rows fairness    8 pipe ping-pong pairs (blocking I/O) and 8 busy tasks
//                       for 2 s: progress per task (min/max by kind) and the
//                       worst gap between two steps of one task
// Go peer: bench/peers/go/iorows.go (same output lines).
#include <gort/gort.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <vector>

using Clock = std::chrono::steady_clock;

static double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

int main(int argc, char** argv) {
  bool fair = argc > 1 && strcmp(argv[1], "fairness") == 0;
  return gort::run([&] {
    if (!fair) {
      int a[2], b[2];
      if (pipe(a) || pipe(b)) return;
      const long n = 50000;
      gort::go([&] {
        char c;
        for (long i = 0; i < n; i++)
          if (read(a[0], &c, 1) != 1 || write(b[1], &c, 1) != 1) return;
      });
      auto t0 = Clock::now();
      char c = 'x';
      for (long i = 0; i < n; i++)
        if (write(a[1], &c, 1) != 1 || read(b[0], &c, 1) != 1) {
          fprintf(stderr, "roundtrip: pipe failed\n");
          _exit(1);
        }
      printf("roundtrip_ns %.0f\n", ms_since(t0) * 1e6 / n);
      return;
    }
    const int kPairs = 8, kBusy = 8;
    std::atomic<bool> stop{false};
    std::vector<long> io(2 * kPairs), busy(kBusy);
    std::vector<double> gap(2 * kPairs + kBusy);
    gort::WaitGroup wg;
    for (int p = 0; p < kPairs; p++) {
      int a[2], b[2];
      if (pipe(a) || pipe(b)) return;
      for (int side = 0; side < 2; side++) {
        int idx = 2 * p + side;
        int rfd = side ? a[0] : b[0], wfd = side ? b[1] : a[1];
        wg.add(1);
        gort::go([&, idx, rfd, wfd, side] {
          char c = 'p';
          auto last = Clock::now();
          if (side == 0 && write(wfd, &c, 1) != 1) _exit(1);
          while (!stop.load(std::memory_order_relaxed)) {
            if (read(rfd, &c, 1) != 1) break;
            io[static_cast<size_t>(idx)]++;
            gap[static_cast<size_t>(idx)] = std::max(gap[static_cast<size_t>(idx)], ms_since(last));
            last = Clock::now();
            if (write(wfd, &c, 1) != 1) break;
          }
          close(wfd);  // the partner's read sees EOF
          wg.done();
        });
      }
    }
    for (int i = 0; i < kBusy; i++) {
      wg.add(1);
      gort::go([&, i] {
        auto last = Clock::now();
        volatile unsigned x = 0;
        while (!stop.load(std::memory_order_relaxed)) {
          for (int k = 0; k < 20000; k++) x = x + static_cast<unsigned>(k);
          busy[static_cast<size_t>(i)]++;
          gap[static_cast<size_t>(2 * kPairs + i)] =
              std::max(gap[static_cast<size_t>(2 * kPairs + i)], ms_since(last));
          last = Clock::now();
        }
        wg.done();
      });
    }
    gort::sleep_for(std::chrono::seconds(2));
    stop = true;
    wg.wait();
    printf("fairness io_min %ld io_max %ld busy_min %ld busy_max %ld worst_gap_ms %.1f\n",
           *std::min_element(io.begin(), io.end()), *std::max_element(io.begin(), io.end()),
           *std::min_element(busy.begin(), busy.end()), *std::max_element(busy.begin(), busy.end()),
           *std::max_element(gap.begin(), gap.end()));
  });
}
