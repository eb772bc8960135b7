// gort::Pool<T> and the C API of gort/pool.h (pool/pool.cc).
//
// Collections are started by hand (gort_gc_collect) with the pacer off, so
// the count of cycles a test sees is the count it asked for: the victim
// cache is asserted over exactly two. GC objects are made and dropped on
// threads of their own that exit before the collection (the main thread's
// stack holds stale words conservative scanning would take for pointers).
#include "gort/pool.h"

#include <errno.h>

#include <atomic>
#include <boost/test/unit_test.hpp>
#include <set>
#include <thread>
#include <vector>

#include "gort/gc.h"
#include "gort/runtime.h"

namespace {

constexpr uint64_t kLive = 0x6c6976656f626a31ull;
constexpr uint64_t kDead = 0xdeadbeefdeadbeefull;

std::atomic<int> g_made{0}, g_dropped{0};

struct Obj {
  uint64_t magic = kLive;
  std::atomic<int> in_use{0};
  uint64_t payload[6] = {};
  Obj() { g_made++; }
  ~Obj() {
    // A double drop, or a drop of something the pool never made.
    BOOST_REQUIRE_EQUAL(magic, kLive);
    magic = kDead;
    g_dropped++;
  }
};

struct counters_reset {
  counters_reset() {
    g_made = 0;
    g_dropped = 0;
  }
};

// The pacer off for the test's life: only the test's own collections run.
struct pacer_off {
  int old = gort_gc_set_percent(-1);
  ~pacer_off() { gort_gc_set_percent(old); }
};

void collect(int n = 1) {
  gort_gc_unregister_thread();
  for (int i = 0; i < n; i++) gort_gc_collect();
}

void on_thread(const std::function<void()>& fn) {
  std::thread t(fn);
  t.join();
}

}  // namespace

BOOST_AUTO_TEST_SUITE(pool)

BOOST_AUTO_TEST_CASE(empty_pool_calls_new_or_returns_null) {
  counters_reset r;
  gort::Pool<Obj> bare;
  BOOST_TEST(bare.get() == nullptr);
  gort::Pool<Obj> p([] { return new Obj; });
  Obj* a = p.get();
  BOOST_REQUIRE(a);
  BOOST_TEST(g_made == 1);
  p.put(a);
  BOOST_TEST(p.get() == a);  // the private slot
  BOOST_TEST(g_made == 1);
  delete a;
}

BOOST_AUTO_TEST_CASE(every_put_object_comes_back_once) {
  counters_reset r;
  pacer_off off;
  {
    gort::Pool<Obj> p([] { return new Obj; });
    std::vector<Obj*> v;
    for (int i = 0; i < 40; i++) v.push_back(new Obj);
    for (Obj* o : v) p.put(o);
    std::set<Obj*> back;
    for (int i = 0; i < 40; i++) {
      Obj* o = p.get();
      BOOST_REQUIRE(o);
      BOOST_TEST(back.insert(o).second);  // never the same object twice
    }
    BOOST_TEST((back == std::set<Obj*>(v.begin(), v.end())));
    BOOST_TEST(g_made == 40);  // nothing from New while pooled objects remain
    for (Obj* o : v) p.put(o);
  }
  // The pool's destructor dropped (deleted) all 40.
  BOOST_TEST(g_dropped == 40);
}

BOOST_AUTO_TEST_CASE(a_full_shard_drops_what_it_cannot_hold) {
  counters_reset r;
  pacer_off off;
  {
    gort::Pool<Obj> p;
    for (int i = 0; i < 1000; i++) p.put(new Obj);
    BOOST_TEST(g_dropped > 0);  // one thread fills one shard: bounded
    BOOST_TEST(g_dropped < 1000);
    int by_pool = g_dropped, got = 0;
    while (Obj* o = p.get()) {
      delete o;
      got++;
    }
    BOOST_TEST(got + by_pool == 1000);
  }
  BOOST_TEST(g_dropped == 1000);
}

// Go's victim cache: an object put before cycle k survives k (moved to the
// victim cache, still returned by get) and is dropped at k + 1.
BOOST_AUTO_TEST_CASE(victim_cache_drops_over_exactly_two_cycles) {
  counters_reset r;
  pacer_off off;
  gort::Pool<Obj> p;
  Obj* a = new Obj;
  p.put(a);
  collect();
  BOOST_TEST(g_dropped == 0);
  BOOST_TEST(p.get() == a);  // from the victim cache
  p.put(a);
  collect();
  BOOST_TEST(g_dropped == 0);
  collect();
  BOOST_TEST(g_dropped == 1);
  BOOST_TEST(p.get() == nullptr);
  // A steady user keeps its object: a get and put between cycles moves it
  // back to the primary cache.
  Obj* b = new Obj;
  p.put(b);
  for (int i = 0; i < 5; i++) {
    collect();
    Obj* x = p.get();
    BOOST_REQUIRE(x == b);
    p.put(x);
  }
  BOOST_TEST(g_dropped == 1);
}

BOOST_AUTO_TEST_CASE(a_ps_private_object_is_dropped_over_exactly_two_cycles) {
  // The same inside a task: the object sits in the P's own private slot,
  // which only the sweep-termination stop empties (pool/pool.cc).
  counters_reset r;
  pacer_off off;
  gort::Pool<Obj> p;
  bool ok = true;
  int dropped_after[3] = {-1, -1, -1};
  gort::run(
      [&] {
        Obj* a = new Obj;
        p.put(a);
        gort_gc_collect();                          // not collect(): an M stays registered
        ok = ok && g_dropped == 0 && p.get() == a;  // from the victim cache
        p.put(a);
        gort_gc_collect();  // not collect(): an M stays registered
        dropped_after[0] = g_dropped;
        gort_gc_collect();  // not collect(): an M stays registered
        dropped_after[1] = g_dropped;
        ok = ok && p.get() == nullptr;
        Obj* b = new Obj;
        p.put(b);
        for (int i = 0; i < 5; i++) {
          gort_gc_collect();  // not collect(): an M stays registered
          Obj* x = p.get();
          ok = ok && x == b;
          p.put(x);
        }
        dropped_after[2] = g_dropped;
      },
      gort::RunOptions{1, 0});
  BOOST_TEST(ok);
  BOOST_TEST(dropped_after[0] == 0);
  BOOST_TEST(dropped_after[1] == 1);
  BOOST_TEST(dropped_after[2] == 1);
}

BOOST_AUTO_TEST_CASE(drop_function_replaces_delete) {
  counters_reset r;
  pacer_off off;
  std::atomic<int> custom{0};
  {
    gort::Pool<Obj> p({}, gort::PoolKind::heap, [&](Obj* o) {
      custom++;
      delete o;
    });
    p.put(new Obj);
    collect(2);
    BOOST_TEST(custom == 1);
    p.put(new Obj);
  }
  BOOST_TEST(custom == 2);
  BOOST_TEST(g_dropped == 2);
}

struct GcNode {
  uint64_t v;
};

// A pooled GC object is reachable from the pool's storage (a root): it stays
// alive over cycles while pooled, and once dropped the collector frees it.
BOOST_AUTO_TEST_CASE(gc_objects_stay_alive_while_pooled_and_are_freed_after) {
  pacer_off off;
  gort::Pool<GcNode> p([] { return gort::gc::make_noscan<GcNode>(); }, gort::PoolKind::gc);
  gort_gc_weak* w[3];
  on_thread([&] {
    for (auto& wi : w) {
      GcNode* n = p.get();
      n->v = 42;
      wi = gort_gc_weak_new(n);
    }
    // Put in the order that fills the ring, not only the private slot.
    for (auto& wi : w) p.put(static_cast<GcNode*>(gort_gc_weak_get(wi)));
  });
  auto alive = [&](gort_gc_weak* x) {
    bool a = false;
    on_thread([&] { a = gort_gc_weak_get(x) != nullptr; });
    return a;
  };
  collect();  // primary -> victim; still rooted by the pool
  for (auto* wi : w) BOOST_TEST(alive(wi));
  on_thread([&] {
    // Still usable, with what was written before the collection.
    GcNode* n = p.get();
    BOOST_REQUIRE(n);
    BOOST_TEST(n->v == 42u);
    p.put(n);
  });
  collect(3);  // dropped at the second, freed by a later one
  for (auto* wi : w) {
    BOOST_TEST(!alive(wi));
    gort_gc_weak_free(wi);
  }
}

BOOST_AUTO_TEST_CASE(c_api) {
  errno = 0;
  BOOST_TEST(gort_pool_new(nullptr, nullptr, nullptr, 0x100) == nullptr);
  BOOST_TEST(errno == EINVAL);
  static int made, dropped;
  made = dropped = 0;
  gort_pool* p = gort_pool_new(
      [](void* arg) -> void* {
        made++;
        return malloc(*static_cast<int*>(arg));
      },
      [](void* obj, void*) {
        dropped++;
        free(obj);
      },
      new int(64), 0);
  BOOST_REQUIRE(p);
  void* a = gort_pool_get(p);
  BOOST_REQUIRE(a);
  gort_pool_put(p, nullptr);  // ignored
  gort_pool_put(p, a);
  BOOST_TEST(gort_pool_get(p) == a);
  gort_pool_put(p, a);
  gort_pool_free(p);
  BOOST_TEST(made == 1);
  BOOST_TEST(dropped == 1);
}

// Many tasks (on GORT_MAXPROCS Ps) and more plain threads than cores taking
// and giving back objects, with collections (the victim rotation) running
// beside them: no object is ever handed to two users at once, none is
// dropped twice, none is lost.
BOOST_AUTO_TEST_CASE(stress_tasks_threads_and_cycles) {
  counters_reset r;
  std::atomic<int> misuse{0};
  {
    gort::Pool<Obj> p([] { return new Obj; });
    auto work = [&](int iters, bool task) {
      for (int i = 0; i < iters; i++) {
        Obj* held[3];
        int n = 1 + i % 3;
        for (int k = 0; k < n; k++) {
          held[k] = p.get();
          if (held[k]->magic != kLive || held[k]->in_use.exchange(1) != 0) misuse++;
          held[k]->payload[0]++;
        }
        if (task && i % 64 == 0) gort::yield();
        if (!task && i % 64 == 0) std::this_thread::yield();
        for (int k = 0; k < n; k++) {
          held[k]->in_use.store(0);
          p.put(held[k]);
        }
      }
    };
    std::atomic<bool> stop{false};
    std::thread cycler([&] {
      while (!stop.load()) {
        gort_gc_collect();
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
    });
    std::vector<std::thread> threads;
    for (int t = 0; t < 6; t++) threads.emplace_back([&] { work(20000, false); });
    gort::run([&] {
      gort::WaitGroup wg;
      for (int t = 0; t < 16; t++) {
        wg.add(1);
        gort::go([&] {
          work(5000, true);
          wg.done();
        });
      }
      wg.wait();
    });
    for (auto& t : threads) t.join();
    stop = true;
    cycler.join();
  }
  BOOST_TEST(misuse == 0);
  BOOST_TEST(g_made > 0);
  BOOST_TEST(g_dropped == g_made);  // every object dropped exactly once
}

BOOST_AUTO_TEST_SUITE_END()
