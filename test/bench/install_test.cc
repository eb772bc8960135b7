// `make install`, tested from the outside: install into a scratch prefix,
// build a small consumer project against it both ways a user would (pkg-config
// with gort.pc, CMake with find_package(gort)) and run what they built; then
// run the installed `gort bench --quick` from a directory outside the source
// tree on a reduced set (one allocator workload, one scheduler and one
// collector workload, gort against one peer each, one round), so that it fits
// the test budget while still going through every part the installed copy
// needs (the harness, the workload programs, the peers, libgort.so). A
// DESTDIR staging install must land under DESTDIR with PREFIX in gort.pc.
#include <limits.h>
#include <stdlib.h>

#include <boost/test/unit_test.hpp>
#include <fstream>
#include <sstream>
#include <string>

#include "../alloc/helpers.h"

using namespace gort_test;

namespace {

std::string slurp(const std::string& p) {
  std::ifstream f(p);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

std::string real(const std::string& p) {
  char buf[PATH_MAX];
  BOOST_REQUIRE_MESSAGE(realpath(p.c_str(), buf) != nullptr, "no such path: " << p);
  return buf;
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// `make install` from the source tree of this build, with the build tree it
// was built in; a make that runs this test must not hand its jobserver down.
result make_install(const std::vector<std::string>& vars) {
  std::string build = real(build_dir()), src = real(build_dir() + "/..");
  std::vector<std::string> argv = {"make",    "--no-print-directory", "-C", src,
                                   "install", "BUILD=" + build};
  argv.insert(argv.end(), vars.begin(), vars.end());
  return run(argv, {"MAKEFLAGS=", "MFLAGS=", "MAKELEVEL="}, "", 900);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(install)

BOOST_AUTO_TEST_CASE(consumer_builds_with_pkg_config_and_cmake_and_bench_runs_outside_the_tree) {
  tmpdir d;
  std::string prefix = d.path + "/prefix", src = real(build_dir() + "/..");
  result r = make_install({"PREFIX=" + prefix});
  BOOST_REQUIRE_MESSAGE(r.status == 0, r.out << r.err);
  for (const char* f :
       {"/bin/gort", "/lib/libgort.so", "/lib/libgort.a", "/include/gort/gort.h",
        "/lib/pkgconfig/gort.pc", "/lib/cmake/gort/gortConfig.cmake",
        "/lib/cmake/gort/gortConfigVersion.cmake", "/libexec/gort/run.py", "/libexec/gort/REVISION",
        "/libexec/gort/bench/workloads/larson", "/libexec/gort/bench/workloads/sched_spawn",
        "/libexec/gort/bench/workloads/gc_binarytrees"})
    BOOST_TEST(access((prefix + f).c_str(), F_OK) == 0, "not installed: " << f);

  // pkg-config.
  std::string consumer = src + "/test/install/consumer/consumer.cc";
  r = run({"pkg-config", "--cflags", "--libs", "gort"},
          {"PKG_CONFIG_PATH=" + prefix + "/lib/pkgconfig"});
  BOOST_REQUIRE_MESSAGE(r.status == 0, r.err);
  std::string flags = trim(r.out);
  BOOST_TEST(flags.find("-I" + prefix + "/include") != std::string::npos, flags);
  BOOST_TEST(flags.find("-lgort") != std::string::npos, flags);
  std::string pc_bin = d.path + "/consumer_pc";
  r = run({"sh", "-c",
           "g++ -std=c++20 -o " + pc_bin + " " + consumer + " " + flags + " -Wl,-rpath," + prefix +
               "/lib"});
  BOOST_REQUIRE_MESSAGE(r.status == 0, r.err);
  r = run({pc_bin});
  BOOST_TEST(r.status == 0, r.err);
  BOOST_TEST(r.out == "consumer: gort malloc ok\n", r.out << r.err);

  // CMake: the shared and the static imported targets.
  std::string cm = d.path + "/cmake-build";
  r = run(
      {"cmake", "-S", src + "/test/install/consumer", "-B", cm, "-DCMAKE_PREFIX_PATH=" + prefix},
      {}, "", 300);
  BOOST_REQUIRE_MESSAGE(r.status == 0, r.out << r.err);
  r = run({"cmake", "--build", cm}, {}, "", 300);
  BOOST_REQUIRE_MESSAGE(r.status == 0, r.out << r.err);
  for (const char* b : {"/consumer_shared", "/consumer_static"}) {
    r = run({cm + b});
    BOOST_TEST(r.status == 0, b << ": " << r.err);
    BOOST_TEST(r.out == "consumer: gort malloc ok\n", b << ": " << r.out << r.err);
  }
  // A version gort is not cannot be found.
  std::string cm2 = d.path + "/cmake-bad";
  run({"mkdir", "-p", cm2 + "/src"});
  std::ofstream(cm2 + "/src/CMakeLists.txt")
      << "cmake_minimum_required(VERSION 3.16)\nproject(x CXX)\nfind_package(gort 9.0 REQUIRED)\n";
  r = run({"cmake", "-S", cm2 + "/src", "-B", cm2 + "/b", "-DCMAKE_PREFIX_PATH=" + prefix}, {}, "",
          300);
  BOOST_TEST(r.status != 0);
  BOOST_TEST(r.err.find("gort") != std::string::npos, r.err);

  // The installed tool, from a directory outside the tree, the source tree out
  // of reach: its report says it ran the installed copy.
  std::string work = d.path + "/work";
  run({"mkdir", "-p", work});
  r = run({prefix + "/bin/gort", "bench", "--quick", "--runs", "1", "--workloads",
           "larson,spawn,binarytrees", "--allocators", "gort,glibc", "--sched-peers", "gort,go",
           "--gc-peers", "gort,go", "--maxprocs", "2"},
          {"PATH=/usr/bin:/bin"}, "", 600, work.c_str());
  BOOST_REQUIRE_MESSAGE(r.status == 0, r.out << r.err);
  BOOST_TEST(r.err.find("missing") == std::string::npos, r.err);
  std::string alloc = slurp(work + "/gort-bench-results/alloc-quick.md");
  BOOST_TEST(alloc.find("(installed in " + prefix + ")") != std::string::npos, alloc);
  BOOST_TEST(alloc.find("| larson: ") != std::string::npos, alloc);
  std::string sched = slurp(work + "/gort-bench-results/sched-quick.md");
  BOOST_TEST(sched.find("spawn") != std::string::npos, sched);
  BOOST_TEST(sched.find("FAILED") == std::string::npos, sched);
  std::string gc = slurp(work + "/gort-bench-results/gc-quick.md");
  BOOST_TEST(gc.find("binarytrees") != std::string::npos, gc);
  BOOST_TEST(gc.find("FAILED") == std::string::npos, gc);
}

BOOST_AUTO_TEST_CASE(destdir_stages_under_destdir_with_prefix_in_gort_pc) {
  tmpdir d;
  result r = make_install({"DESTDIR=" + d.path + "/stage", "PREFIX=/opt/gort-staged"});
  BOOST_REQUIRE_MESSAGE(r.status == 0, r.out << r.err);
  std::string root = d.path + "/stage/opt/gort-staged";
  BOOST_TEST(access((root + "/libexec/gort/bench/workloads/larson").c_str(), X_OK) == 0);
  BOOST_TEST(access((root + "/lib/cmake/gort/gortConfig.cmake").c_str(), F_OK) == 0);
  std::string pc = slurp(root + "/lib/pkgconfig/gort.pc");
  BOOST_TEST(pc.find("prefix=/opt/gort-staged\n") != std::string::npos, pc);
  BOOST_TEST(access("/opt/gort-staged", F_OK) != 0);  // nothing outside DESTDIR
}

BOOST_AUTO_TEST_SUITE_END()
