// Environment parsing: every accepted form and every rejected one.
#include "alloc/options.h"

#include <boost/test/unit_test.hpp>
#include <cstring>

using namespace gort::alloc;

BOOST_AUTO_TEST_SUITE(options_parsing)

BOOST_AUTO_TEST_CASE(scavenge_values) {
  int64_t d = 0;
  const char* why = nullptr;
  BOOST_TEST(parse_scavenge("off", &d, &why));
  BOOST_TEST(d == -1);
  BOOST_TEST(parse_scavenge("0", &d, &why));
  BOOST_TEST(d == 0);
  BOOST_TEST(parse_scavenge("250", &d, &why));
  BOOST_TEST(d == 250 * 1000000LL);
  for (const char* bad : {"", "-1", "abc", "10ms", "3600001", "99999999999999999999", "on"}) {
    why = nullptr;
    BOOST_TEST(!parse_scavenge(bad, &d, &why), bad);
    BOOST_TEST(why != nullptr);
  }
}

BOOST_AUTO_TEST_CASE(thp_values) {
  thpMode m = thpMode::system;
  const char* why = nullptr;
  BOOST_TEST(parse_thp("on", &m, &why));
  BOOST_TEST((m == thpMode::on));
  BOOST_TEST(parse_thp("off", &m, &why));
  BOOST_TEST((m == thpMode::off));
  BOOST_TEST(parse_thp("system", &m, &why));
  BOOST_TEST((m == thpMode::system));
  for (const char* bad : {"", "always", "1", "ON", "on "}) {
    why = nullptr;
    BOOST_TEST(!parse_thp(bad, &m, &why), bad);
    BOOST_TEST(why != nullptr);
  }
}

BOOST_AUTO_TEST_CASE(debug_values) {
  options o;
  char why[160] = "";
  BOOST_TEST(parse_debug("mstats=1", &o, why, sizeof why));
  BOOST_TEST(o.mstats);
  BOOST_TEST(parse_debug("mstats=0,scavtrace=1", &o, why, sizeof why));
  BOOST_TEST(!o.mstats);
  BOOST_TEST(o.scavtrace);
  BOOST_TEST(parse_debug("", &o, why, sizeof why));
  BOOST_TEST(!parse_debug("nosuch=1", &o, why, sizeof why));
  BOOST_TEST(std::strstr(why, "unknown setting 'nosuch'") != nullptr);
  BOOST_TEST(!parse_debug("mstats", &o, why, sizeof why));
  BOOST_TEST(!parse_debug("mstats=yes", &o, why, sizeof why));
}

BOOST_AUTO_TEST_SUITE_END()
