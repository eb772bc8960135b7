// mspan: a run of pages and the objects in it.
//
// Every byte of heap memory belongs to exactly one span. A span is either
//  - free: in one of the mheap's free lists, pages possibly released to the OS;
//  - small: cut into nelems objects of one size class, owned by that class's
//    mcentral (its partial or full list) or by no list while a cache empties it;
//  - large: one object of npages pages (a request over 32 KiB).
//
// Span metadata lives out of line (mheap.spanalloc), never inside the pages it
// describes, so a heap overflow cannot corrupt it and freed pages can be
// returned to the OS whole.
//
// GC state is here from day one, as in Go: allocBits has a bit per object that
// is handed out (to a cache or the program) and gcmarkBits is the collector's
// mark bitmap for the same objects. For explicit malloc spans the mcentral
// sets an alloc bit when it gives an object to a cache and clears it when the
// object comes back, which is also how a double free that reaches the mcentral
// is caught.
//
// free()'s fast path does not read the mspan at all (it checks a pointer
// against the class window and per-class constants, mheap.h); the slow paths
// and the mcentral read base, elemsize, div_mul and free_class, which
// come first, in one cache line.
#pragma once

#include <cstddef>
#include <cstdint>

#include "alloc/sizeclasses.h"

namespace gort::alloc {

struct mcache;

enum class spanState : uint8_t {
  dead = 0,    // metadata not describing any pages (in spanalloc's free list)
  free,        // in the mheap's free lists
  small,       // explicit-malloc objects of one size class
  large,       // one explicit-malloc object
  cached,      // a freed large span kept in a thread's mcache for reuse
  scavenging,  // taken out of the free lists by the scavenger, being released
  stack,       // a task stack (runtime/stack.h), never a malloc block
  gc,          // GC objects of one size class (gc/heap.h); never in the class window
  gclarge,     // one GC object of its own pages
};

// What a GC span's objects hold, which decides how the collector scans them
// (gc/heap.h). Malloc spans have gckind noscan.
enum class gcKind : uint8_t {
  noscan = 0,    // no pointers: never scanned
  conservative,  // every aligned word may be a pointer
  typed,         // a 16-byte header holds the gort_gc_type (pointer map or trace)
};
inline constexpr int kNumGCKinds = 3;

inline constexpr int kMaxObjsPerSpan = 1024;  // 8 KiB / 8 B
inline constexpr uint16_t kNoBlack = 0xffff;  // mspan::blackfrom: no range

struct mspan {
  // --- free() fast path ---
  uintptr_t base = 0;      // address of the first page
  uint32_t elemsize = 0;   // object size (small spans)
  uint32_t div_mul = 0;    // see div_mul_for(): offset -> object index
  uint8_t free_class = 0;  // size class when state == small, else 0
  spanState state = spanState::dead;
  spanClass spanclass = 0;
  bool needzero = false;  // large spans: some page may hold old data
  uint16_t nelems = 0;
  uint16_t alloc_count = 0;  // objects whose alloc bit is set
  // --- everything else ---
  uint16_t freeindex = 0;  // every object below freeindex is allocated
  // Small spans: the id of the mcache that allocates from this span alone
  // (mcentral.h, "Owned spans"), or 0 while the span is on the mcentral's
  // partial or full list. An owned span is on no list. The mcentral's lock
  // guards it.
  uint16_t owner = 0;
  // Small spans with an owner: the owning cache itself (for its reclaim
  // list) and where the span is for it (ownedWhere, mcentral.h "Owned
  // spans"). The mcentral's lock guards both.
  uint8_t owned_where = 0;
  mcache* ocache = nullptr;
  // Remote frees not yet merged into allocBits (mcentral.h, "Remote frees"):
  // how many frees have begun (each adds one before it sets its bit in
  // remoteBits()), and the link of the mcentral's pending list, which holds
  // the span from the free that takes the count from 0 until a merge brings
  // it back to 0. Atomics, no lock.
  uint32_t rcount = 0;
  mspan* rnext = nullptr;
  // Sampled objects of the heap profile in the span (alloc/mprof.h), and a
  // one-word filter of their indexes (bit idx % 32): a free looks an object
  // up in the profiler's table only when both say it may be sampled.
  // Written under the profiler's lock, read racily.
  uint16_t profiled = 0;
  uint32_t profiled_bits = 0;
  uintptr_t npages = 0;
  mspan* next = nullptr;  // list links (mcentral or mheap free list)
  mspan* prev = nullptr;
  int64_t free_since = 0;         // free spans: when the span last changed (ns)
  uintptr_t nbacked = 0;          // free spans: pages still backed by memory (not released)
  uint64_t* allocBits = nullptr;  // small spans: nelems bits each (gcbits.h)
  // GC spans: the collector's mark bits. Explicit-malloc small spans are
  // never marked, and use the same bitmap for their remote frees
  // (remoteBits()): a set bit is an object freed by a thread that does not
  // own the span, not yet merged into allocBits. Zero when the span is made
  // and when it is freed (every remote free is merged first).
  uint64_t* gcmarkBits = nullptr;
  // --- GC spans only (gc/heap.h, gc/sweep.cc) ---
  // allocCache: the complement of allocBits from freeindex on (Go's), so the
  // owning cache finds the next free object with one ctz. freeindex and
  // alloc_count above are read racily by markers (an object below freeindex
  // is allocated); only the cache that owns the span writes them. A span in
  // a cache is on no gcCentral list, so the sweeper never sees it.
  uint64_t allocCache = 0;
  // blackfrom: while the collector marks and a cache holds the span, the
  // freeindex the span had when the cache took it; kNoBlack otherwise. An
  // object at or past it whose alloc bit is clear was allocated during this
  // mark, and is black without a mark bit of its own (gc/heap.cc, "Black
  // allocation by range"): the cache sets the bits of the whole range when
  // it lets the span go. Written by the owning cache, read racily by markers.
  uint16_t blackfrom = kNoBlack;
  uint32_t sweepgen = 0;  // == gc sweepgen: swept this cycle; odd: being swept (gc/sweep.cc)
  gcKind gckind = gcKind::noscan;
  void* specials = nullptr;  // finalizers and weak references of its objects (gc/final.h)
  // --- free spans only (mheap.h) ---
  // Free runs of kFreeListsExact pages or more sit in the mheap's treap
  // (ordered by npages, then base; heap-ordered by a hash of base): tleft,
  // tright. Free spans with backed pages also sit in the scavenger's queue, in
  // the order they entered it: snext, sprev, in_scavq.
  mspan* tleft = nullptr;
  mspan* tright = nullptr;
  mspan* snext = nullptr;
  mspan* sprev = nullptr;
  bool in_scavq = false;

  uintptr_t limit() const { return base + npages * kPageSize; }
  // Small spans: whether off starts one of the span's objects (the check free()
  // makes, from the class alone).
  bool is_object_start(uintptr_t off) const { return class_object_start(free_class, off); }
  uint32_t objindex(uintptr_t p) const {
    return static_cast<uint32_t>((uint64_t{p - base} * div_mul) >> 32);
  }
  uint64_t* remoteBits() const { return gcmarkBits; }
  bool is_allocated(uint32_t i) const { return allocBits[i / 64] >> (i % 64) & 1; }
  void set_allocated(uint32_t i) { allocBits[i / 64] |= uint64_t{1} << (i % 64); }
  void clear_allocated(uint32_t i) { allocBits[i / 64] &= ~(uint64_t{1} << (i % 64)); }
  // Index of the first free object at or after freeindex, or nelems if none.
  uint32_t next_free_index();
  // Turns a span from the heap into a span of small objects of class cls,
  // with zeroed bitmaps of nelems bits.
  void init_small(uint32_t cls, uint64_t* alloc_bits, uint64_t* mark_bits);
};

// An intrusive doubly-linked list of spans (mcentral partial/full lists, mheap
// free lists). The lock of the list's owner guards it.
struct spanList {
  mspan* first = nullptr;
  mspan* last = nullptr;
  bool empty() const { return first == nullptr; }
  void push_front(mspan* s) {
    s->prev = nullptr;
    s->next = first;
    if (first)
      first->prev = s;
    else
      last = s;
    first = s;
  }
  void push_back(mspan* s) {
    s->next = nullptr;
    s->prev = last;
    if (last)
      last->next = s;
    else
      first = s;
    last = s;
  }
  void remove(mspan* s) {
    if (s->prev)
      s->prev->next = s->next;
    else
      first = s->next;
    if (s->next)
      s->next->prev = s->prev;
    else
      last = s->prev;
    s->next = s->prev = nullptr;
  }
};

}  // namespace gort::alloc
