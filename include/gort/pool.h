/* gort/pool.h: Go's sync.Pool for C and C++ (docs/pool.md).
 *
 * A pool is a cache of free objects of one kind that any thread or task may
 * take (get) and give back (put), so that a hot path reuses objects instead
 * of allocating them. What a pool holds is not kept for good: at the start of
 * every collection the pool's primary cache becomes its victim cache and the
 * old victim cache is dropped, so an object put and never taken again is
 * dropped by the second collection after its put (Go's victim cache, Go
 * issue 22950): a steady load keeps its working set, an idle pool empties.
 *
 * Two kinds of objects:
 *  - heap objects (malloc, new): a dropped object is given to the pool's
 *    drop function (C++: delete);
 *  - GC objects (GORT_POOL_GC): the pool's storage is a root, so a pooled
 *    object stays alive while pooled; a dropped one is forgotten and the
 *    collector frees it once nothing else reaches it.
 * A pool never hands the same object to two callers: one put, one get.
 * Drop functions run on the collector's thread at the start of a cycle (or
 * in gort_pool_free): they may free and lock, but must not allocate GC
 * objects, wait for a collection nor free a pool.
 */
#ifndef GORT_POOL_H
#define GORT_POOL_H

#include <gort/scope.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gort_pool gort_pool;

/* The pool holds GC objects (gort_gc_alloc): its storage is a root. */
#define GORT_POOL_GC 1

/* A new pool. new_fn(arg) (may be NULL) makes an object when the pool is
 * empty; drop(obj, arg) (may be NULL: nothing is done) disposes of an object
 * the pool drops. NULL with errno EINVAL for unknown flags, ENOMEM. */
gort_pool* gort_pool_new(void* (*new_fn)(void* arg), void (*drop)(void* obj, void* arg), void* arg,
                         int flags);
/* An object from the pool, else new_fn(arg), else NULL. */
void* gort_pool_get(gort_pool* p);
/* Gives obj back (NULL is ignored). The caller must not use it after. */
void gort_pool_put(gort_pool* p, void* obj);
/* Drops every pooled object and frees the pool. No get or put may run on it
 * at the same time nor after. */
void gort_pool_free(gort_pool* p);

#ifdef __cplusplus
}

#include <functional>
#include <new>
#include <utility>

namespace gort {

enum class PoolKind {
  heap,  // objects from new: delete drops them
  gc,    // GC objects (gort::gc::make): the collector frees dropped ones
};

// Go's sync.Pool over T*: New makes an object when the pool is empty (a
// Pool without New returns nullptr then). The drop function disposes of
// what the pool drops (default: delete for heap pools, nothing for GC
// pools); it runs on the collector's thread.
template <class T>
class Pool {
 public:
  explicit Pool(std::function<T*()> new_fn = {}, PoolKind kind = PoolKind::heap,
                std::function<void(T*)> drop = {})
      : New(std::move(new_fn)), drop_(std::move(drop)), kind_(kind) {
    p_ = gort_pool_new(nullptr, &Pool::drop_one, this, kind == PoolKind::gc ? GORT_POOL_GC : 0);
    if (!p_) throw std::bad_alloc();
  }
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;
  ~Pool() { gort_pool_free(p_); }

  // An object from the pool, else New(), else nullptr. New runs here, in
  // the caller, so an exception it throws reaches the caller.
  T* get() {
    if (void* x = gort_pool_get(p_)) return static_cast<T*>(x);
    return New ? New() : nullptr;
  }
  // Gives x back; the caller must not touch it after.
  void put(T* x) { gort_pool_put(p_, x); }

  std::function<T*()> New;

 private:
  static void drop_one(void* obj, void* self) {
    auto* pool = static_cast<Pool*>(self);
    T* x = static_cast<T*>(obj);
    if (pool->drop_)
      pool->drop_(x);
    else if (pool->kind_ == PoolKind::heap)
      delete x;
  }

  std::function<void(T*)> drop_;
  PoolKind kind_;
  gort_pool* p_ = nullptr;
};

}  // namespace gort

#endif /* __cplusplus */
#endif /* GORT_POOL_H */
