// mprof: the sampled heap profile (Go's mprof.go and MemProfileRate), written
// in pprof's protobuf format.
//
// What is sampled. Each allocation of s bytes (s the size-class or page
// rounded size, as Go records it) is sampled with probability
// p(s) = 1 - exp(-s/rate), independently of the others; rate defaults to
// 512 KiB (GORT_DEBUG=heapprofilerate=N, gort_heap_profile_rate). That is
// the marginal law of Go's and TCMalloc's sampler (an exponential byte
// countdown), so a profile is unscaled exactly the way Go unscales one:
// count / p(s) and bytes / p(s) per bucket. A sample records the stack (up to
// kMaxStack frames, gort's own frames stripped), the size, and the object's
// address in a side table of live sampled objects, so that its free is
// counted and the in-use columns are right. Buckets are keyed by stack and
// size, as Go's are.
//
// Where the countdown lives. The malloc fast path (mcache.h) is one pop from
// a per-class stack and is pinned by test/golden/fastpath.txt; it gets no
// instruction. Instead, while profiling is on:
//  - free() never takes its fast path: the class window the free fast path
//    reads is hidden (mheap window_hide), so every free goes through
//    free_slow, where pushes onto a stack are seen and a sampled object's
//    free is looked up (only when its span's profiled count is not zero);
//  - each class's stack keeps, in mprofClass, how many pops remain until the
//    next sampled one (left, geometric with p(s) per object); the stack's
//    base, which malloc's fast path compares against, is raised so that the
//    pop that should be sampled finds the stack "empty" and goes to
//    alloc_class_slow, which samples it. Since pushes only happen on slow
//    paths, the pops between two slow events are cur moving down, counted
//    exactly (disarm: left -= armed_cur - cur).
//  - large objects (> 32 KiB, always a slow path) draw an exponential byte
//    countdown per cache.
// Profiling off costs nothing on any fast path; on, every free pays the slow
// path (bench/results/heapprofile-overhead.md). Once on, the window stays
// hidden until exit, also after the rate is set to 0: sampled objects may
// still be freed.
//
// GC objects (gc/heap.cc) keep Go's design: a byte countdown per gcCache on
// the allocation path, armed when a cache installs a span, and sweeping
// (gc/sweep.cc) reports freed objects of spans whose profiled count is not
// zero.
//
// Safety. Stack capture uses _Unwind_Backtrace, which may call malloc (the
// first use in some programs) and take the loader's lock: a per-cache busy
// flag makes a malloc from inside the capture an ordinary unsampled one. The
// capture holds no gort lock, so the collector may stop the thread there;
// the scheduler does not preempt it (libgcc_s and libc are never safe
// points; a program linked with -static-libgcc has the unwinder in its own
// text, where a preemption in the middle of a capture is possible). The
// profiler's lock, g_prof_lock, is a leaf (nothing is taken and nothing
// allocates while it is held: the profiler maps its own memory) and is held
// inside a collector busy region (hooks g_prof_nostop_*, set by gc/), so its
// holder is never stopped and the collector may take it while sweeping.
// (Blocking signals instead costs two system calls, ~8 us here.) fork: the
// lock is taken last in the allocator's prepare handler, reset in the child.
// Samples start after libgort's constructor has run (allocations from the
// dynamic loader before that are not sampled).
//
// Layering: alloc/ at the bottom; gc/ calls mprof_sample and mprof_free.
#pragma once

#include <cstddef>
#include <cstdint>

#include "alloc/mspan.h"
#include "alloc/sizeclasses.h"

namespace gort::alloc {

struct mcache;

inline constexpr int64_t kDefaultProfileRate = 512 * 1024;  // Go's MemProfileRate
inline constexpr int kMaxStack = 32;                        // Go's maxStack

// Sampling state of one class's stack in one mcache; see above.
struct mprofClass {
  void** armed_cur;  // the stack's cur when it was last armed; null: not armed
  uint32_t left;     // pops until the sampled one (>= 1), as of armed_cur
  uint32_t raise;    // slots the stack's base is raised by (0: real base)
};

// An mcache's sampling state (mcache::prof), made on the cache's first slow
// path with profiling on, kept with the cache.
struct mprofCache {
  mprofClass cls[kNumSizeClasses];
  int64_t large_left;  // bytes until the next sampled large object
  uint64_t rng;        // xorshift state
  uint32_t busy;       // capturing a stack: allocations are not sampled
  uint32_t epoch;      // g_prof_epoch when the countdowns were drawn
};

// The rate in bytes; 0 when sampling is off. g_prof_window_hidden is set
// once sampling was ever on (frees take the slow path from then on).
extern int64_t g_prof_rate;
extern bool g_prof_ever;
// Bumped by every rate change: caches draw their countdowns again.
extern uint32_t g_prof_epoch;
// Set by gc/ (busy_enter, busy_exit): g_prof_lock is held inside them.
extern void (*g_prof_nostop_enter)();
extern void (*g_prof_nostop_exit)();

inline bool prof_on() {
  return __builtin_expect(__atomic_load_n(&g_prof_ever, __ATOMIC_RELAXED), 0);
}

// Sets the rate (0 stops sampling); returns the previous one.
int64_t mprof_set_rate(int64_t rate);
// Called from libgort's constructor: samples may be taken from now on.
void mprof_ready();

// The mcache's state, made if missing (nullptr: no memory; not sampled),
// with countdowns drawn at the current rate.
mprofCache* mprof_cache(mcache* c);
// Pops until the next sampled object of size bytes: 1 + floor(E * rate / size).
uint32_t mprof_next_pops(mprofCache* pc, uint32_t size);
// Bytes until the next sampled byte: an exponential with mean rate.
int64_t mprof_next_bytes(uint64_t* rng);

// Records a sampled object at p of size bytes (the caller's stack). pc may be
// null (GC allocations): then the caller's own recursion guard applies.
void mprof_sample(mprofCache* pc, void* p, size_t size);
// A large allocation on the slow path: sample it with probability p(size).
void mprof_large(mcache* c, void* p, size_t size);
// Whether the object at p of span s may be a sampled one (the span's count
// and index filter; no lock). Small and GC spans: bit (index % 32).
inline uint32_t mprof_filter_bit(const mspan* s, uintptr_t p);
// An object at p of span s is freed (mprof_maybe_sampled said yes): if it
// was sampled, count its free.
void mprof_free(mspan* s, uintptr_t p);
// Sweeping: every object i of s for which freed(s, i) holds is freed; one
// lock for the span.
void mprof_free_objects(mspan* s, bool (*freed)(const mspan* s, uint32_t i));

// Writes the profile to path (pprof protobuf). Returns 0, or -1 with errno.
int mprof_write(const char* path);
// At exit: GORT_DEBUG=heapprofile=path writes the profile.
void mprof_exit();

// fork handlers (init.cc).
void mprof_fork_lock();
void mprof_fork_unlock();
void mprof_fork_child();

inline uint32_t mprof_filter_bit(const mspan* s, uintptr_t p) {
  if (s->state == spanState::large || s->state == spanState::gclarge || s->div_mul == 0) return 1;
  return uint32_t{1} << (s->objindex(p) % 32);
}
inline bool mprof_maybe_sampled(const mspan* s, uintptr_t p) {
  return __atomic_load_n(&s->profiled, __ATOMIC_RELAXED) != 0 &&
         (__atomic_load_n(&s->profiled_bits, __ATOMIC_RELAXED) & mprof_filter_bit(s, p)) != 0;
}

}  // namespace gort::alloc
