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
//
// Conservative scanning makes "this object is garbage now" hard to assert
// from the main thread, whose stack holds stale words from earlier tests. So
// the tests that assert collection make and drop objects on threads of their
// own (common.h: on_thread), which exit before the collection: an exited
// thread's stack is no root. The main thread never touches the GC heap.
#define BOOST_TEST_MODULE gort_gc
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <cstdio>
#include <cstdlib>
#include <iostream>

namespace {

char current_test[512];
int watchdog_s = 180;

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
    if (tu.p_type == boost::unit_test::TUT_CASE) alarm(0);
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
    std::cout << std::unitbuf;
  }
  ~suite_setup() { boost::unit_test::framework::deregister_observer(dog); }
};

}  // namespace

BOOST_TEST_GLOBAL_FIXTURE(suite_setup);
