// The pacer (Go's mgcpacer.go): when a cycle starts, how much the program
// may allocate before it ends, who pays the mark work, the soft memory limit
// and the GC CPU limiter.
//
// Quantities (all bytes of GC heap unless said otherwise):
//   heapLive    g_heap_alloc: GC objects allocated and not swept free (a
//               cache's span counts whole while the cache holds it).
//   heapMarked  what the last mark found live.
//   heapGoal    where the heap should be when this cycle's mark ends:
//               heapMarked + (heapMarked + stack and root scan) * GORT_GC/100,
//               at least 4 MiB, and at most what the memory limit leaves for
//               the GC heap (memoryLimitHeapGoal). GORT_GC=off: the limit's
//               goal alone, or none.
//   trigger     the heapLive at which a cycle starts: the goal minus the
//               runway, the allocation the program is expected to do while a
//               mark runs at the goal utilization (25% of the CPU):
//                 runway = consMark * (1 - u) / u * (last scan work),
//               consMark the allocation-to-scan rate ratio measured over the
//               last cycles (the largest of the last 4, as Go does, so that a
//               burst is not forgotten at once). Clamped between 70% and 95%
//               of the way from heapMarked to the goal.
//   scan work   bytes marked, counted in g_scan_work by every worker.
//
// Mark assist with credit (Go's gcAssistBytes): while marking, every span a
// thread takes into its cache (the span's free bytes) and every large
// object is charged to the thread's assist credit; a thread in debt first
// steals the background workers' surplus (bgScanCredit), then scans
// assistWorkPerByte × debt bytes of grey objects itself. assistWorkPerByte =
// (expected scan work - scan work done) / (heapGoal - heapLive), revised as
// the mark goes, so that the remaining work ends as the heap reaches the
// goal; once the scan work has passed its estimate, over the bytes left to
// the hard goal (1.1 x heapGoal) instead, as Go does. A task's credit is its own (in its g, as Go's
// is in the goroutine): it follows the task from M to M; a plain thread's is thread-local. One
// assist scans at most kAssistMaxWork bytes before it returns to the program (mark-assist tail
// latency, Go issues 27732 and 40225); a debt left over is paid at the next refill. A task past the
// goal that finds no grey work parks (Go's gcParkAssist): it naps for up to 20 ms and pays with the
// credit the workers make meanwhile; a plain thread returns at once (spinning cost binary-trees
// dearly).
//
// CPU limiter (Go's gcCPULimiter): a bucket filled by GC CPU time (the
// collector's thread and the assists) and drained by the rest of the CPU
// capacity (nprocs × wall time), capacity kLimiterBucketNs per P, active
// only while a memory limit is set (without one the pacer bounds GC CPU and
// a tiny heap's back-to-back cycles are normal). While it
// is full the limiter is on: assists stop, and the collector waits before it
// starts the next cycle until the bucket drains below half, so at most about
// half of the CPU goes to the GC over a window even when the live heap is
// above the memory limit (no death spiral, Go issues 58106, 59324); the heap
// then grows past the limit, which is soft.
//
// Threading: the pacer's state is written by the collector's thread (cycle
// start and end) and read with relaxed atomics by allocating threads; the
// credit is the task's (its g) or the plain thread's (thread-local).
#pragma once

#include <atomic>
#include <cstdint>

#include "gc/mark.h"

namespace gort::gc {

// Background marking's share of the Ps (Go's gcBackgroundUtilization):
// what the trigger's runway assumes and what gc/worker.h provides.
constexpr double kGoalUtilization = 0.25;

struct gcControllerState {
  std::atomic<int> gcPercent{100};      // GORT_GC; -1: off
  std::atomic<int64_t> memoryLimit{0};  // bytes; 0: none
  std::atomic<int64_t> heapGoal{4 << 20};
  std::atomic<int64_t> trigger{(4 << 20) * 7 / 10};
  // The goal the limit alone allows (refreshed on allocation); INT64_MAX: none.
  std::atomic<int64_t> limitGoal{INT64_MAX};
  std::atomic<int64_t> limitGoalAt{0};  // when limitGoal was computed (coarse ns)
  // alloc::held_bytes() as the collector read it just before its last stop
  // (pacer_note_held). Inside a stop the mheap's lock may belong to a
  // stopped thread, so the pacer's work there uses this instead.
  std::atomic<int64_t> heldAtStop{0};
  // Scan work per byte allocated, fixed point ×2^16.
  std::atomic<int64_t> assistWorkPerByte{0};
  std::atomic<int64_t> bgScanCredit{0};
  std::atomic<int64_t> scanWork{0};        // this cycle's scan work so far
  std::atomic<int64_t> assistTimeNs{0};    // this cycle's assist time
  std::atomic<int64_t> assistScanWork{0};  // this cycle's scan work done by assists
  std::atomic<bool> limiterOn{false};
  std::atomic<int64_t> heapMarked{0};
  // Collector thread only.
  int64_t lastScanWork = 4 << 20;
  int64_t stackScan = 0;  // bytes of stacks and roots scanned last cycle
  int64_t triggered = 0;  // heapLive when this cycle started
  int64_t markStartNs = 0;
  double consMark[4] = {0.25, 0.25, 0.25, 0.25};
  int64_t limiterBucket = 0, limiterFillCap = 0, limiterLastNs = 0;
  uint64_t limiterEnabledCycles = 0;
};
extern gcControllerState gcController;

// GORT_GC and GORT_MEMLIMIT (once, from ensure_started).
void pacer_init();
// Sweep termination (world stopped): a cycle starts at heapLive.
void pacer_start_cycle(int64_t heap_live);
// The collector's thread, during the mark: revise assistWorkPerByte.
void pacer_revise();
// Mark termination: live bytes, root and stack bytes scanned, CPU spent by
// the collector's thread; sets the next goal and trigger.
void pacer_end_cycle(int64_t live, int64_t roots, int64_t gc_thread_cpu_ns);
// Sets the goal and trigger from gcController.heapMarked (also when GORT_GC
// or the limit changes), with held = alloc::held_bytes() read by the caller
// outside busy regions and stops (it takes the mheap's lock).
void pacer_set_goal(int64_t held);
// The collector, right before it stops the world: reads held_bytes() for
// pacer_start_cycle and pacer_end_cycle, which run inside the stop.
void pacer_note_held();
// Drains up to budget objects of w counting the scan work done (and, for a
// background worker, its credit). Returns drain's result.
bool pacer_drain(gcWork& w, uint64_t budget, bool background, uint64_t* scanned = nullptr);
// An allocating thread took bytes into its cache or a large object during a
// mark: charge and, in debt, assist. Outside busy regions.
void pacer_charge(int64_t bytes);
// The caller's assist credit in bytes (negative: a debt): the running
// task's own, which moves with it, or the plain thread's.
int64_t pacer_assist_credit();
// A cycle is pending and not marking yet: yield to the collector if the
// heap is past the goal. Outside busy regions.
void pacer_wait_start();
// Whether heapLive has reached the trigger (GC or memory limit).
bool pacer_should_trigger(int64_t heap_live);
// The collector, before a cycle: wait while the CPU limiter is full.
void pacer_limiter_wait();
// Accounts GC CPU time to the limiter.
void pacer_limiter_note(int64_t gc_cpu_ns);
// Number of Ps (GOMAXPROCS under gort::run, else the CPU count).
int pacer_procs();

}  // namespace gort::gc
