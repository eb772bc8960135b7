// Roots and stopping the world: registered threads, task stacks, root
// ranges and handles.
//
// Registered threads. A thread registers (explicitly, or on its first GC
// allocation or barrier; every M of the scheduler at its start) and gets a
// gcThread record in g_threads. To stop the world the collector signals each
// one (the stop signal: SIGPWR unless GORT_GC_SIGNAL names another; installed
// with SA_RESTART | SA_ONSTACK, and refused with a clear error if the program
// or another runtime already handles it). The handler runs on the thread's
// alternate signal stack when it has one (every M has: a task near the end of
// its stack has no room for a signal frame). It copies the interrupted
// registers (general and vector) into the gcThread, records the ranges of
// stack that are roots, counts itself stopped and waits on a futex until the
// world starts again. The roots of a stopped thread (gcThread::ranges):
//   - the stack it was interrupted on, from the interrupted stack pointer
//     (less the red zone) to that stack's top: its own stack or a task's;
//   - if that was a task's stack and the thread is an M: its own stack from
//     where the scheduler switched to tasks (m::g0sp) to the top. These are
//     the native frames under every task the M runs: on the thread that
//     called gort::run, the caller's frames and locals;
//   - if it was interrupted on its alternate signal stack (inside a handler
//     of the program's): that stack from the interrupted stack pointer up,
//     and the stack under the handler, from the lowest stack pointer into
//     it that the alternate stack holds (the handler's signal frame saved
//     the interrupted one there) to its top, plus the M's native frames.
// Every frame of a thread that runs tasks or is registered is so a root.
// A thread that registers while the collector marks has its stack scanned
// then, callee-saved registers included (gort_gc_register_spilled pushes
// them below its caller's frames first), and is black from then on. A
// thread that blocks the signal stops where it polls: busy_exit, and each
// wake-up of a wait inside gort (stop_poll: a lock's, whose holder the
// signal may have stopped; wait_or_stop: gort_gc_collect's and
// gort_gc_run_finalizers').
// A thread is not stopped where stopping it would be unsafe: inside a busy region
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
// A task's closure (inline in its g or on the malloc heap) is scanned with it,
// one level into the malloc blocks it points to (scan_closure_range).
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
  // The thread's tl_gc.pending: stop_the_world sets it, so that the thread
  // stops itself at its next busy_exit (an allocation, a barrier's slow
  // half) if that comes before the signal does (g_reg_lock keeps it valid).
  uint32_t* pending = nullptr;
  // Whether it stops itself at polls: 2 after a stop at a poll, one less
  // after each stop in the signal's handler. While above 0 the next stop
  // gives it a moment to poll before signalling it, so one stop that found
  // it blocked (say in gort_gc_collect) does not cost the next one a signal.
  uint8_t polls = 0;
  // While stopped: the stack ranges that are roots (roots.h, above), the
  // interrupted registers, and the M's current task, if the thread is an M.
  // owns_curg: one of the ranges is on stop_curg's stack, so the task was
  // scanned with the thread.
  static constexpr int kMaxRanges = 4;
  struct range {
    uintptr_t lo, hi;
  } ranges[kMaxRanges] = {};
  int nranges = 0;
  uintptr_t regs[64] = {};  // general registers and xmm0-15 (scanned as words)
  bool owns_curg = false;
  rt::g* stop_curg = nullptr;
  gcWork work;  // what its write barriers shaded (busy regions)
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

// Installs the stop signal's handler (once): GORT_GC_SIGNAL, else SIGPWR.
// A bad value or a signal that already has a handler is a fatal error that
// names the setting.
void roots_init();
// The runtime's own threads that can never ready a task (the collector's,
// and the finalizer thread while it has nothing to run): the scheduler's
// deadlock check does not count them as foreign threads (gc/cycle.cc).
int runtime_threads();
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
// Mark termination shades every stopped thread's registers and the frame it
// was stopped in (the red zone below the stack pointer and kStoppedFrame
// bytes from there): a thread stopped between a barrier's store and the busy
// region of its slow half (mark_busy_enter) holds the overwritten and the
// stored pointer there (in its frame when built unoptimised), and after this
// stop the slow half finds the cycle over and shades nothing.
inline constexpr uintptr_t kStoppedFrame = 512;
void shade_stopped_registers(gcWork& w);

// Runtime-owned root ranges (the buffers of gort channels): an intrusive
// list, O(1) to add and remove, scanned with the registered ranges. The
// owner keeps the node; g_roots_lock guards the list (busy regions).
// A closure node (a timer's callback) is scanned one level deeper: a word
// that starts a malloc block (the heap storage of a std::function or a
// capture) has that block scanned too, see scan_closure_range.
struct rootNode {
  rootNode* next = nullptr;
  rootNode* prev = nullptr;
  uintptr_t lo = 0, hi = 0;
  bool linked = false;
  bool closure = false;
};
void add_root_node(rootNode* n, const void* lo, size_t len);
void remove_root_node(rootNode* n);

// Go's typedmemmove barrier for the GC pointers the runtime itself moves
// (channel slots, hand-offs to a waiting task, select): called right after
// the value moved into dst. While marking, every word of [dst, dst+n) that
// points into a GC object is shaded: that is the deletion half for the place
// the value left (a buffer slot, a parked task's stack) and the insertion
// half for where it landed, which may be a stack already scanned this cycle.
// After the move, never before, for the barrier's reason (mark.h): a check
// made before the move may see "not marking", then the world stops and the
// mark begins, the value lands in a stack scanned already and leaves the
// sender's before that one is scanned (roots/select_keeps_what_it_moves lost
// objects that way). Checked after the move, "not marking" means the move
// was done before the mark began, and the stack scans see the value in dst.
void shade_moved_slow(const void* dst, size_t n);
inline void shade_moved(const void* dst, size_t n) {
  __atomic_signal_fence(__ATOMIC_SEQ_CST);  // the move's stores come first
  if (__builtin_expect(__atomic_load_n(&gort_gc_marking, __ATOMIC_RELAXED) & kMarkingBit, 0))
    shade_moved_slow(dst, n);
}
// A runtime-held closure [lo, hi): conservatively, and each word that
// starts a malloc block (std::function's heap storage) has that block
// scanned too (one level: what the runtime itself allocated for it).
void scan_closure_range(uintptr_t lo, uintptr_t hi, gcWork& w);

// GORT_DEBUG=poolcheck (pool/scope.cc): fn(slot, v, arg) for every word of
// every root range and every handle (not stacks). Takes the roots' locks in
// busy regions; the world may be stopped or running.
void for_each_root_word(void (*fn)(uintptr_t slot, uintptr_t v, void* arg), void* arg);

// Concurrent mark: roots that are not stacks, and parked tasks.
void scan_root_ranges(gcWork& w);
void scan_handles(gcWork& w);
void scan_tasks(gcWork& w);

// A new cycle's generation for tasks (sweep termination).
extern std::atomic<uint32_t> g_scangen;
inline constexpr uint32_t kScanBusy = 0xffffffffu;
// From the scheduler, just before it switches to gp (gp is not running).
void scan_task_before_run(rt::g* gp);
// From the preemption handler (runtime/preempt.cc), on the task's stack,
// before it switches out: a task preempted asynchronously may be inside the
// program's inline write barrier (gort/gc.h), between its store and its look
// at gort_gc_marking, with the overwritten pointer only in the interrupted
// registers or, unoptimised, in its frame. Its stack may be black already
// this cycle and mark termination may come before it runs again (it is not
// on any thread then, so shade_stopped_registers misses it): while the
// collector marks, [lo, hi) (the copied signal frame and the stack above
// it) is shaded now. Without that, an edge moved by such a task was freed
// (concurrent/preempted_barrier_keeps_what_it_moves).
void shade_preempted_stack(uintptr_t lo, uintptr_t hi);
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
