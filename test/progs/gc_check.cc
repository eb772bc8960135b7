// The checking workload (docs/gc.md, "Debugging the collector"): tasks and
// threads move GC objects through every place the runtime is responsible
// for - root ranges, heap fields behind the barrier, buffered and unbuffered
// channels, select, timer payloads, task closures, a local below the main
// task - and verify every object they can still reach. Run it with
// GORT_DEBUG=gcpoison=1,gcstress=N: a freed object then reads as poison,
// and the first lost object is reported by address and id, not found later
// as a fluke. Prints "gc_check: ok, N objects verified" and exits 0, or
// names the first corrupt object and exits 1.
//   gc_check            the workload
//   gc_check poisoned   frees an object on purpose and shows what it holds
#include <gort/gc.h>
#include <gort/runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

struct cell {
  uint64_t id;
  uint64_t sum;
  cell* edge[2];
};
const uint64_t kMap[1] = {0b1100};
const gort_gc_type kCell = {"check-cell", sizeof(cell), kMap, nullptr};

uint64_t sum_of(uint64_t id) {
  uint64_t x = id * 0x9e3779b97f4a7c15ull;
  return x ^ (x >> 29) ^ 0x5bd1e995;
}

std::atomic<uint64_t> g_ids{1};
std::atomic<uint64_t> g_verified{0};

[[noreturn]] void corrupt(const cell* c, const char* where) {
  fflush(stdout);
  fprintf(stderr,
          "gc_check: corrupt object %p reached from %s: id %llu, sum %#llx (want %#llx)%s\n",
          static_cast<const void*>(c), where, static_cast<unsigned long long>(c->id),
          static_cast<unsigned long long>(c->sum), static_cast<unsigned long long>(sum_of(c->id)),
          c->sum == 0xdeaddeaddeaddeadull ? ": poisoned, it was freed while reachable" : "");
  _exit(1);
}

void check(const cell* c, const char* where) {
  if (!c) return;
  if (c->sum != sum_of(c->id)) corrupt(c, where);
  g_verified.fetch_add(1, std::memory_order_relaxed);
}

cell* fresh() {
  auto* c = static_cast<cell*>(gort_gc_alloc(sizeof(cell), &kCell));
  c->id = g_ids++;
  c->sum = sum_of(c->id);
  return c;
}

cell* load(cell* const* p) {
  return __atomic_load_n(p, __ATOMIC_RELAXED);
}
void store(cell** p, cell* v) {
  gort_gc_write(reinterpret_cast<void**>(p), v);
}

// Every object reachable from c, to depth: checked.
void walk(const cell* c, int depth, const char* where) {
  for (; c && depth-- > 0;) {
    check(c, where);
    walk(load(&c->edge[1]), depth, where);
    c = load(&c->edge[0]);
  }
}

constexpr int kSlots = 512;
cell* g_slots[kSlots];

struct rng {
  uint64_t s;
  explicit rng(uint64_t seed) : s(seed * 2654435761u + 1) {}
  uint64_t below(uint64_t n) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s % n;
  }
};

// Moves and drops edges between root slots and heap fields (the barrier's
// cases), checking what it walks.
void mutate(rng& r, int steps) {
  for (int i = 0; i < steps; i++) {
    cell** slot = &g_slots[r.below(kSlots)];
    cell* at = load(slot);
    if (!at) {
      store(slot, fresh());
      continue;
    }
    walk(at, 3, "a root slot");
    switch (r.below(3)) {
      case 0: {
        cell* n = fresh();
        store(&n->edge[0], load(&at->edge[1]));
        store(&at->edge[1], n);
        break;
      }
      case 1: {
        int k = static_cast<int>(r.below(2));
        cell* moved = load(&at->edge[k]);
        store(&at->edge[k], nullptr);
        store(&g_slots[r.below(kSlots)], moved);
        break;
      }
      default:
        store(&at->edge[r.below(2)], nullptr);
    }
  }
}

// Values in flight: a sender and a receiver that keeps the last few.
void pipe_through(gort::Chan<cell*>& ch, int n, bool use_select) {
  gort::WaitGroup wg;
  gort::Chan<int> never;
  wg.go([&] {
    for (int i = 0; i < n; i++) {
      cell* c = fresh();
      if (use_select)
        gort::select(gort::on_send(ch, c), gort::on_recv(never));
      else
        ch.send(c);
    }
    ch.close();
  });
  cell* keep[4] = {};
  for (int i = 0;; i++) {
    cell* c = nullptr;
    if (!ch.recv(c)) break;
    keep[i % 4] = c;
    for (cell* k : keep) check(k, "a channel");
  }
  wg.wait();
}

__attribute__((noinline)) int workload() {
  cell* volatile below = fresh();  // only this frame, under the main task, holds it
  gort_gc_add_roots(g_slots, sizeof g_slots);
  gort::run(
      [] {
        gort::WaitGroup wg;
        for (int t = 0; t < 4; t++)
          wg.go([t] {
            rng r(static_cast<uint64_t>(t) + 1);
            for (int round = 0; round < 20; round++) {
              mutate(r, 500);
              gort::yield();
            }
          });
        for (int t = 0; t < 3; t++)
          wg.go([t] {
            gort::Chan<cell*> ch(t == 0 ? 1 : 0);
            pipe_through(ch, 3000, t == 2);
          });
        // Timer payloads: callbacks that hold fresh objects until they fire.
        std::vector<std::unique_ptr<gort::AfterFunc>> timers;
        gort::WaitGroup fired;
        fired.add(64);
        for (int i = 0; i < 64; i++) {
          cell* c = fresh();
          uint64_t id = c->id;
          timers.push_back(std::make_unique<gort::AfterFunc>(20ms + i * 200us, [c, id, &fired] {
            if (c->id != id) corrupt(c, "a timer payload (another object took its place)");
            check(c, "a timer payload");
            fired.done();
          }));
        }
        // Cycles while the timers wait, with garbage that reuses freed memory.
        std::thread collector([] {
          for (int i = 0; i < 3; i++) {
            gort_gc_collect();
            for (int k = 0; k < 20000; k++)
              memset(gort_gc_alloc(sizeof(cell), &kCell), 0xee, sizeof(cell));
          }
        });
        // An OS thread mutating beside the tasks.
        std::thread os([] {
          rng r(99);
          for (int round = 0; round < 10; round++) mutate(r, 500);
          gort_gc_unregister_thread();
        });
        wg.wait();
        fired.wait();
        os.join();
        collector.join();
      },
      gort::RunOptions{2, 0});
  check(below, "a local below the main task");
  for (cell* c : g_slots) walk(c, 1 << 20, "the final walk");
  printf("gc_check: ok, %llu objects verified\n",
         static_cast<unsigned long long>(g_verified.load()));
  return 0;
}

__attribute__((noinline)) uintptr_t hidden_garbage(uintptr_t* keep_alive) {
  // Two objects of one span: one stays, so the span is not given back.
  cell* a = fresh();
  cell* b = fresh();
  *keep_alive = reinterpret_cast<uintptr_t>(a) ^ 1;
  return reinterpret_cast<uintptr_t>(b) ^ 1;
}

int poisoned() {
  static void* keep;
  gort_gc_add_roots(&keep, sizeof keep);
  uintptr_t kept;
  uintptr_t b;
  std::thread([&] {
    b = hidden_garbage(&kept);
    gort_gc_write(&keep, reinterpret_cast<void*>(kept ^ 1));
  }).join();
  gort_gc_collect();
  gort_gc_collect();
  const cell* c = reinterpret_cast<const cell*>(b ^ 1);
  printf("freed object holds %#llx %#llx\n", static_cast<unsigned long long>(c->id),
         static_cast<unsigned long long>(c->sum));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && !strcmp(argv[1], "poisoned")) return poisoned();
  return workload();
}
