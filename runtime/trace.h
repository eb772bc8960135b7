// The execution tracer's hooks (runtime/trace.cc has the design). Each hook
// is an inline test of one flag, false unless a trace is being recorded; the
// recording itself is out of line. gc/ calls the hooks directly (the trace is
// a layer beside the scheduler, not part of it); alloc/ is below the runtime
// and reaches the tracer only through the scavenger's function pointer that
// trace.cc installs while tracing.
#pragma once

#include <atomic>
#include <cstdint>

namespace gort::rt {

struct g;
struct m;
struct p;

namespace trace {

// True while a trace is being recorded. Read relaxed on every hook: one load
// and one branch that is never taken when tracing is off.
extern std::atomic<bool> g_on __attribute__((visibility("hidden")));  // no GOT load

inline bool on() {
  return __builtin_expect(g_on.load(std::memory_order_relaxed), 0);
}

// Why a task stopped running on its P (Go's traceGoPark/GoSched/GoPreempt/
// GoEnd/GoSysCall reasons).
enum stopReason : uint8_t {
  kStopBlocked,     // parked: the task's waitreason says on what
  kStopYield,       // gort::yield
  kStopPreempted,   // preempted by sysmon (cooperatively or by signal)
  kStopExit,        // the task returned
  kStopSyscall,     // entered a blocking call: the P went on without it
  kStopSyscallNoP,  // back from a blocking call to find its P gone and none idle
};

// The collector's phases, in cycle order.
enum gcPhase : uint8_t {
  kGCOff,
  kGCSweepTermination,
  kGCMark,
  kGCMarkTermination,
  kGCSweep,
};

// ---- out of line (trace.cc)
void gostart_slow(m* mp, g* gp);
void gostop_slow(m* mp, g* gp, stopReason why);
void syscall_enter_slow(m* mp, g* gp);
void syscall_exit_slow(m* mp, g* gp);
void gocreate_slow(g* gp);
void gounblock_slow(g* gp);
void proc_retake_slow(p* pp);
void gc_phase_slow(gcPhase ph);
void stw_slow(bool begin);
void assist_slow(bool begin);
void sweep_slow(bool begin);

// ---- the hooks, where the scheduler and the collector call them
inline void gostart(m* mp, g* gp) {  // gp starts (or resumes) running on mp's P
  if (on()) gostart_slow(mp, gp);
}
inline void gostop(m* mp, g* gp, stopReason why) {  // gp stops running, mp still holds its P
  if (on()) gostop_slow(mp, gp, why);
}
inline void syscall_enter(m* mp, g* gp) {  // before entersyscall lets the P go
  if (on()) syscall_enter_slow(mp, gp);
}
inline void syscall_exit(m* mp, g* gp) {  // back from the call: with a P, or none (to park)
  if (on()) syscall_exit_slow(mp, gp);
}
inline void gocreate(g* gp) {  // a new task (goid assigned) was made runnable
  if (on()) gocreate_slow(gp);
}
inline void gounblock(g* gp) {  // a parked task was readied
  if (on()) gounblock_slow(gp);
}
inline void proc_retake(p* pp) {  // sysmon took pp from an M blocked in a call
  if (on()) proc_retake_slow(pp);
}
inline void gc_phase(gcPhase ph) {  // the collector entered phase ph (kGCOff: cycle over)
  if (on()) gc_phase_slow(ph);
}
inline void stw_begin() {
  if (on()) stw_slow(true);
}
inline void stw_end() {
  if (on()) stw_slow(false);
}
inline void assist_begin() {
  if (on()) assist_slow(true);
}
inline void assist_end() {
  if (on()) assist_slow(false);
}

// A sweep of some spans (the background sweep, or an allocation sweeping
// the span it needs): a slice from construction to destruction, recorded
// only if work is there and a trace is on when it starts.
struct sweepScope {
  bool rec;
  explicit sweepScope(bool work) : rec(work && on()) {
    if (rec) sweep_slow(true);
  }
  ~sweepScope() {
    if (rec) sweep_slow(false);
  }
  sweepScope(const sweepScope&) = delete;
  sweepScope& operator=(const sweepScope&) = delete;
};

// GORT_TRACE_BUFFER's parser, exposed for tests: bytes per ring buffer
// ("4MiB", "65536"); false (and *why) on a bad value.
bool parse_buffer_size(const char* s, uint64_t* bytes, const char** why);

}  // namespace trace
}  // namespace gort::rt
