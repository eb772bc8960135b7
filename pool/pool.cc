// Go's sync.Pool (sync/pool.go, sync/poolqueue.go) for gort: the shared
// part of gort::Pool<T> and the C API of gort/pool.h.
//
// Layout. A pool has two generations of shards, the primary and the victim
// (gens[cur] and gens[cur ^ 1]). A generation is an array of kShards
// poolLocals; a poolLocal is
//   - a private slot: one object, the fast path of a get after a put on the
//     same P (Go's poolLocalInternal.private);
//   - a shared ring (poolRing), made on first use and freed only with the
//     pool, that other shards steal from (Go's poolChain).
// A task on P n < kPShards uses shard n (runtime/poolhooks.h: the only thing
// pool/ asks the scheduler); a plain thread, or a task of a P past them,
// uses one of the kThreadShards after them, picked by a hash of its thread
// pointer.
//
// P-owned private slots. Go pins the goroutine to its P around a pool
// operation, does not steal private slots and cleans up with the world
// stopped, so a private slot has one owner and needs no atomic step. gort
// does the same for the shards of Ps 0-23: only tasks of that P use the
// shard (a task keeps its P for a whole pool operation: gort's code is
// never preempted, and a P is handed off only in a blocking call), no one
// steals its private slot, and the cleanup empties it inside the
// sweep-termination stop. The owner reads and writes the slot with plain
// steps inside a busy region, so no stop comes between them (every M is
// registered with the collector). Plain threads, and tasks of Ps past 23,
// use the thread shards, where every step is atomic: the private slot is
// taken with an exchange and filled with a compare-and-swap, and stolen by
// others. Every shard's ring is Vyukov's bounded multi-producer
// multi-consumer queue (a sequence number per cell): any number of putters
// and getters per shard, lock-free, no ABA, and an object is in at most one
// cell or slot at a time.
// Invariant: every pooled object is in exactly one private slot or ring
// cell of one generation; a get removes it from there with one atomic step
// (exchange, or the consumer's claim of a cell), or from its own P-owned
// slot with plain steps nobody can interleave with, so no object is handed
// out twice.
//
// A full ring drops the object being put (the pool is a cache, not a
// store): Go's chain grows without bound, this one holds at most
// kShards * (kRing + 1) objects per generation.
//
// Victim cache (Go's poolCleanup, Go issue 22950), in three steps on the
// collector's thread (gc/cycle.h's hooks). At the start of every cycle,
// before the world is stopped, pool_cleanup drops what the victim
// generation's rings and thread shards' private slots hold. Inside the
// sweep-termination stop, pool_stop takes the victim's P-owned private
// objects aside and flips cur, so the old primary becomes the victim and the
// drained generation the primary. Once the world runs again, pool_after
// drops what pool_stop took aside. An object put just before cycle k is in
// the victim after k and dropped at k + 1. Gets and puts on thread shards
// and rings run beside the first step: a put that read cur before the flip
// lands in what is now the victim (dropped one cycle early, still dropped
// exactly once); a get may take from the victim being drained (one atomic
// step each, so either the get or the drop has the object). Drop functions
// (which may lock and free) never run while threads are stopped holding the
// allocator's locks.
//
// GC objects (GORT_POOL_GC). A generation's shard array and every ring are
// root ranges (gort_gc_add_roots), and every store into them goes through
// the write barrier (the private slot's steps, atomic or plain, are
// followed by its slow half as gort_gc_write does: slot_barrier), so a pooled GC object stays
// alive and the deletion barrier shades one taken out during a mark. A
// dropped GC object is only forgotten: the collector frees it later unless
// the program still reaches it. A thread that uses a GC pool is registered
// with the collector (as gort_gc_alloc does), so what it took is a root.
//
// Lock order: g_pools_lock (the list of pools) is a leaf except for the drop
// functions called under it; a drop function must not free a pool. Program
// threads take it only inside a busy region (busy_lock): pool_stop takes it
// with the world stopped.
#include "gort/pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <atomic>
#include <new>

#include "alloc/lock.h"
#include "gc/cycle.h"
#include "gc/roots.h"
#include "gort/gc.h"
#include "runtime/poolhooks.h"

#define GORT_EXPORT extern "C" __attribute__((visibility("default")))

namespace gort::pool {
namespace {

constexpr int kPShards = 24;
constexpr int kThreadShards = 8;
constexpr int kShards = kPShards + kThreadShards;
constexpr uint64_t kRing = 64;  // cells per ring, a power of two

// Vyukov's bounded MPMC queue. Cell i is free for the producer at position
// pos when seq == pos, holds the object for the consumer at pos when
// seq == pos + 1, and is free again (for pos + kRing) after the consumer
// stores seq = pos + kRing.
struct poolRing {
  struct cell {
    std::atomic<uint64_t> seq;
    void* data;
  };
  alignas(64) std::atomic<uint64_t> head{0};  // next producer position
  alignas(64) std::atomic<uint64_t> tail{0};  // next consumer position
  alignas(64) cell cells[kRing];
};

struct alignas(64) poolLocal {
  void* priv;  // atomic (the __atomic builtins): the private slot
  std::atomic<poolRing*> shared;
};

struct poolGen {
  poolLocal locals[kShards];
};

}  // namespace
}  // namespace gort::pool

struct gort_pool {
  gort::pool::poolGen* gens[2];
  std::atomic<uint32_t> cur;  // gens[cur] is the primary
  void* (*new_fn)(void*);
  void (*drop)(void*, void*);
  void* arg;
  bool gc;
  // The victim's P-owned private objects, taken in the sweep-termination
  // stop and dropped right after it (pool_stop, pool_after; g_pools_lock).
  void* doomed[gort::pool::kPShards];
  gort_pool* next;  // g_pools (g_pools_lock)
  gort_pool* prev;
};

namespace gort::pool {
namespace {

constinit alloc::mutex g_pools_lock;  // guards g_pools; see "Lock order" above
gort_pool* g_pools = nullptr;
std::atomic<bool> g_hooked{false};

// Stores v into a slot of pool storage, through the barrier for GC pools.
inline void slot_store(bool gc, void** slot, void* v) {
  if (gc)
    gort_gc_write(slot, v);
  else
    __atomic_store_n(slot, v, __ATOMIC_RELAXED);
}
// After an atomic read-modify-write of a root slot: the barrier's slow half,
// as gort_gc_write would call it.
inline void slot_barrier(bool gc, void* old, void* v) {
  __atomic_signal_fence(__ATOMIC_SEQ_CST);
  if (gc && __builtin_expect(__atomic_load_n(&gort_gc_marking, __ATOMIC_RELAXED) != 0, 0))
    gort_gc_write_slow(old, v);
}

bool ring_push(poolRing* r, bool gc, void* x) {
  uint64_t pos = r->head.load(std::memory_order_relaxed);
  for (;;) {
    auto& c = r->cells[pos & (kRing - 1)];
    uint64_t seq = c.seq.load(std::memory_order_acquire);
    int64_t d = static_cast<int64_t>(seq - pos);
    if (d == 0) {
      if (r->head.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
        slot_store(gc, &c.data, x);
        c.seq.store(pos + 1, std::memory_order_release);
        return true;
      }
    } else if (d < 0) {
      return false;  // full
    } else {
      pos = r->head.load(std::memory_order_relaxed);
    }
  }
}

void* ring_pop(poolRing* r, bool gc) {
  uint64_t pos = r->tail.load(std::memory_order_relaxed);
  for (;;) {
    auto& c = r->cells[pos & (kRing - 1)];
    uint64_t seq = c.seq.load(std::memory_order_acquire);
    int64_t d = static_cast<int64_t>(seq - (pos + 1));
    if (d == 0) {
      if (r->tail.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
        void* x = __atomic_load_n(&c.data, __ATOMIC_RELAXED);
        // Cleared before the cell is released, so the ring does not keep a
        // GC object alive (and the barrier shades it during a mark).
        slot_store(gc, &c.data, nullptr);
        c.seq.store(pos + kRing, std::memory_order_release);
        return x;
      }
    } else if (d < 0) {
      return nullptr;  // empty
    } else {
      pos = r->tail.load(std::memory_order_relaxed);
    }
  }
}

poolRing* ring_new(bool gc) {
  void* mem = aligned_alloc(64, sizeof(poolRing));
  if (!mem) return nullptr;
  auto* r = new (mem) poolRing;
  for (uint64_t i = 0; i < kRing; i++) {
    r->cells[i].seq.store(i, std::memory_order_relaxed);
    r->cells[i].data = nullptr;
  }
  if (gc && gort_gc_add_roots(r->cells, sizeof(r->cells)) != 0) {
    free(mem);
    return nullptr;
  }
  return r;
}

// The shard of the calling thread or task, given its P id (poolhook).
inline int shard_of(int id) {
  if (id >= 0 && id < kPShards) return id;
  uintptr_t t = reinterpret_cast<uintptr_t>(pthread_self());
  t = (t >> 12) * 0x9E3779B97F4A7C15ull;
  return kPShards + static_cast<int>(t >> 61) % kThreadShards;
}

inline void* take_private(poolLocal* l, bool gc) {
  if (!__atomic_load_n(&l->priv, __ATOMIC_RELAXED)) return nullptr;
  void* x = __atomic_exchange_n(&l->priv, nullptr, __ATOMIC_ACQUIRE);
  if (x) slot_barrier(gc, x, nullptr);
  return x;
}

// A P-owned private slot, by its owner inside a busy region (see "P-owned
// private slots" above): a plain load and store. The caller runs the
// barrier's slow half (slot_barrier) once out of the busy region.
inline void* take_owned(poolLocal* l) {
  void* x = __atomic_load_n(&l->priv, __ATOMIC_RELAXED);
  if (x) __atomic_store_n(&l->priv, nullptr, __ATOMIC_RELAXED);
  return x;
}

// Go's getSlow over one generation, past the caller's P-owned private slot:
// a plain thread's own private slot, the own shard's ring, then steal from
// the others' rings and the plain threads' private slots (never a P's
// private slot: it has one owner).
void* take_gen(poolGen* g, int s, bool gc) {
  if (s >= kPShards)
    if (void* x = take_private(&g->locals[s], gc)) return x;
  for (int i = 0; i < kShards; i++) {
    int k = (s + i) % kShards;
    poolLocal* l = &g->locals[k];
    if (i > 0 && k >= kPShards)
      if (void* x = take_private(l, gc)) return x;
    poolRing* r = l->shared.load(std::memory_order_acquire);
    if (r)
      if (void* x = ring_pop(r, gc)) return x;
  }
  return nullptr;
}

void drop_one(gort_pool* p, void* x) {
  if (p->drop) p->drop(x, p->arg);
}

// Empties a generation, dropping what it holds: every ring, and the private
// slots of the shards from first_private on (0: all of them).
void drain_gen(gort_pool* p, poolGen* g, int first_private) {
  for (int s = 0; s < kShards; s++) {
    poolLocal& l = g->locals[s];
    if (s >= first_private)
      if (void* x = take_private(&l, p->gc)) drop_one(p, x);
    if (poolRing* r = l.shared.load(std::memory_order_acquire))
      while (void* x = ring_pop(r, p->gc)) drop_one(p, x);
  }
}

// Go's poolCleanup, in three steps on the collector's thread. At the start
// of each cycle: drop what the victim's rings and plain threads' private
// slots hold (atomic steps, beside the program).
void pool_cleanup() {
  gort::alloc::lock_guard lk(g_pools_lock);
  for (gort_pool* p = g_pools; p; p = p->next)
    drain_gen(p, p->gens[p->cur.load(std::memory_order_relaxed) ^ 1], kPShards);
}

// In the sweep-termination stop (no owner is inside a pool operation: those
// are busy regions): take the victim's P-owned private objects aside and
// flip, so the old primary becomes the victim. Marking has not begun, so
// the slots are cleared without the barrier.
void pool_stop() {
  gort::alloc::lock_guard lk(g_pools_lock);  // program threads: busy regions only
  for (gort_pool* p = g_pools; p; p = p->next) {
    uint32_t c = p->cur.load(std::memory_order_relaxed);
    poolGen* v = p->gens[c ^ 1];
    for (int s = 0; s < kPShards; s++) {
      p->doomed[s] = v->locals[s].priv;
      v->locals[s].priv = nullptr;
    }
    p->cur.store(c ^ 1, std::memory_order_release);
  }
}

// Once the world runs again: drop what pool_stop took aside.
void drop_doomed(gort_pool* p) {
  for (void*& x : p->doomed)
    if (x) {
      void* y = x;
      x = nullptr;
      drop_one(p, y);
    }
}
void pool_after() {
  gort::alloc::lock_guard lk(g_pools_lock);
  for (gort_pool* p = g_pools; p; p = p->next) drop_doomed(p);
}

poolGen* gen_new(bool gc) {
  void* mem = aligned_alloc(64, sizeof(poolGen));
  if (!mem) return nullptr;
  memset(mem, 0, sizeof(poolGen));
  auto* g = new (mem) poolGen;
  if (gc && gort_gc_add_roots(g, sizeof(poolGen)) != 0) {
    free(mem);
    return nullptr;
  }
  return g;
}

void gen_free(poolGen* g, bool gc) {
  if (gc) gort_gc_remove_roots(g);
  for (auto& l : g->locals)
    if (poolRing* r = l.shared.load(std::memory_order_relaxed)) {
      if (gc) gort_gc_remove_roots(r->cells);
      free(r);
    }
  free(g);
}

inline void ensure_registered(bool gc) {
  if (gc && !gc::is_registered()) gc::register_current_thread(false);
}

}  // namespace
}  // namespace gort::pool

using namespace gort::pool;

GORT_EXPORT gort_pool* gort_pool_new(void* (*new_fn)(void*), void (*drop)(void*, void*), void* arg,
                                     int flags) {
  if (flags & ~GORT_POOL_GC) {
    errno = EINVAL;
    return nullptr;
  }
  if (!g_hooked.load(std::memory_order_acquire)) {
    gort::gc::busy_lock lk(g_pools_lock);
    if (!g_hooked.load(std::memory_order_relaxed)) {
      if (!gort::gc::on_cycle_start(&pool_cleanup) ||
          !gort::gc::on_sweep_termination(&pool_stop, &pool_after)) {
        errno = ENOMEM;
        return nullptr;
      }
      g_hooked.store(true, std::memory_order_release);
    }
  }
  bool gc = flags & GORT_POOL_GC;
  auto* p = static_cast<gort_pool*>(calloc(1, sizeof(gort_pool)));
  if (!p) return nullptr;
  p->gens[0] = gen_new(gc);
  p->gens[1] = p->gens[0] ? gen_new(gc) : nullptr;
  if (!p->gens[1]) {
    if (p->gens[0]) gen_free(p->gens[0], gc);
    free(p);
    errno = ENOMEM;
    return nullptr;
  }
  p->new_fn = new_fn;
  p->drop = drop;
  p->arg = arg;
  p->gc = gc;
  gort::gc::busy_lock lk(g_pools_lock);  // pool_stop takes it inside a stop
  p->next = g_pools;
  if (g_pools) g_pools->prev = p;
  g_pools = p;
  return p;
}

GORT_EXPORT void* gort_pool_get(gort_pool* p) {
  ensure_registered(p->gc);
  int s = shard_of(gort::rt::poolhook::this_p_id());
  if (s < kPShards) {
    // The P-owned private slots (primary, then victim) are read and cleared
    // with plain steps: no stop of the world (pool_stop) comes between them.
    gort::gc::busy_enter();
    uint32_t c = p->cur.load(std::memory_order_acquire);
    void* x = take_owned(&p->gens[c]->locals[s]);
    if (!x) x = take_owned(&p->gens[c ^ 1]->locals[s]);
    gort::gc::busy_exit();
    if (x) {
      slot_barrier(p->gc, x, nullptr);
      return x;
    }
  }
  uint32_t c = p->cur.load(std::memory_order_acquire);
  void* x = take_gen(p->gens[c], s, p->gc);
  if (!x) x = take_gen(p->gens[c ^ 1], s, p->gc);
  if (!x && p->new_fn) x = p->new_fn(p->arg);
  return x;
}

GORT_EXPORT void gort_pool_put(gort_pool* p, void* x) {
  if (!x) return;
  ensure_registered(p->gc);
  int s = shard_of(gort::rt::poolhook::this_p_id());
  poolLocal* l;
  if (s < kPShards) {
    // The task's P owns the slot (see "P-owned private slots" above).
    gort::gc::busy_enter();
    l = &p->gens[p->cur.load(std::memory_order_acquire)]->locals[s];
    bool empty = !__atomic_load_n(&l->priv, __ATOMIC_RELAXED);
    if (empty) __atomic_store_n(&l->priv, x, __ATOMIC_RELAXED);
    gort::gc::busy_exit();
    if (empty) {
      slot_barrier(p->gc, nullptr, x);
      return;
    }
  } else {
    l = &p->gens[p->cur.load(std::memory_order_acquire)]->locals[s];
  }
  if (s >= kPShards && !__atomic_load_n(&l->priv, __ATOMIC_RELAXED)) {
    void* none = nullptr;
    if (__atomic_compare_exchange_n(&l->priv, &none, x, false, __ATOMIC_RELEASE,
                                    __ATOMIC_RELAXED)) {
      slot_barrier(p->gc, nullptr, x);
      return;
    }
  }
  poolRing* r = l->shared.load(std::memory_order_acquire);
  if (!r) {
    poolRing* fresh = ring_new(p->gc);
    if (!fresh) {
      drop_one(p, x);
      return;
    }
    if (l->shared.compare_exchange_strong(r, fresh, std::memory_order_acq_rel)) {
      r = fresh;
    } else {  // another put made it first
      if (p->gc) gort_gc_remove_roots(fresh->cells);
      free(fresh);
    }
  }
  if (!ring_push(r, p->gc, x)) drop_one(p, x);
}

GORT_EXPORT void gort_pool_free(gort_pool* p) {
  if (!p) return;
  {
    gort::gc::busy_lock lk(g_pools_lock);
    if (p->prev)
      p->prev->next = p->next;
    else
      g_pools = p->next;
    if (p->next) p->next->prev = p->prev;
  }
  drop_doomed(p);  // unlinked: pool_after no longer sees it
  for (auto* g : p->gens) {
    drain_gen(p, g, 0);
    gen_free(g, p->gc);
  }
  free(p);
}
