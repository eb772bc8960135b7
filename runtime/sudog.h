// sudog: a task (or thread) waiting in a queue: a channel's send or receive
// queue, a semaphore's, a Cond's. It lives on the waiter's stack, for as
// long as the waiter is parked, and is only touched under the lock of the
// queue it is in (Go's runtime2.go sudog and chan.go waitq).
//
// A select puts one sudog per case on the case's channel, all with
// is_select; whoever dequeues one must win the waiter's selectdone CAS, so
// exactly one case completes and the losers are skipped.
#pragma once

#include <cstdint>

#include "runtime/proc.h"

namespace gort::rt {

struct sudog {
  g* gp = nullptr;
  sudog* next = nullptr;
  sudog* prev = nullptr;
  void* elem = nullptr;        // channel: the value to send, or storage to receive into
  const void* addr = nullptr;  // semaphore: its address
  sudog* waitlink = nullptr;   // semaphore: more waiters on the same address
  sudog* waittail = nullptr;
  uint32_t ticket = 0;  // semaphore: handed the count directly; Cond: its ticket
  int32_t case_index = -1;
  bool is_select = false;
  bool success = false;  // channel: the operation completed (false: closed)
};

struct waitq {
  sudog* first = nullptr;
  sudog* last = nullptr;

  void enqueue(sudog* s) {
    s->next = nullptr;
    s->prev = last;
    if (last)
      last->next = s;
    else
      first = s;
    last = s;
  }

  void unlink(sudog* s) {
    if (s->prev)
      s->prev->next = s->next;
    else
      first = s->next;
    if (s->next)
      s->next->prev = s->prev;
    else
      last = s->prev;
    s->next = s->prev = nullptr;
  }

  // The first waiter that is still waiting (a select's sudog whose select
  // completed elsewhere is dropped, and so is a task abandoned at the end of
  // an earlier run: it would never take the value or the wake-up).
  sudog* dequeue() {
    for (;;) {
      sudog* s = first;
      if (!s) return nullptr;
      unlink(s);
      if (abandoned(s->gp)) continue;
      if (s->is_select) {
        uint32_t zero = 0;
        if (!s->gp->selectdone.compare_exchange_strong(zero, 1, std::memory_order_acq_rel))
          continue;
      }
      return s;
    }
  }

  // Takes s out if it is still queued.
  void remove(sudog* s) {
    if (!s->prev && first != s) return;
    unlink(s);
  }
};

}  // namespace gort::rt
