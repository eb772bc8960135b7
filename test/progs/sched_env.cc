// Prints the Ps a default gort::run gets, for test/runtime/exit_test.cc
// (GORT_MAXPROCS and the CPU count): "maxprocs N default D", then "ok".
#include <gort/runtime.h>
#include <stdio.h>

int main() {
  int rc = gort::run([] {
    printf("maxprocs %d default %d\n", gort::maxprocs(), gort::default_maxprocs());
    gort::WaitGroup wg;
    for (int i = 0; i < 16; i++) wg.go([] { gort::yield(); });
    wg.wait();
  });
  printf("ok\n");
  return rc;
}
