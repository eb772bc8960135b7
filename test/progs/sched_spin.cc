// Spinning tasks and a sleeper that releases them, on 2 Ps, for
// test/runtime/exit_test.cc (preemption and schedtrace). Modes:
//   spin  the spinners make no runtime call: only preemption by signal
//         lets the sleeper run
//   coop  the spinners poll a channel with select-default, a runtime call:
//         cooperative preemption is enough (asyncpreemptoff=1 must pass)
//   regs  the spinners compute with values that live in general and vector
//         registers across the whole loop, while being preempted by
//         signal and resumed on either M: each result must equal the same
//         computation done on a plain thread
// Prints "preemptions P async A" and "ok".
#include <gort/runtime.h>
#include <stdio.h>
#include <string.h>

#include <atomic>
#include <thread>

namespace {

// Loop-carried integers and doubles the compiler keeps in registers; the
// flag is checked every 4096 rounds so the loop is long and call-free.
struct sums {
  uint64_t a, b;
  double x, y;
};
sums compute(uint64_t seed, const std::atomic<bool>& stop, uint64_t min_rounds) {
  uint64_t a = seed, b = seed * 7 + 1;
  double x = 1.0 + static_cast<double>(seed), y = 0.5;
  for (uint64_t i = 0;; i++) {
    a = a * 6364136223846793005ull + 1442695040888963407ull;
    b ^= a >> 17;
    x = x * 0.999999 + static_cast<double>(a & 0xff);
    y = y + x * 1e-9;
    if ((i & 4095) == 0 && i >= min_rounds && stop.load(std::memory_order_relaxed))
      return {a + i, b, x, y};
  }
}

}  // namespace

int main(int argc, char** argv) {
  bool coop = argc > 1 && strcmp(argv[1], "coop") == 0;
  bool regs = argc > 1 && strcmp(argv[1], "regs") == 0;
  gort::RunOptions opts;
  opts.maxprocs = 2;
  std::atomic<bool> bad{false};
  int rc = gort::run(
      [coop, regs, &bad] {
        std::atomic<bool> flag{false};
        gort::Chan<int> never(1);
        gort::WaitGroup wg;
        for (int i = 0; i < 4; i++)
          wg.go([&, i] {
            if (regs) {
              // Fixed work, then the same on a plain thread: equal results.
              constexpr uint64_t kRounds = 20u << 20;
              std::atomic<bool> now{true};
              sums got = compute(static_cast<uint64_t>(i), now, kRounds);
              sums want{};
              std::thread([&] { want = compute(static_cast<uint64_t>(i), now, kRounds); }).join();
              if (memcmp(&got, &want, sizeof got) != 0) bad = true;
              return;
            }
            while (!flag.load(std::memory_order_acquire))
              if (coop) gort::select(gort::on_recv(never, [] {}), gort::on_default([] {}));
          });
        wg.go([&] {
          gort::sleep_for(std::chrono::milliseconds(50));
          flag.store(true, std::memory_order_release);
        });
        wg.wait();
      },
      opts);
  gort::SchedStats s = gort::sched_stats();
  printf("preemptions %llu async %llu\n", static_cast<unsigned long long>(s.preemptions),
         static_cast<unsigned long long>(s.async_preemptions));
  if (bad) {
    printf("FAIL: a preempted task's registers changed\n");
    return 1;
  }
  printf("ok\n");
  return rc;
}
