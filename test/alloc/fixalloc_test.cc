// fixalloc: objects gather in the lowest chunks, empty chunks go back to the
// OS, and released chunks are carved again correctly.
#include "alloc/fixalloc.h"

#include <boost/test/unit_test.hpp>
#include <cstring>
#include <set>
#include <vector>

using namespace gort::alloc;

namespace {
struct rec {
  uint64_t a = 7;  // default member initialisers run on every alloc()
  char pad[88];
};
using alloc_t = fixalloc<rec, size_t{64} << 20>;
}  // namespace

BOOST_AUTO_TEST_SUITE(fixalloc_suite)

BOOST_AUTO_TEST_CASE(release_and_reuse_empty_chunks) {
  static alloc_t fa;  // 64 MiB reserved, touched as used
  const size_t per = alloc_t::kPerChunk;
  std::vector<rec*> v;
  for (size_t i = 0; i < 4 * per; i++) {
    rec* r = fa.alloc();
    BOOST_REQUIRE(r->a == 7);
    memset(r->pad, 0x5a, sizeof r->pad);
    v.push_back(r);
  }
  BOOST_TEST(fa.inuse() == 4 * per);
  BOOST_TEST(fa.mapped() == 4 * alloc_t::kChunk);
  // Free chunks 1..3 entirely and one object of chunk 0.
  for (size_t i = per; i < 4 * per; i++) fa.free(v[i], 100);
  fa.free(v[0], 100);
  BOOST_TEST(fa.release_empty(99) == 0u);  // not empty long enough
  BOOST_TEST(fa.release_empty(100) == 3 * alloc_t::kChunk);
  BOOST_TEST(fa.release_empty(1000) == 0u);  // already released
  // The lowest chunk with room is filled first: the freed slot in chunk 0.
  rec* r = fa.alloc();
  BOOST_TEST(r == v[0]);
  // Then released chunks are carved from their start again, without
  // following links that were in released memory; objects never repeat.
  std::set<rec*> seen(v.begin(), v.begin() + static_cast<long>(per));
  for (size_t i = 0; i < 3 * per; i++) {
    rec* x = fa.alloc();
    BOOST_REQUIRE(x->a == 7);
    BOOST_REQUIRE(seen.insert(x).second);
    memset(x->pad, 1, sizeof x->pad);
  }
  BOOST_TEST(fa.inuse() == 4 * per);
  BOOST_TEST(fa.mapped() == 4 * alloc_t::kChunk);
}

// Metadata grows in regions, each twice the last up to the maximum, with no
// fixed cap: many more objects than one maximal region holds, all distinct,
// and ensure() promises room that try_alloc() then finds without mapping.
BOOST_AUTO_TEST_CASE(regions_grow_without_a_cap) {
  using small_t = fixalloc<rec, size_t{1} << 20>;  // regions of at most 1 MiB
  static small_t fa;
  BOOST_TEST(fa.regions() == 0u);                         // nothing mapped before the first object
  const size_t n = 20 * (size_t{1} << 20) / sizeof(rec);  // ~20 MiB of objects
  std::vector<rec*> v;
  std::set<rec*> seen;
  for (size_t i = 0; i < n; i++) {
    rec* r = fa.try_alloc();
    BOOST_REQUIRE(r != nullptr);
    BOOST_REQUIRE(r->a == 7);
    BOOST_REQUIRE(seen.insert(r).second);
    r->a = i;
    v.push_back(r);
  }
  BOOST_TEST(fa.inuse() == n);
  BOOST_TEST(fa.regions() > 20u);  // 4, 8, 16 chunks = 1 MiB, then 1 MiB each
  for (size_t i = 0; i < n; i++) BOOST_REQUIRE(v[i]->a == i);
  // Free every other object; the freed slots are reused before new chunks.
  size_t mapped = fa.mapped();
  for (size_t i = 0; i < n; i += 2) fa.free(v[i], 1);
  BOOST_TEST(fa.ensure(n / 2));
  size_t regions = fa.regions();
  for (size_t i = 0; i < n; i += 2) v[i] = fa.try_alloc();
  BOOST_TEST(fa.regions() == regions);
  BOOST_TEST(fa.mapped() == mapped);
  std::set<rec*> again(v.begin(), v.end());
  BOOST_TEST(again.size() == n);
  // ensure() beyond what is started maps a region.
  BOOST_TEST(fa.ensure(small_t::kPerChunk * 100));
  BOOST_TEST(fa.regions() == regions + 1);
}

BOOST_AUTO_TEST_SUITE_END()
