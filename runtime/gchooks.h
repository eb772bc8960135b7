// What the collector (gc/) needs from the scheduler, and nothing more: the
// tasks there are, where each one's stack and closure are, whether a thread
// is an M and what it runs, and where a thread may be stopped. gc/ includes
// this header, never runtime/proc.h, so the scheduler may change how g, m
// and p are laid out without touching the collector.
//
// The contract, from the scheduler's side:
//  - Every task ever made is on one list (sched.allg), published with
//    release and never unlinked: first_task/next_task walk it without a
//    lock, and a g is never freed, only reused.
//  - A task that is not running has its context saved on its own stack:
//    saved_sp is the lowest live word of it. While a task runs, saved_sp is
//    null (the switch clears it on the way in), so a stack read from
//    saved_sp up is never one that is changing under the reader.
//  - scan_word is the collector's own word in the g (the task generation of
//    gc/roots.h); the scheduler only reads it at a switch (gc_before_run).
//  - A thread is at no safe point while its PC is in the context switch
//    (in_switch): it is between two stacks. An M's own stack holds the
//    frames of whoever started it (the caller of gort::run on the thread
//    that called it): it is always scanned, from the stop's stack pointer
//    or, while a task runs, from m_g0sp.
//  - A task blocked in a system call (entersyscall) keeps its M: the M's
//    current task is still that task, and its stack is the live part of the
//    M's stack, so stopping the M by signal finds it as for a running task.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "alloc/mcache.h"
#include "gort/runtime.h"
#include "runtime/proc.h"
#include "runtime/runq.h"

extern "C" void gort_ctx_switch_region_start();
extern "C" void gort_ctx_switch_region_end();

namespace gort::rt::gchook {

// ---- tasks

inline g* first_task() {
  return __atomic_load_n(&sched.allg, __ATOMIC_ACQUIRE);
}
inline g* next_task(const g* gp) {
  return gp->allnext;
}
// A task with a stack and a body that may hold pointers: not a plain
// thread's pseudo-g, not dead.
inline bool live_task(const g* gp) {
  return !gp->is_thread && gp->status.load(std::memory_order_relaxed) != gstatus::dead;
}
// The saved stack pointer of a task that is not running, else 0.
inline uintptr_t saved_sp(const g* gp) {
  return reinterpret_cast<uintptr_t>(__atomic_load_n(&gp->sp, __ATOMIC_ACQUIRE));
}
// The task's stack [lo, hi); false before its first run (no stack yet).
inline bool stack_bounds(const g* gp, uintptr_t* lo, uintptr_t* hi) {
  if (!gp->stk.span) return false;
  *lo = gp->stk.lo;
  *hi = gp->stk.hi;
  return true;
}
inline bool on_stack(const g* gp, uintptr_t addr) {
  return gp->stk.span && addr >= gp->stk.lo && addr < gp->stk.hi;
}
// The task's closure (its body's captures): inline in the g, or a malloc
// block (closure_on_heap) whose usable size the caller looks up.
inline const void* closure(const g* gp) {
  return gp->fn;
}
inline bool closure_on_heap(const g* gp) {
  return gp->fn_heap;
}
inline size_t closure_inline_size() {
  return sizeof(g::inline_fn);
}
inline std::atomic<uint32_t>& scan_word(g* gp) {
  return gp->gcscan;
}

// ---- threads

// The calling thread's M, if it is one.
inline m* this_m() {
  return static_cast<m*>(alloc::tl_thread.sched_m);
}
// The task an M runs (or is about to switch to, or is blocked in a system
// call for); null on its own stack between tasks.
inline g* m_task(const m* mp) {
  return mp->curg;
}
// Where the M's own stack was when it last switched to a task: the frames
// from there up (the scheduler loop, and on the thread that called
// gort::run, that caller's frames) are frozen while the task runs and are
// roots. 0 before the first switch.
inline uintptr_t m_g0sp(const m* mp) {
  return reinterpret_cast<uintptr_t>(mp->g0sp);
}
// A PC inside the context switch: the thread is between two stacks.
inline bool in_switch(uintptr_t pc) {
  return pc >= reinterpret_cast<uintptr_t>(&gort_ctx_switch_region_start) &&
         pc < reinterpret_cast<uintptr_t>(&gort_ctx_switch_region_end);
}

// ---- scheduler work

// Lets other tasks run (from a task), as Go's Gosched.
inline void yield() {
  goyield();
}
// Starts fn(arg) as a task of the runtime's own, from any thread; false (and
// nothing started) when no gort::run is in progress.
inline bool spawn(void (*fn)(void*), void* arg) {
  return detail::spawn_runtime_task(fn, arg);
}
// GOMAXPROCS while gort::run is in progress (the pacer's 25%), else 0.
inline int procs() {
  // gomaxprocs keeps the last run's value after it ends: without the check a
  // plain-thread program that once ran gort::run with 1 P would be paced
  // (and its CPU limiter filled) as if the machine had one CPU.
  if (!sched.running.load(std::memory_order_acquire)) return 0;
  return gomaxprocs.load(std::memory_order_relaxed);
}
// Parks the calling task for ns nanoseconds (a thread just sleeps).
inline void sleep(int64_t ns) {
  gort::sleep_for(gort::Duration(ns));
}
// Whether other tasks wait to run where the calling task's P could take
// them (its own run queue, or the global one): false means the P would
// idle if the caller gave it up.
inline bool others_runnable() {
  m* mp = this_m();
  if (!mp || !mp->pp) return false;
  return sched.runqsize.load(std::memory_order_relaxed) > 0 || !runq_empty(mp->pp);
}
// Whether the calling thread is running a task (it may yield).
inline bool in_task() {
  m* mp = this_m();
  return mp && m_task(mp);
}
// The calling task's mark-assist credit (it stays with the task when it
// moves to another M), or null on a thread that runs no task.
inline gcAssist* task_assist() {
  m* mp = this_m();
  g* gp = mp ? m_task(mp) : nullptr;
  return gp ? &gp->assist : nullptr;
}

}  // namespace gort::rt::gchook
