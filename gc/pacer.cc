// The pacer, the soft memory limit and the CPU limiter; see pacer.h for the
// design. Names follow Go's mgcpacer.go and mgclimit.go.
#include "gc/pacer.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "alloc/options.h"
#include "alloc/scavenger.h"
#include "alloc/sys.h"
#include "gc/heap.h"
#include "gc/roots.h"
#include "gc/worker.h"
#include "runtime/gchooks.h"
#include "runtime/trace.h"

namespace gort::gc {

gcControllerState gcController;

namespace {

// The CPU count, read once by pacer_init: sysconf reads a file under /sys,
// tens of microseconds that mark termination must not spend inside a stop.
int g_ncpu = 1;
constexpr int64_t kMinGoal = 4 << 20;
// Left for the memory limit's estimate to be off (Go: 3%, at least 1 MiB).
constexpr int64_t kLimitHeadroomPercent = 3, kLimitHeadroomMin = 1 << 20;
// One assist scans at most this much before the program runs again.
constexpr int64_t kAssistMaxWork = 256 << 10;
constexpr uint64_t kAssistChunk = 64;               // objects per drain call in an assist
constexpr int64_t kAssistNapNs = 100000;            // a parked assist looks again after this
constexpr int64_t kLimiterBucketNs = 1000000000LL;  // per P
constexpr int64_t kLimitGoalRefreshNs = 1000000;    // limitGoal is at most 1 ms old
std::atomic<uint32_t> g_cycle_seq{0};
// The assist credit of a thread that runs no task; a task's own is in its
// g (gchook::task_assist), so that a task that moves to another M takes its
// debt along instead of leaving it to whatever runs there next.
__thread rt::gcAssist tl_assist;

// The caller's credit, voided if it is from an earlier cycle.
rt::gcAssist* assist_credit() {
  rt::gcAssist* a = rt::gchook::task_assist();
  if (!a) a = &tl_assist;
  uint32_t seq = g_cycle_seq.load(std::memory_order_relaxed);
  if (a->cycle != seq) *a = rt::gcAssist{0, seq};
  return a;
}

// What the limit leaves for the GC heap: the limit, less everything gort
// holds that is not GC heap (malloc heap, stacks, metadata, free pages not
// yet released), less a headroom (Go's memoryLimitHeapGoal).
int64_t compute_limit_goal(int64_t held) {
  int64_t lim = gcController.memoryLimit.load(std::memory_order_relaxed);
  if (lim <= 0) return INT64_MAX;
  int64_t gcheap = g_heap_alloc.load(std::memory_order_relaxed);
  int64_t nonheap = held - gcheap;
  if (nonheap < 0) nonheap = 0;
  int64_t headroom = lim * kLimitHeadroomPercent / 100;
  if (headroom < kLimitHeadroomMin) headroom = kLimitHeadroomMin;
  int64_t goal = lim - nonheap - headroom;
  // Free pages the scavenger will return as the limit nears do not stay.
  return goal < kMinGoal / 4 ? kMinGoal / 4 : goal;
}

int64_t limit_goal_now() {
  if (gcController.memoryLimit.load(std::memory_order_relaxed) <= 0) return INT64_MAX;
  int64_t now = alloc::coarse_nanotime();
  if (now - gcController.limitGoalAt.load(std::memory_order_relaxed) > kLimitGoalRefreshNs) {
    gcController.limitGoalAt.store(now, std::memory_order_relaxed);
    gcController.limitGoal.store(compute_limit_goal(static_cast<int64_t>(alloc::held_bytes())),
                                 std::memory_order_relaxed);
  }
  return gcController.limitGoal.load(std::memory_order_relaxed);
}

}  // namespace

int pacer_procs() {
  int n = rt::gchook::procs();
  return n > 0 ? n : g_ncpu;
}

void pacer_init() {
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  g_ncpu = ncpu > 0 ? static_cast<int>(ncpu) : 1;
  const char* v = getenv("GORT_GC");
  if (v) {
    if (strcmp(v, "off") == 0) {
      gcController.gcPercent.store(-1);
    } else {
      char* end;
      errno = 0;
      long n = strtol(v, &end, 10);
      if (*v == '\0' || *end != '\0' || errno || n < 0 || n > 1000000)
        alloc::print_err(
            "GORT_GC=%s: expected 'off' or a percent from 0 to 1000000; using the default (100)",
            v);
      else
        gcController.gcPercent.store(static_cast<int>(n));
    }
  }
  // GORT_MEMLIMIT itself is parsed with the allocator's options (a
  // malloc-only program needs it too); a bad value was reported there.
  gcController.memoryLimit.store(alloc::scavenger_memory_limit());
  pacer_set_goal(static_cast<int64_t>(alloc::held_bytes()));
}

void pacer_note_held() {
  gcController.heldAtStop.store(static_cast<int64_t>(alloc::held_bytes()),
                                std::memory_order_relaxed);
}

void pacer_set_goal(int64_t held) {
  gcControllerState& c = gcController;
  int pct = c.gcPercent.load(std::memory_order_relaxed);
  int64_t marked = c.heapMarked.load(std::memory_order_relaxed);
  int64_t goal = INT64_MAX;
  if (pct >= 0) {
    goal = marked + (marked + c.stackScan) * pct / 100;
    if (goal < kMinGoal) goal = kMinGoal;
  }
  c.limitGoalAt.store(alloc::coarse_nanotime(), std::memory_order_relaxed);
  int64_t lgoal = compute_limit_goal(held);
  c.limitGoal.store(lgoal, std::memory_order_relaxed);
  if (lgoal < goal) goal = lgoal;
  // The runway: what the program allocates while a mark at the goal
  // utilization does last cycle's scan work.
  double cons = 0;
  for (double x : c.consMark)
    if (x > cons) cons = x;
  double runway = cons * (1 - kGoalUtilization) / kGoalUtilization *
                  static_cast<double>(c.lastScanWork + c.stackScan);
  int64_t trigger;
  if (goal == INT64_MAX) {
    trigger = INT64_MAX;
  } else {
    int64_t span = goal - marked;
    if (span < 0) span = 0;
    int64_t lo = marked + span * 7 / 10, hi = marked + span * 95 / 100;
    trigger = goal - static_cast<int64_t>(runway);
    if (trigger < lo) trigger = lo;
    if (trigger > hi) trigger = hi;
  }
  c.heapGoal.store(goal, std::memory_order_relaxed);
  c.trigger.store(trigger, std::memory_order_relaxed);
}

bool pacer_should_trigger(int64_t heap_live) {
  if (heap_live >= gcController.trigger.load(std::memory_order_relaxed)) return true;
  // The limit's goal moves with the rest of gort's memory (a growing malloc
  // heap leaves less to the GC heap): check it against a recent estimate,
  // with the same 70% lead the trigger keeps.
  int64_t lg = limit_goal_now();
  if (lg == INT64_MAX) return false;
  int64_t marked = gcController.heapMarked.load(std::memory_order_relaxed);
  return heap_live >= marked + (lg - marked) * 9 / 10;
}

void pacer_start_cycle(int64_t heap_live) {
  gcControllerState& c = gcController;
  c.triggered = heap_live;
  c.scanWork.store(0, std::memory_order_relaxed);
  c.bgScanCredit.store(0, std::memory_order_relaxed);
  c.assistTimeNs.store(0, std::memory_order_relaxed);
  c.assistScanWork.store(0, std::memory_order_relaxed);
  c.markStartNs = alloc::nanotime();
  g_cycle_seq.fetch_add(1, std::memory_order_relaxed);
  // The goal may have moved with the limit since the last mark ended (the
  // world is stopped: held as read before the stop, never the mheap's lock).
  int64_t lg = compute_limit_goal(c.heldAtStop.load(std::memory_order_relaxed));
  c.limitGoal.store(lg, std::memory_order_relaxed);
  c.limitGoalAt.store(alloc::coarse_nanotime(), std::memory_order_relaxed);
  if (lg < c.heapGoal.load(std::memory_order_relaxed))
    c.heapGoal.store(lg, std::memory_order_relaxed);
  pacer_revise();
}

void pacer_revise() {
  gcControllerState& c = gcController;
  int64_t live = g_heap_alloc.load(std::memory_order_relaxed);
  int64_t goal = c.heapGoal.load(std::memory_order_relaxed);
  // Expected scan work: as much as last cycle (the live heap is steady), but
  // at least what was done so far plus a little (it is not over yet).
  int64_t expected = c.lastScanWork + c.stackScan;
  int64_t done = c.scanWork.load(std::memory_order_relaxed);
  int64_t remaining = expected - done;
  if (remaining < expected / 10) remaining = expected / 10;
  // Once the scan work has passed its estimate, the live heap grew and how
  // much is left is unknown: aim for the hard goal (1.1 x goal), as Go does.
  // Until then the goal itself, to the end: the runway shrinks as the heap
  // nears it, so the assists grow (a refill's assist is capped at
  // kAssistMaxWork, the rest stays as debt). Switching to the hard goal by
  // heap (it did so within 2% of the goal) cut the ratio six-fold for the
  // last tenth of the work, and binary-trees' heap overshot its goal by
  // ~5 MB every cycle: floating garbage that the next goal doubled.
  if (done > expected && goal <= INT64_MAX / 11 * 10) goal += goal / 10;  // INT64_MAX: no goal
  int64_t runway = goal - live;
  if (runway < (64 << 10)) runway = 64 << 10;
  int64_t ratio =
      static_cast<int64_t>(static_cast<double>(remaining) * 65536.0 / static_cast<double>(runway));
  c.assistWorkPerByte.store(ratio, std::memory_order_relaxed);
}

bool pacer_drain(gcWork& w, uint64_t budget, bool background, uint64_t* scanned) {
  uint64_t before = w.bytes_marked;
  bool done = drain(w, budget, scanned);
  int64_t work = static_cast<int64_t>(w.bytes_marked - before);
  if (work) {
    gcController.scanWork.fetch_add(work, std::memory_order_relaxed);
    if (background) gcController.bgScanCredit.fetch_add(work, std::memory_order_relaxed);
  }
  return done;
}

namespace {
// Takes up to want of the background workers' surplus scan credit.
int64_t take_credit(int64_t want) {
  std::atomic<int64_t>& bg = gcController.bgScanCredit;
  int64_t credit = bg.load(std::memory_order_relaxed);
  while (credit > 0 && want > 0) {
    int64_t take = credit < want ? credit : want;
    if (bg.compare_exchange_weak(credit, credit - take, std::memory_order_relaxed)) return take;
  }
  return 0;
}
}  // namespace

int64_t pacer_assist_credit() {
  return assist_credit()->bytes;
}

void pacer_charge(int64_t bytes) {
  gcControllerState& c = gcController;
  rt::gcAssist* a = assist_credit();  // the same record after a yield moves the task
  a->bytes -= bytes;
  if (a->bytes >= 0) return;
  if (c.limiterOn.load(std::memory_order_relaxed)) {
    a->bytes = 0;  // the CPU limiter forgives assists
    return;
  }
  gcThread* t = tl_gc.rec;
  if (!t) return;
  int64_t per = c.assistWorkPerByte.load(std::memory_order_relaxed);
  if (per <= 0) {
    a->bytes = 0;
    return;
  }
  int64_t debt = static_cast<int64_t>((static_cast<__int128>(-a->bytes) * per) >> 16);
  // The background workers' surplus pays first (Go's bgScanCredit).
  debt -= take_credit(debt);
  if (debt <= 0) {
    a->bytes = 0;
    return;
  }
  // CPU time is per thread: summed piecewise, as a yield may resume the
  // task on another M.
  int64_t t0 = alloc::nanotime(), cpu0 = thread_cpu_ns(), cpu = 0;
  rt::trace::assist_begin();
  int64_t work = 0, stolen = 0;  // scanned here; taken from the workers' credit while parked
  int64_t want = debt < kAssistMaxWork ? debt : kAssistMaxWork;
  while (work + stolen < want && mark_busy_enter()) {
    uint64_t before = t->work.bytes_marked;
    bool empty = drain(t->work, kAssistChunk);
    int64_t w = static_cast<int64_t>(t->work.bytes_marked - before);
    t->work.flush();
    busy_exit();
    t = tl_gc.rec;
    if (!t) break;
    work += w;
    if (!empty) continue;
    if (w > 0) continue;
    // No grey work to take: the rest is in the workers' hands. A task past
    // the goal parks (Go's gcParkAssist) for up to 20 ms, in naps
    // that leave the CPU to the workers (a yield-loop spun whenever its P
    // had nothing else to run, taking a core from them with many Ps), and
    // pays with the credit they made meanwhile. A plain thread returns at
    // once (spinning there cost binary-trees dearly: the collector's thread
    // holds its grey objects in its own buffer).
    int64_t goal = c.heapGoal.load(std::memory_order_relaxed);
    if (!rt::gchook::in_task() || goal <= c.heapMarked.load(std::memory_order_relaxed) ||
        g_heap_alloc.load(std::memory_order_relaxed) < goal)
      break;
    int64_t now = alloc::nanotime();
    if (now - t0 > 20 * 1000000LL) break;
    cpu += thread_cpu_ns() - cpu0;
    rt::gchook::sleep(kAssistNapNs);
    cpu0 = thread_cpu_ns();
    stolen += take_credit(want - work - stolen);
    t = tl_gc.rec;
    if (!t) break;
  }
  c.scanWork.fetch_add(work, std::memory_order_relaxed);
  c.assistScanWork.fetch_add(work, std::memory_order_relaxed);
  // Paid work turns back into allocation credit; what is not paid stays as
  // debt for the next refill (unless the mark ended).
  int64_t paid_bytes = static_cast<int64_t>((static_cast<__int128>(work + stolen) << 16) / per);
  a->bytes += paid_bytes;
  if (!g_marking.load(std::memory_order_relaxed) || a->bytes > 0) a->bytes = 0;
  cpu += thread_cpu_ns() - cpu0;
  c.assistTimeNs.fetch_add(cpu, std::memory_order_relaxed);
  rt::trace::assist_end();
}

void pacer_end_cycle(int64_t live, int64_t roots, int64_t gc_thread_cpu_ns) {
  gcControllerState& c = gcController;
  int64_t mark_wall = alloc::nanotime() - c.markStartNs;
  int64_t heap_now = g_heap_alloc.load(std::memory_order_relaxed);
  int64_t scan = c.scanWork.load(std::memory_order_relaxed);
  if (scan <= 0) scan = live > 0 ? live : 1;
  // consMark: bytes allocated per byte scanned, normalised to the CPU the
  // mark actually used against the goal utilization (Go's currentConsMark).
  int64_t procs = pacer_procs();
  double gc_cpu =
      static_cast<double>(gc_thread_cpu_ns + c.assistTimeNs.load(std::memory_order_relaxed));
  double u = mark_wall > 0 ? gc_cpu / (static_cast<double>(mark_wall) * procs) : kGoalUtilization;
  if (u < 0.05) u = 0.05;
  if (u > 0.95) u = 0.95;
  double allocated = static_cast<double>(heap_now - c.triggered);
  if (allocated < 0) allocated = 0;
  double cons = allocated * u / (static_cast<double>(scan) * (1 - u));
  for (int i = 3; i > 0; i--) c.consMark[i] = c.consMark[i - 1];
  c.consMark[0] = cons;
  c.heapMarked.store(live, std::memory_order_relaxed);
  c.lastScanWork = scan;
  c.stackScan = roots;
  pacer_set_goal(c.heldAtStop.load(std::memory_order_relaxed));  // in the stop
}

void pacer_wait_start() {
  // A cycle was asked for and the heap is already past its goal, but the
  // collector's thread has not started marking (it is finishing the last
  // sweep, or waiting for a CPU): give it the CPU once per refill rather
  // than allocate on unpaced.
  if (g_heap_alloc.load(std::memory_order_relaxed) <
      gcController.heapGoal.load(std::memory_order_relaxed))
    return;
  if (gcController.limiterOn.load(std::memory_order_relaxed)) return;
  if (rt::gchook::in_task())
    rt::gchook::yield();
  else
    sched_yield();
}

// ---- the CPU limiter

void pacer_limiter_note(int64_t gc_cpu_ns) {
  gcControllerState& c = gcController;
  int64_t now = alloc::nanotime();
  int64_t procs = pacer_procs();
  if (!c.limiterLastNs) c.limiterLastNs = now;
  int64_t capacity = (now - c.limiterLastNs) * procs;
  c.limiterLastNs = now;
  // Only a memory limit makes the collector run back to back for good (a
  // goal under the live heap); without one, pacing already bounds GC CPU,
  // and a tiny heap's frequent cycles must not be held back.
  if (c.memoryLimit.load(std::memory_order_relaxed) <= 0) {
    c.limiterBucket = 0;
    c.limiterOn.store(false, std::memory_order_relaxed);
    return;
  }
  int64_t mutator = capacity - gc_cpu_ns;
  if (mutator < 0) mutator = 0;
  c.limiterFillCap = kLimiterBucketNs * procs;
  c.limiterBucket += gc_cpu_ns - mutator;
  if (c.limiterBucket < 0) c.limiterBucket = 0;
  if (c.limiterBucket >= c.limiterFillCap) {
    c.limiterBucket = c.limiterFillCap;
    if (!c.limiterOn.exchange(true)) c.limiterEnabledCycles++;
  } else if (c.limiterBucket < c.limiterFillCap / 2) {
    c.limiterOn.store(false, std::memory_order_relaxed);
  }
}

void pacer_limiter_wait() {
  gcControllerState& c = gcController;
  while (c.limiterOn.load(std::memory_order_relaxed)) {
    // With no GC running, the whole capacity drains the bucket.
    int64_t procs = pacer_procs();
    int64_t over = c.limiterBucket - c.limiterFillCap / 2;
    int64_t ns = over / procs + 1000000;
    if (ns > 100000000) ns = 100000000;
    timespec ts{ns / 1000000000, ns % 1000000000};
    nanosleep(&ts, nullptr);
    pacer_limiter_note(0);
  }
}

}  // namespace gort::gc
