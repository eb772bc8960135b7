// GC allocation: caches, centrals, large objects, the tiny tier; see heap.h.
#include "gc/heap.h"

#include <errno.h>
#include <sched.h>
#include <string.h>

#include "alloc/init.h"
#include "alloc/mprof.h"
#include "alloc/sys.h"
#include "gc/cycle.h"
#include "gc/mark.h"
#include "gc/roots.h"
#include "gc/sweep.h"
#include "runtime/trace.h"

#define GORT_EXPORT extern "C" __attribute__((visibility("default")))

extern "C" {
__attribute__((visibility("default"))) uint32_t gort_gc_marking = 0;
}

namespace gort::gc {

using alloc::kMaxSmallSize;
using alloc::kPageSize;
using alloc::spanState;

std::atomic<uint32_t> g_sweepgen{2};
__thread tlsGC tl_gc __attribute__((tls_model("initial-exec")));

constinit gcCentral g_central[kNumGCSpanClasses];
constinit gcCentral g_large;
constinit alloc::mutex g_empty_lock;
spanList g_empty;
std::atomic<gcCache*> g_allcaches{nullptr};
std::atomic<int64_t> g_heap_alloc{0};
std::atomic<uint64_t> g_total_alloc{0}, g_total_freed{0};
std::atomic<uintptr_t> g_heap_lo{~uintptr_t{0}}, g_heap_hi{0};

namespace {

constinit alloc::mutex g_cachealloc_lock;
constinit alloc::fixalloc<gcCache, size_t{1} << 30> g_cachealloc;

// The gcCache of this thread's mcache (per P for tasks), made on first use.
// Outside a busy region: making one may take the mcache registry's lock.
gcCache* my_cache() {
  alloc::mcache* mc = alloc::tl_thread.cache;
  if (!mc) mc = alloc::cache_for_thread();
  if (!mc) return nullptr;  // the thread is exiting
  if (mc->gc) return static_cast<gcCache*>(mc->gc);
  gcCache* c;
  {
    busy_lock g(g_cachealloc_lock);
    c = g_cachealloc.alloc();
    memset(c, 0, sizeof *c);
    c->next_sample = INT64_MAX;
    c->prof_rng = reinterpret_cast<uintptr_t>(c) * 0x9e3779b97f4a7c15ull | 1;
  }
  gcCache* head = g_allcaches.load(std::memory_order_relaxed);
  do c->allnext = head;
  while (!g_allcaches.compare_exchange_weak(head, c, std::memory_order_release));
  mc->gc = c;
  return c;
}

void note_heap_range(const mspan* s) {
  uintptr_t lo = s->base, hi = s->limit();
  uintptr_t cur = g_heap_lo.load(std::memory_order_relaxed);
  while (lo < cur && !g_heap_lo.compare_exchange_weak(cur, lo)) {
  }
  cur = g_heap_hi.load(std::memory_order_relaxed);
  while (hi > cur && !g_heap_hi.compare_exchange_weak(cur, hi)) {
  }
}

// The index of the span's next free object, or nelems: Go's nextFreeFast
// and refillAllocCache in one. Only the owning cache calls it.
uint32_t next_free(mspan* s) {
  for (;;) {
    uint64_t c = s->allocCache;
    uint32_t fi = s->freeindex;
    if (c) {
      uint32_t bit = static_cast<uint32_t>(__builtin_ctzll(c));
      uint32_t idx = fi + bit;
      if (idx >= s->nelems) break;
      s->allocCache = bit == 63 ? 0 : c >> (bit + 1);
      __atomic_store_n(&s->freeindex, static_cast<uint16_t>(idx + 1), __ATOMIC_RELAXED);
      s->alloc_count++;
      return idx;
    }
    // The window is used up: the next one starts at the next whole word
    // (freeindex itself when it is on a word boundary) with a free object.
    uint32_t word = (fi + 63) / 64;
    uint64_t free = 0;
    while (word * 64 < s->nelems && (free = ~s->allocBits[word]) == 0) word++;
    if (word * 64 >= s->nelems) break;
    __atomic_store_n(&s->freeindex, static_cast<uint16_t>(word * 64), __ATOMIC_RELAXED);
    s->allocCache = free;
  }
  __atomic_store_n(&s->freeindex, s->nelems, __ATOMIC_RELAXED);
  s->allocCache = 0;
  return s->nelems;
}

// Go's nextFreeFast: the next free object from the span's allocCache
// alone (one ctz), or nelems when the cache window is used up.
inline uint32_t next_free_fast(mspan* s) {
  uint64_t cache = s->allocCache;
  uint32_t bit = static_cast<uint32_t>(__builtin_ctzll(cache | (uint64_t{1} << 63)));
  uint32_t idx = s->freeindex + bit;
  if (__builtin_expect(cache == 0 || idx >= s->nelems, 0)) return s->nelems;
  s->allocCache = (cache >> bit) >> 1;
  __atomic_store_n(&s->freeindex, static_cast<uint16_t>(idx + 1), __ATOMIC_RELAXED);
  s->alloc_count++;
  return idx;
}

// Black allocation by range. Objects allocated while the collector marks
// are black (Go's gcmarknewobject): the program may hold them where no
// marker looks again. Setting each one's mark bit took a locked
// read-modify-write per allocation (markers set bits in the same words),
// a quarter of the allocation fast path's time during a mark. Instead the
// cache records in the span where its allocation began (blackfrom, the
// freeindex when it took the span during a mark), and the objects at or
// past blackfrom whose alloc bit is clear are the ones it allocated since:
// black as a range. Markers treat them as marked (set_mark in mark.cc); the
// range becomes mark bits, a word at a time, when the cache lets the span go
// (uninstall), which every cache does at mark termination, before anything
// reads mark bits as the cycle's answer (sweep, finalizers, weak references,
// gcverify).
// Invariant: blackfrom != kNoBlack only while a cache holds the span during
// a mark. A span that leaves the cache has objects below freeindex with clear
// alloc bits that are old and white: a stale blackfrom there would make them
// look black and they would be freed while reachable.
// Here: an object allocated during a mark counts toward the cycle's live
// bytes; its colour is its span's range.
inline void mark_allocated(gcCache* c, const mspan* s) {
  if (__builtin_expect(g_marking.load(std::memory_order_relaxed) != 0, 0))
    c->marked_bytes += s->elemsize;
}

// The objects of s its cache allocated during this mark, [blackfrom,
// freeindex) less the old ones (alloc bit set), get their mark bits; the
// span then has no range. Busy region (or a stop).
void black_range_to_bits(mspan* s) {
  uint32_t from = s->blackfrom, to = s->freeindex;
  s->blackfrom = alloc::kNoBlack;
  // A child forked during a mark turns marking off: no cycle wants the bits.
  if (!g_marking.load(std::memory_order_relaxed)) return;
  for (uint32_t w = from / 64; w * 64 < to; w++) {
    uint64_t mask = ~uint64_t{0};
    if (w * 64 < from) mask &= ~uint64_t{0} << (from % 64);
    if (to < w * 64 + 64) mask &= (uint64_t{1} << (to % 64)) - 1;
    uint64_t bits = mask & ~s->allocBits[w];
    if (bits) __atomic_fetch_or(&s->gcmarkBits[w], bits, __ATOMIC_RELAXED);
  }
}

// The first call on a span fresh from a sweep or the mheap sets up the
// window at freeindex 0 (allocCache 0 and freeindex 0 make next_free load
// word 0).

// A cache's span counts as allocated whole while the cache holds it (Go's
// heapLive does the same): the fast path touches no shared counter.
void install(gcCache* c, uint32_t sc, mspan* s) {
  c->alloc[sc] = s;
  if (g_marking.load(std::memory_order_relaxed)) s->blackfrom = s->freeindex;
  uint32_t epoch = __atomic_load_n(&alloc::g_prof_epoch, __ATOMIC_RELAXED);
  if (__builtin_expect(c->prof_epoch != epoch, 0)) {
    c->prof_epoch = epoch;
    c->next_sample = alloc::mprof_next_bytes(&c->prof_rng);
  }
  int64_t free_bytes = int64_t{s->nelems - s->alloc_count} * s->elemsize;
  g_heap_alloc.fetch_add(free_bytes, std::memory_order_relaxed);
  g_total_alloc.fetch_add(static_cast<uint64_t>(free_bytes), std::memory_order_relaxed);
  tl_gc.alloc_charge += free_bytes;
}

void uninstall(gcCache* c, uint32_t sc) {
  mspan* s = c->alloc[sc];
  c->alloc[sc] = nullptr;
  if (s->blackfrom != alloc::kNoBlack) black_range_to_bits(s);
  int64_t unused = int64_t{s->nelems - s->alloc_count} * s->elemsize;
  g_heap_alloc.fetch_sub(unused, std::memory_order_relaxed);
  g_total_alloc.fetch_sub(static_cast<uint64_t>(unused), std::memory_order_relaxed);
  gcCentral& cen = g_central[sc];
  alloc::lock_guard g(cen.lock);
  if (s->alloc_count == s->nelems)
    cen.full.push_front(s);
  else
    cen.partial.push_front(s);
}

// A swept span of class sc with a free object, from the central: partial
// first, else sweep unswept spans until one has room. Busy region. At most
// kSweepBudget spans are swept per call: past it, *more says that unswept
// spans remain and the caller leaves its busy region before it asks again,
// so that a stop of the world never waits for a sweep through a heap of full
// spans (25,000 of them, 6 ms, in livechurn). Unlike Go's budget (which then
// grows the heap) the caller keeps sweeping: the heap does not grow for it.
constexpr int kSweepBudget = 32;
mspan* central_take(uint32_t sc, bool* more) {
  gcCentral& cen = g_central[sc];
  alloc::lock_guard g(cen.lock);
  if (mspan* s = cen.partial.first) {
    cen.partial.remove(s);
    return s;
  }
  rt::trace::sweepScope ts(cen.unswept.first != nullptr);
  int budget = kSweepBudget;
  while (mspan* s = cen.unswept.first) {
    if (budget-- == 0) {
      *more = true;
      return nullptr;
    }
    cen.unswept.remove(s);
    sweepResult r = sweep_span(s);
    if (r == sweepResult::empty) {
      alloc::lock_guard e(g_empty_lock);
      g_empty.push_front(s);
    } else if (s->alloc_count < s->nelems) {
      return s;
    } else {
      cen.full.push_front(s);
    }
  }
  return nullptr;
}

inline gcCache* cache();

// Out of line: the cache's span of class sc is full or absent.
// note_alloc_slow may yield the calling task (a mark assist that finds no
// grey work, or the wait for a cycle to start). Two things can then change
// under it, and neither may be assumed away:
//  - it may resume on another M, holding another P and so another cache,
//    while the M that now holds the old P allocates from the old one: c is
//    looked up again after every note_alloc_slow and handed back to the
//    caller, which goes on with it (two threads taking objects from one
//    cache would hand out the same object twice);
//  - other tasks of its P may have run and filled slot sc: a fresh span
//    does not overwrite the slot's span but sends it back to its central
//    first. Overwritten, that span was on no list: never flushed nor swept,
//    so its memory leaked and its mark bits were never cleared; its objects
//    then looked black in every later cycle, were not scanned again, and
//    what was stored in them between two marks was freed while reachable
//    (concurrent/tasks_mutate_while_marking: a node a task held across a
//    yield was freed and reused; concurrent/refill_yield_keeps_every_span).
void* alloc_small_slow(gcCache*& c, uint32_t sc, uint32_t cls, gcKind kind) {
  for (;;) {
    busy_enter();
    if (mspan* s = c->alloc[sc]) {
      uint32_t idx = next_free(s);
      if (idx < s->nelems) {
        mark_allocated(c, s);
        return reinterpret_cast<void*>(object_base(s, idx));  // still busy: the caller ends it
      }
      uninstall(c, sc);
    }
    bool more = false;
    if (mspan* s = central_take(sc, &more)) {
      install(c, sc, s);
      busy_exit();
      note_alloc_slow();
      if (!(c = cache())) return nullptr;
      continue;
    }
    busy_exit();  // a stop asked for during the sweep happens here
    if (more) continue;
    // A fresh span: the mheap's lock, outside the busy region.
    note_alloc_slow();
    if (!(c = cache())) return nullptr;
    mspan* s = alloc::g_heap.alloc_gc_span(cls, kind, 0, 0);
    if (!s) return nullptr;
    note_heap_range(s);
    busy_enter();
    s->sweepgen = g_sweepgen.load(std::memory_order_relaxed);
    // Not empty if a task of this P (or of the P the task moved to) took a
    // span while note_alloc_slow yielded: it goes back to its central, as
    // a full one does (a stop's flush only empties slots).
    if (c->alloc[sc]) uninstall(c, sc);
    install(c, sc, s);
    busy_exit();
  }
}

// Busy region on return (when the result is not null). c may change (see
// alloc_small_slow): the caller goes on with the cache it returns in c.
inline void* alloc_small(gcCache*& c, uint32_t cls, gcKind kind) {
  uint32_t sc = gc_span_class(cls, kind);
  busy_enter();
  mspan* s = c->alloc[sc];
  if (__builtin_expect(s != nullptr, 1)) {
    uint32_t idx = next_free_fast(s);
    if (__builtin_expect(idx == s->nelems, 0)) idx = next_free(s);
    if (__builtin_expect(idx < s->nelems, 1)) {
      mark_allocated(c, s);
      return reinterpret_cast<void*>(object_base(s, idx));
    }
  }
  busy_exit();
  return alloc_small_slow(c, sc, cls, kind);
}

// Tiny objects: noscan and under 16 bytes, packed into 16-byte noscan
// blocks (Go's tiny allocator). The block lives as long as any of its
// objects is reachable. Busy region on return; c as for alloc_small.
void* alloc_tiny(gcCache*& c, size_t size) {
  busy_enter();
  size_t off = c->tinyoffset;
  if (size & 7) {
    off = size & 1 ? off : size & 2 ? (off + 1) & ~size_t{1} : (off + 3) & ~size_t{3};
  } else {
    off = (off + 7) & ~size_t{7};
  }
  if (c->tiny && off + size <= kTinySize) {
    c->tinyoffset = off + size;
    return reinterpret_cast<void*>(c->tiny + off);
  }
  busy_exit();
  void* p = alloc_small(c, alloc::size_to_class(kTinySize), gcKind::noscan);
  if (!p) return nullptr;
  memset(p, 0, kTinySize);
  // A new block replaces the old one only if it leaves more room.
  if (!c->tiny || size < c->tinyoffset) {
    c->tiny = reinterpret_cast<uintptr_t>(p);
    c->tinyoffset = size;
  }
  return p;
}

void* alloc_large(size_t size, gcKind kind) {
  uintptr_t npages = (size + kPageSize - 1) / kPageSize;
  if (size > (size_t{1} << 46)) return nullptr;
  tl_gc.alloc_charge += static_cast<int64_t>(npages * kPageSize);
  note_alloc_slow();
  mspan* s = alloc::g_heap.alloc_gc_span(0, kind, npages, size);
  if (!s) return nullptr;
  note_heap_range(s);
  if (s->needzero) memset(reinterpret_cast<void*>(s->base), 0, npages * kPageSize);
  busy_enter();
  s->state = spanState::gclarge;
  s->sweepgen = g_sweepgen.load(std::memory_order_relaxed);
  __atomic_store_n(&s->freeindex, 1, __ATOMIC_RELAXED);
  s->alloc_count = 1;
  if (g_marking.load(std::memory_order_relaxed)) {
    mark_new(s, 0);
    g_large_marked_bytes.fetch_add(size, std::memory_order_relaxed);
  }
  {
    alloc::lock_guard g(g_large.lock);
    g_large.full.push_front(s);
  }
  g_heap_alloc.fetch_add(static_cast<int64_t>(object_size(s)), std::memory_order_relaxed);
  g_total_alloc.fetch_add(object_size(s), std::memory_order_relaxed);
  return reinterpret_cast<void*>(s->base);  // still busy
}

// The allocation that crossed the cache's sample countdown: record it in the
// heap profile (outside the busy region: the profiler captures a stack) and
// draw the next countdown. key is the object's start (its header, or its
// 16-byte tiny block), which sweeping reports when it frees it.
__attribute__((noinline)) void* sampled(gcCache* c, uintptr_t key, size_t size, void* ret) {
  c->next_sample = alloc::mprof_next_bytes(&c->prof_rng);
  if (__atomic_load_n(&alloc::g_prof_rate, __ATOMIC_RELAXED) <= 0) return ret;
  alloc::mcache* mc = alloc::tl_thread.cache;
  alloc::mprofCache* pc = mc ? alloc::mprof_cache(mc) : nullptr;
  if (pc) alloc::mprof_sample(pc, reinterpret_cast<void*>(key), size);
  return ret;
}

// No cache for the fast path: the thread's first GC allocation (start the
// collector, register the thread) or its current mcache changed (a new P).
__attribute__((noinline)) gcCache* cache_slow() {
  if (!tl_gc.ready) {
    alloc::ensure_init();
    ensure_started();
    if (!tl_gc.rec && !register_current_thread(false)) return nullptr;
    tl_gc.ready = 1;
  }
  gcCache* c = my_cache();
  alloc::tl_thread.gccache = c;
  return c;
}

inline gcCache* cache() {
  void* c = alloc::tl_thread.gccache;
  if (__builtin_expect(c != nullptr, 1)) return static_cast<gcCache*>(c);
  return cache_slow();
}

// Zeroes a small object (16-byte multiples); most are a few words.
inline void zero_small(void* p, size_t n) {
  if (n <= 128) {
    for (char *q = static_cast<char*>(p), *e = q + n; q < e; q += 16) {
      reinterpret_cast<uint64_t*>(q)[0] = 0;
      reinterpret_cast<uint64_t*>(q)[1] = 0;
    }
  } else {
    memset(p, 0, n);
  }
}

}  // namespace

void* alloc_object(size_t size, gcKind kind, const gort_gc_type* type) {
  gcCache* c = cache();
  if (!c) return errno = ENOMEM, nullptr;
  size_t full = size;
  if (kind == gcKind::typed && __builtin_add_overflow(size, kTypedHeader, &full))
    return errno = ENOMEM, nullptr;
  // Scanned objects are at least 16 bytes: the 8-byte class would make
  // them 8-byte aligned (only noscan objects use the tiny tier below 16).
  if (full < kTinySize && kind != gcKind::noscan) full = kTinySize;
  if (kind == gcKind::typed && full == kTypedHeader) full++;  // the object must follow its header
  void* p;
  size_t psize = full;  // what the heap profile counts: the class or page size
  if (full <= kMaxSmallSize && (full >= kTinySize || kind != gcKind::noscan)) {
    uint32_t cls = alloc::size_to_class(full);
    p = alloc_small(c, cls, kind);
    if (__builtin_expect(p == nullptr, 0)) return errno = ENOMEM, nullptr;
    // Still in the busy region: a stop never sees the object half made.
    zero_small(p, alloc::class_to_size[cls]);
    psize = alloc::class_to_size[cls];
  } else if (full <= kMaxSmallSize) {
    p = alloc_tiny(c, full == 0 ? 1 : full);  // zeroed whole when its block was made
  } else {
    p = alloc_large(full, kind);  // zeroed
    psize = (full + kPageSize - 1) & ~(kPageSize - 1);
  }
  if (__builtin_expect(p == nullptr, 0)) return errno = ENOMEM, nullptr;
  uintptr_t key = reinterpret_cast<uintptr_t>(p) & ~(kTinySize - 1);
  if (kind == gcKind::typed) {
    uintptr_t* h = static_cast<uintptr_t*>(p);
    h[0] = reinterpret_cast<uintptr_t>(type);
    h[1] = size;
    p = static_cast<char*>(p) + kTypedHeader;
  }
  busy_exit();
  if (__builtin_expect((c->next_sample -= static_cast<int64_t>(psize)) < 0, 0))
    return sampled(c, key, psize, p);
  return p;
}

void flush_cache(gcCache* c) {
  for (uint32_t sc = 0; sc < kNumGCSpanClasses; sc++)
    if (c->alloc[sc]) uninstall(c, sc);
  c->tiny = 0;
  c->tinyoffset = 0;
}

void flush_all_caches() {
  for (gcCache* c = g_allcaches.load(std::memory_order_acquire); c; c = c->allnext) {
    flush_cache(c);
    g_cache_marked_bytes += c->marked_bytes;
    c->marked_bytes = 0;
  }
}

void prepare_sweep() {
  // Whole lists move in O(1): mark termination must not walk the heap.
  auto splice = [](spanList& from, spanList& to) {
    if (from.empty()) return;
    from.last->next = to.first;
    if (to.first)
      to.first->prev = from.last;
    else
      to.last = from.last;
    to.first = from.first;
    from.first = from.last = nullptr;
  };
  for (uint32_t sc = 0; sc < kNumGCSpanClasses; sc++) {
    gcCentral& cen = g_central[sc];
    alloc::lock_guard g(cen.lock);
    splice(cen.partial, cen.unswept);
    splice(cen.full, cen.unswept);
  }
  alloc::lock_guard g(g_large.lock);
  splice(g_large.full, g_large.unswept);
  splice(g_large.partial, g_large.unswept);
}

void heap_fork(int phase) {
  if (phase == 1) {  // unlock in the reverse order
    fork_lock_phase(g_empty_lock, phase);
    fork_lock_phase(g_large.lock, phase);
    for (int sc = kNumGCSpanClasses - 1; sc >= 0; sc--) fork_lock_phase(g_central[sc].lock, phase);
    fork_lock_phase(g_cachealloc_lock, phase);
    return;
  }
  fork_lock_phase(g_cachealloc_lock, phase);
  for (int sc = 0; sc < kNumGCSpanClasses; sc++) fork_lock_phase(g_central[sc].lock, phase);
  fork_lock_phase(g_large.lock, phase);
  fork_lock_phase(g_empty_lock, phase);
}

mspan* find_live_object(uintptr_t p, uint32_t* idx) {
  for (int tries = 0;; tries++) {
    mspan* s = gc_span_of(p);
    if (!s) return nullptr;
    uint32_t gen = __atomic_load_n(&s->sweepgen, __ATOMIC_ACQUIRE);
    if (!(gen & 1)) {
      mspan* r = find_object(p, idx);
      std::atomic_thread_fence(std::memory_order_acquire);
      if (__atomic_load_n(&s->sweepgen, __ATOMIC_RELAXED) == gen) return r;
    }
    // Being swept: one span's bitmaps, a few microseconds.
    if (tries > 64) sched_yield();
    __builtin_ia32_pause();
  }
}

// The heap profiler holds its lock in a busy region, so the collector can
// take it while sweeping (alloc/mprof.h).
static void prof_busy_enter() {
  busy_enter();
}
static void prof_busy_exit() {
  busy_exit();
}
__attribute__((constructor, used)) static void prof_hooks() {
  __atomic_store_n(&alloc::g_prof_nostop_enter, &prof_busy_enter, __ATOMIC_RELEASE);
  __atomic_store_n(&alloc::g_prof_nostop_exit, &prof_busy_exit, __ATOMIC_RELEASE);
}

}  // namespace gort::gc

using namespace gort::gc;

namespace gort::gc {
namespace {
// The fast path of untyped objects of 16 B to 32 KiB: a leaf function (no
// call but tail calls, so no register saves); everything else, and any
// miss here, goes to alloc_object.
inline void* alloc_untyped(size_t size, gcKind kind) {
  auto* c = static_cast<gcCache*>(alloc::tl_thread.gccache);
  if (__builtin_expect(c != nullptr && size - kTinySize <= kMaxSmallSize - kTinySize, 1)) {
    uint32_t cls = alloc::size_to_class(size);
    busy_enter();
    mspan* s = c->alloc[gc_span_class(cls, kind)];
    if (__builtin_expect(s != nullptr, 1)) {
      uint32_t idx = next_free_fast(s);
      if (__builtin_expect(idx < s->nelems, 1)) {
        mark_allocated(c, s);
        void* p = reinterpret_cast<void*>(object_base(s, idx));
        zero_small(p, s->elemsize);
        if (__builtin_expect((c->next_sample -= s->elemsize) < 0, 0)) {
          busy_exit();
          return sampled(c, reinterpret_cast<uintptr_t>(p), s->elemsize, p);
        }
        return busy_exit_ret(p);
      }
    }
    busy_exit_quiet();
  }
  return alloc_object(size, kind, nullptr);
}
}  // namespace
}  // namespace gort::gc

GORT_EXPORT void* gort_gc_alloc(size_t size, const gort_gc_type* type) {
  if (!type) return alloc_untyped(size < kTinySize ? kTinySize : size, gcKind::conservative);
  if (!type->trace && !type->ptrmap) return alloc_object(size, gcKind::noscan, nullptr);
  return alloc_object(size, gcKind::typed, type);
}

GORT_EXPORT void* gort_gc_alloc_noscan(size_t size) {
  return alloc_untyped(size, gcKind::noscan);
}

GORT_EXPORT void* gort_gc_base(const void* p) {
  uint32_t idx;
  mspan* s = find_live_object(reinterpret_cast<uintptr_t>(p), &idx);
  if (!s) return nullptr;
  uintptr_t base = object_base(s, idx);
  if (s->gckind == gcKind::typed) {
    base += kTypedHeader;
    if (reinterpret_cast<uintptr_t>(p) < base) return nullptr;  // inside the header
  }
  return reinterpret_cast<void*>(base);
}

GORT_EXPORT size_t gort_gc_size(const void* p) {
  uint32_t idx;
  mspan* s = find_live_object(reinterpret_cast<uintptr_t>(p), &idx);
  if (!s) return 0;
  uintptr_t base = object_base(s, idx);
  if (s->gckind == gcKind::typed) {
    if (reinterpret_cast<uintptr_t>(p) != base + kTypedHeader) return 0;
    return reinterpret_cast<const uintptr_t*>(base)[1];
  }
  if (reinterpret_cast<uintptr_t>(p) != base) return 0;
  return object_size(s);
}
