// Finalizers and weak references; see final.h.
#include "gc/final.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>

#include "alloc/fixalloc.h"
#include "alloc/sys.h"
#include "gc/cycle.h"
#include "gc/roots.h"
#include "gc/sweep.h"

#define GORT_EXPORT extern "C" __attribute__((visibility("default")))

// A weak reference is its special record.
struct gort_gc_weak {};

namespace gort::gc {

namespace {

enum class specialKind : uint8_t { finalizer = 1, weak = 2, destructor = 3 };

struct special {
  special* next;   // the span's list
  special* fnext;  // finalizers: the global list, or the queue once due
  special* fprev;
  uintptr_t obj;  // the object's start (its block, with a typed header)
  void* user;     // the address the program gave
  specialKind kind;
  bool attached;             // on its span's list
  void (*fn)(void*, void*);  // a destructor's fn takes (user, nullptr)
  void* arg;
  std::atomic<uintptr_t> target;  // weak: the object, 0 once collected
};

constinit alloc::mutex g_specials_lock;
constinit alloc::fixalloc<special, size_t{1} << 32> g_specialalloc;
special* g_finalizers = nullptr;  // every attached finalizer (fnext/fprev)
special* g_finq = nullptr;        // due finalizers, not run yet (fnext)
special* g_finq_tail = nullptr;
std::atomic<uint32_t> g_finq_seq{0};  // futex: the finalizer thread waits on it
std::atomic<uint64_t> g_fin_queued{0};
std::atomic<uint64_t> g_fin_done{0};
std::atomic<uint32_t> g_fin_done_seq{0};  // futex: gort_gc_run_finalizers waits on it
std::atomic<bool> g_fin_thread{false};
std::atomic<bool> g_fin_running{false};  // the finalizer thread is running one
constinit alloc::mutex g_fin_start_lock;

special* new_special() {
  special* sp = g_specialalloc.alloc();
  sp->next = sp->fnext = sp->fprev = nullptr;
  sp->obj = 0;
  sp->user = nullptr;
  sp->attached = false;
  sp->fn = nullptr;
  sp->arg = nullptr;
  sp->target.store(0, std::memory_order_relaxed);
  return sp;
}

void unlink_span(mspan* s, special* sp) {
  special** pp = reinterpret_cast<special**>(&s->specials);
  while (*pp && *pp != sp) pp = &(*pp)->next;
  if (*pp) *pp = sp->next;
  sp->next = nullptr;
  sp->attached = false;
}

void unlink_finalizer(special* sp) {
  if (sp->fprev)
    sp->fprev->fnext = sp->fnext;
  else
    g_finalizers = sp->fnext;
  if (sp->fnext) sp->fnext->fprev = sp->fprev;
  sp->fnext = sp->fprev = nullptr;
}

bool obj_marked(const mspan* s, uintptr_t obj) {
  uint32_t idx = s->objindex(obj);
  return __atomic_load_n(&s->gcmarkBits[idx / 64], __ATOMIC_RELAXED) >> (idx % 64) & 1;
}

// Runs f's finalizer or destructor in a frame of its own. A destroyed
// object is zeroed (unless it is noscan: a tiny one shares its block), so
// that a stale pointer to it keeps nothing else alive until it is freed.
__attribute__((noinline)) void run_one(special* f) {
  f->fn(f->user, f->arg);
  if (f->kind != specialKind::destructor) return;
  mspan* s = alloc::span_of(reinterpret_cast<void*>(f->obj));
  if (s->gckind != gcKind::noscan) {
    busy_enter();  // a stop must not scan it half zeroed (harmless, but racy)
    memset(reinterpret_cast<void*>(f->obj), 0, object_size(s));
    busy_exit();
  }
}

void enqueue(special* sp) {
  if (g_finq_tail)
    g_finq_tail->fnext = sp;
  else
    g_finq = sp;
  g_finq_tail = sp;
  g_fin_queued.fetch_add(1, std::memory_order_relaxed);
}

// Overwrites the dead stack below the caller, where run_one's frame held
// the object: this thread's stack is scanned conservatively, and a stale
// copy there would keep the object alive after its finalizer ran.
__attribute__((noinline)) void clear_dead_stack() {
  volatile char buf[8192];
  for (size_t i = 0; i < sizeof buf; i += 8) buf[i] = 0;
  std::atomic_signal_fence(std::memory_order_seq_cst);
}

// Set on the finalizer thread: gort_gc_run_finalizers from a finalizer
// would wait for itself.
__thread bool tl_finalizer_thread;

void* finalizer_main(void*) {
  tl_finalizer_thread = true;
  sigset_t set;
  sigemptyset(&set);
  pthread_sigmask(SIG_SETMASK, &set, nullptr);
  register_current_thread(true);
  for (;;) {
    uint32_t seq = g_finq_seq.load(std::memory_order_acquire);
    special* f;
    {
      busy_lock g(g_specials_lock);
      f = g_finq;
      if (f) {
        g_finq = f->fnext;
        if (!g_finq) g_finq_tail = nullptr;
        // Off the queue (a root) onto this stack: shade while marking.
        if (g_marking.load(std::memory_order_relaxed)) shade(f->obj, tl_gc.rec->work);
      }
    }
    if (!f) {
      g_fin_running.store(false, std::memory_order_release);
      alloc::futex_wait(&g_finq_seq, seq, -1);
      continue;
    }
    g_fin_running.store(true, std::memory_order_release);
    run_one(f);
    clear_dead_stack();
    {
      busy_lock g(g_specials_lock);
      g_specialalloc.free(f, alloc::coarse_nanotime());
    }
    g_fin_done.fetch_add(1, std::memory_order_release);
    g_fin_done_seq.fetch_add(1, std::memory_order_release);
    alloc::futex_wake(&g_fin_done_seq, 1 << 30);
  }
  return nullptr;
}

void start_finalizer_thread() {
  if (g_fin_thread.load(std::memory_order_acquire)) return;
  alloc::lock_guard g(g_fin_start_lock);
  if (g_fin_thread.load(std::memory_order_relaxed)) return;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_t t;
  int err = pthread_create(&t, &attr, finalizer_main, nullptr);
  pthread_attr_destroy(&attr);
  if (err) alloc::fatal("gc: cannot start the finalizer thread");
  g_fin_thread.store(true, std::memory_order_release);
}

// The object p starts, as the program sees it: its span and block start.
mspan* user_object(const void* p, uintptr_t* base) {
  uint32_t idx;
  mspan* s = find_live_object(reinterpret_cast<uintptr_t>(p), &idx);
  if (!s) return nullptr;
  *base = object_base(s, idx);
  uintptr_t start = *base + (s->gckind == gcKind::typed ? kTypedHeader : 0);
  if (reinterpret_cast<uintptr_t>(p) == start) return s;
  // Tiny objects live inside a 16-byte block.
  if (s->gckind == gcKind::noscan && s->elemsize == kTinySize) return s;
  return nullptr;
}

}  // namespace

alloc::mutex& specials_lock() {
  return g_specials_lock;
}

bool sweep_specials(mspan* s) {
  bool queued = false;
  // Weak references first: they read null before a finalizer can run.
  for (special* sp = static_cast<special*>(s->specials); sp;) {
    special* next = sp->next;
    if (sp->kind == specialKind::weak && !obj_marked(s, sp->obj)) {
      sp->target.store(0, std::memory_order_release);
      unlink_span(s, sp);
    }
    sp = next;
  }
  // Finalizers (Go's): the object is marked, so it survives this cycle.
  for (special* sp = static_cast<special*>(s->specials); sp;) {
    special* next = sp->next;
    if (sp->kind == specialKind::finalizer && !obj_marked(s, sp->obj)) {
      uint32_t idx = s->objindex(sp->obj);
      __atomic_fetch_or(&s->gcmarkBits[idx / 64], uint64_t{1} << (idx % 64), __ATOMIC_RELAXED);
      unlink_span(s, sp);
      unlink_finalizer(sp);
      enqueue(sp);
      queued = true;
    }
    sp = next;
  }
  // Destructors of objects still unmarked (one just finalized is marked
  // now: its destructor waits for a later cycle). The memory is kept until
  // the destructor ran; nothing it points to is.
  for (special* sp = static_cast<special*>(s->specials); sp;) {
    special* next = sp->next;
    if (sp->kind == specialKind::destructor && !obj_marked(s, sp->obj)) {
      uint32_t idx = s->objindex(sp->obj);
      __atomic_fetch_or(&s->gcmarkBits[idx / 64], uint64_t{1} << (idx % 64), __ATOMIC_RELAXED);
      if (s->gckind == gcKind::typed) reinterpret_cast<uintptr_t*>(sp->obj)[0] = 0;
      unlink_span(s, sp);
      enqueue(sp);
      queued = true;
    }
    sp = next;
  }
  return queued;
}

void final_fork(int phase) {
  fork_lock_phase(g_specials_lock, phase);
  if (phase == 2) {
    g_fin_thread.store(false);  // the child starts its own when it needs one
    fork_lock_phase(g_fin_start_lock, phase);
  }
}

void finalizers_poke() {
  g_finq_seq.fetch_add(1, std::memory_order_release);
  alloc::futex_wake(&g_finq_seq, 1);
}

void scan_finalizer_roots(gcWork& w) {
  alloc::lock_guard g(g_specials_lock);
  for (special* sp = g_finalizers; sp; sp = sp->fnext) scan_object_children(sp->obj, w);
  for (special* sp = g_finq; sp; sp = sp->fnext) shade(sp->obj, w);
}

bool finalizer_thread_idle() {
  if (!g_fin_thread.load(std::memory_order_acquire)) return false;
  if (g_fin_running.load(std::memory_order_acquire)) return false;
  return __atomic_load_n(&g_finq, __ATOMIC_ACQUIRE) == nullptr;
}

uint64_t finalizers_run_count() {
  return g_fin_done.load(std::memory_order_relaxed);
}

}  // namespace gort::gc

using namespace gort::gc;
namespace alloc = gort::alloc;

namespace {

// Sets (fn non-null) or clears obj's special of kind k (a finalizer or a
// destructor): 0, or -1 with errno.
int set_special(void* obj, specialKind k, void (*fn)(void*, void*), void* arg) {
  uintptr_t base;
  mspan* s = user_object(obj, &base);
  if (!s) {
    errno = EINVAL;
    return -1;
  }
  if (fn) start_finalizer_thread();
  if (!tl_gc.rec && !register_current_thread(false)) {
    errno = ENOMEM;
    return -1;
  }
  busy_lock g(g_specials_lock);
  special* found = nullptr;
  for (special* sp = static_cast<special*>(s->specials); sp; sp = sp->next)
    if (sp->kind == k && sp->user == obj) found = sp;
  if (!fn) {
    if (found) {
      unlink_span(s, found);
      if (k == specialKind::finalizer) unlink_finalizer(found);
      g_specialalloc.free(found, alloc::coarse_nanotime());
    }
    return 0;
  }
  if (!found) {
    found = new_special();
    found->kind = k;
    found->obj = base;
    found->user = obj;
    found->attached = true;
    found->next = static_cast<special*>(s->specials);
    s->specials = found;
    if (k == specialKind::finalizer) {
      found->fnext = g_finalizers;
      if (g_finalizers) g_finalizers->fprev = found;
      g_finalizers = found;
    }
  }
  found->fn = fn;
  found->arg = arg;
  // A finalizer set while marking: what it reaches must stay (the pass over
  // finalizers may be over already). A destructor keeps nothing alive.
  if (k == specialKind::finalizer && g_marking.load(std::memory_order_relaxed))
    scan_object_children(base, tl_gc.rec->work);
  return 0;
}

void run_destructor(void* obj, void* dtor) {
  reinterpret_cast<void (*)(void*)>(dtor)(obj);
}

}  // namespace

GORT_EXPORT int gort_gc_set_finalizer(void* obj, void (*fn)(void*, void*), void* arg) {
  return set_special(obj, specialKind::finalizer, fn, arg);
}

GORT_EXPORT int gort_gc_set_destructor(void* obj, void (*dtor)(void*)) {
  return set_special(obj, specialKind::destructor, dtor ? run_destructor : nullptr,
                     reinterpret_cast<void*>(dtor));
}

GORT_WAITING_ENTRY(gort_gc_run_finalizers, gort_gc_run_finalizers_waiting);
extern "C" __attribute__((visibility("hidden"), used)) void gort_gc_run_finalizers_waiting() {
  if (tl_finalizer_thread) return;  // called from a finalizer: it cannot wait for itself
  uint64_t want = g_fin_queued.load(std::memory_order_acquire);
  for (;;) {
    uint32_t seq = g_fin_done_seq.load(std::memory_order_acquire);
    if (g_fin_done.load(std::memory_order_acquire) >= want) return;
    wait_or_stop(&g_fin_done_seq, seq);
  }
}

GORT_EXPORT gort_gc_weak* gort_gc_weak_new(void* obj) {
  uint32_t idx;
  mspan* s = find_live_object(reinterpret_cast<uintptr_t>(obj), &idx);
  if (!s) {
    errno = EINVAL;
    return nullptr;
  }
  if (!tl_gc.rec && !register_current_thread(false)) return nullptr;
  busy_lock g(g_specials_lock);
  special* sp = new_special();
  sp->kind = specialKind::weak;
  sp->obj = object_base(s, idx);
  sp->user = obj;
  sp->attached = true;
  sp->target.store(reinterpret_cast<uintptr_t>(obj), std::memory_order_relaxed);
  sp->next = static_cast<special*>(s->specials);
  s->specials = sp;
  return reinterpret_cast<gort_gc_weak*>(sp);
}

GORT_EXPORT void* gort_gc_weak_get(gort_gc_weak* w) {
  if (!w) return nullptr;
  auto* sp = reinterpret_cast<special*>(w);
  if (!tl_gc.rec) register_current_thread(false);
  // Under the specials lock: the target's span cannot be half way through
  // its sweep (final.h).
  busy_lock g(g_specials_lock);
  uintptr_t t = sp->target.load(std::memory_order_acquire);
  if (t) {
    if (g_marking.load(std::memory_order_relaxed)) {
      if (tl_gc.rec) shade(sp->obj, tl_gc.rec->work);
    } else {
      mspan* s = alloc::span_of(reinterpret_cast<void*>(sp->obj));
      if (span_unswept(s) && !obj_marked(s, sp->obj)) t = 0;  // dead, not swept yet
    }
  }
  return reinterpret_cast<void*>(t);
}

GORT_EXPORT void gort_gc_weak_free(gort_gc_weak* w) {
  if (!w) return;
  auto* sp = reinterpret_cast<special*>(w);
  busy_lock g(g_specials_lock);
  if (sp->kind != specialKind::weak)
    alloc::fatal("gort_gc_weak_free(%p): not a weak reference", static_cast<void*>(w));
  if (sp->attached) unlink_span(alloc::span_of(reinterpret_cast<void*>(sp->obj)), sp);
  sp->kind = specialKind{0};
  g_specialalloc.free(sp, alloc::coarse_nanotime());
}
