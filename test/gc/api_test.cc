// Allocation kinds and sizes, object lookup, bad input, settings, statistics.
#include <errno.h>
#include <stdlib.h>

#include <boost/test/unit_test.hpp>
#include <string>
#include <vector>

#include "common.h"
#include "test/alloc/helpers.h"

using namespace gc_test;

BOOST_AUTO_TEST_SUITE(api)

static const uint64_t kMapFirstWord[1] = {1};
static const gort_gc_type kTyped = {"first-word", 16, kMapFirstWord, nullptr};

BOOST_AUTO_TEST_CASE(objects_are_zeroed_aligned_and_sized) {
  on_thread([] {
    const size_t sizes[] = {0, 1, 7, 8, 15, 16, 17, 100, 1000, 4096, 32752, 32768, 40000, 1 << 20};
    for (int round = 0; round < 3; round++) {
      for (size_t n : sizes) {
        for (int kind = 0; kind < 3; kind++) {
          char* p = static_cast<char*>(kind == 0   ? gort_gc_alloc(n, nullptr)
                                       : kind == 1 ? gort_gc_alloc_noscan(n)
                                                   : gort_gc_alloc(n, &kTyped));
          BOOST_REQUIRE(p != nullptr);
          if (kind != 1 || n >= 16) BOOST_CHECK_EQUAL(reinterpret_cast<uintptr_t>(p) % 16, 0u);
          for (size_t i = 0; i < n; i++)
            if (p[i] != 0) BOOST_FAIL("GC object not zeroed at byte " << i << " of " << n);
          memset(p, 0xab, n);  // the next round gets reused memory: must be zeroed again
          if (kind != 1 || n >= 16) {
            BOOST_CHECK(gort_gc_base(p) == p);
            BOOST_CHECK_GE(gort_gc_size(p), n);
            if (n > 1) BOOST_CHECK(gort_gc_base(p + n - 1) == p);  // interior pointer
          }
        }
      }
      gort_gc_collect();
    }
  });
}

BOOST_AUTO_TEST_CASE(tiny_noscan_objects_share_a_block) {
  on_thread([] {
    char* a = static_cast<char*>(gort_gc_alloc_noscan(4));
    char* b = static_cast<char*>(gort_gc_alloc_noscan(4));
    BOOST_REQUIRE(a && b);
    BOOST_CHECK(gort_gc_base(a) == gort_gc_base(b));
    BOOST_CHECK_EQUAL(b - a, 4);
    // Scanned objects never share: each has a block of its own.
    void* c = gort_gc_alloc(4, nullptr);
    void* d = gort_gc_alloc(4, nullptr);
    BOOST_CHECK(gort_gc_base(c) != gort_gc_base(d));
  });
}

BOOST_AUTO_TEST_CASE(foreign_pointers_are_not_objects) {
  int local = 0;
  void* m = malloc(64);
  BOOST_CHECK(gort_gc_base(nullptr) == nullptr);
  BOOST_CHECK(gort_gc_base(&local) == nullptr);
  BOOST_CHECK(gort_gc_base(m) == nullptr);
  BOOST_CHECK(gort_gc_base(reinterpret_cast<void*>(~uintptr_t{0} - 8)) == nullptr);
  BOOST_CHECK_EQUAL(gort_gc_size(m), 0u);
  free(m);
  errno = 0;
  BOOST_CHECK_EQUAL(gort_gc_set_finalizer(
                        &local, [](void*, void*) {}, nullptr),
                    -1);
  BOOST_CHECK_EQUAL(errno, EINVAL);
  BOOST_CHECK(gort_gc_weak_new(&local) == nullptr);
  BOOST_CHECK_EQUAL(gort_gc_add_roots(nullptr, 8), -1);
  BOOST_CHECK(gort_gc_handle_get(nullptr) == nullptr);
  gort_gc_handle_set(nullptr, nullptr);  // ignored
  gort_gc_handle_free(nullptr);
  BOOST_CHECK(gort_gc_weak_get(nullptr) == nullptr);
  gort_gc_weak_free(nullptr);
  BOOST_CHECK_EQUAL(gort_gc_remove_roots(&local), -1);
}

BOOST_AUTO_TEST_CASE(impossible_sizes_fail_with_enomem) {
  on_thread([] {
    errno = 0;
    BOOST_CHECK(gort_gc_alloc(~size_t{0}, nullptr) == nullptr);
    BOOST_CHECK_EQUAL(errno, ENOMEM);
    errno = 0;
    BOOST_CHECK(gort_gc_alloc(~size_t{0} - 8, &kTyped) == nullptr);
    BOOST_CHECK_EQUAL(errno, ENOMEM);
    errno = 0;
    BOOST_CHECK(gort_gc_alloc_noscan(size_t{1} << 50) == nullptr);
    BOOST_CHECK_EQUAL(errno, ENOMEM);
  });
}

BOOST_AUTO_TEST_CASE(free_of_a_gc_object_is_reported) {
  auto r = gort_test::run({gort_test::test_prog("gc_prog"), "free"});
  BOOST_CHECK_NE(r.status, 0);
  BOOST_CHECK_MESSAGE(r.err.find("is a garbage-collected object") != std::string::npos, r.err);
}

BOOST_AUTO_TEST_CASE(percent_setting_and_statistics) {
  int old = gort_gc_set_percent(50);
  BOOST_CHECK_EQUAL(gort_gc_set_percent(old), 50);
  uint64_t before = stat_cycles();
  collect(2);
  gort_gc_stats_t st;
  gort_gc_stats(&st);
  BOOST_CHECK_GE(st.cycles, before + 2);
  BOOST_CHECK_GT(st.pause_max_ns, 0u);
  BOOST_CHECK_GE(st.pause_total_ns, st.pause_max_ns);
  BOOST_CHECK_GE(st.heap_goal, uint64_t{4} << 20);
  uint64_t pauses[8];
  size_t n = gort_gc_pauses(pauses, 8);
  BOOST_CHECK_GE(n, 4u);  // two stops per cycle
  for (size_t i = 0; i < n; i++) BOOST_CHECK_LE(pauses[i], st.pause_max_ns);
}

BOOST_AUTO_TEST_CASE(gc_off_means_no_automatic_cycles) {
  auto off = gort_test::run({gort_test::test_prog("gc_prog"), "churn"}, {"GORT_GC=off"});
  BOOST_CHECK_EQUAL(off.status, 0);
  BOOST_CHECK_MESSAGE(off.out.find("cycles=0 ") != std::string::npos, off.out);
  auto on = gort_test::run({gort_test::test_prog("gc_prog"), "churn"}, {"GORT_GC=100"});
  BOOST_CHECK_EQUAL(on.status, 0);
  BOOST_CHECK_MESSAGE(on.out.find("cycles=0 ") == std::string::npos, on.out);
  // A lower percent collects more often.
  auto low = gort_test::run({gort_test::test_prog("gc_prog"), "churn"}, {"GORT_GC=10"});
  BOOST_CHECK_EQUAL(low.status, 0);
  auto cycles = [](const std::string& s) { return atol(s.c_str() + s.find("cycles=") + 7); };
  BOOST_CHECK_GT(cycles(low.out), cycles(on.out));
}

BOOST_AUTO_TEST_CASE(gcstress_collects_more_often) {
  auto cycles = [](const std::string& s) { return atol(s.c_str() + s.find("cycles=") + 7); };
  auto normal = gort_test::run({gort_test::test_prog("gc_prog"), "churn"});
  auto stress = gort_test::run({gort_test::test_prog("gc_prog"), "churn"},
                               {"GORT_DEBUG=gcstress=2,gcverify=1"});
  BOOST_CHECK_EQUAL(normal.status, 0);
  BOOST_CHECK_EQUAL(stress.status, 0);
  BOOST_CHECK_GT(cycles(stress.out), cycles(normal.out));
}

BOOST_AUTO_TEST_CASE(bad_gc_setting_warns_and_keeps_the_default) {
  auto r = gort_test::run({gort_test::test_prog("gc_prog"), "churn"}, {"GORT_GC=lots"});
  BOOST_CHECK_EQUAL(r.status, 0);
  BOOST_CHECK_MESSAGE(r.err.find("GORT_GC=lots") != std::string::npos, r.err);
  BOOST_CHECK_MESSAGE(r.out.find("percent=100") != std::string::npos, r.out);
}

BOOST_AUTO_TEST_CASE(gctrace_prints_a_line_per_cycle) {
  auto r = gort_test::run({gort_test::test_prog("gc_prog"), "churn"}, {"GORT_DEBUG=gctrace=1"});
  BOOST_CHECK_EQUAL(r.status, 0);
  long cycles = atol(r.out.c_str() + r.out.find("cycles=") + 7);
  long lines = 0;
  size_t start = 0;
  while (start < r.err.size()) {
    size_t end = r.err.find('\n', start);
    if (end == std::string::npos) end = r.err.size();
    std::string line = r.err.substr(start, end - start);
    if (line.rfind("gc ", 0) == 0 && line.find(" MB goal") != std::string::npos) lines++;
    start = end + 1;
  }
  BOOST_CHECK_EQUAL(lines, cycles);
  BOOST_CHECK_MESSAGE(r.err.find("gc 1 @") != std::string::npos, r.err);
  BOOST_CHECK_MESSAGE(r.err.find(" ms clock, ") != std::string::npos, r.err);
  BOOST_CHECK_MESSAGE(r.err.find(" MB goal") != std::string::npos, r.err);
  BOOST_CHECK_GE(cycles, 1);
}

BOOST_AUTO_TEST_CASE(fork_child_allocates_and_does_not_hang) {
  // A child forked while the collector is busy in another thread: it must
  // allocate, and gort_gc_collect must return (the child has no collector).
  std::atomic<bool> stop{false};
  std::thread churn([&] {
    while (!stop.load())
      for (int i = 0; i < 1000; i++) gort_gc_alloc(64, nullptr);
  });
  std::thread collector([&] {
    while (!stop.load()) gort_gc_collect();
  });
  struct joiner {  // the threads stop even when a check fails
    std::atomic<bool>& stop;
    std::thread &a, &b;
    ~joiner() {
      stop = true;
      a.join();
      b.join();
    }
  } j{stop, churn, collector};
  for (int k = 0; k < 5; k++) {
    pid_t pid = fork();
    if (pid == 0) {
      for (int i = 0; i < 100000; i++)
        if (!gort_gc_alloc(64, nullptr)) _exit(3);
      gort_gc_collect();
      _exit(0);
    }
    int st = 0;
    for (int waited = 0; waited < 200 && waitpid(pid, &st, WNOHANG) == 0; waited++) usleep(50000);
    if (waitpid(pid, &st, WNOHANG) == 0) {
      kill(pid, SIGKILL);
      waitpid(pid, &st, 0);
      BOOST_FAIL("fork child hung");
    }
    BOOST_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  }
}

BOOST_AUTO_TEST_CASE(the_documented_c_example_runs) {
  auto r = gort_test::run({gort_test::test_prog("gc_example")});
  BOOST_CHECK_EQUAL(r.status, 0);
  BOOST_CHECK_MESSAGE(r.out.find("list: 1000 cells, sum 499500") != std::string::npos, r.out);
  BOOST_CHECK_MESSAGE(r.out.find("\nok\n") != std::string::npos, r.out);
}

BOOST_AUTO_TEST_SUITE_END()
