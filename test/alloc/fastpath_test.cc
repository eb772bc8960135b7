// Pins the malloc/free fast path, as TCMalloc does with golden files: counts
// the instructions of one malloc+free pair with callgrind (exact and
// repeatable, whatever the machine is doing) and fails if it grew past the
// golden count in test/golden/fastpath.txt. When the fast path gets shorter,
// lower the golden value in the same commit.
#include <boost/test/unit_test.hpp>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>

#include "helpers.h"

using namespace gort_test;

BOOST_AUTO_TEST_SUITE(fastpath)

BOOST_AUTO_TEST_CASE(instruction_counts_do_not_grow) {
  BOOST_REQUIRE_MESSAGE(has_program("valgrind"), "valgrind is needed (make deps installs it)");
  std::map<std::string, double> golden;
  std::ifstream g("test/golden/fastpath.txt");
  BOOST_REQUIRE_MESSAGE(g, "test/golden/fastpath.txt is missing");
  std::string line;
  while (std::getline(g, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream in(line);
    std::string name;
    double v;
    if (in >> name >> v) golden[name] = v;
  }
  BOOST_REQUIRE(!golden.empty());
  const int kIters = 100000;
  for (auto& [name, limit] : golden) {
    std::string out = "/tmp/gort-callgrind-" + name + ".out";
    result r = run({"valgrind", "--tool=callgrind", "--callgrind-out-file=" + out,
                    "--toggle-collect=measure_" + name, test_prog("fastpath")},
                   {preload_env()}, "", 300);
    BOOST_REQUIRE_MESSAGE(r.status == 0, r.err);
    std::ifstream f(out);
    std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    std::smatch m;
    BOOST_REQUIRE(std::regex_search(text, m, std::regex(R"(\ntotals: (\d+))")));
    double per_pair = std::stod(m[1]) / kIters;
    BOOST_TEST_MESSAGE(name << ": " << per_pair << " instructions per pair (golden " << limit
                            << ")");
    BOOST_TEST(per_pair <= limit + 0.5, name << " grew: " << per_pair << " > golden " << limit);
    remove(out.c_str());
  }
}

BOOST_AUTO_TEST_SUITE_END()
