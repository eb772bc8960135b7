// Escape-aware scopes (gort/scope.h, pool/scope.cc).
//
// What is asserted: an object that did not escape is recycled when its scope
// ends (its memory comes back to the next allocation, zeroed); an object that
// escaped through each path the barrier sees (a GC object's Member, a root
// range, a handle made or set, a global written with gort_gc_write) or
// explicitly is never recycled and keeps its contents through collections;
// what an escaped object points to escapes with it; stores inside a scope's
// own objects are not escapes, stores from an inner scope's object into an
// outer one's are; scopes nest, follow their task across Ms and blocking
// calls, and hold under many tasks and threads with collections beside them.
// GORT_DEBUG=poolcheck is tested through test/progs/gc_scopecheck.cc, which
// must die naming the planted site.
#include <gort/gc.h>
#include <gort/runtime.h>
#include <gort/scope.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <boost/test/unit_test.hpp>
#include <thread>
#include <vector>

#include "test/alloc/helpers.h"

namespace {

struct Node {
  uint64_t magic;
  gort::gc::Member<Node> next;
  uint64_t payload[4];
};
constexpr uint64_t kMagic = 0x5c09e0b1ec7ull;

Node* node(uint64_t tag) {
  Node* n = gort::scope_new<Node>();
  n->magic = kMagic;
  n->payload[0] = tag;
  return n;
}

// The OS thread (M) running the caller. Not pthread_self: it is declared
// const, so the compiler may reuse its value across a task switch.
long os_thread() {
  return syscall(SYS_gettid);
}

void on_thread(const std::function<void()>& fn) {
  std::thread t(fn);
  t.join();
}

struct pacer_off {
  int old = gort_gc_set_percent(-1);
  ~pacer_off() { gort_gc_set_percent(old); }
};

void* g_global[4];  // a root range (escape through gort_gc_write into it)
struct global_roots {
  global_roots() { gort_gc_add_roots(g_global, sizeof(g_global)); }
};
global_roots g_global_roots;

// The address the next scope allocation of a Node gets, in a fresh scope on
// this thread: where recycled memory goes.
Node* next_slot() {
  gort::Scope s;
  return gort::scope_new<Node>();
}

}  // namespace

BOOST_AUTO_TEST_SUITE(scope)

BOOST_AUTO_TEST_CASE(objects_that_do_not_escape_are_recycled_zeroed) {
  on_thread([] {
    BOOST_TEST(gort_scope_depth() == 0);
    Node* a;
    Node* b;
    {
      gort::Scope s;
      BOOST_TEST(gort_scope_depth() == 1);
      a = node(1);
      b = node(2);
      b->next = a;  // a store inside the scope's own objects
      BOOST_TEST(gort_scope_owns(a));
      BOOST_TEST(gort_scope_owns(b));
      BOOST_TEST(reinterpret_cast<uintptr_t>(a) % 16 == 0);
      BOOST_TEST(b > a);  // bump allocation
    }
    BOOST_TEST(gort_scope_depth() == 0);
    gort::Scope s;
    Node* c = gort::scope_new<Node>();
    BOOST_TEST(c == a);  // the same memory, at once
    BOOST_TEST(c->magic == 0u);
    BOOST_TEST(c->payload[0] == 0u);
    BOOST_TEST(c->next.get() == nullptr);
  });
}

BOOST_AUTO_TEST_CASE(outside_a_scope_it_is_an_ordinary_gc_object) {
  on_thread([] {
    void* p = gort_scope_alloc(48);
    BOOST_REQUIRE(p);
    BOOST_TEST(gort_gc_base(p) == p);
    BOOST_TEST(!gort_scope_owns(p));
  });
}

// Each path the barrier sees, and the explicit one: the object survives its
// scope and two collections with its contents, and its memory is not reused.
BOOST_AUTO_TEST_CASE(escape_through_every_path) {
  pacer_off off;
  enum { member, root, handle_new, handle_set, persistent, global_write, explicit_, n_paths };
  for (int path = 0; path < n_paths; path++) {
    on_thread([path] {
      Node* holder = gort::gc::make<Node>();  // an ordinary GC object
      gort::gc::Persistent<Node> keep_holder(holder);
      gort_gc_handle* h = nullptr;
      gort_gc_handle* h2 = gort_gc_handle_new(nullptr);
      gort::gc::Persistent<Node> pers;
      Node* x;
      {
        gort::Scope s;
        x = node(100 + path);
        Node* child = node(200 + path);
        x->next = child;  // inside the scope: no escape yet
        BOOST_TEST(gort_scope_owns(x));
        switch (path) {
          case member:
            holder->next = x;
            break;
          case root:
            gort_gc_write(&g_global[0], x);
            break;
          case handle_new:
            h = gort_gc_handle_new(x);
            break;
          case handle_set:
            gort_gc_handle_set(h2, x);
            break;
          case persistent:
            pers = x;
            break;
          case global_write: {
            static void* plain_global;  // not a root: only the barrier sees it
            gort_gc_write(&plain_global, x);
            BOOST_TEST(!gort_scope_owns(x));
            pers = x;  // (and something the collector sees keeps it alive)
            break;
          }
          case explicit_:
            gort::escape(x);
            break;
        }
        BOOST_TEST(!gort_scope_owns(x), "path " << path);
        BOOST_TEST(!gort_scope_owns(child), "path " << path << ": what it points to escapes too");
      }
      BOOST_TEST(next_slot() != x);
      gort_gc_unregister_thread();
      gort_gc_collect();
      gort_gc_collect();
      BOOST_TEST(x->magic == kMagic);
      BOOST_TEST(x->payload[0] == uint64_t(100 + path));
      BOOST_REQUIRE(x->next.get());
      BOOST_TEST(x->next->magic == kMagic);
      BOOST_TEST(x->next->payload[0] == uint64_t(200 + path));
      if (h) gort_gc_handle_free(h);
      gort_gc_handle_free(h2);
      gort_gc_write(&g_global[0], nullptr);
    });
  }
}

BOOST_AUTO_TEST_CASE(an_escaped_object_is_freed_by_the_collector_once_unreachable) {
  pacer_off off;
  gort_gc_weak* w = nullptr;
  on_thread([&] {
    gort::Scope s;
    Node* x = node(1);
    gort_gc_write(&g_global[1], x);
    w = gort_gc_weak_new(gort_gc_base(x));  // the chunk that holds it
  });
  // Read the weak handle on a thread that then exits: the strong pointer it
  // returns must not linger in this thread's frames, where the conservative
  // stack scan would keep the chunk alive (it did in the UBSan build).
  bool alive = false;
  on_thread([&] {
    gort_gc_collect();
    alive = gort_gc_weak_get(w) != nullptr;
  });
  BOOST_TEST(alive);  // still reachable from the root
  gort_gc_write(&g_global[1], nullptr);
  on_thread([] {
    gort_gc_collect();
    gort_gc_collect();
  });
  BOOST_TEST(gort_gc_weak_get(w) == nullptr);
  gort_gc_weak_free(w);
}

BOOST_AUTO_TEST_CASE(nested_scopes_recycle_inner_objects_only) {
  on_thread([] {
    gort::Scope outer;
    Node* o = node(1);
    Node* inner_first;
    {
      gort::Scope inner;
      BOOST_TEST(gort_scope_depth() == 2);
      inner_first = node(2);
      Node* i2 = node(3);
      i2->next = o;  // inner -> outer: the outer one outlives it, no escape
      BOOST_TEST(gort_scope_owns(o));
      Node* i3 = node(4);
      o->next = i3;  // outer -> inner: i3 would dangle, so it escapes
      BOOST_TEST(!gort_scope_owns(i3));
      BOOST_TEST(gort_scope_owns(i2) == gort_scope_owns(inner_first));
    }
    BOOST_TEST(gort_scope_depth() == 1);
    BOOST_TEST(o->magic == kMagic);
    BOOST_TEST(o->next->magic == kMagic);  // the escaped inner object kept
    BOOST_TEST(o->next->payload[0] == 4u);
    {
      gort::Scope again;
      Node* r = node(5);
      BOOST_TEST(r != o);
    }
    BOOST_TEST(o->payload[0] == 1u);
  });
}

BOOST_AUTO_TEST_CASE(inner_objects_are_reused_by_the_next_inner_scope) {
  on_thread([] {
    gort::Scope outer;
    node(1);
    Node* first;
    {
      gort::Scope a;
      first = node(2);
      node(3);
    }
    gort::Scope b;
    BOOST_TEST(node(4) == first);
  });
}

BOOST_AUTO_TEST_CASE(deep_nesting_and_large_objects) {
  on_thread([] {
    std::vector<Node*> kept;
    std::function<void(int)> rec = [&](int d) {
      gort::Scope s;
      BOOST_TEST(gort_scope_depth() == d);
      Node* n = node(d);
      void* big = gort_scope_alloc(200000);  // bigger than a chunk
      BOOST_REQUIRE(big);
      memset(big, 0x5a, 200000);
      kept.push_back(n);
      if (d < 40) rec(d + 1);
      BOOST_TEST(n->payload[0] == uint64_t(d));
      BOOST_TEST(static_cast<unsigned char*>(big)[199999] == 0x5a);
    };
    rec(1);
    BOOST_TEST(gort_scope_depth() == 0);
  });
}

// A scope opened by a task holds across sleeps (the task parks and resumes on
// whichever M runs it) and blocking calls; every task keeps its own stack.
BOOST_AUTO_TEST_CASE(scopes_follow_tasks_across_migration_and_blocking) {
  std::atomic<int> bad{0}, migrated{0};
  gort::run([&] {
    gort::WaitGroup wg;
    for (int t = 0; t < 32; t++) {
      wg.add(1);
      gort::go([&, t] {
        long m0 = os_thread();
        gort::Scope s;
        std::vector<Node*> mine;
        for (int i = 0; i < 50; i++) {
          mine.push_back(node(t * 1000 + i));
          if (i % 10 == 0) gort::sleep_for(std::chrono::microseconds(200));
          if (i % 17 == 0) gort::blocking([] { usleep(100); });
          if (i % 7 == 0) gort::yield();
        }
        {
          gort::Scope inner;
          node(1);
          gort::sleep_for(std::chrono::microseconds(100));
          if (gort_scope_depth() != 2) bad++;
        }
        if (m0 != os_thread()) migrated++;
        for (int i = 0; i < 50; i++)
          if (mine[i]->magic != kMagic || mine[i]->payload[0] != uint64_t(t * 1000 + i)) bad++;
        if (gort_scope_depth() != 1) bad++;
        wg.done();
      });
    }
    wg.wait();
  });
  BOOST_TEST(bad == 0);
  BOOST_TEST_MESSAGE("tasks that ended their scope on another M: " << migrated.load());
}

// A task parks inside a scope and is woken by a task running on another M,
// which makes it runnable on that M's P: it must find its scope there.
BOOST_AUTO_TEST_CASE(scope_survives_a_forced_migration) {
  int moves = 0, bad = 0;
  gort::run([&] {
    if (gort::maxprocs() < 2) return;  // one P: nothing to migrate to
    for (int round = 0; round < 20 && moves == 0; round++) {
      gort::Chan<int> ch;
      std::atomic<long> where{os_thread()};
      std::atomic<bool> ready{false}, sent{false};
      gort::WaitGroup wg;
      wg.add(1);
      gort::go([&] {
        gort::Scope s;
        Node* a = node(7);
        where = os_thread();
        ready = true;
        ch.recv();
        Node* b = node(8);
        if (where.load() != os_thread()) moves++;
        if (a->magic != kMagic || a->payload[0] != 7 || b <= a || gort_scope_depth() != 1 ||
            !gort_scope_owns(a))
          bad++;
        wg.done();
      });
      // Busy tasks keep the parked task's old M from stealing it back.
      std::atomic<bool> done{false};
      gort::WaitGroup hogs;
      for (int k = 0; k < 4; k++) {
        hogs.add(1);
        gort::go([&] {
          while (!done.load()) gort::yield();
          hogs.done();
        });
      }
      // Senders send from another M than the one the scoped task parked on.
      // They wait with a timer, not a yield: a timer's wake-up makes an idle
      // P's M look for work (a yield does not), so they reach the other M
      // even when every task started on one P. After 2 s a round sends from
      // wherever it is (no move that round) rather than wait for good.
      auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(2);
      for (int k = 0; k < 4; k++) {
        wg.add(1);
        gort::go([&] {
          while (!sent.load()) {
            bool elsewhere = where.load() != os_thread();
            if (ready.load() && (elsewhere || std::chrono::steady_clock::now() > give_up) &&
                !sent.exchange(true))
              ch.send(1);
            else
              gort::sleep_for(std::chrono::microseconds(50));
          }
          wg.done();
        });
      }
      wg.wait();
      done = true;
      hogs.wait();
    }
  });
  BOOST_TEST(bad == 0);
  if (gort::maxprocs() >= 2) BOOST_TEST(moves > 0);
}

// Many tasks and more threads than cores, collections beside them: each
// builds a list in a scope, lets some of it escape into a shared GC array and
// checks its own objects; at the end every escaped object is intact.
BOOST_AUTO_TEST_CASE(stress_tasks_threads_and_cycles) {
  constexpr int kSlots = 512;
  Node* shared = static_cast<Node*>(gort_gc_alloc(sizeof(Node) * kSlots, nullptr));
  gort_gc_handle* hs = gort_gc_handle_new(shared);
  std::atomic<int> bad{0};
  std::atomic<uint64_t> escaped{0};
  auto work = [&](int id, int iters, bool task) {
    for (int i = 0; i < iters; i++) {
      gort::Scope s;
      Node* head = nullptr;
      int n = 5 + i % 20;
      for (int k = 0; k < n; k++) {
        Node* x = node((uint64_t(id) << 32) | uint64_t(i * 64 + k));
        x->next = head;
        head = x;
      }
      void* buf = gort_scope_alloc(4096 + (i % 4) * 2048);
      memset(buf, id, 64);
      if (i % 13 == 0) {  // escape the list through a GC object
        shared[(id * 31 + i) % kSlots].next = head;
        escaped++;
      }
      if (task && i % 16 == 0) gort::yield();
      int k = n - 1;
      for (Node* x = head; x; x = x->next, k--)
        if (x->magic != kMagic || x->payload[0] != ((uint64_t(id) << 32) | uint64_t(i * 64 + k)))
          bad++;
      if (static_cast<unsigned char*>(buf)[63] != static_cast<unsigned char>(id)) bad++;
    }
  };
  std::atomic<bool> stop{false};
  std::thread cycler([&] {
    while (!stop.load()) {
      gort_gc_collect();
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; t++) threads.emplace_back([&, t] { work(t, 3000, false); });
  gort::run([&] {
    gort::WaitGroup wg;
    for (int t = 0; t < 24; t++) {
      wg.add(1);
      gort::go([&, t] {
        work(100 + t, 600, true);
        wg.done();
      });
    }
    wg.wait();
  });
  for (auto& t : threads) t.join();
  stop = true;
  cycler.join();
  on_thread([] { gort_gc_collect(); });
  int lists = 0;
  for (int i = 0; i < kSlots; i++) {
    Node* x = shared[i].next;
    if (!x) continue;
    lists++;
    uint64_t id = x->payload[0] >> 32;
    for (; x; x = x->next)
      if (x->magic != kMagic || (x->payload[0] >> 32) != id) bad++;
  }
  BOOST_TEST(bad == 0);
  BOOST_TEST(lists > 0);
  BOOST_TEST(escaped > 0u);
  gort_gc_handle_free(hs);
}

BOOST_AUTO_TEST_CASE(statistics_per_site) {
  on_thread([] {
    int was = gort_escape_stats_enable(1);
    gort_escape_stats_reset();
    for (int i = 0; i < 10; i++) {
      gort::Scope s;
      void* a = GORT_SCOPE_ALLOC(32);  // recycled
      Node* e = GORT_SCOPE_NEW(Node);  // escapes every other time
      (void)a;
      if (i % 2 == 0) gort_gc_write(&g_global[2], e);
    }
    gort_gc_write(&g_global[2], nullptr);
    gort_escape_site sites[64];
    size_t n = gort_escape_stats(sites, 64);
    BOOST_REQUIRE(n >= 2u);
    const gort_escape_site* a = nullptr;
    const gort_escape_site* e = nullptr;
    for (size_t i = 0; i < n && i < 64; i++) {
      if (sites[i].file && strstr(sites[i].file, "scope_test.cc")) {
        if (sites[i].bytes / (sites[i].allocs ? sites[i].allocs : 1) == 32) a = &sites[i];
        if (sites[i].bytes / (sites[i].allocs ? sites[i].allocs : 1) == sizeof(Node)) e = &sites[i];
      }
    }
    BOOST_REQUIRE(a);
    BOOST_REQUIRE(e);
    BOOST_TEST(a->allocs == 10u);
    BOOST_TEST(e->allocs == 10u);
    BOOST_TEST(e->escaped == 5u);
    BOOST_TEST(e->recycled == 5u);
    // a shares a chunk with e: when e escapes, a is retained with it
    BOOST_TEST(a->recycled + a->retained == 10u);
    BOOST_TEST(a->retained == 5u);
    BOOST_TEST(a->escaped == 0u);
    BOOST_TEST(e->bytes_escaped == 5 * sizeof(Node));
    gort_escape_stats_enable(was);
  });
}

BOOST_AUTO_TEST_CASE(poolcheck_catches_planted_violations) {
  auto prog = gort_test::test_prog("gc_scopecheck");
  // The planted allocation is line 43 of gc_scopecheck.cc.
  const std::string site = "gc_scopecheck.cc:43";
  auto ok = gort_test::run({prog, "ok"}, {"GORT_DEBUG=poolcheck=1"}, "", 60);
  BOOST_TEST(ok.status == 0, ok.err);
  BOOST_TEST(ok.out.find("scopecheck: ok") != std::string::npos);
  for (const char* mode : {"root", "heap", "handle"}) {
    auto r = gort_test::run({prog, mode}, {"GORT_DEBUG=poolcheck=1"}, "", 60);
    BOOST_TEST(r.status != 0, mode);
    BOOST_TEST(r.err.find("poolcheck") != std::string::npos, mode << ": " << r.err);
    BOOST_TEST(r.err.find(site) != std::string::npos, mode << ": " << r.err);
    // Without the debug mode the same program does not notice.
    auto quiet = gort_test::run({prog, mode}, {}, "", 60);
    BOOST_TEST(quiet.status == 0, mode << ": " << quiet.err);
  }
  auto rd = gort_test::run({prog, "read"}, {"GORT_DEBUG=poolcheck=1"}, "", 60);
  BOOST_TEST(rd.out.find("word fdfdfdfdfdfdfdfd") != std::string::npos, rd.out);
}

BOOST_AUTO_TEST_CASE(bad_debug_value_is_named) {
  auto r = gort_test::run({gort_test::test_prog("gc_scopecheck"), "ok"},
                          {"GORT_DEBUG=poolcheck=yes"}, "", 60);
  BOOST_TEST(r.err.find("poolcheck=yes") != std::string::npos, r.err);
}

BOOST_AUTO_TEST_CASE(end_without_begin_is_fatal) {
  pid_t pid = fork();
  if (pid == 0) {
    signal(SIGABRT, SIG_DFL);  // not Boost's handler
    int fd = open("/dev/null", O_WRONLY);
    dup2(fd, 2);
    gort_scope_end();
    _exit(0);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  BOOST_TEST(WIFSIGNALED(st));
}

BOOST_AUTO_TEST_SUITE_END()
