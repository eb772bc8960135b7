// gc_scopecheck: a program for GORT_DEBUG=poolcheck (test/pool/scope_test.cc).
// Each mode plants one violation of the scope rules (docs/pool.md) or none:
//   ok      follows the rules (escapes through the barrier and explicitly);
//   root    stores a scope object into a root range with a plain store;
//   heap    stores one into a live GC object with a plain store, then
//           collects (found at mark termination);
//   handle  makes a handle to a scope object after its scope ended;
//   read    reads a scope object after its scope ended and prints the word.
// With poolcheck on, every violation must be fatal and name the allocation
// site (this file and the line of the GORT_SCOPE_ALLOC that made it).
#include <gort/gc.h>
#include <gort/scope.h>
#include <stdio.h>
#include <string.h>

#include <thread>

namespace {

void* g_roots[4];

struct Node {
  uint64_t v;
  void* next;
};

int run(const char* mode) {
  gort_gc_set_percent(-1);
  gort_gc_add_roots(g_roots, sizeof(g_roots));
  void* holder = gort_gc_alloc(64, nullptr);
  gort_gc_handle* h = gort_gc_handle_new(holder);
  void* dead = nullptr;
  {
    gort::Scope s;  // escapes done right: nothing to report
    auto* keep = static_cast<Node*>(GORT_SCOPE_ALLOC(sizeof(Node)));
    keep->v = 7;
    gort_gc_write(&g_roots[1], keep);
    auto* keep2 = static_cast<Node*>(GORT_SCOPE_ALLOC(sizeof(Node)));
    gort_scope_escape(keep2);
  }
  {
    gort::Scope s;
    auto* n = static_cast<Node*>(GORT_SCOPE_ALLOC(sizeof(Node)));  // the planted site
    n->v = 42;
    if (!strcmp(mode, "root")) g_roots[0] = n;                      // no barrier: violation
    if (!strcmp(mode, "heap")) static_cast<void**>(holder)[2] = n;  // no barrier: violation
    dead = n;
  }
  if (!strcmp(mode, "handle")) gort_gc_handle_new(dead);
  if (!strcmp(mode, "read"))
    printf("word %llx\n", static_cast<unsigned long long>(*static_cast<uint64_t*>(dead)));
  gort_gc_collect();
  gort_gc_collect();
  if (static_cast<Node*>(g_roots[1])->v != 7) {
    printf("scopecheck: escaped object lost\n");
    return 1;
  }
  gort_gc_handle_free(h);
  printf("scopecheck: ok\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "ok";
  int rc = 1;
  std::thread t([&] { rc = run(mode); });
  t.join();
  return rc;
}
