// The per-class central free lists; see mcentral.h.
#include "alloc/mcentral.h"

#include <string.h>

#include "alloc/mheap.h"
#include "alloc/scavenger.h"
#include "alloc/sys.h"

namespace gort::alloc {

constinit mcentral g_central[kNumSizeClasses];

void central_init() {
  size_t total = 0;
  for (uint32_t c = 1; c < kNumSizeClasses; c++) {
    mcentral& m = g_central[c];
    m.cls = c;
    m.batch = class_batch(c);
    // At most ~128 KiB of a class waits in its transfer cache (at least two
    // batches), ~8 MiB over all classes: enough to pass batches between
    // threads that allocate and free at different rates, little enough that
    // a burst of frees from many threads does not park tens of MiB here.
    // Classes of 4 KiB and more get 512 KiB: their spans hold one to a few
    // objects, so an object that does not wait here costs a span from the
    // mheap (its lock, the page map) on the next allocation.
    size_t budget = class_to_size[c] >= 4096 ? 512 * 1024 : 128 * 1024;
    uint32_t slots = static_cast<uint32_t>(budget / (m.batch * class_to_size[c]));
    m.tc_max = slots < 2 ? 2 : slots > kTransferSlots ? kTransferSlots : slots;
    total += size_t{m.tc_max} * m.batch;
  }
  // One mapping for every class's transfer cache; pages are touched only as
  // batches arrive.
  void** slab = static_cast<void**>(sys_map(total * sizeof(void*), 4096));
  if (!slab) fatal("out of memory mapping the transfer caches");
  for (uint32_t c = 1; c < kNumSizeClasses; c++) {
    g_central[c].tc = slab;
    slab += size_t{g_central[c].tc_max} * g_central[c].batch;
  }
}

// Takes objects from s into out[want-1-n] downwards until out is full or s
// is used up; returns the new n.
uint32_t mcentral::take_from(mspan* s, void** out, uint32_t want, uint32_t n) {
  const uint32_t size = class_to_size[cls];
  while (n < want) {
    uint32_t i = s->next_free_index();
    if (i >= s->nelems) break;
    s->set_allocated(i);
    s->freeindex = static_cast<uint16_t>(i + 1);
    s->alloc_count++;
    // Highest address at the bottom: the cache pops from the top, so the
    // program gets ascending addresses.
    out[want - 1 - n] = reinterpret_cast<void*>(s->base + uintptr_t{i} * size);
    n++;
  }
  return n;
}

uint32_t mcentral::alloc_batch(void** out, uint32_t want, mspan** owned, uint16_t owner) {
  lock_guard g(lock);
  // A cache takes a whole batch even when slow start wants fewer (its stack
  // has room for one): see mcentral.h.
  if (ntc > 0 && (want == batch || owned)) {
    // The newest batch that is the caller's or mixed; another cache's
    // batches wait for their owner.
    for (uint32_t i = ntc; i-- > 0;) {
      if (tc_owner[i] != owner && tc_owner[i] != 0) continue;
      tc_used_ns = coarse_nanotime();
      nfetched += batch;
      memcpy(out, tc + size_t{i} * batch, batch * sizeof(void*));
      if (i != --ntc) {
        memcpy(tc + size_t{i} * batch, tc + size_t{ntc} * batch, batch * sizeof(void*));
        tc_owner[i] = tc_owner[ntc];
      }
      return batch;
    }
  }
  uint32_t n = 0;
  while (n < want) {
    if (owned) {
      mspan* s = *owned;
      if (s) {
        n = take_from(s, out, want, n);
        if (n == want) break;
        drop_owned_locked(s);  // used up
        *owned = nullptr;
      }
      s = partial.first;
      if (s) {
        partial.remove(s);
      } else {
        s = span_from_heap();
        if (!s) break;
      }
      s->owner = owner;
      window_set_owner(s, owner);
      *owned = s;
      continue;
    }
    mspan* s = partial.first;
    if (!s) {
      s = span_from_heap();
      if (!s) break;
      partial.push_front(s);
    }
    n = take_from(s, out, want, n);
    if (s->alloc_count == s->nelems) {
      partial.remove(s);
      full.push_front(s);
    }
  }
  if (n < want) memmove(out, out + (want - n), n * sizeof(void*));
  nfetched += n;
  return n;
}

// A new span of the class from the mheap, with this mcentral's lock dropped
// around the call: the mheap may grow the heap (mmap, mprotect, page faults
// on new metadata), and other threads' refills and flushes of this class
// must not wait for that. The caller holds the lock before and after; the
// new span is on no list yet, so nothing else can see it meanwhile.
mspan* mcentral::span_from_heap() {
  lock.unlock();
  mspan* s = g_heap.alloc_small_span(cls);
  lock.lock();
  if (s) nspans++;
  return s;
}

void mcentral::drop_owned(mspan* s) {
  lock_guard g(lock);
  drop_owned_locked(s);
}

void mcentral::disown_batches(uint16_t owner) {
  if (__atomic_load_n(&ntc, __ATOMIC_RELAXED) == 0)
    return;  // a stale 0 leaves them for the scavenger
  lock_guard g(lock);
  for (uint32_t i = 0; i < ntc; i++)
    if (tc_owner[i] == owner) tc_owner[i] = 0;
}

// An owned span goes back on the list its count says (the window keeps the
// old owner's id as a hint until the next owner's).
void mcentral::drop_owned_locked(mspan* s) {
  s->owner = 0;
  if (s->alloc_count == 0) {
    nspans--;
    g_heap.free_span(s);
  } else if (s->alloc_count == s->nelems) {
    full.push_front(s);
  } else {
    partial.push_front(s);
  }
}

void mcentral::free_batch(void* const* objs, uint32_t n, bool to_spans, uint16_t owner,
                          int64_t freed_at) {
  lock_guard g(lock);
  nreturned += n;
  if (n == batch && ntc < tc_max && !to_spans) {
    tc_used_ns = coarse_nanotime();
    tc_owner[ntc] = owner;
    memcpy(tc + size_t{ntc++} * batch, objs, batch * sizeof(void*));
    scavenger_note_cached();
    return;
  }
  return_to_spans(objs, n, freed_at);
}

void mcentral::return_to_spans(void* const* objs, uint32_t n, int64_t freed_at) {
  for (uint32_t k = 0; k < n; k++) {
    void* p = objs[k];
    mspan* s = span_of(p);
    uint32_t i = s->objindex(reinterpret_cast<uintptr_t>(p));
    if (!s->is_allocated(i))
      fatal("free(): double free of %p (a %u-byte object)", p, static_cast<unsigned>(s->elemsize));
    s->clear_allocated(i);
    if (i < s->freeindex) s->freeindex = static_cast<uint16_t>(i);
    if (s->owner != 0) {  // on no list; its cache still holds it
      s->alloc_count--;
      continue;
    }
    if (s->alloc_count == s->nelems) {
      full.remove(s);
      partial.push_front(s);
    }
    if (--s->alloc_count == 0) {
      partial.remove(s);
      nspans--;
      g_heap.free_span(s, freed_at);
    }
  }
}

int64_t mcentral::release_transfer(int64_t min_idle_ns, int64_t now) {
  lock_guard g(lock);
  if (ntc == 0) return 0;
  int64_t idle = now - tc_used_ns;
  if (idle < min_idle_ns) return min_idle_ns - idle;
  while (ntc > 0) {
    ntc--;
    return_to_spans(tc + size_t{ntc} * batch, batch, tc_used_ns);
  }
  // The slots hold nothing now; their pages read as zero when reused.
  sys_release_inner(tc, size_t{tc_max} * batch * sizeof(void*));
  return 0;
}

int64_t release_idle_transfer_caches(int64_t min_idle_ns) {
  int64_t now = coarse_nanotime(), next = -1;
  for (uint32_t c = 1; c < kNumSizeClasses; c++) {
    int64_t wait = g_central[c].release_transfer(min_idle_ns, now);
    if (wait > 0 && (next < 0 || wait < next)) next = wait;
  }
  return next;
}

}  // namespace gort::alloc
