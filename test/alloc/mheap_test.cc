// The page heap: span allocation, alignment, coalescing, the page map, the
// released bitmap and scavenging, checked with mheap::verify() after random
// operations.
#include "alloc/mheap.h"

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

BOOST_AUTO_TEST_SUITE_END()
