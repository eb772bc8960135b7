// The GC heap: how GC objects are allocated from the same mheap as malloc's.
//
// A GC span class is a size class times a gcKind (noscan, conservative,
// typed), so the collector knows from the span alone whether and how to scan
// an object. Typed objects start with a 16-byte header (the gort_gc_type and
// the requested size); the program sees the object after it, 16-byte aligned.
// Objects over 32 KiB (with the header) get a gclarge span of their own.
//
// Allocation is Go's: a gcCache (one per mcache, so one per thread, or per P
// for tasks) owns at most one span per GC span class and takes the next free
// object of it with the span's allocCache (a ctz over the complement of
// allocBits). Allocation does not set allocBits: an object below the span's
// freeindex is allocated, and sweeping makes the mark bits the next
// allocBits. Objects allocated while the collector marks are black: a small
// one as part of its span's range (mspan::blackfrom, "Black allocation by
// range" in heap.cc), whose mark bits are set when its cache lets the span
// go; a large one marked at once.
//
// Spans wait in their class's gcCentral, in one of three lists:
//   partial  swept this cycle, with free objects;
//   full     swept this cycle, no free object;
//   unswept  not yet swept since the last mark termination.
// Mark termination flushes every cache and moves partial and full to unswept;
// a cache that needs a span takes a partial one, or sweeps unswept ones until
// one has room (lazy sweep), or gets a fresh span from the mheap. The
// collector's thread sweeps the rest in the background, and sweep termination
// (the next cycle's first stop) finds every list swept. A span that sweeping
// empties waits on the empty list until the collector's thread gives it back
// to the mheap outside the mark phase (markers look spans up without locks,
// so a span's record must not be reused while they may hold it).
//
// Stop-the-world safety (see gc/roots.h): the collector stops registered
// threads with a signal at any instruction, then flushes their caches. A
// thread in the middle of a GC operation (tl_gc.busy != 0) defers the stop:
// it notes it (tl_gc.pending) and stops itself when the operation ends. So every use of a gcCache,
// of a gcCentral lock and of the collector's other locks by a program thread is inside a busy
// region, and a busy region never waits for anything a stopped thread may hold: never an allocator
// lock (mheap, mcentral), never malloc. Getting a fresh span from the mheap is done outside the
// busy region.
//
// Lock order (all of the collector's locks; docs/gc.md): g_start_lock,
// g_key_lock, g_reg_lock, g_cachealloc_lock, gcCentral.lock (by span class),
// g_large.lock, g_empty_lock, g_specials_lock, g_roots_lock, g_handles_lock,
// g_work_lock, g_stats_lock. No allocator lock is taken while one of these
// is held; the fork handlers (gc/cycle.cc) take them all in this order.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <initializer_list>

#include "alloc/lock.h"
#include "alloc/mcache.h"
#include "alloc/mheap.h"
#include "alloc/mspan.h"
#include "gort/gc.h"

namespace gort::gc {

using alloc::gcKind;
using alloc::mspan;
using alloc::spanList;

inline constexpr int kNumGCSpanClasses = alloc::kNumSizeClasses * alloc::kNumGCKinds;
inline constexpr size_t kTypedHeader = 16;  // gort_gc_type*, requested size
inline constexpr size_t kTinySize = 16;

inline uint32_t gc_span_class(uint32_t cls, gcKind k) {
  return cls * alloc::kNumGCKinds + static_cast<uint32_t>(k);
}

// ---- the collector's phase (written only while the world is stopped) ----

// 1 from sweep termination to mark termination: barriers shade, new objects
// are allocated black. The word is gort_gc_marking, exported for the inline
// barrier of gort/gc.h; g_marking gives it the std::atomic interface.
// The word has two bits: kMarkingBit (this flag) and kScopeBit, set for good
// once a scope (pool/scope.cc) exists, so that the inline barrier (which
// only tests the word for zero) calls the slow half, where escapes are seen.
// Code testing "is the collector marking" must use g_marking (or mask
// kMarkingBit), never the raw word.
inline constexpr uint32_t kMarkingBit = 1, kScopeBit = 2;
struct markingFlag {
  uint32_t load(std::memory_order) const {
    return __atomic_load_n(&gort_gc_marking, __ATOMIC_ACQUIRE) & kMarkingBit;
  }
  void store(uint32_t v, std::memory_order) {
    if (v)
      __atomic_fetch_or(&gort_gc_marking, kMarkingBit, __ATOMIC_ACQ_REL);
    else
      __atomic_fetch_and(&gort_gc_marking, ~kMarkingBit, __ATOMIC_ACQ_REL);
  }
};
inline markingFlag g_marking;

// Scoped pooling's hook in the barrier (pool/scope.cc sets it once, before
// it sets kScopeBit): value was stored into *slot (slot null: somewhere the
// barrier does not know, such as a handle made with gort_gc_handle_new).
// Called from the barrier's slow half on any thread, outside busy regions.
extern void (*g_scope_escape)(void* const* slot, const void* value);
inline void scope_escape(void* const* slot, const void* value) {
  if (__atomic_load_n(&gort_gc_marking, __ATOMIC_RELAXED) & kScopeBit) g_scope_escape(slot, value);
}
// +2 at every mark termination; a span with sweepgen == g_sweepgen is swept.
extern std::atomic<uint32_t> g_sweepgen;

// ---- per-thread state ----

struct gcThread;  // gc/roots.h
struct tlsGC {
  gcThread* rec;   // this thread's registration, or null
  uint32_t ready;  // registered, and the collector started: the fast path may run
  uint32_t busy;   // > 0: inside a GC operation; stop requests wait
  // A stop was asked for: by the signal while busy, or by stop_the_world
  // (another thread writes it: atomic accesses only). gc/roots.cc.
  uint32_t pending;
  uint64_t refills;  // span refills, for GORT_DEBUG=gcstress
  // Bytes taken into this thread's cache or as large objects and not yet
  // charged to its mark assist credit (gc/pacer.h); note_alloc_slow charges.
  int64_t alloc_charge;
};
extern __thread tlsGC tl_gc __attribute__((tls_model("initial-exec")));

// A stop that was asked for while busy: the thread stops itself (roots.cc).
void stop_deferred();
// futex_wait(addr, val) for a thread that waits inside gort outside a busy
// region (for a cycle, gort_gc_collect; for the finalizers): it sleeps at
// most alloc::kLockWaitPollNs, then takes a stop asked of it, as a lock's
// waiter does (alloc::g_lock_wait_poll). A thread that blocks the stop
// signal stops only at polls, and what it waits for may wait for the stop:
// without the poll it held the stop up until the collector gave up (20 s).
void wait_or_stop(std::atomic<uint32_t>* addr, uint32_t val);

// Defines the exported C function name as a jump to impl (a hidden extern
// "C" function of the same signature) after zeroing the 1 KiB of dead stack
// under the caller's frame, for the API calls that wait (gort_gc_collect,
// gort_gc_run_finalizers). The waiting thread is a root: its stack is
// scanned from where it sleeps up, and the frames of the wait are laid over
// that dead stack. An unset slot of theirs (an alignment slot) held
// whatever the caller's earlier, deeper calls left there, and kept that
// garbage alive through the very collection the thread waited for.
#define GORT_WAITING_ENTRY(name, impl)     \
  asm(".text\n"                            \
      ".p2align 4\n"                       \
      ".globl " #name                      \
      "\n"                                 \
      ".type " #name ", @function\n" #name \
      ":\n"                                \
      "  lea -1024(%rsp), %rax\n"          \
      "1:movq $0, (%rax)\n"                \
      "  add $8, %rax\n"                   \
      "  cmp %rsp, %rax\n"                 \
      "  jb 1b\n"                          \
      "  jmp " #impl                       \
      "\n"                                 \
      ".size " #name ", .-" #name "\n")

inline void busy_enter() {
  tl_gc.busy++;
  std::atomic_signal_fence(std::memory_order_seq_cst);
}
inline void busy_exit() {
  std::atomic_signal_fence(std::memory_order_seq_cst);
  if (--tl_gc.busy == 0) {
    std::atomic_signal_fence(std::memory_order_seq_cst);
    if (__builtin_expect(__atomic_load_n(&tl_gc.pending, __ATOMIC_RELAXED) != 0, 0))
      stop_deferred();
  }
}
// Enters a busy region for mark work that a program thread or task does on
// its own (a barrier's shade, an assist, a mark worker, a stack scanned on
// joining): true if the collector still marks, else it leaves the region
// again and the caller must not mark. The check must come after entering,
// not before: between a check made outside and the region, mark
// termination can end the cycle and the sweep swap the span's bitmaps, and
// a mark set then lands in the next cycle's bitmap, where it makes an
// object allocated later look marked before its fields were scanned (the
// collector then frees what it points to).
inline bool mark_busy_enter() {
  busy_enter();
  if (__builtin_expect(g_marking.load(std::memory_order_relaxed) != 0, 1)) return true;
  busy_exit();
  return false;
}

// busy_exit for a fast path's last statement: the deferred stop (rare) is a
// tail call, so the fast path keeps no register live across a call.
void* stop_deferred_ret(void* p);
inline void* busy_exit_ret(void* p) {
  std::atomic_signal_fence(std::memory_order_seq_cst);
  if (--tl_gc.busy == 0) {
    std::atomic_signal_fence(std::memory_order_seq_cst);
    if (__builtin_expect(__atomic_load_n(&tl_gc.pending, __ATOMIC_RELAXED) != 0, 0))
      return stop_deferred_ret(p);
  }
  return p;
}
// Leaves a busy region on the way to a slow path, which enters and leaves
// one again and honours a pending stop then.
inline void busy_exit_quiet() {
  std::atomic_signal_fence(std::memory_order_seq_cst);
  tl_gc.busy--;
}

// A collector lock taken by a program thread: inside a busy region.
class busy_lock {
 public:
  explicit busy_lock(alloc::mutex& m) : m_(m) {
    busy_enter();
    m_.lock();
  }
  ~busy_lock() {
    m_.unlock();
    busy_exit();
  }
  busy_lock(const busy_lock&) = delete;
  busy_lock& operator=(const busy_lock&) = delete;

 private:
  alloc::mutex& m_;
};

// ---- caches and centrals ----

struct gcCache {
  mspan* alloc[kNumGCSpanClasses];
  uintptr_t tiny;  // current 16-byte tiny block, or 0
  uintptr_t tinyoffset;
  uint64_t marked_bytes;  // allocated black this cycle (summed at mark termination)
  gcCache* allnext;       // every gcCache ever made (never freed)
  // The heap profile (alloc/mprof.h), as Go's mcache.nextSample: bytes until
  // the next sampled GC allocation (INT64_MAX while profiling is off), drawn
  // again when a span is installed after the rate changed (prof_epoch).
  int64_t next_sample;
  uint32_t prof_epoch;
  uint64_t prof_rng;
};

struct alignas(64) gcCentral {
  alloc::mutex lock;
  spanList partial, full, unswept;
};
extern gcCentral g_central[kNumGCSpanClasses];
// Large objects: the same three states, one lock.
extern gcCentral g_large;
// Spans emptied by sweeping, waiting to go back to the mheap.
extern alloc::mutex g_empty_lock;
extern spanList g_empty;

// Every gcCache, for the stop-the-world flush.
extern std::atomic<gcCache*> g_allcaches;

// Bytes in GC objects allocated and not swept free (objects in a cache's
// span count from the moment the cache takes the span).
extern std::atomic<int64_t> g_heap_alloc;
extern std::atomic<uint64_t> g_total_alloc, g_total_freed;
// Lowest and highest address of any GC span ever: a quick filter for
// conservative scanning.
extern std::atomic<uintptr_t> g_heap_lo, g_heap_hi;

// ---- allocation ----

void* alloc_object(size_t size, gcKind kind, const gort_gc_type* type);
// Gives every span of c back to its central (stop-the-world or owner in a
// busy region).
void flush_cache(gcCache* c);
void flush_all_caches();  // the world is stopped
// Mark termination: every swept span becomes unswept (the world is stopped).
void prepare_sweep();

// find_object for the program's calls (gort_gc_base, gort_gc_size, weak
// references, finalizers), which may come while a sweep swaps the span's
// bitmaps (sweep.cc: its sweepgen is odd then): the answer is taken from
// bitmaps no sweep changed meanwhile. The collector's own look-ups need no
// such care (nothing sweeps while it marks).
mspan* find_live_object(uintptr_t p, uint32_t* idx);
// Whether object idx of s is allocated (below freeindex, or its alloc bit).
inline bool object_allocated(const mspan* s, uint32_t idx) {
  if (idx < __atomic_load_n(&s->freeindex, __ATOMIC_RELAXED)) return true;
  return s->allocBits[idx / 64] >> (idx % 64) & 1;
}
inline uintptr_t object_base(const mspan* s, uint32_t idx) {
  return s->base + uintptr_t{idx} * s->elemsize;
}

// The GC span of the page p is in, or nullptr (p outside every GC span ever
// made, in no arena, or on a page of no span).
inline mspan* gc_span_of(uintptr_t p) {
  if (p < g_heap_lo.load(std::memory_order_relaxed) ||
      p >= g_heap_hi.load(std::memory_order_relaxed))
    return nullptr;
  alloc::heapArena* a = alloc::g_arenas[p >> alloc::kArenaShift];
  if (!a) return nullptr;
  return __atomic_load_n(&a->spans[(p >> alloc::kPageShift) % alloc::kPagesPerArena],
                         __ATOMIC_ACQUIRE);
}

// The GC object containing p: its span and object index, or nullptr.
// Lock-free; tolerates any value of p (conservative scanning). Inline: the
// marker calls it for every word it scans (shade).
inline mspan* find_object(uintptr_t p, uint32_t* idx) {
  mspan* s = gc_span_of(p);
  if (!s) return nullptr;
  alloc::spanState st = __atomic_load_n(&s->state, __ATOMIC_RELAXED);
  if (st != alloc::spanState::gc && st != alloc::spanState::gclarge) return nullptr;
  if (p < s->base || p >= s->limit() || !s->allocBits) return nullptr;
  uint32_t i = s->objindex(p);
  if (i >= s->nelems) return nullptr;
  if (!object_allocated(s, i)) return nullptr;
  *idx = i;
  return s;
}
// The bytes of the object at idx (the span's pages for a large object of
// unrecorded size).
inline size_t object_size(const mspan* s) {
  if (s->state == alloc::spanState::gclarge && s->elemsize == 0)
    return s->npages * alloc::kPageSize;
  return s->elemsize;
}

// fork(): each module's collector locks, taken in the documented order before
// the fork (phase 0), released in the parent (1), reset in the child (2).
// gc/cycle.cc calls them: reg, heap, final, tables, work, stats.
inline void fork_lock_phase(alloc::mutex& m, int phase) {
  if (phase == 0)
    m.lock();
  else if (phase == 1)
    m.unlock();
  else
    m.reset();
}
// The same for several locks: taken in the order given, released in the
// reverse order.
inline void fork_locks(int phase, std::initializer_list<alloc::mutex*> locks) {
  if (phase == 1) {
    for (auto* m = locks.end(); m != locks.begin();) fork_lock_phase(**--m, phase);
  } else {
    for (alloc::mutex* m : locks) fork_lock_phase(*m, phase);
  }
}
void heap_fork(int phase);
void final_fork(int phase);
void work_fork(int phase);
void roots_fork_reg(int phase);
void roots_fork_tables(int phase);
}  // namespace gort::gc
