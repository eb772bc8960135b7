// Tagged objects for the roots tests (test/gc/roots_test.cc and
// test/progs/gc_roots.cc): 64-byte noscan GC objects whose words follow
// from an id, so a freed and reused (or poisoned) one is seen at once.
#pragma once

#include <cstdint>
#include <cstring>

#include "gort/gc.h"

namespace gc_tagged {

struct tagged {
  uint64_t w[8];
};

inline tagged* fresh(uint64_t id) {
  auto* t = static_cast<tagged*>(gort_gc_alloc_noscan(sizeof(tagged)));
  for (int k = 0; k < 8; k++) t->w[k] = id * 0x9e3779b97f4a7c15ull + k;
  return t;
}

inline bool intact(const tagged* t, uint64_t id) {
  for (int k = 0; k < 8; k++)
    if (t->w[k] != id * 0x9e3779b97f4a7c15ull + k) return false;
  return true;
}

// Garbage that reuses what sweeping freed (so a lost object is overwritten).
inline void churn(int n) {
  for (int i = 0; i < n; i++) memset(gort_gc_alloc_noscan(sizeof(tagged)), 0xee, sizeof(tagged));
}

}  // namespace gc_tagged
