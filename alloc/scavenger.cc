// The background scavenger; see scavenger.h.
#include "alloc/scavenger.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>

#include <atomic>

#include "alloc/lock.h"
#include "alloc/mcache.h"
#include "alloc/mcentral.h"
#include "alloc/mheap.h"
#include "alloc/options.h"
#include "alloc/sys.h"

namespace gort::alloc {

namespace {

enum : uint32_t { kNotStarted, kStarting, kRunning };
std::atomic<uint32_t> g_state{kNotStarted};
std::atomic<bool> g_want_start{false};
std::atomic<bool> g_idle{false};          // asleep with no deadline
std::atomic<uint32_t> g_wake_seq{0};      // futex word
std::atomic<int64_t> g_retry_at{0};       // no start attempt before this (coarse ns)
std::atomic<bool> g_start_failed{false};  // the failure was reported once

constexpr int64_t kMinSleepNs = 10 * 1000000LL;
std::atomic<int64_t> g_memlimit{-1};  // -1: not read from g_options yet

// Near the memory limit, free memory goes back now, whatever its age.
bool over_limit_release() {
  int64_t lim = scavenger_memory_limit();
  if (lim <= 0 || static_cast<int64_t>(held_bytes()) <= lim / 100 * kLimitReleasePercent)
    return false;
  release_idle_transfer_caches(0);
  caches_trim_pool(0);
  g_heap.scavenge(0, nullptr);
  return true;
}

void* scavenger_main(void*) {
  const int64_t delay = g_options.scavenge_delay_ns;
  // Huge pages may back the heap (mheap.h "Huge pages"): asked here, on the
  // scavenger's own thread, not at every program start.
  g_heap.set_huge_aware(thp_in_play());
  for (;;) {
    uint32_t seq = g_wake_seq.load(std::memory_order_acquire);
    if (auto hook = scavenger_trace_hook.load(std::memory_order_relaxed)) hook(true, 0);
    over_limit_release();
    int64_t tc_next = release_idle_transfer_caches(delay);
    int64_t pool_next = caches_trim_pool(delay);
    // Idle thread caches, and caches over their share while the sum is over
    // the budget, are stolen from (mcache.h).
    int64_t trim_next = caches_trim(delay);
    int64_t next = -1;
    size_t released = g_heap.scavenge(delay, &next);
    if (auto hook = scavenger_trace_hook.load(std::memory_order_relaxed)) hook(false, released);
    for (int64_t t : {tc_next, pool_next, trim_next})
      if (t >= 0 && (next < 0 || t < next)) next = t;
    if (released && g_options.scavtrace) {
      heapStats s = g_heap.stats();
      print_err("scav: released %zu KiB; heap in use %zu KiB, free %zu KiB, released %zu KiB",
                released >> 10, s.inuse_pages * kPageSize >> 10,
                (s.free_pages - s.released_pages) * kPageSize >> 10,
                s.released_pages * kPageSize >> 10);
    }
    if (next < 0) {
      // Nothing to release and nothing that could become releasable without
      // a free: sleep until scavenger_notify().
      g_idle.store(true, std::memory_order_seq_cst);
      futex_wait(&g_wake_seq, seq, -1);
      g_idle.store(false, std::memory_order_relaxed);
    } else {
      futex_wait(&g_wake_seq, seq, next > kMinSleepNs ? next : kMinSleepNs);
    }
  }
  return nullptr;
}

}  // namespace

std::atomic<void (*)(bool begin, size_t released)> scavenger_trace_hook{nullptr};

namespace {

// Wakes the scavenger: only out of an idle sleep (no deadline), or with
// timed also out of a timed one (it waits for pages to age).
void wake(bool timed) {
  if (g_options.scavenge_delay_ns < 0) return;
  // Bump the sequence first, also while the thread is starting: a scavenger
  // about to sleep on the old value then does not sleep, and one already
  // asleep is woken.
  g_wake_seq.fetch_add(1, std::memory_order_seq_cst);
  if (g_state.load(std::memory_order_relaxed) != kRunning) {
    g_want_start.store(true, std::memory_order_relaxed);
    return;
  }
  if (timed || g_idle.load(std::memory_order_seq_cst)) futex_wake(&g_wake_seq, 1);
}

}  // namespace

void scavenger_notify() {
  wake(false);
}

void scavenger_limit_kick() {
  wake(true);
}

void scavenger_note_cached() {
  if (g_idle.load(std::memory_order_relaxed)) scavenger_notify();
}

void scavenger_poll() {
  if (!g_want_start.load(std::memory_order_relaxed)) return;
  if (g_state.load(std::memory_order_relaxed) != kNotStarted) return;
  if (coarse_nanotime() < g_retry_at.load(std::memory_order_relaxed)) return;
  // Started for freed memory (free pages, or spans whose objects other
  // threads freed and no refill has merged: mcentral.h "Remote frees"), or
  // for thread caches over their budget (which only the scavenger trims
  // when their owners do not come by).
  if (g_heap.free_backed_bytes() + remote_pending_bytes() < kScavengerStartBytes &&
      !caches_over_budget())
    return;
  uint32_t expect = kNotStarted;
  if (!g_state.compare_exchange_strong(expect, kStarting)) return;
  int saved_errno = errno;  // free() must not change errno
  // pthread_create allocates (this thread's malloc re-enters here, and the
  // state check above stops the recursion).
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 64 * 1024);
  pthread_t t;
  int rc = pthread_create(&t, &attr, scavenger_main, nullptr);
  pthread_attr_destroy(&attr);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (rc != 0) {
    // Typically EAGAIN at an address-space or thread limit: no memory for a
    // stack now, maybe later. Try again in a second, not on every free.
    if (!g_start_failed.exchange(true))
      print_err("cannot start the scavenger thread (error %d); retrying every second", rc);
    g_retry_at.store(coarse_nanotime() + 1000000000, std::memory_order_relaxed);
    g_state.store(kNotStarted, std::memory_order_relaxed);
    errno = saved_errno;
    return;
  }
  pthread_setname_np(t, "gort-scavenger");
  g_state.store(kRunning, std::memory_order_release);
  errno = saved_errno;
}

void scavenger_fork_child() {
  bool was = g_state.load(std::memory_order_relaxed) == kRunning;
  g_state.store(kNotStarted, std::memory_order_relaxed);
  g_idle.store(false, std::memory_order_relaxed);
  g_want_start.store(was, std::memory_order_relaxed);
}

size_t scavenge_now() {
  release_idle_transfer_caches(0);
  caches_trim_pool(0);
  return g_heap.scavenge(0, nullptr);
}

void scavenger_set_memory_limit(int64_t bytes) {
  g_memlimit.store(bytes < 0 ? 0 : bytes, std::memory_order_relaxed);
  scavenger_notify();
}

int64_t scavenger_memory_limit() {
  int64_t v = g_memlimit.load(std::memory_order_relaxed);
  return v < 0 ? g_options.memlimit : v;
}

size_t held_bytes() {
  heapStats s = g_heap.stats();
  return s.mapped - s.released_pages * kPageSize + s.meta_mapped;
}

bool scavenger_running() {
  return g_state.load(std::memory_order_acquire) == kRunning;
}

}  // namespace gort::alloc
