// The collector's cycle, pacing, statistics and gctrace; see cycle.h.
#include "gc/cycle.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <algorithm>

#include "alloc/init.h"
#include "alloc/options.h"
#include "alloc/scavenger.h"
#include "alloc/sys.h"
#include "gc/final.h"
#include "gc/heap.h"
#include "gc/mark.h"
#include "gc/pacer.h"
#include "gc/roots.h"
#include "gc/sweep.h"
#include "gc/worker.h"
#include "runtime/gchooks.h"
#include "runtime/trace.h"

#define GORT_EXPORT extern "C" __attribute__((visibility("default")))

namespace gort::gc {

std::atomic<uint64_t> g_large_marked_bytes{0};
uint64_t g_cache_marked_bytes = 0;

namespace {

// Work mark termination may do in the stop before it gives up, starts the
// world and marks concurrently again (objects scanned; ~0.3 ms here).
constexpr uint64_t kTermBudget = 8000;
constexpr int kMaxRestarts = 2;
// The idle cycle under a memory limit (controller_main): after 300 ms in
// which the program allocated under 1 MiB, with a GC heap of 16 MiB or more,
// once per idle period.
constexpr int64_t kIdleCycleNs = 300 * 1000000LL;
constexpr uint64_t kIdleAllocBytes = 1 << 20;
constexpr int64_t kIdleHeapBytes = 16 << 20;

std::atomic<bool> g_pending{false};
std::atomic<uint32_t> g_want{0};  // cycles asked for (futex: the collector waits on it)
std::atomic<uint32_t> g_done{0};  // cycles finished, sweep included (futex: collect waits)
// Requests that must run a cycle whatever the heap (gort_gc_collect,
// gcstress, idle cycles); the others come from the trigger and are tested
// again once the last cycle's sweep is done (controller_main).
std::atomic<uint32_t> g_forced{0};
std::atomic<bool> g_started{false};
constinit alloc::mutex g_start_lock;
int64_t g_start_ns = 0;

// Statistics: written by the collector's thread under g_stats_lock, read by
// program threads in busy regions.
constinit alloc::mutex g_stats_lock;
constexpr size_t kPauseRing = 1024;
struct {
  uint64_t cycles, live, pause_total, pause_max, pause_last[2], mark_ns;
  uint64_t assist_ns, bg_ns, trigger, peak_heap, heap_end, goal_end;
  uint64_t pauses[kPauseRing];
  uint64_t npauses;
} g_st;

gcWork g_work;  // the collector thread's own

void record_pause(int64_t ns, int which) {
  alloc::lock_guard g(g_stats_lock);
  uint64_t p = static_cast<uint64_t>(ns);
  g_st.pause_total += p;
  if (p > g_st.pause_max) g_st.pause_max = p;
  g_st.pause_last[which] = p;
  g_st.pauses[g_st.npauses++ % kPauseRing] = p;
}

void sweep_all() {
  rt::trace::sweepScope ts(true);
  while (sweep_one()) {
  }
  free_empty_spans();
}

std::atomic<void (*)()> g_cycle_hooks[4];
std::atomic<void (*)()> g_mark_done_hooks[2];
std::atomic<void (*)()> g_sweepterm_stop_hooks[2], g_sweepterm_after_hooks[2];

void run_cycle() {
  int64_t t_begin = alloc::nanotime();
  int64_t cpu0 = thread_cpu_ns();
  sweep_all();
  for (auto& h : g_cycle_hooks)
    if (auto fn = h.load(std::memory_order_acquire)) fn();
  int64_t heap0 = g_heap_alloc.load(std::memory_order_relaxed);
  int64_t trigger0 = gcController.trigger.load(std::memory_order_relaxed);

  // 1. Sweep termination.
  rt::trace::gc_phase(rt::trace::kGCSweepTermination);
  int64_t s1 = alloc::nanotime();
  pacer_note_held();  // the mheap's lock, never taken inside a stop
  int64_t stop1 = stop_the_world();
  while (sweep_one()) {
  }
  flush_all_caches();
  for (auto& h : g_sweepterm_stop_hooks)  // before marking begins
    if (auto fn = h.load(std::memory_order_acquire)) fn();
  if (alloc::g_options.gcverify) verify_unmarked();
  int64_t flush1 = alloc::nanotime() - s1 - stop1;
  g_cache_marked_bytes = 0;
  g_large_marked_bytes.store(0, std::memory_order_relaxed);
  take_thread_marked();
  uint32_t gen = g_scangen.load(std::memory_order_relaxed) + 1;
  if (gen == kScanBusy || gen == 0) gen = 1;
  g_scangen.store(gen, std::memory_order_release);
  g_marking.store(1, std::memory_order_release);
  // Threads that never registered are not stopped, and their barriers run
  // on. A barrier stores, then reads g_marking, and the CPU may let the read
  // pass the store (which waits in its store buffer): the read says "not
  // marking", so the old value is not shaded, and the store lands after the
  // mark scanned the slot. The old value was lost if a black stack had
  // loaded it meanwhile. After this fence every such store is visible to the
  // mark, or its barrier reads 1.
  alloc::process_fence();
  g_work.bytes_marked = 0;
  pacer_start_cycle(heap0);
  scan_stopped_threads(g_work);
  g_pending.store(false, std::memory_order_relaxed);
  start_the_world();
  int64_t p1 = alloc::nanotime() - s1;
  record_pause(p1, 0);
  for (auto& h : g_sweepterm_after_hooks)
    if (auto fn = h.load(std::memory_order_acquire)) fn();
  rt::trace::gc_phase(rt::trace::kGCMark);

  // 2. Concurrent mark.
  int64_t t_mark = alloc::nanotime();
  uint64_t cycle = g_mark_cycle.fetch_add(1) + 1;

  scan_root_ranges(g_work);
  scan_handles(g_work);
  scan_finalizer_roots(g_work);
  scan_tasks(g_work);
  // Stacks and roots are scan work the goal counts (Go 1.18's stack and
  // globals terms).
  int64_t roots = static_cast<int64_t>(g_work.bytes_marked);
  gcController.scanWork.fetch_add(roots, std::memory_order_relaxed);
  g_work.flush();  // what the roots made grey, where the workers can take it
  // Under gort::run, worker tasks mark (gc/worker.h); this thread watches.
  bool workers = workers_start(cycle);
  int restarts = 0;
  int64_t p2 = 0, s2 = 0, stop2 = 0, tasks2 = 0, drain2 = 0;
  for (;;) {
    if (workers) workers_wait(g_work);
    // The background worker (or what the workers left): drain in chunks,
    // revising the assist ratio between them as the scan work and the heap
    // move.
    while (!pacer_drain(g_work, 1 << 12, true)) pacer_revise();
    // Root ranges once more, concurrently: a backstop for stores into them
    // that skipped the barrier (the barrier is the rule, see docs/gc.md).
    scan_root_ranges(g_work);
    while (!pacer_drain(g_work, 1 << 12, true)) {
    }
    rt::trace::gc_phase(rt::trace::kGCMarkTermination);
    s2 = alloc::nanotime();
    pacer_note_held();
    stop2 = stop_the_world();
    // 3. Mark termination.
    flush_thread_work();
    shade_stopped_registers(g_work);
    scan_leftover_tasks(g_work);
    tasks2 = alloc::nanotime() - s2 - stop2;
    // Past the restarts the drain has no budget, and so ends with no work.
    if (drain(g_work, restarts < kMaxRestarts ? kTermBudget : ~uint64_t{0})) break;
    g_work.flush();
    start_the_world();
    int64_t p = alloc::nanotime() - s2;
    record_pause(p, 1);
    rt::trace::gc_phase(rt::trace::kGCMark);
    restarts++;
  }
  int64_t mark_ns = s2 - t_mark;
  drain2 = alloc::nanotime() - s2 - stop2 - tasks2;
  int64_t heap_term = g_heap_alloc.load(std::memory_order_relaxed);
  flush_all_caches();
  if (alloc::g_options.gcverify) verify_heap();
  for (auto& h : g_mark_done_hooks)
    if (auto fn = h.load(std::memory_order_acquire)) fn();
  uint64_t live = g_work.bytes_marked + g_cache_marked_bytes + g_large_marked_bytes.load() +
                  take_thread_marked();
  g_marking.store(0, std::memory_order_release);
  g_mark_cycle.fetch_add(1);  // a worker that has not run yet stops at once
  prepare_sweep();
  g_sweepgen.fetch_add(2, std::memory_order_release);
  int64_t assist_ns = gcController.assistTimeNs.load(std::memory_order_relaxed);
  int64_t goal_end = gcController.heapGoal.load(std::memory_order_relaxed);
  pacer_end_cycle(static_cast<int64_t>(live), roots, thread_cpu_ns() - cpu0 + workers_cpu_ns());
  start_the_world();
  p2 = alloc::nanotime() - s2;
  record_pause(p2, 1);
  rt::trace::gc_phase(rt::trace::kGCSweep);
  {
    alloc::lock_guard g(g_stats_lock);
    g_st.cycles++;
    g_st.live = live;
    g_st.mark_ns = static_cast<uint64_t>(mark_ns);
  }

  // 4. Sweep (the rest happens lazily as well).
  sweep_all();
  // Spans swept empty went back to the mheap: start the scavenger if it
  // waits for a malloc slow path that a GC-only program may never take.
  alloc::scavenger_poll();
  rt::trace::gc_phase(rt::trace::kGCOff);
  int64_t cpu = thread_cpu_ns() - cpu0 + workers_cpu_ns();  // background: this thread and workers
  pacer_limiter_note(cpu + assist_ns);
  {
    alloc::lock_guard g(g_stats_lock);
    g_st.assist_ns += static_cast<uint64_t>(assist_ns);
    g_st.bg_ns += static_cast<uint64_t>(cpu);
    g_st.trigger = static_cast<uint64_t>(trigger0);
    g_st.peak_heap = std::max(g_st.peak_heap, static_cast<uint64_t>(heap_term));
    g_st.heap_end = static_cast<uint64_t>(heap_term);
    g_st.goal_end = goal_end == INT64_MAX ? 0 : static_cast<uint64_t>(goal_end);
  }
  if (alloc::g_options.gctrace) {
    double mb = 1.0 / (1 << 20);
    dprintf(2,
            "gc %llu @%.3fs: %.3f+%.3f+%.3f ms clock, %.3f assist+%.3f background ms cpu, "
            "%.1f->%.1f->%.1f MB, %.1f MB trigger, %.1f MB goal, %zu threads%s%s\n",
            static_cast<unsigned long long>(g_st.cycles), (t_begin - g_start_ns) / 1e9, p1 / 1e6,
            mark_ns / 1e6, p2 / 1e6, assist_ns / 1e6, cpu / 1e6, heap0 * mb, heap_term * mb,
            live * mb, trigger0 * mb, goal_end == INT64_MAX ? 0.0 : goal_end * mb, nthreads(),
            restarts ? " (mark restarted)" : "",
            gcController.limiterOn.load() ? " (cpu limited)" : "");
    if (alloc::g_options.gctrace > 1)
      dprintf(2,
              "gc %llu stops: sweep termination %.3f ms (stop %.3f, flush %.3f), mark termination "
              "%.3f ms (stop %.3f, tasks %.3f, drain %.3f, rest %.3f)\n",
              static_cast<unsigned long long>(g_st.cycles), p1 / 1e6, stop1 / 1e6, flush1 / 1e6,
              p2 / 1e6, stop2 / 1e6, tasks2 / 1e6, drain2 / 1e6,
              (p2 - stop2 - tasks2 - drain2) / 1e6);
  }
}

void* controller_main(void*) {
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, nullptr);
  uint32_t served = 0, forced_seen = 0;
  uint64_t idle_alloc = 0, idle_cycle_alloc = ~uint64_t{0};
  bool idle = false;  // the cycle about to run is an idle cycle
  for (;;) {
    uint32_t want = g_want.load(std::memory_order_acquire);
    if (want == served) {
      // Under a memory limit, a program that stopped allocating with
      // garbage on its heap (live data dropped, GORT_GC=off or a goal far
      // off) gets one idle cycle: the garbage is swept and given back,
      // instead of being held until a trigger that may never come (Go with
      // GOGC=off and GOMEMLIMIT holds it for good).
      if (gcController.memoryLimit.load(std::memory_order_relaxed) <= 0) {
        alloc::futex_wait(&g_want, want, -1);
        continue;
      }
      idle_alloc = g_total_alloc.load(std::memory_order_relaxed);
      alloc::futex_wait(&g_want, want, kIdleCycleNs);
      if (g_want.load(std::memory_order_acquire) != served) continue;
      uint64_t total = g_total_alloc.load(std::memory_order_relaxed);
      // Live data may have dropped since the last mark, so what is garbage
      // is unknown: a heap of kIdleHeapBytes or more gets one idle cycle
      // per idle period (not again until the program allocated since).
      if (total - idle_alloc > kIdleAllocBytes || total == idle_cycle_alloc ||
          g_heap_alloc.load(std::memory_order_relaxed) < kIdleHeapBytes)
        continue;
      idle_cycle_alloc = total;
      g_pending.store(true, std::memory_order_relaxed);
      idle = true;
      want = served + 1;
      g_want.fetch_add(1, std::memory_order_acq_rel);
    }
    served = want;
    uint32_t forced = g_forced.load(std::memory_order_acquire);
    if (!idle && forced == forced_seen) {
      // Only the trigger asked. It read a heap that still counted the last
      // cycle's unswept garbage: finish that sweep and test again (Go's
      // gcStart does the same). Started on the inflated figure, a cycle
      // begins with the heap far below the trigger, marks for longer, and
      // allocates black meanwhile what the next goal then counts as live;
      // binary-trees' heap swung between 190 and 340 MB on it.
      sweep_all();
      if (!pacer_should_trigger(g_heap_alloc.load(std::memory_order_relaxed))) {
        g_pending.store(false, std::memory_order_release);
        g_done.store(served, std::memory_order_release);
        alloc::futex_wake(&g_done, 1 << 30);
        continue;
      }
    }
    forced_seen = forced;
    pacer_limiter_wait();
    run_cycle();
    g_done.store(served, std::memory_order_release);
    alloc::futex_wake(&g_done, 1 << 30);
    // After an idle cycle the program is not allocating: what the sweep
    // freed goes back to the OS now rather than after GORT_SCAVENGE (the
    // cost that delay avoids, faulting pages in again, needs allocation).
    if (idle) alloc::scavenge_now();
    idle = false;
  }
  return nullptr;
}

// The child of fork() has no collector thread (threads do not survive a
// fork) and may have been forked in the middle of a cycle: it keeps
// allocating but never collects, and gort_gc_collect returns at once.
std::atomic<bool> g_forked{false};

// Every collector lock is held across the fork, so the child finds none
// taken half way. g_reg_lock first: once the forking thread holds it no
// stop of the world can begin (and it is taken outside a busy region, so a
// stop in progress completes first).
void fork_phase(int phase) {
  if (phase == 0) {
    fork_lock_phase(g_start_lock, 0);
    roots_fork_reg(0);
    heap_fork(0);
    final_fork(0);
    roots_fork_tables(0);
    work_fork(0);
    fork_lock_phase(g_stats_lock, 0);
  } else {
    fork_lock_phase(g_stats_lock, phase);
    work_fork(phase);
    roots_fork_tables(phase);
    final_fork(phase);
    heap_fork(phase);
    roots_fork_reg(phase);
    fork_lock_phase(g_start_lock, phase);
  }
}
void fork_prepare() {
  fork_phase(0);
}
void fork_parent() {
  fork_phase(1);
}
void fork_child() {
  fork_phase(2);
  g_forked.store(true);
  gcController.gcPercent.store(-1);
  gcController.memoryLimit.store(0);
  // Forked during a mark: no collector will ever end it here, so the
  // barrier (and black allocation) would stay on for good.
  g_marking.store(0, std::memory_order_release);
  roots_fork_child();
}

// Registered at load time, not when the collector starts: a fork while
// another thread is starting the collector must find g_start_lock in the
// set. Registered after the allocator's handlers (constructor 101), so ours
// run first before the fork and last after it.
__attribute__((constructor(102))) void gc_constructor() {
  pthread_atfork(fork_prepare, fork_parent, fork_child);
}

void request_cycle() {
  g_want.fetch_add(1, std::memory_order_acq_rel);
  alloc::futex_wake(&g_want, 1);
}

}  // namespace

bool on_cycle_start(void (*fn)()) {
  for (auto& h : g_cycle_hooks) {
    void (*none)() = nullptr;
    if (h.compare_exchange_strong(none, fn, std::memory_order_acq_rel)) return true;
  }
  return false;
}

bool on_sweep_termination(void (*in_stop)(), void (*after)()) {
  for (size_t i = 0; i < 2; i++) {
    void (*none)() = nullptr;
    // after first: a cycle between the two stores runs an after() with
    // nothing to do, never an in_stop() without its after().
    if (g_sweepterm_after_hooks[i].compare_exchange_strong(none, after,
                                                           std::memory_order_acq_rel)) {
      g_sweepterm_stop_hooks[i].store(in_stop, std::memory_order_release);
      return true;
    }
  }
  return false;
}

bool on_mark_done(void (*fn)()) {
  for (auto& h : g_mark_done_hooks) {
    void (*none)() = nullptr;
    if (h.compare_exchange_strong(none, fn, std::memory_order_acq_rel)) return true;
  }
  return false;
}

int runtime_threads() {
  if (!g_started.load(std::memory_order_acquire) || g_forked.load(std::memory_order_relaxed))
    return 0;
  return 1 + (finalizer_thread_idle() ? 1 : 0);
}

void ensure_started() {
  if (__builtin_expect(g_started.load(std::memory_order_acquire), 1)) return;
  alloc::ensure_init();
  alloc::lock_guard g(g_start_lock);
  if (g_started.load(std::memory_order_relaxed)) return;
  g_start_ns = alloc::nanotime();
  pacer_init();
  roots_init();
  // The first fence registers with the kernel, which waits for a grace
  // period (2 ms here): not inside mark start's pause.
  alloc::process_fence();
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_t t;
  int err = pthread_create(&t, &attr, controller_main, nullptr);
  pthread_attr_destroy(&attr);
  if (err) alloc::fatal("gc: cannot start the collector's thread: %s", strerror(err));
  g_started.store(true, std::memory_order_release);
}

void note_alloc_slow() {
  int64_t charge = tl_gc.alloc_charge;
  tl_gc.alloc_charge = 0;
  if (__builtin_expect(g_marking.load(std::memory_order_relaxed) != 0, 0))
    pacer_charge(charge);
  else if (g_pending.load(std::memory_order_relaxed))
    pacer_wait_start();
  int64_t heap = g_heap_alloc.load(std::memory_order_relaxed);
  if (__builtin_expect(alloc::g_options.gcstress > 0, 0) &&
      ++tl_gc.refills % static_cast<uint64_t>(alloc::g_options.gcstress) == 0) {
    if (!g_pending.exchange(true, std::memory_order_acq_rel)) {
      g_forced.fetch_add(1, std::memory_order_acq_rel);
      request_cycle();
    }
    return;
  }
  if (!pacer_should_trigger(heap)) return;
  if (g_pending.exchange(true, std::memory_order_acq_rel)) return;
  request_cycle();
}

}  // namespace gort::gc

using namespace gort::gc;
namespace alloc = gort::alloc;

GORT_WAITING_ENTRY(gort_gc_collect, gort_gc_collect_waiting);
extern "C" __attribute__((visibility("hidden"), used)) void gort_gc_collect_waiting() {
  ensure_started();
  if (g_forked.load(std::memory_order_relaxed)) return;
  g_forced.fetch_add(1, std::memory_order_acq_rel);
  uint32_t target = g_want.fetch_add(1, std::memory_order_acq_rel) + 1;
  alloc::futex_wake(&g_want, 1);
  for (;;) {
    uint32_t d = g_done.load(std::memory_order_acquire);
    if (static_cast<int32_t>(d - target) >= 0) return;
    wait_or_stop(&g_done, d);
  }
}

GORT_EXPORT int gort_gc_set_percent(int percent) {
  ensure_started();
  if (percent < -1) percent = -1;
  if (g_forked.load(std::memory_order_relaxed)) percent = -1;
  int old = gcController.gcPercent.exchange(percent);
  int64_t held = static_cast<int64_t>(alloc::held_bytes());  // the mheap's lock: not busy
  {
    busy_lock g(g_stats_lock);  // against the collector's pacer_end_cycle
    pacer_set_goal(held);
  }
  return old;
}

GORT_EXPORT void gort_gc_stats(gort_gc_stats_t* out) {
  memset(out, 0, sizeof *out);
  {
    busy_lock g(g_stats_lock);
    out->cycles = g_st.cycles;
    out->heap_live = g_st.live;
    out->pause_total_ns = g_st.pause_total;
    out->pause_max_ns = g_st.pause_max;
    out->pause_last_ns[0] = g_st.pause_last[0];
    out->pause_last_ns[1] = g_st.pause_last[1];
    out->mark_ns = g_st.mark_ns;
    out->npauses = g_st.npauses;
    out->assist_ns = g_st.assist_ns;
    out->background_ns = g_st.bg_ns;
    out->heap_peak = g_st.peak_heap;
    out->last_heap_end = g_st.heap_end;
    out->last_goal = g_st.goal_end;
    out->limiter_cycles = gcController.limiterEnabledCycles;
  }
  int64_t h = g_heap_alloc.load(std::memory_order_relaxed);
  out->heap_alloc = h > 0 ? static_cast<uint64_t>(h) : 0;
  int64_t goal = gcController.heapGoal.load(std::memory_order_relaxed);
  out->heap_goal = goal == INT64_MAX ? 0 : static_cast<uint64_t>(goal);
  out->total_alloc = g_total_alloc.load(std::memory_order_relaxed);
  out->total_freed = g_total_freed.load(std::memory_order_relaxed);
  out->finalizers_run = finalizers_run_count();
  out->mark_task_objects = workers_objects();
  out->threads = nthreads();
  out->percent = gcController.gcPercent.load(std::memory_order_relaxed);
  int64_t trig = gcController.trigger.load(std::memory_order_relaxed);
  out->heap_trigger = trig == INT64_MAX ? 0 : static_cast<uint64_t>(trig);
  out->memory_limit = static_cast<uint64_t>(gcController.memoryLimit.load());
  out->held_bytes = alloc::held_bytes();
  out->cpu_limited = gcController.limiterOn.load() ? 1 : 0;
}

GORT_EXPORT size_t gort_gc_pauses(uint64_t* out, size_t n) {
  busy_lock g(g_stats_lock);
  uint64_t have = g_st.npauses < kPauseRing ? g_st.npauses : kPauseRing;
  if (n > have) n = have;
  for (size_t i = 0; i < n; i++) out[i] = g_st.pauses[(g_st.npauses - n + i) % kPauseRing];
  return n;
}

GORT_EXPORT int64_t gort_gc_set_memory_limit(int64_t bytes) {
  ensure_started();
  int64_t old = gcController.memoryLimit.load();
  if (bytes < 0) return old;  // a query, like debug.SetMemoryLimit(-1)
  if (g_forked.load(std::memory_order_relaxed)) return old;
  gcController.memoryLimit.store(bytes);
  alloc::scavenger_set_memory_limit(bytes);
  int64_t held = static_cast<int64_t>(alloc::held_bytes());  // the mheap's lock: not busy
  {
    busy_lock g(g_stats_lock);
    pacer_set_goal(held);
  }
  // Already over the new limit's goal: collect now, like Go does.
  if (bytes > 0 && pacer_should_trigger(g_heap_alloc.load(std::memory_order_relaxed)) &&
      !g_pending.exchange(true, std::memory_order_acq_rel))
    request_cycle();
  return old;
}
