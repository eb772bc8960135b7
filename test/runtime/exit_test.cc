// How programs end, run as subprocesses (build/test/sched_*): the deadlock
// report, exceptions escaping tasks, the sync types' fatal errors, bad
// GORT_MAXPROCS values, OS threads and the deadlock detector, and blocking
// operations with no gort::run at all.
#include <sched.h>

#include <boost/test/unit_test.hpp>
#include <cctype>
#include <sstream>
#include <string>
#include <vector>

#include "../alloc/helpers.h"
#include "common.h"

using gort_test::result;

namespace {

const char* kDeadlock = "all tasks are asleep - deadlock!";

result run_prog(const std::string& prog, const std::string& mode,
                const std::vector<std::string>& env = {}) {
  std::vector<std::string> argv{gort_test::test_prog(prog)};
  if (!mode.empty()) argv.push_back(mode);
  return gort_test::run(argv, env, "", 30);
}

// n occurs in s as a whole number (not inside a longer number or word).
bool has_number(const std::string& s, const std::string& n) {
  for (size_t pos = s.find(n); pos != std::string::npos; pos = s.find(n, pos + 1)) {
    bool left = pos == 0 || !isalnum(static_cast<unsigned char>(s[pos - 1]));
    size_t end = pos + n.size();
    bool right = end == s.size() || !isalnum(static_cast<unsigned char>(s[end]));
    if (left && right) return true;
  }
  return false;
}

// The number after "word " on stdout ("thrower 203").
std::string number_after(const std::string& out, const std::string& word) {
  size_t p = out.find(word + " ");
  if (p == std::string::npos) return "";
  p += word.size() + 1;
  size_t e = p;
  while (e < out.size() && isdigit(static_cast<unsigned char>(out[e]))) e++;
  return out.substr(p, e - p);
}

#define DESCRIBE(r)                                                             \
  "status " << r.status << (r.timed_out ? " (timed out)" : "") << "\nstdout:\n" \
            << r.out << "\nstderr:\n"                                           \
            << r.err

void expect_deadlock(const std::string& prog, const std::string& mode) {
  result r = run_prog(prog, mode);
  BOOST_TEST(!r.timed_out, prog << " " << mode);
  BOOST_TEST(r.status == 2, prog << " " << mode << ": " << DESCRIBE(r));
  BOOST_TEST(r.err.find(kDeadlock) != std::string::npos,
             prog << " " << mode << ": " << DESCRIBE(r));
  BOOST_TEST(r.out.find("ok") == std::string::npos, prog << " " << mode);
}

void expect_ok(const std::string& prog, const std::string& mode,
               const std::vector<std::string>& env = {}) {
  result r = run_prog(prog, mode, env);
  BOOST_TEST(r.status == 0, prog << " " << mode << ": " << DESCRIBE(r));
  BOOST_TEST(r.out.find("ok") != std::string::npos, prog << " " << mode << ": " << DESCRIBE(r));
  BOOST_TEST(r.err.find(kDeadlock) == std::string::npos,
             prog << " " << mode << ": " << DESCRIBE(r));
}

int cpus_allowed() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) != 0) return -1;
  return CPU_COUNT(&set);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(exit_suite)

BOOST_AUTO_TEST_CASE(deadlock_main_task_receives) {
  expect_deadlock("sched_deadlock", "recv");
}

BOOST_AUTO_TEST_CASE(deadlock_other_primitives) {
  for (const char* mode : {"select_nil", "mutex", "cond", "after_sleep"})
    expect_deadlock("sched_deadlock", mode);
}

BOOST_AUTO_TEST_CASE(deadlock_report_lists_blocked_tasks) {
  result r = run_prog("sched_deadlock", "many");
  BOOST_TEST(r.status == 2, DESCRIBE(r));
  BOOST_TEST(r.err.find(kDeadlock) != std::string::npos, DESCRIBE(r));
  size_t p = r.out.find("blocked:");
  BOOST_TEST_REQUIRE(p != std::string::npos, DESCRIBE(r));
  std::istringstream ids(r.out.substr(p + 8));
  std::string id;
  int n = 0;
  while (ids >> id && n < 5) {
    n++;
    BOOST_TEST(id != "0");
    BOOST_TEST(has_number(r.err, id), "blocked task " << id << " is not in the report:\n" << r.err);
  }
  BOOST_TEST(n == 5);
}

// Tasks waiting on timers are not deadlocked.
BOOST_AUTO_TEST_CASE(timers_are_not_deadlock) {
  expect_ok("sched_deadlock", "timer_ok");
  expect_ok("sched_deadlock", "timer_chan_ok");
  expect_ok("sched_deadlock", "timer_relay_ok");
}

BOOST_AUTO_TEST_CASE(exception_escaping_a_task) {
  result r = run_prog("sched_panic", "task");
  BOOST_TEST(r.status == 2, DESCRIBE(r));
  BOOST_TEST(r.err.find("boom from task") != std::string::npos, DESCRIBE(r));
  std::string id = number_after(r.out, "thrower");
  BOOST_TEST_REQUIRE(!id.empty(), DESCRIBE(r));
  BOOST_TEST(std::stoi(id) > 200);
  BOOST_TEST(has_number(r.err, id), "the task id " << id << " is not in: " << r.err);
  BOOST_TEST(r.out.find("ok") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(exception_escaping_the_main_task) {
  result r = run_prog("sched_panic", "main");
  BOOST_TEST(r.status == 2, DESCRIBE(r));
  BOOST_TEST(r.err.find("boom from main") != std::string::npos, DESCRIBE(r));
  BOOST_TEST(has_number(r.err, "1"), DESCRIBE(r));
}

BOOST_AUTO_TEST_CASE(uncaught_chan_closed_and_non_std_exceptions) {
  for (const char* mode : {"chanclosed", "nonstd"}) {
    result r = run_prog("sched_panic", mode);
    BOOST_TEST(r.status == 2, mode << ": " << DESCRIBE(r));
    std::string id = number_after(r.out, "thrower");
    BOOST_TEST_REQUIRE(!id.empty(), mode << ": " << DESCRIBE(r));
    BOOST_TEST(has_number(r.err, id), mode << ": the task id " << id << " is not in: " << r.err);
    BOOST_TEST(r.out.find("ok") == std::string::npos, mode);
  }
}

BOOST_AUTO_TEST_CASE(caught_exception_is_fine) {
  expect_ok("sched_panic", "caught");
}

BOOST_AUTO_TEST_CASE(sync_fatal_errors) {
  result r = run_prog("sched_panic", "wg_negative");
  BOOST_TEST(r.status != 0, DESCRIBE(r));
  BOOST_TEST(!r.timed_out);
  BOOST_TEST(r.err.find("negative") != std::string::npos, DESCRIBE(r));
  BOOST_TEST(r.out.find("ok") == std::string::npos);
  r = run_prog("sched_panic", "unlock_unlocked");
  BOOST_TEST(r.status != 0, DESCRIBE(r));
  BOOST_TEST(!r.timed_out);
  BOOST_TEST(r.err.find("unlock") != std::string::npos, DESCRIBE(r));
  BOOST_TEST(r.out.find("ok") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(bad_gort_maxprocs) {
  for (const char* v : {"abc", "0", "-3", "2x", "1.5"}) {
    result r = run_prog("sched_env", "", {std::string("GORT_MAXPROCS=") + v});
    BOOST_TEST(r.status != 0, "GORT_MAXPROCS=" << v << ": " << DESCRIBE(r));
    BOOST_TEST(!r.timed_out);
    BOOST_TEST(r.err.find("GORT_MAXPROCS") != std::string::npos,
               "GORT_MAXPROCS=" << v << ": the message should name the variable: " << r.err);
    BOOST_TEST(r.out.find("maxprocs") == std::string::npos, "GORT_MAXPROCS=" << v << ": it ran");
  }
}

BOOST_AUTO_TEST_CASE(good_gort_maxprocs) {
  for (const char* v : {"1", "3", "16"}) {
    result r = run_prog("sched_env", "", {std::string("GORT_MAXPROCS=") + v});
    BOOST_TEST(r.status == 0, DESCRIBE(r));
    BOOST_TEST(r.out.find(std::string("maxprocs ") + v + " default " + v) != std::string::npos,
               "GORT_MAXPROCS=" << v << ": " << r.out);
  }
  // Unset: the CPUs this process may use (or fewer, under a cgroup quota).
  result r =
      gort_test::run({"env", "-u", "GORT_MAXPROCS", gort_test::test_prog("sched_env")}, {}, "", 30);
  BOOST_TEST(r.status == 0, DESCRIBE(r));
  std::string n = number_after(r.out, "maxprocs");
  BOOST_TEST_REQUIRE(!n.empty(), DESCRIBE(r));
  BOOST_TEST(std::stoi(n) >= 1);
  BOOST_TEST(std::stoi(n) <= cpus_allowed());
  if (gort_test::has_program("taskset")) {
    r = gort_test::run(
        {"env", "-u", "GORT_MAXPROCS", "taskset", "-c", "0", gort_test::test_prog("sched_env")}, {},
        "", 30);
    BOOST_TEST(r.status == 0, DESCRIBE(r));
    BOOST_TEST(r.out.find("maxprocs 1 default 1") != std::string::npos, "taskset -c 0: " << r.out);
  }
}

// A task waiting for a plain OS thread is not deadlocked; once the thread is
// gone, a blocked program is, also when the thread ends after the last task
// blocked (the check then saw a thread it does not know, and must look again).
BOOST_AUTO_TEST_CASE(os_threads_and_the_deadlock_detector) {
  expect_ok("sched_osthread", "wait_thread");
  expect_deadlock("sched_osthread", "after_join");
  expect_deadlock("sched_osthread", "thread_ends_later");
}

// Blocking operations between OS threads with no gort::run at all.
BOOST_AUTO_TEST_CASE(threads_without_run) {
  expect_ok("sched_norun", "sync");
  expect_ok("sched_norun", "sleep");
}

// A task that overflows its stack is reported by id with the stack size
// (exit 2); any other segmentation fault in a task is left to the default
// action (killed by SIGSEGV), not passed off as an overflow.
BOOST_AUTO_TEST_CASE(stack_overflow_is_reported) {
  result r = run_prog("sched_overflow", "task");
  BOOST_TEST(r.status == 2, DESCRIBE(r));
  BOOST_TEST(r.err.find("overflowed its stack") != std::string::npos, DESCRIBE(r));
  std::string id = number_after(r.out, "task");
  BOOST_TEST(!id.empty(), DESCRIBE(r));
  BOOST_TEST(r.err.find("task " + id + " overflowed") != std::string::npos, DESCRIBE(r));

  result n = run_prog("sched_overflow", "null");
  BOOST_TEST(n.status != 0, DESCRIBE(n));
  BOOST_TEST(n.status != 2, DESCRIBE(n));
  BOOST_TEST(n.err.find("overflowed") == std::string::npos, DESCRIBE(n));
}

// Tasks that spin with no runtime call are preempted by signal; with
// GORT_DEBUG=asyncpreemptoff=1 none is, and tasks that make runtime calls are
// still preempted cooperatively. schedtrace prints Go's SCHED line.
BOOST_AUTO_TEST_CASE(preemption_and_schedtrace) {
  result r = run_prog("sched_spin", "spin", {"GORT_DEBUG=schedtrace=10"});
  BOOST_TEST(r.status == 0, DESCRIBE(r));
  BOOST_TEST(r.out.find("ok") != std::string::npos, DESCRIBE(r));
  std::string async = number_after(r.out, "async");
  BOOST_TEST(!async.empty(), DESCRIBE(r));
  BOOST_TEST(async != "0", DESCRIBE(r));
  BOOST_TEST(r.err.find("SCHED ") != std::string::npos, DESCRIBE(r));
  BOOST_TEST(r.err.find("gomaxprocs=2 idleprocs=") != std::string::npos, DESCRIBE(r));

  result c = run_prog("sched_spin", "coop", {"GORT_DEBUG=asyncpreemptoff=1"});
  BOOST_TEST(c.status == 0, DESCRIBE(c));
  BOOST_TEST(number_after(c.out, "async") == "0", DESCRIBE(c));
  BOOST_TEST(number_after(c.out, "preemptions") != "0", DESCRIBE(c));
  BOOST_TEST(c.err.find("SCHED") == std::string::npos, DESCRIBE(c));

  // Registers, vector ones included, come back intact from a preemption by
  // signal, whichever M the task resumes on.
  result g = run_prog("sched_spin", "regs", {});
  BOOST_TEST(g.status == 0, DESCRIBE(g));
  BOOST_TEST(g.out.find("ok") != std::string::npos, DESCRIBE(g));
  BOOST_TEST(number_after(g.out, "async") != "0", DESCRIBE(g));

  // A typo in a setting is named, and the program still runs.
  result b = run_prog("sched_spin", "coop", {"GORT_DEBUG=schedtrace=x"});
  BOOST_TEST(b.status == 0, DESCRIBE(b));
  BOOST_TEST(b.err.find("GORT_DEBUG=schedtrace=x") != std::string::npos, DESCRIBE(b));
}

// The public headers build as C++17 and C++20 (users' projects are not all
// on C++20), with warnings as errors. Run from the source tree, as make does.
BOOST_AUTO_TEST_CASE(headers_build_as_cxx17_and_cxx20) {
  // Only gort's headers: they must include what they use.
  const std::string src =
      "#include <gort/gort.h>\n"
      "int main() {\n"
      "  return gort::run([] {\n"
      "    gort::Once once; once.call([] {});\n"
      "    gort::Chan<int> c(1); c.send(1);\n"
      "    gort::select(gort::on_recv(c, [](int, bool) {}), gort::on_default());\n"
      "    gort::RWMutex rw; rw.lock_shared(); rw.unlock_shared();\n"
      "    (void)gort::blocking([] { return 1; }); gort_blocking_enter(); gort_blocking_exit();\n"
      "  });\n"
      "}\n";
  for (const char* std : {"-std=c++17", "-std=c++20"}) {
    result r = gort_test::run(
        {"g++", std, "-fsyntax-only", "-Wall", "-Wextra", "-Werror", "-Iinclude", "-x", "c++", "-"},
        {}, src);
    BOOST_TEST(r.status == 0, std << ": " << DESCRIBE(r));
  }
}

// Task stacks are heap spans; with huge pages asked for the heap
// (GORT_THP=on), touching a parked task's one stack page must not fault in
// the 2 MiB around it (stack.cc refuses huge pages for stacks): a parked task
// stays about 4.7 KiB (a stack page and its g), not up to its whole 256 KiB
// stack (258 KB in sched_parked; 14.7 KB here when the kernel had few free
// huge pages).
BOOST_AUTO_TEST_CASE(parked_tasks_stay_small_with_huge_pages) {
  for (const char* thp : {"GORT_THP=system", "GORT_THP=on"}) {
    result r = run_prog("sched_thp_stacks", "", {thp, "GORT_MAXPROCS=2"});
    BOOST_REQUIRE_MESSAGE(r.status == 0 && r.out.find("ok") != std::string::npos,
                          thp << ": " << DESCRIBE(r));
    long per_task = -1;
    sscanf(r.out.c_str(), "bytes_per_task %ld", &per_task);
    BOOST_TEST_MESSAGE(thp << ": " << per_task << " bytes per parked task");
    BOOST_TEST(per_task > 0, thp);
    BOOST_TEST(per_task < 8 * 1024, thp << ": " << per_task << " bytes per parked task");
  }
}

BOOST_AUTO_TEST_SUITE_END()
