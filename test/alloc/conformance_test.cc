// Every allocation entry point's contract: alignment, usable size, contents
// across realloc, calloc zeroing reused memory, errno and every failure path,
// operator new/delete in all forms with bad_alloc and new_handler.
// Impossible sizes and stale pointers are what these tests pass on purpose.
#pragma GCC diagnostic ignored "-Walloc-size-larger-than="
#pragma GCC diagnostic ignored "-Wuse-after-free"
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <new>
#include <random>
#include <vector>

#include "gort/malloc.h"

namespace {

bool aligned(const void* p, size_t a) {
  return reinterpret_cast<uintptr_t>(p) % a == 0;
}

void fill(void* p, size_t n, unsigned seed) {
  auto* b = static_cast<unsigned char*>(p);
  for (size_t i = 0; i < n; i++) b[i] = static_cast<unsigned char>(seed + i * 7);
}
bool check(const void* p, size_t n, unsigned seed) {
  auto* b = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; i++)
    if (b[i] != static_cast<unsigned char>(seed + i * 7)) return false;
  return true;
}

// Sizes that cross every class boundary and go well into large objects.
std::vector<size_t> interesting_sizes() {
  std::vector<size_t> v = {0, 1, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33};
  for (size_t s = 48; s <= 4 << 20; s = s * 5 / 4 + 8) {
    v.push_back(s - 1);
    v.push_back(s);
    v.push_back(s + 1);
  }
  for (size_t s : {size_t{32768}, size_t{32769}, size_t{65536}, size_t{262144}, size_t{262145},
                   size_t{1} << 20, (size_t{1} << 24) + 3})
    v.push_back(s);
  return v;
}

struct new_handler_state {
  static inline int calls = 0;
};

}  // namespace

BOOST_AUTO_TEST_SUITE(conformance)

BOOST_AUTO_TEST_CASE(malloc_alignment_and_usable_size) {
  for (size_t n : interesting_sizes()) {
    void* p = malloc(n);
    BOOST_REQUIRE_MESSAGE(p, "malloc(" << n << ")");
    BOOST_REQUIRE_MESSAGE(aligned(p, n <= 8 ? 8 : 16), "malloc(" << n << ") = " << p);
    size_t u = malloc_usable_size(p);
    BOOST_REQUIRE(u >= n);
    BOOST_REQUIRE(u == gort_malloc_usable_size(p));
    fill(p, u, static_cast<unsigned>(n));  // the whole usable size is ours
    BOOST_REQUIRE(check(p, u, static_cast<unsigned>(n)));
    free(p);
  }
}

BOOST_AUTO_TEST_CASE(malloc_zero_is_unique) {
  void* a = malloc(0);
  void* b = malloc(0);
  BOOST_TEST(a != nullptr);
  BOOST_TEST(b != nullptr);
  BOOST_TEST(a != b);
  free(a);
  free(b);
  free(nullptr);  // no-op
  BOOST_TEST(malloc_usable_size(nullptr) == 0u);
}

BOOST_AUTO_TEST_CASE(every_power_of_two_alignment_up_to_1mib) {
  std::vector<size_t> sizes = {1, 8, 16, 100, 4096, 8191, 8192, 32768, 40000, 300000};
  for (size_t a = 1; a <= (1 << 20); a *= 2) {
    for (size_t n : sizes) {
      void* p = nullptr;
      if (a >= sizeof(void*)) {
        BOOST_REQUIRE(posix_memalign(&p, a, n) == 0);
        BOOST_REQUIRE_MESSAGE(aligned(p, a), "posix_memalign(" << a << ", " << n << ")");
        BOOST_REQUIRE(malloc_usable_size(p) >= n);
        memset(p, 1, n);
        free(p);
      }
      p = aligned_alloc(a, n);
      BOOST_REQUIRE(p);
      BOOST_REQUIRE_MESSAGE(aligned(p, a), "aligned_alloc(" << a << ", " << n << ")");
      memset(p, 2, n);
      free(p);
      p = memalign(a, n);
      BOOST_REQUIRE(p && aligned(p, a));
      free(p);
      p = ::operator new(n, std::align_val_t(a));
      BOOST_REQUIRE(aligned(p, a));
      ::operator delete(p, n, std::align_val_t(a));
    }
  }
}

BOOST_AUTO_TEST_CASE(every_class_at_every_alignment) {
  // Both ends of every size class, and a few large sizes, at every power of
  // two alignment up to 1 MiB.
  std::vector<size_t> sizes = {0, 1};
  gort_malloc_stats_t st;
  gort_malloc_stats(&st);
  for (int c = 1; c < GORT_NUM_SIZE_CLASSES; c++) {
    sizes.push_back(st.classes[c].size);
    sizes.push_back(st.classes[c].size + 1);
  }
  for (size_t n : {size_t{40000}, size_t{262144}, size_t{1} << 20, (size_t{3} << 20) + 5})
    sizes.push_back(n);
  for (size_t a = 8; a <= (1 << 20); a *= 2) {
    for (size_t n : sizes) {
      void* p = aligned_alloc(a, n);
      BOOST_REQUIRE_MESSAGE(p && aligned(p, a), "aligned_alloc(" << a << ", " << n << ")");
      BOOST_REQUIRE(malloc_usable_size(p) >= n);
      if (n) static_cast<char*>(p)[n - 1] = 1;
      free(p);
    }
  }
}

BOOST_AUTO_TEST_CASE(valloc_and_pvalloc) {
  size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  void* p = valloc(10);
  BOOST_TEST(aligned(p, page));
  free(p);
  p = pvalloc(10);
  BOOST_TEST(aligned(p, page));
  BOOST_TEST(malloc_usable_size(p) >= page);
  free(p);
  p = pvalloc(0);
  BOOST_TEST(p != nullptr);
  BOOST_TEST(malloc_usable_size(p) >= page);
  free(p);
  errno = 0;
  BOOST_TEST(pvalloc(SIZE_MAX - 10) == nullptr);
  BOOST_TEST(errno == ENOMEM);
}

BOOST_AUTO_TEST_CASE(bad_alignments) {
  void* p = reinterpret_cast<void*>(0x1234);
  BOOST_TEST(posix_memalign(&p, 0, 8) == EINVAL);
  BOOST_TEST(posix_memalign(&p, 4, 8) == EINVAL);    // smaller than a pointer
  BOOST_TEST(posix_memalign(&p, 24, 8) == EINVAL);   // not a power of two
  BOOST_TEST(p == reinterpret_cast<void*>(0x1234));  // untouched on failure
  errno = 0;
  BOOST_TEST(aligned_alloc(24, 48) == nullptr);
  BOOST_TEST(errno == EINVAL);
  errno = 0;
  BOOST_TEST(aligned_alloc(0, 48) == nullptr);
  BOOST_TEST(errno == EINVAL);
  // memalign rounds a non-power-of-two alignment up, as glibc does.
  p = memalign(24, 100);
  BOOST_TEST(aligned(p, 32));
  free(p);
  errno = 0;
  BOOST_TEST(memalign(SIZE_MAX, 10) == nullptr);
  BOOST_TEST(errno == EINVAL);
}

BOOST_AUTO_TEST_CASE(impossible_sizes_fail_with_enomem) {
  for (size_t n : {SIZE_MAX, SIZE_MAX / 2, size_t{1} << 48, (size_t{1} << 47) + 1}) {
    errno = 0;
    BOOST_TEST(malloc(n) == nullptr);
    BOOST_TEST(errno == ENOMEM);
    errno = 0;
    BOOST_TEST(calloc(1, n) == nullptr);
    BOOST_TEST(errno == ENOMEM);
    void* p = reinterpret_cast<void*>(0x1234);
    int saved = errno = 77;
    BOOST_TEST(posix_memalign(&p, 64, n) == ENOMEM);
    BOOST_TEST(errno == saved);  // posix_memalign reports, it does not set errno
    BOOST_TEST(p == reinterpret_cast<void*>(0x1234));
    errno = 0;
    BOOST_TEST(aligned_alloc(4096, n) == nullptr);
    BOOST_TEST(errno == ENOMEM);
  }
  // The heap is still fine afterwards.
  void* p = malloc(100);
  BOOST_TEST(p != nullptr);
  free(p);
}

BOOST_AUTO_TEST_CASE(calloc_overflow_and_zeroing) {
  errno = 0;
  BOOST_TEST(calloc(SIZE_MAX / 2, 3) == nullptr);
  BOOST_TEST(errno == ENOMEM);
  errno = 0;
  BOOST_TEST(calloc(size_t{1} << 33, size_t{1} << 33) == nullptr);
  BOOST_TEST(errno == ENOMEM);
  // calloc must zero memory that was used and freed before.
  for (size_t n : interesting_sizes()) {
    if (n > (1 << 20)) continue;
    std::vector<void*> dirty;
    for (int i = 0; i < 4; i++) {
      void* d = malloc(n);
      memset(d, 0xff, n);
      dirty.push_back(d);
    }
    for (void* d : dirty) free(d);
    for (int i = 0; i < 4; i++) {
      auto* c = static_cast<unsigned char*>(calloc(1, n));
      BOOST_REQUIRE(c);
      for (size_t k = 0; k < n; k++)
        BOOST_REQUIRE_MESSAGE(c[k] == 0, "calloc(" << n << ")[" << k << "]");
      dirty[i] = c;
    }
    for (void* d : dirty) free(d);
  }
  void* z = calloc(0, 10);
  BOOST_TEST(z != nullptr);
  free(z);
}

BOOST_AUTO_TEST_CASE(realloc_keeps_contents_across_classes) {
  std::vector<size_t> path = {1,     8,      17,      100,           1000,    5000,  32768,
                              32769, 100000, 1 << 20, (1 << 20) + 1, 3 << 20, 70000, 20000,
                              300,   16,     3};
  void* p = nullptr;
  size_t have = 0;
  for (size_t n : path) {
    void* q = realloc(p, n);
    BOOST_REQUIRE(q);
    size_t keep = have < n ? have : n;
    BOOST_REQUIRE_MESSAGE(check(q, keep, 11), "realloc to " << n << " lost contents");
    fill(q, n, 11);
    p = q;
    have = n;
  }
  // Growing by one byte many times (large objects grow in place when they can).
  for (size_t n = 40000; n < 200000; n += 997) {
    void* q = realloc(p, n);
    BOOST_REQUIRE(q);
    BOOST_REQUIRE(check(q, have < n ? have : n, 11));
    fill(q, n, 11);
    p = q;
    have = n;
  }
  free(p);
}

// malloc(from), filled, then realloc(to): the block keeps its contents and
// has at least `room` usable bytes. Returns it, filled up to `to`.
void* grow_checked(size_t from, size_t to, size_t room, unsigned seed) {
  void* p = malloc(from);
  BOOST_REQUIRE(p);
  fill(p, from, seed);
  void* q = realloc(p, to);
  BOOST_REQUIRE(q);
  BOOST_TEST(malloc_usable_size(q) >= room);
  BOOST_TEST(check(q, from, seed));
  fill(q, to, seed);
  return q;
}

// A block that realloc grows by less than half its size and has to move gets
// room to grow into (half its new size), so a buffer grown in small steps
// copies itself about every other step, whatever its neighbours are; a block
// grown by half or more (a vector doubling) gets the size asked for.
BOOST_AUTO_TEST_CASE(realloc_incremental_growth_gets_room) {
  // Small to large: 30000 (the 32 KiB class) -> 40000 always moves, and is a
  // growth by less than half: the new block has room.
  void* q = grow_checked(30000, 40000, 60000, 7);
  void* r = realloc(q, 59000);  // inside the room: no move, whatever follows q
  BOOST_REQUIRE(r);
  BOOST_TEST(r == q);
  BOOST_TEST(check(r, 40000, 7));
  fill(r, 59000, 7);
  // The room is part of the block; shrinking by more than a third gives it
  // back, by less keeps it.
  size_t big = malloc_usable_size(r);
  void* s = realloc(r, big - big / 4);
  BOOST_REQUIRE(s);
  BOOST_TEST(s == r);
  BOOST_TEST(malloc_usable_size(s) == big);
  void* t = realloc(s, 40000);  // 8 pages to 5: still large, the tail goes
  BOOST_REQUIRE(t);
  BOOST_TEST(t == s);
  BOOST_TEST(malloc_usable_size(t) < big * 2 / 3);
  BOOST_TEST(check(t, 40000, 7));
  free(t);

  // Small: 1000 -> 1200 moves to a class with room, then grows in it; the
  // shrink-to-fit a string builder ends with (to more than half) keeps it.
  void* b2 = grow_checked(1000, 1200, 1800, 3);
  void* b3 = realloc(b2, 1700);
  BOOST_TEST(b3 == b2);
  void* b4 = realloc(b3, 1100);
  BOOST_TEST(b4 == b3);
  BOOST_TEST(check(b4, 1100, 3));
  free(b4);

  // Doubling gets no room: 1000 -> 2000 lands in 2000's class.
  void* c = malloc(1000);
  BOOST_REQUIRE(c);
  void* c2 = realloc(c, 2000);
  BOOST_REQUIRE(c2);
  BOOST_TEST(malloc_usable_size(c2) < 2500u);
  free(c2);
}

// A large block that grows by steps and has to move lands where free pages
// follow it, so its next steps grow in place. Here a hole that fits the moved
// block exactly, followed by a live block, is the best fit (and the thread
// keeps its span for a block of that size): the block used to move there and
// move again at its next step.
BOOST_AUTO_TEST_CASE(a_moved_large_growth_has_free_pages_after_it) {
  void* p = malloc(64 * 1024);
  void* q = malloc(64 * 1024);   // follows p: p cannot grow in place
  void* x = malloc(120 * 1024);  // 15 pages: the size the growth below moves to
  void* y = malloc(40 * 1024);   // follows x
  BOOST_REQUIRE(p && q && x && y);
  free(x);
  fill(p, 64 * 1024, 9);
  void* p2 = realloc(p, 80 * 1024);  // by less than half: moves, with room (120 KiB)
  BOOST_REQUIRE(p2);
  BOOST_TEST(check(p2, 64 * 1024, 9));
  void* p3 = realloc(p2, 200 * 1024);
  BOOST_REQUIRE(p3);
  BOOST_TEST(p3 == p2);  // grown into the free pages after it
  BOOST_TEST(check(p3, 64 * 1024, 9));
  free(p3);
  free(q);
  free(y);
}

BOOST_AUTO_TEST_CASE(realloc_edge_cases) {
  void* p = realloc(nullptr, 40);  // like malloc
  BOOST_REQUIRE(p);
  fill(p, 40, 3);
  errno = 0;
  void* q = realloc(p, SIZE_MAX);  // fails, p untouched
  BOOST_TEST(q == nullptr);
  BOOST_TEST(errno == ENOMEM);
  BOOST_TEST(check(p, 40, 3));
  BOOST_TEST(realloc(p, 0) == nullptr);  // frees, as glibc does
  void* big = malloc(100000);
  fill(big, 100000, 5);
  errno = 0;
  BOOST_TEST(realloc(big, size_t{1} << 50) == nullptr);
  BOOST_TEST(check(big, 100000, 5));
  free(big);
}

BOOST_AUTO_TEST_CASE(reallocarray_overflow) {
  void* p = malloc(16);
  errno = 0;
  BOOST_TEST(reallocarray(p, SIZE_MAX / 2, 4) == nullptr);
  BOOST_TEST(errno == ENOMEM);
  void* q = reallocarray(p, 10, 100);
  BOOST_REQUIRE(q);
  BOOST_TEST(malloc_usable_size(q) >= 1000u);
  free(q);
}

BOOST_AUTO_TEST_CASE(usable_size_of_foreign_and_interior_pointers_is_zero) {
  int local;
  BOOST_TEST(malloc_usable_size(&local) == 0u);
  char* p = static_cast<char*>(malloc(100));
  BOOST_TEST(malloc_usable_size(p + 16) == 0u);
  free(p);
}

BOOST_AUTO_TEST_CASE(sized_and_aligned_deletes_of_every_kind) {
  for (size_t n :
       {size_t{1}, size_t{24}, size_t{100}, size_t{4096}, size_t{32768}, size_t{100000}}) {
    void* p = ::operator new(n);
    ::operator delete(p, n);
    p = ::operator new[](n);
    ::operator delete[](p, n);
    p = ::operator new(n, std::nothrow);
    ::operator delete(p, std::nothrow);
    p = ::operator new[](n, std::nothrow);
    ::operator delete[](p, std::nothrow);
    for (size_t a : {size_t{16}, size_t{64}, size_t{4096}, size_t{65536}}) {
      p = ::operator new(n, std::align_val_t(a));
      BOOST_REQUIRE(aligned(p, a));
      ::operator delete(p, std::align_val_t(a));
      p = ::operator new[](n, std::align_val_t(a));
      ::operator delete[](p, n, std::align_val_t(a));
      p = ::operator new(n, std::align_val_t(a), std::nothrow);
      ::operator delete(p, std::align_val_t(a), std::nothrow);
      p = ::operator new[](n, std::align_val_t(a), std::nothrow);
      ::operator delete[](p, std::align_val_t(a), std::nothrow);
    }
  }
  struct alignas(256) over {
    char c[300];
  };
  over* o = new over[3];
  BOOST_TEST(aligned(o, 256));
  delete[] o;
}

BOOST_AUTO_TEST_CASE(new_throws_bad_alloc_and_nothrow_returns_null) {
  BOOST_CHECK_THROW(static_cast<void>(::operator new(SIZE_MAX / 2)), std::bad_alloc);
  BOOST_CHECK_THROW(static_cast<void>(::operator new[](size_t{1} << 60)), std::bad_alloc);
  BOOST_CHECK_THROW(static_cast<void>(::operator new (size_t{1} << 60, std::align_val_t(64))),
                    std::bad_alloc);
  BOOST_TEST(::operator new(SIZE_MAX / 2, std::nothrow) == nullptr);
  BOOST_TEST(::operator new[](SIZE_MAX / 2, std::nothrow) == nullptr);
  BOOST_TEST(::operator new(SIZE_MAX / 2, std::align_val_t(128), std::nothrow) == nullptr);
}

BOOST_AUTO_TEST_CASE(new_handler_is_called_until_it_gives_up) {
  new_handler_state::calls = 0;
  std::set_new_handler([] {
    if (++new_handler_state::calls == 3) std::set_new_handler(nullptr);
  });
  BOOST_CHECK_THROW(static_cast<void>(::operator new(SIZE_MAX / 2)), std::bad_alloc);
  BOOST_TEST(new_handler_state::calls == 3);
  // A handler that throws makes the nothrow form return null.
  std::set_new_handler([] { throw std::bad_alloc(); });
  BOOST_TEST(::operator new(SIZE_MAX / 2, std::nothrow) == nullptr);
  std::set_new_handler(nullptr);
}

BOOST_AUTO_TEST_CASE(stats_reflect_allocations) {
  gort_malloc_stats_t before, after;
  gort_malloc_stats(&before);
  std::vector<void*> v;
  for (int i = 0; i < 10000; i++) v.push_back(malloc(100));
  void* big = malloc(10 << 20);
  gort_malloc_stats(&after);
  int cls = 1;
  while (after.classes[cls].size < 100) cls++;  // the class 100-byte requests land in
  BOOST_TEST(after.classes[cls].size == 112u);
  BOOST_TEST(after.classes[cls].inuse >= before.classes[cls].inuse + 9000);
  BOOST_TEST(after.bytes_allocated >= before.bytes_allocated + (10 << 20) + 1000000);
  BOOST_TEST(after.heap_inuse >= after.bytes_allocated);
  BOOST_TEST(after.heap_mapped >= after.heap_inuse + after.heap_free);
  BOOST_TEST(after.large_allocs >= before.large_allocs + 1);
  for (void* p : v) free(p);
  free(big);
}

// glibc's extras describe gort's heap, not glibc's unused one: a program that
// watches mallinfo2 to find leaks must see its allocations come and go.
BOOST_AUTO_TEST_CASE(glibc_extras_describe_the_gort_heap) {
  struct mallinfo2 before = mallinfo2();
  void* big = malloc(10u << 20);
  BOOST_REQUIRE(big);
  memset(big, 1, 10u << 20);
  struct mallinfo2 during = mallinfo2();
  BOOST_TEST(during.uordblks >= before.uordblks + (10u << 20));
  BOOST_TEST(during.arena >= during.uordblks);
  BOOST_TEST(during.arena == during.uordblks + during.fordblks);
  free(big);
  struct mallinfo2 after = mallinfo2();
  // Cached small objects move the count by a few bytes; the block must be gone.
  BOOST_TEST(after.uordblks + (9u << 20) <= during.uordblks);

  // The int version clamps instead of wrapping.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  struct mallinfo small = mallinfo();
#pragma GCC diagnostic pop
  BOOST_TEST(small.uordblks >= 0);
  BOOST_TEST(small.arena >= 0);

  // Known options are accepted, nonsense is refused, as glibc does.
  BOOST_TEST(mallopt(M_ARENA_MAX, 2) == 1);
  BOOST_TEST(mallopt(M_MMAP_THRESHOLD, 1 << 20) == 1);
  BOOST_TEST(mallopt(M_MMAP_THRESHOLD, -1) == 0);
  BOOST_TEST(mallopt(12345, 1) == 0);

  char* text = nullptr;
  size_t len = 0;
  FILE* f = open_memstream(&text, &len);
  BOOST_REQUIRE(f);
  BOOST_TEST(malloc_info(0, f) == 0);
  errno = 0;
  BOOST_TEST(malloc_info(1, f) == -1);
  BOOST_TEST(errno == EINVAL);
  fclose(f);
  BOOST_REQUIRE(text);
  BOOST_TEST(strstr(text, "<malloc version=\"gort-1\">") != nullptr);
  BOOST_TEST(strstr(text, "</malloc>") != nullptr);
  free(text);
}
BOOST_AUTO_TEST_SUITE_END()
