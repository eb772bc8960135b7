// Many mutators against the concurrent collector: OS threads (more than
// cores, to force interleaving) and tasks mutate one shared random graph
// through the write barrier while cycles run back to back. Each mutation
// reads an edge, deletes it and stores it elsewhere: exactly the moves that
// lose objects without the deletion and insertion barriers. Every visited
// node's checksum is checked, and the whole graph at the end.
#include <boost/test/unit_test.hpp>
#include <unordered_set>
#include <vector>

#include "alloc/options.h"
#include "common.h"
#include "gort/runtime.h"

using namespace gc_test;

namespace {

struct gnode {
  uint64_t id;
  uint64_t sum;
  gnode* edge[4];
};
const uint64_t kMap[1] = {0b111100};
const gort_gc_type kType = {"graph-node", sizeof(gnode), kMap, nullptr};

uint64_t sum_of(uint64_t id) {
  return checksum(&id, 8) | 1;
}

constexpr int kSlots = 256;
gnode* g_slots[kSlots];  // a root range, shared by every mutator
std::atomic<uint64_t> g_next_id{1};
std::atomic<uint64_t> g_bad{0};

gnode* load(gnode* const* p) {
  return __atomic_load_n(p, __ATOMIC_RELAXED);
}
void store(gnode** p, gnode* v) {
  gort_gc_write(reinterpret_cast<void**>(p), v);
}

bool check(const gnode* n) {
  if (n->sum != sum_of(n->id)) {
    g_bad++;
    return false;
  }
  return true;
}

gnode* fresh(rng& r, bool typed) {
  auto* n = static_cast<gnode*>(typed ? gort_gc_alloc(sizeof(gnode), &kType)
                                      : gort_gc_alloc(sizeof(gnode), nullptr));
  n->id = g_next_id++;
  n->sum = sum_of(n->id);
  (void)r;
  return n;
}

// One mutation step: walk, then allocate or move an edge.
void step(rng& r) {
  gnode** slot = &g_slots[r.below(kSlots)];
  gnode* at = load(slot);
  if (!at) {
    store(slot, fresh(r, r.below(2)));
    return;
  }
  for (int hop = 0; hop < 4; hop++) {
    if (!check(at)) return;
    gnode* next = load(&at->edge[r.below(4)]);
    if (!next) break;
    at = next;
  }
  switch (r.below(4)) {
    case 0: {  // new node under at
      gnode* n = fresh(r, r.below(2));
      store(&n->edge[0], load(&at->edge[1]));
      store(&at->edge[1], n);
      break;
    }
    case 1: {  // move an edge of at into a root slot, deleting it from at
      int k = static_cast<int>(r.below(4));
      gnode* moved = load(&at->edge[k]);
      store(&at->edge[k], nullptr);
      store(&g_slots[r.below(kSlots)], moved);
      break;
    }
    case 2: {  // move a root into at, deleting the root
      gnode** other = &g_slots[r.below(kSlots)];
      gnode* moved = load(other);
      store(other, nullptr);
      store(&at->edge[r.below(4)], moved);
      break;
    }
    default:  // drop a subtree
      store(&at->edge[r.below(4)], nullptr);
      break;
  }
}

size_t verify_all() {
  std::vector<gnode*> stack;
  std::unordered_set<gnode*> seen;
  for (gnode* n : g_slots)
    if (n) stack.push_back(n);
  while (!stack.empty()) {
    gnode* n = stack.back();
    stack.pop_back();
    if (!seen.insert(n).second) continue;
    check(n);
    for (gnode* e : n->edge)
      if (e) stack.push_back(e);
  }
  return seen.size();
}

struct collector_load {
  std::atomic<bool> stop{false};
  std::thread t;
  collector_load() {
    t = std::thread([this] {
      while (!stop.load()) gort_gc_collect();
    });
  }
  ~collector_load() {
    stop = true;
    t.join();
  }
};

}  // namespace

// A holder node the mark reaches last (at the end of a chain of a million
// nodes rooted in g_slots[0]), kept masked (xor kMask) so that no stack or
// register the collector scans holds it; freed objects read as poison
// (gcpoison) while it lives.
struct late_holder {
  static constexpr uintptr_t kMask = 0x5a5a5a5a5a5a5a5au;
  uintptr_t masked;
  bool poison = gort::alloc::g_options.gcpoison;
  explicit late_holder(rng& r) {
    gort_gc_add_roots(g_slots, sizeof g_slots);
    gnode* h = fresh(r, true);
    gnode* chain = h;
    for (int i = 0; i < 1000000; i++) {
      gnode* c = fresh(r, true);
      store(&c->edge[0], chain);
      chain = c;
    }
    store(&g_slots[0], chain);
    masked = reinterpret_cast<uintptr_t>(h) ^ kMask;
    gort::alloc::g_options.gcpoison = true;
  }
  ~late_holder() {
    gort::alloc::g_options.gcpoison = poison;
    for (gnode*& s : g_slots) s = nullptr;
    gort_gc_remove_roots(g_slots);
  }
  gnode* get() const { return reinterpret_cast<gnode*>(masked ^ kMask); }
};

// The first half of gort_gc_write(slot, nullptr) as unoptimised code runs it
// (the old value in the leaf's red zone, in no register), then a pause until
// *release is non-zero; returns the old value for the second half.
asm(R"(
  .text
  .globl gort_test_barrier_pause
  .type gort_test_barrier_pause, @function
gort_test_barrier_pause:
  mov (%rdi), %rax
  mov %rax, -16(%rsp)
  movq $0, (%rdi)
  xor %eax, %eax
1:pause
  cmpl $0, (%rsi)
  je 1b
  mov -16(%rsp), %rax
  ret
  .size gort_test_barrier_pause, .-gort_test_barrier_pause
)");
extern "C" void* gort_test_barrier_pause(void** slot, const std::atomic<int>* release);

// A thread that has not registered yet holds an object only in r15 (a
// callee-saved register, as a loop's cursor would be): unmasks it and
// deletes *slot (a plain store, as the barrier is while no mark runs). If a
// mark was already running then, returns 0 (the deletion needed a barrier).
// Otherwise waits until *marking is set and registers while the collector
// marks (as its first GC allocation or barrier would; called directly, so
// that no frame between here and the registration spills r15), and returns
// the object masked again.
asm(R"(
  .text
  .globl gort_test_join_holding
  .type gort_test_join_holding, @function
gort_test_join_holding:
  push %r15
  push %r14
  sub $8, %rsp
  mov %rdi, %r15
  xor %rsi, %r15
  mov %rsi, %r14
  xor %edi, %edi
  xor %esi, %esi
  movq $0, (%rdx)
  mfence
  xor %eax, %eax
  cmpl $0, (%rcx)
  jne 2f
1:pause
  cmpl $0, (%rcx)
  je 1b
  xor %edx, %edx
  xor %ecx, %ecx
  call gort_gc_register_thread@PLT
  mov %r15, %rax
  xor %r14, %rax
2:xor %r15, %r15
  add $8, %rsp
  pop %r14
  pop %r15
  ret
  .size gort_test_join_holding, .-gort_test_join_holding
)");
extern "C" uintptr_t gort_test_join_holding(uintptr_t masked, uintptr_t mask, void** slot,
                                            const uint32_t* marking);

BOOST_AUTO_TEST_SUITE(concurrent)

BOOST_AUTO_TEST_CASE(os_threads_mutate_while_marking) {
  gort_gc_add_roots(g_slots, sizeof g_slots);
  g_bad = 0;
  uint64_t c0 = stat_cycles();
  {
    collector_load bg;
    std::vector<std::thread> ts;
    for (int i = 0; i < 6; i++)
      ts.emplace_back([i] {
        // Registered before the first step, which may take a node out of
        // the graph before any allocation would register the thread.
        gort_gc_register_thread();
        rng r(1000 + i);
        for (int k = 0; k < 150000; k++) step(r);
      });
    for (auto& t : ts) t.join();
  }
  uint64_t cycles = stat_cycles() - c0;
  size_t n = 0;
  on_thread([&] { n = verify_all(); });
  BOOST_TEST_MESSAGE(cycles << " cycles, " << n << " reachable nodes at the end");
  BOOST_CHECK_GE(cycles, 5u);
  BOOST_CHECK_EQUAL(g_bad.load(), 0u);
  for (gnode*& s : g_slots) s = nullptr;
  gort_gc_remove_roots(g_slots);
}

BOOST_AUTO_TEST_CASE(tasks_mutate_while_marking) {
  gort_gc_add_roots(g_slots, sizeof g_slots);
  g_bad = 0;
  uint64_t c0 = stat_cycles();
  std::atomic<uint64_t> held_bad{0};
  {
    collector_load bg;
    gort::run([&] {
      gort::WaitGroup wg;
      for (int i = 0; i < 64; i++)
        wg.go([i, &held_bad] {
          rng r(5000 + i);
          for (int k = 0; k < 20000; k++) {
            step(r);
            if (k % 64 == 0) {
              // Hold a node only on this task's stack across a park.
              gnode* held = load(&g_slots[r.below(kSlots)]);
              uint64_t id = held ? held->id : 0;
              gort::yield();
              if (held && (held->id != id || held->sum != sum_of(id))) held_bad++;
            }
          }
        });
      wg.wait();
    });
  }
  uint64_t cycles = stat_cycles() - c0;
  size_t n = 0;
  on_thread([&] { n = verify_all(); });
  BOOST_TEST_MESSAGE(cycles << " cycles, " << n << " reachable nodes at the end");
  BOOST_CHECK_GE(cycles, 3u);
  BOOST_CHECK_EQUAL(g_bad.load(), 0u);
  BOOST_CHECK_EQUAL(held_bad.load(), 0u);
  for (gnode*& s : g_slots) s = nullptr;
  gort_gc_remove_roots(g_slots);
}

BOOST_AUTO_TEST_CASE(refill_yield_keeps_every_span) {
  // GOGC=1 keeps the heap past its goal with a cycle asked for, so a task
  // that refills its cache yields (pacer_wait_start) between finding its
  // central empty and installing a fresh span, and the other tasks of its P
  // fill the same slot meanwhile. The fresh span used to overwrite theirs,
  // which then sat on no list: never swept (its bytes stayed allocated) and
  // its mark bits never cleared, so its objects looked black in every later
  // cycle and what was stored in them afterwards was freed while reachable.
  // Each task keeps parents in a ring and gives them fresh children (both
  // 64 bytes, so either reuses the other's freed memory); a parent must
  // still be a parent and its child the one it was given, and once
  // everything is garbage two collections must free it all.
  constexpr uint64_t kParent = 0x70a7e47, kChild = 0xc417d;
  int old = gort_gc_set_percent(1);
  gort_gc_collect();
  gort_gc_stats_t before, after;
  gort_gc_stats(&before);
  std::atomic<uint64_t> bad{0}, next{1};
  gort::run(
      [&] {
        gort::WaitGroup wg;
        for (int t = 0; t < 32; t++)
          wg.go([&] {
            constexpr int kKeep = 4096;
            auto** keep = static_cast<uint64_t**>(gort_gc_alloc(kKeep * sizeof(void*), nullptr));
            for (int i = 0; i < 200000; i++) {
              uint64_t*& p = keep[i % kKeep];
              // p[0]: its child, p[1]: the child's number, p[7]: the tag.
              // A freed object reused by the other kind shows the wrong tag
              // (checked before following the pointer).
              if (p) {
                auto* c = reinterpret_cast<uint64_t*>(p[0]);
                if (p[7] != kParent || c[7] != kChild || c[0] != p[1]) {
                  bad++;
                  p = nullptr;
                }
              }
              if (!p || i % 8 == 0) {
                auto* np = static_cast<uint64_t*>(gort_gc_alloc(64, nullptr));
                np[7] = kParent;
                gort_gc_write(reinterpret_cast<void**>(&p), np);
              }
              auto* c = static_cast<uint64_t*>(gort_gc_alloc(64, nullptr));
              c[0] = next++;
              c[7] = kChild;
              p[1] = c[0];
              gort_gc_write(reinterpret_cast<void**>(&p[0]), c);
            }
            // A stale stack word may keep the array alive (conservative
            // stacks): then it keeps 32 KiB, not 4096 parents and children.
            for (int i = 0; i < kKeep; i++)
              gort_gc_write(reinterpret_cast<void**>(&keep[i]), nullptr);
          });
        wg.wait();
      },
      gort::RunOptions{2, 0});
  gort_gc_collect();
  gort_gc_collect();
  gort_gc_stats(&after);
  gort_gc_set_percent(old);
  BOOST_TEST_MESSAGE("heap " << before.heap_alloc << " -> " << after.heap_alloc << " bytes");
  BOOST_CHECK_EQUAL(bad.load(), 0u);
  // An orphaned span kept 1.2-5.3 MB; stale words may keep a few arrays.
  BOOST_CHECK_LE(after.heap_alloc, before.heap_alloc + (512u << 10));
}

BOOST_AUTO_TEST_CASE(parked_tasks_keep_what_their_stacks_hold) {
  // 2,000 tasks each park on a channel holding a fresh object only on their
  // stacks; cycles run meanwhile; every object is intact when they wake.
  std::atomic<uint64_t> bad{0};
  gort::run([&] {
    gort::Chan<int> gate;
    gort::WaitGroup wg, parked;
    for (int i = 0; i < 2000; i++) {
      parked.add(1);
      wg.go([&, i] {
        auto* p = static_cast<uint64_t*>(gort_gc_alloc_noscan(48));
        for (int k = 0; k < 6; k++) p[k] = static_cast<uint64_t>(i) * 7 + k;
        parked.done();
        gate.recv();
        for (int k = 0; k < 6; k++)
          if (p[k] != static_cast<uint64_t>(i) * 7 + k) bad++;
      });
    }
    parked.wait();
    std::thread([] {
      // Garbage to reuse the memory of anything freed by mistake.
      for (int c = 0; c < 4; c++) {
        gort_gc_collect();
        for (int k = 0; k < 20000; k++) memset(gort_gc_alloc_noscan(48), 0xee, 48);
      }
    }).join();
    for (int i = 0; i < 2000; i++) gate.send(1);
    wg.wait();
  });
  BOOST_CHECK_EQUAL(bad.load(), 0u);
}

namespace {
// A wide graph: an array of n chains of 3 nodes, which markers can share (a
// single long list would not allow it). Node k of chain i has id 3i + k.
gnode** wide_graph(uint64_t n) {
  auto** arr = static_cast<gnode**>(gort_gc_alloc(n * sizeof(gnode*), nullptr));
  for (uint64_t i = 0; i < n; i++) {
    gnode* head = nullptr;
    for (int k = 0; k < 3; k++) {
      auto* nd = static_cast<gnode*>(gort_gc_alloc(sizeof(gnode), &kType));
      nd->id = i * 3 + k;
      nd->sum = sum_of(nd->id);
      store(&nd->edge[0], head);
      head = nd;
    }
    store(&arr[i], head);
  }
  return arr;
}
}  // namespace

BOOST_AUTO_TEST_CASE(marking_runs_as_scheduler_work) {
  // With two Ps and a task blocked in a collection, the other P runs the
  // collector's mark worker over a large graph; the graph stays intact.
  gort_gc_stats_t before, after;
  gort_gc_stats(&before);
  bool intact = false;
  gort::run(
      [&] {
        gort_gc_handle* h = nullptr;
        gort::WaitGroup wg;
        constexpr uint64_t kN = 200000;
        wg.go([&] { h = gort_gc_handle_new(wide_graph(kN)); });
        wg.wait();
        for (int c = 0; c < 3; c++) gort_gc_collect();
        uint64_t n = 0;
        bool ok = true;
        auto** arr = static_cast<gnode**>(gort_gc_handle_get(h));
        for (uint64_t i = 0; i < kN; i++)
          for (gnode* p = arr[i]; p; p = p->edge[0], n++) ok = ok && p->sum == sum_of(p->id);
        intact = ok && n == 3 * kN;
        gort_gc_handle_free(h);
      },
      gort::RunOptions{2, 0});
  gort_gc_stats(&after);
  BOOST_CHECK(intact);
  BOOST_CHECK_GT(after.mark_task_objects, before.mark_task_objects);
  BOOST_TEST_MESSAGE("mark workers scanned " << after.mark_task_objects - before.mark_task_objects
                                             << " objects");
}

BOOST_AUTO_TEST_CASE(a_mark_finishes_when_the_run_ends_under_it) {
  // Under gort::run the mark workers are tasks. A run that ends while a
  // collection marks (before its workers ran, or while they mark) leaves
  // the rest to the collector's thread: the collection completes and the
  // graph is intact. A hang here is the watchdog's.
  constexpr uint64_t kN = 100000;
  gort_gc_handle* h = nullptr;
  on_thread([&] { h = gort_gc_handle_new(wide_graph(kN)); });
  uint64_t c0 = stat_cycles();
  for (int round = 0; round < 8; round++) {
    std::atomic<bool> started{false};
    std::thread collector;
    gort::run(
        [&] {
          collector = std::thread([&] {
            started = true;
            gort_gc_collect();
          });
          while (!started.load()) gort::yield();
          // End the run at different points of the mark.
          gort::sleep_for(std::chrono::microseconds(250 * round));
        },
        gort::RunOptions{round % 2 ? 4 : 2, 0});
    collector.join();
  }
  BOOST_CHECK_GE(stat_cycles() - c0, 8u);
  uint64_t n = 0;
  bool ok = true;
  on_thread([&] {
    auto** arr = static_cast<gnode**>(gort_gc_handle_get(h));
    for (uint64_t i = 0; i < kN; i++)
      for (gnode* p = arr[i]; p; p = p->edge[0], n++) ok = ok && p->sum == sum_of(p->id);
    gort_gc_handle_free(h);
  });
  BOOST_CHECK(ok);
  BOOST_CHECK_EQUAL(n, 3 * kN);
}

BOOST_AUTO_TEST_CASE(buffered_channels_keep_what_they_hold) {
  // Fresh objects wait in a buffered channel, reachable from nowhere else,
  // while collections run and garbage reuses freed memory.
  std::atomic<uint64_t> bad{0}, got{0};
  gort::run([&] {
    gort::Chan<uint64_t*> ch(512);
    gort::WaitGroup wg;
    for (int i = 0; i < 512; i++) {
      auto* p = static_cast<uint64_t*>(gort_gc_alloc_noscan(64));
      for (int k = 0; k < 8; k++) p[k] = static_cast<uint64_t>(i) * 13 + k;
      ch.send(p);
    }
    std::thread([] {
      for (int c = 0; c < 4; c++) {
        gort_gc_collect();
        for (int k = 0; k < 20000; k++) memset(gort_gc_alloc_noscan(64), 0xee, 64);
      }
    }).join();
    wg.go([&] {
      for (int i = 0; i < 512; i++) {
        uint64_t* p = *ch.recv();
        for (int k = 0; k < 8; k++)
          if (p[k] != static_cast<uint64_t>(i) * 13 + k) bad++;
        got++;
      }
    });
    wg.wait();
  });
  BOOST_CHECK_EQUAL(got.load(), 512u);
  BOOST_CHECK_EQUAL(bad.load(), 0u);
}

// A task that makes no runtime call is preempted asynchronously, at any
// instruction of its own code, the inline write barrier (gort/gc.h)
// included. Preempted between the barrier's store and its look at
// gort_gc_marking, the task holds the overwritten pointer only in its
// registers, and while it waits in a run queue no thread holds them: mark
// termination shades stopped threads' registers, not a waiting task's. So
// the collector must shade what a preempted task holds (gc/roots.h,
// shade_preempted_stack). Here a mover does the barrier's two halves with a
// spin between them (a preemption that lasts): its stack is scanned as the
// cycle starts, it then deletes its node from a holder the mark reaches
// last (at the end of a long chain), and spinner tasks keep it waiting in
// the run queue. Freed objects read as poison (gcpoison), so a node freed
// while the mover held it fails its checksum.
BOOST_AUTO_TEST_CASE(preempted_barrier_keeps_what_it_moves) {
  constexpr int kRounds = 8;
  rng r(77);
  const late_holder holder(r);
  std::atomic<int> go{0}, done{0}, release{0};
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> lost{0};
  std::thread driver([&] {
    for (int round = 1; round <= kRounds; round++) {
      while (done.load() != round - 1) std::this_thread::sleep_for(std::chrono::microseconds(50));
      std::this_thread::sleep_for(std::chrono::milliseconds(2));  // the mover is parked
      std::thread cycle([] { gort_gc_collect(); });
      while (!__atomic_load_n(&gort_gc_marking, __ATOMIC_RELAXED)) {
      }
      go.store(round);
      cycle.join();  // mark termination and the sweep happen while the mover waits
      release.store(round);
    }
    stop.store(true);
  });
  gort::run([&] {
    gort::WaitGroup wg;
    for (int i = 0; i < 3; i++)  // keep the mover waiting in the run queue
      wg.go([&] {
        while (!stop.load(std::memory_order_relaxed)) {
        }
      });
    wg.go([&] {
      for (int round = 1; round <= kRounds; round++) {
        // The node, made by a task that ends: on no stack the cycle scans.
        std::atomic<bool> made{false};
        gort::go([&] {
          auto* hp = holder.get();
          store(&hp->edge[0], fresh(r, false));
          made.store(true);
        });
        while (!made.load() || go.load() != round) gort::sleep_for(std::chrono::microseconds(50));
        auto* hp = holder.get();
        gnode* x = load(&hp->edge[0]);
        // gort_gc_write(&hp->edge[0], nullptr), preempted between its halves.
        __atomic_store_n(&hp->edge[0], nullptr, __ATOMIC_RELAXED);
        std::atomic_signal_fence(std::memory_order_seq_cst);
        while (release.load(std::memory_order_relaxed) != round) {
        }
        if (__atomic_load_n(&gort_gc_marking, __ATOMIC_RELAXED))
          gort_gc_write_slow_at(reinterpret_cast<void**>(&hp->edge[0]), x, nullptr);
        store(&hp->edge[1], x);
        if (x->sum != sum_of(x->id)) lost++;
        store(&hp->edge[1], nullptr);
        done.store(round);
      }
    });
    wg.wait();
  });
  driver.join();
  BOOST_TEST_MESSAGE(gort::sched_stats().async_preemptions << " async preemptions");
  BOOST_CHECK_EQUAL(lost.load(), 0u);
}

// The same window on a thread the collector stops, in code built without
// optimisation: there the barrier keeps the overwritten pointer in its
// frame (the red zone of a leaf), not in a register, and mark termination
// must shade the stopped frame as well as the registers
// (shade_stopped_registers). A registered thread deletes a node from a
// holder the mark reaches last and pauses until the cycle is over.
BOOST_AUTO_TEST_CASE(stopped_barrier_frame_keeps_what_it_moves) {
  constexpr int kRounds = 6;
  rng r(78);
  const late_holder holder(r);
  uint64_t lost = 0;
  for (int round = 0; round < kRounds; round++) {
    // The node, made on a thread that ends: on no stack the cycle scans.
    on_thread([&] { store(&holder.get()->edge[0], fresh(r, false)); });
    std::atomic<int> go{0}, release{0};
    std::thread mover([&] {
      if (gort_gc_register_thread() != 0) lost = 1000;  // no Boost.Test off the main thread
      while (!go.load()) std::this_thread::sleep_for(std::chrono::microseconds(20));
      auto* hp = holder.get();
      void* x = gort_test_barrier_pause(reinterpret_cast<void**>(&hp->edge[0]), &release);
      if (__atomic_load_n(&gort_gc_marking, __ATOMIC_RELAXED))
        gort_gc_write_slow_at(reinterpret_cast<void**>(&hp->edge[0]), x, nullptr);
      store(&hp->edge[1], static_cast<gnode*>(x));
      gnode* n = load(&hp->edge[1]);
      if (n->sum != sum_of(n->id)) lost++;
      store(&hp->edge[1], nullptr);
      gort_gc_unregister_thread();
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(2));  // registered, waiting
    std::thread cycle([] { gort_gc_collect(); });
    while (!__atomic_load_n(&gort_gc_marking, __ATOMIC_RELAXED)) {
    }
    go.store(1);
    cycle.join();  // mark termination stops the mover inside its pause
    release.store(1);
    mover.join();
  }
  BOOST_CHECK_EQUAL(lost, 0u);
}

// A thread's first GC allocation registers it, and when that happens while
// the collector marks, its stack is scanned then (it was no root when the
// cycle began). What the thread keeps in callee-saved registers must be
// scanned with it: the scan started at the registering function's frame,
// above which those registers were not yet spilled, and an object the
// thread held only in r15 (unlinked before the mark began) was freed.
BOOST_AUTO_TEST_CASE(a_thread_joining_a_mark_keeps_what_its_registers_hold) {
  constexpr int kRounds = 4;
  rng r(79);
  const late_holder holder(r);
  int valid = 0, lost = 0;
  for (int attempt = 0; attempt < 40 && valid < kRounds; attempt++) {
    // The node, made on a thread that ends: on no stack the cycle scans.
    uintptr_t masked = 0;
    on_thread([&] {
      gnode* x = fresh(r, false);
      store(&holder.get()->edge[0], x);
      masked = reinterpret_cast<uintptr_t>(x) ^ late_holder::kMask;
    });
    // A round counts if exactly one cycle ran from before the deletion to
    // after the check: the one whose mark the joiner joined. (Another one
    // after it would rightly free the node, which the joiner then holds
    // only masked.)
    uint64_t c0 = stat_cycles();
    std::atomic<int> release{0}, state{0};  // 1 joined, 2 joined and the node was freed
    std::thread joiner([&] {
      auto** slot = reinterpret_cast<void**>(&holder.get()->edge[0]);
      uintptr_t m = gort_test_join_holding(masked, late_holder::kMask, slot, &gort_gc_marking);
      if (!m) return;  // deleted during a mark: not this test's case
      while (!release.load()) std::this_thread::sleep_for(std::chrono::microseconds(20));
      auto* x = reinterpret_cast<gnode*>(m ^ late_holder::kMask);
      state.store(x->sum == sum_of(x->id) ? 1 : 2);
      gort_gc_unregister_thread();
    });
    while (load(&holder.get()->edge[0])) std::this_thread::sleep_for(std::chrono::microseconds(20));
    gort_gc_collect();  // the joiner registers during its mark
    release.store(1);
    joiner.join();
    if (state.load() == 0 || stat_cycles() - c0 != 1) continue;
    valid++;
    if (state.load() == 2) lost++;
  }
  BOOST_TEST_MESSAGE(valid << " rounds");
  BOOST_CHECK_GE(valid, 1);
  BOOST_CHECK_EQUAL(lost, 0);
}

// The API's look-ups (gort_gc_base, gort_gc_size; weak references and
// finalizers use the same) answer for live objects while the sweep swaps
// span bitmaps beside them: the sweep cleared the old alloc bitmap in place
// while a reader could still be looking at it, and a live object was "not a
// GC object" (EINVAL from weak_new and set_finalizer).
BOOST_AUTO_TEST_CASE(lookups_see_live_objects_through_sweeps) {
  constexpr size_t kObjs = 1 << 16;
  auto** objs = static_cast<void**>(calloc(kObjs, sizeof(void*)));
  gort_gc_add_roots(objs, kObjs * sizeof(void*));
  for (size_t i = 0; i < kObjs; i++) objs[i] = gort_gc_alloc(48 + 16 * (i % 8), nullptr);
  uint64_t misses = 0, looks = 0;
  uint64_t c0 = stat_cycles();
  {
    collector_load bg;
    std::thread garbage([&] {  // so that sweeps have something to free
      while (stat_cycles() - c0 < 40) {
        for (int k = 0; k < 1024; k++) (void)gort_gc_alloc(64, nullptr);
      }
    });
    while (stat_cycles() - c0 < 40) {
      for (size_t i = 0; i < kObjs; i++, looks++)
        if (gort_gc_base(objs[i]) != objs[i] || gort_gc_size(objs[i]) == 0) misses++;
    }
    garbage.join();
  }
  BOOST_TEST_MESSAGE(looks << " look-ups over " << stat_cycles() - c0 << " cycles");
  BOOST_CHECK_EQUAL(misses, 0u);
  gort_gc_remove_roots(objs);
  free(objs);
}

BOOST_AUTO_TEST_SUITE_END()
