// pool_request: a request-handling workload for issue 13's pooling
// comparison (bench/results/pool-request.md), against
// bench/peers/go/poolrequest.go.
//
// MAXPROCS tasks each handle R requests. A request builds a list of 24-40
// small objects (48 bytes: an id, a next pointer, a payload) and one 4-16 KiB
// buffer, walks and checks them, and is done; one request in 50 keeps one of
// its objects in a shared cache of 256 slots (it outlives the request; the
// evicted one dies). Variants (argv[1]):
//   scoped  gort::Scope around the request, scope_new / gort_scope_alloc; the
//           kept object escapes through the barrier (a Member of the cache)
//   gc      plain GC allocation (gort::gc::make, gort_gc_alloc_noscan)
//   malloc  new/delete and malloc/free (the kept object is deleted on eviction)
//   pool    gort::Pool<Node> and gort::Pool<Buf> (heap pools)
//   micro   not a request: the cost of one scoped allocation (32 per scope,
//           scope begin/end included) against one malloc+free pair
// argv[2] "noescape": no request keeps anything.
// Figures: requests/s (all tasks), GC cycles, peak RSS, p99 request latency.
// Self-check: every list and buffer reads back what the request wrote, and
// every cached object is intact at the end.
#include <gort/gc.h>
#include <gort/pool.h>
#include <gort/scope.h>
#include <string.h>

#include <algorithm>
#include <atomic>
#include <vector>

#include "sched_common.h"

namespace {

struct Node {
  uint64_t id;
  gort::gc::Member<Node> next;
  uint64_t payload[4];
};
struct HeapNode {  // malloc / pool variants: a plain pointer
  uint64_t id;
  HeapNode* next;
  uint64_t payload[4];
};
struct Buf {
  unsigned char b[16384];
};

constexpr int kCache = 256;
constexpr int kKeepEvery = 50;

enum class variant { scoped, gc, malloc_, pool };

long vm_hwm() {
  FILE* f = fopen("/proc/self/status", "r");
  if (!f) return 0;
  char line[256];
  long kb = 0;
  while (fgets(line, sizeof line, f))
    if (!strncmp(line, "VmHWM:", 6)) kb = atol(line + 6);
  fclose(f);
  return kb * 1024;
}

struct shared {
  Node** gcache;  // GC object (scoped, gc): stores through the barrier
  std::atomic<HeapNode*>* hcache;
  gort::Pool<HeapNode>* nodes;
  gort::Pool<Buf>* bufs;
  std::atomic<long> bad{0};
};

inline uint64_t mix(uint64_t x) {
  return x * 0x9E3779B97F4A7C15ull + 1;
}

// One request with GC objects (scoped or plain). Returns a checksum.
template <bool Scoped>
void request_gc(shared& sh, uint64_t id, bool keep) {
  int n = 24 + static_cast<int>(id % 17);
  size_t blen = 4096 + (id * 7919 % 12289);
  Node* head = nullptr;
  for (int k = 0; k < n; k++) {
    Node* x = Scoped ? gort::scope_new<Node>() : gort::gc::make<Node>();
    x->id = id;
    x->payload[0] = mix(id + k);
    x->next = head;
    head = x;
  }
  auto* buf =
      static_cast<unsigned char*>(Scoped ? gort_scope_alloc(blen) : gort_gc_alloc_noscan(blen));
  memset(buf, static_cast<int>(id & 0xff), blen);
  int k = n - 1;
  for (Node* x = head; x; x = x->next, k--)
    if (x->id != id || x->payload[0] != mix(id + k)) sh.bad++;
  if (k != -1 || buf[blen - 1] != static_cast<unsigned char>(id & 0xff)) sh.bad++;
  if (keep) gort_gc_write(reinterpret_cast<void**>(&sh.gcache[id % kCache]), head);
}

void request_heap(shared& sh, uint64_t id, bool keep, bool pooled) {
  int n = 24 + static_cast<int>(id % 17);
  size_t blen = 4096 + (id * 7919 % 12289);
  HeapNode* head = nullptr;
  for (int k = 0; k < n; k++) {
    HeapNode* x = pooled ? sh.nodes->get() : new HeapNode;
    x->id = id;
    x->payload[0] = mix(id + k);
    x->next = head;
    head = x;
  }
  auto* buf = pooled ? sh.bufs->get()->b : static_cast<unsigned char*>(malloc(blen));
  memset(buf, static_cast<int>(id & 0xff), blen);
  int k = n - 1;
  for (HeapNode* x = head; x; x = x->next, k--)
    if (x->id != id || x->payload[0] != mix(id + k)) sh.bad++;
  if (k != -1 || buf[blen - 1] != static_cast<unsigned char>(id & 0xff)) sh.bad++;
  if (pooled)
    sh.bufs->put(reinterpret_cast<Buf*>(buf));
  else
    free(buf);
  HeapNode* kept = nullptr;
  if (keep) {
    kept = head;
    head = head->next;
    kept->next = nullptr;
  }
  while (head) {
    HeapNode* nx = head->next;
    if (pooled)
      sh.nodes->put(head);
    else
      delete head;
    head = nx;
  }
  if (kept) {
    HeapNode* old = sh.hcache[id % kCache].exchange(kept);
    if (old) {
      if (pooled)
        sh.nodes->put(old);
      else
        delete old;
    }
  }
}

void micro() {
  const long m = sched::scaled(2000000, 1000);
  void* sink[32];
  auto t0 = sched::Clock::now();
  for (long i = 0; i < m / 32; i++) {
    gort::Scope s;
    for (int k = 0; k < 32; k++) sink[k] = gort_scope_alloc(64);
    asm volatile("" ::"r"(sink) : "memory");
  }
  double scoped = sched::ns_since(t0) / static_cast<double>(m / 32 * 32);
  t0 = sched::Clock::now();
  for (long i = 0; i < m / 32; i++) {
    for (int k = 0; k < 32; k++) sink[k] = malloc(64);
    asm volatile("" ::"r"(sink) : "memory");
    for (int k = 0; k < 32; k++) free(sink[k]);
  }
  double mf = sched::ns_since(t0) / static_cast<double>(m / 32 * 32);
  sched::result("scoped_alloc_ns", scoped, "ns/op", "lower");
  sched::result("malloc_free_ns", mf, "ns/op", "lower");
}

}  // namespace

int main(int argc, char** argv) {
  const char* vname = argc > 1 ? argv[1] : "scoped";
  bool noescape = argc > 2 && !strcmp(argv[2], "noescape");
  variant v;
  if (!strcmp(vname, "scoped"))
    v = variant::scoped;
  else if (!strcmp(vname, "gc"))
    v = variant::gc;
  else if (!strcmp(vname, "malloc"))
    v = variant::malloc_;
  else if (!strcmp(vname, "pool"))
    v = variant::pool;
  else if (!strcmp(vname, "micro"))
    return sched::main_task(micro);
  else
    sched::fail("pool_request: unknown variant '%s' (scoped, gc, malloc, pool, micro)", vname);
  return sched::main_task([&] {
    const long r = sched::scaled(100000, 500);
    const int procs = gort::maxprocs();
    shared sh;
    sh.gcache = static_cast<Node**>(gort_gc_alloc(sizeof(Node*) * kCache, nullptr));
    gort_gc_handle* h = gort_gc_handle_new(sh.gcache);
    sh.hcache = new std::atomic<HeapNode*>[kCache]();
    gort::Pool<HeapNode> nodes([] { return new HeapNode; });
    gort::Pool<Buf> bufs([] { return new Buf; });
    sh.nodes = &nodes;
    sh.bufs = &bufs;
    gort_gc_stats_t s0, s1;
    gort_gc_stats(&s0);
    std::vector<std::vector<uint32_t>> lat(procs);
    gort::WaitGroup wg;
    auto t0 = sched::Clock::now();
    for (int t = 0; t < procs; t++) {
      wg.add(1);
      gort::go([&, t] {
        auto& l = lat[t];
        l.reserve(r);
        for (long i = 0; i < r; i++) {
          uint64_t id = static_cast<uint64_t>(t) << 40 | static_cast<uint64_t>(i);
          bool keep = !noescape && i % kKeepEvery == 0;
          auto q0 = sched::Clock::now();
          switch (v) {
            case variant::scoped: {
              gort::Scope s;
              request_gc<true>(sh, id, keep);
              break;
            }
            case variant::gc:
              request_gc<false>(sh, id, keep);
              break;
            case variant::malloc_:
              request_heap(sh, id, keep, false);
              break;
            case variant::pool:
              request_heap(sh, id, keep, true);
              break;
          }
          l.push_back(static_cast<uint32_t>(sched::ns_since(q0)));
        }
        wg.done();
      });
    }
    wg.wait();
    double ns = sched::ns_since(t0);
    gort_gc_stats(&s1);
    // The cache: every kept list's head is intact.
    for (int i = 0; i < kCache; i++) {
      if (Node* x = sh.gcache[i])
        if (x->payload[0] != mix(x->id + static_cast<uint64_t>(24 + x->id % 17) - 1)) sh.bad++;
      if (HeapNode* x = sh.hcache[i].load())
        if (x->payload[0] != mix(x->id + static_cast<uint64_t>(24 + x->id % 17) - 1)) sh.bad++;
    }
    if (sh.bad) sched::fail("pool_request: %ld requests read back wrong data", sh.bad.load());
    std::vector<uint32_t> all;
    for (auto& l : lat) all.insert(all.end(), l.begin(), l.end());
    std::sort(all.begin(), all.end());
    double p99 = all.empty() ? 0 : all[all.size() * 99 / 100];
    sched::result("requests_per_s", static_cast<double>(r) * procs / (ns / 1e9), "req/s", "higher");
    sched::result("gc_cycles", static_cast<double>(s1.cycles - s0.cycles), "cycles", "lower");
    sched::result("gc_alloc_mb", static_cast<double>(s1.total_alloc - s0.total_alloc) / (1 << 20),
                  "MiB", "lower");
    sched::result("peak_rss_mb", static_cast<double>(vm_hwm()) / (1 << 20), "MiB", "lower");
    sched::result("p99_us", p99 / 1000, "us", "lower");
    for (int i = 0; i < kCache; i++)
      if (HeapNode* x = sh.hcache[i].load()) delete x;
    delete[] sh.hcache;
    gort_gc_handle_free(h);
  });
}
