// The heap profile of a statically linked program (libgort.a) that allocates
// both GC objects and malloc memory (test/alloc/heapprof_test.cc): symbols
// come from the executable's own ELF symbol table. Keeps 16 MiB of GC
// objects, drops 16 MiB, keeps 8 MiB of malloc memory, collects twice (the
// second cycle's sweep termination finishes the first one's sweep), then
// writes the profile to argv[1] with gort_heap_profile_write.
#include <gort/gc.h>
#include <gort/malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

constexpr int kObjs = 64 * 1024;
static void* g_keep[kObjs];

// Not inlined and not tail calls: each frame is in its objects' stacks.
extern "C" __attribute__((noinline)) void* gcprof_keep_alloc(size_t n) {
  void* p = gort_gc_alloc_noscan(n);
  asm volatile("" ::: "memory");
  return p;
}
extern "C" __attribute__((noinline)) void* gcprof_garbage_alloc(size_t n) {
  void* p = gort_gc_alloc_noscan(n);
  asm volatile("" ::: "memory");
  return p;
}
static __attribute__((noinline)) void* gcprof_static_malloc(size_t n) {
  void* p = malloc(n);
  memset(p, 1, 8);
  asm volatile("" ::: "memory");
  return p;
}

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  gort_gc_register_thread();
  gort_gc_add_roots(g_keep, sizeof g_keep);
  static void* mallocs[8 * 1024];
  for (int i = 0; i < kObjs; i++) {
    g_keep[i] = gcprof_keep_alloc(256);
    void* volatile g = gcprof_garbage_alloc(256);
    (void)g;
    if (i < 8 * 1024) mallocs[i] = gcprof_static_malloc(1024);
  }
  gort_gc_collect();
  gort_gc_collect();
  if (!gort::heap_profile_write(argv[1])) {
    perror("gort_heap_profile_write");
    return 1;
  }
  printf("ok %p %p\n", g_keep[kObjs - 1], mallocs[0]);
  return 0;
}
