// Every environment variable the allocator reads, parsed in one place.
//
// Read once, at heap initialisation (the first malloc), with getenv only. A
// bad value is reported on stderr ("gort: GORT_X=...: why") and the default is
// kept: a typo must not take down a program that gort was preloaded into.
// docs/tuning.md documents each knob.
#pragma once

#include <cstdint>

namespace gort::alloc {

enum class thpMode : uint8_t { system, on, off };

struct options {
  // GORT_SCAVENGE=off|<ms>: free pages go back to the OS once they have stayed
  // free this long. Negative means the background scavenger is off.
  int64_t scavenge_delay_ns = 500 * 1000000LL;
  // GORT_THP=system|on|off: transparent huge pages for the heap (mheap.h,
  // "Huge pages"). system: no advice, the kernel's setting decides; on:
  // madvise(MADV_HUGEPAGE) on the heap; off: madvise(MADV_NOHUGEPAGE).
  thpMode thp = thpMode::system;
  // GORT_DEBUG=mstats=1: print allocator statistics on stderr at exit.
  bool mstats = false;
  // Where mstats go: a duplicate of stderr taken at startup, because programs
  // such as coreutils close stderr in an atexit handler before gort prints.
  int mstats_fd = 2;
  // GORT_DEBUG=scavtrace=1: print one line per scavenger pass that released memory.
  bool scavtrace = false;
  // GORT_DEBUG=gctrace=1: one line per GC cycle on stderr (gc/cycle.cc);
  // 2 adds a line with the stop-the-world phases.
  int gctrace = 0;
  // GORT_DEBUG=gcverify=1: check the tri-colour invariant over the heap at
  // every mark termination (slow: O(heap) in the stop); gcstress=N: start a
  // cycle every N span refills of a thread (gc/cycle.cc).
  bool gcverify = false;
  // GORT_DEBUG=gcpoison=1: sweeping fills freed GC objects with 0xdead...
  // (gc/sweep.cc), so a pointer the collector missed reads as poison.
  bool gcpoison = false;
  int64_t gcstress = 0;
  // GORT_DEBUG=schedtrace=MS: sysmon prints Go's SCHED line every MS ms
  // (runtime/sysmon.cc); asyncpreemptoff=1: no preemption by signal
  // (runtime/preempt.cc).
  int64_t schedtrace = 0;
  bool asyncpreemptoff = false;
  // GORT_DEBUG=metrics=1: print every metric (gort/metrics.h) at exit, to
  // mstats_fd (gc/metrics.cc).
  bool metrics = false;
  // GORT_DEBUG=poolcheck=1: scope objects are poisoned instead of reused when
  // their scope ends, and checked never to be reached from a root or a live
  // object (pool/scope.cc); escapestats=1: per-site escape statistics,
  // printed at exit to mstats_fd.
  bool poolcheck = false;
  bool escapestats = false;
  // GORT_MEMLIMIT=<bytes>[B|KiB|MiB|GiB|TiB]|off: the soft memory limit on
  // what gort maps (gc/pacer.cc paces the collector under it, the scavenger
  // returns free pages eagerly near it). 0: no limit.
  int64_t memlimit = 0;
  // GORT_THREAD_CACHE=<bytes>[B|KiB|MiB|GiB|TiB]|off: the budget for the free
  // memory all thread caches hold together (mcache.h); off (0): no budget,
  // and idle caches are not trimmed.
  int64_t thread_cache = int64_t{32} << 20;
  // GORT_DEBUG=heapprofilerate=N: sample one allocation per N bytes on
  // average for the heap profile (alloc/mprof.h); 0: off (the default unless
  // heapprofile is set, which defaults it to 512 KiB). heapprofile=PATH:
  // write the profile to PATH at exit (a forked child writes PATH.PID); the
  // path is the rest of the item, up to the next comma.
  int64_t heapprofilerate = -1;  // -1: not set
  char heapprofile[256] = {};
  int heapprofile_pid = 0;
};

extern options g_options;

// More read-outs at exit from the layers above (gc/metrics.cc sets it for
// GORT_DEBUG=metrics): called where mstats prints, at exit and in _exit.
extern void (*g_exit_report)();

// Parses the environment into g_options; safe to call before libc is ready
// and more than once (the later calls do nothing).
void options_init();

// Parsers, exposed for tests: return false (and set *why) on a bad value.
bool parse_scavenge(const char* s, int64_t* delay_ns, const char** why);
bool parse_debug(const char* s, options* o, char* why, unsigned whylen);
bool parse_memlimit(const char* s, int64_t* bytes, const char** why);
bool parse_thp(const char* s, thpMode* mode, const char** why);

// Whether huge pages may back the heap: GORT_THP=on, or system with the
// kernel's setting at "always". Reads a /sys file the first time (not at
// program start: its first callers are the scavenger's thread and the first
// task stack), then the cached answer.
bool thp_in_play();

}  // namespace gort::alloc
