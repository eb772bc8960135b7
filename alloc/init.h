// Process lifecycle of the allocator: lazy initialisation on the first call
// (which may come from the dynamic loader or a static constructor, before
// main and before gort's own constructor), fork handlers, and statistics at
// exit.
//
// Initialisation uses only constant-initialised globals, getenv, mmap and
// pthread_key_create: none of them calls malloc, so it cannot recurse (the
// jemalloc dlsym deadlocks came from an initialiser that did).
#pragma once

namespace gort::alloc {

void init_slow();
extern bool g_initialized;
inline void ensure_init() {
  if (__builtin_expect(!__atomic_load_n(&g_initialized, __ATOMIC_ACQUIRE), 0)) init_slow();
}

}  // namespace gort::alloc
