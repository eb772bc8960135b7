// livechurn on gort's collector: a live set of 1 KiB objects (a table of
// them, registered as a root range) under churn. Each operation replaces a
// random entry with a fresh object whose first pointer links to another
// entry; the program times every operation (the worst latency a mutator
// sees while the collector runs) and reads the collector's own
// stop-the-world pauses for the cycles of the churn. Objects are typed: two
// pointer words, then the id and a payload (as in the Go peer, where the
// compiler knows the layout). Peers: bench/peers/go/livechurn.go,
// bench/peers/boehm/livechurn.c.
#include <gort/gc.h>
#include <string.h>

#include <vector>

#include "gc_common.h"

namespace {

struct obj {
  obj* next;
  obj* other;
  uint64_t id;
  unsigned char payload[1008 - 24];
};
const uint64_t kMap[1] = {0b11};
const gort_gc_type kObj = {"livechurn-obj", sizeof(obj), kMap, nullptr};

struct xorshift {
  uint64_t s = 88172645463325252ull;
  uint64_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
};

obj* make(uint64_t id) {
  obj* o = static_cast<obj*>(gort_gc_alloc(sizeof(obj), &kObj));
  if (!o) gcb_fail("out of memory");
  o->id = id;
  return o;
}

gcb_hist g_hist;

}  // namespace

int main() {
  const size_t n = static_cast<size_t>(gcb_live_bytes() / 1024);
  const size_t ops = 4 * n;
  obj** table = static_cast<obj**>(calloc(n, sizeof(obj*)));
  gort_gc_add_roots(table, n * sizeof(obj*));
  xorshift r;
  for (size_t i = 0; i < n; i++) gort_gc_write(reinterpret_cast<void**>(&table[i]), make(i));
  gort_gc_collect();
  gort_gc_stats_t before, after;
  gort_gc_stats(&before);
  int64_t t0 = gcb_now_ns();
  for (size_t i = 0; i < ops; i++) {
    int64_t s = gcb_now_ns();
    size_t k = r.next() % n;
    obj* o = make(n + i);
    gort_gc_write(reinterpret_cast<void**>(&o->next), table[r.next() % n]);
    o->payload[0] = static_cast<unsigned char>(i);
    gort_gc_write(reinterpret_cast<void**>(&table[k]), o);
    gcb_hist_add(&g_hist, gcb_now_ns() - s);
  }
  int64_t elapsed = gcb_now_ns() - t0;
  gort_gc_stats(&after);
  for (size_t i = 0; i < n; i++)
    if (!table[i] || (table[i]->id != i && table[i]->id < n)) gcb_fail("table entry corrupt");
  size_t np = static_cast<size_t>(after.npauses - before.npauses);
  std::vector<uint64_t> pauses(np < 1024 ? np : 1024);
  pauses.resize(gort_gc_pauses(pauses.data(), pauses.size()));
  gcb_result("pause_max_us", gcb_quantile(pauses.data(), pauses.size(), 1.0) / 1e3, "us", "lower");
  gcb_result("pause_p99_us", gcb_quantile(pauses.data(), pauses.size(), 0.99) / 1e3, "us", "lower");
  gcb_result("op_max_us", static_cast<double>(g_hist.max) / 1e3, "us", "lower");
  gcb_result("op_p999_us", gcb_hist_quantile(&g_hist, 0.999) / 1e3, "us", "lower");
  gcb_result("time_ms", elapsed / 1e6, "ms", "lower");
  gcb_result("cycles", static_cast<double>(after.cycles - before.cycles), "n", "lower");
  return 0;
}
