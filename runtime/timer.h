// Timers: per-P 4-ary min-heaps ordered by when, run by the scheduler (Go's
// time.go before the Go 1.23 rewrite, simplified).
//
// A timer lives in at most one P's heap (t->pp, with t->idx its position);
// every change takes that P's timers_lock. p::timer0 mirrors the heap's
// earliest when, so the scheduler's check is one relaxed load when nothing is
// due. A P runs its own expired timers at each switch and in findrunnable;
// an M looking for work also runs other Ps' expired timers (idle Ps'
// timers still fire); when every M is idle one of them, sched.timer_sleeper,
// sleeps on its futex only until the earliest timer anywhere.
//
// Callbacks run on the scheduler's stack with a P held and must not block:
// they ready a task, send without blocking, or spawn a task.
#pragma once

#include <atomic>
#include <cstdint>

namespace gort::rt {

struct p;

struct timer {
  int64_t when = 0;                            // CLOCK_MONOTONIC ns
  void (*f)(timer* t, int64_t now) = nullptr;  // runs once per firing
  void* arg = nullptr;
  std::atomic<p*> pp{nullptr};  // heap it is in, or null: not pending
  int32_t idx = -1;
  // Set (under the P's lock) when the timer is taken out to fire. A callback
  // whose timer may be destroyed concurrently (Timer, AfterFunc) clears it as
  // its last action, and timer_wait_fired waits for that.
  std::atomic<uint32_t> firing{0};
};

// Adds t (not pending) to the current P's heap, or P 0's from a thread
// outside the scheduler; wakes the timer sleeper if t is now the earliest.
void timer_add(timer* t, int64_t when);
// Removes a pending timer: true if it was pending (it will not fire).
bool timer_del(timer* t);
// After timer_del returned false: waits until a running callback of t is done.
void timer_wait_fired(timer* t);
// Runs pp's timers whose when <= now. Returns pp's next when, or 0.
int64_t timers_run(p* pp, int64_t now);
// Earliest when over all Ps, or only over idle ones (0: none).
int64_t timers_earliest(bool idle_only);
// gort::run ended: every timer still pending is dropped.
void timers_clear(p* pp);

}  // namespace gort::rt
