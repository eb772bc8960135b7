// The page heap; see mheap.h for the design and invariants.
#include "alloc/mheap.h"

#include <cstring>

#include "alloc/options.h"
#include "alloc/scavenger.h"

namespace gort::alloc {

constinit heapArena* g_arenas[kArenaL1] = {};
uint32_t* g_window = nullptr;
uintptr_t g_window_pages = 0;
// The window's real size: g_window_pages is what free()'s fast path sees,
// which the heap profiler sets to 0 to send every free to the slow path
// (window_hide); the map itself is kept up to date either way.
static uintptr_t g_window_npages = 0;
static bool g_window_hidden = false;
constinit mheap g_heap;

void window_hide() {
  __atomic_store_n(&g_window_hidden, true, __ATOMIC_RELAXED);
  __atomic_store_n(&g_window_pages, 0, __ATOMIC_RELEASE);
}

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
  if (idx >= g_window_npages) return;  // outside the window (base below it wraps)
  for (uintptr_t i = 0; i < npages; i++)
    __atomic_store_n(&g_window[idx + i], cls ? static_cast<uint32_t>(i << 8 | cls) : 0u,
                     __ATOMIC_RELAXED);
}

void window_set_owner(const mspan* s, uint16_t owner) {
  uintptr_t idx = (s->base - kWindowBase) >> kPageShift;
  if (idx >= g_window_npages) return;
  for (uintptr_t i = 0; i < s->npages; i++)
    __atomic_store_n(
        &g_window[idx + i],
        static_cast<uint32_t>(owner) << 16 | static_cast<uint32_t>(i << 8) | s->free_class,
        __ATOMIC_RELAXED);
}

// The window is reserved PROT_NONE, covering as much heap as the address-space
// limit allows (a 1 GiB RLIMIT_AS needs a 512 KiB window, not 512 MiB), and
// its pages are made writable as the arenas they describe are committed
// (commit_window), so it costs no commit charge for heap that does not exist.
void mheap::reserve_window() {
  size_t cover = kWindowBytes;
  size_t limit = sys_as_limit();
  if (limit < cover) cover = (limit + kArenaSize - 1) & ~(kArenaSize - 1);
  size_t pages = cover >> kPageShift;
  void* m = sys_reserve(nullptr, pages * sizeof(uint32_t), 4096);
  if (!m) return;  // no window: free() takes the two-level lookup
  g_window = static_cast<uint32_t*>(m);
  g_window_npages = pages;
  if (!__atomic_load_n(&g_window_hidden, __ATOMIC_RELAXED))
    __atomic_store_n(&g_window_pages, pages, __ATOMIC_RELEASE);
}

// Makes the window's entries for heap pages [base, base+bytes) writable.
// false: no commit for them (the heap must not grow over them).
bool mheap::commit_window(uintptr_t base, size_t bytes) {
  uintptr_t lo = (base - kWindowBase) >> kPageShift, hi = lo + (bytes >> kPageShift);
  if (base < kWindowBase || lo >= g_window_npages) return true;  // outside the window
  if (hi > g_window_npages) hi = g_window_npages;
  uintptr_t a = reinterpret_cast<uintptr_t>(g_window + lo) & ~uintptr_t{4095};
  uintptr_t b = (reinterpret_cast<uintptr_t>(g_window + hi) + 4095) & ~uintptr_t{4095};
  return sys_commit(reinterpret_cast<void*>(a), b - a);
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
    if (idx < g_window_npages) sys_release(g_window + idx, kPagesPerArena * sizeof(uint32_t));
  }
}

// ---- free lists ----

// Treap priority: a hash of the span's base (unique among free spans), so the
// shape is that of a random binary search tree whatever order runs arrive in.
static inline uint64_t treap_prio(const mspan* s) {
  uint64_t x = s->base >> kPageShift;
  x *= 0x9e3779b97f4a7c15ull;
  return x ^ (x >> 29);
}
static inline bool treap_less(const mspan* a, const mspan* b) {
  return a->npages < b->npages || (a->npages == b->npages && a->base < b->base);
}

void mheap::treap_insert(mspan** link, mspan* s) {
  mspan* t = *link;
  if (!t) {
    s->tleft = s->tright = nullptr;
    *link = s;
    return;
  }
  st_.page_search_steps++;
  if (treap_less(s, t)) {
    treap_insert(&t->tleft, s);
    if (treap_prio(t->tleft) > treap_prio(t)) {  // rotate right
      mspan* l = t->tleft;
      t->tleft = l->tright;
      l->tright = t;
      *link = l;
    }
  } else {
    treap_insert(&t->tright, s);
    if (treap_prio(t->tright) > treap_prio(t)) {  // rotate left
      mspan* r = t->tright;
      t->tright = r->tleft;
      r->tleft = t;
      *link = r;
    }
  }
}

void mheap::treap_remove(mspan* s) {
  mspan** link = &free_large_;
  while (*link != s) {
    if (!*link) fatal("mheap: a free run is missing from the treap");
    st_.page_search_steps++;
    link = treap_less(s, *link) ? &(*link)->tleft : &(*link)->tright;
  }
  // Merge the two subtrees in place of s, higher priority on top.
  mspan *a = s->tleft, *b = s->tright;
  while (a && b) {
    if (treap_prio(a) > treap_prio(b)) {
      *link = a;
      link = &a->tright;
      a = a->tright;
    } else {
      *link = b;
      link = &b->tleft;
      b = b->tleft;
    }
  }
  *link = a ? a : b;
  s->tleft = s->tright = nullptr;
}

// The smallest run of at least npages pages, lowest address on ties: one
// descent. The lower address keeps the heap compact and leaves high addresses
// free to be released.
mspan* mheap::treap_best_fit(uintptr_t npages) {
  mspan* best = nullptr;
  for (mspan* t = free_large_; t;) {
    st_.page_search_steps++;
    if (t->npages >= npages) {
      best = t;
      t = t->tleft;
    } else {
      t = t->tright;
    }
  }
  return best;
}

void mheap::scavq_push(mspan* s) {
  s->in_scavq = true;
  s->snext = nullptr;
  s->sprev = scavq_last_;
  if (scavq_last_)
    scavq_last_->snext = s;
  else
    scavq_first_ = s;
  scavq_last_ = s;
}

void mheap::scavq_remove(mspan* s) {
  if (!s->in_scavq) return;
  if (s->sprev)
    s->sprev->snext = s->snext;
  else
    scavq_first_ = s->snext;
  if (s->snext)
    s->snext->sprev = s->sprev;
  else
    scavq_last_ = s->sprev;
  s->snext = s->sprev = nullptr;
  s->in_scavq = false;
}

void mheap::insert_free(mspan* s) {
  s->state = spanState::free;
  set_free_ends(s);
  if (s->npages < kFreeListsExact) {
    spanList& l = free_[s->npages];
    if (s->nbacked > 0)
      l.push_front(s);  // reuse backed memory first: no page faults
    else
      l.push_back(s);
    nonempty_[s->npages / 64] |= uint64_t{1} << (s->npages % 64);
  } else {
    treap_insert(&free_large_, s);
    st_.free_large_runs++;
  }
  if (s->nbacked > 0) scavq_push(s);
}

void mheap::remove_free(mspan* s) {
  if (s->npages < kFreeListsExact) {
    free_[s->npages].remove(s);
    if (free_[s->npages].empty()) nonempty_[s->npages / 64] &= ~(uint64_t{1} << (s->npages % 64));
  } else {
    treap_remove(s);
    st_.free_large_runs--;
  }
  scavq_remove(s);
}

mspan* mheap::find_free(uintptr_t npages) {
  if (npages < kFreeListsExact) {
    for (uintptr_t w = npages / 64; w < kFreeListsExact / 64; w++) {
      uint64_t bits = nonempty_[w];
      if (w == npages / 64) bits &= ~uint64_t{0} << (npages % 64);
      if (bits) return free_[w * 64 + static_cast<uintptr_t>(__builtin_ctzll(bits))].first;
    }
  }
  return treap_best_fit(npages);
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
    s = spanalloc_.try_alloc();
  }
  if (end < fend) {
    mspan* t = spanalloc_.try_alloc();
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

// Address space is reserved in arena-aligned regions of whole arenas,
// PROT_NONE, and committed (made read-write) in steps of kCommitStep from the
// start of the newest region (Go's curArena): only committed pages are ever in
// a span. A region that cannot be placed right after the last one starts a
// new current region; the old one's uncommitted tail is unmapped, giving its
// address space back (its arenas keep their metadata, with no pages in spans).
bool mheap::grow(uintptr_t npages) {
  if (npages > (uintptr_t{1} << (kAddrBits - kPageShift - 1))) return false;
  size_t want = (npages * kPageSize + kCommitStep - 1) & ~(kCommitStep - 1);
  if (cur_end_ - cur_base_ < want && !reserve_region(want)) return false;
  if (!commit_window(cur_base_, want)) return false;
  if (!sys_commit(reinterpret_cast<void*>(cur_base_), want)) return false;
  if (g_options.thp != thpMode::system)
    sys_hugepage_advice(reinterpret_cast<void*>(cur_base_), want, g_options.thp == thpMode::on);
  mspan* s = spanalloc_.try_alloc();
  if (!s) return false;  // the pages stay committed and are used next time
  s->base = cur_base_;
  s->npages = want / kPageSize;
  s->nbacked = 0;
  s->free_since = coarse_nanotime();
  cur_base_ += want;
  st_.mapped += want;
  st_.free_pages += s->npages;
  st_.released_pages += s->npages;
  free_locked(s);
  // Under a memory limit the heap's growth is what brings it near the
  // limit: the scavenger checks (a malloc-only program frees nothing that
  // would wake it while it grows over freed holes it cannot reuse).
  if (scavenger_memory_limit() > 0) scavenger_limit_kick();
  return true;
}

// Reserves a region with room for want bytes past the current commit point:
// extends the current region when the next arenas are free, else starts a new
// one. Arena metadata is mapped for every arena of the region first, so a
// failure leaves nothing half-published.
bool mheap::reserve_region(size_t want) {
  if (next_hint_ == 0) {
    next_hint_ = kFirstArenaHint;
    reserve_window();
  }
  auto round = [](size_t b) { return (b + kArenaSize - 1) & ~(kArenaSize - 1); };
  auto fits = [](uintptr_t at, size_t b) { return at + b > at && ((at + b) >> kAddrBits) == 0; };
  // Extend the current region in place if the arenas after it are free.
  size_t more = round(want - (cur_end_ - cur_base_));
  if (cur_end_ != 0 && cur_end_ == next_hint_ && fits(cur_end_, more) &&
      sys_reserve(reinterpret_cast<void*>(cur_end_), more, kArenaSize)) {
    if (map_arena_meta(cur_end_, more)) {
      cur_end_ += more;
      next_hint_ = cur_end_;
      st_.reserved += more;
      return true;
    }
    sys_unmap(reinterpret_cast<void*>(cur_end_), more);
    return false;
  }
  // Else a new region: at the hint, else wherever the OS puts it.
  size_t bytes = round(want);
  void* p = nullptr;
  if (fits(next_hint_, bytes))
    p = sys_reserve(reinterpret_cast<void*>(next_hint_), bytes, kArenaSize);
  if (!p) p = sys_reserve(nullptr, bytes, kArenaSize);
  if (!p) return false;
  uintptr_t base = reinterpret_cast<uintptr_t>(p);
  if (!fits(base, bytes) || !map_arena_meta(base, bytes)) {
    sys_unmap(p, bytes);
    return false;
  }
  if (cur_end_ > cur_base_) sys_unmap(reinterpret_cast<void*>(cur_base_), cur_end_ - cur_base_);
  st_.reserved += bytes;
  st_.reserved -= cur_end_ - cur_base_;
  cur_base_ = base;
  cur_end_ = next_hint_ = base + bytes;
  return true;
}

// Gives every arena of [base, base+bytes) its heapArena, unless it has one
// from an earlier region there (whose pages were never committed, so its map
// is empty and its released bits set). Published one by one: an arena's
// metadata is never unmapped once published, as free() reads it without the
// lock. false: out of memory (the arenas published so far stay, empty).
bool mheap::map_arena_meta(uintptr_t base, size_t bytes) {
  for (uintptr_t a = base; a < base + bytes; a += kArenaSize) {
    if (arena_of(a)) continue;
    void* meta = sys_map(sizeof(heapArena), 4096);
    if (!meta) return false;
    heapArena* ha = static_cast<heapArena*>(meta);
    memset(ha->released, 0xff, sizeof ha->released);  // fresh pages hold no memory
    __atomic_store_n(&g_arenas[a >> kArenaShift], ha, __ATOMIC_RELEASE);
    st_.meta_mapped += sizeof(heapArena);
  }
  return true;
}

// ---- allocation ----

mspan* mheap::alloc_locked(uintptr_t npages, uintptr_t align_pages, uintptr_t room_pages) {
  if (npages == 0) fatal("mheap: allocation of 0 pages");
  uintptr_t need = npages + align_pages - 1;
  if (need < npages) return nullptr;
  // carve() needs up to two span records and grow() one: get them now, so
  // that running out of metadata memory fails here, before anything changes.
  if (!spanalloc_.ensure(3)) return nullptr;
  mspan* f = nullptr;
  if (room_pages && need + room_pages > need) f = find_free(need + room_pages);
  if (!f) f = find_free(need);
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

mspan* mheap::alloc_span(uintptr_t npages, spanState st, uintptr_t align_pages,
                         uintptr_t room_pages) {
  lock_guard g(lock_);
  mspan* s = alloc_locked(npages, align_pages, room_pages);
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

// A span's two bitmaps, taken before its pages so that running out of
// memory for them leaves nothing to undo but the bitmaps. false: no memory.
bool mheap::alloc_bitmaps(uint32_t nelems, uint64_t** alloc_bits, uint64_t** mark_bits) {
  lock_guard g(lock_);
  *alloc_bits = gcbits_.alloc(nelems);
  *mark_bits = *alloc_bits ? gcbits_.alloc(nelems) : nullptr;
  if (*mark_bits) return true;
  if (*alloc_bits) gcbits_.free(*alloc_bits, nelems);
  return false;
}

void mheap::free_bitmaps(uint32_t nelems, uint64_t* alloc_bits, uint64_t* mark_bits) {
  lock_guard g(lock_);
  gcbits_.free(alloc_bits, nelems);
  gcbits_.free(mark_bits, nelems);
}

mspan* mheap::alloc_small_span(uint32_t cls) {
  uint32_t nelems = static_cast<uint32_t>(class_to_npages[cls] * kPageSize / class_to_size[cls]);
  uint64_t *abits, *mbits;
  if (!alloc_bitmaps(nelems, &abits, &mbits)) return nullptr;
  mspan* s = alloc_span(class_to_npages[cls], spanState::small);
  if (!s) {
    free_bitmaps(nelems, abits, mbits);
    return nullptr;
  }
  lock_guard g(lock_);
  s->init_small(cls, abits, mbits);
  set_page_class(s->base, s->npages, static_cast<uint8_t>(cls));
  return s;
}

mspan* mheap::alloc_gc_span(uint32_t cls, gcKind kind, uintptr_t npages, size_t size) {
  if (cls) npages = class_to_npages[cls];
  uint32_t nelems = cls ? static_cast<uint32_t>(npages * kPageSize / class_to_size[cls]) : 1;
  uint64_t *abits, *mbits;
  if (!alloc_bitmaps(nelems, &abits, &mbits)) return nullptr;
  mspan* s = alloc_span(npages, cls ? spanState::gc : spanState::gclarge);
  if (!s) {
    free_bitmaps(nelems, abits, mbits);
    return nullptr;
  }
  lock_guard g(lock_);
  if (cls) {
    s->elemsize = class_to_size[cls];
    s->div_mul = div_mul_for(s->elemsize);
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
  s->blackfrom = kNoBlack;
  s->allocBits = abits;
  s->gcmarkBits = mbits;
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
    mspan* t = spanalloc_.try_alloc();
    if (!t) return;  // no record for the tail: the span keeps it (still correct)
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

// Pages of in-use spans in the huge page at hbase (2 MiB aligned, so inside
// one arena). In-use spans have every page in the page map; free spans only
// their ends, and those count as free.
uintptr_t mheap::huge_inuse_pages(uintptr_t hbase) {
  heapArena* a = arena_of(hbase);
  if (!a) return 0;
  uintptr_t first = (hbase >> kPageShift) % kPagesPerArena, n = 0;
  for (uintptr_t i = 0; i < kPagesPerHuge;) {
    mspan* s = a->spans[first + i];
    spanState st = s ? __atomic_load_n(&s->state, __ATOMIC_RELAXED) : spanState::free;
    if (st == spanState::free || st == spanState::scavenging || st == spanState::dead) {
      i++;
      continue;
    }
    // The span's pages from here to the end of the huge page.
    uintptr_t at = hbase + i * kPageSize, end = s->limit();
    uintptr_t k = ((end < hbase + kHugePageSize ? end : hbase + kHugePageSize) - at) / kPageSize;
    if (k == 0) k = 1;  // a stale entry: count the page, move on
    n += k;
    i += k;
  }
  return n;
}

// The part of free span s the huge-page-aware scavenger releases: its whole
// huge pages, and each end that lies in a sparse one. Sets [*lo, *hi), empty
// if nothing.
void mheap::release_window(const mspan* s, uintptr_t* lo, uintptr_t* hi) {
  const uintptr_t b = s->base, e = s->limit(), mask = kHugePageSize - 1;
  uintptr_t alo = (b + mask) & ~mask, ahi = e & ~mask;
  if (alo > ahi) {  // inside one huge page
    if (!huge_sparse(b & ~mask)) *lo = *hi = b;
    return;
  }
  *lo = (b == alo || huge_sparse(alo - kHugePageSize)) ? b : alo;
  *hi = (e == ahi || huge_sparse(ahi)) ? e : ahi;
}

size_t mheap::scavenge(int64_t min_age_ns, int64_t* next_ns) {
  size_t released = 0;
  int64_t now = coarse_nanotime();
  lock_.lock();
  for (;;) {
    // The queue's front is the span that has waited longest (see mheap.h):
    // if it is too young, so is everything behind it, to within the delay.
    mspan* pick = scavq_first_;
    if (pick) st_.page_search_steps++;
    if (pick && now - pick->free_since < min_age_ns) {
      if (next_ns) *next_ns = min_age_ns - (now - pick->free_since);
      break;
    }
    if (!pick) {
      if (next_ns) *next_ns = -1;
      break;
    }
    // What to release: all of pick, or under huge pages [rlo, rhi).
    uintptr_t rlo = pick->base, rhi = pick->limit();
    if (huge_aware_ && min_age_ns > 0) release_window(pick, &rlo, &rhi);
    if (rlo >= rhi) {  // all of it in dense huge pages: wait another delay
      scavq_remove(pick);
      pick->free_since = now;
      scavq_push(pick);
      continue;
    }
    remove_free(pick);
    pick->state = spanState::scavenging;
    lock_.unlock();
    sys_release(reinterpret_cast<void*>(rlo), rhi - rlo);
    lock_.lock();
    // While the lock was dropped a neighbour may have been freed; free_locked
    // only clears the ends of the spans it absorbs, so clear pick's own ends
    // first (it may become the interior of a larger span).
    uintptr_t last = pick->limit() - kPageSize;
    arena_of(pick->base)->spans[(pick->base >> kPageShift) % kPagesPerArena] = nullptr;
    arena_of(last)->spans[(last >> kPageShift) % kPagesPerArena] = nullptr;
    uintptr_t rpages = (rhi - rlo) / kPageSize;
    uintptr_t backed = rpages - count_released(rlo, rpages, false);
    mark_released(rlo, rpages);
    release_arena_maps(pick);  // arenas inside pick are in whole huge pages: released
    st_.released_pages += backed;
    released += backed * kPageSize;
    pick->nbacked -= backed;
    if (pick->nbacked > 0) pick->free_since = now;  // kept parts wait another delay
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

// Checks order (lo < t < hi) and heap priority below t; counts nodes.
const char* mheap::treap_verify(mspan* t, mspan* lo, mspan* hi, uintptr_t* n) {
  if (!t) return nullptr;
  ++*n;
  if (t->npages < kFreeListsExact) return "a small free span is in the treap";
  if ((lo && !treap_less(lo, t)) || (hi && !treap_less(t, hi))) return "the treap is out of order";
  if ((t->tleft && treap_prio(t->tleft) > treap_prio(t)) ||
      (t->tright && treap_prio(t->tright) > treap_prio(t)))
    return "the treap's priorities are out of order";
  if (const char* e = treap_verify(t->tleft, lo, t, n)) return e;
  return treap_verify(t->tright, t, hi, n);
}

static void flatten_treap(mspan* t, spanList* out) {
  if (!t) return;
  flatten_treap(t->tleft, out);
  out->push_back(t);
  flatten_treap(t->tright, out);
}

static uintptr_t count_backed_runs(const mspan* t) {
  if (!t) return 0;
  return (t->nbacked > 0) + count_backed_runs(t->tleft) + count_backed_runs(t->tright);
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
  // The treap: flattened into a list (linked through next) for check().
  uintptr_t nlarge = 0;
  if (const char* e = treap_verify(free_large_, nullptr, nullptr, &nlarge)) return e;
  if (nlarge != st_.free_large_runs) return "the treap's run count disagrees with its nodes";
  spanList large;  // no std::vector: malloc under mheap.lock could deadlock
  flatten_treap(free_large_, &large);
  const char* le = check(large, 0);
  for (mspan* t = large.first; t;) {  // put the links back as free spans keep them
    mspan* n = t->next;
    t->next = t->prev = nullptr;
    t = n;
  }
  if (le) return le;
  // The scavenger queue holds exactly the free spans with backed pages.
  uintptr_t queued = 0, backed_spans = 0;
  for (mspan* q = scavq_first_; q; q = q->snext) {
    if (q->state != spanState::free || !q->in_scavq) return "a queued span is not free";
    if (q->nbacked == 0) return "a fully released span is in the scavenger queue";
    if ((q->snext ? q->snext->sprev : scavq_last_) != q) return "the scavenger queue is broken";
    queued++;
  }
  for (uintptr_t n = 1; n < kFreeListsExact; n++)
    for (mspan* q = free_[n].first; q; q = q->next) backed_spans += q->nbacked > 0;
  backed_spans += count_backed_runs(free_large_);
  if (queued != backed_spans) return "the scavenger queue misses a backed free span";
  if (free_pages != st_.free_pages) return "free page statistics disagree with the free lists";
  if (released != st_.released_pages) return "released page statistics disagree with the bitmap";
  if ((st_.free_pages + st_.inuse_pages) * kPageSize != st_.mapped)
    return "in-use plus free pages do not add up to the mapped heap";
  return nullptr;
}

}  // namespace gort::alloc
