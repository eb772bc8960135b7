// Task stacks: spans of gort's own page heap, with a guard page at the low
// end, committed lazily (only the pages a task touches become resident), and
// pooled when a task exits so the next task does not fault fresh pages in
// (on this kind of VM a first touch costs ~10 us). A task gets its stack when
// it first runs, not when it is spawned, so a million spawned tasks that have
// not run yet hold no stack, and a task that exits hands its stack straight
// to the next one through its P's stackcache.
//
// The guard page is installed with MADV_GUARD_INSTALL (Linux 6.13), which
// marks page-table entries and does not split the mapping, so a million
// guarded stacks cost no VMAs. On older kernels it falls back to mprotect,
// which splits a mapping per stack; after kMaxMprotectGuards such stacks
// (vm.max_map_count is 65530 by default) further stacks get no guard page
// and a fatal error names the overflowing task when its canary word at the
// stack's low end is found changed at a switch.
//
// A stack span has state `stack` in the page map, so free() of a pointer
// into a task stack is reported as an invalid pointer.
#pragma once

#include <cstddef>
#include <cstdint>

namespace gort::alloc {
struct mspan;
}

namespace gort::rt {

struct stack {
  uintptr_t lo = 0;  // lowest usable byte (above the guard page)
  uintptr_t hi = 0;  // one past the highest
  alloc::mspan* span = nullptr;
  bool guarded = false;
};

// A P's cache of free stacks (owner only); the global pool behind it has
// its own lock. An M about to idle trims the pool to kStackPoolMax stacks
// (stack_pool_trim); the rest go back to the mheap, and from there, after
// GORT_SCAVENGE, to the OS.
inline constexpr int kStackCacheSize = 32;
inline constexpr size_t kStackPoolMax = 1024;
struct stackcache {
  stack s[kStackCacheSize];
  int n = 0;
};
stack stack_get(stackcache& c);
void stack_put(stackcache& c, stack& s);
size_t stacks_pooled();
void stack_pool_trim();

void stack_init(size_t size);  // rounds up to whole 8 KiB pages
size_t stack_size();
// A stack of stack_size() bytes, or lo == 0 when the heap is out of memory.
stack stack_alloc();
void stack_free(stack& s);
// Called at each switch away from a task on a stack without a guard page.
void stack_check_canary(const stack& s, uint64_t goid);
size_t stacks_live();

}  // namespace gort::rt
