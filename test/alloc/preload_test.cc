// gort as a drop-in malloc: real programs under LD_PRELOAD=libgort.so give the
// same output as without it, and gort really served them (GORT_DEBUG=mstats=1);
// libgort.so loaded with dlopen into a running multi-threaded program; early
// initialisation through dlsym and the loader; bad frees reported and aborted.
#include <stdlib.h>
#include <sys/stat.h>

#include <boost/test/unit_test.hpp>
#include <regex>
#include <string>

#include "helpers.h"

using namespace gort_test;

namespace {

// Runs a shell script twice, with and without gort, and compares stdout.
void same_output(const std::string& script, const std::string& input = "", int timeout = 300) {
  result plain = run({"sh", "-c", script}, {}, input, timeout);
  BOOST_REQUIRE_MESSAGE(plain.status == 0, "without gort: " << plain.err);
  result gort = run({"sh", "-c", script}, {preload_env()}, input, timeout);
  BOOST_REQUIRE_MESSAGE(gort.status == 0, "with gort: status " << gort.status << ": " << gort.err);
  BOOST_TEST(!plain.out.empty());
  BOOST_TEST(gort.out == plain.out);
}

// gort served the program: the mstats table at exit shows objects fetched.
void gort_served(const std::string& script) {
  result r = run({"sh", "-c", script}, {preload_env(), "GORT_DEBUG=mstats=1"}, "", 300);
  BOOST_REQUIRE_MESSAGE(r.status == 0, r.err);
  BOOST_TEST(r.err.find("gort: mstats: heap mapped") != std::string::npos);
  std::regex row(R"(gort: mstats: +\d+ +\d+ +\d+ +\d+ +\d+ +([1-9]\d*) +\d+)");
  BOOST_TEST(std::regex_search(r.err, row), "no size class served any object:\n" << r.err);
}

const char* kPython = R"PY(
import hashlib
d = {}
for i in range(300000):
    d["key%d" % i] = [i, str(i) * 3, (i, i * 2)]
s = "".join(str(len(v[1])) for v in d.values())
l = sorted(d.keys(), key=lambda k: hash(k) % 1000)[:10]
big = "x" * (50 << 20)
parts = [big[i:i + 4097] for i in range(0, len(big), 4097)]
print(len(d), hashlib.sha256(s.encode()).hexdigest(), len(parts), sum(map(len, parts)))
del d, big, parts
print(sum(len(str(x)) for x in range(100000)))
)PY";

}  // namespace

BOOST_AUTO_TEST_SUITE(preload)

BOOST_AUTO_TEST_CASE(python3) {
  std::string script = std::string("/usr/bin/python3 -c '") + kPython + "'";
  same_output(script);
  gort_served(script);
}

BOOST_AUTO_TEST_CASE(git_init_add_commit_log) {
  tmpdir a, b;
  // Fixed identities and dates make the commit hashes identical in both runs.
  auto script = [](const std::string& dir) {
    return "set -e; cd " + dir +
           "; export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@t GIT_COMMITTER_NAME=t "
           "GIT_COMMITTER_EMAIL=t@t GIT_AUTHOR_DATE='2026-01-01T00:00:00Z' "
           "GIT_COMMITTER_DATE='2026-01-01T00:00:00Z' HOME=" +
           dir +
           "; git -c init.defaultBranch=main init -q r; cd r;"
           " for i in $(seq 1 300); do seq $i $((i * 50)) > f$i.txt; done;"
           " git add .; git commit -q -m first;"
           " for i in $(seq 1 300 | awk 'NR % 3 == 0'); do echo change >> f$i.txt; done;"
           " git commit -q -am second; git log --stat | sha256sum; git log --oneline;"
           " git gc -q; git fsck 2>&1 | sort | sha256sum";
  };
  result plain = run({"sh", "-c", script(a.path)});
  BOOST_REQUIRE_MESSAGE(plain.status == 0, plain.err);
  result gort = run({"sh", "-c", script(b.path)}, {preload_env()});
  BOOST_REQUIRE_MESSAGE(gort.status == 0, gort.err);
  BOOST_TEST(gort.out == plain.out);
  tmpdir c;
  gort_served(script(c.path));
}

BOOST_AUTO_TEST_CASE(gxx_compiles_a_program) {
  tmpdir d;
  std::string src = d.path + "/prog.cc";
  std::string script = "cat > " + src + R"( <<'SRC_END'
#include <iostream>
#include <map>
#include <string>
#include <vector>
template <typename T> T sum(const std::vector<T>& v) { T s{}; for (auto& x : v) s += x; return s; }
int main() {
  std::map<std::string, std::vector<int>> m;
  for (int i = 0; i < 1000; i++) m[std::to_string(i % 37)].push_back(i);
  for (auto& [k, v] : m) std::cout << k << ':' << sum(v) << '\n';
}
SRC_END
cd )" + d.path +
                       " && g++ -O2 -frandom-seed=1 -c prog.cc -o prog.o && g++ prog.o -o prog && "
                       "./prog && sha256sum prog.o";
  same_output(script);
  gort_served("cd " + d.path + " && g++ -O1 -c prog.cc -o p2.o");
}

BOOST_AUTO_TEST_CASE(sort_multi_megabyte_file) {
  tmpdir d;
  std::string f = d.path + "/in.txt";
  // ~8 MB of pseudo-random lines.
  BOOST_REQUIRE(
      run({"sh", "-c",
           "awk 'BEGIN { srand(7); for (i = 0; i < 400000; i++) printf "
           "\"%d line-%x %s\\n\", int(rand() * 1e9), i, substr(\"abcdefghij\", 1 + i % 9) }' > " +
               f})
          .status == 0);
  same_output("sort " + f + " | sha256sum; sort -n -S 1M --parallel=4 " + f +
              " | sha256sum; sort -u -k2 " + f + " | tail -3");
  gort_served("sort -S 2M " + f + " > /dev/null");
}

BOOST_AUTO_TEST_CASE(multithreaded_cxx_program) {
  same_output(test_prog("mt_program"));
  gort_served(test_prog("mt_program"));
}

BOOST_AUTO_TEST_CASE(dlopen_into_a_running_threaded_program) {
  result r = run({test_prog("dlopen_user"), libgort_so()});
  BOOST_TEST(r.status == 0, r.err);
  BOOST_TEST(r.out == "ok\n");
}

BOOST_AUTO_TEST_CASE(early_init_through_dlsym_and_the_loader) {
  std::string shim = build_dir() + "/test/libearly_shim.so";
  char abs[4096];
  BOOST_REQUIRE(realpath(shim.c_str(), abs));
  // Both orders: the shim's constructor before and after gort's.
  for (std::string pre : {std::string(abs) + ":" + libgort_so(), libgort_so() + ":" + abs}) {
    result r = run({test_prog("early_init")}, {"LD_PRELOAD=" + pre}, "", 30);
    BOOST_TEST(!r.timed_out, "hung with LD_PRELOAD=" << pre);
    BOOST_TEST(r.status == 0, r.err);
    BOOST_TEST(r.out == "ok\n");
  }
}

BOOST_AUTO_TEST_CASE(bad_frees_are_reported_and_abort) {
  struct expect {
    const char* mode;
    const char* message;
  };
  for (expect e : {expect{"double", "free(): double free of 0x"},
                   expect{"double_large", "free(): double free of 0x"},
                   expect{"interior", "(inside a 64-byte block)"},
                   expect{"foreign", "(not allocated by gort)"},
                   expect{"realloc_foreign", "realloc(): invalid pointer 0x"},
                   expect{"central", "free(): double free of 0x"}}) {
    result r = run({test_prog("bad_free"), e.mode}, {preload_env()}, "", 30);
    BOOST_TEST(r.status == 128 + SIGABRT, e.mode << ": status " << r.status << " " << r.out);
    BOOST_TEST(r.err.find("gort: fatal error: ") != std::string::npos, e.mode << ": " << r.err);
    BOOST_TEST(r.err.find(e.message) != std::string::npos, e.mode << ": " << r.err);
  }
}

// Under an address-space limit of 1 GiB (ulimit -v, RLIMIT_AS), where glibc,
// jemalloc and mimalloc run, gort runs the same programs: it reserves address
// space as the heap grows, never a fixed amount up front.
BOOST_AUTO_TEST_CASE(real_programs_under_ulimit_v_1g) {
  tmpdir d;
  std::string f = d.path + "/in.txt";
  BOOST_REQUIRE(
      run({"sh", "-c", "seq 200000 | awk '{ print ($1 * 7919) % 100003, $1 }' > " + f}).status ==
      0);
  std::string limit = "ulimit -v 1048576; ";
  same_output(limit + "/usr/bin/python3 -c '" + kPython + "'");
  same_output(limit + "sort -n " + f + " | sha256sum; sort -S 4M -k2 " + f + " | tail -2");
  same_output(limit + "git --version; git -C " + d.path + " init -q r && git -C " + d.path +
              "/r status --porcelain | wc -l");
}

// At the limit malloc, calloc, realloc, the aligned calls and operator new
// fail cleanly (NULL + ENOMEM, bad_alloc after the new_handler), nothing
// allocated before is lost, and the program allocates again after freeing.
BOOST_AUTO_TEST_CASE(malloc_fails_cleanly_at_an_address_space_limit) {
  for (std::string mib : {"256", "1024"}) {
    result r = run({test_prog("as_limit"), mib}, {preload_env()}, "", 120);
    BOOST_TEST(r.status == 0, "limit " << mib << " MiB: status " << r.status << "\n"
                                       << r.out << r.err);
    BOOST_TEST(r.out == "ok\n", r.out);
  }
}

BOOST_AUTO_TEST_SUITE_END()
