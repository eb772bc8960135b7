// Background mark workers; see worker.h.
#include "gc/worker.h"

#include <time.h>

#include "alloc/sys.h"
#include "gc/heap.h"
#include "gc/mark.h"
#include "gc/pacer.h"
#include "gc/roots.h"
#include "runtime/gchooks.h"

namespace gort::gc {

std::atomic<uint64_t> g_mark_cycle{0};

namespace {

constexpr uint64_t kChunk = 512;         // objects per drain call (one busy region)
constexpr int64_t kSliceNs = 1000000;    // a worker flushes and looks around this often
constexpr int64_t kIdleNs = 100000;      // nothing grey: look again after this
constexpr int64_t kMaxNapNs = 10000000;  // a fractional worker's longest sleep
constexpr int64_t kStallNs = 20000000;   // no worker progress: the collector marks
constexpr int64_t kWatchNs = 100000;     // the collector's look at the workers
constexpr uint64_t kPermille = 1000;     // a worker's share, packed in its argument
constexpr uintptr_t kShareBits = 12;     // low bits of the argument: the share

std::atomic<int> g_in_slice{0};        // workers between taking grey work and flushing it
std::atomic<int64_t> g_cpu{0};         // this cycle's worker CPU
std::atomic<uint64_t> g_objects{0};    // objects scanned by workers, ever
std::atomic<int64_t> g_mark_start{0};  // when this cycle's workers started (ns)

struct slice {
  uint64_t objects = 0;
  bool empty = false;  // no grey work was left
  bool ended = false;  // the mark is over (or this thread is not a marker)
  int64_t cpu = 0;
};

// Drains in chunks for about kSliceNs, until no grey work is left, or until
// the mark ends; then gives what it holds to the global list.
slice run_slice() {
  slice r;
  gcThread* t = tl_gc.rec;  // the M's: re-read every slice, the task may move
  if (!t) {
    r.ended = true;
    return r;
  }
  g_in_slice.fetch_add(1, std::memory_order_acq_rel);
  int64_t c0 = thread_cpu_ns(), t0 = alloc::nanotime();
  for (;;) {
    if (!mark_busy_enter()) {
      r.ended = true;
      break;
    }
    uint64_t n = 0;
    r.empty = pacer_drain(t->work, kChunk, true, &n);
    r.objects += n;
    bool done = r.empty || alloc::nanotime() - t0 >= kSliceNs;
    if (done) t->work.flush();
    busy_exit();
    if (done) break;
  }
  g_in_slice.fetch_sub(1, std::memory_order_acq_rel);
  r.cpu = thread_cpu_ns() - c0;
  g_cpu.fetch_add(r.cpu, std::memory_order_relaxed);
  g_objects.fetch_add(r.objects, std::memory_order_relaxed);
  return r;
}

// A worker task: share is its part of one P (1: dedicated).
void worker(void* arg) {
  uintptr_t a = reinterpret_cast<uintptr_t>(arg);
  uint64_t cycle = a >> kShareBits;
  double share = static_cast<double>(a & ((uintptr_t{1} << kShareBits) - 1)) / kPermille;
  int64_t mine = 0;   // CPU of the slices that count against the share
  bool idle = false;  // this slice is an idle P's (it does not count)
  while (g_marking.load(std::memory_order_acquire) &&
         g_mark_cycle.load(std::memory_order_acquire) == cycle) {
    slice r = run_slice();
    if (r.ended) return;
    if (!idle) mine += r.cpu;
    idle = false;
    if (r.empty && r.objects == 0) {
      rt::gchook::sleep(kIdleNs);
      continue;
    }
    if (share >= 1) continue;  // dedicated: keeps its P while there is work
    int64_t elapsed = alloc::nanotime() - g_mark_start.load(std::memory_order_relaxed);
    int64_t ahead = mine - static_cast<int64_t>(share * static_cast<double>(elapsed));
    if (ahead <= 0) continue;
    if (!rt::gchook::others_runnable()) {
      idle = true;  // the P would idle: mark on
      continue;
    }
    int64_t nap = static_cast<int64_t>(static_cast<double>(ahead) / share);
    rt::gchook::sleep(nap < kIdleNs ? kIdleNs : nap > kMaxNapNs ? kMaxNapNs : nap);
  }
}

void spawn_worker(uint64_t cycle, double share, bool* any) {
  uintptr_t permille = static_cast<uintptr_t>(share * kPermille + 0.5);
  if (permille == 0) return;
  if (permille > kPermille) permille = kPermille;
  uintptr_t arg = static_cast<uintptr_t>(cycle) << kShareBits | permille;
  if (rt::gchook::spawn(worker, reinterpret_cast<void*>(arg))) *any = true;
}

}  // namespace

int64_t thread_cpu_ns() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

bool workers_start(uint64_t cycle) {
  g_cpu.store(0, std::memory_order_relaxed);
  int procs = rt::gchook::procs();
  if (procs <= 0) return false;
  // Go's split (mgcpacer.go startCycle): whole dedicated workers when
  // rounding is off by at most 30%, else one fewer and a fractional rest.
  double total = procs * kGoalUtilization;
  int dedicated = static_cast<int>(total + 0.5);
  double fractional = 0;
  double err = static_cast<double>(dedicated) / total - 1;
  if (err < -0.3 || err > 0.3) {
    if (dedicated > total) dedicated--;
    fractional = total - dedicated;
  }
  g_mark_start.store(alloc::nanotime(), std::memory_order_relaxed);
  bool any = false;
  for (int i = 0; i < dedicated; i++) spawn_worker(cycle, 1.0, &any);
  if (fractional > 0) spawn_worker(cycle, fractional, &any);
  return any;
}

void workers_wait(gcWork& own) {
  uint64_t seen = g_objects.load(std::memory_order_relaxed);
  int64_t progress_at = alloc::nanotime();
  for (;;) {
    pacer_revise();
    bool work = work_available();
    if (!work && g_in_slice.load(std::memory_order_acquire) == 0) return;
    if (rt::gchook::procs() == 0) return;  // the run ended: the caller drains
    uint64_t objects = g_objects.load(std::memory_order_relaxed);
    int64_t now = alloc::nanotime();
    if (objects != seen) {
      seen = objects;
      progress_at = now;
    } else if (work && now - progress_at > kStallNs) {
      // Every P busy elsewhere: mark here rather than let the mark stall.
      pacer_drain(own, 1 << 12, true);
      own.flush();
      continue;
    }
    timespec ts = {0, kWatchNs};
    nanosleep(&ts, nullptr);
  }
}

int64_t workers_cpu_ns() {
  return g_cpu.load(std::memory_order_relaxed);
}

uint64_t workers_objects() {
  return g_objects.load(std::memory_order_relaxed);
}

}  // namespace gort::gc
