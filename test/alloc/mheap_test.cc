// The page heap: span allocation, alignment, coalescing, the page map, the
// released bitmap and scavenging, checked with mheap::verify() after random
// operations.
#include "alloc/mheap.h"

#include <sys/mman.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <cstring>
#include <random>
#include <vector>

#include "alloc/init.h"
#include "alloc/mcache.h"

using namespace gort::alloc;

namespace {
void require_valid() {
  const char* e = g_heap.verify();
  BOOST_REQUIRE_MESSAGE(e == nullptr, (e ? e : ""));
}
}  // namespace

BOOST_AUTO_TEST_SUITE(mheap_suite)

BOOST_AUTO_TEST_CASE(page_map_finds_every_page) {
  ensure_init();
  mspan* s = g_heap.alloc_span(37, spanState::large);
  BOOST_REQUIRE(s);
  BOOST_TEST(s->npages == 37u);
  for (uintptr_t a = s->base; a < s->limit(); a += 4096) {
    BOOST_REQUIRE(span_of(reinterpret_cast<void*>(a)) == s);
    BOOST_REQUIRE(span_of(reinterpret_cast<void*>(a + 4095)) == s);
  }
  g_heap.free_span(s);
  BOOST_TEST(span_of(reinterpret_cast<void*>(s->base + 5 * kPageSize)) == nullptr);
  require_valid();
}

BOOST_AUTO_TEST_CASE(foreign_pointers_read_null) {
  int local = 0;
  BOOST_TEST(span_of(&local) == nullptr);
  BOOST_TEST(span_of(nullptr) == nullptr);
  BOOST_TEST(span_of(reinterpret_cast<void*>(1)) == nullptr);
  BOOST_TEST(span_of(reinterpret_cast<void*>(~uintptr_t{0})) == nullptr);
  BOOST_TEST(span_of(reinterpret_cast<void*>(uintptr_t{1} << 60)) == nullptr);
  static char in_bss[16];
  BOOST_TEST(span_of(in_bss) == nullptr);
}

BOOST_AUTO_TEST_CASE(arenas_are_huge_page_aligned) {
  mspan* s = g_heap.alloc_span(1, spanState::large);
  BOOST_REQUIRE(s);
  uintptr_t arena = s->base & ~(kArenaSize - 1);
  BOOST_TEST(arena % (2u << 20) == 0u);
  BOOST_TEST(g_arenas[arena >> kArenaShift] != nullptr);
  g_heap.free_span(s);
}

BOOST_AUTO_TEST_CASE(aligned_spans) {
  for (uintptr_t align : {2u, 16u, 128u, 1024u}) {
    mspan* s = g_heap.alloc_span(3, spanState::large, align);
    BOOST_REQUIRE(s);
    BOOST_TEST(s->base % (align * kPageSize) == 0u);
    g_heap.free_span(s);
    require_valid();
  }
}

BOOST_AUTO_TEST_CASE(random_alloc_free_keeps_invariants) {
  std::mt19937_64 rng(42);
  std::vector<mspan*> live;
  live.reserve(3000);  // its growth would take small spans and skew inuse_pages
  heapStats before = g_heap.stats();
  for (int i = 0; i < 3000; i++) {
    if (live.empty() || rng() % 3 != 0) {
      uintptr_t n = 1 + rng() % (rng() % 8 == 0 ? 2000 : 40);
      uintptr_t align = rng() % 10 == 0 ? uintptr_t{1} << (rng() % 6) : 1;
      mspan* s = g_heap.alloc_span(n, spanState::large, align);
      BOOST_REQUIRE(s);
      BOOST_REQUIRE(s->base % (align * kPageSize) == 0);
      // No overlap with live spans: every page maps to s.
      BOOST_REQUIRE(span_of(reinterpret_cast<void*>(s->base)) == s);
      BOOST_REQUIRE(span_of(reinterpret_cast<void*>(s->limit() - 1)) == s);
      memset(reinterpret_cast<void*>(s->base), 0x5a, 64);
      live.push_back(s);
    } else {
      size_t k = rng() % live.size();
      g_heap.free_span(live[k]);
      live[k] = live.back();
      live.pop_back();
    }
    if (i % 100 == 0) require_valid();
  }
  for (mspan* s : live) g_heap.free_span(s);
  require_valid();
  heapStats after = g_heap.stats();
  BOOST_TEST(after.inuse_pages == before.inuse_pages);
}

BOOST_AUTO_TEST_CASE(shrink_and_grow_in_place) {
  mspan* s = g_heap.alloc_span(64, spanState::large);
  BOOST_REQUIRE(s);
  uintptr_t base = s->base;
  g_heap.shrink_span(s, 10);
  BOOST_TEST(s->npages == 10u);
  BOOST_TEST(span_of(reinterpret_cast<void*>(base + 20 * kPageSize)) != s);
  require_valid();
  // The pages just freed follow the span, so it can grow back.
  BOOST_TEST(g_heap.try_grow_span(s, 40));
  BOOST_TEST(s->npages == 40u);
  BOOST_TEST(span_of(reinterpret_cast<void*>(base + 39 * kPageSize)) == s);
  require_valid();
  mspan* blocker = g_heap.alloc_span(1, spanState::large);
  g_heap.free_span(s);
  g_heap.free_span(blocker);
  require_valid();
}

BOOST_AUTO_TEST_CASE(scavenge_releases_and_memory_reads_zero) {
  mspan* s = g_heap.alloc_span(256, spanState::large);
  BOOST_REQUIRE(s);
  memset(reinterpret_cast<void*>(s->base), 0xab, 256 * kPageSize);
  uintptr_t base = s->base;
  g_heap.free_span(s);
  g_heap.scavenge(0, nullptr);
  heapStats st = g_heap.stats();
  BOOST_TEST(st.free_pages == st.released_pages);  // nothing backed is left free
  require_valid();
  // Released pages read as zero (MADV_DONTNEED on private anonymous memory).
  const unsigned char* p = reinterpret_cast<const unsigned char*>(base);
  for (size_t i = 0; i < 256 * kPageSize; i += 4093) BOOST_REQUIRE(p[i] == 0);
  // A span allocated from released pages needs no zeroing.
  mspan* t = g_heap.alloc_span(256, spanState::large);
  BOOST_TEST(!t->needzero);
  g_heap.free_span(t);
}

namespace {
// Leaves nruns free runs of run_pages pages, each after a one-page span in
// use and (as consecutive spans are carved from one free run) before the next
// one, so they cannot coalesce: each span of run_pages + 1 pages is shrunk to
// its first page. Returns the one-page spans.
std::vector<mspan*> fragment(size_t nruns, uintptr_t run_pages) {
  std::vector<mspan*> heads;
  for (size_t i = 0; i < nruns; i++) {
    mspan* s = g_heap.alloc_span(run_pages + 1, spanState::large);
    BOOST_REQUIRE(s);
    heads.push_back(s);
  }
  for (mspan* s : heads) g_heap.shrink_span(s, 1);
  return heads;
}
void unfragment(const std::vector<mspan*>& heads) {
  for (mspan* s : heads) g_heap.free_span(s);
}
// Search steps per large allocation + free pair over a heap with nruns free
// large runs.
double steps_per_large_pair(size_t nruns) {
  std::vector<mspan*> all = fragment(nruns, kFreeListsExact);
  BOOST_REQUIRE(g_heap.stats().free_large_runs >= nruns / 2);
  require_valid();
  const int kPairs = 200;
  uint64_t before = g_heap.stats().page_search_steps;
  for (int i = 0; i < kPairs; i++) {
    mspan* s = g_heap.alloc_span(kFreeListsExact, spanState::large);
    BOOST_REQUIRE(s);
    g_heap.free_span(s);
  }
  uint64_t steps = g_heap.stats().page_search_steps - before;
  unfragment(all);
  require_valid();
  return static_cast<double>(steps) / kPairs;
}
}  // namespace

// The cost of finding a large free run is a treap descent, O(log n) in the
// number of free runs: 32 times more runs cost a small constant factor more
// steps, where the old linear best fit cost 32 times more (it walked them all).
BOOST_AUTO_TEST_CASE(large_run_search_cost_does_not_grow_with_fragmentation) {
  double few = steps_per_large_pair(16);
  double many = steps_per_large_pair(512);
  BOOST_TEST_MESSAGE("search steps per large alloc+free: " << few << " with 16 runs, " << many
                                                           << " with 512 runs");
  BOOST_TEST(many < 4 * few + 8);
  BOOST_TEST(many < 150);  // a walk of the runs alone would be >= 512
}

// A scavenge pass examines each span it releases once, plus the young span it
// stops at: O(released), not a rescan of every list after each release.
BOOST_AUTO_TEST_CASE(scavenge_cost_is_linear_in_what_it_releases) {
  g_heap.scavenge(0, nullptr);
  const size_t n = 2000;
  std::vector<mspan*> all = fragment(n, 2);
  uint64_t before = g_heap.stats().page_search_steps;
  int64_t next = 0;
  // Nothing is old enough yet: one look at the queue's front.
  BOOST_TEST(g_heap.scavenge(int64_t{3600} * 1000000000, &next) == 0u);
  BOOST_TEST(next > 0);
  BOOST_TEST(g_heap.stats().page_search_steps - before <= 1u);
  before = g_heap.stats().page_search_steps;
  size_t released = g_heap.scavenge(0, nullptr);
  uint64_t steps = g_heap.stats().page_search_steps - before;
  BOOST_TEST_MESSAGE("scavenge of " << n << " runs: " << steps << " steps, " << released
                                    << " bytes");
  // A background scavenger pass may take some of the runs first, and its
  // steps count too: allow for it, far below the n*n/2 of a rescan per release.
  BOOST_TEST(steps <= 2 * n + 8);
  heapStats st = g_heap.stats();
  BOOST_TEST(st.free_pages == st.released_pages);
  require_valid();
  unfragment(all);
  require_valid();
}

namespace {
// OS pages of [p, p + n) that are resident (the kernel's word, mincore).
size_t resident_pages(uintptr_t p, size_t n) {
  std::vector<unsigned char> v(n / 4096);
  BOOST_REQUIRE(mincore(reinterpret_cast<void*>(p), n, v.data()) == 0);
  size_t k = 0;
  for (unsigned char c : v) k += c & 1;
  return k;
}
}  // namespace

// Huge-page aware scavenging (mheap.h "Huge pages"): the free end of a huge
// page that is mostly in use stays backed; the free end of a mostly free one
// goes; on demand (min age 0) both go.
BOOST_AUTO_TEST_CASE(huge_aware_scavenge_keeps_dense_huge_pages) {
  ensure_init();
  g_heap.scavenge(0, nullptr);
  mspan* dense = g_heap.alloc_span(kPagesPerHuge, spanState::large, kPagesPerHuge);
  mspan* sparse = g_heap.alloc_span(kPagesPerHuge, spanState::large, kPagesPerHuge);
  BOOST_REQUIRE(dense);
  BOOST_REQUIRE(sparse);
  memset(reinterpret_cast<void*>(dense->base), 1, kHugePageSize);
  memset(reinterpret_cast<void*>(sparse->base), 1, kHugePageSize);
  const uintptr_t kDenseUsed = 200, kSparseUsed = 16;
  g_heap.shrink_span(dense, kDenseUsed);
  g_heap.shrink_span(sparse, kSparseUsed);
  const uintptr_t dtail = dense->base + kDenseUsed * kPageSize;
  const uintptr_t stail = sparse->base + kSparseUsed * kPageSize;
  const size_t dbytes = (kPagesPerHuge - kDenseUsed) * kPageSize;
  const size_t sbytes = (kPagesPerHuge - kSparseUsed) * kPageSize;
  BOOST_REQUIRE(resident_pages(dtail, dbytes) == dbytes / 4096);
  BOOST_REQUIRE(resident_pages(stail, sbytes) == sbytes / 4096);
  usleep(20000);  // both tails older than the 1 ns delay below on the coarse clock
  g_heap.set_huge_aware(true);
  g_heap.scavenge(1, nullptr);
  g_heap.set_huge_aware(false);
  BOOST_TEST(resident_pages(dtail, dbytes) == dbytes / 4096);
  BOOST_TEST(resident_pages(stail, sbytes) == 0u);
  BOOST_TEST(resident_pages(dense->base, kDenseUsed * kPageSize) == kDenseUsed * kPageSize / 4096);
  require_valid();
  g_heap.scavenge(0, nullptr);  // on demand: everything free goes
  BOOST_TEST(resident_pages(dtail, dbytes) == 0u);
  require_valid();
  g_heap.free_span(dense);
  g_heap.free_span(sparse);
  require_valid();
}

BOOST_AUTO_TEST_SUITE_END()
