// The background scavenger: returns free pages to the OS on its own clock.
//
// A page is released once its free span has stayed free for
// GORT_SCAVENGE milliseconds (default 500), so memory that a program frees and
// soon reuses is never faulted in twice (the VM this was tuned on pays ~10 us
// per first touch), while an idle process still shrinks to its live heap
// within about a second. The scavenger is a thread of its own: it does not
// wait for the program to call malloc again (jemalloc's decay only advances on
// allocator activity). When nothing is left to release it sleeps on a futex
// until a span is freed.
//
// It starts lazily, the first time at least kScavengerStartBytes of freed
// memory is waiting (free pages, or spans with remote frees no refill has
// merged yet, which each pass merges), so small short-lived processes (shell
// tools, git) stay single-threaded. Its signals are all blocked.
//
// Threading: scavenger_notify() may be called with allocator locks held (it
// only reads flags and wakes a futex); scavenger_poll() starts the thread and
// must be called with no allocator lock held.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace gort::alloc {

inline constexpr size_t kScavengerStartBytes = 4 << 20;

void scavenger_notify();
// Objects went into a transfer cache: wake the scavenger if it sleeps with
// nothing to age (it drains idle transfer caches after the delay). Reads one
// flag; writes nothing unless the scavenger is asleep.
void scavenger_note_cached();
void scavenger_poll();
// Fork child: the thread did not survive; start it again on demand.
void scavenger_fork_child();
// For tests and gort_scavenge(): release every free page now.
size_t scavenge_now();
bool scavenger_running();

// The execution tracer's hook (runtime/trace.cc installs it while a trace
// records; null otherwise): called with true before a scavenger pass and
// with false and the bytes released after it. alloc/ is below the runtime,
// so the runtime reaches down, never the other way.
extern std::atomic<void (*)(bool begin, size_t released)> scavenger_trace_hook;

// The soft memory limit (GORT_MEMLIMIT, gort_gc_set_memory_limit; 0: none).
// While the memory gort holds (held_bytes) is above kLimitReleasePercent of
// it, every scavenger pass releases all free pages at once instead of
// waiting for them to age. Setting it wakes the scavenger.
inline constexpr int kLimitReleasePercent = 95;
void scavenger_set_memory_limit(int64_t bytes);
int64_t scavenger_memory_limit();
// The heap grew under a memory limit: wake the scavenger even from a timed
// sleep (it may wait for pages to age for GORT_SCAVENGE), so it checks the
// limit now. Allocator locks may be held (a futex wake only).
void scavenger_limit_kick();
// Committed arena memory not released, plus metadata: what counts against
// the limit (takes the mheap lock).
size_t held_bytes();

}  // namespace gort::alloc
