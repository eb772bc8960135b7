// Torture: a random graph of objects of every kind and size, mutated
// through the barrier, with a full collection every N allocations and a
// verify pass after each: every object reachable from the roots must be
// intact (its checksum over id and payload holds). An object freed while
// reachable is reallocated, zeroed and refilled, which breaks its checksum.
#include <boost/test/unit_test.hpp>
#include <unordered_set>
#include <vector>

#include "common.h"

using namespace gc_test;

namespace {

// Words: 0 id, 1 sum, 2 blob (noscan), 3 blobsum, 4..7 edges. Typed nodes
// say so with a map; conservative nodes are scanned whole.
struct node {
  uint64_t id;
  uint64_t sum;
  unsigned char* blob;
  uint64_t blobsum;
  node* edge[4];
  uint64_t blobsize;
};
const uint64_t kNodeMap[1] = {0b11110100};
const gort_gc_type kNodeType = {"torture-node", sizeof(node), kNodeMap, nullptr};

uint64_t node_sum(const node* n) {
  return checksum(&n->id, 8) ^ n->blobsize;
}

node* make_node(rng& r, uint64_t id) {
  node* n = static_cast<node*>(r.below(2) ? gort_gc_alloc(sizeof(node), &kNodeType)
                                          : gort_gc_alloc(sizeof(node), nullptr));
  BOOST_REQUIRE(n);
  n->id = id;
  // Blob sizes from tiny (shares a block) to large (a span of its own).
  static const size_t kSizes[] = {3, 8, 13, 24, 100, 700, 5000};
  size_t bs =
      r.below(64) == 0 ? 40000 + r.below(80000) : kSizes[r.below(sizeof kSizes / sizeof kSizes[0])];
  auto* blob = static_cast<unsigned char*>(gort_gc_alloc_noscan(bs));
  BOOST_REQUIRE(blob);
  for (size_t i = 0; i < bs; i++) blob[i] = static_cast<unsigned char>(id * 31 + i);
  n->blobsize = bs;
  n->blobsum = checksum(blob, bs);
  gort_gc_write(reinterpret_cast<void**>(&n->blob), blob);
  n->sum = node_sum(n);
  return n;
}

constexpr int kRoots = 32;
node* g_roots[kRoots];

size_t verify() {
  std::vector<node*> stack;
  std::unordered_set<node*> seen;
  for (node* r : g_roots)
    if (r) stack.push_back(r);
  while (!stack.empty()) {
    node* n = stack.back();
    stack.pop_back();
    if (!seen.insert(n).second) continue;
    if (n->sum != node_sum(n)) BOOST_FAIL("reachable node " << n->id << " was changed or freed");
    if (checksum(n->blob, n->blobsize) != n->blobsum)
      BOOST_FAIL("blob of reachable node " << n->id << " was changed or freed");
    for (node* e : n->edge)
      if (e) stack.push_back(e);
  }
  return seen.size();
}

}  // namespace

BOOST_AUTO_TEST_SUITE(torture)

BOOST_AUTO_TEST_CASE(collect_every_n_allocations_and_verify) {
  gort_gc_add_roots(g_roots, sizeof g_roots);
  on_thread([] {
    rng r(42);
    std::vector<node*> recent;  // not a root: only used right after allocation
    const int kAllocs = 20000, kEvery = 400;
    size_t checked = 0;
    for (int i = 1; i <= kAllocs; i++) {
      node* n = make_node(r, static_cast<uint64_t>(i));
      // Link the new node into the graph somewhere reachable, and rewire.
      int root = static_cast<int>(r.below(kRoots));
      node* at = g_roots[root];
      for (int hop = 0; at && hop < 3; hop++) {
        node* next = at->edge[r.below(4)];
        if (!next) break;
        at = next;
      }
      if (!at || r.below(8) == 0) {
        gort_gc_write(reinterpret_cast<void**>(&n->edge[0]), g_roots[root]);
        gort_gc_write(reinterpret_cast<void**>(&g_roots[root]), n);
      } else {
        // Move an edge: read it, delete it, store it in the new node.
        int k = static_cast<int>(r.below(4));
        node* moved = at->edge[k];
        gort_gc_write(reinterpret_cast<void**>(&at->edge[k]), n);
        gort_gc_write(reinterpret_cast<void**>(&n->edge[1]), moved);
      }
      if (r.below(10) == 0)
        gort_gc_write(reinterpret_cast<void**>(&g_roots[r.below(kRoots)]), nullptr);
      if (i % kEvery == 0) {
        gort_gc_collect();
        checked += verify();
      }
    }
    BOOST_TEST_MESSAGE("verified " << checked << " reachable nodes over " << kAllocs / kEvery
                                   << " collections");
    BOOST_CHECK_GT(checked, 1000u);
  });
  // The garbage went: the heap holds about what is reachable.
  gort_gc_collect();
  gort_gc_stats_t st;
  gort_gc_stats(&st);
  BOOST_CHECK_GT(st.total_freed, uint64_t{40} << 20);
  gort_gc_remove_roots(g_roots);
  for (node*& n : g_roots) n = nullptr;
}

BOOST_AUTO_TEST_SUITE_END()
