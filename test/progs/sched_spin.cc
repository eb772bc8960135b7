// Spinning tasks and a sleeper that releases them, on 2 Ps, for
// test/runtime/exit_test.cc (preemption and schedtrace). Modes:
//   spin  the spinners make no runtime call: only preemption by signal
//         lets the sleeper run
//   coop  the spinners poll a channel with select-default, a runtime call:
//         cooperative preemption is enough (asyncpreemptoff=1 must pass)
// Prints "preemptions P async A" and "ok".
#include <gort/runtime.h>
#include <stdio.h>
#include <string.h>

#include <atomic>

int main(int argc, char** argv) {
  bool coop = argc > 1 && strcmp(argv[1], "coop") == 0;
  gort::RunOptions opts;
  opts.maxprocs = 2;
  int rc = gort::run(
      [coop] {
        std::atomic<bool> flag{false};
        gort::Chan<int> never(1);
        gort::WaitGroup wg;
        for (int i = 0; i < 4; i++)
          wg.go([&] {
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
  printf("ok\n");
  return rc;
}
