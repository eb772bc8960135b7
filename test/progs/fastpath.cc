// The fast-path loops whose instructions test/alloc/fastpath_test.cc counts
// with callgrind (toggle-collect on each measure_* function). Each loop runs
// kIters malloc/free pairs that never leave the thread cache after warm-up.
#include <stdlib.h>

#include <new>

constexpr int kIters = 100000;

extern "C" __attribute__((noinline)) void measure_malloc_free_16() {
  for (int i = 0; i < kIters; i++) {
    void* volatile p = malloc(16);
    free(p);
  }
}
extern "C" __attribute__((noinline)) void measure_malloc_free_1024() {
  for (int i = 0; i < kIters; i++) {
    void* volatile p = malloc(1024);
    free(p);
  }
}
// 48 B: a class whose size is not a power of two (it does not divide the
// 2 MiB that a window entry's owner half once added to the span offset, which
// sent every free of such a class to the slow path; 16 B and 1 KiB missed it).
extern "C" __attribute__((noinline)) void measure_malloc_free_48() {
  for (int i = 0; i < kIters; i++) {
    void* volatile p = malloc(48);
    free(p);
  }
}
extern "C" __attribute__((noinline)) void measure_new_delete_64() {
  for (int i = 0; i < kIters; i++) {
    void* volatile p = ::operator new(64);
    ::operator delete(p);
  }
}

int main() {
  for (int i = 0; i < 1000; i++)
    free(malloc(16)), free(malloc(1024)), free(malloc(48)), ::operator delete(::operator new(64));
  measure_malloc_free_16();
  measure_malloc_free_1024();
  measure_malloc_free_48();
  measure_new_delete_64();
  return 0;
}
