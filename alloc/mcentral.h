// mcentral: the shared free objects of one size class.
//
// Caches refill from and flush to their class's mcentral in batches of
// class_batch(cls) objects, so its lock is taken once per batch, never per
// object. It holds
//  - a transfer cache: whole batches of object pointers exactly as a cache
//    flushed them, handed to the next cache that refills with one memcpy and
//    without touching the spans. This is what makes cross-thread free cheap:
//    the freeing thread's batch goes to the allocating thread in one step.
//  - partial: spans of this class with free objects; full: spans without.
// Objects move between spans and caches through the spans' allocBits (a set
// bit: the object is out, in a cache or in the program). An object that comes
// back with its bit already clear was freed twice: a fatal error.
// When a span's last object comes back, the span goes back to the mheap.
//
// Owned spans (mimalloc's pages, Go's mcache.alloc): a cache that refills
// from spans takes one span of the class for itself, its current span, and
// takes objects only from it until it is used up; no other cache allocates
// from it. The span's pages carry the cache's id in the class window
// (mheap.h), and free() pushes an object onto the freeing thread's stack only
// if that thread's cache owns the object's span; any other free is remote.
// So objects of one span go out to one thread at a time, a thread never gets
// back from its own stack an object another thread allocated (whose
// neighbours, on the same cache line, that thread may still be writing:
// allocator-induced false sharing, mimalloc-bench's cache-scratch), and two
// threads' objects share a line only when the program passed them over.
// A used-up span stays its cache's (kOwnedFull, on no list) until the cache
// is released: when frees bring objects back to it, it goes on the cache's
// reclaim list for its class (kOwnedReclaim, mcache::reclaim), which the
// cache's refills use before any other span, and when all of its objects
// are back it goes to the mheap. So a thread's objects return to that
// thread, however many threads free them. A released cache (thread exit)
// gives up its current span and its reclaim lists (to partial, full or the
// mheap as their counts say); its used-up spans become the mcentral's at
// their next merge (mcache::live is false then). Invariants: an owned span
// is on no mcentral list; an object is handed to a program only by the
// cache whose span it is in, or through a transfer-cache batch tagged with
// that cache (tc_owner).
//
// Remote frees (mimalloc's thread-free list, kept out of line): a free by a
// thread whose cache does not own the object's span sets the object's bit in
// the span's remoteBits with one atomic OR (after adding one to rcount), and
// the free that takes rcount from 0 pushes the span on this mcentral's
// pending list (a lock-free stack). No lock, no batch, no slot in the
// freeing thread's cache, and the object's memory is not written. Whoever
// next holds this mcentral's lock to refill (or the scavenger, or the
// statistics) takes the whole list with one exchange and merges each span's
// bits into allocBits (merge_remote): owned spans back to their cache as
// above, others to partial or the mheap. A bit already set is a double free,
// caught at once; a bit whose alloc bit is clear at the merge, one caught
// then. The count makes freeing a span safe: a merge subtracts what it took,
// and a span whose count is not back to 0 has frees in flight, so it goes
// back on the pending list and still counts those objects as allocated.
//
// The transfer cache's batches carry an owner (tc_owner): a cache's own
// overflow is tagged with it and goes back only to it; a released cache's
// batches become mixed (0) and go to any cache.
//
// Lock ordering: mcentral.lock, then mheap.lock. Every thread may take any
// mcentral's lock; nothing holding it calls malloc, and it is dropped around
// the mheap call that takes a new span (span_from_heap), so a heap growth's
// system calls never hold up the class's other refills and flushes.
#pragma once

#include <cstddef>
#include <cstdint>

#include "alloc/lock.h"
#include "alloc/mspan.h"

namespace gort::alloc {

inline constexpr uint32_t kTransferSlots = 64;  // batches per class at most

// mspan::owned_where of a span with an owner.
enum ownedWhere : uint8_t {
  kNotOwned = 0,      // the mcentral's: partial, full, or being made
  kOwnedCurrent = 1,  // its cache's current span (mcache::owned)
  kOwnedFull = 2,     // used up, on no list
  kOwnedReclaim = 3,  // on its cache's reclaim list (objects came back)
};

struct alignas(64) mcentral {
  mutex lock;
  uint32_t cls = 0;
  uint32_t batch = 0;   // objects per transfer
  uint32_t tc_max = 0;  // transfer-cache slots in use at most
  uint32_t ntc = 0;
  int64_t tc_used_ns = 0;  // coarse time of the last transfer-cache use
  spanList partial;
  spanList full;
  void** tc = nullptr;  // tc_max batches of batch pointers; the first ntc are full
  // Per full batch: the id of the cache whose spans all its objects are in
  // (a cache's own overflow, or remote frees of one owner's objects), or 0
  // (mixed). A cache refills only from its own batches and mixed ones, so an
  // owner's objects go back to their owner, not to a third thread.
  uint16_t tc_owner[kTransferSlots] = {};
  // Spans with remote frees to merge, linked through mspan::rnext: pushed
  // without the lock (remote_free), taken whole under it.
  mspan* pending = nullptr;
  // Statistics, under lock.
  uint64_t nspans = 0;     // spans of this class now
  uint64_t nfetched = 0;   // objects handed to caches, cumulative
  uint64_t nreturned = 0;  // objects taken back, cumulative

  // Writes up to want object pointers to out and returns how many (0 when
  // the heap cannot grow). c is the caller's cache, whose current span and
  // reclaim list of this class it uses; a caller without a cache passes
  // nullptr and takes objects from the partial list without owning a span.
  // A caller with a cache must have room for a whole batch at out: it gets
  // a whole transfer-cache batch whenever one is its own or mixed, even when
  // it wants fewer. Those objects are already off the mheap, so taking them
  // all costs no memory, while carving a new span for a slow-starting refill
  // left the batch parked here and grew the heap (short_threads: 10-12 MiB
  // of batches nobody took, peak RSS 1.6x glibc's).
  uint32_t alloc_batch(void** out, uint32_t want, mcache* c = nullptr);
  // A cache gives up its spans of this class on its reclaim list, and its
  // current span if current (a released cache, whose live is false already;
  // a stealer leaves the current span to its idle owner).
  // freed_at: as for free_batch.
  void release_owned(mcache* c, bool current, int64_t freed_at = -1);
  // A remote free of object i of s, a small span of this class (no lock).
  void remote_free(mspan* s, uint32_t i);
  // Merges the pending remote frees, if any (takes the lock).
  void collect_remote();
  // A cache that is released: its batches in the transfer cache become mixed.
  void disown_batches(uint16_t owner);
  // Takes back n objects. to_spans bypasses the transfer cache (a thread
  // that exits: its objects are cold, and their spans may become empty).
  // owner: the id of the cache that owns all the objects' spans, or 0.
  // freed_at (with to_spans): when the objects were last used, for the age
  // of spans they empty (-1: now); a stealer passes the time its victim
  // was last active, so that those spans are not younger than they are.
  void free_batch(void* const* objs, uint32_t n, bool to_spans = false, uint16_t owner = 0,
                  int64_t freed_at = -1);
  // Returns the transfer cache's batches to their spans if it has not been
  // used for min_idle_ns; spans this empties count as free since that last
  // use. Returns how long until it would be idle long enough, 0 if it was
  // drained or empty.
  int64_t release_transfer(int64_t min_idle_ns, int64_t now);

 private:
  void return_to_spans(void* const* objs, uint32_t n, int64_t freed_at = -1);
  // Object i of s is back (under lock): its alloc bit, the span's count and
  // lists, and the span to the mheap when it empties.
  void release_object(mspan* s, uint32_t i, int64_t freed_at);
  void collect_remote_locked(int64_t freed_at = -1);
  void merge_remote(mspan* s, int64_t freed_at);
  mspan* span_from_heap();
  void drop_owned_locked(mspan* s, int64_t freed_at = -1);
  uint32_t take_from(mspan* s, void** out, uint32_t want, uint32_t n);
};

extern mcentral g_central[kNumSizeClasses];

void central_init();
// Bytes of spans with remote frees not merged yet (a hint, read racily).
size_t remote_pending_bytes();
// The scavenger's pass over every mcentral (see release_transfer): returns
// the time until the next transfer cache becomes idle enough, or -1 if none
// holds objects.
int64_t release_idle_transfer_caches(int64_t min_idle_ns);

}  // namespace gort::alloc
