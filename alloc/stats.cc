// Statistics snapshot and printing; see stats.h.
#include "alloc/stats.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "alloc/mcache.h"
#include "alloc/mcentral.h"
#include "alloc/mheap.h"
#include "alloc/scavenger.h"
#include "alloc/sys.h"

namespace gort::alloc {

void collect_stats(gort_malloc_stats_t* out) {
  memset(out, 0, sizeof *out);
  uint64_t cached[kNumSizeClasses];
  size_t ncaches = 0, large_cached = 0;
  cache_counts(cached, &large_cached, &ncaches);
  uint64_t small_pages = 0;
  for (uint32_t cls = 1; cls < kNumSizeClasses; cls++) {
    mcentral& m = g_central[cls];
    gort_size_class_stats_t& c = out->classes[cls];
    c.size = class_to_size[cls];
    c.pages_per_span = class_to_npages[cls];
    // Remote frees not merged yet would count as in use.
    m.collect_remote();
    {
      lock_guard g(m.lock);
      c.spans = m.nspans;
      c.cached = cached[cls] + uint64_t{m.ntc} * m.batch;
      c.fetched = m.nfetched;
      c.returned = m.nreturned;
    }
    // Objects out of the mcentral and not waiting in a thread cache are in
    // the program's hands.
    uint64_t out_of_central = c.fetched - c.returned;
    c.inuse = out_of_central > cached[cls] ? out_of_central - cached[cls] : 0;
    out->small_inuse += c.inuse;
    out->bytes_allocated += c.inuse * c.size;
    out->bytes_cached += c.cached * c.size;
    small_pages += c.spans * class_to_npages[cls];
  }
  heapStats h = g_heap.stats();
  out->heap_mapped = h.mapped;
  out->heap_reserved = h.reserved;
  out->heap_inuse = h.inuse_pages * kPageSize;
  out->heap_free = (h.free_pages - h.released_pages) * kPageSize;
  out->heap_released = h.released_pages * kPageSize;
  out->metadata = h.meta_mapped;
  out->large_allocs = h.large_allocs;
  out->large_frees = h.large_frees;
  // Pages of large spans (small_pages is a snapshot taken class by class, so
  // clamp rather than trust the difference).
  uint64_t large_pages = h.inuse_pages > small_pages ? h.inuse_pages - small_pages : 0;
  uint64_t large_bytes = large_pages * kPageSize;
  out->bytes_allocated += large_bytes > large_cached ? large_bytes - large_cached : 0;
  out->bytes_cached += large_cached;
  out->classes[0].spans = h.large_inuse;
  out->classes[0].inuse = h.large_inuse;
  out->scavenged = h.scavenged_bytes;
  out->scavenge_passes = h.scavenge_passes;
  out->thread_caches = static_cast<uint32_t>(ncaches);
  out->scavenger_running = scavenger_running();
}

namespace {

struct printer {
  int fd = 2;
  char buf[4096];
  size_t n = 0;
  void line(const char* fmt, ...) __attribute__((format(printf, 2, 3))) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf + n, sizeof buf - n, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    n += static_cast<size_t>(k) < sizeof buf - n ? static_cast<size_t>(k) : sizeof buf - n - 1;
    if (n > sizeof buf - 200) flush();
  }
  void flush() {
    sys_write_all(fd, buf, n);
    n = 0;
  }
};

double mib(uint64_t b) {
  return static_cast<double>(b) / (1 << 20);
}

}  // namespace

void print_stats(int fd) {
  gort_malloc_stats_t s;
  collect_stats(&s);
  printer p;
  p.fd = fd;
  p.line(
      "gort: mstats: heap mapped %.1f MiB, in use %.1f MiB, free %.1f MiB, released %.1f MiB, "
      "metadata %.1f MiB\n",
      mib(s.heap_mapped), mib(s.heap_inuse), mib(s.heap_free), mib(s.heap_released),
      mib(s.metadata));
  p.line(
      "gort: mstats: allocated %.1f MiB, cached %.1f MiB, small objects in use %llu, "
      "large allocs %llu frees %llu\n",
      mib(s.bytes_allocated), mib(s.bytes_cached), static_cast<unsigned long long>(s.small_inuse),
      static_cast<unsigned long long>(s.large_allocs),
      static_cast<unsigned long long>(s.large_frees));
  p.line("gort: mstats: scavenged %.1f MiB in %llu passes, scavenger %s, %u thread caches\n",
         mib(s.scavenged), static_cast<unsigned long long>(s.scavenge_passes),
         s.scavenger_running ? "running" : "not started", s.thread_caches);
  p.line("gort: mstats: class   size  spans    inuse   cached      fetched     returned\n");
  for (int c = 1; c < GORT_NUM_SIZE_CLASSES; c++) {
    const gort_size_class_stats_t& k = s.classes[c];
    if (k.fetched == 0 && k.spans == 0) continue;
    p.line("gort: mstats: %5d %6u %6llu %8llu %8llu %12llu %12llu\n", c, k.size,
           static_cast<unsigned long long>(k.spans), static_cast<unsigned long long>(k.inuse),
           static_cast<unsigned long long>(k.cached), static_cast<unsigned long long>(k.fetched),
           static_cast<unsigned long long>(k.returned));
  }
  p.flush();
}

}  // namespace gort::alloc
