// What the pools (pool/) need from the scheduler, and nothing more: which P
// the calling thread runs on, as a shard index. pool/ includes this header,
// never runtime/proc.h, so the scheduler may change how m and p are laid out
// without touching the pools (the same contract as gchooks.h for gc/).
//
// The answer holds until the task makes a blocking call or a runtime call
// that may yield: a P is handed off only from an M in a blocking call
// (sysmon's retake included), and a task is never preempted inside gort's
// own code (runtime/preempt.cc). The pools rely on it: within one pool
// operation the caller keeps its P, so the tasks of P n use shard n one at
// a time (pool/pool.cc, "P-owned private slots").
#pragma once

#include "alloc/mcache.h"
#include "runtime/proc.h"

namespace gort::rt::poolhook {

// The id of the P the calling thread holds, or -1 on a plain thread (or an M
// between Ps).
inline int this_p_id() {
  m* mp = static_cast<m*>(alloc::tl_thread.sched_m);
  if (!mp) return -1;
  p* pp = __atomic_load_n(&mp->pp, __ATOMIC_RELAXED);
  return pp ? pp->id : -1;
}

// Where the running task keeps its scope stack (pool/scope.cc), or null on
// a plain thread or an M between tasks (the caller uses a thread-local
// word then). The word belongs to the task, so a scope opened on one M and
// closed on another after a migration or a blocking call finds its state.
inline void** this_task_scope_slot() {
  m* mp = static_cast<m*>(alloc::tl_thread.sched_m);
  if (!mp) return nullptr;
  g* gp = mp->curg;
  return gp ? &gp->scope : nullptr;
}

}  // namespace gort::rt::poolhook
