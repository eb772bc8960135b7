// Task stack allocation; see stack.h.
#include "runtime/stack.h"

#include <sys/mman.h>

#include <algorithm>
#include <atomic>

#include "alloc/lock.h"
#include "alloc/mheap.h"
#include "alloc/options.h"
#include "alloc/sys.h"

namespace gort::rt {

namespace {

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#define MADV_GUARD_REMOVE 103
#endif

constexpr size_t kOsPage = 4096;
constexpr int kMaxMprotectGuards = 16384;
constexpr uint64_t kCanary = 0x9e3779b97f4a7c15ull;

size_t g_stack_size = 256 << 10;
std::atomic<int> g_guard_mode{0};  // 0 unknown, 1 madvise, 2 mprotect
std::atomic<int> g_mprotect_guards{0};
std::atomic<size_t> g_live{0};

bool install_guard(uintptr_t base) {
  void* a = reinterpret_cast<void*>(base);
  int mode = g_guard_mode.load(std::memory_order_relaxed);
  if (mode != 2) {
    if (madvise(a, kOsPage, MADV_GUARD_INSTALL) == 0) {
      g_guard_mode.store(1, std::memory_order_relaxed);
      return true;
    }
    g_guard_mode.store(2, std::memory_order_relaxed);
  }
  if (g_mprotect_guards.fetch_add(1, std::memory_order_relaxed) >= kMaxMprotectGuards) {
    g_mprotect_guards.fetch_sub(1, std::memory_order_relaxed);
    return false;
  }
  if (mprotect(a, kOsPage, PROT_NONE) != 0) {
    g_mprotect_guards.fetch_sub(1, std::memory_order_relaxed);
    return false;
  }
  return true;
}

void remove_guard(uintptr_t base) {
  void* a = reinterpret_cast<void*>(base);
  if (g_guard_mode.load(std::memory_order_relaxed) == 1) {
    madvise(a, kOsPage, MADV_GUARD_REMOVE);
  } else {
    mprotect(a, kOsPage, PROT_READ | PROT_WRITE);
    g_mprotect_guards.fetch_sub(1, std::memory_order_relaxed);
  }
}

// Task stacks never get huge pages. A parked task uses one page of its stack,
// and stacks are spans of the heap, 256 KiB apart by default: where huge
// pages back the heap (GORT_THP=on, or the kernel at "always"), touching that
// page faulted in the whole 2 MiB around it, and a parked task cost its whole
// stack (258 KB instead of 4.7 KB). So the 2 MiB ranges that hold a new stack
// get MADV_NOHUGEPAGE: one call per range, not per stack (stacks are mostly
// carved one after another), and the heap's spans that share such a range
// lose huge pages there. Advice splits the heap's mapping at most at 2 MiB
// boundaries, and equal neighbours merge again.
// The last ranges advised, in one word so that a reader never pairs one
// call's start with another's end: first 2 MiB index << 24 | count.
std::atomic<uint64_t> g_nohuge{0};
static_assert(alloc::kHugePageSize == size_t{1} << 21);

void stack_no_huge(uintptr_t base, size_t size) {
  if (!alloc::thp_in_play()) return;
  const uintptr_t mask = alloc::kHugePageSize - 1;
  uintptr_t lo = base & ~mask, hi = (base + size + mask) & ~mask;
  uint64_t first = lo >> 21, count = (hi - lo) >> 21;  // 2 MiB ranges
  uint64_t last = g_nohuge.load(std::memory_order_relaxed);
  uint64_t lfirst = last >> 24, lcount = last & 0xffffff;
  if (first >= lfirst && first + count <= lfirst + lcount) return;  // advised already
  alloc::sys_hugepage_advice(reinterpret_cast<void*>(lo), hi - lo, false);
  if (count < (1u << 24)) g_nohuge.store(first << 24 | count, std::memory_order_relaxed);
}

}  // namespace

void stack_init(size_t size) {
  if (size < 16 * 1024) size = 16 * 1024;
  g_stack_size = (size + alloc::kPageSize - 1) & ~(alloc::kPageSize - 1);
}

size_t stack_size() {
  return g_stack_size;
}

stack stack_alloc() {
  stack s;
  uintptr_t npages = g_stack_size / alloc::kPageSize;
  alloc::mspan* sp = alloc::g_heap.alloc_span(npages, alloc::spanState::stack);
  if (!sp) return s;
  s.span = sp;
  stack_no_huge(sp->base, g_stack_size);
  s.hi = sp->base + g_stack_size;
  s.guarded = install_guard(sp->base);
  s.lo = sp->base + kOsPage;
  if (!s.guarded) *reinterpret_cast<uint64_t*>(s.lo) = kCanary;
  g_live.fetch_add(1, std::memory_order_relaxed);
  return s;
}

void stack_free(stack& s) {
  if (!s.span) return;
  if (s.guarded) remove_guard(s.span->base);
  alloc::g_heap.free_span(s.span, alloc::coarse_nanotime());
  s = stack{};
  g_live.fetch_sub(1, std::memory_order_relaxed);
}

void stack_check_canary(const stack& s, uint64_t goid) {
  if (*reinterpret_cast<const uint64_t*>(s.lo) != kCanary)
    alloc::fatal("task %llu overflowed its %zu-byte stack (raise GORT_STACKSIZE)",
                 static_cast<unsigned long long>(goid), g_stack_size - kOsPage);
}

namespace {
// The global pool: free stacks linked through a record at their top.
alloc::mutex g_pool_lock;
stack* g_pool = nullptr;
size_t g_npool = 0;

stack*& pool_link(stack* rec) {
  return *reinterpret_cast<stack**>(rec + 1);
}
}  // namespace

stack stack_get(stackcache& c) {
  if (c.n == 0 && g_npool > 0) {
    alloc::lock_guard l(g_pool_lock);
    while (c.n < kStackCacheSize / 2 && g_pool) {
      stack* rec = g_pool;
      g_pool = pool_link(rec);
      g_npool--;
      c.s[c.n++] = *rec;
    }
  }
  if (c.n > 0) return c.s[--c.n];
  return stack_alloc();
}

void stack_put(stackcache& c, stack& s) {
  if (c.n == kStackCacheSize) {
    // Half the cache to the global pool. The pool is not bounded here:
    // freeing a stack costs a system call (the guard page) and the mheap
    // lock, too much for the moment a task exits; stack_pool_trim does it
    // when an M is about to idle.
    alloc::lock_guard l(g_pool_lock);
    while (c.n > kStackCacheSize / 2) {
      stack& t = c.s[--c.n];
      stack* rec = reinterpret_cast<stack*>(t.hi - 64);
      *rec = t;
      pool_link(rec) = g_pool;
      g_pool = rec;
      g_npool++;
    }
  }
  c.s[c.n++] = s;
  s = stack{};
}

void stack_pool_trim() {
  constexpr int kBatch = 256;
  while (__atomic_load_n(&g_npool, __ATOMIC_RELAXED) > kStackPoolMax) {
    stack batch[kBatch];
    int n = 0;
    {
      alloc::lock_guard l(g_pool_lock);
      while (n < kBatch && g_npool > kStackPoolMax) {
        stack* rec = g_pool;
        g_pool = pool_link(rec);
        g_npool--;
        batch[n++] = *rec;
      }
    }
    // Stacks next to each other in memory lose their guard pages in one
    // call: MADV_GUARD_REMOVE leaves pages that are not guards alone.
    std::sort(batch, batch + n, [](const stack& a, const stack& b) { return a.lo < b.lo; });
    bool ranged = g_guard_mode.load(std::memory_order_relaxed) == 1;
    for (int i = 0; i < n;) {
      int j = i + 1;
      if (ranged && batch[i].guarded) {
        while (j < n && batch[j].guarded &&
               batch[j].span->base == batch[j - 1].span->base + g_stack_size)
          j++;
        uintptr_t from = batch[i].span->base, to = batch[j - 1].span->base + kOsPage;
        madvise(reinterpret_cast<void*>(from), to - from, MADV_GUARD_REMOVE);
        for (int k = i; k < j; k++) batch[k].guarded = false;
      }
      for (int k = i; k < j; k++) stack_free(batch[k]);
      i = j;
    }
  }
}

size_t stacks_pooled() {
  return g_npool;
}

size_t stacks_live() {
  return g_live.load(std::memory_order_relaxed);
}

}  // namespace gort::rt
