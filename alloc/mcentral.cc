// The per-class central free lists; see mcentral.h.
#include "alloc/mcentral.h"

#include <string.h>

#include <atomic>

#include "alloc/mcache.h"
#include "alloc/mheap.h"
#include "alloc/scavenger.h"
#include "alloc/sys.h"

namespace gort::alloc {

constinit mcentral g_central[kNumSizeClasses];

namespace {
// Bytes of the spans on all pending lists (added by the free that makes a
// span pending, taken off by the merge that brings its count back to 0): the
// scavenger starts for them as for free pages (scavenger_poll), so remote
// frees that no refill comes for still go back to the OS.
std::atomic<int64_t> g_pending_bytes{0};
}  // namespace

size_t remote_pending_bytes() {
  int64_t v = g_pending_bytes.load(std::memory_order_relaxed);
  return v > 0 ? static_cast<size_t>(v) : 0;
}

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

uint32_t mcentral::alloc_batch(void** out, uint32_t want, mcache* c) {
  lock_guard g(lock);
  // Remote frees first: objects that came back to the caller's spans are
  // the ones it should reuse, before a new span.
  if (__atomic_load_n(&pending, __ATOMIC_RELAXED)) collect_remote_locked();
  const uint16_t owner = c ? static_cast<uint16_t>(c->owner) : 0;
  // A cache takes a whole batch even when slow start wants fewer (its stack
  // has room for one): see mcentral.h.
  if (ntc > 0 && (want == batch || c)) {
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
    if (c) {
      mspan* s = c->owned[cls];
      if (s) {
        n = take_from(s, out, want, n);
        if (n == want) break;
        // Used up: still the cache's, for the objects that come back to it.
        s->owned_where = kOwnedFull;
        c->owned[cls] = nullptr;
      }
      s = c->reclaim[cls].first;
      if (s) {
        c->reclaim[cls].remove(s);
      } else {
        s = partial.first;
        if (s) {
          partial.remove(s);
        } else {
          s = span_from_heap();
          if (!s) break;
        }
        s->owner = owner;
        s->ocache = c;
        window_set_owner(s, owner);
        c->had_span[cls] = 1;
      }
      s->owned_where = kOwnedCurrent;
      c->owned[cls] = s;
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

void mcentral::release_owned(mcache* c, bool current, int64_t freed_at) {
  // A class the cache never owned a span of has nothing to give up: no lock.
  if (!c->had_span[cls]) return;
  lock_guard g(lock);
  if (mspan* s = current ? c->owned[cls] : nullptr) {
    c->owned[cls] = nullptr;
    drop_owned_locked(s, freed_at);
  }
  while (mspan* s = c->reclaim[cls].first) {
    c->reclaim[cls].remove(s);
    drop_owned_locked(s, freed_at);
  }
}

void mcentral::disown_batches(uint16_t owner) {
  if (__atomic_load_n(&ntc, __ATOMIC_RELAXED) == 0)
    return;  // a stale 0 leaves them for the scavenger
  lock_guard g(lock);
  for (uint32_t i = 0; i < ntc; i++)
    if (tc_owner[i] == owner) tc_owner[i] = 0;
}

// An owned span (on no list) goes back on the list its count says (the
// window keeps the old owner's id as a hint until the next owner's).
void mcentral::drop_owned_locked(mspan* s, int64_t freed_at) {
  s->owner = 0;
  s->ocache = nullptr;
  s->owned_where = kNotOwned;
  if (s->alloc_count == 0) {
    nspans--;
    g_heap.free_span(s, freed_at);
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
    mspan* s = span_of(objs[k]);
    release_object(s, s->objindex(reinterpret_cast<uintptr_t>(objs[k])), freed_at);
  }
}

void mcentral::release_object(mspan* s, uint32_t i, int64_t freed_at) {
  if (!s->is_allocated(i))
    fatal("free(): double free of %p (a %u-byte object)",
          reinterpret_cast<void*>(s->base + uintptr_t{i} * s->elemsize),
          static_cast<unsigned>(s->elemsize));
  s->clear_allocated(i);
  if (i < s->freeindex) s->freeindex = static_cast<uint16_t>(i);
  if (s->owner != 0 && s->owned_where == kOwnedFull &&
      !__atomic_load_n(&s->ocache->live, __ATOMIC_RELAXED)) {
    // A used-up span of a cache that was released since: the mcentral's.
    drop_owned_locked(s, freed_at);
  }
  if (s->owner != 0) {
    // Its cache's: objects come back to the span, the span to the cache.
    s->alloc_count--;
    if (s->owned_where == kOwnedFull) {
      s->owned_where = kOwnedReclaim;
      s->ocache->reclaim[cls].push_back(s);
    } else if (s->owned_where == kOwnedReclaim && s->alloc_count == 0) {
      // Wholly free and not being allocated from: back to the mheap, as an
      // mcentral span would go (its cache takes another when it needs one).
      s->ocache->reclaim[cls].remove(s);
      s->owner = 0;
      s->ocache = nullptr;
      s->owned_where = kNotOwned;
      nspans--;
      g_heap.free_span(s, freed_at);
    }
    return;
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

void mcentral::remote_free(mspan* s, uint32_t i) {
  // The count first, then the bit: a merge that takes the bit has seen the
  // count that goes with it (all seq_cst), so a span whose count a merge
  // brings to 0 has no free in flight and may be freed by it.
  uint32_t before = __atomic_fetch_add(&s->rcount, 1, __ATOMIC_SEQ_CST);
  uint64_t bit = uint64_t{1} << (i % 64);
  if (__atomic_fetch_or(&s->remoteBits()[i / 64], bit, __ATOMIC_SEQ_CST) & bit)
    fatal("free(): double free of %p (a %u-byte object)",
          reinterpret_cast<void*>(s->base + uintptr_t{i} * s->elemsize),
          static_cast<unsigned>(s->elemsize));
  if (before != 0) return;  // on the pending list already, or about to be
  // Before the push: the merge that takes these bytes off sees the span only
  // after it.
  g_pending_bytes.fetch_add(static_cast<int64_t>(s->npages * kPageSize), std::memory_order_relaxed);
  mspan* head = __atomic_load_n(&pending, __ATOMIC_RELAXED);
  do {
    s->rnext = head;
  } while (
      !__atomic_compare_exchange_n(&pending, &head, s, true, __ATOMIC_RELEASE, __ATOMIC_RELAXED));
  // The scavenger merges what no refill comes for (release_transfer): woken
  // if it sleeps, started if enough is pending (no lock is held here).
  if (head == nullptr) {
    scavenger_note_cached();
    scavenger_poll();
  }
}

void mcentral::collect_remote() {
  if (!__atomic_load_n(&pending, __ATOMIC_RELAXED)) return;
  lock_guard g(lock);
  collect_remote_locked();
}

void mcentral::collect_remote_locked(int64_t freed_at) {
  // One exchange takes the whole list: pushes never contend with a pop of
  // one element, so there is no ABA.
  mspan* s = __atomic_exchange_n(&pending, static_cast<mspan*>(nullptr), __ATOMIC_ACQUIRE);
  while (s) {
    mspan* next = s->rnext;
    merge_remote(s, freed_at);
    s = next;
  }
}

void mcentral::merge_remote(mspan* s, int64_t freed_at) {
  uint64_t taken[kMaxObjsPerSpan / 64];
  const uint32_t words = (s->nelems + 63u) / 64u;
  uint32_t k = 0;
  for (uint32_t w = 0; w < words; w++) {
    taken[w] = __atomic_exchange_n(&s->remoteBits()[w], uint64_t{0}, __ATOMIC_SEQ_CST);
    k += static_cast<uint32_t>(__builtin_popcountll(taken[w]));
  }
  // Before any object goes back (the last one may free the span): frees
  // that counted themselves but whose bits were not taken keep the span
  // pending, and their objects keep it allocated.
  uint32_t left = __atomic_sub_fetch(&s->rcount, k, __ATOMIC_SEQ_CST);
  if (left == 0)
    g_pending_bytes.fetch_sub(static_cast<int64_t>(s->npages * kPageSize),
                              std::memory_order_relaxed);
  if (left != 0) {
    mspan* head = __atomic_load_n(&pending, __ATOMIC_RELAXED);
    do {
      s->rnext = head;
    } while (
        !__atomic_compare_exchange_n(&pending, &head, s, true, __ATOMIC_RELEASE, __ATOMIC_RELAXED));
  }
  nreturned += k;
  for (uint32_t w = 0; w < words; w++)
    for (uint64_t b = taken[w]; b; b &= b - 1)
      release_object(s, w * 64 + static_cast<uint32_t>(__builtin_ctzll(b)), freed_at);
}

int64_t mcentral::release_transfer(int64_t min_idle_ns, int64_t now) {
  lock_guard g(lock);
  collect_remote_locked();
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
