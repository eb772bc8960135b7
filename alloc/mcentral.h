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
// Lock ordering: mcentral.lock, then mheap.lock. Every thread may take any
// mcentral's lock; nothing holding it calls malloc.
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
  // Statistics, under lock.
  uint64_t nspans = 0;     // spans of this class now
  uint64_t nfetched = 0;   // objects handed to caches, cumulative
  uint64_t nreturned = 0;  // objects taken back, cumulative

  // Writes up to want object pointers to out and returns how many (0 when
  // the heap cannot grow).
  uint32_t alloc_batch(void** out, uint32_t want);
  // Takes back n objects. to_spans bypasses the transfer cache (a thread
  // that exits: its objects are cold, and their spans may become empty).
  void free_batch(void* const* objs, uint32_t n, bool to_spans = false);
  // Returns the transfer cache's batches to their spans if it has not been
  // used for min_idle_ns; spans this empties count as free since that last
  // use. Returns how long until it would be idle long enough, 0 if it was
  // drained or empty.
  int64_t release_transfer(int64_t min_idle_ns, int64_t now);

 private:
  void return_to_spans(void* const* objs, uint32_t n, int64_t freed_at = -1);
};

extern mcentral g_central[kNumSizeClasses];

void central_init();
// The scavenger's pass over every mcentral (see release_transfer): returns
// the time until the next transfer cache becomes idle enough, or -1 if none
// holds objects.
int64_t release_idle_transfer_caches(int64_t min_idle_ns);

}  // namespace gort::alloc
