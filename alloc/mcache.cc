// Thread caches: refill, flush, creation and thread exit; see mcache.h.
#include "alloc/mcache.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "alloc/init.h"
#include "alloc/lock.h"
#include "alloc/mcentral.h"
#include "alloc/mprof.h"
#include "alloc/scavenger.h"
#include "alloc/sys.h"

namespace gort::alloc {

__thread threadState tl_thread __attribute__((tls_model("initial-exec")));

namespace {

// g_caches_lock guards the registry of live caches and the pool of caches of
// exited threads. It is taken only when a thread starts or exits, and for
// statistics; it is taken before any mcentral lock.
constinit mutex g_caches_lock;
mcache* g_live = nullptr;
// Caches of exited threads, for the next thread. Their slot pages stay
// resident for the scavenger's delay (threads that come and go reuse warm
// slots) and then go back to the OS (caches_trim_pool).
mcache* g_pool = nullptr;
constinit fixalloc<mcache, size_t{4} << 30> g_cache_alloc;  // ~50,000 live threads
pthread_key_t g_key;

// Cache ids (mcache::owner), 1..65535; a cache keeps its id for life. With
// more caches than that, ids repeat: two caches with one id treat each
// other's objects as their own, which costs only the false-sharing guarantee
// between the two (every free stays correct). Guarded by g_caches_lock.
uint32_t g_next_owner = 0;

// ---- heap profile sampling (alloc/mprof.h) ----
//
// While profiling is on, every push onto a stack happens on a slow path
// (free() never takes its fast path), so between two slow events on a class
// the pops are exactly armed_cur - cur. disarm() charges them and puts the
// stack's base back; arm() raises the base so that the pop that is due to be
// sampled finds the stack empty and comes to alloc_class_slow. Every other
// function here sees the real base: they run between disarm and arm.

void prof_disarm(mcache* c, uint32_t cls) {
  auto* pc = static_cast<mprofCache*>(c->prof);
  if (!pc) return;
  mprofClass& pcl = pc->cls[cls];
  freeStack& st = c->stacks[cls];
  if (pcl.armed_cur && pcl.left) {  // left 0: a new rate, drawn again by prof_arm
    uint32_t pops = static_cast<uint32_t>(pcl.armed_cur - st.cur);
    pcl.left = pops < pcl.left ? pcl.left - pops : 1;
  }
  pcl.armed_cur = nullptr;
  st.base -= pcl.raise;
  pcl.raise = 0;
}

void prof_arm(mcache* c, uint32_t cls) {
  mprofCache* pc = mprof_cache(c);
  if (!pc) return;
  mprofClass& pcl = pc->cls[cls];
  freeStack& st = c->stacks[cls];
  if (pcl.left == 0) pcl.left = mprof_next_pops(pc, class_to_size[cls]);
  uint32_t n = static_cast<uint32_t>(st.cur - st.base);
  pcl.raise = pcl.left - 1 < n ? n - (pcl.left - 1) : 0;
  st.base += pcl.raise;
  pcl.armed_cur = st.cur;
}

void prof_disarm_all(mcache* c) {
  if (!c->prof) return;
  for (uint32_t cls = 1; cls < kNumSizeClasses; cls++) prof_disarm(c, cls);
}

void init_stacks(mcache* c) {
  void** slot = c->slots + 1;
  for (uint32_t cls = 1; cls < kNumSizeClasses; cls++) {
    freeStack& st = c->stacks[cls];
    st.base = st.cur = slot;
    st.nslots = static_cast<uint16_t>(class_cache_slots(cls));
    slot += st.nslots;
    st.end = slot;
    st.refill = static_cast<uint16_t>(class_batch(cls) / 8 > 0 ? class_batch(cls) / 8 : 1);
    c->owned[cls] = nullptr;
  }
  c->stacks[0] = freeStack{c->slots + 1, c->slots + 1, c->slots + 1, 0, 0, 0};
  c->owned[0] = nullptr;
  for (mspan*& l : c->large) l = nullptr;
  c->large_bytes = 0;
}

// The owner of every object in objs[0..n) (their window entries), or 0.
uint16_t common_owner(void* const* objs, uint32_t n) {
  uint32_t o = window_owner(window_entry(objs[0]));
  for (uint32_t i = 1; i < n; i++)
    if (window_owner(window_entry(objs[i])) != o) return 0;
  return static_cast<uint16_t>(o);
}

// Sends the remote slots of a stack to the mcentral: to its transfer cache,
// for their owner, when they all have one owner; otherwise back to their
// spans (their owners' spans keep them for their owners), so no object
// reaches a third thread while its owner may be writing its neighbours.
void flush_remote(uint32_t cls, freeStack& st, bool to_spans) {
  uint32_t n = static_cast<uint32_t>(st.rend() - st.end);
  if (n == 0) return;
  uint16_t owner = to_spans ? 0 : common_owner(st.end, n);
  g_central[cls].free_batch(st.end, n, to_spans || owner == 0, owner);
  st.end = st.rend();
}

// Gives the n oldest objects of a stack (its bottom) back to the mcentral,
// for this cache (owner) alone: they are its own objects, or objects of a
// transfer-cache batch it took and never handed out.
void give_back(uint32_t cls, freeStack& st, uint32_t n, uint16_t owner, bool to_spans = false) {
  g_central[cls].free_batch(st.base, n, to_spans, owner);
  size_t left = static_cast<size_t>(st.cur - st.base) - n;
  memmove(st.base, st.base + n, left * sizeof(void*));
  st.cur = st.base + left;
}

// Empties a cache into the mcentrals and retires it (thread exit, fork child).
void release_cache(mcache* c) {
  prof_disarm_all(c);
  for (uint32_t cls = 1; cls < kNumSizeClasses; cls++) {
    freeStack& st = c->stacks[cls];
    uint32_t batch = g_central[cls].batch;
    flush_remote(cls, st, true);
    while (st.cur > st.base) {
      uint32_t have = static_cast<uint32_t>(st.cur - st.base);
      give_back(cls, st, have < batch ? have : batch, 0, true);
    }
    // Last, so that the objects above come back to the span first and an
    // owned span that is now empty goes straight back to the mheap.
    if (mspan* s = c->owned[cls]) {
      c->owned[cls] = nullptr;
      g_central[cls].drop_owned(s);
    }
    g_central[cls].disown_batches(static_cast<uint16_t>(c->owner));
  }
  for (mspan*& l : c->large) {
    while (mspan* s = l) {
      l = s->next;
      s->state = spanState::large;
      g_heap.free_span(s);
    }
  }
  c->large_bytes = 0;
  lock_guard g(g_caches_lock);
  if (c->prev_all)
    c->prev_all->next_all = c->next_all;
  else
    g_live = c->next_all;
  if (c->next_all) c->next_all->prev_all = c->prev_all;
  c->next_all = g_pool;
  g_pool = c;
  c->pooled_at = coarse_nanotime();
  c->slots_resident = true;
}

void thread_exit(void* arg) {
  mcache* c = static_cast<mcache*>(arg);
  tl_thread.cache = nullptr;
  tl_thread.gccache = nullptr;
  tl_thread.exited = 1;
  release_cache(c);
  scavenger_poll();
}

}  // namespace

void caches_init() {
  pthread_key_create(&g_key, thread_exit);
}

mcache* cache_create() {
  ensure_init();
  lock_guard g(g_caches_lock);
  mcache* c = g_pool;
  if (c)
    g_pool = c->next_all;
  else
    c = g_cache_alloc.try_alloc();
  if (!c) return nullptr;  // no memory for a cache: the thread allocates uncached
  if (c->owner == 0)
    c->owner = g_next_owner++ % 65535 + 1;  // a new cache (fixalloc memory is zero)
  init_stacks(c);
  c->prev_all = nullptr;
  c->next_all = g_live;
  if (g_live) g_live->prev_all = c;
  g_live = c;
  return c;
}

void cache_destroy(mcache* c) {
  release_cache(c);
}

mcache* cache_for_thread() {
  if (tl_thread.cache) return tl_thread.cache;
  if (tl_thread.exited || tl_thread.creating) return nullptr;
  tl_thread.creating = 1;
  mcache* c = cache_create();
  pthread_setspecific(g_key, c);
  tl_thread.cache = c;
  tl_thread.gccache = nullptr;
  tl_thread.creating = 0;
  return c;
}

void* alloc_direct(uint32_t cls) {
  ensure_init();
  void* p;
  if (g_central[cls].alloc_batch(&p, 1) == 0) {
    errno = ENOMEM;
    return nullptr;
  }
  return p;
}

void free_direct(void* p) {
  g_central[span_of(p)->free_class].free_batch(&p, 1);
}

// The profiling variant of alloc_class_slow: the pop that is due is sampled.
__attribute__((noinline)) void* alloc_class_prof(mcache* c, uint32_t cls) {
  prof_disarm(c, cls);
  freeStack& st = c->stacks[cls];
  auto* pc = static_cast<mprofCache*>(c->prof);
  if (pc && pc->cls[cls].left == 1 && st.cur != st.base) {
    void* p = *--st.cur;
    pc->cls[cls].left = 0;  // drawn again by prof_arm
    prof_arm(c, cls);
    mprof_sample(pc, p, class_to_size[cls]);
    return p;
  }
  if (st.cur == st.base) {
    uint32_t batch = g_central[cls].batch;
    uint32_t got = g_central[cls].alloc_batch(st.base, st.refill);
    if (got == 0) {
      prof_arm(c, cls);
      errno = ENOMEM;
      return nullptr;
    }
    st.cur = st.base + got;
    if (st.refill < batch) st.refill = st.refill * 2 < batch ? st.refill * 2 : batch;
    scavenger_poll();
  }
  prof_arm(c, cls);
  // Counted as a pop by the next disarm; if it is the sampled one, the raised
  // base sends it back here.
  return alloc_class(cls);
}

void* alloc_class_slow(uint32_t cls) {
  mcache* c = cache_for_thread();
  if (!c) return alloc_direct(cls);
  if (prof_on()) return alloc_class_prof(c, cls);
  freeStack& st = c->stacks[cls];
  if (st.cur == st.base) {
    uint32_t batch = g_central[cls].batch;
    uint32_t got = g_central[cls].alloc_batch(st.base, st.refill, &c->owned[cls],
                                              static_cast<uint16_t>(c->owner));
    if (got == 0) {
      errno = ENOMEM;
      return nullptr;
    }
    st.cur = st.base + got;
    if (st.refill < batch)
      st.refill = static_cast<uint16_t>(st.refill * 2 < batch ? st.refill * 2 : batch);
    scavenger_poll();
  }
  return alloc_class(cls);
}

void free_cache_slow(mcache* c, uint32_t cls, void* p) {
  bool prof = prof_on();
  if (prof) prof_disarm(c, cls);
  freeStack& st = c->stacks[cls];
  if (st.cur > st.base && st.cur[-1] == p)
    fatal("free(): double free of %p (a %u-byte object)", p, class_to_size[cls]);
  if (st.cur == st.end) {
    give_back(cls, st, g_central[cls].batch, static_cast<uint16_t>(c->owner));
    scavenger_poll();
  }
  *st.cur++ = p;
  if (prof) prof_arm(c, cls);
}

void free_remote(mcache* c, void* p, uint32_t e) {
  uint32_t cls = e & 0xff;
  if (cls == 0 || !class_object_start(cls, window_span_offset(p, e))) return free_slow(p);
  free_remote_push(c, cls, p);
}

void free_remote_push(mcache* c, uint32_t cls, void* p) {
  freeStack& st = c->stacks[cls];
  if (st.end < st.rend() && *st.end == p)
    fatal("free(): double free of %p (a %u-byte object)", p, class_to_size[cls]);
  uint32_t batch = g_central[cls].batch;
  // A full batch of remote frees goes back before p joins the slots, not
  // after: p stays the newest slot, so the check above still sees it if the
  // program frees it again next (flushing p with the batch lost that check).
  if (static_cast<uint32_t>(st.rend() - st.end) >= batch) {
    flush_remote(cls, st, false);
    scavenger_poll();
  }
  // Fewer than a batch are remote now, so a full stack has a batch of its own
  // to give back.
  if (st.cur == st.end) give_back(cls, st, batch, static_cast<uint16_t>(c->owner));
  *--st.end = p;
}

int64_t caches_trim_pool(int64_t min_age_ns) {
  lock_guard g(g_caches_lock);
  int64_t now = coarse_nanotime(), next = -1;
  for (mcache* c = g_pool; c; c = c->next_all) {
    if (!c->slots_resident) continue;
    int64_t age = now - c->pooled_at;
    if (age >= min_age_ns) {
      sys_release_inner(c->slots, sizeof c->slots);
      c->slots_resident = false;
    } else if (next < 0 || min_age_ns - age < next) {
      next = min_age_ns - age;
    }
  }
  return next;
}

void caches_lock() {
  g_caches_lock.lock();
}
void caches_unlock() {
  g_caches_lock.unlock();
}

void caches_fork_child() {
  g_caches_lock.reset();
  // Only the forking thread exists in the child. The other threads' caches
  // are abandoned, not drained: a thread may have been stopped half way
  // through moving a batch (objects both in its stack and in an mcentral), so
  // draining could free an object twice. The child leaks at most their
  // contents, as it leaks their stacks.
  mcache* mine = tl_thread.cache;
  g_live = mine;
  if (mine) mine->prev_all = mine->next_all = nullptr;
}

void cache_counts(uint64_t* cached, size_t* large_cached_bytes, size_t* ncaches) {
  lock_guard g(g_caches_lock);
  size_t n = 0;
  *large_cached_bytes = 0;
  for (uint32_t cls = 0; cls < kNumSizeClasses; cls++) cached[cls] = 0;
  // Other threads move their cur pointers without synchronisation: the sums
  // are a snapshot that may be a few operations stale, never torn.
  for (mcache* c = g_live; c; c = c->next_all, n++) {
    *large_cached_bytes += __atomic_load_n(&c->large_bytes, __ATOMIC_RELAXED);
    for (uint32_t cls = 1; cls < kNumSizeClasses; cls++) {
      const freeStack& st = c->stacks[cls];
      void** cur = __atomic_load_n(&st.cur, __ATOMIC_RELAXED);
      void** end = __atomic_load_n(&st.end, __ATOMIC_RELAXED);
      cached[cls] += static_cast<uint64_t>(cur - st.base) + static_cast<uint64_t>(st.rend() - end);
    }
  }
  *ncaches = n;
}

}  // namespace gort::alloc
