// The poison debug mode and the checking workload (docs/gc.md, "Debugging
// the collector"): with GORT_DEBUG=gcpoison=1 sweeping fills every freed
// object with 0xdead..., so a pointer the collector should have kept reads
// as poison at once; test/progs/gc_check.cc verifies everything it can reach
// under that mode and collections every few span refills.
#include <boost/test/unit_test.hpp>

#include "common.h"
#include "test/alloc/helpers.h"

BOOST_AUTO_TEST_SUITE(poison)

BOOST_AUTO_TEST_CASE(freed_objects_read_as_poison) {
  auto r = gort_test::run({gort_test::test_prog("gc_check"), "poisoned"}, {"GORT_DEBUG=gcpoison=1"},
                          "", 60);
  BOOST_CHECK_EQUAL(r.status, 0);
  BOOST_CHECK_MESSAGE(r.out.find("0xdeaddeaddeaddead 0xdeaddeaddeaddead") != std::string::npos,
                      r.out << r.err);
  // Without the mode, nothing is written to freed memory.
  auto plain = gort_test::run({gort_test::test_prog("gc_check"), "poisoned"}, {}, "", 60);
  BOOST_CHECK_EQUAL(plain.status, 0);
  BOOST_CHECK_MESSAGE(plain.out.find("0xdeaddead") == std::string::npos, plain.out);
}

BOOST_AUTO_TEST_CASE(bad_poison_setting_is_reported) {
  auto r = gort_test::run({gort_test::test_prog("gc_check"), "poisoned"}, {"GORT_DEBUG=gcpoison=x"},
                          "", 60);
  BOOST_CHECK_MESSAGE(r.err.find("gcpoison") != std::string::npos, r.err);
}

BOOST_AUTO_TEST_CASE(the_checking_workload_reaches_only_intact_objects) {
  for (const char* mode :
       {"GORT_DEBUG=gcpoison=1,gcstress=4", "GORT_DEBUG=gcpoison=1,gcverify=1"}) {
    auto r = gort_test::run({gort_test::test_prog("gc_check")}, {mode}, "", 120);
    BOOST_CHECK_MESSAGE(r.status == 0, mode << ": " << r.out << r.err);
    BOOST_CHECK_MESSAGE(r.out.find("gc_check: ok") != std::string::npos, mode << ": " << r.out);
  }
}

BOOST_AUTO_TEST_SUITE_END()
