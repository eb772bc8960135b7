// Sweeping; see sweep.h.
#include "gc/sweep.h"

#include "alloc/mprof.h"
#include "alloc/options.h"
#include "gc/final.h"

namespace gort::gc {

namespace {

// GORT_DEBUG=gcpoison=1: every object this sweep frees (allocated, not
// marked) is filled with kPoison, before the bitmaps swap.
constexpr uint64_t kPoison = 0xdeaddeaddeaddeadull;
void poison_freed(const mspan* s) {
  size_t size = object_size(s);
  for (uint32_t i = 0; i < s->nelems; i++) {
    if (!object_allocated(s, i) || (s->gcmarkBits[i / 64] >> (i % 64) & 1)) continue;
    auto* w = reinterpret_cast<uint64_t*>(object_base(s, i));
    for (size_t k = 0; k < size / 8; k++) w[k] = kPoison;
  }
}

sweepResult swap_bits(mspan* s);

}  // namespace

sweepResult sweep_span(mspan* s) {
  if (!s->specials) return swap_bits(s);
  bool queued;
  sweepResult r;
  {
    alloc::lock_guard g(specials_lock());
    queued = sweep_specials(s);
    r = swap_bits(s);
  }
  if (queued) finalizers_poke();
  return r;
}

namespace {

// The heap profile: objects of the span that this sweep frees (allocated,
// not marked) and that were sampled are counted as freed (alloc/mprof.h).
// Only spans holding sampled objects pay for the walk.
void profile_freed(mspan* s) {
  alloc::mprof_free_objects(s, [](const mspan* sp, uint32_t i) {
    return object_allocated(sp, i) && !(sp->gcmarkBits[i / 64] >> (i % 64) & 1);
  });
}

sweepResult swap_bits(mspan* s) {
  if (__builtin_expect(alloc::g_options.gcpoison, 0)) poison_freed(s);
  if (__builtin_expect(__atomic_load_n(&s->profiled, __ATOMIC_RELAXED) != 0, 0)) profile_freed(s);
  uint32_t words = (s->nelems + 63u) / 64u;
  uint32_t marked = 0;
  for (uint32_t w = 0; w < words; w++)
    marked += static_cast<uint32_t>(__builtin_popcountll(s->gcmarkBits[w]));
  size_t size = object_size(s);
  uint32_t before = s->alloc_count;
  // Odd while the bitmaps change: find_live_object readers retry (the old
  // alloc bitmap is cleared in place below, under a reader that may still
  // look at it). The release store of the new sweepgen ends it.
  __atomic_store_n(&s->sweepgen, g_sweepgen.load(std::memory_order_relaxed) - 1, __ATOMIC_RELAXED);
  std::atomic_thread_fence(std::memory_order_release);
  uint64_t* old = s->allocBits;
  s->allocBits = s->gcmarkBits;
  for (uint32_t w = 0; w < words; w++) old[w] = 0;
  s->gcmarkBits = old;
  s->alloc_count = static_cast<uint16_t>(marked);
  __atomic_store_n(&s->freeindex, 0, __ATOMIC_RELAXED);
  s->allocCache = 0;
  s->needzero = true;
  __atomic_store_n(&s->sweepgen, g_sweepgen.load(std::memory_order_relaxed), __ATOMIC_RELEASE);
  if (before > marked) {
    uint64_t freed = uint64_t{before - marked} * size;
    g_heap_alloc.fetch_sub(static_cast<int64_t>(freed), std::memory_order_relaxed);
    g_total_freed.fetch_add(freed, std::memory_order_relaxed);
  }
  return marked == 0 ? sweepResult::empty : sweepResult::kept;
}

}  // namespace

bool sweep_one() {
  for (uint32_t sc = 0; sc <= kNumGCSpanClasses; sc++) {
    gcCentral& cen = sc == kNumGCSpanClasses ? g_large : g_central[sc];
    if (!__atomic_load_n(&cen.unswept.first, __ATOMIC_RELAXED)) continue;
    alloc::lock_guard g(cen.lock);
    mspan* s = cen.unswept.first;
    if (!s) continue;
    cen.unswept.remove(s);
    if (sweep_span(s) == sweepResult::empty) {
      alloc::lock_guard e(g_empty_lock);
      g_empty.push_front(s);
    } else if (s->alloc_count < s->nelems) {
      cen.partial.push_front(s);
    } else {
      cen.full.push_front(s);
    }
    return true;
  }
  return false;
}

void free_empty_spans() {
  for (;;) {
    mspan* s;
    {
      alloc::lock_guard e(g_empty_lock);
      s = g_empty.first;
      if (!s) return;
      g_empty.remove(s);
    }
    alloc::g_heap.free_span(s);
  }
}

}  // namespace gort::gc
