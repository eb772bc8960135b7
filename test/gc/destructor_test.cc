// C++ destructors of GC objects (docs/gc.md, "Destructors"): make<T> runs
// ~T() once the collector finds the object unreachable, as cppgc does: no
// resurrection and no order, so cycles of objects with destructors are
// freed, and a chain of them goes in one cycle, not one per link. Explicit
// finalizers keep Go's semantics (tested in lifetime_test.cc).
#include <boost/test/unit_test.hpp>
#include <functional>
#include <string>
#include <vector>

#include "common.h"

using namespace gc_test;

namespace {

std::atomic<int> g_destroyed{0};

// A doubly linked list node holding a std::string: the example.
struct node {
  gort::gc::Member<node> prev, next;
  std::string name;
  explicit node(int i) : name("node number " + std::to_string(i) + " with a long enough name") {}
  ~node() { g_destroyed++; }
  void trace(gort::gc::Tracer& t) const {
    t(prev);
    t(next);
  }
};

// Builds n nodes on a thread of its own and drops them; returns weak
// references to them (cyclic: a ring, else a chain). with_first sees the
// first node before the nodes are dropped: a cycle the pacer may start
// between build and a later weak_get would already have freed them.
std::vector<gort_gc_weak*> build(int n, bool ring,
                                 const std::function<void(node*)>& with_first = {}) {
  std::vector<gort_gc_weak*> w;
  on_thread([&] {
    node* first = nullptr;
    node* last = nullptr;
    for (int i = 0; i < n; i++) {
      node* x = gort::gc::make<node>(i);
      w.push_back(gort_gc_weak_new(x));
      if (last) {
        last->next = x;
        x->prev = last;
      } else {
        first = x;
      }
      last = x;
    }
    if (with_first) with_first(first);
    if (ring) {
      last->next = first;
      first->prev = last;
    }
  });
  return w;
}

int alive_count(const std::vector<gort_gc_weak*>& w) {
  int n = 0;
  on_thread([&] {
    for (gort_gc_weak* x : w) n += gort_gc_weak_get(x) != nullptr;
  });
  return n;
}

void settle() {
  collect(2);
  gort_gc_run_finalizers();
  collect(1);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(destructors)

BOOST_AUTO_TEST_CASE(a_ring_of_objects_with_destructors_is_freed) {
  g_destroyed = 0;
  auto w = build(100, true);
  settle();
  BOOST_CHECK_EQUAL(alive_count(w), 0);
  BOOST_CHECK_EQUAL(g_destroyed.load(), 100);
  on_thread([&] {
    for (auto* x : w) gort_gc_weak_free(x);
  });
}

BOOST_AUTO_TEST_CASE(a_chain_of_objects_with_destructors_goes_in_one_cycle) {
  g_destroyed = 0;
  auto w = build(200, false);
  settle();
  BOOST_CHECK_EQUAL(alive_count(w), 0);
  BOOST_CHECK_EQUAL(g_destroyed.load(), 200);
  on_thread([&] {
    for (auto* x : w) gort_gc_weak_free(x);
  });
}

BOOST_AUTO_TEST_CASE(destructors_run_once_and_not_for_live_objects) {
  g_destroyed = 0;
  static gort_gc_handle* h;
  auto w = build(10, false, [](node* first) { h = gort_gc_handle_new(first); });  // the chain
  settle();
  BOOST_CHECK_EQUAL(g_destroyed.load(), 0);
  BOOST_CHECK_EQUAL(alive_count(w), 10);
  on_thread([&] { gort_gc_handle_free(h); });
  settle();
  settle();
  BOOST_CHECK_EQUAL(g_destroyed.load(), 10);
  on_thread([&] {
    for (auto* x : w) gort_gc_weak_free(x);
  });
}

BOOST_AUTO_TEST_CASE(an_explicit_finalizer_still_resurrects_and_runs_first) {
  // set_finalizer keeps Go's semantics on an object that also has a
  // destructor: the finalizer runs first (the object survives that cycle),
  // the destructor when it is unreachable again.
  g_destroyed = 0;
  static std::atomic<int> finalized{0};
  finalized = 0;
  auto w = build(1, false, [](node* first) {
    gort::gc::set_finalizer<node>(first, [](node* n) { finalized += n->name.empty() ? 100 : 1; });
  });
  settle();
  BOOST_CHECK_EQUAL(finalized.load(), 1);
  settle();
  settle();
  BOOST_CHECK_EQUAL(g_destroyed.load(), 1);
  on_thread([&] { gort_gc_weak_free(w[0]); });
}

BOOST_AUTO_TEST_SUITE_END()
