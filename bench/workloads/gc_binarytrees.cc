// binary-trees (the Benchmarks Game), single-threaded, on gort's collector:
// a stretch tree, a long-lived tree, then many short-lived trees at each
// depth. Nodes are two pointers, allocated conservative (16 bytes, scanned
// whole, which for this type is exact) and linked through the write barrier.
// Peers: bench/peers/go/binarytrees.go, bench/peers/boehm/binarytrees.c.
#include <gort/gc.h>

#include "gc_common.h"

namespace {

struct Node {
  Node* left;
  Node* right;
};

Node* bottom_up(int depth) {
  Node* n = static_cast<Node*>(gort_gc_alloc(sizeof(Node), nullptr));
  if (!n) gcb_fail("out of memory");
  if (depth > 0) {
    gort_gc_write(reinterpret_cast<void**>(&n->left), bottom_up(depth - 1));
    gort_gc_write(reinterpret_cast<void**>(&n->right), bottom_up(depth - 1));
  }
  return n;
}

long check(const Node* n) {
  return n->left ? 1 + check(n->left) + check(n->right) : 1;
}

}  // namespace

int main() {
  const int min_depth = 4, max_depth = gcb_tree_depth();
  int64_t t0 = gcb_now_ns();
  long stretch = check(bottom_up(max_depth + 1));
  if (stretch != (2L << (max_depth + 1)) - 1) gcb_fail("stretch tree check");
  Node* long_lived = bottom_up(max_depth);
  for (int d = min_depth; d <= max_depth; d += 2) {
    long iterations = 1L << (max_depth - d + min_depth), sum = 0;
    for (long i = 0; i < iterations; i++) sum += check(bottom_up(d));
    if (sum != iterations * ((2L << d) - 1)) gcb_fail("short-lived tree check");
  }
  if (check(long_lived) != (2L << max_depth) - 1) gcb_fail("long-lived tree check");
  gcb_result("time_ms", (gcb_now_ns() - t0) / 1e6, "ms", "lower");
  gort_gc_stats_t st;
  gort_gc_stats(&st);
  gcb_result("cycles", static_cast<double>(st.cycles), "n", "lower");
  return 0;
}
