// Metrics: every counter the runtime keeps, by name, in one call (Go's
// runtime/metrics), and GORT_DEBUG=metrics=1's print-out at exit.
//
// Design. The counters live where they are kept: the allocator's in the
// mheap, mcentrals and mcaches (gort_malloc_stats), the collector's in
// gcControllerState and the cycle statistics (gort_gc_stats), the
// scheduler's in sched (gort::sched_stats). This file owns no counter; it is
// a table from a stable name ("/gc/cycles:cycles", Go's /group/what:unit
// style) to a field of one of those three snapshots, so that a metric and the
// API that already reports it can never disagree: the metrics test reads
// both. A read takes each needed snapshot once (never one per name), so that
// metrics of one subsystem are consistent with each other.
//
// It sits in gc/, the top layer, because it reads all three layers; it uses
// only their public snapshot calls, none of which allocates, so a read is
// safe from any thread, inside a task, from a signal-free exit path.
//
// Adding a counter: add a field to the subsystem's stats struct, then a row
// here (name, description, cumulative, which snapshot, how to read it), then
// a line in docs/observability.md. Names are never reused for another meaning.
#include <gort/gc.h>
#include <gort/malloc.h>
#include <gort/metrics.h>
#include <gort/runtime.h>
#include <string.h>
#include <unistd.h>

#include <cstdio>

#include "alloc/options.h"

#define GORT_EXPORT extern "C" __attribute__((visibility("default")))

namespace gort::gc {
namespace {

// One snapshot of everything a read may need; `have` says which parts were
// taken.
struct snapshot {
  enum : unsigned { kMalloc = 1, kGC = 2, kSched = 4 };
  unsigned have = 0;
  gort_malloc_stats_t m;
  gort_gc_stats_t g;
  gort::SchedStats s;

  void need(unsigned part) {
    if (have & part) return;
    if (part == kMalloc) gort_malloc_stats(&m);
    if (part == kGC) gort_gc_stats(&g);
    if (part == kSched) s = gort::sched_stats();
    have |= part;
  }
};

struct metric {
  gort_metric_desc_t desc;
  unsigned part;
  uint64_t (*read)(const snapshot&);
};

#define M(field) [](const snapshot& x) -> uint64_t { return static_cast<uint64_t>(x.m.field); }
#define G(field) [](const snapshot& x) -> uint64_t { return static_cast<uint64_t>(x.g.field); }
#define S(field) [](const snapshot& x) -> uint64_t { return static_cast<uint64_t>(x.s.field); }

// The table. Order: heap, scavenger, collector, scheduler.
const metric kMetrics[] = {
    {{"/memory/heap/mapped:bytes", "heap address space committed read-write (not RSS)", 0},
     snapshot::kMalloc,
     M(heap_mapped)},
    {{"/memory/heap/reserved:bytes", "heap address space reserved, committed or not", 0},
     snapshot::kMalloc,
     M(heap_reserved)},
    {{"/memory/heap/inuse:bytes", "bytes in spans holding objects", 0},
     snapshot::kMalloc,
     M(heap_inuse)},
    {{"/memory/heap/free:bytes", "bytes in free spans still backed by memory", 0},
     snapshot::kMalloc,
     M(heap_free)},
    {{"/memory/heap/released:bytes", "bytes in free spans returned to the OS or never touched", 0},
     snapshot::kMalloc,
     M(heap_released)},
    {{"/memory/heap/objects:bytes",
      "bytes in live objects (small: their class size; large: their pages)", 0},
     snapshot::kMalloc,
     M(bytes_allocated)},
    {{"/memory/heap/cached:bytes", "bytes of free objects waiting in thread and transfer caches",
      0},
     snapshot::kMalloc,
     M(bytes_cached)},
    {{"/memory/metadata:bytes", "span and arena metadata mapped", 0},
     snapshot::kMalloc,
     M(metadata)},
    {{"/memory/heap/small-objects:objects", "small (<= 32 KiB) objects in the program's hands", 0},
     snapshot::kMalloc,
     M(small_inuse)},
    {{"/memory/heap/large-allocs:objects", "large allocations from the mheap", 1},
     snapshot::kMalloc,
     M(large_allocs)},
    {{"/memory/heap/large-frees:objects", "large blocks returned to the mheap", 1},
     snapshot::kMalloc,
     M(large_frees)},
    {{"/memory/thread-caches:caches", "live thread (or P) caches", 0},
     snapshot::kMalloc,
     M(thread_caches)},
    {{"/scavenger/released:bytes", "bytes the scavenger returned to the OS", 1},
     snapshot::kMalloc,
     M(scavenged)},
    {{"/scavenger/passes:passes", "scavenger passes", 1}, snapshot::kMalloc, M(scavenge_passes)},
    {{"/scavenger/running:bool", "1 while the background scavenger runs", 0},
     snapshot::kMalloc,
     M(scavenger_running)},
    {{"/gc/cycles:cycles", "completed collections", 1}, snapshot::kGC, G(cycles)},
    {{"/gc/heap/alloc:bytes", "bytes of GC objects allocated and not yet swept free", 0},
     snapshot::kGC,
     G(heap_alloc)},
    {{"/gc/heap/live:bytes", "bytes marked live by the last cycle", 0},
     snapshot::kGC,
     G(heap_live)},
    {{"/gc/heap/goal:bytes", "GC heap size at which the next cycle starts", 0},
     snapshot::kGC,
     G(heap_goal)},
    {{"/gc/heap/allocs:bytes", "bytes of GC objects ever allocated", 1},
     snapshot::kGC,
     G(total_alloc)},
    {{"/gc/heap/frees:bytes", "bytes of GC objects freed by sweeping", 1},
     snapshot::kGC,
     G(total_freed)},
    {{"/gc/pauses:pauses", "stop-the-world pauses", 1}, snapshot::kGC, G(npauses)},
    {{"/gc/pauses/total:nanoseconds", "time in stop-the-world pauses", 1},
     snapshot::kGC,
     G(pause_total_ns)},
    {{"/gc/pauses/max:nanoseconds", "the longest stop-the-world pause", 0},
     snapshot::kGC,
     G(pause_max_ns)},
    {{"/gc/mark/last:nanoseconds", "wall time of the last concurrent mark", 0},
     snapshot::kGC,
     G(mark_ns)},
    {{"/gc/mark/task-objects:objects", "objects scanned by mark work run as scheduler tasks", 1},
     snapshot::kGC,
     G(mark_task_objects)},
    {{"/gc/finalizers:calls", "finalizers run", 1}, snapshot::kGC, G(finalizers_run)},
    {{"/gc/threads:threads", "OS threads registered with the collector", 0},
     snapshot::kGC,
     G(threads)},
    {{"/sched/tasks/spawned:tasks", "tasks spawned", 1}, snapshot::kSched, S(tasks_spawned)},
    {{"/sched/tasks/exited:tasks", "tasks that returned", 1}, snapshot::kSched, S(tasks_exited)},
    {{"/sched/tasks/live:tasks", "tasks spawned and not yet exited", 0},
     snapshot::kSched,
     S(tasks_live)},
    {{"/sched/steals:tasks", "tasks moved between Ps by work stealing", 1},
     snapshot::kSched,
     S(steals)},
    {{"/sched/global-runq:tasks", "tasks taken from the global run queue", 1},
     snapshot::kSched,
     S(global_runq)},
    {{"/sched/m-parks:parks", "times an M went to sleep for lack of work", 1},
     snapshot::kSched,
     S(m_parks)},
    {{"/sched/stacks/live:stacks", "task stacks in use", 0}, snapshot::kSched, S(stacks_live)},
    {{"/sched/stacks/cached:stacks", "task stacks pooled for reuse", 0},
     snapshot::kSched,
     S(stacks_cached)},
    {{"/sched/retakes:retakes", "Ps sysmon took from Ms blocked in a call", 1},
     snapshot::kSched,
     S(retakes)},
    {{"/sched/preemptions:preemptions", "tasks that yielded because they were asked to", 1},
     snapshot::kSched,
     S(preemptions)},
    {{"/sched/preemptions/async:preemptions", "preemptions taken at the preemption signal", 1},
     snapshot::kSched,
     S(async_preemptions)},
};

#undef M
#undef G
#undef S

constexpr size_t kNumMetrics = sizeof kMetrics / sizeof kMetrics[0];

// The descriptions as one array, for gort_metrics_all.
struct desc_table {
  gort_metric_desc_t d[kNumMetrics];
  desc_table() : d() {
    for (size_t i = 0; i < kNumMetrics; i++) d[i] = kMetrics[i].desc;
  }
};
const desc_table kDescs;

const metric* find(const char* name) {
  if (name == nullptr) return nullptr;
  for (const metric& m : kMetrics)
    if (strcmp(m.desc.name, name) == 0) return &m;
  return nullptr;
}

// GORT_DEBUG=metrics=1: all of them at exit, where mstats prints (the
// allocator's exit hooks: its destructor and its _exit, which dash and many
// daemons' children leave through).
// Chained: other layers (the execution tracer) report at exit too.
void (*g_prev_exit_report)() = nullptr;

void print_at_exit() {
  if (alloc::g_options.metrics) gort_metrics_print(alloc::g_options.mstats_fd);
  if (g_prev_exit_report) g_prev_exit_report();
}

__attribute__((constructor)) void install_exit_report() {
  alloc::options_init();
  g_prev_exit_report = alloc::g_exit_report;
  alloc::g_exit_report = print_at_exit;
}

}  // namespace
}  // namespace gort::gc

using gort::gc::kNumMetrics;

GORT_EXPORT size_t gort_metrics_all(const gort_metric_desc_t** out) {
  if (out) *out = gort::gc::kDescs.d;
  return kNumMetrics;
}

GORT_EXPORT size_t gort_metrics_read(const char* const* names, uint64_t* values, size_t n) {
  gort::gc::snapshot x;
  size_t known = 0;
  for (size_t i = 0; i < n; i++) {
    const gort::gc::metric* m = gort::gc::find(names[i]);
    if (m == nullptr) {
      values[i] = 0;
      continue;
    }
    x.need(m->part);
    values[i] = m->read(x);
    known++;
  }
  return known;
}

GORT_EXPORT void gort_metrics_print(int fd) {
  gort::gc::snapshot x;
  for (const gort::gc::metric& m : gort::gc::kMetrics) {
    x.need(m.part);
    char line[160];
    int len = snprintf(line, sizeof line, "gort: metrics: %-40s %llu\n", m.desc.name,
                       static_cast<unsigned long long>(m.read(x)));
    if (len > 0 && write(fd, line, static_cast<size_t>(len)) < 0) return;
  }
}
