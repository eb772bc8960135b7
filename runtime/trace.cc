// The execution tracer: GORT_TRACE=file.json, gort_trace_start/stop (Go's
// runtime/trace.go and `go tool trace`, written as Chrome trace-event JSON
// that Perfetto's UI and chrome://tracing open).
//
// Recording. Like Go's tracer, events are small fixed-size binary records
// written into per-P buffers by whoever holds the P, so the hot path takes no
// lock and shares no cache line with other Ps: an M writes only into the
// buffer of the P it holds (a P has one holder at a time, and the hand-over
// of a P orders its events), and events made without a P (sysmon, the
// collector's thread, a task back from a blocking call that lost its P,
// the scavenger, threads outside the scheduler) go into one shared buffer
// whose slots are claimed with an atomic add. Every hook in the runtime is an
// inline test of g_on (runtime/trace.h): when no trace is recorded that is
// one load and one branch that is never taken, and the recording code stays
// out of line. Unlike Go, which streams its buffers to a reader goroutine,
// gort keeps each buffer as a ring of GORT_TRACE_BUFFER bytes (4 MiB, 128 Ki
// events, by default) and formats nothing until the trace stops: the newest
// events win when a ring wraps, as in Go's flight recorder, so the cost of
// tracing is bounded in memory and in time per event, and a long run keeps
// its last seconds. When a ring has wrapped the trace starts at the oldest
// event every wrapped ring still holds, so no track shows a hole that the
// others do not.
//
// Event. 32 bytes: a time stamp (the CPU's time-stamp counter, calibrated
// against CLOCK_MONOTONIC at start and stop; Go's cputicks), the task id,
// one argument, the OS thread id, the P (or -1), the type and a reason.
// Task switches record two events (stop, start), so a task's run on a P is
// the slice between them, and why it stopped is the stop's reason: blocked
// (the task's waitreason: "chan receive", "select", "sync.Mutex.Lock",
// "sleep", "IO wait (read)"...), yielded, preempted, exited, or entered a
// blocking call.
//
// Publishing. A writer announces itself on its buffer (writers) and only
// then reads g_on again; stop clears g_on and waits for every buffer's
// writers to reach zero, after which no writer is inside any buffer and
// stop may read and unmap them. (Go's tracer has the same handshake through
// each M's trace seqlock.) On the shared buffer both sides are sequentially
// consistent read-modify-writes. A P's buffer has one writer at a time, so
// there the writer announces itself with a plain store and stop pays for the
// fence with membarrier(2), which runs a full fence on every thread of the
// process (an asymmetric Dekker); kernels without it get the RMWs. Nothing
// here takes a lock a stopped-the-world thread could hold: the collector
// records its stop while every other thread is parked in its signal
// handler, maybe in the middle of an event.
//
// Where the hooks sit. A task's stop is recorded in switch_out, which every
// way of stopping goes through with its reason (gopark, goyield, goexit,
// gopreempt): a hook in those small functions would cost them a stack frame
// (a call on a rare path still makes the compiler save registers on every
// path), where switch_out has one anyway.
//
// Formatting (at stop or exit). Events of every buffer are merged by time
// and replayed through a small state machine per track: one track per P
// ("Ps"), one per OS thread ("Threads": Ms by id, others by name), and the
// collector's cycle, phases and stops of the world ("GC"). Slices are
// written as complete ("X") events, so beginnings and ends always balance;
// a slice still open when the trace stops ends there. Nesting on a thread:
// a task's run holds its blocking calls, mark assists and sweeps; an assist
// interrupted by a switch (it may yield) is closed at the switch and opened
// again when the task runs. Writing happens in the calling thread (a task
// calling gort_trace_stop leaves its P to others meanwhile: it is a
// blocking call).
//
// Process life. GORT_TRACE is read by a constructor; "%p" in the path is
// the process id. The trace is written at exit through the allocator's exit
// report (which both exit() and _exit() reach). A fork child stops tracing
// without writing: its copy of the buffers is the parent's.
#include "runtime/trace.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <unordered_map>
#include <vector>

#include "alloc/lock.h"
#include "alloc/options.h"
#include "alloc/scavenger.h"
#include "alloc/sys.h"
#include "gort/runtime.h"
#include "gort/trace.h"
#include "runtime/maxprocs.h"
#include "runtime/proc.h"

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

#define GORT_EXPORT extern "C" __attribute__((visibility("default")))

namespace gort::rt::trace {

std::atomic<bool> g_on{false};

namespace {

enum evType : uint8_t {
  evGoStart,       // goid starts running on p; arg: M id
  evGoStop,        // goid stops; reason: stopReason; arg: waitreason (const char*)
  evSyscallEnter,  // goid enters a blocking call, leaving p
  evSyscallExit,   // goid is back; p: the P it runs on now, or -1; arg: M id
  evGoCreate,      // goid made; arg: the creating task's id (0: a thread)
  evGoUnblock,     // goid readied; arg: the readying task's id
  evProcRetake,    // arg: the P sysmon took from an M in a call
  evGCPhase,       // reason: gcPhase
  evSTWBegin,
  evSTWEnd,
  evAssistBegin,
  evAssistEnd,
  evSweepBegin,
  evSweepEnd,
  evScavengeBegin,
  evScavengeEnd,  // arg: bytes released
};

struct event {
  uint64_t ts;    // time-stamp counter
  uint64_t goid;  // the task (0: none)
  uint64_t arg;
  int32_t tid;  // OS thread
  int16_t p;    // P the event happened on, -1 if none
  uint8_t type;
  uint8_t reason;
};
static_assert(sizeof(event) == 32);

// A ring of events. P buffers: one writer at a time (the P's holder), pos
// written with plain relaxed stores. The shared buffer: slots claimed with
// fetch_add. ev is mapped by the first writer after a start.
struct alignas(64) tracebuf {
  std::atomic<event*> ev{nullptr};
  std::atomic<uint64_t> pos{0};
  std::atomic<uint32_t> writers{0};
};

constexpr uint64_t kDefaultBufferBytes = 4 << 20;
constexpr uint64_t kMinBufferBytes = 64 << 10;
constexpr uint64_t kMaxBufferBytes = 1ull << 30;

tracebuf g_pbufs[kMaxProcsLimit];
tracebuf g_global;
uint64_t g_cap = 0;  // events per ring (a power of two), fixed while tracing

// The session (g_ctl): start and stop serialise on it.
constinit alloc::mutex g_ctl;
int g_fd = -1;
char g_path[4096];
uint64_t g_tsc0 = 0;
int64_t g_ns0 = 0;
bool g_forked_child = false;
// membarrier(2) is there: P-buffer writers announce themselves with a plain
// store and stop pays for the fence (see record). Fixed at the first start.
bool g_asym = false;
bool g_asym_checked = false;
int g_trace_pid = 0;  // the process that started the trace (a vfork child is not it)
bool g_atfork_done = false;

inline uint64_t ticks() {
#if defined(__x86_64__)
  return __rdtsc();
#else
  return static_cast<uint64_t>(alloc::nanotime());
#endif
}

inline int32_t thread_id(m* mp) {
  return mp && mp->procid ? mp->procid : static_cast<int32_t>(syscall(SYS_gettid));
}

// Maps a ring, its pages faulted in at once: touching them one by one as
// events arrive costs a fault per 128 events (about 10 us each on a VM).
event* map_ring() {
  void* m = mmap(nullptr, g_cap * sizeof(event), PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  return m == MAP_FAILED ? nullptr : static_cast<event*>(m);
}

event* ring(tracebuf* b) {
  event* e = b->ev.load(std::memory_order_acquire);
  if (e) return e;
  e = map_ring();
  if (!e) return nullptr;  // out of memory: this buffer records nothing
  event* expect = nullptr;
  if (!b->ev.compare_exchange_strong(expect, e, std::memory_order_acq_rel)) {
    munmap(e, g_cap * sizeof(event));
    return expect;
  }
  return e;
}

// The writer's side of the handshake with stop: announce on the buffer,
// then read g_on. A P's buffer has one writer at a time, so with membarrier
// the announcement is a plain store and a compiler fence: stop's
// membarrier makes every running thread execute a full fence, so either
// stop sees writers set or the writer sees g_on clear (an asymmetric
// Dekker, as in Folly's asymmetricHeavyBarrier). The shared buffer, and
// kernels without membarrier, use sequentially consistent read-modify-writes.
void record(m* mp, uint8_t type, uint8_t reason, uint64_t goid, uint64_t arg) {
  p* pp = mp ? mp->pp : nullptr;
  tracebuf* b = pp ? &g_pbufs[pp->id] : &g_global;
  bool asym = pp && g_asym;
  if (asym) {
    b->writers.store(1, std::memory_order_relaxed);
    std::atomic_signal_fence(std::memory_order_seq_cst);
  } else {
    b->writers.fetch_add(1, std::memory_order_seq_cst);
  }
  if (g_on.load(std::memory_order_seq_cst)) {
    if (event* e = ring(b)) {
      uint64_t i;
      if (pp) {
        i = b->pos.load(std::memory_order_relaxed);
        b->pos.store(i + 1, std::memory_order_relaxed);
      } else {
        i = b->pos.fetch_add(1, std::memory_order_relaxed);
      }
      event& ev = e[i & (g_cap - 1)];
      ev.ts = ticks();
      ev.goid = goid;
      ev.arg = arg;
      ev.tid = thread_id(mp);
      ev.p = pp ? static_cast<int16_t>(pp->id) : int16_t{-1};
      ev.type = type;
      ev.reason = reason;
    }
  }
  if (asym)
    b->writers.store(0, std::memory_order_release);
  else
    b->writers.fetch_sub(1, std::memory_order_release);
}

uint64_t curgoid(m* mp) {
  return mp && mp->curg ? mp->curg->goid : 0;
}

void record_here(uint8_t type, uint8_t reason, uint64_t arg) {
  m* mp = getm();
  record(mp, type, reason, curgoid(mp), arg);
}

void scavenge_hook(bool begin, size_t released) {
  if (on()) record_here(begin ? evScavengeBegin : evScavengeEnd, 0, released);
}

}  // namespace

// ---------------------------------------------------------------- hooks

void gostart_slow(m* mp, g* gp) {
  record(mp, evGoStart, 0, gp->goid, static_cast<uint64_t>(mp->id));
}

void gostop_slow(m* mp, g* gp, stopReason why) {
  const char* wr = why == kStopBlocked ? gp->waitreason : nullptr;
  record(mp, evGoStop, why, gp->goid, reinterpret_cast<uintptr_t>(wr));
}

void syscall_enter_slow(m* mp, g* gp) {
  record(mp, evSyscallEnter, 0, gp->goid, static_cast<uint64_t>(mp->id));
}

void syscall_exit_slow(m* mp, g* gp) {
  record(mp, evSyscallExit, 0, gp->goid, static_cast<uint64_t>(mp->id));
}

void gocreate_slow(g* gp) {
  m* mp = getm();
  record(mp, evGoCreate, 0, gp->goid, curgoid(mp));
}

void gounblock_slow(g* gp) {
  m* mp = getm();
  record(mp, evGoUnblock, 0, gp->goid, curgoid(mp));
}

void proc_retake_slow(p* pp) {
  record(getm(), evProcRetake, 0, 0, static_cast<uint64_t>(pp->id));
}

void gc_phase_slow(gcPhase ph) {
  record_here(evGCPhase, ph, 0);
}

void stw_slow(bool begin) {
  record_here(begin ? evSTWBegin : evSTWEnd, 0, 0);
}

void assist_slow(bool begin) {
  record_here(begin ? evAssistBegin : evAssistEnd, 0, 0);
}

void sweep_slow(bool begin) {
  record_here(begin ? evSweepBegin : evSweepEnd, 0, 0);
}

bool parse_buffer_size(const char* s, uint64_t* bytes, const char** why) {
  *why = "expected a size in bytes with an optional unit B, KiB, MiB or GiB, from 64KiB to 1GiB";
  if (!s || !*s) return false;
  uint64_t v = 0;
  const char* c = s;
  for (; *c >= '0' && *c <= '9'; c++) {
    if (v > (kMaxBufferBytes << 1)) return false;
    v = v * 10 + static_cast<uint64_t>(*c - '0');
  }
  if (c == s) return false;
  int shift = -1;
  if (!*c || strcmp(c, "B") == 0) shift = 0;
  if (strcmp(c, "KiB") == 0) shift = 10;
  if (strcmp(c, "MiB") == 0) shift = 20;
  if (strcmp(c, "GiB") == 0) shift = 30;
  if (shift < 0 || v > (kMaxBufferBytes >> shift)) return false;
  v <<= shift;
  if (v < kMinBufferBytes) return false;
  *bytes = v;
  return true;
}

// ---------------------------------------------------------------- formatting

namespace {

// Buffered output to the trace file; remembers the first write error.
struct jsonOut {
  explicit jsonOut(int f) : fd(f) {}
  int fd;
  int err = 0;
  size_t n = 0;
  bool first = true;
  char buf[1 << 16];
  void put(const char* s, size_t len) {
    if (n + len > sizeof buf) flush();
    if (len > sizeof buf) {
      write_all(s, len);
      return;
    }
    memcpy(buf + n, s, len);
    n += len;
  }
  void puts(const char* s) { put(s, strlen(s)); }
  void printf(const char* fmt, ...) __attribute__((format(printf, 2, 3))) {
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (len > 0) put(tmp, std::min(static_cast<size_t>(len), sizeof tmp - 1));
  }
  void str(const char* s) {  // a JSON string
    put("\"", 1);
    for (; *s; s++) {
      unsigned char c = static_cast<unsigned char>(*s);
      if (c == '"' || c == '\\') {
        char e[2] = {'\\', static_cast<char>(c)};
        put(e, 2);
      } else if (c < 0x20) {
        printf("\\u%04x", c);
      } else {
        put(s, 1);
      }
    }
    put("\"", 1);
  }
  void write_all(const char* s, size_t len) {
    while (len > 0 && !err) {
      ssize_t w = write(fd, s, len);
      if (w < 0) {
        if (errno == EINTR) continue;
        err = errno;
        return;
      }
      s += w;
      len -= static_cast<size_t>(w);
    }
  }
  void flush() {
    write_all(buf, n);
    n = 0;
  }
  // Starts the next element of traceEvents.
  void next() {
    if (!first) put(",\n", 2);
    first = false;
  }
};

constexpr int kPidPs = 1, kPidThreads = 2, kPidGC = 3;
constexpr int kTidGCPhases = 1, kTidGCSTW = 2;

const char* phase_name(int ph) {
  switch (ph) {
    case kGCSweepTermination:
      return "sweep termination";
    case kGCMark:
      return "mark";
    case kGCMarkTermination:
      return "mark termination";
    case kGCSweep:
      return "sweep";
  }
  return "off";
}

void stop_text(const event& e, char* out, size_t len) {
  switch (e.reason) {
    case kStopBlocked: {
      const char* wr = reinterpret_cast<const char*>(e.arg);
      snprintf(out, len, "blocked: %s", wr ? wr : "waiting");
      return;
    }
    case kStopYield:
      snprintf(out, len, "yielded");
      return;
    case kStopPreempted:
      snprintf(out, len, "preempted");
      return;
    case kStopExit:
      snprintf(out, len, "exited");
      return;
    case kStopSyscall:
      snprintf(out, len, "syscall");
      return;
    case kStopSyscallNoP:
      snprintf(out, len, "syscall returned, P lost: to the global run queue");
      return;
  }
  snprintf(out, len, "stopped");
}

struct slice {
  bool open = false;
  uint64_t start = 0;  // ns since the trace started
  uint64_t goid = 0;
  int64_t mid = -1;
};

// One track's open slices: at most one of each kind (task, call, assist),
// sweeps counted (they do not nest in practice, but a count is cheap).
struct track {
  slice task, syscall, assist, sweep, scavenge;
  int64_t mid = -1;  // threads: the M this is, once seen
};

struct formatter {
  formatter(jsonOut& o, uint64_t t0, double npt) : out(o), tsc0(t0), ns_per_tick(npt) {}
  jsonOut& out;
  uint64_t tsc0;
  double ns_per_tick;
  uint64_t end_ns = 0;
  std::unordered_map<int, track> ps, threads;
  std::unordered_map<uint64_t, bool> in_assist;  // tasks inside a mark assist
  slice cycle, phase, stw;
  int cur_phase = kGCOff;
  uint64_t ncycles = 0;

  uint64_t ns(uint64_t ts) const {
    return ts <= tsc0 ? 0 : static_cast<uint64_t>(static_cast<double>(ts - tsc0) * ns_per_tick);
  }

  void x(int pid, int tid, const char* name, const char* cat, uint64_t start, uint64_t end,
         const char* args) {
    out.next();
    if (end < start) end = start;
    uint64_t dur = end - start;
    out.printf("{\"ph\":\"X\",\"pid\":%d,\"tid\":%d,\"ts\":%llu.%03llu,\"dur\":%llu.%03llu,", pid,
               tid, static_cast<unsigned long long>(start / 1000),
               static_cast<unsigned long long>(start % 1000),
               static_cast<unsigned long long>(dur / 1000),
               static_cast<unsigned long long>(dur % 1000));
    out.puts("\"name\":");
    out.str(name);
    out.printf(",\"cat\":\"%s\",\"args\":{%s}}", cat, args);
  }

  void instant(int pid, int tid, const char* name, const char* cat, uint64_t at, const char* args) {
    out.next();
    out.printf("{\"ph\":\"i\",\"s\":\"t\",\"pid\":%d,\"tid\":%d,\"ts\":%llu.%03llu,", pid, tid,
               static_cast<unsigned long long>(at / 1000),
               static_cast<unsigned long long>(at % 1000));
    out.puts("\"name\":");
    out.str(name);
    out.printf(",\"cat\":\"%s\",\"args\":{%s}}", cat, args);
  }

  void close_task(int pid, int tid, slice& s, uint64_t at, const char* why) {
    if (!s.open) return;
    char name[48], args[256], esc[160];
    snprintf(name, sizeof name, "task %llu", static_cast<unsigned long long>(s.goid));
    // why comes from the runtime's own strings; quotes would still break JSON.
    size_t j = 0;
    for (const char* c = why; *c && j + 2 < sizeof esc; c++) {
      if (*c == '"' || *c == '\\') esc[j++] = '\\';
      esc[j++] = *c;
    }
    esc[j] = 0;
    snprintf(args, sizeof args, "\"goid\":%llu,\"m\":%lld,\"end\":\"%s\"",
             static_cast<unsigned long long>(s.goid), static_cast<long long>(s.mid), esc);
    x(pid, tid, name, "task", s.start, at, args);
    s.open = false;
  }

  void close_simple(int pid, int tid, slice& s, uint64_t at, const char* name, const char* cat,
                    const char* args = "") {
    if (!s.open) return;
    x(pid, tid, name, cat, s.start, at, args);
    s.open = false;
  }

  void begin(slice& s, uint64_t at, uint64_t goid, int64_t mid = -1) {
    s.open = true;
    s.start = at;
    s.goid = goid;
    s.mid = mid;
  }

  // A task's run ends on a track: what it holds open ends with it.
  void end_run(int pid, int tid, track& t, uint64_t at, const char* why) {
    close_simple(pid, tid, t.sweep, at, "sweep", "gc");
    close_simple(pid, tid, t.assist, at, "mark assist", "gc");
    close_simple(pid, tid, t.syscall, at, "syscall", "syscall");
    close_task(pid, tid, t.task, at, why);
  }

  void start_run(int pid, int tid, track& t, uint64_t at, uint64_t goid, int64_t mid,
                 const char* lost) {
    end_run(pid, tid, t, at, lost);
    begin(t.task, at, goid, mid);
    auto it = in_assist.find(goid);
    if (it != in_assist.end() && it->second) begin(t.assist, at, goid);
  }

  void event_(const event& e) {
    uint64_t at = ns(e.ts);
    track* pt = e.p >= 0 ? &ps[e.p] : nullptr;
    track& tt = threads[e.tid];
    char why[160], name[64], args[128];
    switch (e.type) {
      case evGoStart:
        tt.mid = static_cast<int64_t>(e.arg);
        if (pt)
          start_run(kPidPs, e.p, *pt, at, e.goid, tt.mid, "unknown (the trace lost its stop)");
        start_run(kPidThreads, e.tid, tt, at, e.goid, tt.mid, "unknown (the trace lost its stop)");
        break;
      case evGoStop:
        stop_text(e, why, sizeof why);
        if (pt) end_run(kPidPs, e.p, *pt, at, why);
        end_run(kPidThreads, e.tid, tt, at, why);
        break;
      case evSyscallEnter:
        tt.mid = static_cast<int64_t>(e.arg);
        if (pt) end_run(kPidPs, e.p, *pt, at, "syscall");
        close_simple(kPidThreads, e.tid, tt.assist, at, "mark assist", "gc");
        if (!tt.task.open) begin(tt.task, at, e.goid, tt.mid);
        begin(tt.syscall, at, e.goid);
        break;
      case evSyscallExit:
        tt.mid = static_cast<int64_t>(e.arg);
        snprintf(args, sizeof args, "\"goid\":%llu", static_cast<unsigned long long>(e.goid));
        close_simple(kPidThreads, e.tid, tt.syscall, at, "syscall", "syscall", args);
        if (pt) {
          start_run(kPidPs, e.p, *pt, at, e.goid, tt.mid, "unknown (the trace lost its stop)");
          if (!tt.task.open) begin(tt.task, at, e.goid, tt.mid);
        } else {
          event s = e;
          s.reason = kStopSyscallNoP;
          stop_text(s, why, sizeof why);
          end_run(kPidThreads, e.tid, tt, at, why);
        }
        break;
      case evGoCreate:
      case evGoUnblock:
        snprintf(name, sizeof name, "%s task %llu", e.type == evGoCreate ? "create" : "ready",
                 static_cast<unsigned long long>(e.goid));
        snprintf(args, sizeof args, "\"goid\":%llu,\"by\":%llu",
                 static_cast<unsigned long long>(e.goid), static_cast<unsigned long long>(e.arg));
        if (pt)
          instant(kPidPs, e.p, name, "sched", at, args);
        else
          instant(kPidThreads, e.tid, name, "sched", at, args);
        break;
      case evProcRetake:
        snprintf(args, sizeof args, "\"p\":%llu", static_cast<unsigned long long>(e.arg));
        instant(kPidPs, static_cast<int>(e.arg), "retake P from a blocking call", "sched", at,
                args);
        break;
      case evGCPhase:
        close_simple(kPidGC, kTidGCPhases, phase, at, phase_name(cur_phase), "gc");
        if (e.reason != kGCOff && !cycle.open) {
          ncycles++;
          begin(cycle, at, 0);
        }
        cur_phase = e.reason;
        if (e.reason == kGCOff) {
          snprintf(name, sizeof name, "GC %llu", static_cast<unsigned long long>(ncycles));
          close_simple(kPidGC, kTidGCPhases, cycle, at, name, "gc");
        } else {
          begin(phase, at, 0);
        }
        break;
      case evSTWBegin:
        begin(stw, at, 0);
        break;
      case evSTWEnd:
        snprintf(name, sizeof name, "stop-the-world (%s)", phase_name(cur_phase));
        close_simple(kPidGC, kTidGCSTW, stw, at, name, "gc");
        break;
      case evAssistBegin:
        if (e.goid) in_assist[e.goid] = true;
        if (pt) begin(pt->assist, at, e.goid);
        begin(tt.assist, at, e.goid);
        break;
      case evAssistEnd:
        if (e.goid) in_assist.erase(e.goid);
        if (pt) close_simple(kPidPs, e.p, pt->assist, at, "mark assist", "gc");
        close_simple(kPidThreads, e.tid, tt.assist, at, "mark assist", "gc");
        break;
      case evSweepBegin:
        if (pt) begin(pt->sweep, at, e.goid);
        begin(tt.sweep, at, e.goid);
        break;
      case evSweepEnd:
        if (pt) close_simple(kPidPs, e.p, pt->sweep, at, "sweep", "gc");
        close_simple(kPidThreads, e.tid, tt.sweep, at, "sweep", "gc");
        break;
      case evScavengeBegin:
        begin(tt.scavenge, at, 0);
        break;
      case evScavengeEnd:
        snprintf(args, sizeof args, "\"released_bytes\":%llu",
                 static_cast<unsigned long long>(e.arg));
        close_simple(kPidThreads, e.tid, tt.scavenge, at, "scavenge", "scavenger", args);
        break;
    }
  }

  void finish() {
    const char* still = "running when the trace stopped";
    for (auto& [id, t] : ps) {
      end_run(kPidPs, id, t, end_ns, still);
    }
    for (auto& [tid, t] : threads) {
      close_simple(kPidThreads, tid, t.scavenge, end_ns, "scavenge", "scavenger");
      end_run(kPidThreads, tid, t, end_ns, still);
    }
    close_simple(kPidGC, kTidGCSTW, stw, end_ns, "stop-the-world", "gc");
    close_simple(kPidGC, kTidGCPhases, phase, end_ns, phase_name(cur_phase), "gc");
    close_simple(kPidGC, kTidGCPhases, cycle, end_ns, "GC (unfinished)", "gc");
  }

  void meta(int pid, int tid, const char* what, const char* name, int sort) {
    out.next();
    out.printf("{\"ph\":\"M\",\"pid\":%d,\"tid\":%d,\"name\":\"%s\",\"args\":{\"name\":", pid, tid,
               what);
    out.str(name);
    out.puts("}}");
    out.next();
    out.printf(
        "{\"ph\":\"M\",\"pid\":%d,\"tid\":%d,\"name\":\"%s_sort_index\",\"args\":{"
        "\"sort_index\":%d}}",
        pid, tid, what, sort);
  }

  void names() {
    meta(kPidPs, 0, "process", "Ps (logical processors)", 1);
    meta(kPidThreads, 0, "process", "Threads (Ms and others)", 2);
    meta(kPidGC, 0, "process", "GC", 3);
    char name[96];
    for (auto& [id, t] : ps) {
      snprintf(name, sizeof name, "P%d", id);
      meta(kPidPs, id, "thread", name, id);
    }
    for (auto& [tid, t] : threads) {
      if (t.mid >= 0) {
        snprintf(name, sizeof name, "M%lld (tid %d)", static_cast<long long>(t.mid), tid);
      } else {
        char path[64], comm[32] = "thread";
        snprintf(path, sizeof path, "/proc/self/task/%d/comm", tid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
          ssize_t n = read(fd, comm, sizeof comm - 1);
          close(fd);
          comm[n > 0 ? n : 0] = 0;
          if (n > 0 && comm[n - 1] == '\n') comm[n - 1] = 0;
          if (!comm[0]) strcpy(comm, "thread");
        }
        snprintf(name, sizeof name, "%s (tid %d)", comm, tid);
      }
      meta(kPidThreads, tid, "thread", name, t.mid >= 0 ? static_cast<int>(t.mid) : 1000000);
    }
    meta(kPidGC, kTidGCPhases, "thread", "cycles and phases", 1);
    meta(kPidGC, kTidGCSTW, "thread", "stop-the-world", 2);
  }
};

struct ordered {
  uint64_t ts;
  uint32_t seq;  // ties keep buffer order
  const event* e;
};

// Writes the recorded events as JSON. Returns 0 or an errno.
int write_trace(int fd, uint64_t tsc1, int64_t ns1) {
  std::vector<ordered> all;
  uint64_t dropped = 0, window = 0;
  auto gather = [&](tracebuf& b) {
    event* ev = b.ev.load(std::memory_order_acquire);
    if (!ev) return;
    uint64_t n = b.pos.load(std::memory_order_acquire);
    uint64_t count = n < g_cap ? n : g_cap;
    if (n > g_cap) {
      dropped += n - g_cap;
      // The oldest surviving event of a wrapped ring bounds the window.
      uint64_t oldest = ev[n & (g_cap - 1)].ts;
      for (uint64_t i = n - count; i < n; i++) oldest = std::min(oldest, ev[i & (g_cap - 1)].ts);
      window = std::max(window, oldest);
    }
    for (uint64_t i = n - count; i < n; i++) {
      const event* e = &ev[i & (g_cap - 1)];
      all.push_back({e->ts, static_cast<uint32_t>(all.size()), e});
    }
  };
  for (auto& b : g_pbufs) gather(b);
  gather(g_global);
  std::sort(all.begin(), all.end(), [](const ordered& a, const ordered& b) {
    return a.ts != b.ts ? a.ts < b.ts : a.seq < b.seq;
  });

  auto* out = new jsonOut(fd);
  double ns_per_tick =
      tsc1 > g_tsc0 ? static_cast<double>(ns1 - g_ns0) / static_cast<double>(tsc1 - g_tsc0) : 1.0;
  uint64_t base = window > g_tsc0 ? window : g_tsc0;
  formatter f(*out, base, ns_per_tick);
  f.end_ns = f.ns(tsc1);
  out->printf(
      "{\"displayTimeUnit\":\"ns\",\"otherData\":{\"producer\":\"gort execution trace\","
      "\"pid\":%d,\"events\":%zu,\"dropped_events\":%llu,\"ring_events\":%llu},\n"
      "\"traceEvents\":[\n",
      static_cast<int>(getpid()), all.size(), static_cast<unsigned long long>(dropped),
      static_cast<unsigned long long>(g_cap));
  for (const ordered& o : all)
    if (o.ts >= base) f.event_(*o.e);
  f.finish();
  f.names();
  out->puts("\n]}\n");
  out->flush();
  int err = out->err;
  delete out;
  return err;
}

// ---------------------------------------------------------------- start and stop

void unmap_buffers() {
  auto drop = [](tracebuf& b) {
    if (event* e = b.ev.exchange(nullptr)) munmap(e, g_cap * sizeof(event));
    b.pos.store(0);
  };
  for (auto& b : g_pbufs) drop(b);
  drop(g_global);
}

void fork_prepare() {
  g_ctl.lock();
}
void fork_parent() {
  g_ctl.unlock();
}
// The child's buffers are copies of the parent's, who writes them: stop
// without writing, and leave the file to the parent.
void fork_child() {
  g_ctl.reset();
  if (!g_on.load()) return;
  g_on.store(false);
  alloc::scavenger_trace_hook = nullptr;
  for (auto& b : g_pbufs) b.writers.store(0);
  g_global.writers.store(0);
  unmap_buffers();
  close(g_fd);
  g_fd = -1;
  g_forked_child = true;
}

// "%p" becomes the process id.
bool expand_path(const char* path, char* out, size_t len) {
  size_t j = 0;
  for (const char* c = path; *c; c++) {
    char num[24];
    const char* add = c;
    size_t n = 1;
    if (c[0] == '%' && c[1] == 'p') {
      n = static_cast<size_t>(snprintf(num, sizeof num, "%d", static_cast<int>(getpid())));
      add = num;
      c++;
    }
    if (j + n >= len) return false;
    memcpy(out + j, add, n);
    j += n;
  }
  out[j] = 0;
  return true;
}

int start_locked(const char* path) {
  if (g_on.load()) return EBUSY;
  if (!path || !*path) return EINVAL;
  char full[sizeof g_path];
  if (!expand_path(path, full, sizeof full)) return ENAMETOOLONG;
  uint64_t bytes = kDefaultBufferBytes;
  if (const char* v = getenv("GORT_TRACE_BUFFER")) {
    const char* why = nullptr;
    if (!parse_buffer_size(v, &bytes, &why)) {
      alloc::print_err("GORT_TRACE_BUFFER=%s: %s; using the default (4MiB)", v, why);
      bytes = kDefaultBufferBytes;
    }
  }
  int fd = open(full, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return errno;
  if (!g_atfork_done) {
    g_atfork_done = true;
    pthread_atfork(fork_prepare, fork_parent, fork_child);
  }
  memcpy(g_path, full, strlen(full) + 1);
  g_fd = fd;
  uint64_t cap = 1;
  while (cap * 2 * sizeof(event) <= bytes) cap *= 2;
  g_cap = cap;
  g_trace_pid = static_cast<int>(getpid());
  g_ns0 = alloc::nanotime();
  g_tsc0 = ticks();
  if (!g_asym_checked) {
    g_asym_checked = true;
    g_asym = syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
  }
  // The rings of the Ps there are now, and the shared one, mapped up front.
  int32_t np = gomaxprocs.load();
  for (int32_t i = 0; i < np && i < kMaxProcsLimit; i++) g_pbufs[i].ev.store(map_ring());
  g_global.ev.store(map_ring());
  alloc::scavenger_trace_hook = scavenge_hook;
  g_on.store(true, std::memory_order_seq_cst);
  return 0;
}

int stop_locked() {
  if (!g_on.load()) return EINVAL;
  g_on.store(false, std::memory_order_seq_cst);
  alloc::scavenger_trace_hook = nullptr;
  if (g_asym) syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0);
  // Every writer that saw g_on set is done with its buffer after this.
  auto drain = [](tracebuf& b) {
    while (b.writers.load(std::memory_order_seq_cst) != 0) sched_yield();
  };
  for (auto& b : g_pbufs) drain(b);
  drain(g_global);
  uint64_t tsc1 = ticks();
  int64_t ns1 = alloc::nanotime();
  // Formatting takes a while: a task leaves its P to the others meanwhile.
  gort::detail::blocking_enter();
  int err = write_trace(g_fd, tsc1, ns1);
  if (close(g_fd) != 0 && !err) err = errno;
  gort::detail::blocking_exit();
  g_fd = -1;
  unmap_buffers();
  if (err) alloc::print_err("cannot write the execution trace to %s: %s", g_path, strerror(err));
  return err;
}

// GORT_TRACE: start at load; the exit report writes the trace.
void (*g_prev_exit_report)() = nullptr;

void exit_report() {
  if (g_prev_exit_report) g_prev_exit_report();
  // A child of fork (its atfork handler stopped the trace) or of vfork
  // (which runs no handler and shares the parent's memory) must leave the
  // trace to the parent.
  if (!g_on.load() || g_forked_child || static_cast<int>(getpid()) != g_trace_pid) return;
  alloc::lock_guard l(g_ctl);
  stop_locked();
}

__attribute__((constructor)) void trace_from_env() {
  alloc::options_init();
  g_prev_exit_report = alloc::g_exit_report;
  alloc::g_exit_report = exit_report;
  const char* v = getenv("GORT_TRACE");
  if (!v) return;
  if (!*v) {
    alloc::print_err("GORT_TRACE is set but empty: expected a file path; tracing is off");
    return;
  }
  alloc::lock_guard l(g_ctl);
  if (int err = start_locked(v))
    alloc::print_err("GORT_TRACE=%s: cannot open it for writing: %s; tracing is off", v,
                     strerror(err));
}

}  // namespace
}  // namespace gort::rt::trace

using namespace gort::rt::trace;

GORT_EXPORT int gort_trace_start(const char* path) {
  gort::alloc::lock_guard l(g_ctl);
  int err = start_locked(path);
  if (err) {
    errno = err;
    return -1;
  }
  return 0;
}

GORT_EXPORT int gort_trace_stop(void) {
  gort::alloc::lock_guard l(g_ctl);
  int err = stop_locked();
  if (err) {
    errno = err;
    return -1;
  }
  return 0;
}

GORT_EXPORT int gort_trace_enabled(void) {
  return g_on.load(std::memory_order_relaxed) ? 1 : 0;
}
