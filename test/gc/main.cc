// The collector's test suite: one Boost.Test binary, linked with libgort.a.
// Suites:
//   api           allocation kinds, sizes, base/size, errors, settings, stats
//   lifetime      roots, handles, weak references, finalizers, precision
//   conservative  stack and register pointers (interior ones too) from
//                 stopped threads
//   torture       collect every N allocations and verify every reachable
//                 object's checksum
//   concurrent    OS threads and tasks mutating a shared graph through the
//                 barrier while the collector marks
//   bounded       cyclic garbage for a minute within a bounded heap
//   roots         what the runtime must keep: a local below gort::run, values
//                 in channels, select, timer payloads and task closures,
//                 unregistered threads, weak references during sweeping, a
//                 fork during a mark, the stop signal (stack, number,
//                 deadlocks)
//   destructors   make<T>'s destructors: cppgc's rule, cycles freed
//   poison        GORT_DEBUG=gcpoison and the checking workload (gc_check)
//
// Conservative scanning makes "this object is garbage now" hard to assert
// from the main thread, whose stack holds stale words from earlier tests. So
// the tests that assert collection make and drop objects on threads of their
// own (common.h: on_thread), which exit before the collection: an exited
// thread's stack is no root. The main thread never touches the GC heap.
#define BOOST_TEST_MODULE gort_gc
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
