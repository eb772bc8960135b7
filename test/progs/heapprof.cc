// The heap profile test program (test/alloc/heapprof_test.cc), run with
// LD_PRELOAD=libgort.so. Two uniquely named allocating functions: one keeps
// what it allocates, one frees it at once; with "api PATH" the program writes
// the profile itself through gort_heap_profile_write (found with dlsym, as a
// preloaded program would), otherwise GORT_DEBUG=heapprofile writes it at exit.
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vector>

// Not inlined and not a tail call, so the frame is in every sampled stack.
extern "C" __attribute__((noinline)) void* heapprof_keep_alloc(size_t n) {
  void* p = malloc(n);
  memset(p, 1, 8);
  asm volatile("" ::: "memory");
  return p;
}
extern "C" __attribute__((noinline)) void* heapprof_churn_alloc(size_t n) {
  void* p = malloc(n);
  memset(p, 2, 8);
  asm volatile("" ::: "memory");
  return p;
}
extern "C" __attribute__((noinline)) void* heapprof_large_alloc(size_t n) {
  void* p = malloc(n);
  memset(p, 3, 8);
  asm volatile("" ::: "memory");
  return p;
}

int main(int argc, char** argv) {
  // 48 MiB kept and 48 MiB freed in 1 KiB objects, 16 MiB kept in 64 KiB ones.
  std::vector<void*> keep;
  keep.reserve(64 * 1024);
  for (int i = 0; i < 48 * 1024; i++) {
    keep.push_back(heapprof_keep_alloc(1024));
    free(heapprof_churn_alloc(1024));
  }
  for (int i = 0; i < 256; i++) keep.push_back(heapprof_large_alloc(64 * 1024));
  if (argc > 1 && strcmp(argv[1], "fork") == 0) {
    // A forked child allocates and exits: it must not hang, nor write over
    // the parent's profile (it writes PATH.PID).
    pid_t pid = fork();
    if (pid == 0) {
      for (int i = 0; i < 1024; i++) free(heapprof_churn_alloc(1024));
      exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) return 3;
  }
  if (argc > 2 && strcmp(argv[1], "api") == 0) {
    auto write =
        reinterpret_cast<int (*)(const char*)>(dlsym(RTLD_DEFAULT, "gort_heap_profile_write"));
    if (!write) return 2;
    if (write(argv[2]) != 0) {
      perror("gort_heap_profile_write");
      return 1;
    }
  }
  printf("ok %zu\n", keep.size());
  return 0;
}
