// Allocator statistics: one snapshot function over every layer (mheap,
// mcentrals, caches) and its printer; the public face is gort_malloc_stats().
#pragma once

#include "gort/malloc.h"

namespace gort::alloc {

void collect_stats(gort_malloc_stats_t* out);
void print_stats(int fd);

}  // namespace gort::alloc
