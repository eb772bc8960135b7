// Span object bookkeeping; see mspan.h.
#include "alloc/mspan.h"

namespace gort::alloc {

uint32_t mspan::next_free_index() {
  uint32_t i = freeindex;
  while (i < nelems) {
    uint64_t free = ~allocBits[i / 64] >> (i % 64);
    if (free) {
      i += static_cast<uint32_t>(__builtin_ctzll(free));
      break;
    }
    i = (i / 64 + 1) * 64;
  }
  if (i > nelems) i = nelems;
  freeindex = static_cast<uint16_t>(i);
  return i;
}

void mspan::init_small(uint32_t cls, uint64_t* alloc_bits, uint64_t* mark_bits) {
  elemsize = class_to_size[cls];
  div_mul = div_mul_for(elemsize);
  nelems = static_cast<uint16_t>(npages * kPageSize / elemsize);
  free_class = static_cast<uint8_t>(cls);
  spanclass = make_span_class(cls, true);
  state = spanState::small;
  alloc_count = 0;
  freeindex = 0;
  owner = 0;
  owned_where = 0;
  ocache = nullptr;
  rcount = 0;
  rnext = nullptr;
  allocBits = alloc_bits;
  gcmarkBits = mark_bits;
}

}  // namespace gort::alloc
