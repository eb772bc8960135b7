// Allocator initialisation, fork safety and exit statistics; see init.h.
#include "alloc/init.h"

#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "alloc/lock.h"
#include "alloc/mcache.h"
#include "alloc/mcentral.h"
#include "alloc/mheap.h"
#include "alloc/mprof.h"
#include "alloc/options.h"
#include "alloc/scavenger.h"
#include "alloc/stats.h"

namespace gort::alloc {

constinit bool g_initialized = false;
constinit static mutex g_init_lock;

void init_slow() {
  lock_guard g(g_init_lock);
  if (g_initialized) return;
  options_init();
  central_init();
  caches_init();
  __atomic_store_n(&g_initialized, true, __ATOMIC_RELEASE);
}

// fork(): take every allocator lock so that no other thread holds one at the
// moment of the fork, in the documented order (caches, mcentrals, mheap).
static void fork_prepare() {
  caches_lock();
  for (int c = 1; c < kNumSizeClasses; c++) g_central[c].lock.lock();
  g_heap.lock();
  mprof_fork_lock();
}

static void fork_parent() {
  mprof_fork_unlock();
  g_heap.unlock();
  for (int c = kNumSizeClasses - 1; c >= 1; c--) g_central[c].lock.unlock();
  caches_unlock();
}

static void fork_child() {
  mprof_fork_child();
  g_heap.reset_lock();
  for (int c = 1; c < kNumSizeClasses; c++) g_central[c].lock.reset();
  caches_fork_child();
  scavenger_fork_child();
}

// Runs before the program's own constructors (an LD_PRELOAD library's
// constructors run first). Registered first, our prepare handler runs last
// and our child handler first, so other handlers may malloc.
__attribute__((constructor(101))) static void gort_alloc_constructor() {
  ensure_init();
  pthread_atfork(fork_prepare, fork_parent, fork_child);
  mprof_ready();
}

__attribute__((destructor(101))) static void gort_alloc_destructor() {
  if (g_options.mstats) print_stats(g_options.mstats_fd);
  if (g_exit_report) g_exit_report();
  mprof_exit();
}

}  // namespace gort::alloc

// Programs that leave through _exit() (dash, many daemons' children) skip
// destructors; with GORT_DEBUG=mstats=1 they should still report. glibc's own
// calls use internal aliases, so only the program's calls come here.
extern "C" __attribute__((visibility("default"), noreturn)) void _exit(int status) {
  if (gort::alloc::g_options.mstats) gort::alloc::print_stats(gort::alloc::g_options.mstats_fd);
  if (gort::alloc::g_exit_report) gort::alloc::g_exit_report();
  gort::alloc::mprof_exit();
  for (;;) syscall(SYS_exit_group, status);
}
extern "C" __attribute__((visibility("default"), noreturn)) void _Exit(int status) {
  _exit(status);
}
