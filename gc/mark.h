// Marking: tri-colour over the spans' gcmarkBits.
//
// White: mark bit clear. Grey: mark bit set, object in some gcWork (or a
// work buffer on the global list), not yet scanned. Black: marked and
// scanned (or noscan, or allocated during the mark phase: black at once).
// Setting a mark bit is an atomic OR, so several markers and the program's
// write barriers may shade the same object; only the one that flips the bit
// pushes it.
//
// gcWork is Go's: a marker's private stack of grey objects in 4 KiB work
// buffers; full buffers go to a global list (g_work_lock) where idle markers
// take them, so the lock is taken once per ~500 objects. Each registered
// thread has its own gcWork for what its write barriers shade (used in busy
// regions only); mark termination collects them while the world is stopped.
// A marker whose buffer holds grey objects while the global list is empty
// gives half of them to the list (balance, as Go's gcDrain does): a linked
// structure's frontier otherwise stays in one buffer, and if that marker's
// thread is descheduled the mark assists find nothing to do while the heap
// grows past its goal.
//
// The hybrid write barrier (Go's, Yuasa deletion plus Dijkstra insertion,
// both always shaded): gort_gc_write(slot, v) stores first and then, if the
// collector is marking, shades the old and the new value. Storing first is
// what makes the barrier safe against a stop at any instruction: a store
// that happened before the world stopped needs no barrier (marking had not
// begun), and one after it sees g_marking set.
#pragma once

#include <cstddef>
#include <cstdint>

#include "gc/heap.h"

namespace gort::gc {

struct workbuf {
  static constexpr uint32_t kCap = 510;
  workbuf* next;
  uint32_t n;
  uintptr_t obj[kCap];
};

class gcWork {
 public:
  void push(uintptr_t obj) {
    if (!cur_ || cur_->n == workbuf::kCap) refill_push();
    cur_->obj[cur_->n++] = obj;
  }
  bool pop(uintptr_t* obj) {
    if (!cur_ || cur_->n == 0) {
      if (!refill_pop()) return false;
    }
    *obj = cur_->obj[--cur_->n];
    return true;
  }
  // Gives the grey objects held here to the global list.
  void flush();
  // Gives half of them to the global list (when it is empty).
  void balance();
  bool empty() const { return !cur_ || cur_->n == 0; }
  uint64_t bytes_marked = 0;  // summed into the cycle's live heap

 private:
  void refill_push();
  bool refill_pop();
  workbuf* cur_ = nullptr;
};

// Whether the global list has grey objects.
bool work_available();

// p is any word: if it points into an allocated GC object, mark it and, if
// it was white and has pointers, push it on w.
void shade(uintptr_t p, gcWork& w);
// Allocated black: object idx of s (the world cannot stop: busy region).
// Large objects; small ones are black by range (gc/heap.cc).
inline void mark_new(mspan* s, uint32_t idx) {
  __atomic_fetch_or(&s->gcmarkBits[idx / 64], uint64_t{1} << (idx % 64), __ATOMIC_RELAXED);
}
// Scans [lo, hi) conservatively (stacks, registers, root ranges).
void scan_range(uintptr_t lo, uintptr_t hi, gcWork& w);
// Scans the object of s at base its kind's way. A large object is scanned
// in 128 KiB oblets: its base scans the first and pushes the others, whose
// addresses (inside the object) come back here as grey entries.
void scan_object(uintptr_t obj, mspan* s, gcWork& w);
// Like scan_object, but without marking the object itself: what objects
// with finalizers reach stays alive (gc/final.cc).
void scan_object_children(uintptr_t obj, gcWork& w);
// Scans grey objects until w and the global list are empty (returns true)
// or budget objects were scanned (returns false).
bool drain(gcWork& w, uint64_t budget, uint64_t* scanned = nullptr);

// GORT_DEBUG=gcverify=1, at mark termination with the world stopped and
// every cache flushed: checks the tri-colour invariant over the whole heap
// (every pointer in a marked object leads to a marked object); a violation
// is a fatal error naming both objects. Returns the objects checked.
uint64_t verify_heap();
// GORT_DEBUG=gcverify, at sweep termination (every span swept, every cache
// flushed): no mark bit is set yet. A fatal error otherwise.
void verify_unmarked();

// Whether the object containing p is marked (p is the start of a GC object).
bool is_marked(uintptr_t p);

// The barrier's marking half: shades old and v (any thread).
void barrier_slow(void* old, void* v);

// GORT_DEBUG=poolcheck (pool/scope.cc), at mark termination with the world
// stopped and every cache flushed: fn(obj, v, arg) for every pointer word v
// of every marked object obj that is conservative or has a pointer map.
void for_each_marked_word(void (*fn)(uintptr_t obj, uintptr_t v, void* arg), void* arg);

}  // namespace gort::gc
