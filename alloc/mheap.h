// mheap: the page heap under every allocation.
//
// Address space comes from the OS in arenas of 64 MiB, each aligned to 64 MiB
// (so also to 2 MiB huge pages), as in Go on 64-bit Linux. A region larger
// than one arena (a huge allocation) is a run of adjacent arenas. Regions are
// reserved PROT_NONE and committed (made read-write) 4 MiB at a time as the
// heap grows, like Go's sysReserve/sysMap: a strict commit limit
// (vm.overcommit_memory=2) charges only what the heap has used, and nothing is
// reserved before the first allocation but what that allocation needs. When
// the OS refuses (ulimit -v, the commit limit) the allocation fails with
// ENOMEM and the heap is unchanged. Each arena has out-of-line metadata, a
// heapArena: a page map entry per 8 KiB page and a per-page "released" bit.
//
// Invariant: every page in a span (free or in use) is committed; pages of a
// region beyond cur_base_ are reserved only and in no span.
//
// Page map (O(1) pointer -> span): arenas[addr >> 26] is the arena's
// heapArena or null (not gort's memory); its spans[page] is
//  - the span, for every page of an in-use (small or large) span;
//  - the span, for the first and last page of a free span; null inside it;
//  - null for pages that are in no span.
// So free() of any pointer costs two loads to find its span, and a pointer the
// allocator does not own reads null instead of crashing. The class window
// below is set for exactly the pages of small spans inside it.
//
// Free pages are kept as free spans, coalesced with free neighbours on every
// free, in lists by size (1..127 pages, exact; a two-word bitmap says which
// are non-empty) plus, for larger runs, a treap ordered by (npages, base):
// best fit with the lowest address on ties is one descent, O(log n) expected
// in the number of free runs, whatever the fragmentation (a linear walk of a
// list of large runs cost O(n) per allocation). Within an exact list, spans
// that are still backed by memory come first so reuse avoids page faults;
// fully released spans go last.
//
// Scavenger queue (Go's scavenger index does the same job with a bitmap per
// chunk): every free span with backed pages is also in scavq_, in the order it
// (re)entered the free set. The scavenger releases from the front while the
// front is old enough and stops at the first young one, so each pass costs
// O(spans released + 1), never a rescan of every list after each release. The
// queue is only nearly ordered by age (a carved prefix keeps its older age but
// goes to the back), which delays no span by more than the scavenge delay
// after it entered the queue: the front is released by then, and by
// induction everything ahead of a span.
//
// Huge pages (GORT_THP, docs/alloc.md "Transparent Huge Pages"). Arenas are
// 64 MiB aligned and committed 4 MiB at a time, so 2 MiB huge pages can back
// the heap; best fit with the lowest address keeps the used pages packed low,
// so huge pages stay dense and whole free ones gather at the top. With
// GORT_THP=on every committed step gets MADV_HUGEPAGE (off: MADV_NOHUGEPAGE;
// system: no advice). When huge pages may be in use (on, or system with the
// kernel's setting "always"), the scavenger is huge-page aware (Go 1.21's
// scavenger, TCMalloc's Temeraire): it releases the whole 2 MiB pages inside
// an old free span first, and a part of a 2 MiB page only when fewer than
// half of that page's pages are in use. Breaking a mostly used huge page
// would cost every access to the rest of it a TLB miss, and khugepaged would
// collapse it again anyway, refilling what was released (Go issue 63334). A
// free span whose parts were kept is re-aged (it waits another delay, and
// again, while its huge page stays dense). Under a memory limit and on
// demand (gort_scavenge, malloc_trim) everything free is released.
//
// page_search_steps counts the nodes visited by the large-run search and the
// spans examined by the scavenger, so tests assert the cost (an operation
// count, not a time).
//
// released bit (per page): 1 when the page holds no memory (never touched, or
// given back with MADV_DONTNEED) and reads as zero. A span allocated from
// pages that are all released needs no zeroing (calloc uses this).
//
// Lock ordering: mcentral.lock before mheap.lock; mheap.lock is a leaf (no
// allocator lock is taken while holding it, and nothing in it calls malloc).
// The scavenger drops mheap.lock around the madvise of a span's pages; the
// page map of a wholly free arena (64 KiB) it releases with the lock held,
// because an allocation from that arena would write the map.
#pragma once

#include <cstddef>
#include <cstdint>

#include "alloc/fixalloc.h"
#include "alloc/gcbits.h"
#include "alloc/lock.h"
#include "alloc/mspan.h"

namespace gort::alloc {

inline constexpr size_t kArenaShift = 26;
inline constexpr size_t kArenaSize = size_t{1} << kArenaShift;  // 64 MiB
inline constexpr size_t kPagesPerArena = kArenaSize / kPageSize;
inline constexpr size_t kAddrBits = 48;  // x86-64 user space
inline constexpr size_t kArenaL1 = size_t{1} << (kAddrBits - kArenaShift);
inline constexpr size_t kFreeListsExact = 128;  // free lists by exact page count 1..127
// The heap commits address space in steps of 4 MiB (two huge pages, like Go's
// 4 MiB palloc chunks): few mprotect calls, and whole huge pages.
inline constexpr size_t kCommitStep = size_t{4} << 20;
inline constexpr size_t kHugePageSize = size_t{2} << 20;
inline constexpr uintptr_t kPagesPerHuge = kHugePageSize / kPageSize;

// The page map array comes first and is page-aligned: when a whole arena is
// free and released, it is all zero, and the scavenger releases it too.
struct heapArena {
  mspan* spans[kPagesPerArena];
  uint64_t released[kPagesPerArena / 64];
};
static_assert(sizeof(heapArena::spans) % 4096 == 0);

// The class window: arenas are placed from kWindowBase upward (Go's first
// arena hint), and for the first kWindowBytes of that range a flat map holds
// four bytes per page: the size class of the small span the page belongs to
// (0 if none), the page's index within that span, and the id of the mcache
// that owns the span (mcentral.h, "Owned spans"; 0 for none): free() pushes an
// object onto its own stack only when its id is there, so a thread never
// reuses another thread's object (and its cache line) at once. From those and the
// class's constants (class_checks) free() finds an object's class and checks
// that the pointer starts an object with one load from an address computed
// from the pointer alone, never reading the mspan. That matters because the
// class decides which stack free() writes, and the next malloc of that class
// waits for that store: going through the arena and span (three dependent
// loads) made every malloc+free pair ~1 ns slower. The map is reserved (not
// committed) at the first heap growth; a page of it covers 8 MiB of heap.
// Memory outside the window (if the hint address was taken) is found through
// the two-level page map instead, on free()'s slow path.
//
// Invariant: an entry is 0 unless its page is in a small span, so an entry's
// owner half never matches a cache's id (never 0) for any other page.
inline constexpr uintptr_t kWindowBase = 0x00c000000000;
inline constexpr size_t kWindowBytes = size_t{1} << 40;  // 1 TiB of heap
extern uint32_t* g_window;
extern uintptr_t g_window_pages;  // 0 until the map is reserved (or if it cannot be)
// Makes free() take its slow path for every pointer from now on (the heap
// profiler, alloc/mprof.h): the window reads as empty, and is still kept.
void window_hide();

// A small object's page entry: class | page-in-span << 8 | owner << 16, or 0
// (not in a small span, or outside the window). The owner half changes under
// the mcentral's lock while other threads read it in free(): relaxed atomics,
// a stale value is only a hint (the object goes the other way, correctly).
inline uint32_t window_entry(const void* p) {
  uintptr_t idx = (reinterpret_cast<uintptr_t>(p) - kWindowBase) >> kPageShift;
  if (__builtin_expect(idx < g_window_pages, 1))
    return __atomic_load_n(&g_window[idx], __ATOMIC_RELAXED);
  return 0;
}
inline uint32_t window_owner(uint32_t entry) {
  return entry >> 16;
}
// Marks the pages of small span s as owned by cache id owner (mcentral.cc).
void window_set_owner(const mspan* s, uint16_t owner);
inline uint32_t window_class(const void* p) {
  return window_entry(p) & 0xff;
}
// Offset of p from the start of its span, given its window entry: the
// page-in-span byte only. (It once shifted the owner half in too, which put
// owner * 2 MiB into the offset: the object-start check still passed for
// power-of-two classes, whose sizes divide 2 MiB, and failed for every other
// class, so every free of an owned span's object of those classes, own or
// remote, went the slow way round free_slow, block_span and the page map.
// The fast-path golden test measures 16 B and 1 KiB, and missed it.)
inline uintptr_t window_span_offset(const void* p, uint32_t entry) {
  static_assert(kPageShift >= 8);
  return (reinterpret_cast<uintptr_t>(p) & (kPageSize - 1)) +
         (uintptr_t{entry & 0xff00} << (kPageShift - 8));
}

// arenas is a flat 4 Mi-entry table (32 MiB of zero pages in .bss: only the
// entries of arenas in use are ever touched).
extern heapArena* g_arenas[kArenaL1];

// The span of p, or nullptr if p is not in a span (including foreign pointers
// and null). Lock-free: entries of in-use spans do not change while the span
// is in use by its owner.
inline heapArena* arena_of_ptr(const void* ptr) {
  uintptr_t p = reinterpret_cast<uintptr_t>(ptr);
  if (p >> kAddrBits) return nullptr;
  return g_arenas[p >> kArenaShift];
}
inline uintptr_t page_index(const void* ptr) {
  return (reinterpret_cast<uintptr_t>(ptr) >> kPageShift) % kPagesPerArena;
}

inline mspan* span_of(const void* ptr) {
  uintptr_t p = reinterpret_cast<uintptr_t>(ptr);
  if (p >> kAddrBits) return nullptr;
  heapArena* a = g_arenas[p >> kArenaShift];
  if (!a) return nullptr;
  return a->spans[(p >> kPageShift) % kPagesPerArena];
}

struct heapStats {
  size_t mapped = 0;          // arena bytes committed (read-write): every page in a span
  size_t reserved = 0;        // arena address space reserved (PROT_NONE until committed)
  size_t inuse_pages = 0;     // pages in small or large spans
  size_t free_pages = 0;      // pages in free spans (backed or not)
  size_t released_pages = 0;  // free pages that hold no memory
  size_t large_inuse = 0;     // large spans in use
  uint64_t large_allocs = 0;  // cumulative
  uint64_t large_frees = 0;
  uint64_t scavenged_bytes = 0;  // cumulative bytes returned to the OS
  uint64_t scavenge_passes = 0;
  uint64_t page_search_steps = 0;  // cumulative: treap nodes + scavenger queue entries visited
  size_t free_large_runs = 0;      // free runs in the treap
  size_t meta_mapped = 0;          // span metadata and arena metadata
};

class mheap {
 public:
  // Allocates a span of npages pages, aligned to align_pages pages (a power of
  // two), in state st. Returns nullptr when the OS refuses memory.
  // room_pages: prefer a free run with that many pages more, the block at its
  // start (the rest stays free after it: realloc growth room); taken only
  // from free runs the heap has, never by growing it.
  mspan* alloc_span(uintptr_t npages, spanState st, uintptr_t align_pages = 1,
                    uintptr_t room_pages = 0);
  // A span of class cls for an mcentral: alloc_span + init_small + pageclass.
  mspan* alloc_small_span(uint32_t cls);
  // A span for the collector (gc/heap.h): cls > 0 is a span of that size
  // class holding kind objects; cls == 0 is a large object of npages pages
  // and size bytes. Bitmaps are zero; the class window is not set, so free()
  // of a GC object takes the slow path and is refused. nullptr: out of memory.
  mspan* alloc_gc_span(uint32_t cls, gcKind kind, uintptr_t npages, size_t size);
  // Returns an in-use span's pages to the free lists (coalescing). freed_at
  // (coarse ns) backdates the pages' age when they were idle before this call
  // (a drained transfer cache); -1 means now.
  void free_span(mspan* s, int64_t freed_at = -1);
  // Shrinks a large span in place to npages (frees the tail).
  void shrink_span(mspan* s, uintptr_t npages);
  // Grows a large span in place to npages if the pages after it are free.
  bool try_grow_span(mspan* s, uintptr_t npages);
  // Releases to the OS free spans that have been free for at least min_age_ns
  // (all free spans if min_age_ns is 0). Returns bytes released; *next_ns gets
  // the time until the next span becomes old enough, or -1 if none is waiting.
  // With huge-page awareness on and min_age_ns > 0, parts of mostly used
  // huge pages stay (see "Huge pages" above).
  size_t scavenge(int64_t min_age_ns, int64_t* next_ns);
  // Turns huge-page awareness on or off (the scavenger sets it when it starts).
  void set_huge_aware(bool on) {
    lock_guard g(lock_);
    huge_aware_ = on;
  }
  // Backed bytes in free spans (what the scavenger could release).
  size_t free_backed_bytes();

  heapStats stats();
  // Checks the invariants above over every free span (for tests; O(heap)).
  // Returns nullptr if they hold, else what is wrong.
  const char* verify();
  // Fork support: lock before fork, unlock in the parent, reset in the child.
  void lock() { lock_.lock(); }
  void unlock() { lock_.unlock(); }
  void reset_lock() { lock_.reset(); }

 private:
  mspan* alloc_locked(uintptr_t npages, uintptr_t align_pages, uintptr_t room_pages);
  mspan* find_free(uintptr_t npages);
  bool grow(uintptr_t npages);
  bool alloc_bitmaps(uint32_t nelems, uint64_t** alloc_bits, uint64_t** mark_bits);
  void free_bitmaps(uint32_t nelems, uint64_t* alloc_bits, uint64_t* mark_bits);
  bool reserve_region(size_t want);
  bool map_arena_meta(uintptr_t base, size_t bytes);
  bool commit_window(uintptr_t base, size_t bytes);
  mspan* carve(mspan* f, uintptr_t start, uintptr_t npages);
  void insert_free(mspan* s);
  void remove_free(mspan* s);
  void treap_insert(mspan** link, mspan* s);
  void treap_remove(mspan* s);
  mspan* treap_best_fit(uintptr_t npages);
  const char* treap_verify(mspan* t, mspan* lo, mspan* hi, uintptr_t* n);
  void scavq_push(mspan* s);
  void scavq_remove(mspan* s);
  void free_locked(mspan* s);
  void set_pages(uintptr_t base, uintptr_t npages, mspan* s);
  void set_page_class(uintptr_t base, uintptr_t npages, uint8_t cls);
  void set_free_ends(mspan* s);
  uintptr_t count_released(uintptr_t base, uintptr_t npages, bool clear);
  void mark_released(uintptr_t base, uintptr_t npages);
  void release_arena_maps(const mspan* s);
  uintptr_t huge_inuse_pages(uintptr_t hbase);
  void release_window(const mspan* s, uintptr_t* lo, uintptr_t* hi);
  bool huge_sparse(uintptr_t hbase) { return huge_inuse_pages(hbase) < kPagesPerHuge / 2; }
  void reserve_window();
  heapArena* arena_of(uintptr_t addr) { return g_arenas[addr >> kArenaShift]; }

  mutex lock_;                      // guards everything below
  spanList free_[kFreeListsExact];  // free_[n]: free spans of exactly n pages
  mspan* free_large_ = nullptr;     // treap root: free spans of >= kFreeListsExact pages
  mspan* scavq_first_ = nullptr;    // scavenger queue (free spans with backed pages)
  mspan* scavq_last_ = nullptr;
  uint64_t nonempty_[kFreeListsExact / 64] = {};
  fixalloc<mspan, size_t{1} << 30> spanalloc_;  // regions grow up to 1 GiB each
  gcBitsAlloc gcbits_;
  uintptr_t next_hint_ = 0;  // where the next arena region would be adjacent
  // The newest region's reserved, not yet committed part (Go's curArena);
  // grow() commits from cur_base_ up.
  uintptr_t cur_base_ = 0, cur_end_ = 0;
  bool huge_aware_ = false;  // scavenge keeps parts of dense huge pages
  heapStats st_;
};

extern mheap g_heap;

}  // namespace gort::alloc
