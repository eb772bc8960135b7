// Run queues: each P's local queue and runnext slot, and the global queue
// (Go's runqput, runqget, runqsteal, globrunqput, globrunqget).
//
// The local queue is a 256-entry ring. Its owner (the M holding the P)
// writes the tail and takes from the head; thieves take half of it with one
// CAS on the head, so neither side takes a lock. runnext holds one task that
// the running task readied (a channel partner, a spawned task): it runs next
// on this P and inherits the rest of the time slice, which is what makes a
// ping-pong between two tasks cost one switch. The owner's put and get are
// inline (every switch uses them); a full ring, stealing and the global
// queue are out of line in runq.cc.
//
// Invariants: runqhead <= runqtail (mod 2^32) and runqtail - runqhead <=
// kRunqSize; only the owner stores runqtail; a slot is read before the head
// CAS that claims it. The global queue is a list of batches under sched.lock
// (see g::batchlen); runqsize mirrors its length so that an empty queue is
// one relaxed load.
#pragma once

#include "runtime/proc.h"

namespace gort::rt {

// A full local queue: half of it and gp go to the global queue; false if a
// thief raced and the caller should retry the fast path.
bool runqputslow(p* pp, g* gp, uint32_t h, uint32_t t);

// Puts gp on pp's local queue (owner only). next: into runnext, kicking the
// old runnext to the tail.
inline void runqput(p* pp, g* gp, bool next) {
  if (next) {
    g* old = pp->runnext.exchange(gp, std::memory_order_acq_rel);
    if (!old) return;
    gp = old;
  }
  for (;;) {
    uint32_t h = pp->runqhead.load(std::memory_order_acquire);
    uint32_t t = pp->runqtail.load(std::memory_order_relaxed);
    if (t - h < kRunqSize) {
      pp->runq[t % kRunqSize].store(gp, std::memory_order_relaxed);
      pp->runqtail.store(t + 1, std::memory_order_release);
      return;
    }
    if (runqputslow(pp, gp, h, t)) return;
  }
}

// runnext first, then the head of the ring. Any thread may call it (the
// owner, or one that runs a retaken P's work).
inline g* runqget(p* pp) {
  g* next = pp->runnext.load(std::memory_order_relaxed);
  if (next && pp->runnext.compare_exchange_strong(next, nullptr, std::memory_order_acquire))
    return next;
  for (;;) {
    uint32_t h = pp->runqhead.load(std::memory_order_acquire);
    uint32_t t = pp->runqtail.load(std::memory_order_relaxed);
    if (t == h) return nullptr;
    g* gp = pp->runq[h % kRunqSize].load(std::memory_order_relaxed);
    if (pp->runqhead.compare_exchange_strong(h, h + 1, std::memory_order_release)) return gp;
  }
}

inline bool runq_empty(p* pp) {
  uint32_t h = pp->runqhead.load(std::memory_order_acquire);
  uint32_t t = pp->runqtail.load(std::memory_order_acquire);
  return h == t && pp->runnext.load(std::memory_order_acquire) == nullptr;
}

// Steals half of victim's queue into pp's; returns one of the tasks to run.
// With steal_next and the ring empty, takes victim's runnext.
g* runqsteal(p* pp, p* victim, bool steal_next);

// The global queue. The _locked forms want sched.lock held.
void globrunqput(g* gp);  // sched.lock held
void globrunqputbatch(g* head, g* tail, int32_t n);
g* globrunqtake(int32_t max, int32_t* n);  // sched.lock held
// Without sched.lock: the chain's first g to run, the rest to pp's queue.
g* runqputchain(p* pp, g* chain);
// Takes a fair share of the global queue: a task to run, the rest onto pp's
// local queue. Takes sched.lock.
g* globrunqget(p* pp, int32_t max);

}  // namespace gort::rt
