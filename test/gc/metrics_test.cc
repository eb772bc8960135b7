// gort/metrics.h: the table is well formed, unknown names read as unknown,
// every metric equals what the subsystem's own API reports (gort_malloc_stats,
// gort_gc_stats, gort::sched_stats) after work that moves each of them, and
// GORT_DEBUG=metrics=1 prints them at exit.
#include <gort/gc.h>
#include <gort/malloc.h>
#include <gort/metrics.h>
#include <gort/runtime.h>
#include <stdlib.h>
#include <string.h>

#include <boost/test/unit_test.hpp>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "test/alloc/helpers.h"

namespace {

struct all_stats {
  gort_malloc_stats_t m;
  gort_gc_stats_t g;
  gort::SchedStats s;
};

all_stats take() {
  all_stats a;
  gort_malloc_stats(&a.m);
  gort_gc_stats(&a.g);
  a.s = gort::sched_stats();
  return a;
}

// The test's own map from each name to the API field it must equal, written
// independently of gc/metrics.cc's table.
const std::map<std::string, std::function<uint64_t(const all_stats&)>>& expected() {
  static const std::map<std::string, std::function<uint64_t(const all_stats&)>> m = {
      {"/memory/heap/mapped:bytes", [](const all_stats& a) { return a.m.heap_mapped; }},
      {"/memory/heap/reserved:bytes", [](const all_stats& a) { return a.m.heap_reserved; }},
      {"/memory/heap/inuse:bytes", [](const all_stats& a) { return a.m.heap_inuse; }},
      {"/memory/heap/free:bytes", [](const all_stats& a) { return a.m.heap_free; }},
      {"/memory/heap/released:bytes", [](const all_stats& a) { return a.m.heap_released; }},
      {"/memory/heap/objects:bytes", [](const all_stats& a) { return a.m.bytes_allocated; }},
      {"/memory/heap/cached:bytes", [](const all_stats& a) { return a.m.bytes_cached; }},
      {"/memory/metadata:bytes", [](const all_stats& a) { return a.m.metadata; }},
      {"/memory/heap/small-objects:objects", [](const all_stats& a) { return a.m.small_inuse; }},
      {"/memory/heap/large-allocs:objects", [](const all_stats& a) { return a.m.large_allocs; }},
      {"/memory/heap/large-frees:objects", [](const all_stats& a) { return a.m.large_frees; }},
      {"/memory/thread-caches:caches",
       [](const all_stats& a) { return uint64_t{a.m.thread_caches}; }},
      {"/scavenger/released:bytes", [](const all_stats& a) { return a.m.scavenged; }},
      {"/scavenger/passes:passes", [](const all_stats& a) { return a.m.scavenge_passes; }},
      {"/scavenger/running:bool",
       [](const all_stats& a) { return static_cast<uint64_t>(a.m.scavenger_running); }},
      {"/gc/cycles:cycles", [](const all_stats& a) { return a.g.cycles; }},
      {"/gc/heap/alloc:bytes", [](const all_stats& a) { return a.g.heap_alloc; }},
      {"/gc/heap/live:bytes", [](const all_stats& a) { return a.g.heap_live; }},
      {"/gc/heap/goal:bytes", [](const all_stats& a) { return a.g.heap_goal; }},
      {"/gc/heap/allocs:bytes", [](const all_stats& a) { return a.g.total_alloc; }},
      {"/gc/heap/frees:bytes", [](const all_stats& a) { return a.g.total_freed; }},
      {"/gc/pauses:pauses", [](const all_stats& a) { return a.g.npauses; }},
      {"/gc/pauses/total:nanoseconds", [](const all_stats& a) { return a.g.pause_total_ns; }},
      {"/gc/pauses/max:nanoseconds", [](const all_stats& a) { return a.g.pause_max_ns; }},
      {"/gc/mark/last:nanoseconds", [](const all_stats& a) { return a.g.mark_ns; }},
      {"/gc/mark/task-objects:objects", [](const all_stats& a) { return a.g.mark_task_objects; }},
      {"/gc/finalizers:calls", [](const all_stats& a) { return a.g.finalizers_run; }},
      {"/gc/threads:threads", [](const all_stats& a) { return a.g.threads; }},
      {"/sched/tasks/spawned:tasks", [](const all_stats& a) { return a.s.tasks_spawned; }},
      {"/sched/tasks/exited:tasks", [](const all_stats& a) { return a.s.tasks_exited; }},
      {"/sched/tasks/live:tasks", [](const all_stats& a) { return a.s.tasks_live; }},
      {"/sched/steals:tasks", [](const all_stats& a) { return a.s.steals; }},
      {"/sched/global-runq:tasks", [](const all_stats& a) { return a.s.global_runq; }},
      {"/sched/m-parks:parks", [](const all_stats& a) { return a.s.m_parks; }},
      {"/sched/stacks/live:stacks", [](const all_stats& a) { return a.s.stacks_live; }},
      {"/sched/stacks/cached:stacks", [](const all_stats& a) { return a.s.stacks_cached; }},
      {"/sched/retakes:retakes", [](const all_stats& a) { return a.s.retakes; }},
      {"/sched/preemptions:preemptions", [](const all_stats& a) { return a.s.preemptions; }},
      {"/sched/preemptions/async:preemptions",
       [](const all_stats& a) { return a.s.async_preemptions; }},
  };
  return m;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(metrics)

BOOST_AUTO_TEST_CASE(table_is_well_formed_and_complete) {
  const gort_metric_desc_t* all = nullptr;
  size_t n = gort_metrics_all(&all);
  BOOST_REQUIRE(all != nullptr);
  BOOST_TEST(n == expected().size());
  std::set<std::string> seen;
  for (size_t i = 0; i < n; i++) {
    std::string name = all[i].name;
    BOOST_TEST(seen.insert(name).second, "duplicate " << name);
    BOOST_TEST(name[0] == '/', name);
    BOOST_TEST(name.find(':') != std::string::npos, name);
    BOOST_TEST(strlen(all[i].description) > 5, name);
    BOOST_TEST(expected().count(name) == 1u, "the test does not know " << name);
  }
  for (const char* group : {"/memory/", "/scavenger/", "/gc/", "/sched/"}) {
    bool any = false;
    for (const auto& s : seen) any = any || s.rfind(group, 0) == 0;
    BOOST_TEST(any, "no metric in " << group);
  }
}

BOOST_AUTO_TEST_CASE(unknown_names_are_not_counted_and_read_zero) {
  const char* names[] = {"/gc/cycles:cycles", "/no/such:thing", nullptr, "/gc/cycles"};
  uint64_t v[4] = {7, 7, 7, 7};
  BOOST_TEST(gort_metrics_read(names, v, 4) == 1u);
  BOOST_TEST(v[1] == 0u);
  BOOST_TEST(v[2] == 0u);
  BOOST_TEST(v[3] == 0u);
}

// Work that moves each subsystem's counters, then: a metric read between two
// API snapshots lies between them (cumulative ones only grow; a gauge that
// did not change between the snapshots must equal them exactly).
BOOST_AUTO_TEST_CASE(metrics_match_the_stats_the_other_apis_report) {
  gort::run([] {
    gort::WaitGroup wg;
    for (int i = 0; i < 200; i++) {
      wg.add(1);
      gort::go([&] {
        gort::yield();
        wg.done();
      });
    }
    wg.wait();
  });
  gort_gc_collect();
  std::vector<void*> big;
  for (int i = 0; i < 3; i++) big.push_back(malloc(1 << 20));
  free(big.back());
  big.pop_back();

  const gort_metric_desc_t* all = nullptr;
  size_t n = gort_metrics_all(&all);
  std::vector<const char*> names;
  for (size_t i = 0; i < n; i++) names.push_back(all[i].name);
  std::vector<uint64_t> v(n);
  int exact = 0;
  for (int attempt = 0; attempt < 20; attempt++) {
    all_stats before = take();
    BOOST_REQUIRE(gort_metrics_read(names.data(), v.data(), n) == n);
    all_stats after = take();
    exact = 0;
    for (size_t i = 0; i < n; i++) {
      auto f = expected().at(names[i]);
      uint64_t lo = f(before), hi = f(after);
      if (lo > hi) std::swap(lo, hi);
      BOOST_TEST((v[i] >= lo && v[i] <= hi), names[i] << " = " << v[i] << ", the API said "
                                                      << f(before) << " then " << f(after));
      exact += lo == hi;
    }
    if (exact == static_cast<int>(n)) break;  // a quiet moment: every check was exact
  }
  BOOST_TEST(exact > static_cast<int>(n) / 2, "too few exact checks: " << exact);
  // The work above shows.
  const char* moved[] = {"/gc/cycles:cycles", "/sched/tasks/spawned:tasks",
                         "/memory/heap/large-allocs:objects"};
  uint64_t m[3];
  gort_metrics_read(moved, m, 3);
  BOOST_TEST(m[0] >= 1u);
  BOOST_TEST(m[1] >= 201u);
  BOOST_TEST(m[2] >= 3u);
  for (void* p : big) free(p);
}

BOOST_AUTO_TEST_CASE(debug_metrics_prints_them_at_exit) {
  using namespace gort_test;
  result r = run({"sh", "-c", "echo hi"}, {preload_env(), "GORT_DEBUG=metrics=1"});
  BOOST_TEST(r.status == 0);
  BOOST_TEST(r.out == "hi\n");
  for (const char* want :
       {"gort: metrics: /memory/heap/inuse:bytes", "gort: metrics: /gc/cycles:cycles",
        "gort: metrics: /sched/tasks/spawned:tasks", "gort: metrics: /scavenger/released:bytes"})
    BOOST_TEST(r.err.find(want) != std::string::npos, "missing " << want << " in " << r.err);
  r = run({"sh", "-c", "true"}, {preload_env()});
  BOOST_TEST(r.err.find("metrics") == std::string::npos, r.err);
}

BOOST_AUTO_TEST_SUITE_END()
