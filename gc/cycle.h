// The collector's cycle (Go's mgc.go): when a cycle starts, its phases, the
// heap goal, statistics and gctrace.
//
// One thread of the collector's own (not registered, never stopped, the
// stop signal blocked) runs every cycle and sweeps in the background
// between them. A cycle:
//   1. sweep termination: finish sweeping; stop the world; flush every
//      cache; start a task generation; set g_marking (barriers on, black
//      allocation); scan the stopped threads' stacks and registers; start
//      the world.
//   2. concurrent mark: root ranges, handles, what finalizable objects
//      reach, parked tasks; then drain grey objects beside the program:
//      this thread does, or under gort::run the worker tasks of
//      gc/worker.h while this thread watches.
//   3. mark termination: stop the world; take every thread's barrier work,
//      scan tasks not scanned yet, rescan root ranges (a backstop for
//      stores into them without the barrier); drain. If more than a small
//      budget of work turns up, start the world and go back to 2 (at most
//      twice; then finish in the stop). Flush every cache, clear g_marking,
//      make every span unswept, set the next goal; start the world.
//   4. sweep, lazily by allocating caches and in the background here.
// Trigger, goal, mark assists, the memory limit and the CPU limiter are the
// pacer's (gc/pacer.h): allocation slow paths ask pacer_should_trigger, the
// collector's thread calls pacer_start_cycle / pacer_end_cycle around the
// mark, drains through pacer_drain (counting scan work and background
// credit), and waits on the CPU limiter before it starts a cycle.
#pragma once

#include <atomic>
#include <cstdint>

namespace gort::gc {

// Starts the collector's thread (and the stop signal) once.
void ensure_started();
// From allocation slow paths, outside busy regions: starts a cycle when the
// heap reached the trigger.
void note_alloc_slow();

// Black allocation's share of the live heap (large objects; cache objects
// are counted per gcCache and summed by flush_all_caches).
extern std::atomic<uint64_t> g_large_marked_bytes;
extern uint64_t g_cache_marked_bytes;

// Go's clearpools: fn() runs on the collector's thread at the start of every
// cycle, after the previous sweep and before the first stop (so it may lock
// and free, but must not wait for a cycle). At most 4 hooks; false if full.
bool on_cycle_start(void (*fn)());
// Around sweep termination: in_stop() runs inside its stop, every cache
// flushed and before marking begins (it must not lock anything a program
// thread may hold outside a busy region, nor allocate); after() runs on the
// collector's thread once the world has started again (it may lock and
// free). The pools' P-owned private slots (pool/pool.cc). At most 2 pairs;
// false if full.
bool on_sweep_termination(void (*in_stop)(), void (*after)());
// fn runs on the collector's thread at every mark termination, the world
// stopped and every cache flushed, before sweeping is prepared (the mark
// bits are the cycle's final ones): GORT_DEBUG=poolcheck's heap check. It
// must not lock anything a program thread holds outside a busy region.
// At most 2 hooks; false if full.
bool on_mark_done(void (*fn)());

}  // namespace gort::gc
