// Using gort by linking it: -lgort against the shared and the static library,
// and through the pkg-config file that `make install` writes.
#include <boost/test/unit_test.hpp>
#include <cctype>
#include <string>

#include "helpers.h"

using namespace gort_test;

namespace {
std::string abs_build() {
  char buf[4096];
  return realpath(build_dir().c_str(), buf) ? buf : build_dir();
}
void expect_ok(const result& r, const char* what) {
  BOOST_TEST(r.status == 0, what << ": " << r.err);
  BOOST_TEST(r.out.rfind("ok ", 0) == 0, what << ": " << r.out);
}
}  // namespace

BOOST_AUTO_TEST_SUITE(linking)

BOOST_AUTO_TEST_CASE(shared_and_static) {
  std::string b = abs_build(), exe = "/tmp/gort-linked-" + std::to_string(getpid());
  result cc = run({"cc", "-O1", "-Iinclude", "test/progs/linked_user.c", "-o", exe + "-so",
                   "-L" + b + "/lib", "-lgort", "-Wl,-rpath," + b + "/lib"});
  BOOST_REQUIRE_MESSAGE(cc.status == 0, cc.err);
  expect_ok(run({exe + "-so"}), "shared");
  // Static: libgort.a needs the C++ runtime for operator new's bad_alloc.
  cc = run({"cc", "-O1", "-Iinclude", "test/progs/linked_user.c", "-o", exe + "-a",
            b + "/lib/libgort.a", "-lstdc++", "-pthread"});
  BOOST_REQUIRE_MESSAGE(cc.status == 0, cc.err);
  expect_ok(run({exe + "-a"}), "static");
  run({"rm", "-f", exe + "-so", exe + "-a"});
}

BOOST_AUTO_TEST_CASE(make_install_and_pkg_config) {
  std::string prefix = "/tmp/gort-install-" + std::to_string(getpid());
  result r = run({"make", "-s", "install", "PREFIX=" + prefix, "BUILD=" + build_dir()});
  BOOST_REQUIRE_MESSAGE(r.status == 0, r.out << r.err);
  std::string pc = "PKG_CONFIG_PATH=" + prefix + "/lib/pkgconfig";
  result flags = run({"pkg-config", "--cflags", "--libs", "gort"}, {pc});
  BOOST_REQUIRE_MESSAGE(flags.status == 0, flags.err);
  while (!flags.out.empty() && isspace(static_cast<unsigned char>(flags.out.back())))
    flags.out.pop_back();
  std::string exe = prefix + "/linked";
  result cc = run({"sh", "-c",
                   "cc -O1 test/progs/linked_user.c -o " + exe + " " + flags.out + " -Wl,-rpath," +
                       prefix + "/lib"});
  BOOST_REQUIRE_MESSAGE(cc.status == 0, cc.err);
  expect_ok(run({exe}), "installed");
  run({"rm", "-rf", prefix});
}

BOOST_AUTO_TEST_SUITE_END()
