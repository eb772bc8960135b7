// The C allocation entry points: malloc, free, calloc, realloc, the aligned
// and usable-size calls, and their gort_* names.
//
// Each entry point is the inline fast path of mcache.h plus argument checks;
// everything unusual (large objects, first call of a thread, bad pointers)
// goes out of line to the *_slow functions here. Semantics follow glibc where
// the standards leave a choice, because gort is dropped into programs written
// against glibc: malloc(0) returns a unique pointer, realloc(p, 0) frees p and
// returns NULL, memalign rounds a non-power-of-two alignment up, and errors
// set errno (ENOMEM, EINVAL) except posix_memalign, which returns them.
//
// Pointers gort does not own: free() and realloc() of a pointer that is not
// the start of a live gort block report "invalid pointer" and abort, as glibc
// does; the check cannot crash (the page map reads null for foreign memory).
// malloc_usable_size() of such a pointer returns 0.
#include "gort/malloc.h"

#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "alloc/init.h"
#include "alloc/mcache.h"
#include "alloc/mheap.h"
#include "alloc/mprof.h"
#include "alloc/scavenger.h"
#include "alloc/stats.h"
#include "alloc/sys.h"

#define GORT_EXPORT extern "C" __attribute__((visibility("default")))

namespace gort::alloc {

namespace {

// room_pages: free pages wanted after the block (realloc growth room), or 0.
void* large_alloc_span(size_t size, size_t align, uintptr_t room_pages) {
  uintptr_t npages = (size + kPageSize - 1) >> kPageShift;
  if (GORT_LIKELY(align <= kPageSize && npages <= kLargeCachePages && room_pages == 0)) {
    // A thread with a cache has initialised the heap.
    if (mspan* s = cache_take_large(npages)) return reinterpret_cast<void*>(s->base);
  }
  if (size > (size_t{1} << kAddrBits)) {
    errno = ENOMEM;
    return nullptr;
  }
  ensure_init();
  if (npages == 0) npages = 1;  // aligned_alloc(64 KiB, 0) still gets a block of its own
  uintptr_t align_pages = align > kPageSize ? align / kPageSize : 1;
  mspan* s = g_heap.alloc_span(npages, spanState::large, align_pages, room_pages);
  if (!s) {
    errno = ENOMEM;
    return nullptr;
  }
  scavenger_poll();
  return reinterpret_cast<void*>(s->base);
}

// Large objects are a slow path every time: the heap profiler samples here.
void* large_alloc(size_t size, size_t align, uintptr_t room_pages = 0) {
  void* p = large_alloc_span(size, align, room_pages);
  if (GORT_UNLIKELY(prof_on()) && p)
    mprof_large(tl_thread.cache, p, span_of(p)->npages * kPageSize);
  return p;
}

// Reports a pointer that is not the start of a live block, saying what it is.
[[noreturn]] void bad_pointer(const char* fn, const void* p) {
  mspan* s = span_of(p);
  if (!s) fatal("%s(): invalid pointer %p (not allocated by gort)", fn, p);
  if (s->state == spanState::cached || s->state == spanState::free)
    fatal("%s(): double free of %p (a block that was freed already)", fn, p);
  if (s->state == spanState::small)
    fatal("%s(): invalid pointer %p (inside a %u-byte block)", fn, p, s->elemsize);
  if (s->state == spanState::gc || s->state == spanState::gclarge)
    fatal("%s(): %p is a garbage-collected object (gort_gc_alloc): the collector frees it", fn, p);
  if (s->state == spanState::stack) fatal("%s(): invalid pointer %p (inside a task stack)", fn, p);
  fatal("%s(): invalid pointer %p (inside a block of %zu pages)", fn, p,
        static_cast<size_t>(s->npages));
}

// The span of a live block that starts at p, or nullptr.
mspan* block_span(const void* p) {
  mspan* s = span_of(p);
  if (!s) return nullptr;
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  if (s->state == spanState::small) {
    return s->is_object_start(a - s->base) ? s : nullptr;
  }
  if (s->state == spanState::large && a == s->base) return s;
  return nullptr;
}

size_t block_size(const mspan* s) {
  return s->state == spanState::small ? s->elemsize : s->npages * kPageSize;
}

void* aligned_impl(size_t align, size_t size) {
  if (align <= 8 || (align <= 16 && size > 8)) return malloc_fast(size);
  if (size <= kMaxSmallSize && align <= kPageSize) {
    // Every power of two up to 32 KiB is a class, and spans start on a page,
    // so the first class whose size is a multiple of align is aligned.
    uint32_t cls = size_to_class(size < align ? align : size);
    while (class_to_size[cls] % align != 0) cls++;
    return alloc_class(cls);
  }
  return large_alloc(size, align);
}

void* calloc_impl(size_t n, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(n, size, &total)) {
    errno = ENOMEM;
    return nullptr;
  }
  if (total <= kMaxSmallSize) {
    void* p = alloc_class(size_to_class(total));
    if (p) memset(p, 0, total);
    return p;
  }
  void* p = large_alloc(total, 1);
  if (p) {
    mspan* s = span_of(p);
    if (s->needzero) memset(p, 0, total);  // pages fresh from the OS are zero already
  }
  return p;
}

// Room for a growing block. A program that grows a buffer by realloc in
// small steps (a string builder, a reader appending chunks) grows it again;
// without room every step past the end of the block's size class or span
// copies the whole block, and a growth by quarters from 16 bytes to 256 KiB
// copied 0.6-1.2 times its final size (glibc copies nothing there: the block
// grows in place at the top of the thread's arena). So a growth by less than
// half the block's usable size is taken as incremental and asks for half as
// much again as the new size: then such a growth moves about every other
// step, and the copies of a growth by quarters fell by 40-60%
// (bench/results/alloc-realloc.md; docs/alloc.md "realloc growth room").
// A growth by half or more (a vector doubling) gets the exact size, as a
// plain realloc: room would only be waste there, since the next doubling
// outgrows it. The room is part of the block (malloc_usable_size says so);
// where it cannot be had (an address-space limit) realloc_impl takes the
// exact size. Both sizes are at most 2^48 here, so nothing overflows.
size_t realloc_room(size_t old, size_t size) {
  return size >= old + old / 2 ? size : size + size / 2;
}

// Grows, shrinks or keeps a large block in place; false if it must move.
bool realloc_large_in_place(mspan* s, size_t old, size_t size) {
  uintptr_t npages = (size + kPageSize - 1) >> kPageShift;
  if (npages <= s->npages) {
    // A tail of up to a third stays: that is the room of an incremental
    // growth (realloc_room), and its next steps will use it.
    if (s->npages - npages > s->npages / 3) g_heap.shrink_span(s, npages);
    return true;
  }
  uintptr_t room = (realloc_room(old, size) + kPageSize - 1) >> kPageShift;
  return (room > npages && g_heap.try_grow_span(s, room)) || g_heap.try_grow_span(s, npages);
}

void* realloc_impl(void* p, size_t size) {
  if (!p) return malloc_fast(size);
  if (size == 0) {
    free_fast(p);
    return nullptr;
  }
  mspan* s = block_span(p);
  if (!s) bad_pointer("realloc", p);
  size_t old = block_size(s);
  if (size > (size_t{1} << kAddrBits)) {
    errno = ENOMEM;
    return nullptr;
  }
  if (s->state == spanState::small) {
    // Shrinking to more than half keeps the block (as mimalloc does): the
    // shrink-to-fit after an incremental growth would otherwise copy it.
    if (size <= old && (size > old / 2 || size_to_class(size) == s->free_class)) return p;
  } else if (size > kMaxSmallSize && realloc_large_in_place(s, old, size)) {
    return p;
  }
  void* q = nullptr;
  size_t want = size > old ? realloc_room(old, size) : size;
  if (want != size) {
    int saved = errno;
    // A large block that grows by steps moves where free pages follow it,
    // as many again as it has, if the heap has such a run: best fit put it
    // where another thread's growing block followed it, and every step then
    // moved (realloc growth room, docs/alloc.md).
    q = want > kMaxSmallSize ? large_alloc(want, 1, (want + kPageSize - 1) >> kPageShift)
                             : malloc_fast(want);
    errno = saved;  // a failure here is not the caller's: the exact size is next
  }
  if (!q) q = malloc_fast(size);
  if (!q) return nullptr;  // errno is ENOMEM; p is untouched
  memcpy(q, p, old < size ? old : size);
  free_fast(p);
  return q;
}

}  // namespace

void* malloc_slow(size_t size) {
  if (size <= kMaxSmallSize) return alloc_class_slow(size_to_class(size));
  return large_alloc(size, 1);
}

void free_slow(void* p) {
  // A small object freed by a thread without a cache: a remote free needs
  // none (it goes to the span), so a thread that only frees what others
  // allocated (the consumers of a producer/consumer program) never makes
  // one, and frees here with the fast path's checks (free_remote). With 63
  // consumers, making 63 caches (their pages, the registry lock, the exit
  // pass) cost more than their frees. With the heap profiler on, every free
  // comes here and goes the long way below.
  if (tl_thread.cache == nullptr && !prof_on() && free_remote_small(p, window_entry(p))) return;
  // Large blocks first: they are the common reason to be here.
  mspan* s = span_of(p);
  // With the heap profiler on, every free comes here (mprof.h); a span with
  // sampled objects says so.
  if (GORT_UNLIKELY(prof_on()) && s && mprof_maybe_sampled(s, reinterpret_cast<uintptr_t>(p)))
    mprof_free(s, reinterpret_cast<uintptr_t>(p));
  if (GORT_LIKELY(s != nullptr && s->state == spanState::large &&
                  reinterpret_cast<uintptr_t>(p) == s->base)) {
    if (cache_keep_large(s)) return;
    g_heap.free_span(s);
    scavenger_poll();
    return;
  }
  if (!p) return;
  s = block_span(p);
  if (!s) bad_pointer("free", p);
  if (s->state == spanState::large) {
    if (cache_keep_large(s)) return;
    g_heap.free_span(s);
    scavenger_poll();
    return;
  }
  // A small object freed by a thread without a cache yet (or any more), or
  // outside the class window. A thread's first call may be this free of
  // another thread's object (cache-scratch does exactly that): it is remote
  // as on the fast path.
  mcache* c = cache_for_thread();
  if (!c) return free_direct(p);
  uint32_t e = window_entry(p);
  if (e != 0 && window_owner(e) != c->owner) return free_remote_object(s, s->free_class, p);
  free_cache_slow(c, s->free_class, p);
}

size_t usable_size(const void* p) {
  mspan* s = block_span(p);
  return s ? block_size(s) : 0;
}

}  // namespace gort::alloc

using namespace gort::alloc;

GORT_EXPORT void* gort_malloc(size_t size) noexcept {
  return malloc_fast(size);
}
GORT_EXPORT void gort_free(void* p) noexcept {
  free_fast(p);
}
GORT_EXPORT void* gort_calloc(size_t n, size_t size) noexcept {
  return calloc_impl(n, size);
}
GORT_EXPORT void* gort_realloc(void* p, size_t size) noexcept {
  return realloc_impl(p, size);
}
GORT_EXPORT size_t gort_malloc_usable_size(const void* p) noexcept {
  return usable_size(p);
}

GORT_EXPORT void* gort_aligned_alloc(size_t align, size_t size) noexcept {
  if (align == 0 || (align & (align - 1)) != 0) {
    errno = EINVAL;
    return nullptr;
  }
  return aligned_impl(align, size);
}

GORT_EXPORT void gort_malloc_stats(gort_malloc_stats_t* out) noexcept {
  ensure_init();
  collect_stats(out);
}
GORT_EXPORT void gort_malloc_stats_print(int fd) noexcept {
  ensure_init();
  print_stats(fd);
}
GORT_EXPORT size_t gort_scavenge(void) noexcept {
  ensure_init();
  return scavenge_now();
}

// ---- the standard names ----

GORT_EXPORT void* malloc(size_t size) noexcept {
  return malloc_fast(size);
}
GORT_EXPORT void free(void* p) noexcept {
  free_fast(p);
}
GORT_EXPORT void* calloc(size_t n, size_t size) noexcept {
  return calloc_impl(n, size);
}
GORT_EXPORT void* realloc(void* p, size_t size) noexcept {
  return realloc_impl(p, size);
}

GORT_EXPORT void* reallocarray(void* p, size_t n, size_t size) noexcept {
  size_t total;
  if (__builtin_mul_overflow(n, size, &total)) {
    errno = ENOMEM;
    return nullptr;
  }
  return realloc_impl(p, total);
}

GORT_EXPORT int posix_memalign(void** out, size_t align, size_t size) noexcept {
  if (align < sizeof(void*) || (align & (align - 1)) != 0) return EINVAL;
  int saved = errno;
  void* p = aligned_impl(align, size);
  errno = saved;
  if (!p) return ENOMEM;
  *out = p;
  return 0;
}

GORT_EXPORT void* aligned_alloc(size_t align, size_t size) noexcept {
  return gort_aligned_alloc(align, size);
}

GORT_EXPORT void* memalign(size_t align, size_t size) noexcept {
  if (align > (~size_t{0} >> 1) + 1) {
    errno = EINVAL;
    return nullptr;
  }
  if (align & (align - 1)) align = size_t{1} << (64 - __builtin_clzll(align));  // glibc rounds up
  return aligned_impl(align < 8 ? 8 : align, size);
}

GORT_EXPORT void* valloc(size_t size) noexcept {
  return aligned_impl(static_cast<size_t>(sysconf(_SC_PAGESIZE)), size);
}

GORT_EXPORT void* pvalloc(size_t size) noexcept {
  size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  if (size > ~size_t{0} - page) {
    errno = ENOMEM;
    return nullptr;
  }
  size_t rounded = size == 0 ? page : (size + page - 1) & ~(page - 1);
  return aligned_impl(page, rounded);
}

GORT_EXPORT size_t malloc_usable_size(void* p) noexcept {
  return usable_size(p);
}

// glibc's malloc_trim: give free memory back now. Returns 1 if any was.
GORT_EXPORT int malloc_trim(size_t) noexcept {
  ensure_init();
  return scavenge_now() > 0 ? 1 : 0;
}

// ---- glibc's statistics and options, answered from gort's heap ----
//
// Programs call these to report their memory or tune glibc; under LD_PRELOAD
// glibc's own versions would describe glibc's empty heap. The fields map as
// closely as the designs allow:
//   arena     heap committed (glibc: bytes obtained with brk)
//   ordblks   free page runs in the mheap (1 if any memory is free)
//   hblks, hblkhd  0: gort maps no block on its own (large blocks are spans)
//   uordblks  bytes in live objects
//   fordblks  the rest of the committed heap (free spans, cached objects)
//   fsmblks   free objects waiting in thread and transfer caches (glibc: fastbins)
//   keepcost  backed free memory that malloc_trim would release now
namespace {
struct info2 {
  size_t arena, ordblks, uordblks, fordblks, fsmblks, keepcost;
};
info2 heap_info() {
  gort_malloc_stats_t st;
  gort_malloc_stats(&st);
  info2 i{};
  i.arena = st.heap_mapped;
  i.uordblks = st.bytes_allocated < st.heap_mapped ? st.bytes_allocated : st.heap_mapped;
  i.fordblks = i.arena - i.uordblks;
  i.ordblks = st.heap_free + st.heap_released > 0 ? 1 : 0;
  i.fsmblks = st.bytes_cached;
  i.keepcost = st.heap_free;
  return i;
}
int clamp_int(size_t v) {
  return v > INT_MAX ? INT_MAX : static_cast<int>(v);
}
}  // namespace

GORT_EXPORT struct mallinfo2 mallinfo2(void) noexcept {
  info2 i = heap_info();
  struct mallinfo2 m = {};
  m.arena = i.arena;
  m.ordblks = i.ordblks;
  m.uordblks = i.uordblks;
  m.fordblks = i.fordblks;
  m.fsmblks = i.fsmblks;
  m.keepcost = i.keepcost;
  return m;
}

// The deprecated int version: values above INT_MAX read as INT_MAX (glibc
// wraps them around, which is worse).
GORT_EXPORT struct mallinfo mallinfo(void) noexcept {
  info2 i = heap_info();
  struct mallinfo m = {};
  m.arena = clamp_int(i.arena);
  m.ordblks = clamp_int(i.ordblks);
  m.uordblks = clamp_int(i.uordblks);
  m.fordblks = clamp_int(i.fordblks);
  m.fsmblks = clamp_int(i.fsmblks);
  m.keepcost = clamp_int(i.keepcost);
  return m;
}

// glibc's summary on stderr, in glibc's shape, followed by gort's own table.
GORT_EXPORT void malloc_stats(void) noexcept {
  info2 i = heap_info();
  char buf[512];
  int n = snprintf(buf, sizeof buf,
                   "Arena 0:\nsystem bytes     = %10zu\nin use bytes     = %10zu\n"
                   "Total (incl. mmap):\nsystem bytes     = %10zu\nin use bytes     = %10zu\n"
                   "max mmap regions = %10d\nmax mmap bytes   = %10d\n",
                   i.arena, i.uordblks, i.arena, i.uordblks, 0, 0);
  if (n > 0) sys_write_all(2, buf, static_cast<size_t>(n) < sizeof buf ? n : sizeof buf - 1);
  print_stats(2);
}

// glibc's options are accepted (1) and have no effect: gort's caches, spans
// and scavenger replace what they tune (docs/alloc.md, "glibc's extras").
// M_TRIM_THRESHOLD, M_TOP_PAD and M_MMAP_THRESHOLD with a value < 0 are
// refused as glibc refuses them; an unknown option returns 0.
GORT_EXPORT int mallopt(int param, int value) noexcept {
  switch (param) {
    case M_MXFAST:
    case M_ARENA_TEST:
    case M_ARENA_MAX:
    case M_MMAP_MAX:
    case M_PERTURB:
    case M_CHECK_ACTION:
      return 1;
    case M_TRIM_THRESHOLD:
    case M_TOP_PAD:
    case M_MMAP_THRESHOLD:
      return value >= 0 ? 1 : 0;
    default:
      return 0;
  }
}

// glibc's XML report, with gort's numbers. options must be 0.
GORT_EXPORT int malloc_info(int options, FILE* fp) noexcept {
  if (options != 0 || !fp) {
    errno = EINVAL;
    return -1;
  }
  info2 i = heap_info();
  fprintf(fp,
          "<malloc version=\"gort-1\">\n<heap nr=\"0\">\n"
          "<total type=\"fast\" count=\"0\" size=\"%zu\"/>\n"
          "<system type=\"current\" size=\"%zu\"/>\n"
          "<aspace type=\"total\" size=\"%zu\"/>\n</heap>\n"
          "<total type=\"fast\" count=\"0\" size=\"%zu\"/>\n"
          "<system type=\"current\" size=\"%zu\"/>\n"
          "<aspace type=\"total\" size=\"%zu\"/>\n</malloc>\n",
          i.fsmblks, i.arena, i.arena, i.fsmblks, i.arena, i.arena);
  return 0;
}
