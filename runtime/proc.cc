// The scheduler: task creation and exit, Ps and Ms, the schedule loop,
// finding work (stealing, spinning, parking Ms) and gopark/ready. The design
// and the lock order are in proc.h; the run queues are in runq.h/runq.cc, and
// a run's start, shutdown and deadlock check in run.cc.
#include "runtime/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <exception>
#include <new>

#include "alloc/sys.h"
#include "gc/roots.h"
#include "gort/runtime.h"
#include "runtime/context.h"
#include "runtime/maxprocs.h"
#include "runtime/netpoll.h"
#include "runtime/overflow.h"
#include "runtime/runq.h"
#include "runtime/timer.h"
#include "runtime/trace.h"

namespace gort::rt {

schedt sched;
p** allp = nullptr;
int* (*volatile errno_location)() = __errno_location;
std::atomic<int32_t> gomaxprocs{0};

namespace {

constexpr int32_t kGfreeLocal = 64;

// ---------------------------------------------------------------- m and g access

// Threads outside the scheduler block on a pseudo-g of their own.
struct thread_g_holder {
  g* gp = nullptr;
  ~thread_g_holder() { delete gp; }
};
thread_local thread_g_holder tl_thread_g;

g* thread_g() {
  g* gp = tl_thread_g.gp;
  if (!gp) {
    gp = new g;
    gp->is_thread = true;
    gp->status.store(gstatus::running, std::memory_order_relaxed);
    tl_thread_g.gp = gp;
  }
  return gp;
}

thread_local uint64_t tl_rand = 0;

}  // namespace

m* getm() {
  return static_cast<m*>(alloc::tl_thread.sched_m);
}

g* getg() {
  m* mp = getm();
  if (mp) return mp->curg;
  return thread_g();
}

uint64_t fastrand() {
  m* mp = getm();
  uint64_t* s = mp ? &mp->fastrand : &tl_rand;
  if (*s == 0) *s = static_cast<uint64_t>(alloc::nanotime()) * 0x9e3779b97f4a7c15ull | 1;
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  *s = x;
  return x;
}

int64_t now_ns() {
  return alloc::nanotime();
}

// ---------------------------------------------------------------- free gs

// A dead g's stack goes to the P's stack cache for the next task to run;
// the g to the P's free list. A full list keeps its newest half (warm in
// this CPU's cache) and gives the rest to the global list as one batch.
//
// The global list (sched.gfree, under sched.gfree_lock) is a stack of such
// batches, each headed by a g that records its length and last g (the
// fields a g on the global run queue uses; a free g is on no run queue):
// putting or taking a batch is O(1) under the lock. Taking them one by one
// touched every g under the lock, each a cache miss when another CPU freed
// it, and held up every spawn on the other Ps.
static void gfput(p* pp, g* gp) {
  if (gp->stk.span) stack_put(pp->stacks, gp->stk);
  gp->sp = nullptr;
  gp->fn = nullptr;
  gp->scope = nullptr;      // a task that ended inside a C scope leaks its stack, not to the next
  gp->assist = gcAssist{};  // a debt is the dead task's, not the next one's (Go drops it too)
  gp->status.store(gstatus::idle, std::memory_order_relaxed);
  gp->schedlink = pp->gfree;
  pp->gfree = gp;
  if (++pp->ngfree < kGfreeLocal) return;
  g* keep_last = pp->gfree;
  for (int32_t i = 1; i < kGfreeLocal / 2; i++) keep_last = keep_last->schedlink;
  g* head = keep_last->schedlink;
  keep_last->schedlink = nullptr;
  int32_t n = pp->ngfree - kGfreeLocal / 2;
  pp->ngfree = kGfreeLocal / 2;
  g* tail = head;
  while (tail->schedlink) tail = tail->schedlink;
  gfree_push_batch(head, tail, n);
}

void gfree_push_batch(g* head, g* tail, int32_t n) {
  head->batchlen = n;
  head->batchtail = tail;
  alloc::lock_guard l(sched.gfree_lock);
  tail->schedlink = sched.gfree;
  sched.gfree = head;
}

static g* gfget(p* pp) {
  if (pp && pp->gfree) {
    g* gp = pp->gfree;
    pp->gfree = gp->schedlink;
    pp->ngfree--;
    return gp;
  }
  if (!__atomic_load_n(&sched.gfree, __ATOMIC_RELAXED)) return nullptr;
  g* head;
  {
    alloc::lock_guard l(sched.gfree_lock);
    head = sched.gfree;
    if (!head) return nullptr;
    sched.gfree = head->batchtail->schedlink;
  }
  head->batchtail->schedlink = nullptr;
  if (pp) {
    pp->gfree = head->schedlink;
    pp->ngfree = head->batchlen - 1;
  } else if (head->schedlink) {
    gfree_push_batch(head->schedlink, head->batchtail, head->batchlen - 1);
  }
  return head;
}

// ---------------------------------------------------------------- Ps and Ms

void acquirep(m* mp, p* pp) {
  mp->pp = pp;
  pp->mp.store(mp, std::memory_order_relaxed);
  mp->own_cache = alloc::tl_thread.cache;
  alloc::tl_thread.cache = pp->mcache;
  alloc::tl_thread.gccache = nullptr;  // the GC's fast path refills it for this P
}

void releasep(m* mp) {
  p* pp = mp->pp;
  // Not a plain store: a stealer may have detached the M's own cache while
  // the M held the P (alloc/mcache.h).
  alloc::cache_resume(mp->own_cache);
  alloc::tl_thread.gccache = nullptr;
  mp->own_cache = nullptr;
  pp->mp.store(nullptr, std::memory_order_relaxed);
  mp->pp = nullptr;
}

// sched.lock held.
void pidleput(p* pp) {
  pp->link = sched.pidle;
  sched.pidle = pp;
  sched.npidle.fetch_add(1, std::memory_order_relaxed);
}

p* pidleget() {
  p* pp = sched.pidle;
  if (pp) {
    sched.pidle = pp->link;
    sched.npidle.fetch_sub(1, std::memory_order_relaxed);
    if (sched.sysmonwait.load(std::memory_order_relaxed)) sysmon_wake();
  }
  return pp;
}

m* mget() {
  m* mp = sched.midle;
  if (mp) {
    sched.midle = mp->schedlink;
    sched.nmidle--;
  }
  return mp;
}

static void mstart(m* mp);
static void* mthread_main(void* arg) {
  m* mp = static_cast<m*>(arg);
  alloc::tl_thread.sched_m = mp;
  mp->procid = static_cast<int>(gettid());
  preempt_thread_init();  // an M sysmon started inherited its all-blocked signal mask
  // Every M is a root of the collector: its stacks are those of its tasks.
  gc::register_current_thread(false);
  overflow_altstack();
  mstart(mp);
  return nullptr;
}

// A new M to run pp. sched.lock is not held.
static void newm(p* pp, bool spinning) {
  m* mp = new m;
  {
    alloc::lock_guard l(sched.lock);
    mp->id = sched.mcount++;
  }
  mp->nextp = pp;
  mp->spinning = spinning;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_t t;
  int err = pthread_create(&t, &attr, mthread_main, mp);
  pthread_attr_destroy(&attr);
  if (err != 0) alloc::fatal("cannot create an M (OS thread): %s", strerror(err));
}

void notewakeup(m* mp) {
  mp->park.store(1, std::memory_order_seq_cst);
  if (mp->in_netpoll.load(std::memory_order_seq_cst))
    netpoll_break();
  else
    alloc::futex_wake(&mp->park, 1);
}

void startm(p* pp, bool spinning) {
  sched.lock.lock();
  if (!pp) pp = pidleget();
  if (!pp) {
    sched.lock.unlock();
    if (spinning) sched.nmspinning.fetch_sub(1, std::memory_order_relaxed);
    return;
  }
  m* mp = mget();
  if (mp) {
    mp->nextp = pp;
    mp->spinning = spinning;
    mp->on_idle = false;
    sched.lock.unlock();
    notewakeup(mp);
    return;
  }
  sched.lock.unlock();
  newm(pp, spinning);
}

void wakep() {
  if (sched.npidle.load(std::memory_order_acquire) == 0) return;
  int32_t zero = 0;
  if (sched.nmspinning.load(std::memory_order_relaxed) != 0 ||
      !sched.nmspinning.compare_exchange_strong(zero, 1, std::memory_order_acq_rel))
    return;
  startm(nullptr, true);
}

static void resetspinning(m* mp) {
  mp->spinning = false;
  if (sched.nmspinning.fetch_sub(1, std::memory_order_acq_rel) == 1) wakep();
}

// ---------------------------------------------------------------- switching

static void run_after(m* mp) {
  after a = mp->next_after;
  if (a.fn) {
    mp->next_after = after{};
    a.fn(a.arg, a.prev);
  }
}

static void task_main(void* arg);

// Gives gp (a task about to run for the first time) a stack and a context.
static void prepare(g* gp) {
  if (gp->sp) return;
  if (!gp->stk.span) {
    gp->stk = stack_get(getm()->pp->stacks);
    if (!gp->stk.lo) alloc::fatal("out of memory allocating a task stack");
  }
  gp->sp = ctx_make(reinterpret_cast<void*>(gp->stk.hi), task_main, gp);
}

// The work a P does between two tasks without leaving the task's stack:
// runnext and the local queue, and the global queue every 61st tick. Due
// timers are not run here: the old task may still hold the lock its timer
// callback needs (its m::after releases it only after the switch), so a due
// timer sends the M through g0, where findrunnable runs it after m::after.
static g* next_local(p* pp) {
  uint32_t tick = pp->schedtick.load(std::memory_order_relaxed) + 1;
  pp->schedtick.store(tick, std::memory_order_relaxed);
  if (tick % 61 == 0)
    if (g* gp = globrunqget(pp, 1)) return gp;
  return runqget(pp);
}

static bool timers_due(p* pp) {
  int64_t t0 = pp->timer0.load(std::memory_order_relaxed);
  return t0 != 0 && t0 <= now_ns();
}

// The network, looked at by a P whose run queue never drains. findrunnable
// polls only once the local and global queues are empty, and tasks that end
// their turn after a completed read (io_turn_end) keep the global queue
// full, so without this the tasks parked on sockets waited for sysmon's poll
// while the others went round (blocking/keepalive_every_connection_progresses,
// netpoll/busy_p_still_polls). A P whose next tick is one of the 61st (when it
// also looks at the global queue) goes through g0 if tasks wait on the
// network, no M is blocked in epoll and nobody polled for kSchedPollNs;
// there findrunnable polls, after m::after released the old task's locks
// (netpoll takes pollDesc locks, which a task parking on a descriptor holds
// until then). The readied tasks go to the tail of the local queue, behind
// those that waited there. The time bound caps the cost at one non-blocking
// epoll_wait per 100 us, however fast the P switches.
constexpr int64_t kSchedPollNs = 100 * 1000;

static bool netpoll_due(int64_t now) {
  return netpoll_waiters.load(std::memory_order_relaxed) > 0 &&
         !netpoll_sleeper.load(std::memory_order_relaxed) &&
         netpoll_last.load(std::memory_order_relaxed) + kSchedPollNs <= now;
}

static bool netpoll_due_tick(p* pp) {
  return (pp->schedtick.load(std::memory_order_relaxed) + 1) % 61 == 0 && netpoll_due(now_ns());
}

// On g0: the tasks the network readied join the global queue, behind the
// tasks that ended their turn before them (gopreempt, io_turn_end), as
// sysmon's would; idle Ps get Ms for them.
static void netpoll_inject() {
  int32_t n;
  if (g* list = netpoll(0, &n)) injectglist(list, n);
}

// A task about to run on this M: if the collector has not scanned its stack
// this cycle, scan it now, before it can change (gc/roots.h). After mp->curg
// is set: a stop of the world from here on finds the task through its M.
static inline void gc_before_run(g* gp) {
  std::atomic_signal_fence(std::memory_order_seq_cst);
  if (__builtin_expect(gp->gcscan.load(std::memory_order_relaxed) != gc::task_scan_gen(), 0))
    gc::scan_task_before_run(gp);
}

// Switches away from gp, whose status says why (waiting, runnable, dead) and
// whose m::after is set. Returns when gp runs again, on whatever M.
void switch_out(m* mp, g* gp, uint8_t why) {
  if (!gp->stk.guarded) stack_check_canary(gp->stk, gp->goid);
  trace::gostop(mp, gp, static_cast<trace::stopReason>(why));
  p* pp = mp->pp;
  g* next = sched.shutdown.load(std::memory_order_relaxed) || timers_due(pp) || netpoll_due_tick(pp)
                ? nullptr
                : next_local(pp);
  if (next && next->sp) {
    mp->curg = next;
    trace::gostart(mp, next);
    next->status.store(gstatus::running, std::memory_order_relaxed);
    next->preempt.store(false, std::memory_order_relaxed);
    gc_before_run(next);
    gort_ctx_switch_to(&gp->sp, &next->sp);
  } else {
    // A task that has never run needs a stack, which may mean the mheap
    // lock, a system call and page faults: not while gp may still hold the
    // lock it waits under. g0 starts it after m::after.
    mp->nextg = next;
    mp->curg = nullptr;
    gort_ctx_switch(&gp->sp, mp->g0sp);
  }
  run_after(getm());
}

void switch_to_g0(m* mp, g* gp) {
  mp->curg = nullptr;
  gort_ctx_switch(&gp->sp, mp->g0sp);
  run_after(getm());
}

// ---------------------------------------------------------------- finding work

static g* stealwork(p* pp) {
  int32_t n = gomaxprocs.load(std::memory_order_relaxed);
  for (int round = 0; round < 4; round++) {
    bool last = round == 3;
    uint32_t start = static_cast<uint32_t>(fastrand() % static_cast<uint64_t>(n));
    for (int32_t i = 0; i < n; i++) {
      p* victim = allp[(start + i) % n];
      if (victim == pp) continue;
      if (last) {
        int64_t t0 = victim->timer0.load(std::memory_order_relaxed);
        if (t0 != 0 && t0 <= now_ns()) {
          timers_run(victim, now_ns());
          if (g* gp = runqget(pp)) return gp;
        }
      }
      if (g* gp = runqsteal(pp, victim, last)) return gp;
    }
  }
  return nullptr;
}

// Parks mp until startm hands it a P (returns true) or, for the timer
// sleeper, the earliest timer is due (returns false, holding no P).
static bool stopm(m* mp) {
  stack_pool_trim();  // idle time: the cheapest moment for system calls
  sched.lock.lock();
  if (mp->is_m0 && sched.shutdown.load()) {
    // The main task ended after m0 last looked: m0 must not sleep through
    // shutdown_wake_all, which has already run.
    sched.lock.unlock();
    return false;
  }
  checkdead(true);
  mp->schedlink = sched.midle;
  sched.midle = mp;
  sched.nmidle++;
  mp->on_idle = true;
  sched.mparks.fetch_add(1, std::memory_order_relaxed);
  if (sched.shutdown.load() && sched.nmidle == sched.mcount - 1) {
    sched.done.store(1, std::memory_order_release);
    alloc::futex_wake(&sched.done, 1);
  }
  // The timer sleeper watches the timers of idle Ps (busy Ps run their own).
  // An M that sees an earlier one than the sleeper waits for takes over.
  int64_t wait = -1;
  if (!sched.shutdown.load()) {
    int64_t next = timers_earliest(false);
    int64_t until = sched.sleep_until.load(std::memory_order_seq_cst);
    if (next != 0 && (!sched.timer_sleeper || next < until)) {
      if (sched.timer_sleeper) notewakeup(sched.timer_sleeper);
      sched.timer_sleeper = mp;
      sched.sleep_until.store(next, std::memory_order_seq_cst);
      // A timer_add that read sleep_until before this store must be seen
      // here (both sides: store, then load, sequentially consistent).
      int64_t again = timers_earliest(false);
      if (again != 0 && again < next) {
        next = again;
        sched.sleep_until.store(next, std::memory_order_seq_cst);
      }
      wait = next - now_ns();
      if (wait < 0) wait = 0;
    }
  }
  // Tasks wait on the network and no M polls: this one blocks in epoll
  // instead of its futex (Go's findrunnable: the last M polls), until a
  // descriptor is ready, the earliest timer is due or notewakeup breaks it.
  bool poller = false;
  if (!sched.shutdown.load() && netpoll_waiters.load(std::memory_order_seq_cst) > 0 &&
      !netpoll_sleeper.load()) {
    netpoll_sleeper.store(mp);
    poller = true;
  }
  sched.lock.unlock();
  if (poller) {
    mp->in_netpoll.store(true, std::memory_order_seq_cst);
    int32_t n = 0;
    g* list = nullptr;
    if (mp->park.load(std::memory_order_seq_cst) == 0) list = netpoll(wait, &n);
    mp->in_netpoll.store(false, std::memory_order_seq_cst);
    netpoll_sleeper.store(nullptr);
    if (list) {
      g* tail = list;
      while (tail->schedlink) tail = tail->schedlink;
      globrunqputbatch(list, tail, n);
    }
  } else if (wait != 0) {
    while (mp->park.load(std::memory_order_acquire) == 0) {
      alloc::futex_wait(&mp->park, 0, wait);
      if (wait >= 0) break;
    }
  }
  sched.lock.lock();
  bool was_sleeper = sched.timer_sleeper == mp;
  if (was_sleeper) {
    sched.timer_sleeper = nullptr;
    sched.sleep_until.store(0, std::memory_order_seq_cst);
  }
  if (mp->on_idle) {  // timed out, or woken to recompute: leave the idle list
    m** pm = &sched.midle;
    while (*pm != mp) pm = &(*pm)->schedlink;
    *pm = mp->schedlink;
    sched.nmidle--;
    mp->on_idle = false;
  }
  bool handed = mp->nextp != nullptr;
  sched.lock.unlock();
  mp->park.store(0, std::memory_order_relaxed);
  // Handed a P while watching timers: someone else must watch them now.
  if (was_sleeper && handed && timers_earliest(false) != 0) wakep();
  return handed;
}

// Parks mp (holding no P) until it is handed one (true), or on m0 until the
// run is over (false).
static bool park_until_p(m* mp) {
  for (;;) {
    if (mp->is_m0 && sched.shutdown.load()) {
      // The run is over once every other M is parked.
      for (;;) {
        sched.lock.lock();
        // Ms still in a blocking call park when it returns (syscall.cc).
        bool all = sched.nmidle + sched.nmsyscall.load() >= sched.mcount - 1;
        sched.done.store(0, std::memory_order_relaxed);
        sched.lock.unlock();
        if (all) return false;
        alloc::futex_wait(&sched.done, 0, 1000000);
      }
    }
    if (stopm(mp)) {
      acquirep(mp, mp->nextp);
      mp->nextp = nullptr;
      return true;
    }
    // The timer sleeper woke. It watches every P's timers, those of Ps
    // whose M is busy in a long task or blocked in a call included: it runs
    // the due ones (without a P, a readied task goes to the global queue),
    // then takes an idle P, if there is one, to run what they readied.
    if (sched.shutdown.load()) continue;
    for (int32_t i = 0; i < gomaxprocs.load(); i++) {
      int64_t t0 = allp[i]->timer0.load(std::memory_order_relaxed);
      if (t0 != 0 && t0 <= now_ns()) timers_run(allp[i], now_ns());
    }
    sched.lock.lock();
    p* p2 = sched.runqsize.load() > 0 ? pidleget() : nullptr;
    sched.lock.unlock();
    if (p2) {
      acquirep(mp, p2);
      if (sched.runqsize.load(std::memory_order_relaxed) > 1) wakep();
      return true;
    }
  }
}

// Blocks until there is a task for mp to run; mp holds a P on return.
// Returns null only on m0 when the run is over.
static g* findrunnable(m* mp) {
  // Back from a blocking call that found no P (syscall.cc): park first.
  if (!mp->pp && !park_until_p(mp)) return nullptr;
top:
  p* pp = mp->pp;
  if (sched.shutdown.load(std::memory_order_acquire)) goto idle;
  if (timers_due(pp)) timers_run(pp, now_ns());
  if (netpoll_due(now_ns())) netpoll_inject();
  if (g* gp = next_local(pp)) {
    if (mp->spinning) resetspinning(mp);
    return gp;
  }
  if (g* gp = globrunqget(pp, 0)) {
    if (mp->spinning) resetspinning(mp);
    return gp;
  }
  // Tasks wait on the network and nobody blocks in epoll: a look that
  // does not block (Go's findrunnable does the same before stealing).
  if (netpoll_waiters.load(std::memory_order_relaxed) > 0 &&
      !netpoll_sleeper.load(std::memory_order_relaxed)) {
    int32_t n;
    if (g* list = netpoll(0, &n)) {
      g* gp = runqputchain(pp, list);
      if (mp->spinning) resetspinning(mp);
      if (n > 1) wakep();
      return gp;
    }
  }
  {
    int32_t busy = gomaxprocs.load() - sched.npidle.load();
    if (!mp->spinning && 2 * sched.nmspinning.load() < busy) {
      mp->spinning = true;
      sched.nmspinning.fetch_add(1);
    }
  }
  if (mp->spinning) {
    if (g* gp = stealwork(pp)) {
      resetspinning(mp);
      return gp;
    }
  }
idle:
  sched.lock.lock();
  if (!sched.shutdown.load() && sched.runqsize.load() > 0) {
    int32_t n;
    g* chain = globrunqtake(0, &n);
    sched.lock.unlock();
    if (mp->spinning) resetspinning(mp);
    return runqputchain(pp, chain);
  }
  releasep(mp);
  pidleput(pp);
  sched.lock.unlock();
  if (mp->spinning) {
    // The last spinning M must look once more after giving up its P, or
    // work put on a queue just now could wait with every M asleep.
    mp->spinning = false;
    sched.nmspinning.fetch_sub(1);
    for (int32_t i = -1; i < gomaxprocs.load() && !sched.shutdown.load(); i++) {
      // i == -1: the global queue (a plain thread may have put a task there
      // and seen this M still spinning, so it woke nobody).
      if (i < 0 ? sched.runqsize.load() == 0 : runq_empty(allp[i])) continue;
      sched.lock.lock();
      p* p2 = pidleget();
      sched.lock.unlock();
      if (p2) {
        acquirep(mp, p2);
        mp->spinning = true;
        sched.nmspinning.fetch_add(1);
        goto top;
      }
      break;
    }
  }
  if (!park_until_p(mp)) return nullptr;
  goto top;
}

// The scheduler loop on an M's own stack (g0).
void schedule_loop(m* mp) {
  for (;;) {
    run_after(mp);
    g* gp = mp->nextg;
    mp->nextg = nullptr;
    if (!gp) gp = findrunnable(mp);
    if (!gp) return;
    prepare(gp);
    mp->curg = gp;
    trace::gostart(mp, gp);
    gp->status.store(gstatus::running, std::memory_order_relaxed);
    gp->preempt.store(false, std::memory_order_relaxed);
    gc_before_run(gp);
    gort_ctx_switch_to(&mp->g0sp, &gp->sp);
  }
}

static void mstart(m* mp) {
  acquirep(mp, mp->nextp);
  mp->nextp = nullptr;
  schedule_loop(mp);
}

// ---------------------------------------------------------------- task exit

static void gfput_after(void*, g* prev) {
  gfput(getm()->pp, prev);
}

[[noreturn]] static void goexit(g* gp) {
  if (p* pp = getm()->pp)
    count_on_p(pp->nexited);
  else
    sched.exited.fetch_add(1, std::memory_order_relaxed);
  if (gp == sched.main_g) {
    sched.shutdown.store(true, std::memory_order_release);
    shutdown_wake_all();
  }
  m* mp = getm();
  gp->status.store(gstatus::dead, std::memory_order_relaxed);
  mp->next_after = after{gfput_after, nullptr, gp};
  switch_out(mp, gp, trace::kStopExit);
  __builtin_unreachable();
}

[[noreturn]] static void task_died(g* gp, const char* what) {
  fflush(stdout);
  alloc::print_err("task %llu ended with an uncaught exception: %s\n",
                   static_cast<unsigned long long>(gp->goid), what);
  _exit(2);
}

static void task_main(void* arg) {
  g* gp = static_cast<g*>(arg);
  run_after(getm());
  auto* c = static_cast<detail::closure*>(gp->fn);
  try {
    c->invoke(c);
  } catch (const std::exception& e) {
    task_died(gp, e.what());
  } catch (...) {
    task_died(gp, "(not a std::exception)");
  }
  c->destroy(c);
  if (gp->fn_heap) ::operator delete(gp->fn);
  goexit(gp);
}

void make_runnable(g* gp) {
  gp->status.store(gstatus::runnable, std::memory_order_relaxed);
  m* mp = getm();
  if (mp && mp->pp) {
    runqput(mp->pp, gp, true);
  } else {
    alloc::lock_guard l(sched.lock);
    globrunqput(gp);
  }
  wakep();
}

void gopark(void (*fn)(void*, g*), void* arg, const char* reason) {
  m* mp = getm();
  if (!mp) {
    g* tg = thread_g();
    tg->status.store(gstatus::waiting, std::memory_order_relaxed);
    if (fn) fn(arg, tg);
    while (tg->wake.load(std::memory_order_acquire) == 0) alloc::futex_wait(&tg->wake, 0, -1);
    tg->wake.store(0, std::memory_order_relaxed);
    tg->status.store(gstatus::running, std::memory_order_relaxed);
    return;
  }
  g* gp = mp->curg;
  if (!gp) alloc::fatal("a blocking operation on the scheduler's own stack (%s)", reason);
  gp->waitreason = reason;
  gp->status.store(gstatus::waiting, std::memory_order_relaxed);
  mp->next_after = after{fn, arg, gp};
  switch_out(mp, gp, trace::kStopBlocked);
}

static void unlock_after(void* l, g*) {
  static_cast<alloc::mutex*>(l)->unlock();
}

void goparkunlock(alloc::mutex* l, const char* reason) {
  gopark(unlock_after, l, reason);
}

void ready(g* gp) {
  if (gp->is_thread) {
    gp->wake.store(1, std::memory_order_release);
    alloc::futex_wake(&gp->wake, 1);
    return;
  }
  if (gp->status.load(std::memory_order_relaxed) != gstatus::waiting) {
    if (abandoned(gp)) return;
    alloc::fatal("ready of task %llu, which is not waiting",
                 static_cast<unsigned long long>(gp->goid));
  }
  trace::gounblock(gp);
  make_runnable(gp);
}

static void yield_after(void*, g* prev) {
  runqput(getm()->pp, prev, false);
}

void goyield() {
  m* mp = getm();
  if (!mp || !mp->curg) {
    sched_yield();
    return;
  }
  p* pp = mp->pp;
  if (runq_empty(pp) && sched.runqsize.load(std::memory_order_relaxed) == 0 &&
      pp->timer0.load(std::memory_order_relaxed) == 0 &&
      !sched.shutdown.load(std::memory_order_relaxed))
    return;  // nothing else to run here (at shutdown, switch: the M must stop)
  g* gp = mp->curg;
  gp->status.store(gstatus::runnable, std::memory_order_relaxed);
  mp->next_after = after{yield_after, nullptr, gp};
  switch_out(mp, gp, trace::kStopYield);
}

void wake_timer_sleeper(int64_t when) {
  int64_t until = sched.sleep_until.load(std::memory_order_seq_cst);
  if (until == 0) {
    // Nobody sleeps until a timer: get an M looking (as Go's wakeNetPoller
    // does), which ends as the timer sleeper if it finds nothing to run.
    // The timer may be on an idle P that no busy M ever looks at.
    wakep();
    return;
  }
  if (when >= until) return;
  alloc::lock_guard l(sched.lock);
  if (sched.timer_sleeper) notewakeup(sched.timer_sleeper);
}

}  // namespace gort::rt

// ---------------------------------------------------------------- public API

namespace gort {
namespace detail {

using namespace gort::rt;

g* task_alloc(size_t size, size_t align, void** storage) {
  m* mp = getm();
  g* gp = gfget(mp ? mp->pp : nullptr);
  if (!gp) {
    gp = new g;
    alloc::lock_guard l(sched.allg_lock);
    gp->allnext = sched.allg;
    // Published with release: the collector walks allg without the lock.
    __atomic_store_n(&sched.allg, gp, __ATOMIC_RELEASE);
  }
  gp->gcscan.store(gc::task_scan_gen(), std::memory_order_relaxed);  // born scanned
  if (size <= sizeof gp->inline_fn && align <= 16) {
    gp->fn = gp->inline_fn;
    gp->fn_heap = false;
  } else {
    gp->fn = ::operator new(size, std::align_val_t(align < 16 ? 16 : align));
    gp->fn_heap = true;
  }
  *storage = gp->fn;
  return gp;
}

// A task of the runtime's own (the collector's mark worker), started from
// any thread: false, and nothing started, when no run is in progress.
// The run may end between the first check and the queueing: the second
// check is under sched.lock, which the end of a run takes to clear running,
// and a g that is not started goes back to the global free list.
bool spawn_runtime_task(void (*fn)(void*), void* arg) {
  if (!sched.running.load(std::memory_order_acquire)) return false;
  g* gp = detail::make_task([fn, arg] { fn(arg); });  // fits inline: no heap closure
  {
    alloc::lock_guard l(sched.lock);
    if (!sched.running.load(std::memory_order_relaxed)) {
      gp->fn = nullptr;
      gp->status.store(gstatus::idle, std::memory_order_relaxed);
      gp->schedlink = nullptr;
      gfree_push_batch(gp, gp, 1);
      return false;
    }
    gp->goid = sched.goidgen.fetch_add(1, std::memory_order_relaxed) + 1;
    sched.spawned.fetch_add(1, std::memory_order_relaxed);
    gp->status.store(gstatus::runnable, std::memory_order_relaxed);
    globrunqput(gp);
    trace::gocreate(gp);
  }
  wakep();
  return true;
}

void task_start(g* gp) {
  if (!sched.running.load(std::memory_order_acquire))
    alloc::fatal("gort::go: no gort::run is in progress");
  m* mp = getm();
  if (p* pp = mp ? mp->pp : nullptr) {
    if (pp->goidcache == pp->goidcacheend) {
      pp->goidcache = sched.goidgen.fetch_add(kGoidBatch, std::memory_order_relaxed) + 1;
      pp->goidcacheend = pp->goidcache + kGoidBatch;
    }
    gp->goid = pp->goidcache++;
    count_on_p(pp->nspawned);
  } else {
    gp->goid = sched.goidgen.fetch_add(1, std::memory_order_relaxed) + 1;
    sched.spawned.fetch_add(1, std::memory_order_relaxed);
  }
  trace::gocreate(gp);
  make_runnable(gp);
}

}  // namespace detail

void yield() {
  rt::goyield();
}

uint64_t task_id() {
  rt::m* mp = rt::getm();
  return mp && mp->curg ? mp->curg->goid : 0;
}

bool in_task() {
  rt::m* mp = rt::getm();
  return mp && mp->curg;
}

int maxprocs() {
  return rt::gomaxprocs.load();
}

int default_maxprocs() {
  return rt::maxprocs_from_env();
}

SchedStats sched_stats() {
  using rt::sched;
  SchedStats s{};
  rt::task_counts(&s.tasks_spawned, &s.tasks_exited);
  s.tasks_live = s.tasks_spawned - s.tasks_exited;
  s.steals = sched.steals.load();
  s.global_runq = sched.globalq.load();
  s.m_parks = sched.mparks.load();
  s.stacks_live = rt::stacks_live();
  s.stacks_cached = rt::stacks_pooled();
  s.retakes = sched.retakes.load();
  s.preemptions = sched.preempts.load();
  s.async_preemptions = sched.async_preempts.load();
  s.netpoll_ready = sched.netpoll_ready.load();
  s.netpoll_ready_sysmon = sched.netpoll_ready_sysmon.load();
  return s;
}

}  // namespace gort
