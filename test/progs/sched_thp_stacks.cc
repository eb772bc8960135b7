// Parks 2,000 tasks on a channel and prints the resident memory each costs:
// "bytes_per_task N", then "ok". test/runtime/exit_test.cc runs it with
// GORT_THP=on, under which the heap (and so the task stacks, which are heap
// spans) would get huge pages unless the stacks refuse them (stack.cc).
#include <gort/runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long rss_bytes() {
  FILE* f = fopen("/proc/self/status", "r");
  if (!f) return 0;
  char line[256];
  long kb = 0;
  while (fgets(line, sizeof line, f))
    if (!strncmp(line, "VmRSS:", 6)) kb = atol(line + 6);
  fclose(f);
  return kb * 1024;
}

int main() {
  int rc = gort::run([] {
    const int kTasks = 2000;
    gort::Chan<int> start;
    gort::WaitGroup ready, done;
    long before = rss_bytes();
    ready.add(kTasks);
    done.add(kTasks);
    for (int i = 0; i < kTasks; i++)
      gort::go([&] {
        ready.done();
        start.recv();
        done.done();
      });
    ready.wait();
    long after = rss_bytes();
    start.close();
    done.wait();
    printf("bytes_per_task %ld\n", (after - before) / kTasks);
  });
  printf("ok\n");
  return rc;
}
