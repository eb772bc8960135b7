// A workload whose self-check fails, for the harness tests: it prints a
// figure and then exits 1, which the harness must report as FAILED.
#include <stdio.h>

int main() {
  printf("result time 1 ms lower\n");
  fprintf(stderr, "failing_workload: block 17 corrupted\n");
  return 1;
}
