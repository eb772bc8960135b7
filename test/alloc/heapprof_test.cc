// The sampled heap profile (alloc/mprof.h): programs write profiles, and
// `go tool pprof -top` (golang-go, installed by make deps) must read them
// without the binary and name the allocating functions with plausible
// shares, in-use differing from allocated after frees. Covers LD_PRELOAD
// (test/progs/heapprof.cc) and static linking with GC objects
// (test/progs/gc_heapprof.cc), the API and the exit writer, fork, and the
// option errors.
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <cstring>
#include <map>
#include <sstream>

#include "alloc/options.h"
#include "helpers.h"

using namespace gort_test;

namespace {

std::string tmp_profile(const std::string& tag) {
  return "/tmp/heapprof-test-" + std::to_string(getpid()) + "-" + tag + ".pb";
}

// flat% per function of `go tool pprof -top -sample_index=INDEX path`.
std::map<std::string, double> pprof_top(const std::string& path, const std::string& index) {
  std::string cache = "/tmp/heapprof-test-gocache-" + std::to_string(getpid());
  result r = run({"go", "tool", "pprof", "-top", "-nodecount=100", "-sample_index=" + index, path},
                 {"GOCACHE=" + cache, "GOTOOLCHAIN=local", "GOFLAGS=", "HOME=/tmp"}, "", 120);
  BOOST_REQUIRE_MESSAGE(r.status == 0, "go tool pprof failed: " << r.err << r.out);
  std::map<std::string, double> flat;
  std::istringstream in(r.out);
  std::string line;
  bool table = false;
  while (std::getline(in, line)) {
    if (line.find("flat%") != std::string::npos) {
      table = true;
      continue;
    }
    if (!table) continue;
    // flat flat% sum% cum cum% name
    std::istringstream f(line);
    std::string v, pct, sum, cum, cumpct, name;
    if (!(f >> v >> pct >> sum >> cum >> cumpct)) continue;
    std::getline(f, name);
    name.erase(0, name.find_first_not_of(' '));
    flat[name] = std::stod(pct);
  }
  BOOST_TEST_MESSAGE(index << " of " << path << ":\n" << r.out);
  return flat;
}

double share(const std::map<std::string, double>& m, const std::string& fn) {
  auto it = m.find(fn);
  return it == m.end() ? 0 : it->second;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(heapprof)

// 48 MiB kept and 48 MiB freed in 1 KiB objects, 16 MiB kept in 64 KiB
// ones (heapprof.cc): in-use is kept/large ~75/25 with no churn; allocated
// is ~44/44/12. Bounds are wide (sampling at 64 KiB: ~800 samples per
// function, a few % of noise).
void check_preload_profile(const std::string& path) {
  auto inuse = pprof_top(path, "inuse_space");
  BOOST_TEST(share(inuse, "heapprof_keep_alloc") > 60);
  BOOST_TEST(share(inuse, "heapprof_keep_alloc") < 90);
  BOOST_TEST(share(inuse, "heapprof_large_alloc") > 10);
  BOOST_TEST(share(inuse, "heapprof_churn_alloc") < 2);
  auto alloc = pprof_top(path, "alloc_space");
  BOOST_TEST(share(alloc, "heapprof_keep_alloc") > 30);
  BOOST_TEST(share(alloc, "heapprof_churn_alloc") > 30);
  BOOST_TEST(share(alloc, "heapprof_churn_alloc") < 60);
  auto objs = pprof_top(path, "alloc_objects");
  BOOST_TEST(share(objs, "heapprof_churn_alloc") > 30);
}

BOOST_AUTO_TEST_CASE(preload_profile_written_at_exit) {
  std::string path = tmp_profile("exit");
  result r = run({test_prog("heapprof")},
                 {preload_env(), "GORT_DEBUG=heapprofile=" + path + ",heapprofilerate=65536"});
  BOOST_REQUIRE_MESSAGE(r.status == 0, r.err);
  BOOST_REQUIRE_MESSAGE(access(path.c_str(), R_OK) == 0, "no profile at " << path << ": " << r.err);
  check_preload_profile(path);
  remove(path.c_str());
}

BOOST_AUTO_TEST_CASE(preload_profile_written_by_the_api) {
  std::string path = tmp_profile("api");
  result r = run({test_prog("heapprof"), "api", path},
                 {preload_env(), "GORT_DEBUG=heapprofilerate=65536"});
  BOOST_REQUIRE_MESSAGE(r.status == 0, r.err);
  check_preload_profile(path);
  remove(path.c_str());
}

// Without the profiler on, the API still writes a valid, empty profile.
BOOST_AUTO_TEST_CASE(profile_off_is_empty) {
  std::string path = tmp_profile("off");
  result r = run({test_prog("heapprof"), "api", path}, {preload_env()});
  BOOST_REQUIRE_MESSAGE(r.status == 0, r.err);
  auto inuse = pprof_top(path, "inuse_space");
  BOOST_TEST(share(inuse, "heapprof_keep_alloc") == 0);
  remove(path.c_str());
}

// Statically linked, GC objects and malloc (gc_heapprof.cc): 16 MiB of GC
// objects kept, 16 MiB dropped and collected, 8 MiB malloc'd by a static
// function the dynamic symbol table does not have.
BOOST_AUTO_TEST_CASE(static_program_with_gc_objects) {
  std::string path = tmp_profile("gc");
  result r = run({test_prog("gc_heapprof"), path}, {"GORT_DEBUG=heapprofilerate=65536"});
  BOOST_REQUIRE_MESSAGE(r.status == 0, r.err);
  auto inuse = pprof_top(path, "inuse_space");
  BOOST_TEST(share(inuse, "gcprof_keep_alloc") > 50);
  BOOST_TEST(share(inuse, "gcprof_static_malloc") > 15);
  BOOST_TEST(share(inuse, "gcprof_garbage_alloc") < 5);  // swept
  auto alloc = pprof_top(path, "alloc_space");
  BOOST_TEST(share(alloc, "gcprof_garbage_alloc") > 25);
  BOOST_TEST(share(alloc, "gcprof_keep_alloc") > 25);
  remove(path.c_str());
}

// fork with the profiler on: no deadlock, the child writes PATH.PID and the
// parent's profile is intact.
BOOST_AUTO_TEST_CASE(fork_child_writes_its_own_file) {
  std::string path = tmp_profile("fork");
  result r =
      run({test_prog("heapprof"), "fork"},
          {preload_env(), "GORT_DEBUG=heapprofile=" + path + ",heapprofilerate=65536"}, "", 60);
  BOOST_REQUIRE_MESSAGE(r.status == 0, r.err);
  check_preload_profile(path);
  remove(path.c_str());
  // The child's file: PATH.<pid>, exactly one.
  result ls = run({"sh", "-c", "ls " + path + ".* && rm -f " + path + ".*"});
  BOOST_TEST(ls.status == 0, "no child profile " << path << ".PID");
}

BOOST_AUTO_TEST_CASE(rate_and_path_parsing) {
  using namespace gort::alloc;
  options o;
  char why[256] = "";
  BOOST_TEST(parse_debug("heapprofile=/tmp/x.pb,heapprofilerate=4096", &o, why, sizeof why));
  BOOST_TEST(std::strcmp(o.heapprofile, "/tmp/x.pb") == 0);
  BOOST_TEST(o.heapprofilerate == 4096);
  BOOST_TEST(parse_debug("heapprofilerate=0", &o, why, sizeof why));
  BOOST_TEST(o.heapprofilerate == 0);
  BOOST_TEST(parse_debug("heapprofilerate=1099511627776", &o, why, sizeof why));
  for (const char* bad : {"heapprofilerate=abc", "heapprofilerate=-1", "heapprofilerate=",
                          "heapprofilerate=1099511627777", "heapprofilerate=512KiB"}) {
    why[0] = 0;
    BOOST_TEST(!parse_debug(bad, &o, why, sizeof why), bad);
    BOOST_TEST(std::strstr(why, "heapprofilerate=") != nullptr, why);
    BOOST_TEST(std::strstr(why, "byte count") != nullptr, why);
  }
  BOOST_TEST(!parse_debug("heapprofile=", &o, why, sizeof why));
  BOOST_TEST(std::strstr(why, "file path") != nullptr, why);
  std::string long_path = "heapprofile=/" + std::string(300, 'a');
  BOOST_TEST(!parse_debug(long_path.c_str(), &o, why, sizeof why));
}

// A bad value is reported by name on stderr and the program still runs.
BOOST_AUTO_TEST_CASE(bad_rate_is_reported) {
  result r = run({test_prog("heapprof")}, {preload_env(), "GORT_DEBUG=heapprofilerate=lots"});
  BOOST_TEST(r.status == 0);
  BOOST_TEST(r.err.find("heapprofilerate=lots: expected a byte count") != std::string::npos, r.err);
}

// A profile that cannot be written says why.
BOOST_AUTO_TEST_CASE(unwritable_path_is_reported) {
  result r = run({test_prog("heapprof")},
                 {preload_env(), "GORT_DEBUG=heapprofile=/nonexistent-dir/heap.pb"});
  BOOST_TEST(r.status == 0);
  BOOST_TEST(r.err.find("cannot write the heap profile") != std::string::npos, r.err);
}

BOOST_AUTO_TEST_SUITE_END()
