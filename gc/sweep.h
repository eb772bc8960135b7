// Sweeping: turning a span's mark bits into its next allocation bits.
//
// After mark termination every GC span is unswept (gc/heap.h). Sweeping a
// span first settles its specials (gc/final.h) for objects left unmarked:
// weak references to them are cleared, and an object with a finalizer is
// marked (so it survives this sweep) and its finalizer queued. Then the mark
// bits become the allocation bits, the old allocation bits (zeroed) the next
// mark bits, alloc_count the number of marked objects and freeindex 0. An
// object that was not marked is free from that moment; its memory is zeroed
// when it is allocated again. A span with no marked object is empty and goes
// back to the mheap (through g_empty, see heap.h).
//
// Who sweeps: a cache that needs a span (lazily, under the class's central
// lock) and the collector's own thread in the background (sweep_one), which
// also gives empty spans back to the mheap. Everything is swept before the
// next cycle starts (sweep termination).
#pragma once

#include "gc/heap.h"

namespace gort::gc {

enum class sweepResult { kept, empty };

// Sweeps s (owned by the caller: off every list). Lock: the span's central's.
sweepResult sweep_span(mspan* s);
// Sweeps one unswept span somewhere; false when none is left.
bool sweep_one();
// Gives the spans sweeping emptied back to the mheap (the collector's
// thread, outside the mark phase).
void free_empty_spans();
// Whether s still needs sweeping this cycle.
inline bool span_unswept(const mspan* s) {
  return __atomic_load_n(&s->sweepgen, __ATOMIC_ACQUIRE) !=
         g_sweepgen.load(std::memory_order_relaxed);
}

}  // namespace gort::gc
