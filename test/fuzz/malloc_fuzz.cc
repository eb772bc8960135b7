// libFuzzer target over random sequences of the malloc API (`make fuzz`).
//
// The input is read as a program of one-byte opcodes with operands, acting on
// 64 slots. Every block is filled with a pattern derived from its slot and
// size when it is made, and checked before it is freed, resized or replaced,
// so an allocator that hands out overlapping memory, loses contents in
// realloc, or returns less than asked (malloc_usable_size) makes the target
// abort. Every 64 operations the page heap's invariants are checked
// (mheap::verify), and at the end of each input every block is freed.
//
// gort replaces malloc in this binary (libgort.a is linked in), including the
// allocations of libFuzzer itself, so the fuzzer also exercises gort from a
// second, unrelated client. It is built with clang's -fsanitize=fuzzer and
// UBSan, not ASan: ASan would replace malloc and test itself.
#include <malloc.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#include "alloc/mheap.h"

namespace {

constexpr int kSlots = 64;
struct block {
  unsigned char* p = nullptr;
  size_t size = 0;
  enum { none, c_malloc, cxx_new } kind = none;
};
block g_slots[kSlots];

unsigned char pattern(int slot, size_t size, size_t i) {
  return static_cast<unsigned char>(slot * 31 + size * 7 + i * 13 + 1);
}

void fill(int slot) {
  block& b = g_slots[slot];
  for (size_t i = 0; i < b.size; i++) b.p[i] = pattern(slot, b.size, i);
}

void check(int slot, size_t n) {
  block& b = g_slots[slot];
  for (size_t i = 0; i < n && i < b.size; i++)
    if (b.p[i] != pattern(slot, b.size, i)) __builtin_trap();  // corrupted contents
}

void release(int slot) {
  block& b = g_slots[slot];
  if (b.kind == block::none) return;
  check(slot, b.size);
  if (b.kind == block::cxx_new)
    ::operator delete(b.p, b.size);  // sized delete
  else
    free(b.p);
  b = block{};
}

void made(int slot, void* p, size_t size, bool is_new) {
  if (!p) {
    if (size < (size_t{1} << 30)) __builtin_trap();  // refused a reasonable size
    return;
  }
  if (malloc_usable_size(p) < size) __builtin_trap();
  g_slots[slot] = {static_cast<unsigned char*>(p), size, is_new ? block::cxx_new : block::c_malloc};
  fill(slot);
}

// Sizes: mostly small, sometimes up to a few MiB (large spans), rarely huge.
size_t size_of(const uint8_t* d) {
  uint32_t v = uint32_t{d[0]} | uint32_t{d[1]} << 8 | uint32_t{d[2]} << 16;
  switch (d[0] & 3) {
    case 0:
      return v % 64;
    case 1:
      return v % 4096;
    case 2:
      return v % 65536;
    default:
      return v % (size_t{4} << 20);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t len) {
  int ops = 0;
  while (len >= 5) {
    uint8_t op = data[0];
    int slot = data[1] % kSlots;
    size_t size = size_of(data + 2);
    data += 5;
    len -= 5;
    switch (op % 8) {
      case 0:
        release(slot);
        made(slot, malloc(size), size, false);
        break;
      case 1: {
        release(slot);
        size_t n = 1 + size % 64, each = size / n;
        void* p = calloc(n, each);
        if (p)
          for (size_t i = 0; i < n * each; i++)
            if (static_cast<unsigned char*>(p)[i]) __builtin_trap();  // calloc not zero
        made(slot, p, n * each, false);
        break;
      }
      case 2: {  // realloc keeps the common prefix
        block& b = g_slots[slot];
        if (b.kind == block::cxx_new) break;
        void* p = realloc(b.p, size);
        if (!p && size) break;  // the old block is still valid
        size_t keep = size < b.size ? size : b.size;
        for (size_t i = 0; i < keep; i++)
          if (static_cast<unsigned char*>(p)[i] != pattern(slot, b.size, i)) __builtin_trap();
        b = block{};
        if (size) made(slot, p, size, false);
        break;
      }
      case 3: {
        release(slot);
        size_t align = size_t{1} << (size % 16);
        size_t sz = (size + align - 1) & ~(align - 1);
        void* p = aligned_alloc(align, sz);
        if (p && reinterpret_cast<uintptr_t>(p) % align) __builtin_trap();
        made(slot, p, sz, false);
        break;
      }
      case 4: {
        release(slot);
        size_t align = sizeof(void*) << (size % 12);
        void* p = nullptr;
        if (posix_memalign(&p, align, size) == 0) {
          if (reinterpret_cast<uintptr_t>(p) % align) __builtin_trap();
          made(slot, p, size, false);
        }
        break;
      }
      case 5:
        release(slot);
        made(slot, ::operator new(size ? size : 1), size ? size : 1, true);
        break;
      case 6:
        check(slot, g_slots[slot].size);
        break;
      default:
        release(slot);
        break;
    }
    if (++ops % 64 == 0) {
      if (const char* e = gort::alloc::g_heap.verify()) {
        fprintf(stderr, "malloc_fuzz: heap invariant broken: %s\n", e);
        abort();
      }
    }
  }
  for (int i = 0; i < kSlots; i++) release(i);
  return 0;
}
