// The benchmark harness and the gort tool, tested: argument errors, an
// allocator that fails to load, a workload that fails its self-check
// (reported as FAILED, not as a number), and a report generated from a tiny
// run; the garbage collector group's report from stand-in peer programs;
// `gort run` with statistics and exit codes.
#define BOOST_TEST_MODULE gort_bench
#include <boost/test/unit_test.hpp>
#include <fstream>
#include <sstream>
#include <string>

#include "../alloc/helpers.h"

using namespace gort_test;

namespace {

std::string gort() {
  return build_dir() + "/bin/gort";
}

std::string slurp(const std::string& p) {
  std::ifstream f(p);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

void expect_usage_error(const std::vector<std::string>& args, const std::string& message) {
  std::vector<std::string> argv = {gort(), "bench"};
  argv.insert(argv.end(), args.begin(), args.end());
  result r = run(argv, {}, "", 60);
  BOOST_TEST(r.status == 2, args.back() << ": status " << r.status);
  BOOST_TEST(r.err.find(message) != std::string::npos, args.back() << ": " << r.err);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(harness)

BOOST_AUTO_TEST_CASE(argument_errors) {
  expect_usage_error({"--runs", "abc"}, "--runs wants a positive integer, got 'abc'");
  expect_usage_error({"--runs", "0"}, "--runs wants a positive integer");
  expect_usage_error({"--runs", "-3"}, "--runs wants a positive integer");
  expect_usage_error({"--workloads", "larson,nosuch"}, "unknown workload 'nosuch' (known: larson,");
  expect_usage_error({"--allocators", "gort,nosuch"}, "unknown allocator 'nosuch'");
  expect_usage_error({"--allocator", "noequals"}, "--allocator wants NAME=/path/lib.so");
  expect_usage_error({"--allocator", "x=/nonexistent/libx.so"}, "--allocator x: no such file");
  expect_usage_error({"--add-workload", "w=/nonexistent/prog"},
                     "--add-workload w: not an executable");
  expect_usage_error({"--gc-peers", "gort,nosuch"},
                     "unknown GC peer 'nosuch' (known: gort, go, boehm)");
  result r = run({gort(), "bench", "--no-such-option"});
  BOOST_TEST(r.status == 2);
  BOOST_TEST(r.err.find("unrecognized arguments") != std::string::npos, r.err);
}

BOOST_AUTO_TEST_CASE(allocator_that_fails_to_load) {
  tmpdir d;
  std::string bad = d.path + "/libbroken.so";
  std::ofstream(bad) << "this is not an ELF file\n";
  expect_usage_error({"--allocator", "broken=" + bad},
                     "--allocator broken=" + bad + " cannot be loaded");
}

BOOST_AUTO_TEST_CASE(failing_workload_is_reported_not_measured) {
  tmpdir d;
  result r =
      run({gort(), "bench", "--runs", "1", "--allocators", "gort,glibc", "--add-workload",
           "broken=" + test_prog("failing_workload"), "--workloads", "broken", "--out", d.path},
          {}, "", 120);
  BOOST_TEST(r.status == 1, r.err);
  std::string report = slurp(d.path + "/alloc-full.md");
  BOOST_TEST(
      report.find(
          "**FAILED** broken on gort, round 1: exit 1: failing_workload: block 17 corrupted") !=
          std::string::npos,
      report);
  BOOST_TEST(report.find("**FAILED** broken on glibc") != std::string::npos);
  BOOST_TEST(report.find("No successful runs.") != std::string::npos);
  BOOST_TEST(report.find("| broken: time |") == std::string::npos);  // no number for it
}

BOOST_AUTO_TEST_CASE(report_from_a_tiny_run) {
  tmpdir d;
  result r = run({gort(), "bench", "--quick", "--runs", "2", "--allocators", "gort,glibc,jemalloc",
                  "--add-workload", "tiny=" + test_prog("tiny_workload"), "--workloads", "tiny",
                  "--out", d.path},
                 {}, "", 300);
  BOOST_REQUIRE_MESSAGE(r.status == 0, r.err);
  std::string report = slurp(d.path + "/alloc-quick.md");
  for (const char* want :
       {"# Allocator benchmarks (quick)", "- machine: ", "Linux ", "- method: 2 rounds", "gort ",
        "(Debian package libc6)", "(Debian package libjemalloc2)", "compiler: g++",
        "| tiny: work_time |", "| tiny: items |", "| figure | unit | gort | glibc | jemalloc |",
        "| work_time | ms, lower is better |", "| wall | s, lower is better |",
        "| peak_rss_wait4 | MiB, lower is better |", "**best**", "![tiny](charts-quick/tiny.png)",
        "![tiny rss_mib](charts-quick/tiny-rss_mib.png)"})
    BOOST_TEST(report.find(want) != std::string::npos, "missing: " << want);
  BOOST_TEST(report.find("FAILED") == std::string::npos);
  for (const char* png : {"/charts-quick/tiny.png", "/charts-quick/tiny-rss_mib.png"}) {
    std::string bytes = slurp(d.path + png);
    BOOST_TEST(bytes.substr(0, 4) == "\x89PNG", png);
  }
  // The table printed on stdout is the report.
  BOOST_TEST(r.out.find("| tiny: work_time |") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(extra_allocator_joins_the_comparison) {
  tmpdir d;
  result r = run({gort(), "bench", "--runs", "1", "--allocators", "gort,mine", "--allocator",
                  "mine=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "--add-workload",
                  "tiny=" + test_prog("tiny_workload"), "--workloads", "tiny", "--out", d.path},
                 {}, "", 120);
  BOOST_REQUIRE_MESSAGE(r.status == 0, r.err);
  std::string report = slurp(d.path + "/alloc-full.md");
  BOOST_TEST(report.find("| figure | unit | gort | mine |") != std::string::npos, report);
  BOOST_TEST(report.find("mine /usr/lib/x86_64-linux-gnu/libjemalloc.so.2") != std::string::npos);
}

// The gc group against a build tree of stand-ins: gort's binarytrees runs,
// Go's fails its self-check, Boehm GC's and all of livechurn were not built.
// bench/run.py runs directly: `gort bench` points it at the real build tree.
BOOST_AUTO_TEST_CASE(gc_report_with_a_failed_and_a_missing_peer) {
  tmpdir d;
  std::string b = d.path + "/build", gort_prog = b + "/bench/workloads/gc_binarytrees",
              go_prog = b + "/bench/peers/go/binarytrees";
  run({"mkdir", "-p", b + "/bench/workloads", b + "/bench/peers/go"});
  std::ofstream(gort_prog) << "#!/bin/sh\necho 'result time_ms 120 ms lower'\n"
                              "echo \"result maxprocs $GORT_MAXPROCS n lower\"\n"
                              "echo \"result scale $GORT_BENCH_SCALE x lower\"\n";
  std::ofstream(go_prog) << "#!/bin/sh\necho 'binarytrees: check failed' >&2\nexit 1\n";
  run({"chmod", "+x", gort_prog, go_prog});
  result r = run({"/usr/bin/python3", build_dir() + "/../bench/run.py", "--quick", "--runs", "1",
                  "--workloads", "gc", "--out", d.path + "/out"},
                 {"GORT_BUILD_DIR=" + b}, "", 120);
  BOOST_TEST(r.status == 1, r.err);
  std::string report = slurp(d.path + "/out/gc-quick.md");
  for (const char* want :
       {"# Garbage collector benchmarks (quick): gort vs Go vs Boehm GC", "- method: 1 rounds",
        "(Debian package libgc-dev)", "**missing** gort for livechurn",
        "**missing** boehm for binarytrees, livechurn",
        "**FAILED** binarytrees on go P=2, round 1: exit 1: binarytrees: check failed",
        "| binarytrees: time_ms | 2 | ms | 120.0 | FAILED | missing |",
        "| maxprocs | 2 | n, lower is better | 2 (2-2) x1.00 **best** | FAILED | missing |",
        "| scale | 2 | x, lower is better | 0.25 (0.25-0.25) x1.00 **best** | FAILED | missing |",
        "| binarytrees | time_ms within 1.5x of go's | 2 | 120.0 ms | go: FAILED | - | - |",
        "| livechurn | pause_max_us at most 1000 us | 2 | missing | - | - | - |",
        "No target could be judged", "No successful runs.",
        "![binarytrees](charts-quick/gc-binarytrees.png)"})
    BOOST_TEST(report.find(want) != std::string::npos, "missing: " << want);
  BOOST_TEST(slurp(d.path + "/out/charts-quick/gc-binarytrees.png").substr(0, 4) == "\x89PNG");
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(gort_run)

BOOST_AUTO_TEST_CASE(stats_and_exit_codes) {
  result r = run({gort(), "run", "--stats", "--", "sh", "-c", "echo hi; exit 7"});
  BOOST_TEST(r.status == 7);
  BOOST_TEST(r.out == "hi\n");
  BOOST_TEST(r.err.find("gort: mstats: heap mapped") != std::string::npos, r.err);
  r = run({gort(), "run", "--", "sh", "-c", "echo $LD_PRELOAD"});
  BOOST_TEST(r.status == 0);
  BOOST_TEST(r.out.find("/lib/libgort.so") != std::string::npos, r.out);
  BOOST_TEST(r.err.find("mstats") == std::string::npos);
  r = run({gort(), "run"});
  BOOST_TEST(r.status == 2);
  BOOST_TEST(r.err.find("no command given") != std::string::npos);
  r = run({gort(), "run", "--bogus", "--", "true"});
  BOOST_TEST(r.status == 2);
  r = run({gort(), "run", "--", "/no/such/program"});
  BOOST_TEST(r.status == 127);
  BOOST_TEST(r.err.find("gort: run: /no/such/program: No such file or directory") !=
             std::string::npos);
  r = run({gort(), "frobnicate"});
  BOOST_TEST(r.status == 2);
  BOOST_TEST(r.err.find("unknown command frobnicate") != std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()
