// livechurn on Boehm GC: the same work as bench/workloads/gc_livechurn.cc.
// Objects come from GC_MALLOC (conservatively scanned, Boehm's default);
// the table is a GC object too. Pauses are timed from Boehm's own collection
// events (GC_EVENT_PRE_STOP_WORLD to GC_EVENT_POST_START_WORLD).
#include <gc.h>
#include <string.h>

#include "../../workloads/gc_common.h"

typedef struct obj {
  struct obj* next;
  struct obj* other;
  uint64_t id;
  unsigned char payload[1024 - 24];
} obj;

static uint64_t g_pauses[1 << 16];
static size_t g_npauses;
static int64_t g_stop_at;
static gcb_hist g_hist;

static void on_event(GC_EventType e) {
  if (e == GC_EVENT_PRE_STOP_WORLD) g_stop_at = gcb_now_ns();
  if (e == GC_EVENT_POST_START_WORLD && g_stop_at && g_npauses < sizeof g_pauses / sizeof g_pauses[0])
    g_pauses[g_npauses++] = (uint64_t)(gcb_now_ns() - g_stop_at);
}

static uint64_t rs = 88172645463325252ull;
static uint64_t rnext(void) {
  rs ^= rs << 13;
  rs ^= rs >> 7;
  rs ^= rs << 17;
  return rs;
}

static obj* make(uint64_t id) {
  obj* o = (obj*)GC_MALLOC(sizeof(obj));
  if (!o) gcb_fail("out of memory");
  o->id = id;
  return o;
}

int main(void) {
  GC_INIT();
  size_t n = (size_t)(gcb_live_bytes() / 1024), ops = 4 * n;
  obj** table = (obj**)GC_MALLOC(n * sizeof(obj*));
  for (size_t i = 0; i < n; i++) table[i] = make(i);
  GC_gcollect();
  GC_set_on_collection_event(on_event);
  GC_word gc0 = GC_get_gc_no();
  int64_t t0 = gcb_now_ns();
  for (size_t i = 0; i < ops; i++) {
    int64_t s = gcb_now_ns();
    size_t k = rnext() % n;
    obj* o = make(n + i);
    o->next = table[rnext() % n];
    o->payload[0] = (unsigned char)i;
    table[k] = o;
    gcb_hist_add(&g_hist, gcb_now_ns() - s);
  }
  int64_t elapsed = gcb_now_ns() - t0;
  for (size_t i = 0; i < n; i++)
    if (!table[i] || (table[i]->id != i && table[i]->id < n)) gcb_fail("table entry corrupt");
  gcb_result("pause_max_us", gcb_quantile(g_pauses, g_npauses, 1.0) / 1e3, "us", "lower");
  gcb_result("pause_p99_us", gcb_quantile(g_pauses, g_npauses, 0.99) / 1e3, "us", "lower");
  gcb_result("op_max_us", (double)g_hist.max / 1e3, "us", "lower");
  gcb_result("op_p999_us", gcb_hist_quantile(&g_hist, 0.999) / 1e3, "us", "lower");
  gcb_result("time_ms", elapsed / 1e6, "ms", "lower");
  gcb_result("cycles", (double)(GC_get_gc_no() - gc0), "n", "lower");
  return 0;
}
