// fixalloc: a slab allocator for fixed-size runtime metadata (mspans,
// mcaches), in memory mapped straight from the OS: metadata never comes from
// the heap it describes. Not thread-safe: its owner's lock guards it.
//
// Objects are cut from chunks (64 KiB, or one object's pages for large T);
// each chunk has its own free list and count of live objects. Chunks live in
// regions mapped from the OS as the metadata grows: the first region holds
// kFirstChunks chunks and each next one twice as many as the last, up to
// kMaxRegion bytes, after which regions keep that size. So a tiny process
// maps a few hundred KiB of metadata, a heap of hundreds of GiB gets as many
// span records as it needs, and there is no fixed cap to run into: under an
// address-space limit (ulimit -v) or a strict commit limit
// (vm.overcommit_memory=2) metadata costs at most about twice what is in use,
// never a fixed up-front reservation. A region's chunk records and room
// bitmap sit in its first pages, so one mmap makes a region.
//
// Allocation takes the lowest chunk with room (regions in the order they were
// mapped, chunks by address within one), so live objects gather at low
// addresses and chunks at the top empty out; the scavenger returns chunks that
// have been empty for its delay to the OS (release_empty), which a single
// global free list threaded through the objects could never do. After a heap
// grows and shrinks again, its span records no longer stay resident.
//
// When the OS refuses a new region, try_alloc() returns nullptr and the
// caller fails its own request cleanly (malloc returns NULL with ENOMEM);
// alloc() is for callers that cannot fail and aborts with a clear message.
//
// Objects are default-initialised: members with initialisers get them, others
// are left as they are (fresh memory is zero). An mcache's 80 KiB slot array
// is therefore not written, so a new cache touches only the slots it uses.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>

#include "alloc/sys.h"

namespace gort::alloc {

template <typename T, size_t kMaxRegion>
class fixalloc {
 public:
  static constexpr size_t kChunk = sizeof(T) <= 16384 ? 65536 : (sizeof(T) + 4095) & ~size_t{4095};
  static constexpr size_t kPerChunk = kChunk / sizeof(T);
  static constexpr size_t kFirstChunks = 4;
  static constexpr size_t kMaxChunks =
      kMaxRegion / kChunk < kFirstChunks ? kFirstChunks : kMaxRegion / kChunk;
  static constexpr size_t kMaxRegions = 96;  // with 64 KiB chunks and 1 GiB regions: ~80 GiB

  // An object, or nullptr if the OS refuses the memory for a new region.
  T* try_alloc() {
    region* r;
    chunk* c = pick(&r);
    if (!c) return nullptr;
    size_t ci = static_cast<size_t>(c - r->chunks);
    void* p = c->free;
    if (p) {
      c->free = *static_cast<void**>(p);
    } else {
      p = r->base + ci * kChunk + c->carved * sizeof(T);
      c->carved++;
    }
    c->released = false;
    if (++c->live == kPerChunk) clear_room(r, ci);
    inuse_++;
    return new (p) T;
  }

  // An object; aborts with a message if there is no memory for it.
  T* alloc() {
    T* t = try_alloc();
    if (!t) fatal("out of memory: cannot map %zu bytes for runtime metadata", next_region_bytes());
    return t;
  }

  // Room for n more objects without mapping: false if a region was needed
  // and the OS refused it. Lets a caller that must not fail halfway (the
  // mheap splitting a span) fail before it changes anything.
  bool ensure(size_t n) {
    // Every started chunk's free slots (live objects are all in started
    // chunks), plus the chunks the newest region has not started yet (only
    // the newest can have any: pick() fills regions in order).
    size_t room = started_ * kPerChunk - inuse_;
    if (nregions_)
      room += (regions_[nregions_ - 1].nchunks - regions_[nregions_ - 1].used) * kPerChunk;
    return room >= n || add_region();
  }

  void free(T* t, int64_t now) {
    t->~T();
    region* r = region_of(t);
    size_t i = static_cast<size_t>(reinterpret_cast<char*>(t) - r->base) / kChunk;
    chunk* c = &r->chunks[i];
    *reinterpret_cast<void**>(t) = c->free;
    c->free = t;
    if (c->live-- == kPerChunk) set_room(r, i);
    if (c->live == 0) c->empty_since = now;
    inuse_--;
  }

  // Returns to the OS the chunks that have held no object since before
  // cutoff (a coarse-clock time). Returns the bytes released. Regions
  // themselves stay mapped (their address space is reused as chunks refill).
  size_t release_empty(int64_t cutoff) {
    size_t bytes = 0;
    for (size_t ri = 0; ri < nregions_; ri++) {
      region& r = regions_[ri];
      for (size_t i = 0; i < r.used; i++) {
        chunk* c = &r.chunks[i];
        if (c->live || c->released || c->carved == 0 || c->empty_since > cutoff) continue;
        sys_release(r.base + i * kChunk, kChunk);
        c->free = nullptr;  // the links were in the released memory
        c->carved = 0;
        c->released = true;
        bytes += kChunk;
      }
    }
    return bytes;
  }

  size_t inuse() const { return inuse_; }
  // Bytes of chunks ever started (what can hold memory).
  size_t mapped() const { return started_ * kChunk; }
  // Regions mapped so far (for tests).
  size_t regions() const { return nregions_; }

 private:
  struct chunk {
    void* free;           // objects freed in this chunk
    uint32_t live;        // objects in use
    uint32_t carved;      // objects ever carved since the chunk was (re)started
    int64_t empty_since;  // when live last dropped to 0
    bool released;        // pages given back; carving starts over
  };
  // Invariant: chunks [0, used) have been started; room has a bit for each
  // started chunk with fewer than kPerChunk live objects.
  struct region {
    char* base;      // first chunk
    chunk* chunks;   // nchunks records, in the region's first pages
    uint64_t* room;  // bit per chunk: has room for an object
    size_t nchunks;
    size_t used;
  };

  static size_t meta_bytes(size_t nchunks) {
    size_t b = nchunks * sizeof(chunk) + (nchunks + 63) / 64 * 8;
    return (b + 4095) & ~size_t{4095};
  }
  size_t next_region_chunks() const {
    size_t n = kFirstChunks;
    for (size_t i = 0; i < nregions_ && n < kMaxChunks; i++) n *= 2;
    return n < kMaxChunks ? n : kMaxChunks;
  }
  size_t next_region_bytes() const {
    size_t n = next_region_chunks();
    return meta_bytes(n) + n * kChunk;
  }

  bool add_region() {
    if (nregions_ == kMaxRegions) return false;
    size_t n = next_region_chunks();
    size_t meta = meta_bytes(n);
    char* m = static_cast<char*>(sys_map(meta + n * kChunk, 4096, true));
    if (!m) return false;
    region& r = regions_[nregions_];
    r.chunks = reinterpret_cast<chunk*>(m);
    r.room = reinterpret_cast<uint64_t*>(m + n * sizeof(chunk));
    r.base = m + meta;
    r.nchunks = n;
    r.used = 0;
    nregions_++;
    return true;
  }

  region* region_of(const void* p) {
    for (size_t i = 0; i < nregions_; i++) {
      region& r = regions_[i];
      if (static_cast<size_t>(static_cast<const char*>(p) - r.base) < r.nchunks * kChunk) return &r;
    }
    fatal("fixalloc: %p is not runtime metadata", p);
  }
  static void set_room(region* r, size_t i) { r->room[i / 64] |= uint64_t{1} << (i % 64); }
  static void clear_room(region* r, size_t i) { r->room[i / 64] &= ~(uint64_t{1} << (i % 64)); }

  // The lowest chunk with room, starting a new one when all are full, and
  // mapping a new region when every region is full. nullptr: no memory.
  chunk* pick(region** out) {
    for (size_t ri = 0; ri < nregions_; ri++) {
      region& r = regions_[ri];
      *out = &r;
      for (size_t w = 0; w * 64 < r.used; w++) {
        if (r.room[w]) return &r.chunks[w * 64 + static_cast<size_t>(__builtin_ctzll(r.room[w]))];
      }
      if (r.used < r.nchunks) {
        set_room(&r, r.used);
        started_++;
        return &r.chunks[r.used++];
      }
    }
    if (!add_region()) return nullptr;
    region& r = regions_[nregions_ - 1];
    *out = &r;
    set_room(&r, 0);
    r.used = 1;
    started_++;
    return &r.chunks[0];
  }

  region regions_[kMaxRegions] = {};
  size_t nregions_ = 0;
  size_t started_ = 0;  // sum of the regions' used
  size_t inuse_ = 0;
};

}  // namespace gort::alloc
