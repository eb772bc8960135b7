// binary-trees on Boehm GC: the same work as bench/workloads/gc_binarytrees.cc
// (GC_MALLOC nodes of two pointers, default settings; GC_MARKERS sets the
// parallel markers).
#include <gc.h>

#include "../../workloads/gc_common.h"

typedef struct Node {
  struct Node* left;
  struct Node* right;
} Node;

static Node* bottom_up(int depth) {
  Node* n = (Node*)GC_MALLOC(sizeof(Node));
  if (!n) gcb_fail("out of memory");
  if (depth > 0) {
    n->left = bottom_up(depth - 1);
    n->right = bottom_up(depth - 1);
  }
  return n;
}

static long check(const Node* n) {
  return n->left ? 1 + check(n->left) + check(n->right) : 1;
}

int main(void) {
  GC_INIT();
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
  gcb_result("cycles", (double)GC_get_gc_no(), "n", "lower");
  return 0;
}
