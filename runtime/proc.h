// The scheduler's data: g (a task), m (an OS thread), p (a logical
// processor), and the global sched state. Modelled on Go's runtime2.go and
// proc.go; the names are Go's.
//
// An M runs tasks only while it holds a P; GORT_MAXPROCS Ps bound how many
// tasks run at once. Each P has a 256-entry local run queue (lock-free: its
// owner puts and gets at the tail and head, thieves take half with a CAS on
// the head), a runnext slot (a task readied by the running task runs next on
// the same P, inheriting the rest of its time slice), an mcache (malloc from
// a task uses its P's cache), a timer heap, and caches of free gs and stacks.
// Beyond that is the global run queue under sched.lock. An M with no work
// looks in this order: runnext and local queue, the global queue (first,
// every 61st schedule tick, so it is never starved), other Ps' expired timers,
// stealing half of another P's queue; then it gives its P back and parks on
// its futex until startm hands it a P. At most half the busy Ps' worth of Ms
// spin looking for work (nmspinning); whoever makes work while nobody spins
// and a P is idle wakes one (wakep).
//
// Context switches go directly from task to task on the task's own stack
// (switch_to): the old task is saved, and the new task, once running, does
// what the old one could not do before its registers were saved (m::after:
// unlock the channel it now waits on, put it on a run queue, free it). An M
// switches to its own stack (g0, the thread's original stack) only when it
// has nothing to run, so that it never idles on a stack some other M may
// resume.
//
// A task's m and p can change at every switch: runtime code re-reads getm()
// after anything that may park, and never caches a TLS address across one.
//
// Lock order: sched.lock, then a P's timers lock; channel locks (by address
// within a select), semaphore bucket locks, then sched.lock. No lock is held
// across a context switch except those that m::after releases.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "alloc/lock.h"
#include "alloc/mcache.h"
#include "runtime/stack.h"

namespace gort::rt {

struct m;
struct p;
struct sudog;
struct timer;

enum class gstatus : uint32_t {
  idle,      // allocated, never run, or on a free list
  runnable,  // on a run queue
  running,   // on an M
  waiting,   // parked: in a channel, semaphore, sleep...
  dead,      // finished; its g and stack are being reused
  syscall,   // in a blocking call on its M, which holds no P (syscall.cc)
};

// A status bit on gs left runnable or waiting when a run ended: they never
// run again, and wait queues skip them.
inline constexpr uint32_t kAbandoned = 0x10;

// A mark-assist credit: bytes its owner may still allocate during the
// cycle numbered cycle before it owes mark work (negative: a debt). A credit
// from an earlier cycle is void.
struct gcAssist {
  int64_t bytes = 0;
  uint32_t cycle = 0;
};

struct g {
  void* sp = nullptr;      // saved context while not running
  stack stk;               // null until the first run
  g* schedlink = nullptr;  // run queue / free list link
  // In the global run queue, the first g of a batch (put there together)
  // records the batch's length and last g, so taking it is O(1) under
  // sched.lock however long the batch is.
  int32_t batchlen = 0;
  g* batchtail = nullptr;
  std::atomic<gstatus> status{gstatus::idle};
  uint64_t goid = 0;
  const char* waitreason = nullptr;  // while waiting: "chan receive"...
  // Wake-up protocol. param: what the waker hands over (the sudog that
  // completed a select). selectdone: a select's sudogs race to claim the g.
  void* param = nullptr;
  std::atomic<uint32_t> selectdone{0};
  // A pseudo-g standing for an OS thread outside the scheduler: it parks on
  // wake (futex) instead of switching.
  bool is_thread = false;
  std::atomic<uint32_t> wake{0};
  // The task body: a gort::detail::closure, in inline storage when it fits.
  void* fn = nullptr;
  bool fn_heap = false;
  g* allnext = nullptr;  // every g ever made, for the deadlock report
  // The collector's task generation (gc/roots.h): == gc::g_scangen when this
  // task's stack was scanned in the current cycle; kScanBusy while claimed.
  std::atomic<uint32_t> gcscan{0};
  // Preemption (preempt.cc): preempt asks the task to yield at its next safe
  // point (set by sysmon, cleared when it yields); nopreempt > 0 while the
  // runtime runs program code under a runtime lock (a channel element's
  // move), where an asynchronous preemption must not land.
  std::atomic<bool> preempt{false};
  uint32_t nopreempt = 0;
  uint32_t syscalldepth = 0;  // nested gort::blocking / gort_blocking_enter
  // The task's scope stack (pool/scope.cc, through runtime/poolhooks.h):
  // non-null only between its outermost gort_scope_begin and end, so it
  // follows the task across Ms. Cleared when the g is freed.
  void* scope = nullptr;
  // The collector's mark-assist credit of this task (gc/pacer.h, Go's
  // gcAssistBytes), through gchook::task_assist: it follows the task from M
  // to M. Only the task itself touches it; cleared when the g is freed.
  gcAssist assist;
  alignas(16) unsigned char inline_fn[64];
};

inline bool abandoned(const g* gp) {
  return static_cast<uint32_t>(gp->status.load(std::memory_order_relaxed)) & kAbandoned;
}

// Things to do on the new stack right after a switch.
struct after {
  void (*fn)(void* arg, g* prev) = nullptr;
  void* arg = nullptr;
  g* prev = nullptr;
};

struct m {
  int id = 0;
  void* g0sp = nullptr;  // the scheduler loop's saved context
  g* curg = nullptr;
  p* pp = nullptr;
  p* nextp = nullptr;  // handed over by startm before the wake-up
  bool spinning = false;
  bool on_idle = false;           // in sched.midle (sched.lock)
  bool is_m0 = false;             // the thread that called gort::run
  std::atomic<uint32_t> park{0};  // futex: 1 = woken
  m* schedlink = nullptr;         // idle M list
  after next_after;
  g* nextg = nullptr;                  // a new task switch_out chose, for g0 to start
  alloc::mcache* own_cache = nullptr;  // the thread's cache while it holds a P
  uint64_t fastrand = 0;
  // In a blocking call (syscall.cc): the P it left, and the run it was in.
  p* oldp = nullptr;
  uint64_t syscall_run = 0;
  int procid = 0;  // the thread's id, for the preemption signal
  // Blocked in epoll_wait (netpoll.cc) instead of its futex: notewakeup
  // breaks the poll. Set before park is read, as park is set before this.
  std::atomic<bool> in_netpoll{false};
};

inline constexpr uint32_t kRunqSize = 256;

struct alignas(64) p {
  int id = 0;
  std::atomic<m*> mp{nullptr};  // owner, or null when idle (read racily as a hint)
  p* link = nullptr;            // idle P list
  // Counts switches on this P; sysmon reads it to see a task that has run
  // for 10 ms (preempt.cc).
  std::atomic<uint32_t> schedtick{0};
  // The M in a blocking call with this P (entersyscall), or null. Whoever
  // CASes it from that M to null owns the P: the M itself when its call
  // returns (exitsyscall's fast path), or sysmon retaking it (handoffp).
  std::atomic<m*> syscallm{nullptr};
  std::atomic<uint32_t> syscalltick{0};  // counts entersyscalls, for sysmon
  // Local run queue: owner writes tail, anyone CASes head.
  std::atomic<uint32_t> runqhead{0};
  std::atomic<uint32_t> runqtail{0};
  std::atomic<g*> runq[kRunqSize];
  std::atomic<g*> runnext{nullptr};
  alloc::mcache* mcache = nullptr;
  // Free gs (without stacks) and free stacks, owner only.
  g* gfree = nullptr;
  int32_t ngfree = 0;
  stackcache stacks;
  // Timers: a 4-ary min-heap on when, guarded by timers_lock; timer0 is the
  // earliest when (0: none), readable without the lock.
  alloc::mutex timers_lock;
  timer** timers = nullptr;
  uint32_t ntimers = 0, timers_cap = 0;
  std::atomic<int64_t> timer0{0};
  // Task ids handed out in batches of kGoidBatch from sched.goidgen (Go's
  // goidcache): a spawn writes no shared line. Owner only; reset at a run's start.
  uint64_t goidcache = 0, goidcacheend = 0;
  // Tasks spawned and exited on this P (SchedStats sums them with sched's,
  // which count what threads outside the scheduler spawn). Written by the
  // owner alone (a release store, no locked instruction); read with acquire,
  // exited before spawned, so that a sum never shows an exit whose spawn it
  // missed.
  std::atomic<uint64_t> nspawned{0}, nexited{0};
};
inline constexpr uint64_t kGoidBatch = 16;
// One more on a P's own counter (nspawned, nexited): its owner is the only
// writer, so a plain load and a release store, not a locked add.
inline void count_on_p(std::atomic<uint64_t>& c) {
  c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_release);
}
// Tasks spawned and exited so far (every P's counts and sched's); exited
// never above spawned.
void task_counts(uint64_t* spawned, uint64_t* exited);
// Pushes a chain of n free gs (head to tail through schedlink) onto the
// global free list as one batch.
void gfree_push_batch(g* head, g* tail, int32_t n);

struct schedt {
  // sched.lock guards the global run queue, the idle P and M lists and the
  // counters beside them. Taken after any channel or semaphore lock.
  alloc::mutex lock;
  g* runq_head = nullptr;
  g* runq_tail = nullptr;
  std::atomic<int32_t> runqsize{0};
  p* pidle = nullptr;
  std::atomic<int32_t> npidle{0};
  m* midle = nullptr;
  int32_t nmidle = 0;
  int32_t mcount = 0;
  std::atomic<int32_t> nmspinning{0};
  // Ms in a blocking call (entersyscall to exitsyscall): neither idle nor
  // running tasks. The deadlock check and the end of a run count them.
  std::atomic<int32_t> nmsyscall{0};
  uint64_t runid = 0;  // counts runs (sched.lock): a call that outlives its run
  // sysmon (sysmon.cc): 1 while it sleeps deeply (every P idle); a P taken
  // from the idle list wakes it.
  std::atomic<uint32_t> sysmonwait{0};
  std::atomic<int32_t> nsysmon{0};  // sysmon and its helper threads, for checkdead
  // checkdead found every task asleep but more threads than the runtime
  // knows: one may be a thread on its way out (pthread_join returns before
  // the kernel drops it from the count), so sysmon runs checkdead again.
  std::atomic<bool> deadcheck_again{false};
  // Global free gs: a stack of batches (proc.cc gfput), under gfree_lock,
  // a leaf (taken under sched.lock by spawn_runtime_task).
  alloc::mutex gfree_lock;
  g* gfree = nullptr;
  // One M at a time sleeps until the next timer; others park untimed.
  m* timer_sleeper = nullptr;
  std::atomic<int64_t> sleep_until{0};
  // Run lifecycle.
  std::atomic<bool> running{false};
  std::atomic<bool> shutdown{false};
  std::atomic<uint32_t> done{0};  // futex for m0: main task finished
  g* main_g = nullptr;
  std::atomic<uint64_t> goidgen{0};
  // Every g ever made (never freed: reused through the free lists).
  alloc::mutex allg_lock;
  g* allg = nullptr;
  // Counters (SchedStats).
  std::atomic<uint64_t> spawned{0}, exited{0}, steals{0}, globalq{0}, mparks{0};
  std::atomic<uint64_t> retakes{0}, preempts{0}, async_preempts{0};
  // Tasks the netpoller readied, and those of them sysmon's poll found.
  std::atomic<uint64_t> netpoll_ready{0}, netpoll_ready_sysmon{0};
};

extern schedt sched;
extern p** allp;
extern std::atomic<int32_t> gomaxprocs;

// The current M (null on threads outside the scheduler) and g.
m* getm();
g* getg();  // a task's g, the thread's pseudo-g, or null on an M's g0

// Parks the current g (task or thread) until ready(g). fn(arg, g) runs once
// the g is safely parked, typically unlocking the lock under which it put
// itself on a wait queue; a waker holding that lock cannot see the g before.
void gopark(void (*fn)(void*, g*), void* arg, const char* reason);
// Parks after unlocking l.
void goparkunlock(alloc::mutex* l, const char* reason);
// Makes gp runnable: this P's runnext (a task or timer readying it), or the
// global queue (a thread outside the scheduler); wakes an M if one is idle.
void ready(g* gp);
void goyield();  // puts the current task at the tail of its P's queue and switches

// A timer earlier than the one the timer sleeper waits for was added.
void wake_timer_sleeper(int64_t when);

// Semaphores (sema.cc): wait until *addr > 0 and decrement it; increment it
// and wake a waiter (handoff: give the count to the waiter and yield to it).
void semacquire(uint32_t* addr, bool lifo, const char* reason);
void semrelease(uint32_t* addr, bool handoff);

// The errno of the thread the caller runs on now. glibc's __errno_location
// is a const function, so the compiler keeps its result in a register
// across calls; runtime code that saves errno, switches (a park, a yield, a
// preemption) and restores it must look it up again through this pointer,
// or it writes the errno of the thread it left (proc.cc).
extern int* (*volatile errno_location)();
inline int& cur_errno() {
  return *errno_location();
}

uint64_t fastrand();
int64_t now_ns();  // CLOCK_MONOTONIC, as steady_clock

// ---- between the scheduler's files (proc.cc, run.cc, sysmon.cc, ...)

// Ps and Ms (proc.cc). pidleput, pidleget and mget want sched.lock held.
void acquirep(m* mp, p* pp);
void releasep(m* mp);
void pidleput(p* pp);
p* pidleget();
m* mget();
void notewakeup(m* mp);
// Gives pp (null: an idle P, if any) to an idle or new M and wakes it.
void startm(p* pp, bool spinning);
void wakep();  // startm(spinning) unless an M already spins
// The M's scheduler loop on its own stack; returns on m0 when the run ends.
void schedule_loop(m* mp);
// Switches away from the running gp, whose status and m::after are set;
// why (a trace::stopReason) is what the execution trace records.
void switch_out(m* mp, g* gp, uint8_t why);
// The same, straight to the M's own stack (g0), whatever is runnable.
void switch_to_g0(m* mp, g* gp);
// gp to this P's runnext, or from a thread without a P to the global queue.
void make_runnable(g* gp);

// A run's end and the deadlock check (run.cc). checkdead wants sched.lock.
// from_m: called by an M about to park (not yet on the idle list).
void checkdead(bool from_m);
void shutdown_wake_all();

// Blocking calls (syscall.cc): the task stays on its M, the P may go on
// without it. handoffp gives a P whose M is blocked to work or the idle list.
void entersyscall();
void exitsyscall();
void handoffp(p* pp);
// Yields a task whose preempt flag is set, to the global queue (preempt.cc).
void gopreempt(m* mp, g* gp);
// The end of a turn (preempt.cc), one rule for every call that completed
// without parking: a blocking call that returned (exitsyscall), a read or
// write on a watched descriptor that found data or room (libc.cc, net.cc).
// If other tasks wait for a P (this P's queue or the global one), the
// task's turn is over: turn_end_if_waiting sets its preempt flag for the
// caller's next preempt_check; io_turn_end also yields at once. Without it a
// task whose calls never block keeps its P until sysmon's 10 ms preemption
// while the others wait (one keep-alive connection served 20,000 times,
// 49 once: issue 11).
void turn_end_if_waiting(m* mp, g* gp);
void io_turn_end();
// Called where a task may be preempted cooperatively (channel operations,
// yield, leaving a blocking call): one load when nobody asks.
inline void preempt_check() {
  m* mp = getm();
  if (mp && mp->curg && __builtin_expect(mp->curg->preempt.load(std::memory_order_relaxed), 0))
    gopreempt(mp, mp->curg);
}
// sysmon (sysmon.cc): started with the first run, runs until exit.
void sysmon_start();
void sysmon_wake();   // a P left the idle list while sysmon slept deeply
void preempt_init();  // installs the preemption signal's handler (preempt.cc)
// Unblocks the preemption signal on a new M: one started from sysmon (which
// blocks every signal) would otherwise inherit a mask that blocks it.
void preempt_thread_init();
// Asks the task running on pp to yield: the flag, and the signal unless
// GORT_DEBUG=asyncpreemptoff=1 (preempt.cc; sysmon calls it).
void preemptone(p* pp);
void libc_linked();  // libc.cc: a static link always takes the interposed calls

}  // namespace gort::rt

namespace gort::detail {
// A task of the runtime's own, from any thread (proc.cc); false when no
// gort::run is in progress.
bool spawn_runtime_task(void (*fn)(void*), void* arg);
}  // namespace gort::detail
