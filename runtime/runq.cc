// Run queues, the parts out of line: a full local queue, stealing, and the
// global queue. The design and the invariants are in runq.h.
#include "runtime/runq.h"

#include <time.h>

namespace gort::rt {

bool runqputslow(p* pp, g* gp, uint32_t h, uint32_t t) {
  constexpr uint32_t n = kRunqSize / 2;
  g* batch[n + 1];
  if (t - h != kRunqSize) return false;
  for (uint32_t i = 0; i < n; i++)
    batch[i] = pp->runq[(h + i) % kRunqSize].load(std::memory_order_relaxed);
  if (!pp->runqhead.compare_exchange_strong(h, h + n, std::memory_order_release)) return false;
  batch[n] = gp;
  for (uint32_t i = 0; i < n; i++) batch[i]->schedlink = batch[i + 1];
  gp->schedlink = nullptr;
  globrunqputbatch(batch[0], gp, n + 1);
  return true;
}

// Takes half of victim's queue into batch (thieves). With steal_next, and
// the queue empty, takes its runnext, after giving a running victim ~3 us to
// schedule it itself (a task readied by a channel should stay on its P).
static uint32_t runqgrab(p* victim, g** batch, bool steal_next) {
  for (;;) {
    uint32_t h = victim->runqhead.load(std::memory_order_acquire);
    uint32_t t = victim->runqtail.load(std::memory_order_acquire);
    uint32_t n = t - h;
    n = n - n / 2;
    if (n == 0) {
      if (!steal_next) return 0;
      g* next = victim->runnext.load(std::memory_order_acquire);
      if (!next) return 0;
      if (victim->mp.load(std::memory_order_relaxed)) {
        struct timespec ts = {0, 3000};
        nanosleep(&ts, nullptr);
      }
      if (!victim->runnext.compare_exchange_strong(next, nullptr, std::memory_order_acq_rel))
        continue;
      batch[0] = next;
      return 1;
    }
    if (n > kRunqSize / 2) continue;  // read h and t at different moments
    for (uint32_t i = 0; i < n; i++)
      batch[i] = victim->runq[(h + i) % kRunqSize].load(std::memory_order_relaxed);
    if (victim->runqhead.compare_exchange_strong(h, h + n, std::memory_order_release)) return n;
  }
}

// Steals half of victim's queue into pp's; returns one of the tasks to run.
g* runqsteal(p* pp, p* victim, bool steal_next) {
  g* batch[kRunqSize / 2];
  uint32_t n = runqgrab(victim, batch, steal_next);
  if (n == 0) return nullptr;
  sched.steals.fetch_add(n, std::memory_order_relaxed);
  for (uint32_t i = 1; i < n; i++) runqput(pp, batch[i], false);
  return batch[0];
}

// The global queue, a list of batches; sched.lock held.
static void globrunqputbatch_locked(g* head, g* tail, int32_t n) {
  head->batchlen = n;
  head->batchtail = tail;
  tail->schedlink = nullptr;
  if (sched.runq_tail)
    sched.runq_tail->schedlink = head;
  else
    sched.runq_head = head;
  sched.runq_tail = tail;
  sched.runqsize.fetch_add(n, std::memory_order_relaxed);
}

void globrunqput(g* gp) {
  globrunqputbatch_locked(gp, gp, 1);
}

void globrunqputbatch(g* head, g* tail, int32_t n) {
  alloc::lock_guard l(sched.lock);
  globrunqputbatch_locked(head, tail, n);
}

// Detaches whole batches from the head of the global queue up to a fair
// share (size/GOMAXPROCS + 1, or max), at least one g; a batch longer than
// max == 1 is split after its first g. sched.lock held. Returns the chain
// (through schedlink) and its length in *n.
g* globrunqtake(int32_t max, int32_t* n) {
  *n = 0;
  int32_t size = sched.runqsize.load(std::memory_order_relaxed);
  if (size == 0) return nullptr;
  int32_t want = size / gomaxprocs.load(std::memory_order_relaxed) + 1;
  if (max > 0 && want > max) want = max;
  g* head = sched.runq_head;
  g* tail;
  int32_t taken;
  if (want == 1 && head->batchlen > 1) {
    g* rest = head->schedlink;
    rest->batchlen = head->batchlen - 1;
    rest->batchtail = head->batchtail;
    sched.runq_head = rest;
    tail = head;
    taken = 1;
  } else {
    tail = head->batchtail;
    taken = head->batchlen;
    for (g* b = tail->schedlink; b && taken + b->batchlen <= want &&
                                 taken + b->batchlen <= static_cast<int32_t>(kRunqSize / 2);
         b = tail->schedlink) {
      taken += b->batchlen;
      tail = b->batchtail;
    }
    sched.runq_head = tail->schedlink;
  }
  tail->schedlink = nullptr;
  if (!sched.runq_head) sched.runq_tail = nullptr;
  sched.runqsize.fetch_sub(taken, std::memory_order_relaxed);
  sched.globalq.fetch_add(taken, std::memory_order_relaxed);
  *n = taken;
  return head;
}

// Without sched.lock: the chain's first g to run, the rest to pp's queue.
g* runqputchain(p* pp, g* chain) {
  if (!chain) return nullptr;
  for (g* g1 = chain->schedlink; g1;) {
    g* next = g1->schedlink;
    runqput(pp, g1, false);
    g1 = next;
  }
  return chain;
}

// Takes a fair share of the global queue: a task to run, the rest onto
// pp's local queue. Takes sched.lock.
g* globrunqget(p* pp, int32_t max) {
  if (sched.runqsize.load(std::memory_order_relaxed) == 0) return nullptr;
  int32_t n;
  g* chain;
  {
    alloc::lock_guard l(sched.lock);
    chain = globrunqtake(max, &n);
  }
  return runqputchain(pp, chain);
}

}  // namespace gort::rt
