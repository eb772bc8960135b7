// Blocking calls from tasks: Go's entersyscall and exitsyscall, the hand-off
// of a P whose M is blocked (handoffp), and gort::blocking / the C calls
// gort_blocking_enter and gort_blocking_exit for code the runtime cannot see.
//
// A task about to block in the kernel keeps its M (the call runs on the
// task's stack, on that thread) but lets go of its P: entersyscall releases
// the P without putting it on the idle list and publishes p::syscallm = this
// M. From then on the P belongs to whoever clears syscallm first with a CAS:
//  - the M itself, when the call returns (exitsyscall's fast path: a short
//    call costs two atomic operations and the task goes on with its P, its
//    cache and its run queue as if nothing happened);
//  - sysmon, when the call has lasted a sysmon tick and there is other work,
//    or 10 ms in any case (retake, sysmon.cc), which hands the P to another
//    M (handoffp): the rest of the P's queue and timers run on.
// An M whose P was retaken tries for an idle P when its call returns; with
// none, its task goes to the global run queue (Go's exitsyscall0) and the M
// parks. While a P is in a call its M is null, so idle Ms steal from its
// queue and the timer sleeper watches its timers as for an idle P.
//
// Invariants. While in a call: g::status is syscall, m::curg is still the
// task (the collector finds its stack through the M, gchooks.h), m::pp is
// null, m::oldp is the P left, and the thread's malloc cache is its own,
// not the P's (code inside gort::blocking may allocate while another M runs
// the P). sched.nmsyscall counts such Ms: the deadlock check does not fire
// while one may still ready a task, and the end of a run does not wait for
// them. A call that returns after its run ended (m::syscall_run differs, or
// shutdown) leaves its task abandoned, as every task left at the end is.
//
// Lock order: sched.lock only (exitsyscall's slow path, handoffp).
#include <errno.h>

#include "gort/runtime.h"
#include "runtime/context.h"
#include "runtime/proc.h"
#include "runtime/runq.h"
#include "runtime/timer.h"
#include "runtime/trace.h"

#define GORT_EXPORT extern "C" __attribute__((visibility("default")))

namespace gort::rt {

void entersyscall() {
  m* mp = getm();
  g* gp = mp->curg;
  p* pp = mp->pp;
  trace::syscall_enter(mp, gp);
  gp->status.store(gstatus::syscall, std::memory_order_relaxed);
  mp->oldp = pp;
  mp->syscall_run = sched.runid;
  releasep(mp);
  sched.nmsyscall.fetch_add(1, std::memory_order_relaxed);
  pp->syscalltick.fetch_add(1, std::memory_order_relaxed);
  pp->syscallm.store(mp, std::memory_order_release);  // from here on, sysmon may take pp
}

namespace {

// On g0 once the task's context is saved: queue it, or leave it abandoned.
void exitsyscall_park_after(void*, g* gp) {
  m* mp = getm();
  {
    alloc::lock_guard l(sched.lock);
    sched.nmsyscall.fetch_sub(1, std::memory_order_relaxed);
    if (sched.shutdown.load() || sched.runid != mp->syscall_run) {
      gp->status.store(static_cast<gstatus>(static_cast<uint32_t>(gstatus::waiting) | kAbandoned));
      return;
    }
    gp->status.store(gstatus::runnable, std::memory_order_relaxed);
    globrunqput(gp);
  }
  wakep();
}

// The P was retaken: an idle P, else the global queue and park.
void exitsyscall_slow(m* mp, g* gp) {
  sched.lock.lock();
  bool over = sched.shutdown.load() || sched.runid != mp->syscall_run;
  p* pp = over ? nullptr : pidleget();
  if (pp) {
    sched.nmsyscall.fetch_sub(1, std::memory_order_relaxed);
    sched.lock.unlock();
    acquirep(mp, pp);
    trace::syscall_exit(mp, gp);
    gp->status.store(gstatus::running, std::memory_order_relaxed);
    return;
  }
  sched.lock.unlock();
  trace::syscall_exit(mp, gp);  // without a P: the task goes back to a queue
  mp->next_after = after{exitsyscall_park_after, nullptr, gp};
  switch_to_g0(mp, gp);
}

}  // namespace

void exitsyscall() {
  m* mp = getm();
  g* gp = mp->curg;
  p* pp = mp->oldp;
  mp->oldp = nullptr;
  m* expect = mp;
  if (pp->syscallm.compare_exchange_strong(expect, nullptr, std::memory_order_acquire)) {
    acquirep(mp, pp);
    trace::syscall_exit(mp, gp);
    sched.nmsyscall.fetch_sub(1, std::memory_order_relaxed);
    gp->status.store(gstatus::running, std::memory_order_relaxed);
    // Tasks waited while this one was in its call: the call is its turn's
    // end, and it yields at the caller's preempt_check (turn_end_if_waiting,
    // proc.h). Without this a task whose calls return quickly keeps its P
    // across them forever: sysmon sees a new call each round.
    turn_end_if_waiting(mp, gp);
    return;
  }
  exitsyscall_slow(mp, gp);
}

// pp, taken from an M blocked in a call, belongs to the caller: to an M if
// there is work for it or nobody looks for work, else to the idle list
// (where the timer sleeper watches its timers).
void handoffp(p* pp) {
  if (!runq_empty(pp) || sched.runqsize.load(std::memory_order_relaxed) > 0) {
    startm(pp, false);
    return;
  }
  int32_t zero = 0;
  if (sched.nmspinning.load() + sched.npidle.load() == 0 &&
      sched.nmspinning.compare_exchange_strong(zero, 1)) {
    startm(pp, true);
    return;
  }
  sched.lock.lock();
  if (sched.runqsize.load() > 0 && !sched.shutdown.load()) {
    sched.lock.unlock();
    startm(pp, false);
    return;
  }
  pidleput(pp);
  sched.lock.unlock();
  if (int64_t t0 = pp->timer0.load(std::memory_order_relaxed)) wake_timer_sleeper(t0);
}

}  // namespace gort::rt

namespace gort::detail {

using namespace gort::rt;

void blocking_enter() {
  m* mp = getm();
  g* gp = mp ? mp->curg : nullptr;
  if (!gp) return;  // a plain thread, or the scheduler's own stack
  if (gp->syscalldepth++ == 0) entersyscall();
}

void blocking_exit() {
  m* mp = getm();
  g* gp = mp ? mp->curg : nullptr;
  if (!gp || gp->syscalldepth == 0) return;
  if (--gp->syscalldepth > 0) return;
  int e = rt::cur_errno();  // the task's, read on the M it blocked on
  exitsyscall();
  preempt_check();
  // Looked up again: written as plain errno, the compiler may store it at
  // the old M's address, under whatever task runs there now (libc.cc,
  // blocking_call).
  rt::cur_errno() = e;
}

}  // namespace gort::detail

GORT_EXPORT void gort_blocking_enter(void) {
  gort::detail::blocking_enter();
}

GORT_EXPORT void gort_blocking_exit(void) {
  gort::detail::blocking_exit();
}
