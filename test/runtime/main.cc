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
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "gort/runtime.h"

namespace {

char current_test[512];
int watchdog_s = 120;

void on_alarm(int) {
  char msg[700];
  int n =
      snprintf(msg, sizeof msg, "\nwatchdog: test case %s still running after %d s: giving up\n",
               current_test, watchdog_s);
  if (n > 0) {
    ssize_t w =
        write(2, msg, static_cast<size_t>(n) < sizeof msg ? static_cast<size_t>(n) : sizeof msg);
    (void)w;
  }
  _exit(3);
}

struct watchdog : boost::unit_test::test_observer {
  void test_unit_start(boost::unit_test::test_unit const& tu) override {
    if (tu.p_type != boost::unit_test::TUT_CASE || watchdog_s <= 0) return;
    snprintf(current_test, sizeof current_test, "%s", tu.full_name().c_str());
    alarm(static_cast<unsigned>(watchdog_s));
  }
  void test_unit_finish(boost::unit_test::test_unit const& tu, unsigned long) override {
    if (tu.p_type != boost::unit_test::TUT_CASE) return;
    alarm(0);
  }
};

struct suite_setup {
  watchdog dog;
  suite_setup() {
    if (const char* s = getenv("GORT_TEST_WATCHDOG")) watchdog_s = atoi(s);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, nullptr);
    boost::unit_test::framework::register_observer(dog);
    // Unbuffered log: if the process hangs and is killed, the log shows where.
    std::cout << std::unitbuf;
    const char* env = getenv("GORT_MAXPROCS");
    printf("runtime tests: GORT_MAXPROCS=%s, default_maxprocs()=%d\n", env ? env : "(unset)",
           gort::default_maxprocs());
    fflush(stdout);
  }
  ~suite_setup() {
    // The watchdog also covers the process's exit (runtime threads, static
    // destructors).
    snprintf(current_test, sizeof current_test, "%s", "(after the last test: process exit)");
    if (watchdog_s > 0) alarm(static_cast<unsigned>(watchdog_s));
    boost::unit_test::framework::deregister_observer(dog);
  }
};

}  // namespace

BOOST_TEST_GLOBAL_FIXTURE(suite_setup);
