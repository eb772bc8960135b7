// The scheduler test suite: one Boost.Test binary, linked with libgort.a.
// The Makefile runs it three times, with GORT_MAXPROCS=1, 2 and 8; the tests
// call gort::run with default options so that the variable applies, and set
// RunOptions::maxprocs only where a test needs a particular value. Suites:
//   tasks      spawn/join (1,000,000 tasks), run/task_id/in_task/maxprocs,
//              work stealing, runnext
//   chan       buffered/unbuffered semantics, FIFO waiters, close, element
//              lifetimes, range-for, nil channels
//   select     default, blocking, fairness, send cases, closed channels
//   timers     sleep ordering, Timer stop/reset, after, AfterFunc
//   sync       Mutex, RWMutex, WaitGroup, Once, Cond
//   context    cancellation trees, timeouts, done() in select
//   osthread   blocking operations from plain OS threads
//   exit       subprocesses: deadlock report, escaping exceptions, GORT_MAXPROCS
//
// A watchdog ends the process (exit 3, naming the test) if one test case runs
// longer than GORT_TEST_WATCHDOG seconds (default 120), so that a lost
// wake-up in the runtime fails the run instead of hanging it. It is an
// alarm(), not a thread: a thread the scheduler does not know would switch
// off the runtime's deadlock detector (which must stay on, so that a lost
// wake-up with no timer pending is reported at once, with the blocked tasks).
#define BOOST_TEST_MODULE gort_runtime
#include <boost/test/unit_test.hpp>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "gort/runtime.h"
#include "test/watchdog.h"

namespace {

struct suite_setup {
  gort_test::watchdog dog{120};
  suite_setup() {
    // Unbuffered log: if the process hangs and is killed, the log shows where.
    std::cout << std::unitbuf;
    const char* env = getenv("GORT_MAXPROCS");
    printf("runtime tests: GORT_MAXPROCS=%s, default_maxprocs()=%d\n", env ? env : "(unset)",
           gort::default_maxprocs());
    fflush(stdout);
  }
  ~suite_setup() { dog.cover_exit(); }
};

}  // namespace

BOOST_TEST_GLOBAL_FIXTURE(suite_setup);
