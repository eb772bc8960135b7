// Size classes: the table every layer of the allocator indexes by.
//
// A small request (1 B .. 32 KiB) is rounded up to one of kNumSizeClasses-1
// object sizes; class 0 means "large" (a span of its own). Each class also
// fixes how many 8 KiB pages a span of that class has, chosen so that the tail
// a span cannot use is at most 1/8 of the span. The table is the one current
// Go generates (runtime/sizeclasses.go, from mksizeclasses.go, which has no
// 24-byte class since 16-byte alignment was made universal); docs/alloc.md
// explains the derivation and the waste bounds, and
// test/alloc/sizeclasses_test.cc checks every bound stated there.
//
// Invariants (all checked by the tests):
//  - every class size >= 16 is a multiple of 16, so malloc results are 16-byte
//    aligned; the 8 B class is 8-byte aligned (nothing larger fits in it);
//  - every power of two from 8 to 32 KiB is a class, which is what makes
//    aligned allocation of small objects free of over-allocation;
//  - size_to_class(n) is the smallest class with size >= n;
//  - objindex(off) == off / size for every offset inside a span (div_mul).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace gort::alloc {

inline constexpr size_t kPageShift = 13;
inline constexpr size_t kPageSize = size_t{1} << kPageShift;  // 8 KiB, Go's page
inline constexpr size_t kMaxSmallSize = 32768;
inline constexpr int kNumSizeClasses = 67;  // including class 0 (large)

inline constexpr uint16_t class_to_size[kNumSizeClasses] = {
    0,     8,     16,    32,    48,    64,    80,    96,    112,   128,   144,  160,   176,   192,
    208,   224,   240,   256,   288,   320,   352,   384,   416,   448,   480,  512,   576,   640,
    704,   768,   896,   1024,  1152,  1280,  1408,  1536,  1792,  2048,  2304, 2688,  3072,  3200,
    3456,  4096,  4864,  5376,  6144,  6528,  6784,  6912,  8192,  9472,  9728, 10240, 10880, 12288,
    13568, 14336, 16384, 18432, 19072, 20480, 21760, 24576, 27264, 28672, 32768};

// Pages per span of each class: pages are added until the unusable tail is
// at most 1/8 of the span (Go chooses this before it merges classes with the
// same object count, so a few classes have more pages than strictly needed).
inline constexpr uint8_t class_to_npages[kNumSizeClasses] = {
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,  1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 1, 2, 1, 2, 1, 3, 2,  3, 1, 3, 2,
    3, 4, 5, 6, 1, 7, 6, 5, 4, 3, 5, 7, 2, 9, 7, 5, 8, 3, 10, 7, 4};

// One lookup table from a size, rounded up to 8 bytes, to its class: 4097
// bytes of .rodata for every size up to 32 KiB. Go and TCMalloc use two
// tables (8-byte steps to 1 KiB, 128-byte steps above) and choose with a
// compare; the single table has no branch, so malloc's fast path is a straight
// line, and a program touches only the lines of the sizes it uses. Derived
// from class_to_size at compile time.
inline constexpr size_t kClassIndexSize = kMaxSmallSize / 8 + 1;
inline constexpr std::array<uint8_t, kClassIndexSize> make_class_lookup() {
  std::array<uint8_t, kClassIndexSize> t{};
  size_t i = 0;
  for (int c = 1; c < kNumSizeClasses; c++) {
    for (; i * 8 <= class_to_size[c]; i++) t[i] = static_cast<uint8_t>(c);
  }
  return t;
}
inline constexpr auto size_to_class_table = make_class_lookup();

// Smallest class whose size is >= size; size must be <= kMaxSmallSize.
inline uint32_t size_to_class(size_t size) {
  return size_to_class_table[(size + 7) >> 3];
}

// What free() needs to check, with one multiply and one compare and without
// reading the span, that an offset inside a span of the class is the start of
// one of its nelems objects (not inside one, not in the span's unused tail).
// With c = ceil(2^64 / size) (Lemire, "Faster remainder by direct
// computation"), off * c mod 2^64 is at least c when off is not a multiple of
// size, and exactly k * e for off = k * size, where e = size * c - 2^64 < size.
// So off * c <= (nelems - 1) * e accepts exactly k = 0 .. nelems-1 (e > 0).
// When size is a power of two, e = 0 and every multiple gives 0, but then the
// span holds a whole number of objects and has no tail, so limit 0 is exact
// too. test/alloc/sizeclasses_test.cc checks every offset of every class.
struct classCheck {
  uint64_t magic;
  uint64_t limit;
};
inline constexpr std::array<classCheck, kNumSizeClasses> make_class_checks() {
  std::array<classCheck, kNumSizeClasses> t{};
  for (int c = 1; c < kNumSizeClasses; c++) {
    uint64_t size = class_to_size[c], nelems = class_to_npages[c] * kPageSize / size;
    uint64_t magic = ~uint64_t{0} / size + 1;
    uint64_t e = size * magic;  // mod 2^64
    t[c] = {magic, (nelems - 1) * e};
  }
  return t;
}
inline constexpr auto class_checks = make_class_checks();
inline bool class_object_start(uint32_t cls, uint64_t off) {
  const classCheck& k = class_checks[cls];
  return off * k.magic <= k.limit;
}

// Multiplier that turns a byte offset inside a span into an object index
// without a division: index = (off * div_mul) >> 32 (exact for every offset
// that can occur in a span of that class; Go uses the same construction).
inline uint32_t div_mul_for(uint32_t size) {
  return ~uint32_t{0} / size + 1;
}

// How many objects the mcache moves to or from its mcentral at a time
// (TCMalloc's num_objects_to_move): 64 KiB worth, at least 2 and at most 32
// objects: enough to amortise the mcentral lock, few enough that a thread
// cache does not hoard large objects.
constexpr uint32_t class_batch(uint32_t cls) {
  uint32_t n = 65536 / class_to_size[cls];
  return n < 2 ? 2 : n > 32 ? 32 : n;
}
// Slots of a thread cache's stack for the class: about 1 MiB of objects,
// at least two batches (so a cache can take a whole batch in and still give a
// whole batch out) and at most 256 objects (a program that allocates a few
// hundred small objects and frees them stays off the mcentral). With 256 KiB,
// the 8 KiB class had 32 slots, and a loop that allocates 100 such blocks and
// frees them moved 9 batches each way through the mcentral per round
// (batch/8192 1.46x TCMalloc's time; 0.5x with 1 MiB). A cache that filled
// every class would hold ~32 MiB (11 MiB with 256 KiB): GORT_THREAD_CACHE
// bounds what the caches hold together, and a thread that exits gives it all
// back.
constexpr uint32_t class_cache_slots(uint32_t cls) {
  uint32_t n = (1024 * 1024) / class_to_size[cls];
  uint32_t lo = 2 * class_batch(cls);
  return n < lo ? lo : n > 256 ? 256 : n;
}
constexpr uint32_t total_cache_slots() {
  uint32_t n = 0;
  for (int c = 1; c < kNumSizeClasses; c++) n += class_cache_slots(c);
  return n;
}

// A span class is a size class plus one bit: noscan spans hold objects with no
// pointers that the collector never scans. Explicit malloc memory is always
// noscan; the collector uses both kinds.
using spanClass = uint8_t;
inline constexpr int kNumSpanClasses = kNumSizeClasses << 1;
inline spanClass make_span_class(uint32_t cls, bool noscan) {
  return static_cast<spanClass>(cls << 1 | (noscan ? 1 : 0));
}
inline uint32_t span_class_size_class(spanClass sc) {
  return sc >> 1;
}
inline bool span_class_noscan(spanClass sc) {
  return sc & 1;
}

}  // namespace gort::alloc
