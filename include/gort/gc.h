/* gort/gc.h: the garbage-collected heap, for runtime embedders.
 *
 * GC objects live in the same heap as malloc's and are freed by a
 * concurrent mark-sweep collector (docs/gc.md). An object is allocated with a
 * type that says where its pointers are (a pointer map or a trace callback),
 * or conservatively scanned (every word may be a pointer), or noscan (no
 * pointers). It is never freed by the program: it dies when nothing reaches
 * it from a root. Roots are
 *   - the stacks and registers of tasks and of registered OS threads (a thread
 *     registers itself with gort_gc_register_thread(); one that allocates a GC
 *     object or calls the write barrier is registered automatically), scanned
 *     conservatively: any word that points into a GC object, interior
 *     pointers included, keeps it alive;
 *   - ranges registered with gort_gc_add_roots() (an interpreter's globals);
 *   - handles (gort_gc_handle_new), the C form of C++'s Persistent<T>.
 * Memory from malloc is not scanned: a GC pointer kept only there (a
 * std::vector) does not keep its object alive; gort's channel buffers are
 * scanned.
 *
 * The write barrier: while the collector marks, it must see every pointer the
 * program overwrites or stores in GC objects and root ranges. Every such store
 * goes through gort_gc_write() (C) or a Member<T> (C++). Stores to local
 * variables (stacks, registers) need no barrier.
 *
 * Threads that are registered are stopped for the short stop-the-world
 * phases at their next GC allocation or barrier, or else by a signal: they
 * never have to poll. The signal is SIGPWR, or
 * the one GORT_GC_SIGNAL names (docs/tuning.md); it is installed with
 * SA_RESTART and SA_ONSTACK, and the collector refuses to start (a fatal
 * error naming GORT_GC_SIGNAL) if the program or another runtime already
 * handles it.
 */
#ifndef GORT_GC_H
#define GORT_GC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gort_gc_tracer gort_gc_tracer;

/* Where an object's pointers are. Exactly one of ptrmap and trace is set.
 *  ptrmap: bit i (ptrmap[i / 64] >> (i % 64) & 1) says that word i of an
 *          element holds a GC pointer (or NULL). The map covers elem_size
 *          bytes and repeats over the object, so an array of n elements is
 *          one allocation of n * elem_size bytes.
 *  trace:  called by the collector, on its own thread, while the program
 *          runs: it reports each pointer field with gort_gc_trace(). It must
 *          not allocate, lock or block.
 * A type must outlive every object allocated with it (make it static). */
typedef struct gort_gc_type {
  const char* name;
  size_t elem_size;
  const uint64_t* ptrmap;
  void (*trace)(void* obj, size_t size, gort_gc_tracer* tracer);
} gort_gc_type;

/* From a trace callback: p (NULL, or a pointer anywhere into a GC object)
 * is reachable. */
void gort_gc_trace(gort_gc_tracer* tracer, const void* p);

/* A zeroed GC object of size bytes, 16-byte aligned. type NULL: conservative.
 * NULL with errno ENOMEM when the heap cannot grow. */
void* gort_gc_alloc(size_t size, const gort_gc_type* type);
/* An object that holds no GC pointers (strings, numbers): never scanned.
 * Objects under 16 bytes may share a 16-byte block with others (Go's tiny
 * allocator): a finalizer on one of them may never run. */
void* gort_gc_alloc_noscan(size_t size);

/* The write barrier: *slot = value, where slot is in a GC object or a root
 * range (or anywhere: it is always correct, just not needed for stacks).
 * Inline: a store, a compiler barrier and a load of the collector's phase;
 * only while the collector marks does it call into the library. It stores
 * before it looks at the phase, which is what makes it safe against the
 * collector stopping the thread at any instruction (docs/gc.md). */
extern uint32_t gort_gc_marking;
/* The word is non-zero while the collector marks, and for good once a scope
 * (gort/scope.h) was opened: the slow half also sees scope objects escape
 * (it is told the slot: a store into the scope's own objects is no escape).
 * gort_gc_write_slow, without the slot, is kept for code built against
 * older headers: every scope object it sees escapes. */
void gort_gc_write_slow(void* old_value, void* new_value);
void gort_gc_write_slow_at(void** slot, void* old_value, void* new_value);
static inline void gort_gc_write(void** slot, void* value) {
  void* old = __atomic_load_n(slot, __ATOMIC_RELAXED);
  __atomic_store_n(slot, value, __ATOMIC_RELAXED);
  __atomic_signal_fence(__ATOMIC_SEQ_CST);
  if (__builtin_expect(__atomic_load_n(&gort_gc_marking, __ATOMIC_RELAXED) != 0, 0))
    gort_gc_write_slow_at(slot, old, value);
}

/* Root ranges: [lo, lo+len) is scanned conservatively at every cycle until
 * removed. Ranges may overlap; remove takes the lo given to add. */
int gort_gc_add_roots(const void* lo, size_t len);
int gort_gc_remove_roots(const void* lo);

/* The calling thread's stack and registers become roots until it exits or
 * unregisters. Returns 0, or -1 if the thread's stack cannot be found. */
int gort_gc_register_thread(void);
void gort_gc_unregister_thread(void);

/* Runs a full collection and returns when its sweep is done. */
void gort_gc_collect(void);
/* GOGC: collect when the heap has grown by percent over the live heap of the
 * last cycle. -1 turns the collector off (gort_gc_collect still works).
 * Returns the previous setting. GORT_GC=percent|off sets the default (100). */
int gort_gc_set_percent(int percent);

/* Go's runtime.SetFinalizer: when obj (the start of a GC object) becomes
 * unreachable, fn(obj, arg) runs once on the finalizer thread and obj stays
 * allocated until the cycle after; fn may make it reachable again. NULL fn
 * removes the finalizer. Objects reachable from an object with a finalizer
 * stay alive, so a cycle of such objects is never finalized nor freed.
 * Returns 0, or -1 (errno EINVAL) if obj is not the start of a GC object. */
int gort_gc_set_finalizer(void* obj, void (*fn)(void* obj, void* arg), void* arg);
/* A C++ destructor (cppgc's rule, what make<T> uses): dtor(obj) runs once,
 * on the finalizer thread, after the collector found obj unreachable; obj
 * keeps nothing alive, so cycles of such objects are freed, in one cycle.
 * Destructors run in no order: dtor must not touch other GC objects (they
 * may be freed already) nor make obj reachable again. obj is freed by the
 * cycle after. With a finalizer too, the finalizer runs first (Go's rules)
 * and the destructor once obj is unreachable again. NULL dtor removes it.
 * Returns 0, or -1 (errno EINVAL) if obj is not the start of a GC object. */
int gort_gc_set_destructor(void* obj, void (*dtor)(void* obj));
/* Waits until every finalizer and destructor queued so far has run (from a finalizer, it
 * returns at once). */
void gort_gc_run_finalizers(void);

/* Weak references: get returns obj while it is reachable, NULL once the
 * collector found it unreachable (before its finalizer, if any, runs). */
typedef struct gort_gc_weak gort_gc_weak;
gort_gc_weak* gort_gc_weak_new(void* obj);
void* gort_gc_weak_get(gort_gc_weak* w);
void gort_gc_weak_free(gort_gc_weak* w);

/* Handles: a root slot in memory the collector owns, for pointers that
 * live in malloc memory or other non-GC places. */
typedef struct gort_gc_handle gort_gc_handle;
gort_gc_handle* gort_gc_handle_new(void* obj);
void gort_gc_handle_set(gort_gc_handle* h, void* obj);
void* gort_gc_handle_get(const gort_gc_handle* h);
void gort_gc_handle_free(gort_gc_handle* h);

/* The start of the live GC object that p points into, or NULL. */
void* gort_gc_base(const void* p);
/* The usable size of the GC object at base, or 0. */
size_t gort_gc_size(const void* base);

typedef struct gort_gc_stats_t {
  uint64_t cycles;           /* completed collections */
  uint64_t heap_alloc;       /* bytes of GC objects allocated and not yet swept free */
  uint64_t heap_live;        /* bytes marked live by the last cycle */
  uint64_t heap_goal;        /* heap_alloc the next mark should end under (0: none) */
  uint64_t total_alloc;      /* bytes of GC objects ever allocated */
  uint64_t total_freed;      /* bytes freed by sweeping */
  uint64_t pause_total_ns;   /* all stop-the-world pauses */
  uint64_t pause_max_ns;     /* the longest one */
  uint64_t pause_last_ns[2]; /* the last cycle's sweep- and mark-termination pauses */
  uint64_t npauses;          /* stop-the-world pauses so far */
  uint64_t mark_ns;          /* wall time of the last concurrent mark */
  uint64_t finalizers_run;
  uint64_t mark_task_objects; /* objects scanned by mark work run as scheduler tasks */
  uint64_t threads;           /* registered threads */
  int percent;                /* -1: off */
  int cpu_limited;            /* the GC CPU limiter is on now */
  uint64_t heap_trigger;      /* heap_alloc at which the next cycle starts (0: none) */
  uint64_t memory_limit;      /* GORT_MEMLIMIT / gort_gc_set_memory_limit (0: none) */
  uint64_t held_bytes;        /* memory gort holds: heap pages not released, metadata */
  uint64_t assist_ns;         /* CPU spent in mark assists, all cycles */
  uint64_t background_ns;     /* CPU of the collector's own thread, all cycles */
  uint64_t heap_peak;         /* the largest heap_alloc seen at a mark termination */
  uint64_t limiter_cycles;    /* times the CPU limiter turned on */
  uint64_t last_heap_end;     /* heap_alloc at the last mark termination */
  uint64_t last_goal;         /* the goal that mark aimed for (0: none) */
} gort_gc_stats_t;
void gort_gc_stats(gort_gc_stats_t* out);
/* Up to n of the most recent stop-the-world pauses (ns), oldest first;
 * returns how many were written (the collector keeps the last 1024). */
size_t gort_gc_pauses(uint64_t* out, size_t n);
/* The soft memory limit (like Go's debug.SetMemoryLimit): bytes gort may hold
 * in all (GC heap, malloc heap, task stacks, metadata); 0 removes it, a
 * negative value only queries. Returns the previous limit. */
int64_t gort_gc_set_memory_limit(int64_t bytes);

#ifdef __cplusplus
}

#include <cstring>
#include <new>
#include <type_traits>
#include <utility>

namespace gort::gc {

template <class T>
class Member;

// What a trace method gets: report every GC pointer the object holds.
class Tracer {
 public:
  explicit Tracer(gort_gc_tracer* t) : t_(t) {}
  void operator()(const void* p) const { gort_gc_trace(t_, p); }
  template <class T>
  void operator()(const Member<T>& m) const {
    gort_gc_trace(t_, m.get());
  }

 private:
  gort_gc_tracer* t_;
};

// A pointer field of a GC object (cppgc's Member<T>): every store goes
// through the write barrier.
template <class T>
class Member {
 public:
  Member() = default;
  Member(T* p) { set(p); }  // NOLINT: implicit, like a raw pointer
  Member(const Member& o) { set(o.get()); }
  Member& operator=(const Member& o) {
    set(o.get());
    return *this;
  }
  Member& operator=(T* p) {
    set(p);
    return *this;
  }
  T* get() const { return __atomic_load_n(&p_, __ATOMIC_RELAXED); }
  T* operator->() const { return get(); }
  T& operator*() const { return *get(); }
  explicit operator bool() const { return get() != nullptr; }
  operator T*() const { return get(); }  // NOLINT

 private:
  void set(T* p) {
    gort_gc_write(reinterpret_cast<void**>(&p_), const_cast<void*>(static_cast<const void*>(p)));
  }
  T* p_ = nullptr;
};

namespace detail {
template <class T, class = void>
struct has_trace : std::false_type {};
template <class T>
struct has_trace<T, std::void_t<decltype(std::declval<const T&>().trace(std::declval<Tracer&>()))>>
    : std::true_type {};

template <class T>
void trace_trampoline(void* obj, size_t size, gort_gc_tracer* t) {
  Tracer tr(t);
  T* a = static_cast<T*>(obj);
  for (size_t i = 0; i < size / sizeof(T); i++) a[i].trace(tr);
}
// The type of T: a trace callback if T has `void trace(Tracer&) const`,
// else nullptr (conservative).
template <class T>
const gort_gc_type* type_of() {
  if constexpr (has_trace<T>::value) {
    static const gort_gc_type t = {__PRETTY_FUNCTION__, sizeof(T), nullptr, &trace_trampoline<T>};
    return &t;
  } else {
    return nullptr;
  }
}
template <class T>
void destroy(void* obj) {
  static_cast<T*>(obj)->~T();
}
}  // namespace detail

// A GC object of type T. T's destructor, if it is not trivial, runs once
// the collector finds the object unreachable (gort_gc_set_destructor: on the
// finalizer thread, in no order, no resurrection; cycles are freed).
// Throws std::bad_alloc when the heap cannot grow.
template <class T, class... Args>
T* make(Args&&... args) {
  static_assert(alignof(T) <= 16, "GC objects are 16-byte aligned");
  void* p = gort_gc_alloc(sizeof(T), detail::type_of<T>());
  if (!p) throw std::bad_alloc();
  T* obj = new (p) T(std::forward<Args>(args)...);
  if constexpr (!std::is_trivially_destructible_v<T>)
    gort_gc_set_destructor(p, &detail::destroy<T>);
  return obj;
}
// A GC object that holds no GC pointers: never scanned.
template <class T, class... Args>
T* make_noscan(Args&&... args) {
  static_assert(alignof(T) <= 16, "GC objects are 16-byte aligned");
  void* p = gort_gc_alloc_noscan(sizeof(T));
  if (!p) throw std::bad_alloc();
  T* obj = new (p) T(std::forward<Args>(args)...);
  if constexpr (!std::is_trivially_destructible_v<T>)
    gort_gc_set_destructor(p, &detail::destroy<T>);
  return obj;
}

// Keeps an object alive from anywhere (malloc memory, a global): cppgc's
// Persistent<T>, over a gort_gc_handle.
template <class T>
class Persistent {
 public:
  Persistent() = default;
  Persistent(T* p) : h_(p ? gort_gc_handle_new(p) : nullptr) {}  // NOLINT
  Persistent(const Persistent& o) : Persistent(o.get()) {}
  Persistent(Persistent&& o) noexcept : h_(o.h_) { o.h_ = nullptr; }
  Persistent& operator=(const Persistent& o) { return *this = o.get(); }
  Persistent& operator=(Persistent&& o) noexcept {
    std::swap(h_, o.h_);
    return *this;
  }
  Persistent& operator=(T* p) {
    if (h_)
      gort_gc_handle_set(h_, p);
    else if (p)
      h_ = gort_gc_handle_new(p);
    return *this;
  }
  ~Persistent() {
    if (h_) gort_gc_handle_free(h_);
  }
  T* get() const { return h_ ? static_cast<T*>(gort_gc_handle_get(h_)) : nullptr; }
  T* operator->() const { return get(); }
  T& operator*() const { return *get(); }
  explicit operator bool() const { return get() != nullptr; }

 private:
  gort_gc_handle* h_ = nullptr;
};

// A weak reference: get() is the object while it is reachable, then nullptr.
template <class T>
class Weak {
 public:
  Weak() = default;
  explicit Weak(T* p) : w_(p ? gort_gc_weak_new(p) : nullptr) {}
  Weak(const Weak&) = delete;
  Weak& operator=(const Weak&) = delete;
  Weak(Weak&& o) noexcept : w_(o.w_) { o.w_ = nullptr; }
  ~Weak() {
    if (w_) gort_gc_weak_free(w_);
  }
  T* get() const { return w_ ? static_cast<T*>(gort_gc_weak_get(w_)) : nullptr; }

 private:
  gort_gc_weak* w_ = nullptr;
};

// Go's runtime.SetFinalizer for C++: fn(obj) runs once obj is unreachable.
template <class T>
void set_finalizer(T* obj, void (*fn)(T*)) {
  gort_gc_set_finalizer(
      obj, [](void* o, void* f) { reinterpret_cast<void (*)(T*)>(f)(static_cast<T*>(o)); },
      reinterpret_cast<void*>(fn));
}

inline void collect() {
  gort_gc_collect();
}

}  // namespace gort::gc

#endif /* __cplusplus */
#endif /* GORT_GC_H */
