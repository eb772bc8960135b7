// Roots and stopping the world: registered threads, task stacks, root
// ranges and handles.
//
// Registered threads. A thread registers (explicitly, or on its first GC
// allocation or barrier; every M of the scheduler at its start) and gets a
// gcThread record in g_threads. To stop the world the collector signals each
// one (SIGPWR, SA_RESTART); the handler records where the thread's live stack
// is (from its own frame, which lies below the kernel's signal frame with the
// interrupted registers, to the top of the stack the thread was on), counts
// itself stopped and waits on a futex until the world starts again. A thread
// is not stopped where stopping it would be unsafe: inside a busy region
// (gc/heap.h) or inside the scheduler's context switch, where no stack is
// complete. It returns from the handler at once and the collector signals
// it again ~20 us later. So the stop never needs a thread's cooperation, and
// a stopped thread is never half way through a GC operation.
//
// Lock: g_reg_lock guards g_threads. The collector holds it from the first
// signal of a stop to the start of the world, so a thread cannot join or
// leave the set while it is stopped; registration and unregistration take it
// outside busy regions (a thread that waits for it can be stopped).
//
// Task stacks (Go's hybrid barrier makes one scan per cycle enough): at
// sweep termination every task becomes unscanned (g_scangen moves on; a g is
// scanned when g->gcscan == g_scangen). A task running at that moment is
// scanned in the stop, from its M. A parked task is claimed (gcscan CAS to
// kScanBusy) and scanned from its saved stack pointer by the mark worker, or
// by the M that is about to resume it (scan_task_before_run), whichever
// claims it first; the other waits or skips. While a task runs its g->sp is
// null (the switch clears it on the way in), so a worker never scans a stack
// that is live. Tasks still unscanned at mark termination are scanned then.
// A task's closure (inline in its g or on the malloc heap) is scanned with it.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>

#include "gc/mark.h"

namespace gort::rt {
struct g;
}

namespace gort::gc {

struct gcThread {
  gcThread* next = nullptr;  // g_threads (g_reg_lock)
  pid_t tid = 0;
  uintptr_t stack_lo = 0, stack_hi = 0;  // the thread's own stack
  bool explicit_reg = false;
  std::atomic<uint32_t> acked{0};  // the stop epoch this thread is stopped for
  // While stopped: the live part of the stack it was on.
  uintptr_t stop_lo = 0, stop_hi = 0;
  bool stop_on_task = false;
  rt::g* stop_curg = nullptr;  // the M's current task, if the thread is an M
  gcWork work;                 // what its write barriers shaded (busy regions)
};

// Registers the calling thread (explicit: by gort_gc_register_thread; such a
// thread is unregistered only by gort_gc_unregister_thread or its exit).
// false if its stack cannot be found.
bool register_current_thread(bool explicit_reg);
void unregister_current_thread();
inline bool is_registered() {
  return tl_gc.rec != nullptr;
}
size_t nthreads();

// Installs the stop signal's handler (once).
void roots_init();
// In the child of fork(): only the forking thread exists; it stays
// registered if it was, every other record is dropped.
void roots_fork_child();
// Stops every registered thread (the caller is the collector's own thread,
// not registered). Returns the time the stop took, in ns.
int64_t stop_the_world();
void start_the_world();

// With the world stopped: scan every stopped thread's stack (sweep
// termination), and the part of mark termination: the stacks of tasks not
// scanned yet and every thread's write-barrier work.
void scan_stopped_threads(gcWork& w);
void scan_leftover_tasks(gcWork& w);
void flush_thread_work();

// Runtime-owned root ranges (the buffers of gort channels): an intrusive
// list, O(1) to add and remove, scanned with the registered ranges. The
// owner keeps the node; g_roots_lock guards the list (busy regions).
struct rootNode {
  rootNode* next = nullptr;
  rootNode* prev = nullptr;
  uintptr_t lo = 0, hi = 0;
  bool linked = false;
};
void add_root_node(rootNode* n, const void* lo, size_t len);
void remove_root_node(rootNode* n);

// Concurrent mark: roots that are not stacks, and parked tasks.
void scan_root_ranges(gcWork& w);
void scan_handles(gcWork& w);
void scan_tasks(gcWork& w);

// A new cycle's generation for tasks (sweep termination).
extern std::atomic<uint32_t> g_scangen;
inline constexpr uint32_t kScanBusy = 0xffffffffu;
// From the scheduler, just before it switches to gp (gp is not running).
void scan_task_before_run(rt::g* gp);
// Read at every task switch (runtime/proc.cc): one load, inline.
inline uint32_t task_scan_gen() {
  return g_scangen.load(std::memory_order_relaxed);
}

}  // namespace gort::gc

namespace gort::gc {
// Mark termination: bytes the threads' own gcWorks marked this cycle (and
// reset them).
uint64_t take_thread_marked();
}  // namespace gort::gc
