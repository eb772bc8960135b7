// What the pools (pool/) need from the scheduler, and nothing more: which P
// the calling thread runs on, as a shard index. pool/ includes this header,
// never runtime/proc.h, so the scheduler may change how m and p are laid out
// without touching the pools (the same contract as gchooks.h for gc/).
//
// The answer is a hint: the P may be handed off (a blocking call, sysmon's
// retake) or the task preempted and moved right after the read. Pools use it
// only to pick a shard whose every operation is atomic, so a stale answer
// costs locality, never correctness.
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
