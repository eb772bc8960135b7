/* gort/malloc.h: gort's malloc extensions and introspection (C API).
 *
 * Linking libgort (or LD_PRELOAD=libgort.so) replaces malloc, free, calloc,
 * realloc, reallocarray, posix_memalign, aligned_alloc, memalign, valloc,
 * pvalloc, malloc_usable_size, malloc_trim and every operator new/delete.
 * The gort_* names below are the same allocator under names that never
 * collide, plus statistics. See docs/alloc.md.
 */
#ifndef GORT_MALLOC_H
#define GORT_MALLOC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#define GORT_NOEXCEPT noexcept
#else
#define GORT_NOEXCEPT
#endif

#define GORT_NUM_SIZE_CLASSES 67 /* class 0 is "large" (> 32 KiB) */

void* gort_malloc(size_t size) GORT_NOEXCEPT;
void* gort_calloc(size_t n, size_t size) GORT_NOEXCEPT;
void* gort_realloc(void* p, size_t size) GORT_NOEXCEPT;
void* gort_aligned_alloc(size_t alignment, size_t size) GORT_NOEXCEPT;
void gort_free(void* p) GORT_NOEXCEPT;
size_t gort_malloc_usable_size(const void* p) GORT_NOEXCEPT;

typedef struct gort_size_class_stats {
  uint32_t size;           /* object size in bytes */
  uint32_t pages_per_span; /* 8 KiB pages in a span of this class */
  uint64_t spans;          /* spans of this class in use (class 0: large blocks, including
                              freed ones a thread keeps for reuse) */
  uint64_t inuse;          /* objects in the program's hands */
  uint64_t cached;         /* free objects waiting in thread and transfer caches */
  uint64_t fetched;        /* objects moved from the class's mcentral to caches, cumulative */
  uint64_t returned;       /* objects moved back, cumulative */
} gort_size_class_stats_t;

typedef struct gort_malloc_stats {
  size_t heap_mapped;     /* heap address space committed (read-write); not RSS */
  size_t heap_inuse;      /* bytes in spans holding objects */
  size_t heap_free;       /* bytes in free spans still backed by memory */
  size_t heap_released;   /* bytes in free spans returned to the OS (or never touched) */
  size_t bytes_allocated; /* bytes in live objects (small: class size; large: pages) */
  size_t bytes_cached;    /* bytes of free objects in thread and transfer caches
                             (including freed large blocks kept for reuse) */
  size_t metadata;        /* span and arena metadata mapped */
  uint64_t small_inuse;   /* small (<= 32 KiB) objects in the program's hands */
  uint64_t large_allocs;  /* cumulative large allocations */
  uint64_t large_frees;
  uint64_t scavenged; /* cumulative bytes returned to the OS */
  uint64_t scavenge_passes;
  uint32_t thread_caches; /* live thread caches */
  int32_t scavenger_running;
  size_t heap_reserved; /* heap address space reserved (PROT_NONE until committed) */
  gort_size_class_stats_t classes[GORT_NUM_SIZE_CLASSES];
} gort_malloc_stats_t;

/* Fills *out with a snapshot (other threads keep running; counters may be a
 * few operations stale). Never allocates. Small-object counts are kept per
 * batch, not per call, so that malloc's fast path does not pay for them:
 * fetched/returned move in batches between a class's mcentral and the
 * caches, and inuse = fetched - returned - (objects in thread caches); cached
 * also counts the mcentral's transfer cache, which returned already covers.
 * Large blocks: large_allocs/large_frees count mheap operations; a block a
 * thread reuses from its cache of freed large blocks is not counted again,
 * and classes[0].inuse counts those parked blocks too. */
void gort_malloc_stats(gort_malloc_stats_t* out) GORT_NOEXCEPT;
/* Prints the statistics in human-readable form to fd (what
 * GORT_DEBUG=mstats=1 prints at exit). */
void gort_malloc_stats_print(int fd) GORT_NOEXCEPT;
/* Returns every free page to the OS now; returns the bytes released. */
size_t gort_scavenge(void) GORT_NOEXCEPT;

/* The sampled heap profile (docs/observability.md). Sets the sampling rate:
 * one allocation per `bytes` allocated on average (Go's MemProfileRate;
 * 524288 is the default of GORT_DEBUG=heapprofile), 1 samples every
 * allocation, 0 stops sampling. Returns the previous rate. Off unless
 * GORT_DEBUG=heapprofile=PATH or heapprofilerate=N is set or this is called;
 * set it early: allocations made before are not in the profile. */
size_t gort_heap_profile_rate(size_t bytes) GORT_NOEXCEPT;
/* Writes the heap profile to path in pprof's protobuf format (go tool pprof
 * reads it without the binary): alloc_objects, alloc_space, inuse_objects,
 * inuse_space, unscaled as Go's heap profile is. Returns 0, or -1 with
 * errno set. */
int gort_heap_profile_write(const char* path) GORT_NOEXCEPT;

#ifdef __cplusplus
}
#endif

#ifdef __cplusplus
namespace gort {
/* C++: gort::heap_profile_write("heap.pb") returns false with errno set on
 * failure. */
inline bool heap_profile_write(const char* path) noexcept {
  return gort_heap_profile_write(path) == 0;
}
inline size_t heap_profile_rate(size_t bytes) noexcept {
  return gort_heap_profile_rate(bytes);
}
}  // namespace gort
#endif

#endif /* GORT_MALLOC_H */
