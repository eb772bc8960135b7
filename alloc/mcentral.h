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
// from spans takes one span of the class for itself, its owned span, and
// takes objects only from it until it is used up; no other cache allocates
// from it. The span's pages carry the cache's id in the class window
// (mheap.h), and free() pushes an object onto the freeing thread's stack only
// if that thread's cache owns the object's span; any other free is remote: it
// waits in the freeing cache's remote slots and comes back here a batch at a
// time (mcache.h). So objects of one span go out to one thread at a time, a
// thread never gets back from its own stack an object another thread
// allocated (whose neighbours, on the same cache line, that thread may still
// be writing: allocator-induced false sharing, mimalloc-bench's
// cache-scratch), and two threads' objects share a line only when the program
// passed them over. An owned span is on neither list; objects that come back
// to it clear their bits as usual, and the span keeps its pages even when
// all come back (its cache still holds it). The cache gives the span up
// (drop_owned) when it finds it used up, and when it is released (thread
// exit): then the span goes to full, partial or the mheap as its count says.
// The transfer cache's batches carry an owner too (tc_owner): a batch whose
// objects all belong to one cache's spans goes back only to that cache, so
// objects freed remotely return to their owner a batch at a time (mimalloc's
// owner-based free, at batch grain) and producer/consumer pairs pass memory
// back and forth at one lock per batch. A mixed batch (owner 0) goes to any
// cache: one that refills from it gets objects it does not own, and its frees
// of those go back as remote frees.
//
// Lock ordering: mcentral.lock, then mheap.lock. Every thread may take any
// mcentral's lock; nothing holding it calls malloc, and it is dropped around
// the mheap call that takes a new span (span_from_heap), so a heap growth's
// system calls never hold up the class's other refills and flushes.
#pragma once

#include <cstdint>

#include "alloc/lock.h"
#include "alloc/mspan.h"

namespace gort::alloc {

inline constexpr uint32_t kTransferSlots = 64;  // batches per class at most

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
  // Statistics, under lock.
  uint64_t nspans = 0;     // spans of this class now
  uint64_t nfetched = 0;   // objects handed to caches, cumulative
  uint64_t nreturned = 0;  // objects taken back, cumulative

  // Writes up to want object pointers to out and returns how many (0 when
  // the heap cannot grow). owned is the caller's owned span of this class
  // (in and out), owner its cache's id; a caller without a cache passes
  // nullptr and takes objects from the partial list without owning a span.
  // A caller with a cache (owned non-null) must have room for a whole batch
  // at out: it gets a whole transfer-cache batch whenever one is its own or
  // mixed, even when it wants fewer. Those objects are already off the
  // mheap, so taking them all costs no memory, while carving a new span for
  // a slow-starting refill left the batch parked here and grew the heap
  // (short_threads: 10-12 MiB of batches nobody took, peak RSS 1.6x glibc's).
  uint32_t alloc_batch(void** out, uint32_t want, mspan** owned = nullptr, uint16_t owner = 0);
  // The caller's cache gives up its owned span s (thread exit).
  void drop_owned(mspan* s);
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
  mspan* span_from_heap();
  void drop_owned_locked(mspan* s);
  uint32_t take_from(mspan* s, void** out, uint32_t want, uint32_t n);
};

extern mcentral g_central[kNumSizeClasses];

void central_init();
// The scavenger's pass over every mcentral (see release_transfer): returns
// the time until the next transfer cache becomes idle enough, or -1 if none
// holds objects.
int64_t release_idle_transfer_caches(int64_t min_idle_ns);

}  // namespace gort::alloc
