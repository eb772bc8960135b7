// A task that recurses until it overflows its stack (mode "task"), and a
// plain null dereference in a task (mode "null"), which must not be reported
// as an overflow. Prints the task's id first.
#include <gort/runtime.h>

#include <cstdio>
#include <cstring>

// Recurses until limit (never reached: the stack ends first).
static int deep(volatile char* prev, long n, long limit) {
  volatile char frame[512];
  frame[0] = static_cast<char>(n);
  if (prev) frame[1] = prev[0];
  if (n == limit) return frame[0];
  return deep(frame, n + 1, limit) + frame[1];
}

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "task";
  return gort::run([mode] {
    gort::WaitGroup wg;
    wg.go([mode] {
      std::printf("task %llu\n", static_cast<unsigned long long>(gort::task_id()));
      std::fflush(stdout);
      if (std::strcmp(mode, "null") == 0) {
        volatile int* p = nullptr;
        *p = 1;
      }
      deep(nullptr, 0, 1L << 40);
    });
    wg.wait();
  });
}
