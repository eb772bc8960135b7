// fixalloc: a free-list allocator for fixed-size runtime metadata (mspans,
// mcaches), carved from chunks mapped straight from the OS. Metadata never
// comes from the heap it describes. Not thread-safe: its owner's lock guards it.
#pragma once

#include <cstddef>
#include <new>

#include "alloc/sys.h"

namespace gort::alloc {

template <typename T>
class fixalloc {
 public:
  // Default-initialises: members with initialisers get them, others are left
  // as they are (fresh chunks are zero). An mcache's 80 KiB slot array is not
  // zeroed, so a new cache touches only the slots its thread uses.
  T* alloc() {
    void* p = free_;
    if (p) {
      free_ = *static_cast<void**>(p);
    } else {
      if (left_ < sizeof(T)) refill();
      p = chunk_;
      chunk_ += sizeof(T);
      left_ -= sizeof(T);
    }
    inuse_++;
    return new (p) T;
  }
  void free(T* t) {
    t->~T();
    *reinterpret_cast<void**>(t) = free_;
    free_ = t;
    inuse_--;
  }
  size_t inuse() const { return inuse_; }
  size_t mapped() const { return mapped_; }

 private:
  static constexpr size_t kChunk = 256 * 1024;
  void refill() {
    void* c = sys_map(kChunk, 4096);
    if (!c) fatal("out of memory mapping %zu bytes of allocator metadata", kChunk);
    chunk_ = static_cast<char*>(c);
    left_ = kChunk;
    mapped_ += kChunk;
  }
  void* free_ = nullptr;
  char* chunk_ = nullptr;
  size_t left_ = 0;
  size_t inuse_ = 0;
  size_t mapped_ = 0;
};

}  // namespace gort::alloc
