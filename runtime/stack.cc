// Task stack allocation; see stack.h.
#include "runtime/stack.h"

#include <sys/mman.h>

#include <atomic>

#include "alloc/lock.h"
#include "alloc/mheap.h"
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
    stack spill[kStackCacheSize / 2];
    int nspill = 0;
    {
      alloc::lock_guard l(g_pool_lock);
      while (c.n > kStackCacheSize / 2) {
        stack& t = c.s[--c.n];
        if (g_npool >= kStackPoolMax) {
          spill[nspill++] = t;
          continue;
        }
        stack* rec = reinterpret_cast<stack*>(t.hi - 64);
        *rec = t;
        pool_link(rec) = g_pool;
        g_pool = rec;
        g_npool++;
      }
    }
    for (int i = 0; i < nspill; i++) stack_free(spill[i]);
  }
  c.s[c.n++] = s;
  s = stack{};
}

size_t stacks_pooled() {
  return g_npool;
}

size_t stacks_live() {
  return g_live.load(std::memory_order_relaxed);
}

}  // namespace gort::rt
