// The pools' test suite: one Boost.Test binary, linked with libgort.a.
// Suites:
//   pool     gort::Pool<T> and the C API: get/put, New, the victim cache over
//            exactly two cycles, GC objects kept alive while pooled, a stress
//            of many tasks and threads with collections running beside them
//   scope    escape-aware scopes: recycling, escape through every barrier path
//            and the explicit one, nesting, task migration and blocking, a
//            stress with collections, per-site statistics, and
//            GORT_DEBUG=poolcheck catching planted violations (gc_scopecheck)
#define BOOST_TEST_MODULE gort_pool
#include <boost/test/unit_test.hpp>
#include <iostream>

#include "test/watchdog.h"

namespace {

struct suite_setup {
  gort_test::watchdog dog{180};
  suite_setup() { std::cout << std::unitbuf; }
  ~suite_setup() { dog.cover_exit(); }
};

}  // namespace

BOOST_TEST_GLOBAL_FIXTURE(suite_setup);
