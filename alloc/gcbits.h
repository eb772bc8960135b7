// gcBitsAlloc: storage for spans' allocBits and gcmarkBits (Go keeps these in
// gcBits arenas, out of the mspan, for the same reason): a bitmap is sized to
// its span's object count, from one 64-bit word (spans of <= 64 objects, most
// classes) to 16 words (the 8-byte class, 1024 objects), and large spans have
// none. That keeps an mspan at about 100 bytes, which matters because span
// metadata stays resident for as long as the heap has that many spans.
//
// Blocks come in power-of-two word counts, each size with its own free list,
// carved from chunks mapped from the OS. The mheap lock guards it.
#pragma once

#include <cstddef>
#include <cstdint>

#include "alloc/sys.h"

namespace gort::alloc {

class gcBitsAlloc {
 public:
  static constexpr int kSizes = 5;  // 1, 2, 4, 8, 16 words
  static int size_index(uint32_t nbits) {
    uint32_t words = (nbits + 63) / 64;
    int i = 0;
    while ((1u << i) < words) i++;
    return i;
  }
  // A zeroed block for nbits bits; nullptr if the OS refuses a new chunk.
  uint64_t* alloc(uint32_t nbits) {
    int i = size_index(nbits);
    size_t bytes = size_t{8} << i;
    uint64_t* p = free_[i];
    if (p) {
      free_[i] = *reinterpret_cast<uint64_t**>(p);
    } else {
      if (left_ < bytes && !refill()) return nullptr;
      p = reinterpret_cast<uint64_t*>(chunk_);
      chunk_ += bytes;
      left_ -= bytes;
    }
    for (size_t w = 0; w < (size_t{1} << i); w++) p[w] = 0;
    return p;
  }
  void free(uint64_t* p, uint32_t nbits) {
    int i = size_index(nbits);
    *reinterpret_cast<uint64_t**>(p) = free_[i];
    free_[i] = p;
  }
  size_t mapped() const { return mapped_; }

 private:
  static constexpr size_t kChunk = 64 * 1024;
  bool refill() {
    void* c = sys_map(kChunk, 4096);
    if (!c) return false;
    chunk_ = static_cast<char*>(c);
    left_ = kChunk;
    mapped_ += kChunk;
    return true;
  }
  uint64_t* free_[kSizes] = {};
  char* chunk_ = nullptr;
  size_t left_ = 0;
  size_t mapped_ = 0;
};

}  // namespace gort::alloc
