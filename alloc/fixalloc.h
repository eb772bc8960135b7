// fixalloc: a slab allocator for fixed-size runtime metadata (mspans,
// mcaches), in memory mapped straight from the OS: metadata never comes from
// the heap it describes. Not thread-safe: its owner's lock guards it.
//
// All of it lives in one region reserved (not committed) on first use and cut
// into chunks; each chunk has its own free list and count of live objects.
// Allocation takes the lowest chunk with room, so live objects gather at low
// addresses and chunks at the top empty out; the scavenger returns chunks that
// have been empty for its delay to the OS (release_empty), which a single
// global free list threaded through the objects could never do. After a heap
// grows and shrinks again, its span records no longer stay resident.
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

template <typename T, size_t kRegion>
class fixalloc {
 public:
  static constexpr size_t kChunk = sizeof(T) <= 16384 ? 65536 : (sizeof(T) + 4095) & ~size_t{4095};
  static constexpr size_t kPerChunk = kChunk / sizeof(T);
  static constexpr size_t kChunks = kRegion / kChunk;

  T* alloc() {
    if (!base_) reserve();
    chunk* c = pick();
    void* p = c->free;
    if (p) {
      c->free = *static_cast<void**>(p);
    } else {
      p = base_ + index_of(c) * kChunk + c->carved * sizeof(T);
      c->carved++;
    }
    c->released = false;
    if (++c->live == kPerChunk) clear_room(index_of(c));
    inuse_++;
    return new (p) T;
  }

  void free(T* t, int64_t now) {
    t->~T();
    size_t i = (reinterpret_cast<char*>(t) - base_) / kChunk;
    chunk* c = &chunks_[i];
    *reinterpret_cast<void**>(t) = c->free;
    c->free = t;
    if (c->live-- == kPerChunk) set_room(i);
    if (c->live == 0) c->empty_since = now;
    inuse_--;
  }

  // Returns to the OS the chunks that have held no object since before
  // cutoff (a coarse-clock time). Returns the bytes released.
  size_t release_empty(int64_t cutoff) {
    size_t bytes = 0;
    for (size_t i = 0; i < used_; i++) {
      chunk* c = &chunks_[i];
      if (c->live || c->released || c->carved == 0 || c->empty_since > cutoff) continue;
      sys_release(base_ + i * kChunk, kChunk);
      c->free = nullptr;  // the links were in the released memory
      c->carved = 0;
      c->released = true;
      bytes += kChunk;
    }
    return bytes;
  }

  size_t inuse() const { return inuse_; }
  size_t mapped() const { return used_ * kChunk; }

 private:
  struct chunk {
    void* free;           // objects freed in this chunk
    uint32_t live;        // objects in use
    uint32_t carved;      // objects ever carved since the chunk was (re)started
    int64_t empty_since;  // when live last dropped to 0
    bool released;        // pages given back; carving starts over
  };

  void reserve() {
    void* r = sys_map(kRegion, 4096, true);
    void* m = sys_map(kChunks * sizeof(chunk) + (kChunks + 63) / 64 * 8, 4096, true);
    if (!r || !m)
      fatal("cannot reserve %zu bytes of address space for allocator metadata", kRegion);
    base_ = static_cast<char*>(r);
    chunks_ = static_cast<chunk*>(m);
    room_ = reinterpret_cast<uint64_t*>(static_cast<char*>(m) + kChunks * sizeof(chunk));
  }
  size_t index_of(const chunk* c) const { return static_cast<size_t>(c - chunks_); }
  void set_room(size_t i) { room_[i / 64] |= uint64_t{1} << (i % 64); }
  void clear_room(size_t i) { room_[i / 64] &= ~(uint64_t{1} << (i % 64)); }

  // The lowest chunk with room, starting a new one when all are full.
  chunk* pick() {
    for (size_t w = 0; w * 64 < used_; w++) {
      if (room_[w]) return &chunks_[w * 64 + static_cast<size_t>(__builtin_ctzll(room_[w]))];
    }
    if (used_ == kChunks) fatal("allocator metadata region (%zu bytes) is full", kRegion);
    set_room(used_);
    return &chunks_[used_++];
  }

  char* base_ = nullptr;
  chunk* chunks_ = nullptr;
  uint64_t* room_ = nullptr;  // bit per chunk: has room for an object
  size_t used_ = 0;           // chunks ever started (a prefix of the region)
  size_t inuse_ = 0;
};

}  // namespace gort::alloc
