// Finalizers and weak references: "specials" of GC objects, as in Go.
//
// A special is a record attached to the span of its object (mspan.specials,
// a list) and, for finalizers, also on the global list of finalizers. Kinds:
//  - finalizer (Go's SetFinalizer): while marking, the collector scans what
//    each finalizable object points to (not the object itself), so all of
//    that stays alive. When sweeping finds the object unmarked, it marks it
//    (it survives this cycle), takes the finalizer off and queues it. The
//    finalizer thread (a registered thread of its own) runs fn(obj, arg);
//    objects in the queue are roots until their finalizer ran, and the
//    object is freed by the next cycle unless fn made it reachable again.
//    An object reachable from its own finalizable object (a cycle) is
//    always marked, so it is never finalized nor freed (Go's rule).
//  - destructor (make<T>'s ~T(), cppgc's rule): not a root of anything, so
//    objects with destructors die like any other, cycles of them included,
//    and a whole chain in one cycle. When sweeping finds the object
//    unmarked (after its finalizer, if it had one, ran in an earlier cycle),
//    it keeps the object's memory (marks it), clears a typed object's type
//    word (nothing traces a dying object again), takes the destructor off
//    and queues it with the finalizers. The finalizer thread runs it and
//    zeroes the object; the next cycle frees it. Destructors run in no
//    order: one must not touch other GC objects (they may be freed
//    already), and must not make its object reachable again (no
//    resurrection: the object is freed regardless; its memory stays valid
//    but destroyed while reachable).
//  - weak: a gort_gc_weak record with the target's address. Sweeping an
//    unmarked target clears it (before any finalizer of the target is
//    queued). gort_gc_weak_get shades the target while marking (the caller
//    now holds it on a black stack) and returns null for a target that the
//    last mark left unmarked even if its span was not swept yet.
//
// Lock: g_specials_lock guards every span's specials list, the finalizer
// list and the weak records. Program threads take it in busy regions; it
// is taken after a gcCentral lock (sweeping) and is a leaf otherwise. A span
// with specials is swept, its bitmaps swapped included, under it, so that
// gort_gc_weak_get (which takes it once marking is over) never reads a
// mark bitmap half way through the swap.
#pragma once

#include "gc/mark.h"

namespace gort::gc {

// Sweep: settles the specials of s's unmarked objects (central lock and
// specials_lock() held); true if it queued a finalizer or destructor (the
// caller calls finalizers_poke once it let go of the locks).
bool sweep_specials(mspan* s);
alloc::mutex& specials_lock();
// Concurrent mark: what finalizable objects and queued finalizers reach.
void scan_finalizer_roots(gcWork& w);
// Wakes the finalizer thread if sweeping queued finalizers.
void finalizers_poke();
uint64_t finalizers_run_count();
// Whether the finalizer thread exists and has nothing to run: it cannot
// ready a task then (the scheduler's deadlock check, gc/cycle.cc).
bool finalizer_thread_idle();

}  // namespace gort::gc
