// Thread caches: refill, flush, creation and thread exit; see mcache.h.
#include "alloc/mcache.h"

#include <errno.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>

#include "alloc/init.h"
#include "alloc/lock.h"
#include "alloc/mcentral.h"
#include "alloc/mprof.h"
#include "alloc/options.h"
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
bool g_key_made = false;

// Cache ids (mcache::owner), 1..65535; a cache keeps its id for life. With
// more caches than that, ids repeat: two caches with one id treat each
// other's objects as their own, which costs only the false-sharing guarantee
// between the two (every free stays correct). Guarded by g_caches_lock.
uint32_t g_next_owner = 0;

// ---- the thread-cache budget (mcache.h) ----
//
// g_held: the sum of the caches' published estimates (mcache::published),
// moved in steps of at least kPublishStep so that slow paths of different
// threads rarely write this line. g_nlive: live thread and P caches (for the
// share), under g_caches_lock for writers.
constexpr size_t kPublishStep = 64 << 10;
std::atomic<int64_t> g_held{0};
std::atomic<uint32_t> g_nlive{0};
// membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED): 0 not tried, 1 registered,
// -1 unavailable (nothing is ever stolen). Scavenger thread only, plus reads.
std::atomic<int> g_membarrier{0};
std::atomic<uint64_t> g_steals{0};  // caches stolen from, cumulative
bool membarrier_ready();

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
  // reclaim[] is not reset: a pooled cache's lists were emptied when it was
  // released (fixalloc memory starts empty), and a merge may only add to
  // them once live is set again (cache_create).
  for (mspan*& l : c->large) l = nullptr;
  c->large_bytes = 0;
  c->large_limit = kLargeCacheStart;
  c->large_ghost = 0;
  for (uint32_t cls = 0; cls < kNumSizeClasses; cls++) c->stolen[cls] = 0, c->noted[cls] = 0;
  c->detached = 0;
  c->ts = nullptr;
  c->held = c->published = 0;
}

size_t share() {
  size_t b = static_cast<size_t>(g_options.thread_cache);
  uint32_t n = g_nlive.load(std::memory_order_relaxed);
  size_t s = b / (n ? n : 1);
  return s > kMinShare ? s : kMinShare;
}

bool over_budget() {
  int64_t b = g_options.thread_cache;
  return b > 0 && g_held.load(std::memory_order_relaxed) > b;
}

// Moves c's published estimate towards held when they differ by a step.
inline void publish(mcache* c) {
  int64_t d = static_cast<int64_t>(c->held) - static_cast<int64_t>(c->published);
  if (d < static_cast<int64_t>(kPublishStep) && d > -static_cast<int64_t>(kPublishStep)) return;
  c->published = c->held;
  int64_t before = g_held.fetch_add(d, std::memory_order_relaxed);
  int64_t b = g_options.thread_cache;
  // Crossing the budget upwards: the scavenger trims the caches over their
  // share that do not come to their slow paths.
  if (b > 0 && before <= b && before + d > b) scavenger_limit_kick();
}

uint32_t stack_count(const freeStack& st) {
  return static_cast<uint32_t>(st.cur - st.base);
}

// Brings c->held up to date for class cls (the owner, under c->lock).
inline void note(mcache* c, uint32_t cls) {
  uint32_t n = stack_count(c->stacks[cls]);
  c->held += (static_cast<size_t>(n) - c->noted[cls]) * class_to_size[cls];
  c->noted[cls] = n;
  __atomic_store_n(&c->slow_seq, c->slow_seq + 1, __ATOMIC_RELAXED);
  publish(c);
}

// Exact bytes in c now, and noted[] brought up to date (under c->lock, by the
// owner or by a stealer once the owner is detached).
void recount(mcache* c) {
  size_t held = c->large_bytes;
  for (uint32_t cls = 1; cls < kNumSizeClasses; cls++) {
    uint32_t n = stack_count(c->stacks[cls]) - c->stolen[cls];
    c->noted[cls] = n;
    held += size_t{n} * class_to_size[cls];
  }
  c->held = held;
  publish(c);
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

// The owner's side of the steal handshake (mcache.h), under c->lock: slides
// what a stealer left of each stack (the objects above stolen[cls]) down to
// base, clears detached and, if reattach, points this thread's
// tl_thread.cache back at c. Only the owner calls it: a fast-path operation
// it was in the middle of when it was detached has finished by now.
__attribute__((noinline)) void sync_slow(mcache* c, bool reattach) {
  if (__atomic_load_n(&c->detached, __ATOMIC_ACQUIRE)) {
    for (uint32_t cls = 1; cls < kNumSizeClasses; cls++) {
      freeStack& st = c->stacks[cls];
      if (uint32_t k = c->stolen[cls]) {
        size_t n = static_cast<size_t>(st.cur - st.base);
        // More pops on the detached cache than kStealKeep allows for.
        if (n < k) fatal("thread cache: %zu objects left of class %u, %u stolen", n, cls, k);
        memmove(st.base, st.base + k, (n - k) * sizeof(void*));
        st.cur = st.base + (n - k);
        c->stolen[cls] = 0;
      }
    }
    __atomic_store_n(&c->detached, 0, __ATOMIC_RELEASE);
  }
  if (reattach && c->ts == &tl_thread && tl_thread.cache == nullptr) tl_thread.cache = c;
}

inline void sync_locked(mcache* c, bool reattach) {
  if (__atomic_load_n(&c->detached, __ATOMIC_ACQUIRE) || (reattach && tl_thread.cache == nullptr))
    sync_slow(c, reattach);
}

// Returns the cache's kept large spans to the mheap (under c->lock).
void free_kept_large(mcache* c) {
  for (mspan*& l : c->large) {
    while (mspan* s = l) {
      l = s->next;
      s->state = spanState::large;
      g_heap.free_span(s);
    }
  }
  c->large_bytes = 0;
}

// A cache over its share while the sum is over the budget gives back all but
// one slow-start refill of each class and its kept large spans (the owner,
// under c->lock).
void shrink_locked(mcache* c) {
  for (uint32_t cls = 1; cls < kNumSizeClasses; cls++) {
    freeStack& st = c->stacks[cls];
    uint32_t have = static_cast<uint32_t>(st.cur - st.base);
    uint32_t keep = st.refill;
    uint32_t batch = g_central[cls].batch;
    while (have > keep) {
      uint32_t n = have - keep < batch ? have - keep : batch;
      give_back(cls, st, n, static_cast<uint16_t>(c->owner));
      have -= n;
    }
  }
  free_kept_large(c);
  recount(c);
}

// After a slow-path event of class cls (the owner, under c->lock).
void account(mcache* c, uint32_t cls) {
  note(c, cls);
  if (over_budget() && c->held > share()) shrink_locked(c);
}

// Empties a cache into the mcentrals and retires it (thread exit, fork child).
void release_cache(mcache* c) {
  c->lock.lock();
  sync_locked(c, false);
  c->ts = nullptr;  // no stealer touches it from now on
  prof_disarm_all(c);
  // From here on, objects that come back to this cache's used-up spans make
  // those spans the mcentral's (mcentral::release_object); each class's
  // pass below takes the mcentral's lock, after which every merge sees it.
  __atomic_store_n(&c->live, 0, __ATOMIC_RELAXED);
  for (uint32_t cls = 1; cls < kNumSizeClasses; cls++) {
    freeStack& st = c->stacks[cls];
    uint32_t batch = g_central[cls].batch;
    while (st.cur > st.base) {
      uint32_t have = static_cast<uint32_t>(st.cur - st.base);
      give_back(cls, st, have < batch ? have : batch, 0, true);
    }
    // Last, so that the objects above come back to the spans first and an
    // owned span that is now empty goes straight back to the mheap.
    g_central[cls].release_owned(c, true);
    g_central[cls].disown_batches(static_cast<uint16_t>(c->owner));
  }
  free_kept_large(c);
  c->held = 0;
  g_held.fetch_sub(static_cast<int64_t>(c->published), std::memory_order_relaxed);
  c->published = 0;
  c->lock.unlock();
  lock_guard g(g_caches_lock);
  g_nlive.fetch_sub(1, std::memory_order_relaxed);
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
  g_key_made = true;
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
  __atomic_store_n(&c->live, 1, __ATOMIC_RELAXED);
  c->seen_seq = c->slow_seq;
  c->seen_at = coarse_nanotime();
  g_nlive.fetch_add(1, std::memory_order_relaxed);
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
  // A cache a stealer detached (or an M's own cache while it held a P):
  // take it back.
  if (g_key_made) {
    if (mcache* c = static_cast<mcache*>(pthread_getspecific(g_key))) {
      lock_guard g(c->lock);
      sync_locked(c, true);
      tl_thread.cache = c;
      return c;
    }
  }
  tl_thread.creating = 1;
  mcache* c = cache_create();
  if (c) {
    lock_guard g(c->lock);
    c->ts = &tl_thread;
  }
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
  void* sampled = nullptr;
  mprofCache* spc = nullptr;
  {
    lock_guard g(c->lock);
    sync_locked(c, true);
    prof_disarm(c, cls);
    freeStack& st = c->stacks[cls];
    auto* pc = static_cast<mprofCache*>(c->prof);
    if (pc && pc->cls[cls].left == 1 && st.cur != st.base) {
      sampled = *--st.cur;
      spc = pc;
      pc->cls[cls].left = 0;  // drawn again by prof_arm
      prof_arm(c, cls);
    }
  }
  if (sampled) {
    // With no lock held: the capture may allocate (the unwinder) and may be
    // stopped by the collector (mprof.cc).
    mprof_sample(spc, sampled, class_to_size[cls]);
    return sampled;
  }
  {
    lock_guard g(c->lock);
    sync_locked(c, true);
    freeStack& st = c->stacks[cls];
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
      note(c, cls);
    }
    prof_arm(c, cls);
  }
  scavenger_poll();
  // Counted as a pop by the next disarm; if it is the sampled one, the raised
  // base sends it back here.
  return alloc_class(cls);
}

void* alloc_class_slow(uint32_t cls) {
  mcache* c = cache_for_thread();
  if (!c) return alloc_direct(cls);
  if (prof_on()) return alloc_class_prof(c, cls);
  {
    lock_guard g(c->lock);
    sync_locked(c, true);
    freeStack& st = c->stacks[cls];
    if (st.cur == st.base) {
      uint32_t batch = g_central[cls].batch;
      uint32_t got = g_central[cls].alloc_batch(st.base, st.refill, c);
      if (got == 0) {
        errno = ENOMEM;
        return nullptr;
      }
      st.cur = st.base + got;
      if (st.refill < batch)
        st.refill = static_cast<uint16_t>(st.refill * 2 < batch ? st.refill * 2 : batch);
      account(c, cls);
    }
  }
  scavenger_poll();
  // Through the fast path: if a stealer detached the cache since the lock
  // was dropped, it sends this call back here.
  return alloc_class(cls);
}

void free_cache_slow(mcache* c, uint32_t cls, void* p) {
  freeStack& top = c->stacks[cls];
  // A push that moves no batch needs no lock, as on the fast path: on a cache
  // a stealer detached since it was checked, it is the one operation at the
  // top of a stack that a stealer allows for.
  if (!prof_on() && top.cur != top.end && !__atomic_load_n(&c->detached, __ATOMIC_RELAXED)) {
    if (top.cur > top.base && top.cur[-1] == p)
      fatal("free(): double free of %p (a %u-byte object)", p, class_to_size[cls]);
    *top.cur++ = p;
    return;
  }
  bool poll = false;
  {
    lock_guard g(c->lock);
    sync_locked(c, true);
    bool prof = prof_on();
    if (prof) prof_disarm(c, cls);
    freeStack& st = c->stacks[cls];
    if (st.cur > st.base && st.cur[-1] == p)
      fatal("free(): double free of %p (a %u-byte object)", p, class_to_size[cls]);
    if (st.cur == st.end) {
      give_back(cls, st, g_central[cls].batch, static_cast<uint16_t>(c->owner));
      poll = true;
    }
    *st.cur++ = p;
    if (poll) account(c, cls);
    if (prof) prof_arm(c, cls);
  }
  if (poll) scavenger_poll();
}

bool free_remote_small(void* p, uint32_t e) {
  uint32_t cls = e & 0xff;
  if (cls == 0 || !class_object_start(cls, window_span_offset(p, e))) return false;
  free_remote_object(span_of(p), cls, p);
  return true;
}

void free_remote(mcache*, void* p, uint32_t e) {
  if (e == 0 && !prof_on()) {
    // Not in a small span: most often the start of a large block, kept
    // here without the detour through free_slow (pair/65536: 10.3 -> 8.9 ns).
    mspan* s = span_of(p);
    if (s && s->state == spanState::large && reinterpret_cast<uintptr_t>(p) == s->base &&
        cache_keep_large(s))
      return;
  } else if (free_remote_small(p, e)) {
    return;
  }
  free_slow(p);
}

void free_remote_object(mspan* s, uint32_t cls, void* p) {
  g_central[cls].remote_free(s, s->objindex(reinterpret_cast<uintptr_t>(p)));
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
  if (!mine && !tl_thread.exited && g_key_made)
    mine = static_cast<mcache*>(pthread_getspecific(g_key));
  g_live = mine;
  if (mine) {
    mine->prev_all = mine->next_all = nullptr;
    // Only a stealer, holding g_caches_lock (taken by prepare), takes another
    // thread's cache lock: nobody holds this one.
    mine->lock.reset();
  }
  g_nlive.store(mine ? 1 : 0, std::memory_order_relaxed);
  g_held.store(mine ? static_cast<int64_t>(mine->published) : 0, std::memory_order_relaxed);
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
      uint64_t stolen = __atomic_load_n(&c->stolen[cls], __ATOMIC_RELAXED);
      uint64_t local = static_cast<uint64_t>(cur - st.base);
      cached[cls] += local > stolen ? local - stolen : 0;
    }
  }
  *ncaches = n;
}

// Kept large spans, the owner's side: no lock. The only other thread that
// touches large[] is a stealer (steal), and it does so only after detaching
// the cache and running membarrier. The owner sets large_busy before it checks
// that the cache is still its own and clears it when done: after the
// membarrier the stealer either sees large_busy set (and takes nothing) or
// the owner sees its cache word null (and goes to the mheap). The lock it
// took before cost pair/65536 (a loop of malloc and free of 64 KiB) 32 ns
// against TCMalloc's 4 (bench/results/alloc-refresh.md).
inline bool large_enter(mcache* c) {
  __atomic_store_n(&c->large_busy, 1, __ATOMIC_RELAXED);
  // Keeps the store before the load in the code; the stealer's membarrier
  // makes it a full fence whenever that matters (mcache.h, "Stealing").
  __atomic_signal_fence(__ATOMIC_SEQ_CST);
  if (__atomic_load_n(&tl_thread.cache, __ATOMIC_RELAXED) == c) return true;
  __atomic_store_n(&c->large_busy, 0, __ATOMIC_RELAXED);
  return false;
}

inline void large_leave(mcache* c) {
  __atomic_store_n(&c->large_busy, 0, __ATOMIC_RELEASE);
}

// The kept spans' slow start (mcache::large_limit): a span's size more, up
// to kLargeCacheBytes.
inline void raise_large_limit(mcache* c, uintptr_t npages) {
  c->large_limit += npages * kPageSize;
  if (c->large_limit > kLargeCacheBytes) c->large_limit = kLargeCacheBytes;
}

mspan* cache_take_large(uintptr_t npages) {
  mcache* c = tl_thread.cache;
  if (!c || npages > kLargeCachePages || !large_enter(c)) return nullptr;
  mspan* s = c->large[npages];
  if (s) {
    c->large[npages] = s->next;
    __atomic_store_n(&c->large_bytes, c->large_bytes - npages * kPageSize, __ATOMIC_RELAXED);
    c->held -= npages * kPageSize;
    raise_large_limit(c, npages);
    // Not published here: see cache_keep_large.
    s->next = nullptr;
    s->state = spanState::large;
  } else if (npages == c->large_ghost) {
    // The last span this thread could not keep had this size: keeping it
    // would have saved a trip to the mheap.
    c->large_ghost = 0;
    raise_large_limit(c, npages);
  }
  large_leave(c);
  return s;
}

bool cache_keep_large(mspan* s) {
  mcache* c = tl_thread.cache;
  size_t bytes = s->npages * kPageSize;
  if (!c || s->npages > kLargeCachePages || !large_enter(c)) return false;
  bool keep = false;
  if (c->large_bytes + bytes > c->large_limit) {
    c->large_ghost = s->npages;
  } else if (!over_budget() || c->held + bytes <= share()) {
    // (Over the budget and over its share: the span goes back to the mheap.)
    s->state = spanState::cached;
    s->needzero = true;
    s->next = c->large[s->npages];
    c->large[s->npages] = s;
    __atomic_store_n(&c->large_bytes, c->large_bytes + bytes, __ATOMIC_RELAXED);
    c->held += bytes;
    __atomic_store_n(&c->slow_seq, c->slow_seq + 1, __ATOMIC_RELAXED);
    keep = true;
  }
  large_leave(c);
  // Not published here: a thread that frees and allocates one large block in
  // a loop moved g_held by a whole step each time, a locked instruction on a
  // shared line per call (pair/65536 went from 6 to 50 ns). The kept spans'
  // bytes reach g_held with the cache's next stack event or recount; the
  // published sum lags by at most kLargeCacheBytes per cache for it.
  return keep;
}

void cache_resume(mcache* c) {
  // seq_cst store, then the load: a stealer sets detached and then swaps
  // this word from c to null; whichever order the two threads' operations
  // take, the word ends up null if the cache is detached (mcache.h).
  __atomic_store_n(&tl_thread.cache, c, __ATOMIC_SEQ_CST);
  if (c && __atomic_load_n(&c->detached, __ATOMIC_SEQ_CST))
    __atomic_store_n(&tl_thread.cache, static_cast<mcache*>(nullptr), __ATOMIC_RELAXED);
}

size_t caches_held_published() {
  int64_t v = g_held.load(std::memory_order_relaxed);
  return v > 0 ? static_cast<size_t>(v) : 0;
}

bool caches_over_budget() {
  return over_budget();
}

size_t caches_budget() {
  return static_cast<size_t>(g_options.thread_cache);
}

size_t caches_held_exact() {
  uint64_t cached[kNumSizeClasses];
  size_t large = 0, n = 0;
  cache_counts(cached, &large, &n);
  size_t total = large;
  for (uint32_t cls = 1; cls < kNumSizeClasses; cls++) total += cached[cls] * class_to_size[cls];
  return total;
}

bool caches_can_steal() {
  return membarrier_ready();
}

uint64_t caches_steals() {
  return g_steals.load(std::memory_order_relaxed);
}

namespace {

// ---- Stealing (the stealer's side of the handshake in mcache.h) ----

bool membarrier_ready() {
  int m = g_membarrier.load(std::memory_order_relaxed);
  if (m == 0) {
    m = syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0 ? 1 : -1;
    g_membarrier.store(m, std::memory_order_relaxed);
  }
  return m > 0;
}

// Bytes c holds, read racily (the owner may be running): for choosing
// victims only.
size_t held_now(const mcache* c) {
  size_t held = __atomic_load_n(&c->large_bytes, __ATOMIC_RELAXED);
  for (uint32_t cls = 1; cls < kNumSizeClasses; cls++) {
    const freeStack& st = c->stacks[cls];
    void** cur = __atomic_load_n(&st.cur, __ATOMIC_RELAXED);
    size_t local = static_cast<size_t>(cur - st.base);
    size_t stolen = c->stolen[cls];
    size_t n = local > stolen ? local - stolen : 0;
    held += n * class_to_size[cls];
  }
  return held;
}

// Takes from c (another thread's cache) all but the top kStealKeep objects
// of each stack, and its kept large spans. Under g_caches_lock. Returns
// whether it stole.
bool steal(mcache* c) {
  if (!c->lock.try_lock()) return false;  // the owner is in a slow path: not idle
  bool stole = false;
  threadState* ts = c->ts;
  if (ts && !__atomic_load_n(&c->detached, __ATOMIC_RELAXED) && !c->prof && !prof_on()) {
    __atomic_store_n(&c->detached, 1, __ATOMIC_SEQ_CST);
    mcache* expect = c;
    if (!__atomic_compare_exchange_n(&ts->cache, &expect, static_cast<mcache*>(nullptr), false,
                                     __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
      // The thread is an M holding a P (its word names the P's cache) or
      // is exiting: leave it.
      __atomic_store_n(&c->detached, 0, __ATOMIC_RELAXED);
    } else if (syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0) {
      // No proof that the owner is out of its fast path: take nothing. The
      // owner reattaches at its next call, stolen[] all zero.
      g_membarrier.store(-1, std::memory_order_relaxed);
    } else if (__atomic_load_n(&c->large_busy, __ATOMIC_ACQUIRE)) {
      // The owner is taking or keeping a large span (cache_take_large): it
      // writes large[] and held without the lock. Take nothing; it
      // reattaches at its next slow path, stolen[] all zero.
    } else {
      // Spans this empties count as free since the cache was last active
      // (as an idle transfer cache backdates what it drains): freed now,
      // they would merge with older free spans and make them young again,
      // holding back the scavenger's release of both by a delay.
      int64_t at = c->seen_at;
      for (uint32_t cls = 1; cls < kNumSizeClasses; cls++) {
        freeStack& st = c->stacks[cls];
        uint32_t n = static_cast<uint32_t>(__atomic_load_n(&st.cur, __ATOMIC_RELAXED) - st.base);
        uint32_t batch = g_central[cls].batch;
        if (n > kStealKeep) {
          uint32_t take = n - kStealKeep;
          // Cold objects: back to their spans, which may empty.
          for (uint32_t i = 0; i < take; i += batch)
            g_central[cls].free_batch(st.base + i, take - i < batch ? take - i : batch, true, 0,
                                      at);
          c->stolen[cls] = static_cast<uint16_t>(take);
        }
        // Spans objects came back to: the mcentral's again (the owner's
        // refills take the mcentral's lock, so none is using the list).
        g_central[cls].release_owned(c, false, at);
      }
      for (mspan*& l : c->large) {
        while (mspan* s = l) {
          l = s->next;
          s->state = spanState::large;
          g_heap.free_span(s, at);
        }
      }
      c->large_bytes = 0;
      recount(c);
      g_steals.fetch_add(1, std::memory_order_relaxed);
      stole = true;
    }
  }
  c->lock.unlock();
  return stole;
}

}  // namespace

int64_t caches_trim(int64_t idle_ns) {
  if (g_options.thread_cache <= 0 || !membarrier_ready()) return -1;
  lock_guard g(g_caches_lock);
  int64_t now = coarse_nanotime(), next = -1;
  // The budget is checked against what the caches hold now, not the
  // published estimates: frees on the fast path fill stacks unseen.
  size_t total = 0;
  for (mcache* c = g_live; c; c = c->next_all) total += held_now(c);
  bool over = total > static_cast<size_t>(g_options.thread_cache);
  size_t sh = share();
  for (mcache* c = g_live; c; c = c->next_all) {
    if (!c->ts) continue;  // a P's cache, or one whose thread is exiting
    size_t held = held_now(c);
    uint32_t seq = __atomic_load_n(&c->slow_seq, __ATOMIC_RELAXED);
    if (seq != c->seen_seq) {
      c->seen_seq = seq;
      c->seen_at = now;
    }
    int64_t idle = now - c->seen_at;
    bool want = (held >= kIdleTrimMin && idle >= idle_ns) || (over && held > sh);
    if (want && steal(c)) continue;
    if (held >= kIdleTrimMin && idle < idle_ns && (next < 0 || idle_ns - idle < next))
      next = idle_ns - idle;
  }
  return next;
}

size_t cache_held(const mcache* c) {
  return held_now(c);
}

}  // namespace gort::alloc
