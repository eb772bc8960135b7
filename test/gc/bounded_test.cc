// Cyclic garbage for a minute: rings of objects with cross links, the last
// few kept, the rest dropped. Reference counting would leak every ring; the
// collector must keep the heap bounded by the live set and the goal.
#include <boost/test/unit_test.hpp>
#include <chrono>

#include "common.h"
#include "test/alloc/helpers.h"

using namespace gc_test;

namespace {
struct ring_node {
  ring_node* next;
  ring_node* cross;
  uint64_t id;
  uint64_t pad[5];
};
constexpr int kKeep = 16;
ring_node* g_keep[kKeep];
}  // namespace

BOOST_AUTO_TEST_SUITE(bounded)

BOOST_AUTO_TEST_CASE(cyclic_garbage_for_a_minute_stays_bounded) {
  int seconds = 60;
  if (const char* s = getenv("GORT_GC_BOUNDED_SECONDS")) seconds = atoi(s);
  gort_gc_add_roots(g_keep, sizeof g_keep);
  uint64_t max_heap = 0, rings = 0;
  size_t max_rss = 0;
  on_thread([&] {
    rng r(7);
    auto end = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    while (std::chrono::steady_clock::now() < end) {
      for (int batch = 0; batch < 100; batch++, rings++) {
        int len = 50 + static_cast<int>(r.below(200));
        ring_node* first = static_cast<ring_node*>(gort_gc_alloc(sizeof(ring_node), nullptr));
        ring_node* prev = first;
        for (int i = 1; i < len; i++) {
          auto* n = static_cast<ring_node*>(gort_gc_alloc(sizeof(ring_node), nullptr));
          n->id = rings;
          gort_gc_write(reinterpret_cast<void**>(&prev->next), n);
          if (i % 7 == 0) gort_gc_write(reinterpret_cast<void**>(&n->cross), first);
          prev = n;
        }
        gort_gc_write(reinterpret_cast<void**>(&prev->next), first);  // close the cycle
        gort_gc_write(reinterpret_cast<void**>(&g_keep[rings % kKeep]), first);
      }
      gort_gc_stats_t st;
      gort_gc_stats(&st);
      if (st.heap_alloc > max_heap) max_heap = st.heap_alloc;
      size_t rss = gort_test::rss_bytes();
      if (rss > max_rss) max_rss = rss;
    }
  });
  gort_gc_stats_t st;
  gort_gc_stats(&st);
  BOOST_TEST_MESSAGE(rings << " rings, " << st.cycles << " cycles, max heap " << (max_heap >> 20)
                           << " MiB, max RSS " << (max_rss >> 20) << " MiB, total allocated "
                           << (st.total_alloc >> 20) << " MiB");
  // Live: 16 rings of at most 250 64-byte nodes (~256 KiB); the goal is the
  // 4 MiB minimum. Unloaded, the heap peaks near 11 MiB; when the collector's
  // thread is short of CPU (another process on both cores), objects allocated
  // black during the slower marks inflate the live estimate and the goal, and
  // it has been seen near 50 MiB. What must not happen is growth without bound.
  BOOST_CHECK_LT(max_heap, uint64_t{96} << 20);
  BOOST_CHECK_LT(max_rss, size_t{256} << 20);
  BOOST_CHECK_GT(st.total_alloc, uint64_t{20} * max_heap);  // it really churned
  for (ring_node*& k : g_keep) k = nullptr;
  gort_gc_remove_roots(g_keep);
}

BOOST_AUTO_TEST_SUITE_END()
