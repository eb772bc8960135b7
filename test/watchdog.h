// The test suites' watchdog: ends the process (exit 3, naming the test) if
// one test case runs longer than GORT_TEST_WATCHDOG seconds, so that a lost
// wake-up or a stuck stop of the world fails the run instead of hanging it.
// It is an alarm(), not a thread: a thread the scheduler does not know would
// switch off the runtime's deadlock detector, and one the collector does not
// know would not matter to it. Used by the Boost.Test mains of test/runtime
// and test/gc.
#pragma once

#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <cstdio>
#include <cstdlib>

namespace gort_test {

class watchdog : public boost::unit_test::test_observer {
 public:
  explicit watchdog(int default_s) {
    seconds() = default_s;
    if (const char* s = getenv("GORT_TEST_WATCHDOG")) seconds() = atoi(s);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, nullptr);
    boost::unit_test::framework::register_observer(*this);
  }
  ~watchdog() override { boost::unit_test::framework::deregister_observer(*this); }
  void test_unit_start(boost::unit_test::test_unit const& tu) override {
    if (tu.p_type != boost::unit_test::TUT_CASE || seconds() <= 0) return;
    snprintf(current(), kNameLen, "%s", tu.full_name().c_str());
    alarm(static_cast<unsigned>(seconds()));
  }
  void test_unit_finish(boost::unit_test::test_unit const& tu, unsigned long) override {
    if (tu.p_type == boost::unit_test::TUT_CASE) alarm(0);
  }
  // Covers the process's exit too (runtime threads, static destructors).
  void cover_exit() {
    snprintf(current(), kNameLen, "%s", "(after the last test: process exit)");
    if (seconds() > 0) alarm(static_cast<unsigned>(seconds()));
  }

 private:
  static constexpr size_t kNameLen = 512;
  static int& seconds() {
    static int s = 120;
    return s;
  }
  static char* current() {
    static char name[kNameLen];
    return name;
  }
  static void on_alarm(int) {
    char msg[700];
    int n =
        snprintf(msg, sizeof msg, "\nwatchdog: test case %s still running after %d s: giving up\n",
                 current(), seconds());
    if (n > 0) {
      ssize_t w =
          write(2, msg, static_cast<size_t>(n) < sizeof msg ? static_cast<size_t>(n) : sizeof msg);
      (void)w;
    }
    _exit(3);
  }
};

}  // namespace gort_test
