// mcache: a thread's private free objects, one stack of pointers per size
// class, and the malloc and free fast paths over them.
//
// The fast paths take no lock and do no atomic read-modify-write: malloc pops
// the top of its class's stack, free pushes onto the top of the freeing
// thread's own stack when that thread's cache owns the object's span (the
// owner id in the object's class-window entry, mcentral.h "Owned spans"). A
// stack that runs dry refills from the mcentral; a full one gives its oldest
// batch back (mcache.cc, out of line).
//
// Remote frees: an object whose span another cache owns (or none) goes, out
// of line (free_remote), straight back to its span: one atomic OR sets its
// bit in the span's remote-free bitmap, and the span's mcentral merges those
// bits at its next refill (mcentral.h, "Remote frees"). Objects of a span a
// cache owns come back to that cache's spans (its reclaim list), so a thread
// never gets back at once an object another thread allocated: that object's
// cache line may hold objects the other thread is writing (false sharing),
// and mimalloc's rule, objects are reused by the thread that owns their page,
// avoids it by design. Stacks hold pointers, as TCMalloc's per-CPU caches
// do, rather than lists threaded through the free objects: the only state
// carried from one call to the next is the stack's cur pointer, a freed
// object's memory is never written (a use-after-free write cannot corrupt
// the allocator), and moving a batch to or from the mcentral never touches
// object memory. The slots of a class are laid out as
//     base .. cur      free objects the cache owns (malloc pops at cur)
//     cur .. end       empty (end = base + nslots)
// and the stack is full when cur reaches end.
//
// Before remote frees went to the spans, they waited in remote slots at the
// end of each class's slots until a batch (32 objects) of one class had
// gathered: with one producer and 63 consumers of 16 B-1 KiB blocks
// (bench/shapes.py "xfer 1:63"), up to 31 objects per class per consumer
// waited there, thousands in all, while the producer carved new spans: peak
// RSS 24 MiB against mimalloc's 4.5, and 1.57x the best peer's time
// (bench/results/alloc-remote.md).
//
// An mcache belongs to an OS thread, or to a P of the scheduler. Either way
// a thread finds it through one initial-exec TLS word, tl_thread.cache
// (with the collector's tl_gc, dlopen'ing libgort.so needs about 64 bytes of
// static TLS): an M that acquires a
// P points it at the P's cache and points it back at its own when it lets the
// P go (runtime/proc.cc), so malloc from a task uses its P's cache and plain
// threads keep their own.
//
// Thread exit: a pthread key destructor gives every object back to the
// mcentrals and puts the mcache in a pool for the next thread. malloc calls
// made after that (later destructors) go to the mcentral directly.
//
// The thread-cache budget (GORT_THREAD_CACHE, default 32 MiB, TCMalloc's
// overall thread cache size): the bytes held by all thread caches (free
// objects in stacks, kept large spans) are bounded by
// trimming, never by work on the fast paths. Each cache keeps an estimate of
// what it holds (held), brought up to date for a class at every slow-path
// event of that class (refill, flush, large span kept or
// taken) and published to a global sum (g_held) in 64 KiB steps by the
// stack events (a kept or taken large span is published with the next one:
// the sum lags by at most kLargeCacheBytes per cache for them). A cache
// whose slow path finds the sum over the budget and itself over its share
// (the budget over the live caches, at least kMinShare) gives back what it
// holds down to one slow-start refill per class, at once. Caches that do
// not come to their slow paths are trimmed by the scavenger (mcache.cc,
// "Stealing"): every cache that has had no slow-path event for the
// scavenger's delay (idle), and, while the sum is over the budget, every
// cache over its share.
//
// Stealing from another thread's cache is a handshake, because the owner's
// fast paths use no lock and no atomic: the stealer (holding the cache's
// lock, which the owner's slow paths take) marks the cache detached,
// swaps the owner's tl_thread.cache from the cache to null with a
// compare-and-swap, and runs membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED):
// when that returns, every later malloc or free of the owner sees null and
// takes the slow path, and at most the fast-path operation it was in the
// middle of (one pop or one push near the top of one stack) still runs on
// the cache. The stealer then takes objects only from the bottom of each
// stack, below the top kStealKeep, and records how many (stolen[]); it
// never writes cur, base or end. It also gives the spans on the cache's
// reclaim lists back to their mcentrals (under each one's lock, which the
// owner's refills take), and its kept large spans to the mheap: the owner
// keeps and takes those without the lock, announcing itself in large_busy
// before it checks that its cache word is still the cache, so after the
// membarrier the stealer either sees the flag (and steals nothing this time)
// or the owner sees null. The owner's next slow path, under the lock, slides
// what is left back against base and points tl_thread.cache back at the
// cache (sync_locked). Without membarrier (kernels before 4.14,
// seccomp) nothing is stolen: idle caches keep their objects, and the
// budget acts through the owners' slow paths only.
//
// Double free: free() compares the object with the top of the stack, which
// catches free(p); free(p) at the cost of one load from a line it writes
// anyway. A remote double free finds its bit already set in the span's
// remote-free bitmap (until the merge) or its alloc bit clear (at the
// merge). A local double free that is not back-to-back is caught by the
// mcentral's allocBits when the object goes back there (fatal error, not
// corruption of its metadata; the program may have used the object twice by
// then).
#pragma once

#include <cstddef>
#include <cstdint>

#include "alloc/lock.h"
#include "alloc/mheap.h"
#include "alloc/sizeclasses.h"

#define GORT_LIKELY(x) __builtin_expect(!!(x), 1)
#define GORT_UNLIKELY(x) __builtin_expect(!!(x), 0)

namespace gort::alloc {

// [base, cur) are free objects of the class; end = base + nslots (nslots is
// at least two batches, so the stack always has room for a refill and a
// batch of its own to give back).
// refill is how many objects the next refill asks for: it starts at an
// eighth of a batch and doubles up to a batch (TCMalloc's slow start), so a
// short-lived thread that touches many classes does not pull a whole batch
// (up to 64 KiB) of each.
struct freeStack {
  void** cur;
  void** base;
  void** end;
  uint16_t refill;
  uint16_t nslots;
  uint32_t pad;
};

// Large spans of up to kLargeCachePages pages that a thread frees are kept
// (state cached, still in the page map so nothing coalesces with them) for its
// next large allocation of the same page count, up to kLargeCacheBytes per
// thread: the 32-256 KiB objects that TCMalloc serves from size classes stay
// off the mheap lock.
inline constexpr uint32_t kLargeCachePages = 32;
inline constexpr size_t kLargeCacheBytes = 1 << 20;
inline constexpr size_t kLargeCacheStart = 0;

struct threadState;

// Objects a stealer leaves at the top of each stack: the fast-path operations
// the owner may still be in when it is detached (one per load of
// tl_thread.cache; two if an entry point inlines a malloc and a free with no
// call between).
inline constexpr uint32_t kStealKeep = 2;

struct alignas(64) mcache {
  freeStack stacks[kNumSizeClasses];
  // This cache's id, never 0: the owner of the spans in owned[] (their
  // window entries carry it). Kept when the cache is pooled and reused.
  uint32_t owner;
  mspan* owned[kNumSizeClasses];  // per class: the span refills take objects from
  // Per class: this cache's used-up spans that objects came back to, for
  // its refills before any other span (mcentral.h "Owned spans"). Guarded
  // by g_central[cls].lock, not by this cache's lock.
  spanList reclaim[kNumSizeClasses];
  // Per class: whether the cache ever owned a span of the class (set by the
  // owner's refills, under the mcentral's lock, never cleared, even when the
  // cache is pooled: its old used-up spans may come back to it): classes it
  // never owned a span of need no pass (and no lock) at release.
  uint8_t had_span[kNumSizeClasses];
  // Whether a thread (or P) uses the cache: false from its release until the
  // next thread takes it from the pool. Written under every mcentral's lock
  // in turn (release_cache) and read under one (mcentral::release_object).
  uint8_t live;
  mspan* large[kLargeCachePages + 1];  // by page count, linked through next
  size_t large_bytes;
  // What the kept large spans may add up to: kLargeCacheStart (nothing) at
  // first, a span's size more each time a kept span is reused or a large
  // allocation asks for the page count of the last span that could not be
  // kept (large_ghost: it would have been reused), up to kLargeCacheBytes
  // (slow start, as for the stacks' refills): a thread whose large blocks
  // never come back in the same page count keeps nothing.
  size_t large_limit;
  uintptr_t large_ghost;
  // Set by the owner while it takes or keeps a large span without the lock
  // (cache_take_large); a stealer that finds it set after its membarrier
  // takes nothing. large[], large_bytes, large_limit and large_ghost are
  // the owner's, or a stealer's once the owner is detached and not busy.
  uint8_t large_busy;
  mcache* next_all;  // registry of live caches, guarded by g_caches_lock
  mcache* prev_all;
  int64_t pooled_at;    // pooled caches: when the thread exited (coarse ns)
  bool slots_resident;  // pooled caches: slot pages not yet given back
  // The collector's part (gc/heap.h: a gcCache), made on the first GC
  // allocation through this cache and kept with it for its next owner.
  void* gc;
  // The heap profiler's sampling state (alloc/mprof.h: an mprofCache), made
  // on the first slow path with profiling on, kept with the cache.
  void* prof;
  // ---- the budget and stealing (see the top of this file) ----
  // lock: taken by the owner on every slow path that moves objects in or out
  // of the stacks (not for the kept large spans: large_busy), and by a stealer (which holds
  // g_caches_lock, and only try-locks it). Lock order: g_caches_lock, then
  // mcache::lock, then mcentral.lock, then mheap.lock; the owner never takes
  // g_caches_lock while holding it.
  mutex lock;
  // The owner thread's TLS block, for a stealer's compare-and-swap of its
  // cache pointer; null for a P's cache and once the thread exits. Under lock.
  threadState* ts;
  // Set (seq_cst) by a stealer before it detaches the cache, cleared by the
  // owner under lock once it has slid the stacks back (sync_locked). While
  // set, stolen[cls] objects at the bottom of class cls's stack are gone.
  uint8_t detached;
  uint16_t stolen[kNumSizeClasses];
  // held: bytes this cache holds as of each class's last slow-path event
  // (noted[cls] objects of class cls) plus its kept large spans; published:
  // the part of it added to g_held. Owner-only, except that a stealer
  // rewrites them under lock.
  size_t held;
  size_t published;
  uint32_t noted[kNumSizeClasses];
  // Slow-path events so far (owner, relaxed) and, for the scavenger's idle
  // test, the count it saw last and when it saw it change (g_caches_lock).
  uint32_t slow_seq;
  uint32_t seen_seq;
  int64_t seen_at;
  // One guard slot, so cur[-1] is always readable, then each class's slots.
  void* slots[1 + total_cache_slots()];
};

struct threadState {
  mcache* cache;     // null until the thread's first malloc, and after it exits;
                     // while the thread is an M holding a P: the P's cache;
                     // null while a stealer has detached the thread's cache
                     // (mcache::detached), until its next slow path
  void* sched_m;     // the scheduler's m when this thread is one (runtime/proc.h)
  uint8_t exited;    // the key destructor ran: no cache any more
  uint8_t creating;  // making the cache (pthread_setspecific may call malloc)
  // cache's gcCache (gc/heap.h) once this thread may allocate GC objects
  // through it; null otherwise, and reset whenever cache changes, so GC
  // allocation's fast path needs this one load (gc/heap.cc refills it).
  void* gccache;
};
extern __thread threadState tl_thread __attribute__((tls_model("initial-exec")));

void* malloc_slow(size_t size);
void* alloc_class_slow(uint32_t cls);
void free_slow(void* p);
// A full stack, or p equal to the top of the stack; also every small free
// that did not take the fast path.
void free_cache_slow(mcache* c, uint32_t cls, void* p);
// A free whose window entry does not name c as the owner: a remote small
// object, or anything free_slow handles (entry 0).
void free_remote(mcache* c, void* p, uint32_t e);
// The remote free of p if its window entry e says it starts a small object
// (true), with the fast path's checks; false otherwise, nothing done.
bool free_remote_small(void* p, uint32_t e);
// p, a valid object of class cls in span s, back to s as a remote free.
void free_remote_object(mspan* s, uint32_t cls, void* p);

// The fast path of every small allocation: pop the top of the class's stack.
inline void* alloc_class(uint32_t cls) {
  mcache* c = tl_thread.cache;
  if (GORT_LIKELY(c != nullptr)) {
    freeStack& st = c->stacks[cls];
    void** cur = st.cur;
    if (GORT_LIKELY(cur != st.base)) {
      st.cur = --cur;
      return *cur;
    }
  }
  return alloc_class_slow(cls);
}

inline void* malloc_fast(size_t size) {
  if (GORT_LIKELY(size <= kMaxSmallSize)) return alloc_class(size_to_class(size));
  return malloc_slow(size);
}

// The fast path of every free: class, page-in-span and owner from the window
// map (one load), a check that this thread's cache owns the span (which also
// rejects every page that is not in a small span: their entries are 0), a
// check against the class's constants that p starts an object, push on this
// thread's stack. The mspan is not touched.
inline void free_fast(void* ptr) {
  // Written as early exits marked unlikely so that the common path is one
  // straight line with no taken branch.
  uint32_t e = window_entry(ptr);
  uint32_t cls = e & 0xff;
  mcache* c = tl_thread.cache;
  if (GORT_UNLIKELY(c == nullptr)) return free_slow(ptr);
  if (GORT_UNLIKELY(window_owner(e) != c->owner)) return free_remote(c, ptr, e);
  if (GORT_UNLIKELY(!class_object_start(cls, window_span_offset(ptr, e)))) return free_slow(ptr);
  freeStack& st = c->stacks[cls];
  void** cur = st.cur;
  if (GORT_UNLIKELY(cur == st.end || cur[-1] == ptr)) return free_cache_slow(c, cls, ptr);
  *cur = ptr;
  st.cur = cur + 1;
}

// Usable size of a block gort owns, or 0 for null or a pointer that is not
// the start of a live gort block.
size_t usable_size(const void* p);

// Cache management (mcache.cc).
void caches_init();
mcache* cache_for_thread();
// A cache owned by something other than a thread (a P): made empty, given
// back (its objects to the mcentrals) by cache_destroy.
mcache* cache_create();
void cache_destroy(mcache* c);
// Without a cache (a thread that already exited): straight to the mcentral.
void* alloc_direct(uint32_t cls);
void free_direct(void* p);
void caches_lock();
void caches_unlock();
void caches_fork_child();
// The scavenger's pass over pooled caches: gives back the slot pages of
// caches pooled for at least min_age_ns. Returns the time until the next one
// is old enough, or -1.
int64_t caches_trim_pool(int64_t min_age_ns);
// Free objects per class in all live caches, and the number of caches.
void cache_counts(uint64_t* cached, size_t* large_cached_bytes, size_t* ncaches);
// Large spans through the thread's cache: nullptr / false when the cache has
// none or no room; the caller then goes to the mheap. No lock: a stealer
// touches the kept spans only after the handshake (mcache.cc, large_enter).
mspan* cache_take_large(uintptr_t npages);
bool cache_keep_large(mspan* s);
// An M points tl_thread.cache back at its own cache when it lets its P go:
// through this, so that a cache a stealer detached meanwhile stays detached.
void cache_resume(mcache* c);

// ---- the thread-cache budget (see the top of this file) ----
// Caches never shrink below kMinShare each for the budget's sake: with more
// than budget / kMinShare threads the bound is kMinShare per thread.
inline constexpr size_t kMinShare = 256 << 10;
// Bytes held by all thread caches as published (each cache's estimate, to
// within 64 KiB), and the budget (0: none).
size_t caches_held_published();
size_t caches_budget();
// Whether the published sum is over the budget.
bool caches_over_budget();
// Exact bytes held by all live caches now (read racily, as cache_counts).
size_t caches_held_exact();
// The scavenger's pass: steals from caches idle (no slow-path event) for at
// least idle_ns, and, while the published sum is over the budget, from
// caches over their share. Returns the time until the next cache could
// become idle enough, or -1. Caches holding less than kIdleTrimMin are left.
inline constexpr size_t kIdleTrimMin = 64 << 10;
int64_t caches_trim(int64_t idle_ns);
// Whether stealing works here (membarrier's private expedited command).
bool caches_can_steal();
// Caches stolen from so far.
uint64_t caches_steals();
// What one cache holds now (read racily), for tests and statistics.
size_t cache_held(const mcache* c);

}  // namespace gort::alloc
