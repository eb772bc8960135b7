// Marking, scanning and the write barrier; see mark.h.
#include "gc/mark.h"

#include <cstring>

#include "alloc/sys.h"
#include "gc/roots.h"

#define GORT_EXPORT extern "C" __attribute__((visibility("default")))

// What a trace callback reports to: a marker's gcWork, or (w null) the
// verifier checking the object at from.
struct gort_gc_tracer {
  gort::gc::gcWork* w;
  uintptr_t from;
};

namespace gort::gc {

namespace {

// g_work_lock guards the global lists of full and empty work buffers. Taken
// by markers and, in busy regions, by write barriers; a leaf.
constinit alloc::mutex g_work_lock;
workbuf* g_full = nullptr;
workbuf* g_free = nullptr;
std::atomic<uint32_t> g_nfull{0};
size_t g_work_mapped = 0;

constexpr size_t kWorkChunk = 64 * sizeof(workbuf);

workbuf* getempty() {
  alloc::lock_guard g(g_work_lock);
  if (!g_free) {
    auto* b = static_cast<workbuf*>(alloc::sys_map(kWorkChunk, 4096));
    if (!b) alloc::fatal("out of memory mapping GC work buffers");
    g_work_mapped += kWorkChunk;
    for (size_t i = 0; i < kWorkChunk / sizeof(workbuf); i++) {
      b[i].next = g_free;
      g_free = &b[i];
    }
  }
  workbuf* b = g_free;
  g_free = b->next;
  b->n = 0;
  return b;
}

void putempty(workbuf* b) {
  alloc::lock_guard g(g_work_lock);
  b->next = g_free;
  g_free = b;
}

void putfull(workbuf* b) {
  alloc::lock_guard g(g_work_lock);
  b->next = g_full;
  g_full = b;
  g_nfull.fetch_add(1, std::memory_order_release);
}

workbuf* getfull() {
  if (g_nfull.load(std::memory_order_acquire) == 0) return nullptr;
  alloc::lock_guard g(g_work_lock);
  workbuf* b = g_full;
  if (b) {
    g_full = b->next;
    g_nfull.fetch_sub(1, std::memory_order_relaxed);
  }
  return b;
}

inline bool set_mark(mspan* s, uint32_t idx) {
  uint64_t bit = uint64_t{1} << (idx % 64);
  uint64_t* word = &s->gcmarkBits[idx / 64];
  if (__atomic_load_n(word, __ATOMIC_RELAXED) & bit) return false;
  // Allocated during this mark from a cache's span: black by range
  // (gc/heap.cc). A stale blackfrom read here is kNoBlack (the object is
  // then marked as if white: harmless) or an older start whose objects the
  // cache's uninstall has already set.
  if (idx >= __atomic_load_n(&s->blackfrom, __ATOMIC_RELAXED) && !(s->allocBits[idx / 64] & bit))
    return false;
  return !(__atomic_fetch_or(word, bit, __ATOMIC_RELAXED) & bit);
}

// Calls visit(word) for each pointer word of a typed object: by its pointer
// map (element by element, only the map's set bits), or through its trace
// callback, which reports to t.
template <class Visit>
void visit_typed(uintptr_t base, gort_gc_tracer* t, Visit&& visit) {
  const uintptr_t* h = reinterpret_cast<const uintptr_t*>(base);
  auto* type = reinterpret_cast<const gort_gc_type*>(__atomic_load_n(&h[0], __ATOMIC_RELAXED));
  if (!type) return;  // not initialised: allocated during this very stop
  size_t size = h[1];
  uintptr_t obj = base + kTypedHeader;
  if (type->trace) {
    type->trace(reinterpret_cast<void*>(obj), size, t);
    return;
  }
  if (!type->ptrmap) return;
  size_t elem_words = type->elem_size / sizeof(uintptr_t);
  size_t nwords = size / sizeof(uintptr_t);
  if (elem_words == 0 || elem_words > nwords) elem_words = nwords;
  const uintptr_t* words = reinterpret_cast<const uintptr_t*>(obj);
  size_t map_words = (elem_words + 63) / 64;
  for (size_t e = 0; e + elem_words <= nwords || (e < nwords && e == 0); e += elem_words) {
    for (size_t m = 0; m < map_words; m++) {
      uint64_t bits = type->ptrmap[m];
      while (bits) {
        size_t i = e + m * 64 + static_cast<size_t>(__builtin_ctzll(bits));
        bits &= bits - 1;
        if (i - e >= elem_words || i >= nwords) break;
        visit(__atomic_load_n(&words[i], __ATOMIC_RELAXED));
      }
    }
  }
}

// Calls visit(word) for each word of the object at base that may hold a
// pointer, the way its kind says.
template <class Visit>
void visit_object(uintptr_t base, const mspan* s, gort_gc_tracer* t, Visit&& visit) {
  switch (s->gckind) {
    case gcKind::noscan:
      return;
    case gcKind::conservative:
      for (uintptr_t a = base, end = base + object_size(s); a + 8 <= end; a += 8)
        visit(__atomic_load_n(reinterpret_cast<const uintptr_t*>(a), __ATOMIC_RELAXED));
      return;
    case gcKind::typed:
      visit_typed(base, t, visit);
      return;
  }
}

// gcverify: a marked object holds v; v must not lead to an unmarked object.
void verify_word(uintptr_t from, uintptr_t v) {
  uint32_t idx;
  mspan* s = find_object(v, &idx);
  if (!s || (s->gcmarkBits[idx / 64] >> (idx % 64) & 1)) return;
  alloc::fatal(
      "gc verify: the marked object at %p holds %p, which points into an unmarked object at %p: "
      "a pointer store that skipped gort_gc_write, or a collector bug",
      reinterpret_cast<void*>(from), reinterpret_cast<void*>(v),
      reinterpret_cast<void*>(object_base(s, idx)));
}

}  // namespace

void gcWork::refill_push() {
  if (cur_) putfull(cur_);
  cur_ = getempty();
}

bool gcWork::refill_pop() {
  workbuf* b = getfull();
  if (!b) return false;
  if (cur_) putempty(cur_);
  cur_ = b;
  return true;
}

void gcWork::flush() {
  if (!cur_) return;
  if (cur_->n)
    putfull(cur_);
  else
    putempty(cur_);
  cur_ = nullptr;
}

void work_fork(int phase) {
  fork_lock_phase(g_work_lock, phase);
}

void gcWork::balance() {
  if (!cur_ || cur_->n < 8) return;
  workbuf* b = getempty();
  uint32_t half = cur_->n / 2;
  cur_->n -= half;
  memcpy(b->obj, cur_->obj + cur_->n, half * sizeof(uintptr_t));
  b->n = half;
  putfull(b);
}

bool work_available() {
  return g_nfull.load(std::memory_order_acquire) != 0;
}

void shade(uintptr_t p, gcWork& w) {
  uint32_t idx;
  mspan* s = find_object(p, &idx);
  if (!s || !set_mark(s, idx)) return;
  w.bytes_marked += object_size(s);
  if (s->gckind != gcKind::noscan) w.push(object_base(s, idx));
}

void scan_range(uintptr_t lo, uintptr_t hi, gcWork& w) {
  lo = (lo + 7) & ~uintptr_t{7};
  for (uintptr_t a = lo; a + 8 <= hi; a += 8)
    shade(__atomic_load_n(reinterpret_cast<const uintptr_t*>(a), __ATOMIC_RELAXED), w);
}

namespace {

// Large objects are scanned in oblets of kOblet bytes (Go's maxObletBytes):
// scanning the object's first one pushes the others as grey entries (their
// addresses, inside the object), each scanned on its own. A 1 GiB pointer
// array is then 8,192 short steps that markers share, not one scan of
// hundreds of milliseconds, which in an assist (a busy region) would hold
// every stop of the world back for as long. Objects with a trace callback
// are scanned whole: the callback cannot be asked for a part.
constexpr size_t kOblet = 128 << 10;

// Scans the part [lo, hi) of a large object at base with s's kind.
void scan_oblet(uintptr_t base, const mspan* s, uintptr_t lo, uintptr_t hi, gcWork& w) {
  if (s->gckind == gcKind::conservative) {
    for (uintptr_t a = lo; a + 8 <= hi; a += 8)
      shade(__atomic_load_n(reinterpret_cast<const uintptr_t*>(a), __ATOMIC_RELAXED), w);
    return;
  }
  // Typed, by pointer map: word i of the object proper is a pointer if bit
  // (i mod element words) of the map is set.
  const uintptr_t* h = reinterpret_cast<const uintptr_t*>(base);
  auto* type = reinterpret_cast<const gort_gc_type*>(__atomic_load_n(&h[0], __ATOMIC_RELAXED));
  size_t nwords = h[1] / sizeof(uintptr_t);
  size_t elem_words = type->elem_size / sizeof(uintptr_t);
  if (elem_words == 0 || elem_words > nwords) elem_words = nwords;
  uintptr_t obj = base + kTypedHeader;
  if (lo < obj) lo = obj;
  size_t i = (lo - obj) / sizeof(uintptr_t);
  size_t end = hi > obj ? (hi - obj) / sizeof(uintptr_t) : 0;
  if (end > nwords) end = nwords;
  const uintptr_t* words = reinterpret_cast<const uintptr_t*>(obj);
  for (size_t j = i % elem_words; i < end; i++) {
    if (type->ptrmap[j / 64] >> (j % 64) & 1)
      shade(__atomic_load_n(&words[i], __ATOMIC_RELAXED), w);
    if (++j == elem_words) j = 0;
  }
}

// Whether the object of s is scanned in oblets (see kOblet).
inline bool in_oblets(const mspan* s) {
  if (s->state != alloc::spanState::gclarge || object_size(s) <= kOblet) return false;
  if (s->gckind == gcKind::conservative) return true;
  if (s->gckind != gcKind::typed) return false;
  const uintptr_t* h = reinterpret_cast<const uintptr_t*>(s->base);
  auto* type = reinterpret_cast<const gort_gc_type*>(__atomic_load_n(&h[0], __ATOMIC_RELAXED));
  return type && !type->trace && type->ptrmap;
}

}  // namespace

void scan_object(uintptr_t obj, mspan* s, gcWork& w) {
  if (__builtin_expect(in_oblets(s), 0)) {
    uintptr_t base = s->base, end = base + object_size(s);
    if (obj == base)
      for (uintptr_t o = base + kOblet; o < end; o += kOblet) w.push(o);
    scan_oblet(base, s, obj, obj + kOblet < end ? obj + kOblet : end, w);
    return;
  }
  gort_gc_tracer t{&w, 0};
  visit_object(obj, s, &t, [&w](uintptr_t v) { shade(v, w); });
}

// Every span on a gcCentral's (or the large objects') partial or full list:
// the heap as the checks below see it, with the world stopped and every
// cache flushed.
template <class F>
void for_each_listed_span(F fn) {
  auto list = [&](const spanList& l) {
    for (const mspan* s = l.first; s; s = s->next) fn(s);
  };
  for (uint32_t sc = 0; sc < kNumGCSpanClasses; sc++) {
    list(g_central[sc].partial);
    list(g_central[sc].full);
  }
  list(g_large.partial);
  list(g_large.full);
}

// fn(base) for every marked, allocated object of every listed span that may
// hold pointers.
template <class F>
void for_each_marked_object(F fn) {
  for_each_listed_span([&](const mspan* s) {
    if (s->gckind == gcKind::noscan) return;
    for (uint32_t i = 0; i < s->nelems; i++)
      if ((s->gcmarkBits[i / 64] >> (i % 64) & 1) && object_allocated(s, i))
        fn(object_base(s, i), s);
  });
}

uint64_t verify_heap() {
  uint64_t checked = 0;
  for_each_marked_object([&](uintptr_t base, const mspan* s) {
    gort_gc_tracer t{nullptr, base};
    visit_object(base, s, &t, [base](uintptr_t v) { verify_word(base, v); });
    checked++;
  });
  return checked;
}

void verify_unmarked() {
  for_each_listed_span([](const mspan* s) {
    for (uint32_t w = 0; w < (s->nelems + 63u) / 64u; w++)
      if (s->gcmarkBits[w])
        alloc::fatal(
            "gc: gcverify: object %u of the span at %p is marked before the cycle began (a "
            "mark set outside a mark phase)",
            w * 64 + static_cast<uint32_t>(__builtin_ctzll(s->gcmarkBits[w])),
            reinterpret_cast<void*>(s->base));
  });
}

void for_each_marked_word(void (*fn)(uintptr_t obj, uintptr_t v, void* arg), void* arg) {
  for_each_marked_object([&](uintptr_t base, const mspan* s) {
    // A trace callback reports to gort_gc_trace, which (w null) verifies
    // instead: poolcheck walks typed objects by pointer map only.
    if (s->gckind == gcKind::typed) {
      auto* type =
          reinterpret_cast<const gort_gc_type*>(reinterpret_cast<const uintptr_t*>(base)[0]);
      if (type && type->trace) return;
    }
    gort_gc_tracer t{nullptr, base};
    visit_object(base, s, &t, [&](uintptr_t v) { fn(base, v, arg); });
  });
}

void scan_object_children(uintptr_t obj, gcWork& w) {
  uint32_t idx;
  mspan* s = find_object(obj, &idx);
  if (s) scan_object(object_base(s, idx), s, w);
}

// drain pops through a small FIFO (Boehm's and Cher et al.'s prefetch
// buffer): an object's first line is prefetched when it enters the FIFO and
// scanned kPrefetch pops later, so the cache misses of several objects
// overlap instead of each stalling its scan (grey objects are scattered, and
// every mark bit set is a locked instruction that waits for what came before
// it). Objects still in the FIFO when the budget ends go back to w: they are
// grey, and nothing else holds them.
constexpr int kPrefetch = 8;

bool drain(gcWork& w, uint64_t budget, uint64_t* scanned) {
  uintptr_t fifo[kPrefetch];
  int head = 0, len = 0;  // fifo[head] is the oldest of len entries
  uint64_t n = 0;
  while (n < budget) {
    while (len < kPrefetch) {
      uintptr_t obj;
      if (!w.pop(&obj)) break;
      __builtin_prefetch(reinterpret_cast<const void*>(obj));
      fifo[(head + len++) % kPrefetch] = obj;
    }
    if (len == 0) break;
    uintptr_t obj = fifo[head];
    head = (head + 1) % kPrefetch;
    len--;
    if ((n & 63) == 63 && !work_available()) w.balance();
    scan_object(obj, alloc::span_of(reinterpret_cast<void*>(obj)), w);
    n++;
  }
  for (; len > 0; len--, head = (head + 1) % kPrefetch) w.push(fifo[head]);
  if (scanned) *scanned = n;
  return w.empty() && !work_available();
}

bool is_marked(uintptr_t p) {
  uint32_t idx;
  mspan* s = find_object(p, &idx);
  if (!s) return false;
  return __atomic_load_n(&s->gcmarkBits[idx / 64], __ATOMIC_RELAXED) >> (idx % 64) & 1;
}

void (*g_scope_escape)(void* const*, const void*) = nullptr;

// The barrier's slow half: the collector is marking.
// The store it follows is done; if mark termination came between the
// barrier's check and mark_busy_enter, old and v were in this thread's
// registers at that stop, which mark termination shades
// (shade_stopped_registers), so nothing is left to do.
__attribute__((noinline)) void barrier_slow(void* old, void* v) {
  if (!tl_gc.rec && !register_current_thread(false)) return;
  if (!mark_busy_enter()) return;
  gcWork& w = tl_gc.rec->work;
  shade(reinterpret_cast<uintptr_t>(old), w);
  shade(reinterpret_cast<uintptr_t>(v), w);
  busy_exit();
}

}  // namespace gort::gc

using namespace gort::gc;

GORT_EXPORT void gort_gc_trace(gort_gc_tracer* t, const void* p) {
  if (t->w)
    shade(reinterpret_cast<uintptr_t>(p), *t->w);
  else
    verify_word(t->from, reinterpret_cast<uintptr_t>(p));
}

// The slow half of the inline barrier (gort/gc.h): the collector is
// marking, or scopes exist (then the store may be an escape).
GORT_EXPORT void gort_gc_write_slow(void* old, void* value) {
  if (g_marking.load(std::memory_order_relaxed)) barrier_slow(old, value);
  scope_escape(nullptr, value);
}
GORT_EXPORT void gort_gc_write_slow_at(void** slot, void* old, void* value) {
  if (g_marking.load(std::memory_order_relaxed)) barrier_slow(old, value);
  scope_escape(slot, value);
}
