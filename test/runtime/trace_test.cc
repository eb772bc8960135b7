// The execution trace (runtime/trace.cc): programs traced through GORT_TRACE
// and through gort_trace_start/stop, checked by a real JSON parser (python3's
// json module, in test/runtime/trace_check.py): the file is Chrome
// trace-event JSON, slices nest on every track, a task never runs on two Ps
// at once, and each of build/test/sched_trace's tasks (one blocks on a
// channel, one yields, one sleeps, one waits for a mutex, one spins until it
// is preempted, one makes a blocking call) has a run that ended for that
// reason; the GC cycle's phases, stops of the world and sweeps are there.
// Also: bad GORT_TRACE values are named in a clear message, a fork child does
// not write the parent's trace, a small ring wraps and still makes a
// consistent trace.
#include "gort/trace.h"

#include <errno.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "../alloc/helpers.h"
#include "runtime/trace.h"

using gort_test::result;

namespace {

#define DESCRIBE(r)                                                             \
  "status " << r.status << (r.timed_out ? " (timed out)" : "") << "\nstdout:\n" \
            << r.out << "\nstderr:\n"                                           \
            << r.err

std::string tmp_path(const std::string& what) {
  return "/tmp/trace-test-" + std::to_string(getpid()) + "-" + what + ".json";
}

// The number after "word " on a line of out ("chan 5"), or "".
std::string number_after(const std::string& out, const std::string& word) {
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(word + " ", 0) == 0) return line.substr(word.size() + 1);
  return "";
}

result check(const std::string& path, const std::vector<std::string>& expects) {
  std::vector<std::string> argv{"python3", "test/runtime/trace_check.py", path};
  argv.insert(argv.end(), expects.begin(), expects.end());
  return gort_test::run(argv, {}, "", 120);
}

// What sched_trace's tasks must show, by the ids it printed.
std::vector<std::string> task_expectations(const std::string& out) {
  std::vector<std::string> e;
  const char* kinds[][2] = {
      {"chan", "blocked: chan receive"}, {"yield", "yielded"},  {"sleep", "blocked: sleep"},
      {"mutex", "blocked: sync.Mutex"},  {"spin", "preempted"}, {"syscall", "syscall"}};
  for (auto& k : kinds) {
    std::string id = number_after(out, k[0]);
    BOOST_TEST(!id.empty(), "sched_trace printed no id for " << k[0] << ":\n" << out);
    e.push_back("task:" + id + ":" + k[1]);
  }
  for (const char* n : {"GC ", "sweep termination", "mark", "mark termination", "stop-the-world",
                        "sweep", "syscall"})
    e.push_back(std::string("name:") + n);
  e.push_back("pid:" + number_after(out, "pid"));
  return e;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(trace)

BOOST_AUTO_TEST_CASE(env_trace_written_at_exit) {
  // %p in the path is the process id.
  std::string pattern = "/tmp/trace-test-" + std::to_string(getpid()) + "-env-%p.json";
  result r = gort_test::run({gort_test::test_prog("sched_trace"), "env"},
                            {"GORT_TRACE=" + pattern, "GORT_SCAVENGE=0"}, "", 60);
  BOOST_TEST_REQUIRE(r.status == 0, DESCRIBE(r));
  std::string path = "/tmp/trace-test-" + std::to_string(getpid()) + "-env-" +
                     number_after(r.out, "pid") + ".json";
  BOOST_TEST_REQUIRE(access(path.c_str(), R_OK) == 0, path << " was not written\n" << DESCRIBE(r));
  // Sweeps, blocking calls and scavenger passes on the threads that did them.
  std::vector<std::string> e = task_expectations(r.out);
  for (const char* t : {"thread:sweep", "thread:syscall", "thread:scavenge"}) e.push_back(t);
  result c = check(path, e);
  BOOST_TEST(c.status == 0, DESCRIBE(c));
  unlink(path.c_str());
}

BOOST_AUTO_TEST_CASE(api_start_and_stop_from_a_task) {
  std::string path = tmp_path("api");
  result r = gort_test::run({gort_test::test_prog("sched_trace"), "api", path}, {}, "", 60);
  BOOST_TEST_REQUIRE(r.status == 0, DESCRIBE(r));
  BOOST_TEST(r.out.find("stopped") != std::string::npos, DESCRIBE(r));
  result c = check(path, task_expectations(r.out));
  BOOST_TEST(c.status == 0, DESCRIBE(c));
  unlink(path.c_str());
}

BOOST_AUTO_TEST_CASE(fork_child_does_not_write_the_parents_trace) {
  std::string path = tmp_path("fork");
  result r =
      gort_test::run({gort_test::test_prog("sched_trace"), "fork"}, {"GORT_TRACE=" + path}, "", 60);
  BOOST_TEST_REQUIRE(r.status == 0, DESCRIBE(r));
  BOOST_TEST(r.out.find("\nchild 0") != std::string::npos, DESCRIBE(r));
  BOOST_TEST(r.out.find("vfork child 0") != std::string::npos, DESCRIBE(r));
  // A child writing its copy too would leave two documents in the file (or
  // one with the child's pid): the parser or the pid check fails.
  result c = check(path, {"pid:" + number_after(r.out, "pid")});
  BOOST_TEST(c.status == 0, DESCRIBE(c));
  unlink(path.c_str());
}

BOOST_AUTO_TEST_CASE(small_ring_wraps_and_stays_consistent) {
  std::string path = tmp_path("ring");
  result r = gort_test::run({gort_test::test_prog("sched_trace"), "long"},
                            {"GORT_TRACE=" + path, "GORT_TRACE_BUFFER=64KiB"}, "", 120);
  BOOST_TEST_REQUIRE(r.status == 0, DESCRIBE(r));
  BOOST_TEST(r.err.find("GORT_TRACE") == std::string::npos, DESCRIBE(r));
  result c = check(path, {"dropped", "pid:" + number_after(r.out, "pid")});
  BOOST_TEST(c.status == 0, DESCRIBE(c));
  unlink(path.c_str());
}

BOOST_AUTO_TEST_CASE(bad_environment_is_named) {
  result r = gort_test::run({gort_test::test_prog("sched_trace"), "env"}, {"GORT_TRACE="}, "", 60);
  BOOST_TEST(r.status == 0, DESCRIBE(r));
  BOOST_TEST(r.err.find("GORT_TRACE is set but empty") != std::string::npos, DESCRIBE(r));

  r = gort_test::run({gort_test::test_prog("sched_trace"), "env"},
                     {"GORT_TRACE=/nonexistent-gort-dir/t.json"}, "", 60);
  BOOST_TEST(r.status == 0, DESCRIBE(r));
  BOOST_TEST(
      r.err.find("GORT_TRACE=/nonexistent-gort-dir/t.json: cannot open") != std::string::npos,
      DESCRIBE(r));

  std::string path = tmp_path("badbuf");
  r = gort_test::run({gort_test::test_prog("sched_trace"), "env"},
                     {"GORT_TRACE=" + path, "GORT_TRACE_BUFFER=12"}, "", 60);
  BOOST_TEST(r.status == 0, DESCRIBE(r));
  BOOST_TEST(r.err.find("GORT_TRACE_BUFFER=12:") != std::string::npos, DESCRIBE(r));
  result c = check(path, {"pid:" + number_after(r.out, "pid")});  // the default size is used
  BOOST_TEST(c.status == 0, DESCRIBE(c));
  unlink(path.c_str());
}

BOOST_AUTO_TEST_CASE(buffer_size_parser) {
  using gort::rt::trace::parse_buffer_size;
  uint64_t v = 0;
  const char* why = nullptr;
  BOOST_TEST(parse_buffer_size("4MiB", &v, &why));
  BOOST_TEST(v == 4u << 20);
  BOOST_TEST(parse_buffer_size("65536", &v, &why));
  BOOST_TEST(v == 65536u);
  BOOST_TEST(parse_buffer_size("1GiB", &v, &why));
  BOOST_TEST(v == 1u << 30);
  for (const char* bad : {"", "12", "64KB", "-1MiB", "2GiB", "MiB", "99999999999999999999"}) {
    BOOST_TEST(!parse_buffer_size(bad, &v, &why), bad);
    BOOST_TEST(why != nullptr);
  }
}

// The C API's errors, in this process (no run in progress: events come
// only from threads outside the scheduler).
BOOST_AUTO_TEST_CASE(api_errors) {
  BOOST_TEST(gort_trace_enabled() == 0);
  errno = 0;
  BOOST_TEST(gort_trace_stop() == -1);
  BOOST_TEST(errno == EINVAL);
  errno = 0;
  BOOST_TEST(gort_trace_start("") == -1);
  BOOST_TEST(errno == EINVAL);
  errno = 0;
  BOOST_TEST(gort_trace_start("/nonexistent-gort-dir/t.json") == -1);
  BOOST_TEST(errno == ENOENT);
  BOOST_TEST(gort_trace_enabled() == 0);
  std::string path = tmp_path("inproc");
  BOOST_TEST_REQUIRE(gort::trace_start(path.c_str()));
  BOOST_TEST(gort_trace_enabled() == 1);
  errno = 0;
  BOOST_TEST(gort_trace_start(path.c_str()) == -1);
  BOOST_TEST(errno == EBUSY);
  BOOST_TEST(gort::trace_stop());
  BOOST_TEST(gort_trace_enabled() == 0);
  result c = check(path, {"pid:" + std::to_string(getpid())});
  BOOST_TEST(c.status == 0, DESCRIBE(c));
  unlink(path.c_str());
}

BOOST_AUTO_TEST_SUITE_END()
