// A run from start to end: gort::run sets up the Ps and m0, the main task's
// exit shuts the scheduler down, and an M about to park checks for deadlock.
//
// Start. run_main makes (or reuses) GORT_MAXPROCS Ps, makes the calling
// thread m0 holding P 0, queues the main task in P 0's runnext, and only then
// publishes sched.running: an M that wakes early finds no P to take and no
// reason to call the state a deadlock. m0 then runs the ordinary scheduler
// loop on its own stack.
//
// Shutdown. When the main task exits (goexit), sched.shutdown is set and
// every idle M is woken; an M that sees shutdown gives its P back and parks.
// m0 returns from its loop once every other M is parked (or blocked in a
// system call: such an M parks when its call returns, see syscall.cc), and
// everything still runnable or waiting is abandoned: it never runs again,
// and its g and stack are never reused, since a channel may still point into
// that stack. Ms, Ps and their caches outlive the run and serve the next.
//
// Deadlock. An M that finds no work and is about to park calls checkdead
// under sched.lock: if every other M is parked, every P is idle, no queue
// holds a task, no timer is pending, no M is in a system call and no thread
// the scheduler does not know exists (it might still ready a task), then
// every task is asleep for good, and the runtime prints them and exits with
// code 2, as Go does.
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc/scavenger.h"
#include "alloc/sys.h"
#include "gc/roots.h"
#include "gort/runtime.h"
#include "runtime/maxprocs.h"
#include "runtime/netpoll.h"
#include "runtime/overflow.h"
#include "runtime/proc.h"
#include "runtime/runq.h"
#include "runtime/timer.h"

namespace gort::rt {

namespace {

int32_t g_nallp = 0;  // Ps made so far (allp's length); allp only grows
thread_local m* tl_m0 = nullptr;
bool g_inited = false;

// True if the process has threads the scheduler does not know: they may
// still ready a task, so "every task is asleep" proves nothing.
bool foreign_threads() {
  int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return true;
  char buf[4096];
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return true;
  buf[n] = 0;
  const char* t = strstr(buf, "\nThreads:");
  if (!t) return true;
  long threads = strtol(t + 9, nullptr, 10);
  long known = sched.mcount + (alloc::scavenger_running() ? 1 : 0) + sched.nsysmon.load() +
               gc::runtime_threads();
  return threads > known;
}

bool timers_pending() {
  return timers_earliest(false) != 0;
}

}  // namespace

void task_counts(uint64_t* spawned, uint64_t* exited) {
  // allp is replaced when it grows (under sched.lock); exited first (see p).
  alloc::lock_guard l(sched.lock);
  uint64_t e = sched.exited.load(std::memory_order_acquire);
  for (int32_t i = 0; i < g_nallp; i++) e += allp[i]->nexited.load(std::memory_order_acquire);
  uint64_t s = sched.spawned.load(std::memory_order_acquire);
  for (int32_t i = 0; i < g_nallp; i++) s += allp[i]->nspawned.load(std::memory_order_acquire);
  *exited = e;
  *spawned = s < e ? e : s;
}

namespace {

void set_maxprocs(int32_t n) {
  if (n > g_nallp) {
    p** np = static_cast<p**>(::operator new(sizeof(p*) * n));
    for (int32_t i = 0; i < g_nallp; i++) np[i] = allp[i];
    for (int32_t i = g_nallp; i < n; i++) {
      np[i] = new p;
      np[i]->id = i;
      np[i]->mcache = alloc::cache_create();
      // Without its cache a P's tasks would fall back to a thread's, which
      // the P hand-off does not expect: refuse clearly instead.
      if (!np[i]->mcache)
        alloc::fatal("no memory for P %d's mcache (address-space limit reached?)", i);
    }
    p** old = allp;
    allp = np;
    g_nallp = n;
    ::operator delete(old);
  }
  gomaxprocs.store(n);
  // A P left in a blocking call by the last run is no longer that M's.
  for (int32_t i = 0; i < g_nallp; i++) allp[i]->syscallm.store(nullptr);
  sched.pidle = nullptr;
  sched.npidle.store(0);
  for (int32_t i = n - 1; i >= 0; i--) pidleput(allp[i]);
}

// After the main task: everything still runnable or waiting is abandoned.
// Its g and stack are never reused (a channel may still point into that
// stack); a late ready() of it is ignored.
void abandon_leftovers() {
  for (int32_t i = 0; i < g_nallp; i++) {
    p* pp = allp[i];
    pp->runqhead.store(0);
    pp->runqtail.store(0);
    pp->runnext.store(nullptr);
    timers_clear(pp);
  }
  netpoll_run_end();
  {
    alloc::lock_guard l(sched.lock);
    sched.runq_head = sched.runq_tail = nullptr;
    sched.runqsize.store(0);
  }
  alloc::lock_guard l(sched.allg_lock);
  for (g* gp = sched.allg; gp; gp = gp->allnext) {
    gstatus s = gp->status.load();
    if (s == gstatus::runnable || s == gstatus::waiting)
      gp->status.store(static_cast<gstatus>(static_cast<uint32_t>(s) | kAbandoned));
  }
}

// gp to this P's runnext (the running task or timer made it ready, so it
// runs next here), or from a thread outside the scheduler to the global
}  // namespace

// Every P is idle, no task is runnable and no timer is pending: if no other
// thread can wake a task, every task is asleep for good. sched.lock held.
void checkdead(bool from_m) {
  if (sched.shutdown.load() || !sched.running.load()) return;
  // Every M but the caller parked (Go's count of running Ms): an M that
  // holds no P can still be on its way to readying a task outside
  // sched.lock (the timer sleeper running due timers, an M that popped a
  // batch from the netpoller), with every P idle and every queue empty for
  // that moment.
  if (sched.nmidle != sched.mcount - (from_m ? 1 : 0)) return;
  if (sched.npidle.load() != gomaxprocs.load() || sched.runqsize.load() != 0) return;
  if (sched.nmsyscall.load() != 0) return;  // a blocking call may still ready a task
  if (netpoll_waiters.load() != 0) return;  // the network may still ready a task (as in Go)
  for (int32_t i = 0; i < gomaxprocs.load(); i++)
    if (!runq_empty(allp[i])) return;
  if (timers_pending()) return;
  if (foreign_threads()) {
    // sysmon may already sleep deeply (it saw every P idle before this
    // M's check): wake it to look again.
    sched.deadcheck_again.store(true, std::memory_order_seq_cst);
    if (sched.sysmonwait.load(std::memory_order_seq_cst)) sysmon_wake();
    return;
  }
  alloc::print_err("fatal error: all tasks are asleep - deadlock!\n");
  int shown = 0, more = 0;
  for (g* gp = sched.allg; gp; gp = gp->allnext) {
    if (gp->status.load() != gstatus::waiting) continue;
    if (shown < 64) {
      dprintf(2, "\ntask %llu [%s]\n", static_cast<unsigned long long>(gp->goid),
              gp->waitreason ? gp->waitreason : "waiting");
      shown++;
    } else {
      more++;
    }
  }
  if (more) dprintf(2, "\n... and %d more blocked tasks\n", more);
  fflush(stdout);
  _exit(2);
}

// Wakes every idle M, taking it off the idle list, so that m0's count of
// parked Ms only counts Ms that parked after they saw shutdown.
void shutdown_wake_all() {
  alloc::lock_guard l(sched.lock);
  while (m* mp = mget()) {
    mp->on_idle = false;
    mp->nextp = nullptr;
    notewakeup(mp);
  }
}

}  // namespace gort::rt

namespace gort::detail {

using namespace gort::rt;

int run_main(g* main_task, const RunOptions& opts) {
  if (sched.running.load() || getm())
    alloc::fatal("gort::run: a run is already in progress (runs cannot nest or overlap)");
  int32_t n = opts.maxprocs > 0 ? opts.maxprocs : maxprocs_from_env();
  if (opts.maxprocs > kMaxProcsLimit)
    alloc::fatal("gort::run: RunOptions::maxprocs %d is over the limit of %d", opts.maxprocs,
                 kMaxProcsLimit);
  if (!g_inited) {
    g_inited = true;
    overflow_install();
    preempt_init();
    libc_linked();
    stack_init(opts.stack_size ? opts.stack_size : stack_size_from_env());
  } else if (opts.stack_size) {
    stack_init(opts.stack_size);
  }
  overflow_altstack();
  // A root of the collector while it is an M (unless it was one already).
  bool was_gc_thread = gc::is_registered();
  gc::register_current_thread(false);
  m* m0 = tl_m0;
  {
    alloc::lock_guard l(sched.lock);
    set_maxprocs(n);
    if (!m0) {
      m0 = tl_m0 = new m;
      m0->is_m0 = true;
    }
    m0->id = sched.mcount++;
    m0->procid = static_cast<int>(gettid());
    sched.runid++;
    sched.done.store(0);
    sched.goidgen.store(1);
    for (int32_t i = 0; i < g_nallp; i++) allp[i]->goidcache = allp[i]->goidcacheend = 0;
    sched.nmspinning.store(0);
    // m0 holds a P and the main task is queued before anything else can
    // see the run start: a stray M then finds no P to take and no reason
    // to call it a deadlock.
    alloc::tl_thread.sched_m = m0;
    acquirep(m0, pidleget());
    sched.main_g = main_task;
    main_task->goid = 1;
    main_task->status.store(gstatus::runnable, std::memory_order_relaxed);
    runqput(m0->pp, main_task, true);
    sched.spawned.fetch_add(1, std::memory_order_relaxed);
    sched.shutdown.store(false);
    sched.running.store(true);
  }
  sysmon_start();
  schedule_loop(m0);
  // Every other M is parked and every P idle.
  abandon_leftovers();
  {
    alloc::lock_guard l(sched.lock);
    sched.mcount--;
    sched.main_g = nullptr;
    sched.running.store(false);
  }
  alloc::tl_thread.sched_m = nullptr;
  if (!was_gc_thread) gc::unregister_current_thread();
  return 0;
}

}  // namespace gort::detail
