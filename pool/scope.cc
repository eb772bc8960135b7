// Escape-aware scoped pooling (gort/scope.h, docs/pool.md "Scopes").
//
// The bargain. Go keeps a value that does not escape on the goroutine's
// stack and frees it by popping the frame; everything else is garbage for
// the collector. A C or C++ request handler builds a few dozen objects and a
// buffer, and nearly all of them die with the request. A scope gives those
// the stack's price at run time: they are bump-allocated in the scope and
// recycled at once when it ends, unless the program let one escape, and then
// the collector takes it over. Correctness comes first: an object that
// escaped is never recycled, and the collector never sees recycled memory
// it could mistake for a live object.
//
// Layout. Each task (or plain thread) with a scope open owns a scopeStack
// (Go's stack of frames, in the g: runtime/poolhooks.h; a thread-local word
// on plain threads, so a scope follows its task across Ms and blocking
// calls). A stack allocates from chunks: conservative GC objects of 64 KiB
// (larger for a larger object), each with a scopeChunk header. Chunks in use
// form a list from the top down (link); recycled chunks wait on the stack's
// free list, zeroed. The stack's top and free-list words are a root range,
// and the links are in the chunks, so every chunk in use or free is alive
// for the collector; a scope object is an interior pointer into its chunk,
// which the collector already treats as keeping the chunk alive.
//
// Logical positions. Every byte a stack hands out has a logical position:
// chunk c covers [c->lstart, c->lstart + used) and positions only grow while
// scopes are open. A scope's mark is the position at its begin; its objects
// are the positions from its mark up to the next inner scope's, and ending
// it gives back everything from its mark up. So "object o lives no longer
// than object v" is pos(o) >= the mark of v's scope (the innermost open
// scope whose mark is <= pos(v)), whichever chunks they sit in.
//
// Escape. The barrier's slow half (gc/mark.cc, through gc::g_scope_escape:
// gc/ stays below pool/) calls escape_hook(slot, v) for every pointer stored
// through gort_gc_write once any scope exists (kScopeBit in the barrier's
// word, set once and for good). v escapes unless slot is itself in a live
// chunk of the calling task's stack at a position that dies no later than v
// (a store inside the scope's own object graph). Handles, add_roots and
// gort_scope_escape escape without a slot. Escape retires v's whole chunk:
// state kLive -> kRetired (a CAS, once), after which the chunk is never
// reset or reused and is just a conservative GC object the collector frees
// when nothing points into it. Its other objects are retained with it (the
// statistics count them as "retained"): the price of recycling by bumping a
// pointer instead of freeing objects one by one. What a retired chunk points
// to must live as long: retire scans it and retires every live chunk it
// points into, transitively, so an escaped object never holds a pointer to a
// recycled one. Stores into a retired chunk's objects are escapes from then
// on (the slot is no longer in a live chunk).
//
// Races. Only the owning task changes its stack. Another thread may retire
// the owner's chunk (it stored the owner's object somewhere); it only flips
// the state word, which the owner reads with a CAS when it would recycle the
// chunk (kLive -> kFree), so exactly one of them wins. A store into chunk X
// racing with X's retirement: the barrier stores, then (after a full fence)
// reads X's state; retire flips the state, then (after a full fence) scans
// X. One of them sees the other: the stored object escapes either way.
//
// Recycling against a concurrent mark. Resetting a chunk deletes every
// pointer its dead objects held, without a barrier. The collector's
// snapshot may still need one of those (an ordinary object the program
// loaded from a scope object into a register after its stack was scanned).
// So a scope end that runs while the collector marks shades every word of
// the memory it recycles first (the deletion barrier, in bulk), and the
// check of the phase, the shading and the zeroing are one busy region (the
// world cannot stop between the check and the zeroing). Zeroing happens at
// the end, not at the next allocation, so free memory in a chunk is always
// zero (allocation is a bump) and never looks like a pointer.
//
// Invariants.
//  - Memory in a live chunk between the stack's bump and limit, and all of
//    a free chunk's data, is zero.
//  - A chunk is kLive while it is in a stack's use list and not retired,
//    kFree on the free list, kRetired after an escape (forever), kDead when
//    poolcheck poisoned it. Only kLive chunks hold recyclable objects, so
//    only they are "scope memory" to the barrier.
//  - A scope object that escaped (or that an escaped object points to) is
//    in a retired chunk.
//
// GORT_DEBUG=poolcheck=1 turns reuse off: a scope end poisons what it would
// recycle (0xfd bytes), seals the chunk, and puts each dead object in a
// quarantine with its allocation site. It then checks every root range and
// handle against them, and at every mark termination (gc::on_mark_done) the
// collector's thread checks every live (marked) object as well; a pointer
// into the quarantine is a fatal error naming the object's site. A barrier
// store of a quarantined pointer is fatal too. Quarantined chunks leave the
// quarantine once a cycle finds them unmarked (they are then swept).
// Stacks and registers are not checked: holding a dead object's address in
// a local is allowed, using it is not (and poison makes that visible).
//
// Statistics (escapestats=1, poolcheck, or gort_escape_stats_enable) log
// every scope allocation with its site (file:line, or the return address
// resolved by dladdr once per site); a scope end counts each of its objects
// as recycled, escaped or retained, per site.
//
// Lock order: g_stacks_lock, a stack's loglock, g_sites_lock, g_quar_lock
// are leaves. g_quar_lock is taken only inside busy regions (busy_lock), so
// the mark-done hook, which runs with the world stopped, may take it.
#include "gort/scope.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <atomic>

#include "alloc/lock.h"
#include "alloc/options.h"
#include "alloc/sys.h"
#include "gc/cycle.h"
#include "gc/heap.h"
#include "gc/mark.h"
#include "gc/roots.h"
#include "gort/gc.h"
#include "runtime/poolhooks.h"

#define GORT_EXPORT extern "C" __attribute__((visibility("default")))

namespace gort::pool {
namespace {

using gc::busy_enter;
using gc::busy_exit;

constexpr size_t kChunkSize = 64 << 10;
constexpr size_t kHeader = 64;
constexpr size_t kKeepFree = 4 * kChunkSize;  // free chunk bytes a stack keeps
constexpr int kMaxDepth = 32;                 // deeper scopes merge into the 32nd
constexpr unsigned char kPoison = 0xfd;

enum : uint32_t { kFree = 0, kLive = 1, kRetired = 2, kDead = 3 };

struct scopeStack;
struct siteRec;

struct scopeChunk {
  uint64_t tag;       // g_tag: this GC object is a scope chunk
  scopeStack* owner;  // stacks are never freed
  scopeChunk* link;   // in use: the chunk below; free: the next free one
  uint32_t state;     // kFree, kLive, kRetired, kDead (atomic)
  uint32_t pad;
  uint64_t lstart;  // logical position of data()
  // Offsets from the chunk's start, not addresses: the chunk is scanned
  // conservatively, and an address here would keep a neighbour alive (or
  // look to poolcheck like a pointer to a dead object).
  uint64_t size;      // bytes, header included
  uint64_t used_off;  // end of allocation while not the stack's current chunk
  uintptr_t pad2;
  uintptr_t data() const { return reinterpret_cast<uintptr_t>(this) + kHeader; }
  uintptr_t end() const { return reinterpret_cast<uintptr_t>(this) + size; }
  uintptr_t used() const { return reinterpret_cast<uintptr_t>(this) + used_off; }
  void set_used(uintptr_t a) { used_off = a - reinterpret_cast<uintptr_t>(this); }
};
static_assert(sizeof(scopeChunk) <= kHeader);

struct logEntry {
  uint64_t lpos;
  uintptr_t addr;
  scopeChunk* chunk;
  siteRec* site;
  uint32_t size;
  uint32_t escaped;
};

struct scopeMark {
  uint64_t lpos;
  size_t loglen;
};

struct scopeStack {
  // The root range (gort_gc_add_roots): the two GC pointers of the stack.
  scopeChunk* top;    // the chunk list in use, newest first
  scopeChunk* freel;  // recycled chunks
  // The current chunk is top when bump != 0; logical() = lbase + (bump - data).
  uintptr_t bump, limit, data;
  uint64_t lbase;
  size_t free_bytes;
  int depth;
  bool tracking;  // statistics / poolcheck on when the outermost scope began
  scopeMark marks[kMaxDepth];
  scopeStack* nextfree;  // g_stacks
  alloc::mutex loglock;  // guards log (owner appends, escapes mark)
  logEntry* log;
  size_t nlog, caplog;
};

inline uint64_t logical(const scopeStack* st) {
  return st->lbase + (st->bump - st->data);
}
inline uintptr_t used_end(const scopeStack* st, const scopeChunk* c) {
  return (c == st->top && st->bump) ? st->bump : c->used();
}
inline uint32_t state_of(const scopeChunk* c) {
  return __atomic_load_n(&c->state, __ATOMIC_ACQUIRE);
}
inline bool cas_state(scopeChunk* c, uint32_t from, uint32_t to) {
  return __atomic_compare_exchange_n(&c->state, &from, to, false, __ATOMIC_SEQ_CST,
                                     __ATOMIC_RELAXED);
}

// ---- globals ----

uint64_t g_tag = 0;
std::atomic<bool> g_inited{false};
constinit alloc::mutex g_init_lock;
bool g_poolcheck = false;
std::atomic<bool> g_stats_on{false};

constinit alloc::mutex g_stacks_lock;  // guards g_stacks
scopeStack* g_stacks = nullptr;
__thread scopeStack* tl_scope __attribute__((tls_model("initial-exec")));
__thread scopeStack* tl_spare __attribute__((tls_model("initial-exec")));

// A store of a GC pointer into the stack's roots or a chunk's header: only
// the barrier's marking half (an escape check would see the chunk itself).
inline void wb(scopeChunk** slot, scopeChunk* v) {
  scopeChunk* old = __atomic_load_n(slot, __ATOMIC_RELAXED);
  __atomic_store_n(slot, v, __ATOMIC_RELAXED);
  __atomic_signal_fence(__ATOMIC_SEQ_CST);
  if (__builtin_expect(__atomic_load_n(&gort_gc_marking, __ATOMIC_RELAXED) & gc::kMarkingBit, 0))
    gc::barrier_slow(old, v);
}

inline scopeStack** stack_slot() {
  if (void** s = rt::poolhook::this_task_scope_slot()) return reinterpret_cast<scopeStack**>(s);
  return &tl_scope;
}

// The chunk p points into (its data), or null. Tolerates any p.
scopeChunk* chunk_of(uintptr_t p) {
  uint32_t idx;
  alloc::mspan* s = gc::find_object(p, &idx);
  if (!s || __atomic_load_n(&s->state, __ATOMIC_RELAXED) != alloc::spanState::gclarge)
    return nullptr;
  auto* c = reinterpret_cast<scopeChunk*>(gc::object_base(s, idx));
  if (__atomic_load_n(&c->tag, __ATOMIC_RELAXED) != g_tag || p < c->data()) return nullptr;
  return c;
}

// ---- sites and statistics ----

struct siteRec {
  const char* file;
  int line;
  const void* pc;
  char name[96];  // "file:line" or the symbol of pc, resolved once
  std::atomic<uint64_t> allocs, recycled, escaped, retained;
  std::atomic<uint64_t> bytes, bytes_recycled, bytes_escaped, bytes_retained;
};

constexpr size_t kSites = 4096;
constinit alloc::mutex g_sites_lock;
siteRec* g_sites[kSites];
size_t g_nsites = 0;
siteRec g_overflow_site;  // when the table is full

siteRec* site_get(const char* file, int line, const void* pc) {
  uintptr_t h = (reinterpret_cast<uintptr_t>(file) ^ static_cast<uintptr_t>(line) * 31 ^
                 reinterpret_cast<uintptr_t>(pc)) *
                0x9E3779B97F4A7C15ull;
  size_t i = static_cast<size_t>(h >> 52) % kSites;
  alloc::lock_guard g(g_sites_lock);
  for (size_t n = 0; n < kSites; n++, i = (i + 1) % kSites) {
    siteRec* s = g_sites[i];
    if (s && s->file == file && s->line == line && s->pc == pc) return s;
    if (!s) {
      if (g_nsites >= kSites / 2) break;
      s = static_cast<siteRec*>(calloc(1, sizeof(siteRec)));
      if (!s) break;
      s->file = file;
      s->line = line;
      s->pc = pc;
      if (file) {
        snprintf(s->name, sizeof(s->name), "%s:%d", file, line);
      } else {
        Dl_info di;
        if (dladdr(pc, &di) && di.dli_sname)
          snprintf(s->name, sizeof(s->name), "%s+0x%lx", di.dli_sname,
                   static_cast<unsigned long>(reinterpret_cast<uintptr_t>(pc) -
                                              reinterpret_cast<uintptr_t>(di.dli_saddr)));
        else if (dladdr(pc, &di) && di.dli_fname)
          snprintf(s->name, sizeof(s->name), "%s+0x%lx", di.dli_fname,
                   static_cast<unsigned long>(reinterpret_cast<uintptr_t>(pc) -
                                              reinterpret_cast<uintptr_t>(di.dli_fbase)));
        else
          snprintf(s->name, sizeof(s->name), "pc %p", pc);
      }
      g_sites[i] = s;
      g_nsites++;
      return s;
    }
  }
  snprintf(g_overflow_site.name, sizeof(g_overflow_site.name), "(other sites)");
  return &g_overflow_site;
}

void log_append(scopeStack* st, uintptr_t p, size_t size, scopeChunk* c, siteRec* site) {
  site->allocs.fetch_add(1, std::memory_order_relaxed);
  site->bytes.fetch_add(size, std::memory_order_relaxed);
  alloc::lock_guard g(st->loglock);
  if (st->nlog == st->caplog) {
    size_t cap = st->caplog ? st->caplog * 2 : 256;
    auto* n = static_cast<logEntry*>(realloc(st->log, cap * sizeof(logEntry)));
    if (!n) alloc::fatal("scope statistics: out of memory for the allocation log");
    st->log = n;
    st->caplog = cap;
  }
  st->log[st->nlog++] =
      logEntry{c->lstart + (p - c->data()), p, c, site, static_cast<uint32_t>(size), 0};
}

// v escaped by itself (not with its chunk): find its log entry.
void note_direct_escape(scopeChunk* c, uintptr_t v) {
  scopeStack* st = c->owner;
  uint64_t lv = c->lstart + (v - c->data());
  alloc::lock_guard g(st->loglock);
  size_t lo = 0, hi = st->nlog;  // the last entry with lpos <= lv
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (st->log[mid].lpos <= lv)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo == 0) return;
  logEntry& e = st->log[lo - 1];
  if (e.chunk == c && lv < e.lpos + e.size) e.escaped = 1;
}

// ---- poolcheck's quarantine ----

struct qEntry {
  uintptr_t lo, hi;
  siteRec* site;
  uintptr_t chunk;
};
constinit alloc::mutex g_quar_lock;  // only inside busy regions
qEntry* g_quar = nullptr;
size_t g_nquar = 0, g_capquar = 0;
bool g_quar_sorted = true;

void sort_entries(qEntry* a, size_t n) {
  qsort(a, n, sizeof(qEntry), [](const void* x, const void* y) {
    uintptr_t a = static_cast<const qEntry*>(x)->lo, b = static_cast<const qEntry*>(y)->lo;
    return a < b ? -1 : a > b ? 1 : 0;
  });
}
const qEntry* find_entry(const qEntry* a, size_t n, uintptr_t v) {
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (a[mid].lo <= v)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo == 0 || v >= a[lo - 1].hi) return nullptr;
  return &a[lo - 1];
}

[[noreturn]] void report(const char* what, uintptr_t where, uintptr_t v, const qEntry* e) {
  alloc::fatal(
      "poolcheck: %s %p holds %p, which points into a scope object (%zu bytes at %p) recycled "
      "when its scope ended; the object was allocated at %s. Declare the escape "
      "(gort_scope_escape) or store through the write barrier (docs/pool.md)",
      what, reinterpret_cast<void*>(where), reinterpret_cast<void*>(v),
      static_cast<size_t>(e->hi - e->lo), reinterpret_cast<void*>(e->lo), e->site->name);
}

struct checkSet {
  const qEntry* a;
  size_t n;
};

void check_root_word(uintptr_t slot, uintptr_t v, void* arg) {
  auto* cs = static_cast<checkSet*>(arg);
  if (const qEntry* e = find_entry(cs->a, cs->n, v)) report("the root word", slot, v, e);
}
void check_heap_word(uintptr_t obj, uintptr_t v, void* arg) {
  auto* cs = static_cast<checkSet*>(arg);
  if (const qEntry* e = find_entry(cs->a, cs->n, v)) report("the live GC object", obj, v, e);
}

// Mark termination, world stopped: no live object nor root may point into
// the quarantine; then forget what this cycle's sweep will free.
void poolcheck_mark_done() {
  gc::busy_lock g(g_quar_lock);
  if (!g_nquar) return;
  sort_entries(g_quar, g_nquar);
  checkSet cs{g_quar, g_nquar};
  gc::for_each_marked_word(check_heap_word, &cs);
  gc::for_each_root_word(check_root_word, &cs);
  size_t k = 0;
  for (size_t i = 0; i < g_nquar; i++)
    if (gc::is_marked(g_quar[i].chunk)) g_quar[k++] = g_quar[i];
  g_nquar = k;
}

// A barrier store or an escape of a quarantined pointer.
void poolcheck_value(uintptr_t v, const char* how) {
  gc::busy_lock g(g_quar_lock);
  if (!g_nquar) return;
  if (!g_quar_sorted) {
    sort_entries(g_quar, g_nquar);
    g_quar_sorted = true;
  }
  if (const qEntry* e = find_entry(g_quar, g_nquar, v))
    alloc::fatal(
        "poolcheck: %s %p, which points into a scope object (%zu bytes at %p) recycled when its "
        "scope ended; the object was allocated at %s (docs/pool.md)",
        how, reinterpret_cast<void*>(v), static_cast<size_t>(e->hi - e->lo),
        reinterpret_cast<void*>(e->lo), e->site->name);
}

// ---- statistics at scope end ----

// Counts the objects the scope ending at log index from is about to give
// back, and (poolcheck) quarantines the recycled ones and checks the roots.
void account_log(scopeStack* st, size_t from) {
  size_t n;
  logEntry* log;
  {
    alloc::lock_guard g(st->loglock);
    n = st->nlog;
    log = st->log;
  }
  qEntry* fresh = nullptr;
  size_t nfresh = 0;
  if (g_poolcheck && n > from) fresh = static_cast<qEntry*>(malloc((n - from) * sizeof(qEntry)));
  for (size_t i = from; i < n; i++) {
    logEntry& e = log[i];
    siteRec* s = e.site;
    uint32_t state = state_of(e.chunk);
    if (state == kRetired) {
      if (e.escaped) {
        s->escaped.fetch_add(1, std::memory_order_relaxed);
        s->bytes_escaped.fetch_add(e.size, std::memory_order_relaxed);
      } else {
        s->retained.fetch_add(1, std::memory_order_relaxed);
        s->bytes_retained.fetch_add(e.size, std::memory_order_relaxed);
      }
    } else {
      s->recycled.fetch_add(1, std::memory_order_relaxed);
      s->bytes_recycled.fetch_add(e.size, std::memory_order_relaxed);
      if (fresh)
        fresh[nfresh++] = qEntry{e.addr, e.addr + e.size, s, reinterpret_cast<uintptr_t>(e.chunk)};
    }
  }
  {
    alloc::lock_guard g(st->loglock);
    st->nlog = from;
  }
  if (!nfresh) {
    free(fresh);
    return;
  }
  {
    gc::busy_lock g(g_quar_lock);
    if (g_nquar + nfresh > g_capquar) {
      size_t cap = g_capquar ? g_capquar * 2 : 1024;
      while (cap < g_nquar + nfresh) cap *= 2;
      // realloc inside a busy region would wait on allocator locks a
      // stopped thread may hold: map instead.
      auto* q = static_cast<qEntry*>(alloc::sys_map(cap * sizeof(qEntry), 4096));
      if (!q) alloc::fatal("poolcheck: out of memory for the quarantine");
      if (g_quar) {
        memcpy(q, g_quar, g_nquar * sizeof(qEntry));
        alloc::sys_unmap(g_quar, g_capquar * sizeof(qEntry));
      }
      g_quar = q;
      g_capquar = cap;
    }
    memcpy(g_quar + g_nquar, fresh, nfresh * sizeof(qEntry));
    g_nquar += nfresh;
    g_quar_sorted = false;
  }
  // Roots and handles now: the store that made one hold a dead object's
  // address is the fresh one, and its site is known.
  sort_entries(fresh, nfresh);
  checkSet cs{fresh, nfresh};
  gc::for_each_root_word(check_root_word, &cs);
  free(fresh);
}

// ---- escapes ----

// The mark of the scope that allocated position lv (the innermost open
// scope whose mark is at or below it).
uint64_t mark_of(const scopeStack* st, uint64_t lv) {
  int d = st->depth < kMaxDepth ? st->depth : kMaxDepth;
  for (int i = d - 1; i >= 0; i--)
    if (st->marks[i].lpos <= lv) return st->marks[i].lpos;
  return 0;
}

// The owner stops allocating in its retired current chunk.
void seal(scopeStack* st) {
  uint64_t l = logical(st);
  if (st->top && st->bump) st->top->set_used(st->bump);
  st->bump = st->limit = st->data = 0;
  st->lbase = l;
}

// Retires c and, transitively, every live chunk a retired one points into.
void retire(scopeChunk* c0) {
  scopeChunk* small[32];
  scopeChunk** work = small;
  size_t n = 0, cap = 32;
  work[n++] = c0;
  scopeStack* me = *stack_slot();
  while (n) {
    scopeChunk* c = work[--n];
    if (!cas_state(c, kLive, kRetired)) continue;
    std::atomic_thread_fence(std::memory_order_seq_cst);
    uintptr_t end = c->end();
    if (c->owner == me) {
      end = used_end(me, c);
      if (c == me->top && me->bump) seal(me);
    }
    for (uintptr_t a = c->data(); a + 8 <= end; a += 8) {
      uintptr_t v = __atomic_load_n(reinterpret_cast<const uintptr_t*>(a), __ATOMIC_RELAXED);
      if (v >= c->data() && v < c->end()) continue;  // within c itself
      scopeChunk* y = chunk_of(v);
      if (!y || state_of(y) != kLive) continue;
      if (n == cap) {
        size_t ncap = cap * 2;
        auto* w = static_cast<scopeChunk**>(malloc(ncap * sizeof(scopeChunk*)));
        if (!w) alloc::fatal("scope: out of memory retiring chunks");
        memcpy(w, work, n * sizeof(scopeChunk*));
        if (work != small) free(work);
        work = w;
        cap = ncap;
      }
      work[n++] = y;
    }
  }
  if (work != small) free(work);
}

void escape_value(void* const* slot, uintptr_t v) {
  scopeChunk* c = chunk_of(v);
  if (!c) return;
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (state_of(c) != kLive) return;
  if (slot) {
    scopeStack* st = *stack_slot();
    if (st && c->owner == st && st->depth > 0) {
      uintptr_t s = reinterpret_cast<uintptr_t>(slot);
      scopeChunk* cs = chunk_of(s);
      if (cs && cs->owner == st && state_of(cs) == kLive &&
          cs->lstart + (s - cs->data()) >= mark_of(st, c->lstart + (v - c->data())))
        return;  // a store inside the scope's own objects
    }
  }
  if (g_stats_on.load(std::memory_order_relaxed) && c->owner->tracking) note_direct_escape(c, v);
  retire(c);
}

void escape_hook(void* const* slot, const void* value) {
  uintptr_t v = reinterpret_cast<uintptr_t>(value);
  if (!v) return;
  if (g_poolcheck) poolcheck_value(v, "a store through the write barrier of");
  escape_value(slot, v);
}

// ---- stacks ----

void print_at_exit() {
  gort_escape_stats_print(alloc::g_options.mstats_fd);
}

void init() {
  if (g_inited.load(std::memory_order_acquire)) return;
  gc::ensure_started();
  alloc::lock_guard g(g_init_lock);
  if (g_inited.load(std::memory_order_relaxed)) return;
  g_tag = 0x73636f70652e6368ull ^ (reinterpret_cast<uintptr_t>(&g_tag) << 4) ^
          static_cast<uint64_t>(alloc::nanotime());
  g_poolcheck = alloc::g_options.poolcheck;
  if (g_poolcheck && !gc::on_mark_done(&poolcheck_mark_done))
    alloc::fatal("poolcheck: no room for the collector's mark-done hook");
  if (alloc::g_options.escapestats || g_poolcheck) g_stats_on.store(true);
  if (alloc::g_options.escapestats) atexit(print_at_exit);
  gc::g_scope_escape = &escape_hook;
  // From here every barrier store takes the slow half (gc/heap.h).
  __atomic_fetch_or(&gort_gc_marking, gc::kScopeBit, __ATOMIC_SEQ_CST);
  g_inited.store(true, std::memory_order_release);
}

scopeStack* stack_get() {
  scopeStack* st = tl_spare;
  if (st) {
    tl_spare = nullptr;
    return st;
  }
  {
    alloc::lock_guard g(g_stacks_lock);
    st = g_stacks;
    if (st) g_stacks = st->nextfree;
  }
  if (st) return st;
  st = static_cast<scopeStack*>(calloc(1, sizeof(scopeStack)));
  if (!st) return nullptr;
  if (gort_gc_add_roots(&st->top, 2 * sizeof(void*)) != 0) {
    free(st);
    return nullptr;
  }
  return st;
}

// An M keeps one spare stack for its next task (Ms live as long as the
// runtime); a plain thread gives its stack back to the global list, or a
// thread that exits would take it (and its free chunks) with it.
void stack_put(scopeStack* st) {
  if (!tl_spare && rt::poolhook::this_task_scope_slot()) {
    tl_spare = st;
    return;
  }
  alloc::lock_guard g(g_stacks_lock);
  st->nextfree = g_stacks;
  g_stacks = st;
}

// A chunk from the free list with room for size bytes, or a new one.
scopeChunk* chunk_get(scopeStack* st, size_t size) {
  for (scopeChunk** pp = &st->freel; *pp; pp = &(*pp)->link) {
    scopeChunk* c = *pp;
    if (c->end() - c->data() >= size) {
      wb(pp, c->link);
      wb(&c->link, nullptr);
      st->free_bytes -= c->size;
      return c;
    }
  }
  size_t bytes =
      size + kHeader <= kChunkSize ? kChunkSize : (size + kHeader + 8191) & ~size_t{8191};
  auto* c = static_cast<scopeChunk*>(gort_gc_alloc(bytes, nullptr));
  if (!c) return nullptr;
  c->owner = st;
  c->size = bytes;
  __atomic_store_n(&c->tag, g_tag, __ATOMIC_RELEASE);
  return c;
}

void chunk_free(scopeStack* st, scopeChunk* c) {
  size_t bytes = c->size;
  if (st->free_bytes + bytes > kKeepFree) return;  // dropped: the collector frees it
  st->free_bytes += bytes;
  wb(&c->link, st->freel);
  wb(&st->freel, c);
}

__attribute__((noinline)) void* alloc_slow(scopeStack* st, size_t size, siteRec* site) {
  uintptr_t p;
  scopeChunk* c;
  if (st->bump && st->bump + size <= st->limit) {
    c = st->top;
    p = st->bump;
    st->bump += size;
  } else {
    uint64_t l = logical(st);
    if (st->top && st->bump) st->top->set_used(st->bump);
    c = chunk_get(st, size);
    if (!c) {
      errno = ENOMEM;
      return nullptr;
    }
    c->lstart = l;
    c->set_used(c->data());
    __atomic_store_n(&c->state, kLive, __ATOMIC_RELEASE);
    wb(&c->link, st->top);
    wb(&st->top, c);
    st->data = c->data();
    st->lbase = l;
    st->limit = c->end();
    p = st->data;
    st->bump = p + size;
  }
  if (site) log_append(st, p, size, c, site);
  return reinterpret_cast<void*>(p);
}

// With statistics on, every allocation is logged with its site: out of
// line, so that the bump below needs no stack frame.
__attribute__((noinline)) void* alloc_tracked(scopeStack* st, size_t size, const char* file,
                                              int line, const void* pc) {
  return alloc_slow(st, size, site_get(file, line, pc));
}

// The fast path: a bump in the current chunk (a leaf, no frame).
inline void* scope_alloc(size_t size, const char* file, int line, const void* pc) {
  scopeStack* st = *stack_slot();
  if (!st || st->depth == 0) return gort_gc_alloc(size, nullptr);
  size = size ? (size + 15) & ~size_t{15} : 16;
  if (__builtin_expect(st->tracking, 0)) return alloc_tracked(st, size, file, line, pc);
  uintptr_t p = st->bump;
  if (__builtin_expect(p && p + size <= st->limit, 1)) {
    st->bump = p + size;
    return reinterpret_cast<void*>(p);
  }
  return alloc_slow(st, size, nullptr);
}

// Gives back everything the stack handed out from position l on.
void reset_to(scopeStack* st, uint64_t l) {
  if (gc::g_marking.load(std::memory_order_relaxed) && !gc::is_registered())
    gc::register_current_thread(false);
  busy_enter();
  gc::gcWork* w = gc::g_marking.load(std::memory_order_relaxed) ? &gc::tl_gc.rec->work : nullptr;
  // Chunks that start above l go; the one starting at l is rewound in place
  // below (the common case: an outermost scope keeps its chunk), unless it
  // is retired or poolcheck is on.
  while (st->top && (st->top->lstart > l ||
                     (st->top->lstart == l && (g_poolcheck || state_of(st->top) != kLive)))) {
    scopeChunk* c = st->top;
    uintptr_t uend = used_end(st, c);
    if (w) gc::scan_range(c->data(), uend, *w);
    if (st->bump) st->bump = st->limit = st->data = 0;
    wb(&st->top, c->link);
    wb(&c->link, nullptr);
    if (!g_poolcheck) {
      if (cas_state(c, kLive, kFree)) {
        memset(reinterpret_cast<void*>(c->data()), 0, uend - c->data());
        chunk_free(st, c);
      }
    } else if (cas_state(c, kLive, kDead)) {
      memset(reinterpret_cast<void*>(c->data()), kPoison, uend - c->data());
    }
  }
  scopeChunk* c = st->top;
  if (c) {
    uintptr_t uend = used_end(st, c);
    uintptr_t pos = c->data() + (l - c->lstart);
    if (pos < uend) {
      if (w) gc::scan_range(pos, uend, *w);
      if (!g_poolcheck && state_of(c) == kLive) {
        memset(reinterpret_cast<void*>(pos), 0, uend - pos);
        st->data = c->data();
        st->lbase = c->lstart;
        st->bump = pos;
        st->limit = c->end();
        busy_exit();
        return;
      }
      if (g_poolcheck && state_of(c) == kLive) {
        memset(reinterpret_cast<void*>(pos), kPoison, uend - pos);
        c->set_used(pos);
      } else {
        c->set_used(uend);
      }
    } else if (st->bump) {
      busy_exit();
      return;  // the current chunk is already at l
    }
  }
  st->bump = st->limit = st->data = 0;
  st->lbase = l;
  busy_exit();
}

}  // namespace
}  // namespace gort::pool

using namespace gort::pool;
namespace alloc = gort::alloc;

GORT_EXPORT int gort_scope_begin(void) {
  init();
  scopeStack** slot = stack_slot();
  scopeStack* st = *slot;
  if (!st) {
    st = stack_get();
    if (!st) alloc::fatal("gort_scope_begin: out of memory for a scope stack");
    st->tracking = g_stats_on.load(std::memory_order_relaxed);
    *slot = st;
  }
  if (!gort::gc::is_registered()) gort::gc::register_current_thread(false);
  if (st->depth < kMaxDepth) {
    st->marks[st->depth].lpos = logical(st);
    st->marks[st->depth].loglen = st->nlog;
  }
  return ++st->depth;
}

GORT_EXPORT void gort_scope_end(void) {
  scopeStack** slot = stack_slot();
  scopeStack* st = *slot;
  if (!st || st->depth == 0)
    alloc::fatal("gort_scope_end: no scope is open on this task or thread");
  int d = --st->depth;
  if (d < kMaxDepth) {
    if (st->tracking) account_log(st, st->marks[d].loglen);
    reset_to(st, st->marks[d].lpos);
  }
  if (d == 0) {
    *slot = nullptr;
    stack_put(st);
  }
}

GORT_EXPORT int gort_scope_depth(void) {
  scopeStack* st = *stack_slot();
  return st ? st->depth : 0;
}

GORT_EXPORT void* gort_scope_alloc(size_t size) {
  return scope_alloc(size, nullptr, 0, __builtin_return_address(0));
}

GORT_EXPORT void* gort_scope_alloc_at(size_t size, const char* file, int line) {
  return scope_alloc(size, file, line, nullptr);
}

GORT_EXPORT void gort_scope_escape(const void* p) {
  if (!p || !g_inited.load(std::memory_order_acquire)) return;
  uintptr_t v = reinterpret_cast<uintptr_t>(p);
  if (g_poolcheck) poolcheck_value(v, "gort_scope_escape of");
  escape_value(nullptr, v);
}

GORT_EXPORT int gort_scope_owns(const void* p) {
  if (!p || !g_inited.load(std::memory_order_acquire)) return 0;
  scopeChunk* c = chunk_of(reinterpret_cast<uintptr_t>(p));
  return c && state_of(c) == kLive;
}

GORT_EXPORT int gort_escape_stats_enable(int on) {
  init();
  return g_stats_on.exchange(on != 0) ? 1 : 0;
}

namespace {
size_t collect_sites(siteRec** out, size_t n) {
  alloc::lock_guard g(g_sites_lock);
  size_t k = 0;
  for (size_t i = 0; i < kSites && k < n; i++)
    if (g_sites[i]) out[k++] = g_sites[i];
  if (g_overflow_site.allocs.load() && k < n) out[k++] = &g_overflow_site;
  // Most bytes first (insertion sort: the table is small).
  for (size_t i = 1; i < k; i++)
    for (size_t j = i; j > 0 && out[j]->bytes.load() > out[j - 1]->bytes.load(); j--) {
      siteRec* t = out[j];
      out[j] = out[j - 1];
      out[j - 1] = t;
    }
  return k;
}
}  // namespace

GORT_EXPORT size_t gort_escape_stats(gort_escape_site* out, size_t n) {
  static siteRec* all[kSites + 1];
  static alloc::mutex lock;
  alloc::lock_guard g(lock);
  size_t k = collect_sites(all, kSites + 1);
  for (size_t i = 0; i < k && i < n; i++) {
    siteRec* s = all[i];
    out[i] = gort_escape_site{s->file,
                              s->line,
                              s->pc,
                              s->allocs.load(),
                              s->recycled.load(),
                              s->escaped.load(),
                              s->retained.load(),
                              s->bytes.load(),
                              s->bytes_recycled.load(),
                              s->bytes_escaped.load(),
                              s->bytes_retained.load()};
  }
  return k;
}

GORT_EXPORT void gort_escape_stats_print(int fd) {
  static siteRec* all[kSites + 1];
  static alloc::mutex lock;
  alloc::lock_guard g(lock);
  size_t k = collect_sites(all, kSites + 1);
  dprintf(fd, "gort escapestats: %zu scope allocation site%s (most bytes first)\n", k,
          k == 1 ? "" : "s");
  dprintf(fd, "%-48s %10s %10s %10s %10s %12s %9s\n", "site", "allocs", "recycled", "escaped",
          "retained", "bytes", "recycled%");
  for (size_t i = 0; i < k; i++) {
    siteRec* s = all[i];
    uint64_t b = s->bytes.load(), br = s->bytes_recycled.load();
    dprintf(fd, "%-48s %10llu %10llu %10llu %10llu %12llu %8.1f%%\n", s->name,
            static_cast<unsigned long long>(s->allocs.load()),
            static_cast<unsigned long long>(s->recycled.load()),
            static_cast<unsigned long long>(s->escaped.load()),
            static_cast<unsigned long long>(s->retained.load()), static_cast<unsigned long long>(b),
            b ? 100.0 * static_cast<double>(br) / b : 0.0);
  }
}

GORT_EXPORT void gort_escape_stats_reset(void) {
  alloc::lock_guard g(g_sites_lock);
  auto zero = [](siteRec* s) {
    for (auto* a : {&s->allocs, &s->recycled, &s->escaped, &s->retained, &s->bytes,
                    &s->bytes_recycled, &s->bytes_escaped, &s->bytes_retained})
      a->store(0);
  };
  for (auto* s : g_sites)
    if (s) zero(s);
  zero(&g_overflow_site);
}
