// sysmon: the scheduler's watchdog, an OS thread of its own that holds no P
// (Go's sysmon in proc.go). It wakes every 20 us while it finds something to
// do, and backs off (doubling after 50 idle rounds) to 10 ms when it does
// not; while every P is idle and no M is in a blocking call it sleeps until
// a P is taken (pidleget wakes it) or the forced-GC period is due. Each
// round it:
//  - retakes Ps from Ms in a blocking call (retake): one that has been in
//    the same call for a whole sysmon round is handed to another M
//    (handoffp) if the P has queued work or no M is looking for work, and
//    after 10 ms in any case;
//  - asks a task that has run for more than 10 ms without a switch on its P
//    to yield (preemptone, preempt.cc);
//  - polls the network when tasks wait on it and nobody polled for 10 ms
//    (a P that keeps switching polls on its own: proc.cc, netpoll_due);
//  - wakes an M if a timer is overdue by more than a millisecond and no M is
//    spinning (a backstop for the timer sleeper);
//  - forces a collection and a scavenge when the collector has a heap and
//    no cycle ran for 2 minutes (Go's forcegc), on a short-lived thread of
//    its own so that sysmon never waits for a cycle;
//  - with GORT_DEBUG=schedtrace=MS, prints Go's SCHED line every MS ms.
//
// sysmon reads P state racily: per P it remembers the last schedtick and
// syscalltick it saw and when (sysmontick), as Go does, and acts only
// through CAS (p::syscallm) or flags (g::preempt), never by writing a P.
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "alloc/options.h"
#include "alloc/scavenger.h"
#include "alloc/sys.h"
#include "gort/gc.h"
#include "runtime/netpoll.h"
#include "runtime/proc.h"
#include "runtime/runq.h"
#include "runtime/timer.h"
#include "runtime/trace.h"

namespace gort::rt {

namespace {

constexpr int64_t kForcePreemptNs = 10 * 1000000;  // Go's forcePreemptNS
constexpr int64_t kMaxSyscallNs = 10 * 1000000;
constexpr int64_t kForceGCPeriodNs = 120LL * 1000000000;
constexpr int64_t kMinDelayUs = 20, kMaxDelayUs = 10000;
constexpr int64_t kNetpollNs = 10000000;  // poll if not polled for 10 ms, as Go

struct sysmontick {
  uint32_t schedtick = 0;
  int64_t schedwhen = 0;
  uint32_t syscalltick = 0;
  int64_t syscallwhen = 0;
};
sysmontick g_ticks[1024];  // kMaxProcsLimit (maxprocs.h) bounds gomaxprocs

std::atomic<bool> g_started{false};
int64_t g_start_ns = 0;
uint64_t g_gc_cycles = 0;
int64_t g_gc_when = 0;

// Retakes Ps blocked in calls and preempts long-running tasks; returns how
// many Ps it acted on.
int retake(int64_t now) {
  int n = 0;
  int32_t np = gomaxprocs.load(std::memory_order_relaxed);
  for (int32_t i = 0; i < np && i < 1024; i++) {
    p* pp = allp[i];
    sysmontick& pd = g_ticks[i];
    if (m* sm = pp->syscallm.load(std::memory_order_acquire)) {
      uint32_t t = pp->syscalltick.load(std::memory_order_relaxed);
      if (pd.syscalltick != t) {
        pd.syscalltick = t;
        pd.syscallwhen = now;
        continue;
      }
      // Nothing else to run and someone looking for work: let a short call
      // keep its P (it comes back to it without a hand-off), up to 10 ms.
      if (runq_empty(pp) && sched.nmspinning.load() + sched.npidle.load() > 0 &&
          pd.syscallwhen + kMaxSyscallNs > now)
        continue;
      if (pp->syscallm.compare_exchange_strong(sm, nullptr, std::memory_order_acq_rel)) {
        sched.retakes.fetch_add(1, std::memory_order_relaxed);
        trace::proc_retake(pp);
        handoffp(pp);
        n++;
      }
    } else if (pp->mp.load(std::memory_order_relaxed)) {
      uint32_t t = pp->schedtick.load(std::memory_order_relaxed);
      if (pd.schedtick != t) {
        pd.schedtick = t;
        pd.schedwhen = now;
      } else if (pd.schedwhen + kForcePreemptNs <= now) {
        preemptone(pp);
        pd.schedwhen = now;  // ask again in 10 ms if it did not yield
        n++;
      }
    }
  }
  return n;
}

void schedtrace(int64_t now) {
  char buf[2048];
  int32_t np = gomaxprocs.load();
  int len;
  {
    alloc::lock_guard l(sched.lock);
    len = snprintf(buf, sizeof buf,
                   "SCHED %lldms: gomaxprocs=%d idleprocs=%d threads=%d spinningthreads=%d "
                   "needspinning=0 idlethreads=%d syscallthreads=%d runqueue=%d [",
                   static_cast<long long>((now - g_start_ns) / 1000000), np, sched.npidle.load(),
                   sched.mcount, sched.nmspinning.load(), sched.nmidle, sched.nmsyscall.load(),
                   sched.runqsize.load());
  }
  for (int32_t i = 0; i < np && len < static_cast<int>(sizeof buf) - 16; i++) {
    p* pp = allp[i];
    uint32_t h = pp->runqhead.load(), t = pp->runqtail.load();
    len += snprintf(buf + len, sizeof buf - static_cast<size_t>(len), "%s%u", i ? " " : "",
                    t - h + (pp->runnext.load() ? 1 : 0));
  }
  len += snprintf(buf + len, sizeof buf - static_cast<size_t>(len), "]\n");
  if (len > static_cast<int>(sizeof buf)) len = static_cast<int>(sizeof buf);
  ssize_t w = write(2, buf, static_cast<size_t>(len));  // Go's line exactly: no "gort:" prefix
  (void)w;
}

// A detached thread of sysmon's (counted in sched.nsysmon) that takes none
// of the runtime's signals: it is no collector root and never runs a task.
int start_helper(void* (*fn)(void*)) {
  sched.nsysmon.fetch_add(1);
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 256 * 1024);
  pthread_t t;
  int err = pthread_create(&t, &attr, fn, nullptr);
  pthread_attr_destroy(&attr);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (err != 0) sched.nsysmon.fetch_sub(1);
  return err;
}

void* forcegc_main(void*) {
  gort_gc_collect();
  alloc::scavenge_now();
  sched.nsysmon.fetch_sub(1);
  return nullptr;
}

// Go's forcegc: a collector with a heap that has not run for 2 minutes.
void forcegc(int64_t now) {
  gort_gc_stats_t st;
  gort_gc_stats(&st);
  if (st.cycles != g_gc_cycles || g_gc_when == 0) {
    g_gc_cycles = st.cycles;
    g_gc_when = now;
    return;
  }
  if (st.heap_alloc == 0 || now - g_gc_when < kForceGCPeriodNs) return;
  g_gc_when = now;
  start_helper(forcegc_main);  // if it cannot start, sysmon tries again in 2 minutes
}

void* sysmon_main(void*) {
  int64_t delay = kMinDelayUs;
  int64_t deadcheck_wait = 0;  // ns; backs off while checkdead sees foreign threads
  int idle = 0;
  int64_t trace_ns = alloc::g_options.schedtrace * 1000000;
  int64_t last_trace = alloc::nanotime();
  for (;;) {
    if (idle == 0)
      delay = kMinDelayUs;
    else if (idle > 50 && delay < kMaxDelayUs)
      delay *= 2;
    if (delay > kMaxDelayUs) delay = kMaxDelayUs;
    usleep(static_cast<useconds_t>(delay));
    int64_t now = alloc::nanotime();
    bool quiet = !sched.running.load() ||
                 (sched.npidle.load() == gomaxprocs.load() && sched.nmsyscall.load() == 0);
    if (quiet && trace_ns == 0) {
      // Every P idle: sleep until one is taken or the forced GC is due.
      sched.sysmonwait.store(1, std::memory_order_seq_cst);
      quiet = !sched.running.load() ||
              (sched.npidle.load() == gomaxprocs.load() && sched.nmsyscall.load() == 0);
      // A deadlock check that saw threads it does not know looks again,
      // 1 ms later and then backing off to 1 s: a thread that was exiting
      // is gone by then; one that is not keeps the check from firing.
      bool again = sched.deadcheck_again.exchange(false, std::memory_order_acq_rel);
      deadcheck_wait = again ? (deadcheck_wait ? deadcheck_wait * 2 : 1000000) : 0;
      if (deadcheck_wait > 1000000000) deadcheck_wait = 1000000000;
      if (quiet)
        alloc::futex_wait(&sched.sysmonwait, 1, again ? deadcheck_wait : kForceGCPeriodNs / 2);
      sched.sysmonwait.store(0, std::memory_order_relaxed);
      if (again) {
        alloc::lock_guard l(sched.lock);
        checkdead(false);
      }
      idle = 0;
      now = alloc::nanotime();
    }
    if (sched.running.load() && retake(now) > 0)
      idle = 0;
    else
      idle++;
    // Tasks wait on the network, no M blocks in epoll and none looked for
    // 10 ms: poll for them (Go's sysmon). A P that switches often polls on
    // its own (proc.cc, netpoll_due) even when its queue never drains, so
    // this is the backstop for Ps whose tasks run long between switches.
    // (Before the Ps polled, 10 ms here left some keep-alive connections
    // served 10x less than others and main had lowered it to 1 ms.)
    if (sched.running.load() && netpoll_waiters.load() > 0 && !netpoll_sleeper.load() &&
        netpoll_last.load(std::memory_order_relaxed) + kNetpollNs < now) {
      int32_t n;
      if (g* list = netpoll(0, &n)) {
        sched.netpoll_ready_sysmon.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
        injectglist(list, n);
        idle = 0;
      }
    }
    int64_t t0 = sched.running.load() ? timers_earliest(false) : 0;
    if (t0 != 0 && t0 + 1000000 < now && sched.nmspinning.load() == 0) wakep();
    forcegc(now);
    if (trace_ns > 0 && now - last_trace >= trace_ns && sched.running.load()) {
      schedtrace(now);
      last_trace = now;
    }
  }
  return nullptr;
}

}  // namespace

void sysmon_wake() {
  if (sched.sysmonwait.exchange(0) == 1) alloc::futex_wake(&sched.sysmonwait, 1);
}

void sysmon_start() {
  if (g_started.exchange(true)) return;
  g_start_ns = alloc::nanotime();
  int err = start_helper(sysmon_main);
  if (err != 0) alloc::fatal("cannot start sysmon: %s", strerror(err));
}

}  // namespace gort::rt
