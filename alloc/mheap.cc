// The page heap; see mheap.h for the design and invariants.
#include "alloc/mheap.h"

#include <cstring>

#include "alloc/scavenger.h"

namespace gort::alloc {

constinit heapArena* g_arenas[kArenaL1] = {};
uint16_t* g_window = nullptr;
uintptr_t g_window_pages = 0;
constinit mheap g_heap;

// First arena address tried, as in Go: recognisable in a debugger, far from
// the program's own mappings, and 64 MiB aligned. It is the class window's
// base.
static constexpr uintptr_t kFirstArenaHint = kWindowBase;

// ---- page map ----

void mheap::set_pages(uintptr_t base, uintptr_t npages, mspan* s) {
  for (uintptr_t i = 0; i < npages; i++) {
    uintptr_t a = base + i * kPageSize;
    arena_of(a)->spans[(a >> kPageShift) % kPagesPerArena] = s;
  }
}

void mheap::set_page_class(uintptr_t base, uintptr_t npages, uint8_t cls) {
  uintptr_t idx = (base - kWindowBase) >> kPageShift;
  if (idx >= g_window_pages) return;  // outside the window (base below it wraps)
  for (uintptr_t i = 0; i < npages; i++)
    g_window[idx + i] = cls ? static_cast<uint16_t>(i << 8 | cls) : 0;
}

void mheap::reserve_window() {
  size_t pages = kWindowBytes >> kPageShift;
  void* m = sys_map(pages * sizeof(uint16_t), 4096, true);
  if (!m) return;  // no window: free() takes the two-level lookup
  g_window = static_cast<uint16_t*>(m);
  __atomic_store_n(&g_window_pages, pages, __ATOMIC_RELEASE);
}

void mheap::set_free_ends(mspan* s) {
  uintptr_t last = s->limit() - kPageSize;
  arena_of(s->base)->spans[(s->base >> kPageShift) % kPagesPerArena] = s;
  arena_of(last)->spans[(last >> kPageShift) % kPagesPerArena] = s;
}

// Counts released pages in [base, base+npages); clears their bits if asked.
uintptr_t mheap::count_released(uintptr_t base, uintptr_t npages, bool clear) {
  uintptr_t n = 0;
  while (npages > 0) {
    heapArena* a = arena_of(base);
    uintptr_t page = (base >> kPageShift) % kPagesPerArena;
    uintptr_t word = page / 64, bit = page % 64;
    uintptr_t take = 64 - bit < npages ? 64 - bit : npages;
    uint64_t mask = (take == 64 ? ~uint64_t{0} : ((uint64_t{1} << take) - 1)) << bit;
    n += static_cast<uintptr_t>(__builtin_popcountll(a->released[word] & mask));
    if (clear) a->released[word] &= ~mask;
    base += take * kPageSize;
    npages -= take;
  }
  return n;
}

void mheap::mark_released(uintptr_t base, uintptr_t npages) {
  while (npages > 0) {
    heapArena* a = arena_of(base);
    uintptr_t page = (base >> kPageShift) % kPagesPerArena;
    uintptr_t word = page / 64, bit = page % 64;
    uintptr_t take = 64 - bit < npages ? 64 - bit : npages;
    a->released[word] |= (take == 64 ? ~uint64_t{0} : ((uint64_t{1} << take) - 1)) << bit;
    base += take * kPageSize;
    npages -= take;
  }
}

// Every arena strictly inside a free, released span has an all-zero page map
// and class-window slice (only a free span's end pages have entries, and no
// page is small): give those pages back as well. They read as zero when
// touched again.
void mheap::release_arena_maps(const mspan* s) {
  uintptr_t first = (s->base + kPageSize + kArenaSize - 1) & ~(kArenaSize - 1);
  for (uintptr_t a = first; a + kArenaSize <= s->limit() - kPageSize; a += kArenaSize) {
    heapArena* ha = arena_of(a);
    sys_release(ha, sizeof ha->spans);
    uintptr_t idx = (a - kWindowBase) >> kPageShift;
    if (idx < g_window_pages) sys_release(g_window + idx, kPagesPerArena * sizeof(uint16_t));
  }
}

// ---- free lists ----

void mheap::insert_free(mspan* s) {
  s->state = spanState::free;
  set_free_ends(s);
  spanList& l = s->npages < kFreeListsExact ? free_[s->npages] : free_large_;
  if (s->nbacked > 0)
    l.push_front(s);  // reuse backed memory first: no page faults
  else
    l.push_back(s);
  if (s->npages < kFreeListsExact) nonempty_[s->npages / 64] |= uint64_t{1} << (s->npages % 64);
}

void mheap::remove_free(mspan* s) {
  if (s->npages < kFreeListsExact) {
    free_[s->npages].remove(s);
    if (free_[s->npages].empty()) nonempty_[s->npages / 64] &= ~(uint64_t{1} << (s->npages % 64));
  } else {
    free_large_.remove(s);
  }
}

mspan* mheap::find_free(uintptr_t npages) {
  if (npages < kFreeListsExact) {
    for (uintptr_t w = npages / 64; w < kFreeListsExact / 64; w++) {
      uint64_t bits = nonempty_[w];
      if (w == npages / 64) bits &= ~uint64_t{0} << (npages % 64);
      if (bits) return free_[w * 64 + static_cast<uintptr_t>(__builtin_ctzll(bits))].first;
    }
  }
  // Best fit among the large runs; on a tie the lower address, which keeps
  // the heap compact and leaves high addresses free to be released.
  mspan* best = nullptr;
  for (mspan* s = free_large_.first; s; s = s->next) {
    if (s->npages < npages) continue;
    if (!best || s->npages < best->npages || (s->npages == best->npages && s->base < best->base))
      best = s;
  }
  return best;
}

// f is a free span already removed from the lists. Returns a span for
// [start, start+npages) and puts the pieces before and after back as free.
// Counts released pages only over the carved piece and the prefix (both
// bounded by the request), never over the remainder, which may be the rest of
// a 64 MiB arena.
mspan* mheap::carve(mspan* f, uintptr_t start, uintptr_t npages) {
  uintptr_t end = start + npages * kPageSize;
  uintptr_t fend = f->limit();
  uintptr_t backed_left = f->nbacked;
  mspan* s = f;
  if (start > f->base) {  // keep f as the free prefix
    f->npages = (start - f->base) / kPageSize;
    f->nbacked = f->npages - count_released(f->base, f->npages, false);
    backed_left -= f->nbacked;
    insert_free(f);
    s = spanalloc_.alloc();
  }
  if (end < fend) {
    mspan* t = spanalloc_.alloc();
    t->base = end;
    t->npages = (fend - end) / kPageSize;
    t->nbacked = backed_left - (npages - count_released(start, npages, false));
    t->free_since = f->free_since;
    insert_free(t);
  }
  s->base = start;
  s->npages = npages;
  return s;
}

// s is a span not in any list whose pages were just freed (or scavenged);
// merges it with free neighbours and inserts the result. The merged span's age
// is the youngest of the parts: memory freed a moment ago is likely reused.
void mheap::free_locked(mspan* s) {
  uintptr_t prev = s->base - kPageSize;
  if (arena_of(prev)) {
    mspan* p = arena_of(prev)->spans[(prev >> kPageShift) % kPagesPerArena];
    if (p && p->state == spanState::free) {
      remove_free(p);
      arena_of(prev)->spans[(prev >> kPageShift) % kPagesPerArena] = nullptr;
      p->npages += s->npages;
      p->nbacked += s->nbacked;
      if (s->free_since > p->free_since) p->free_since = s->free_since;
      spanalloc_.free(s, coarse_nanotime());
      s = p;
    }
  }
  uintptr_t next = s->limit();
  if (arena_of(next)) {
    mspan* n = arena_of(next)->spans[(next >> kPageShift) % kPagesPerArena];
    if (n && n->state == spanState::free && n->base == next) {
      remove_free(n);
      arena_of(next)->spans[(next >> kPageShift) % kPagesPerArena] = nullptr;
      s->npages += n->npages;
      s->nbacked += n->nbacked;
      if (n->free_since > s->free_since) s->free_since = n->free_since;
      spanalloc_.free(n, coarse_nanotime());
    }
  }
  insert_free(s);
}

// ---- growth ----

bool mheap::grow(uintptr_t npages) {
  if (npages > (uintptr_t{1} << (kAddrBits - kPageShift - 1))) return false;
  size_t bytes = (npages * kPageSize + kArenaSize - 1) & ~(kArenaSize - 1);
  void* p = nullptr;
  if (next_hint_ == 0) {
    next_hint_ = kFirstArenaHint;
    reserve_window();
  }
  if (next_hint_ + bytes < (uintptr_t{1} << kAddrBits))
    p = sys_map_at(reinterpret_cast<void*>(next_hint_), bytes);
  if (!p) p = sys_map(bytes, kArenaSize);
  if (!p) return false;
  uintptr_t base = reinterpret_cast<uintptr_t>(p);
  if ((base + bytes) >> kAddrBits) {
    sys_unmap(p, bytes);
    return false;
  }
  for (uintptr_t a = base; a < base + bytes; a += kArenaSize) {
    void* meta = sys_map(sizeof(heapArena), 4096);
    if (!meta) fatal("out of memory mapping arena metadata");
    heapArena* ha = static_cast<heapArena*>(meta);
    memset(ha->released, 0xff, sizeof ha->released);  // fresh pages hold no memory
    __atomic_store_n(&g_arenas[a >> kArenaShift], ha, __ATOMIC_RELEASE);
    st_.meta_mapped += sizeof(heapArena);
  }
  next_hint_ = base + bytes;
  st_.mapped += bytes;
  mspan* s = spanalloc_.alloc();
  s->base = base;
  s->npages = bytes / kPageSize;
  s->nbacked = 0;
  s->free_since = coarse_nanotime();
  st_.free_pages += s->npages;
  st_.released_pages += s->npages;
  free_locked(s);
  return true;
}

// ---- allocation ----

mspan* mheap::alloc_locked(uintptr_t npages, uintptr_t align_pages) {
  if (npages == 0) fatal("mheap: allocation of 0 pages");
  uintptr_t need = npages + align_pages - 1;
  if (need < npages) return nullptr;
  mspan* f = find_free(need);
  if (!f) {
    if (!grow(need)) return nullptr;
    f = find_free(need);
    if (!f) return nullptr;
  }
  remove_free(f);
  uintptr_t align = align_pages * kPageSize;
  uintptr_t start = (f->base + align - 1) & ~(align - 1);
  mspan* s = carve(f, start, npages);
  uintptr_t released = count_released(s->base, npages, true);
  s->needzero = released != npages;
  st_.free_pages -= npages;
  st_.released_pages -= released;
  st_.inuse_pages += npages;
  set_pages(s->base, npages, s);
  return s;
}

mspan* mheap::alloc_span(uintptr_t npages, spanState st, uintptr_t align_pages) {
  lock_guard g(lock_);
  mspan* s = alloc_locked(npages, align_pages);
  if (!s) return nullptr;
  s->state = st;
  s->free_class = 0;
  s->next = s->prev = nullptr;
  if (st == spanState::large) {
    st_.large_inuse++;
    st_.large_allocs++;
  }
  return s;
}

mspan* mheap::alloc_small_span(uint32_t cls) {
  mspan* s = alloc_span(class_to_npages[cls], spanState::small);
  if (!s) return nullptr;
  lock_guard g(lock_);
  uint32_t nelems = static_cast<uint32_t>(s->npages * kPageSize / class_to_size[cls]);
  s->init_small(cls, gcbits_.alloc(nelems), gcbits_.alloc(nelems));
  set_page_class(s->base, s->npages, static_cast<uint8_t>(cls));
  return s;
}

mspan* mheap::alloc_gc_span(uint32_t cls, gcKind kind, uintptr_t npages, size_t size) {
  mspan* s =
      alloc_span(cls ? class_to_npages[cls] : npages, cls ? spanState::gc : spanState::gclarge);
  if (!s) return nullptr;
  lock_guard g(lock_);
  uint32_t nelems = 1;
  if (cls) {
    s->elemsize = class_to_size[cls];
    s->div_mul = div_mul_for(s->elemsize);
    nelems = static_cast<uint32_t>(s->npages * kPageSize / s->elemsize);
  } else {
    s->elemsize = static_cast<uint32_t>(size > 0xffffffffu ? 0 : size);  // 0: the whole span
    s->div_mul = 0;  // objindex() is 0 everywhere in the span
  }
  s->nelems = static_cast<uint16_t>(nelems);
  s->spanclass = make_span_class(cls, kind == gcKind::noscan);
  s->gckind = kind;
  s->alloc_count = 0;
  s->freeindex = 0;
  s->allocCache = 0;
  s->allocBits = gcbits_.alloc(nelems);
  s->gcmarkBits = gcbits_.alloc(nelems);
  return s;
}

void mheap::free_span(mspan* s, int64_t freed_at) {
  {
    lock_guard g(lock_);
    if (s->state == spanState::gc || s->state == spanState::gclarge) {
      gcbits_.free(s->allocBits, s->nelems);
      gcbits_.free(s->gcmarkBits, s->nelems);
      s->allocBits = s->gcmarkBits = nullptr;
      s->gckind = gcKind::noscan;
    }
    if (s->state == spanState::small) {
      set_page_class(s->base, s->npages, 0);
      gcbits_.free(s->allocBits, s->nelems);
      gcbits_.free(s->gcmarkBits, s->nelems);
      s->allocBits = s->gcmarkBits = nullptr;
    }
    if (s->state == spanState::large) {
      st_.large_inuse--;
      st_.large_frees++;
    }
    st_.inuse_pages -= s->npages;
    st_.free_pages += s->npages;
    set_pages(s->base, s->npages, nullptr);
    s->free_class = 0;
    s->nbacked = s->npages;
    s->free_since = freed_at >= 0 ? freed_at : coarse_nanotime();
    free_locked(s);
  }
  scavenger_notify();
}

void mheap::shrink_span(mspan* s, uintptr_t npages) {
  {
    lock_guard g(lock_);
    mspan* t = spanalloc_.alloc();
    t->base = s->base + npages * kPageSize;
    t->npages = s->npages - npages;
    s->npages = npages;
    st_.inuse_pages -= t->npages;
    st_.free_pages += t->npages;
    set_pages(t->base, t->npages, nullptr);
    t->nbacked = t->npages;
    t->free_since = coarse_nanotime();
    free_locked(t);
  }
  scavenger_notify();
}

bool mheap::try_grow_span(mspan* s, uintptr_t npages) {
  lock_guard g(lock_);
  uintptr_t extra = npages - s->npages;
  uintptr_t next = s->limit();
  if (!arena_of(next)) return false;
  mspan* n = arena_of(next)->spans[(next >> kPageShift) % kPagesPerArena];
  if (!n || n->state != spanState::free || n->base != next || n->npages < extra) return false;
  remove_free(n);
  mspan* piece = carve(n, next, extra);
  uintptr_t released = count_released(next, extra, true);
  if (released != extra) s->needzero = true;  // backed pages hold old data
  st_.free_pages -= extra;
  st_.released_pages -= released;
  st_.inuse_pages += extra;
  spanalloc_.free(piece, coarse_nanotime());
  s->npages = npages;
  set_pages(next, extra, s);
  return true;
}

// ---- scavenging ----

size_t mheap::scavenge(int64_t min_age_ns, int64_t* next_ns) {
  size_t released = 0;
  int64_t now = coarse_nanotime();
  lock_.lock();
  for (;;) {
    mspan* pick = nullptr;
    int64_t wait = -1;
    auto consider = [&](spanList& l) {
      for (mspan* s = l.first; s && !pick; s = s->next) {
        if (s->nbacked == 0) break;  // backed spans come first in each list
        int64_t age = now - s->free_since;
        if (age >= min_age_ns)
          pick = s;
        else if (wait < 0 || min_age_ns - age < wait)
          wait = min_age_ns - age;
      }
    };
    for (uintptr_t n = 1; n < kFreeListsExact && !pick; n++) consider(free_[n]);
    if (!pick) consider(free_large_);
    if (!pick) {
      if (next_ns) *next_ns = wait;
      break;
    }
    remove_free(pick);
    pick->state = spanState::scavenging;
    lock_.unlock();
    sys_release(reinterpret_cast<void*>(pick->base), pick->npages * kPageSize);
    lock_.lock();
    // While the lock was dropped a neighbour may have been freed; free_locked
    // only clears the ends of the spans it absorbs, so clear pick's own ends
    // first (it may become the interior of a larger span).
    uintptr_t last = pick->limit() - kPageSize;
    arena_of(pick->base)->spans[(pick->base >> kPageShift) % kPagesPerArena] = nullptr;
    arena_of(last)->spans[(last >> kPageShift) % kPagesPerArena] = nullptr;
    mark_released(pick->base, pick->npages);
    release_arena_maps(pick);
    st_.released_pages += pick->nbacked;
    released += pick->nbacked * kPageSize;
    pick->nbacked = 0;
    free_locked(pick);
  }
  // Span records: chunks with no live record go back too. Most empty out in
  // this very pass (releasing coalesces spans), and passes run only when
  // memory has been idle for the delay, which rate-limits the refaults of a
  // chunk that fills again.
  if (released || min_age_ns == 0) released += spanalloc_.release_empty(now);
  st_.scavenged_bytes += released;
  if (released) st_.scavenge_passes++;
  lock_.unlock();
  return released;
}

size_t mheap::free_backed_bytes() {
  lock_guard g(lock_);
  return (st_.free_pages - st_.released_pages) * kPageSize;
}

heapStats mheap::stats() {
  lock_guard g(lock_);
  heapStats s = st_;
  s.meta_mapped += spanalloc_.mapped() + gcbits_.mapped();
  return s;
}

const char* mheap::verify() {
  lock_guard g(lock_);
  uintptr_t free_pages = 0, released = 0;
  auto check = [&](spanList& l, uintptr_t exact) -> const char* {
    for (mspan* s = l.first; s; s = s->next) {
      if (s->state != spanState::free) return "a span in a free list is not free";
      if (exact && s->npages != exact) return "a free span is in the wrong list";
      if (!exact && s->npages < kFreeListsExact) return "a small free span is in the large list";
      uintptr_t last = s->limit() - kPageSize;
      if (arena_of(s->base)->spans[(s->base >> kPageShift) % kPagesPerArena] != s ||
          arena_of(last)->spans[(last >> kPageShift) % kPagesPerArena] != s)
        return "the page map does not point at a free span's ends";
      for (uintptr_t a = s->base + kPageSize; a < last; a += kPageSize) {
        if (arena_of(a)->spans[(a >> kPageShift) % kPagesPerArena] != nullptr)
          return "the page map has an entry inside a free span";
        if (window_class(reinterpret_cast<void*>(a)) != 0) return "a free page has a size class";
      }
      uintptr_t prev = s->base - kPageSize, next = s->limit();
      if (arena_of(prev)) {
        mspan* p = arena_of(prev)->spans[(prev >> kPageShift) % kPagesPerArena];
        if (p && p->state == spanState::free) return "two adjacent free spans were not coalesced";
      }
      if (arena_of(next)) {
        mspan* n = arena_of(next)->spans[(next >> kPageShift) % kPagesPerArena];
        if (n && n->state == spanState::free && n->base == next)
          return "two adjacent free spans were not coalesced";
      }
      uintptr_t r = count_released(s->base, s->npages, false);
      if (s->nbacked != s->npages - r) return "a free span's backed page count is wrong";
      free_pages += s->npages;
      released += r;
    }
    return nullptr;
  };
  for (uintptr_t n = 1; n < kFreeListsExact; n++) {
    if (const char* e = check(free_[n], n)) return e;
    bool bit = nonempty_[n / 64] >> (n % 64) & 1;
    if (bit != !free_[n].empty()) return "the non-empty bitmap disagrees with a free list";
  }
  if (const char* e = check(free_large_, 0)) return e;
  if (free_pages != st_.free_pages) return "free page statistics disagree with the free lists";
  if (released != st_.released_pages) return "released page statistics disagree with the bitmap";
  if ((st_.free_pages + st_.inuse_pages) * kPageSize != st_.mapped)
    return "in-use plus free pages do not add up to the mapped heap";
  return nullptr;
}

}  // namespace gort::alloc
