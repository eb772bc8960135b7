// Background mark workers (Go's gcBgMarkWorker and the worker half of
// mgcpacer.go's startCycle): who marks beside the program, and how much of
// the CPU that takes.
//
// The pacer assumes background marking takes 25% of the Ps
// (kGoalUtilization). Outside gort::run the collector's own thread is the
// worker: it drains flat out, one thread beside the program's (it competes
// for a core like any thread; on an idle core it marks at full speed, as
// Go's idle workers would).
//
// Under gort::run the Ps are the CPU budget, so marking runs as tasks and
// the collector's thread only watches. At the start of each mark,
// workers_start splits 0.25 × GOMAXPROCS the way Go does:
//   - dedicated workers: round(0.25 × P) tasks that drain without giving
//     their P up until there is no grey work (P = 4: one; P = 8: two);
//   - when rounding would be off by more than 30% (P = 1, 2, 3, 6, ...),
//     one dedicated worker fewer and a fractional worker for the rest: a
//     task that drains in slices of about a millisecond and, once its CPU
//     time passes its share of the time since the mark began, sleeps until
//     it is back under it. It keeps marking instead when its P has nothing
//     else to run (an idle P marks, as Go's idle-mode workers do).
// Both flush what they hold to the global list after every slice, so that
// mark assists and the other workers find grey work.
//
// The collector's thread meanwhile (workers_wait) revises the assist ratio
// every 100 µs and returns when no grey work is left and no worker is in a
// slice; then mark termination confirms it, as before. If no worker made
// progress for kStallNs while grey work waits (every P busy with tasks
// that do not yield, or the run ended), it drains that work itself, so a
// mark always finishes.
//
// A worker ends when its mark does (g_mark_cycle moves on at mark
// termination), so a worker of an earlier cycle never marks in a later one.
#pragma once

#include <atomic>
#include <cstdint>

namespace gort::gc {

class gcWork;

// The cycle whose mark phase is running; bumped at the start of the
// concurrent mark and again at mark termination.
extern std::atomic<uint64_t> g_mark_cycle;

// Starts this cycle's worker tasks if gort::run is in progress (false:
// none, the collector's thread marks). Resets the workers' CPU count.
bool workers_start(uint64_t cycle);
// The collector's thread, with workers started: returns when the grey work
// is gone (see above); drains into own on a stall.
void workers_wait(gcWork& own);
// CPU time the workers spent in this cycle's slices (background CPU).
int64_t workers_cpu_ns();
// Objects the worker tasks scanned, over the process's life (statistics).
uint64_t workers_objects();
// CPU time of the calling thread.
int64_t thread_cpu_ns();

}  // namespace gort::gc
