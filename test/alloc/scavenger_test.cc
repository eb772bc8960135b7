// Memory goes back to the OS: after a program frees most of its memory and
// then does nothing at all, RSS falls near the live heap within about a
// second (the scavenger runs on its own clock), also when the frees were
// remote and nothing merges them; GORT_SCAVENGE=off keeps it;
// a bad value is reported and the default used. Also: no MADV_HUGEPAGE.
#include <stdlib.h>
#include <string.h>

#include <boost/test/unit_test.hpp>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gort/malloc.h"
#include "helpers.h"

using namespace gort_test;

namespace {

struct rss_trace {
  size_t peak = 0;
  std::vector<std::pair<int, size_t>> samples;  // (ms after freeing, rss)
  size_t at(int ms) const {
    for (auto& s : samples)
      if (s.first >= ms) return s.second;
    return samples.empty() ? 0 : samples.back().second;
  }
};

rss_trace run_rss_return(const std::vector<std::string>& env, result* raw = nullptr,
                         const std::string& prog = "rss_return") {
  std::vector<std::string> e = env;
  e.push_back(preload_env());
  result r = run({test_prog(prog)}, e);
  BOOST_REQUIRE_MESSAGE(r.status == 0, prog << " failed: " << r.err);
  rss_trace t;
  std::istringstream in(r.out);
  std::string what;
  while (in >> what) {
    if (what == "peak") {
      in >> t.peak;
    } else {
      int ms;
      size_t rss;
      in >> ms >> rss;
      t.samples.push_back({ms, rss});
    }
  }
  if (raw) *raw = r;
  return t;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(scavenger)

BOOST_AUTO_TEST_CASE(idle_process_gives_memory_back_within_a_second) {
  rss_trace t = run_rss_return({});
  BOOST_TEST_MESSAGE("peak " << (t.peak >> 20) << " MiB, after 1 s " << (t.at(1000) >> 20)
                             << " MiB, after 2 s " << (t.at(2000) >> 20) << " MiB");
  BOOST_REQUIRE(t.peak > (200u << 20));
  // ~8 MiB stays live (every 32nd block of ~256 MiB): allow caches and
  // metadata on top, but nothing near the peak.
  BOOST_TEST(t.at(1000) < (40u << 20));
  BOOST_TEST(t.at(2000) < (40u << 20));
}

// Remote frees that no refill merges (the allocating thread exited, nobody
// allocates the class again) go back too: the scavenger starts for spans
// with pending remote frees and merges them (test/progs/rss_remote.cc).
// Before it did, RSS stayed at the peak (~70 MiB) for good.
BOOST_AUTO_TEST_CASE(remote_frees_nobody_merges_go_back_too) {
  rss_trace t = run_rss_return({}, nullptr, "rss_remote");
  BOOST_TEST_MESSAGE("peak " << (t.peak >> 20) << " MiB, after 2 s " << (t.at(2000) >> 20)
                             << " MiB");
  BOOST_REQUIRE(t.peak > (60u << 20));
  BOOST_TEST(t.at(2000) < (20u << 20));
}

BOOST_AUTO_TEST_CASE(scavenge_off_keeps_memory) {
  rss_trace t = run_rss_return({"GORT_SCAVENGE=off"});
  BOOST_TEST(t.at(2000) > t.peak / 2);
}

BOOST_AUTO_TEST_CASE(bad_scavenge_value_is_reported_and_default_used) {
  result r;
  rss_trace t = run_rss_return({"GORT_SCAVENGE=soon"}, &r);
  BOOST_TEST(r.err.find("gort: GORT_SCAVENGE=soon: expected 'off' or a delay in milliseconds") !=
             std::string::npos);
  BOOST_TEST(t.at(2000) < (40u << 20));
}

BOOST_AUTO_TEST_CASE(bad_debug_value_is_reported) {
  result r = run({"true"}, {preload_env(), "GORT_DEBUG=nonsense=1"});
  BOOST_TEST(r.status == 0);
  BOOST_TEST(r.err.find("gort: GORT_DEBUG=nonsense=1: unknown setting 'nonsense'") !=
             std::string::npos);
}

BOOST_AUTO_TEST_CASE(scavtrace_prints_passes) {
  result r;
  run_rss_return({"GORT_DEBUG=scavtrace=1"}, &r);
  BOOST_TEST(r.err.find("gort: scav: released") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(gort_scavenge_releases_now) {
  std::vector<void*> v;
  for (int i = 0; i < 64; i++) {
    v.push_back(malloc(1 << 20));
    memset(v.back(), 1, 1 << 20);
  }
  for (void* p : v) free(p);
  gort_scavenge();
  gort_malloc_stats_t st;
  gort_malloc_stats(&st);
  BOOST_TEST(st.heap_free == 0u);
  BOOST_TEST(st.heap_released >= (48u << 20));
}

// GORT_THP: system (the default) gives no advice, on asks for huge pages,
// off refuses them; a bad value is reported and the default kept.
BOOST_AUTO_TEST_CASE(gort_thp_advises_the_heap) {
  auto flags = [](const char* setting) {
    std::vector<std::string> env{preload_env()};
    if (setting) env.push_back(std::string("GORT_THP=") + setting);
    result r = run({test_prog("thp_flags")}, env);
    BOOST_REQUIRE_MESSAGE(r.status == 0, "thp_flags failed: " << r.err);
    return r;
  };
  result def = flags(nullptr), on = flags("on"), off = flags("off"), bad = flags("sometimes");
  BOOST_TEST(def.out.find(" hg") == std::string::npos, def.out);
  BOOST_TEST(def.out.find(" nh") == std::string::npos, def.out);
  BOOST_TEST(on.out.find(" hg") != std::string::npos, on.out);
  BOOST_TEST(off.out.find(" nh") != std::string::npos, off.out);
  BOOST_TEST(bad.out.find(" hg") == std::string::npos, bad.out);
  BOOST_TEST(bad.err.find("gort: GORT_THP=sometimes: expected 'system', 'on' or 'off'") !=
                 std::string::npos,
             bad.err);
}

BOOST_AUTO_TEST_CASE(heap_is_never_madvised_hugepage) {
  // Go issues 61718/64332: gort aligns arenas to huge pages but never asks
  // for them, so THP=madvise systems keep their behaviour.
  void* p = malloc(8 << 20);
  memset(p, 1, 8 << 20);
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  bool in_vma = false, found = false;
  while (std::getline(smaps, line)) {
    uintptr_t lo, hi;
    if (sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2 && line.find(':') > 20) {
      in_vma = lo <= a && a < hi;
    } else if (in_vma && line.rfind("VmFlags:", 0) == 0) {
      found = true;
      BOOST_TEST(line.find(" hg") == std::string::npos, line);
    }
  }
  BOOST_TEST(found);
  free(p);
}

BOOST_AUTO_TEST_SUITE_END()
