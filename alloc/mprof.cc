// The heap profiler: sampling, buckets, the table of live sampled objects,
// and the pprof writer; see mprof.h for the design.
//
// Data (all in memory the profiler maps itself, never malloc's):
//  - buckets: one per (stack, size), in a chained hash table (g_buckhash)
//    and on the list g_buckets; never freed. Counters are guarded by
//    g_prof_lock.
//  - the live table: sampled objects not yet freed, address -> bucket, open
//    addressing with linear probing and backward-shift deletion, doubled at
//    half full. Several entries may share an address (two tiny GC objects
//    sampled in one 16-byte block); a free removes them all.
//
// The writer snapshots the counters under the lock, then symbolizes and
// encodes without it: profile.proto by hand (varints and length-delimited
// fields), one Location and Function per distinct PC, names from the
// module's ELF .symtab (static functions and executables not linked with
// -rdynamic included), else .dynsym, else dladdr. Every Mapping says
// has_functions, so pprof needs neither the binary nor a symbol server.
#include "alloc/mprof.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <unwind.h>

#include "alloc/lock.h"
#include "alloc/mcache.h"
#include "alloc/mheap.h"
#include "alloc/options.h"
#include "alloc/sys.h"

extern "C" char __start_gort_text[] __attribute__((weak, visibility("hidden")));
extern "C" char __stop_gort_text[] __attribute__((weak, visibility("hidden")));

namespace gort::alloc {

int64_t g_prof_rate = 0;
bool g_prof_ever = false;
void (*g_prof_nostop_enter)() = nullptr;
void (*g_prof_nostop_exit)() = nullptr;
uint32_t g_prof_epoch = 0;

namespace {

bool g_prof_ready = false;  // libgort's constructor ran

struct bucket {
  bucket* next;     // hash chain
  bucket* allnext;  // every bucket
  uint64_t hash;
  uint64_t size;
  uint64_t allocs, frees, alloc_bytes, free_bytes;
  uint32_t nstk;
  uintptr_t stk[];
};

struct liveEntry {
  uintptr_t addr;  // 0: empty
  bucket* b;
};

// g_prof_lock guards everything below. A leaf lock, held through profLock
// (see mprof.h); taken last by the fork handler.
constinit mutex g_prof_lock;
constexpr size_t kBuckHash = 1 << 16;
bucket* g_buckhash[kBuckHash];
bucket* g_buckets = nullptr;
char* g_arena = nullptr;  // bump allocation of buckets and caches' state
size_t g_arena_left = 0;
liveEntry* g_live = nullptr;
size_t g_live_cap = 0, g_live_n = 0;
uint64_t g_dropped = 0;  // samples lost for want of memory

void* arena_alloc(size_t n) {
  n = (n + 15) & ~size_t{15};
  if (n > g_arena_left) {
    size_t chunk = n > (1 << 20) ? n : (1 << 20);
    void* m = sys_map(chunk, 4096);
    if (!m) return nullptr;
    g_arena = static_cast<char*>(m);
    g_arena_left = chunk;
  }
  void* p = g_arena;
  g_arena += n;
  g_arena_left -= n;
  return p;
}

// Holds g_prof_lock so that the holder cannot be stopped by the collector's
// stop signal while it holds it (gc/ sets the hooks to enter and leave a
// busy region, which defers a stop): then the collector may take the lock
// itself, in a busy region or with the world stopped (sweeping). Without
// the collector there are no stops and the hooks are null. The scheduler
// never preempts here: this is gort's own text (and libc's memcpy).
class profLock {
 public:
  profLock() {
    // Both hooks or neither (gc/ may set them while this thread runs).
    if (__atomic_load_n(&g_prof_nostop_enter, __ATOMIC_ACQUIRE)) {
      exit_ = __atomic_load_n(&g_prof_nostop_exit, __ATOMIC_ACQUIRE);
      if (exit_) g_prof_nostop_enter();
    }
    g_prof_lock.lock();
  }
  ~profLock() {
    g_prof_lock.unlock();
    if (exit_) exit_();
  }
  profLock(const profLock&) = delete;
  profLock& operator=(const profLock&) = delete;

 private:
  void (*exit_)() = nullptr;
};

inline uint64_t mix(uint64_t h, uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  return h;
}
inline size_t live_slot(uintptr_t a, size_t cap) {
  return static_cast<size_t>((a >> 4) * 0x9e3779b97f4a7c15ull >> 20) & (cap - 1);
}

bool live_grow() {
  size_t cap = g_live_cap ? g_live_cap * 2 : 4096;
  auto* t = static_cast<liveEntry*>(sys_map(cap * sizeof(liveEntry), 4096));
  if (!t) return false;
  for (size_t i = 0; i < g_live_cap; i++) {
    if (!g_live[i].addr) continue;
    size_t j = live_slot(g_live[i].addr, cap);
    while (t[j].addr) j = (j + 1) & (cap - 1);
    t[j] = g_live[i];
  }
  if (g_live) sys_unmap(g_live, g_live_cap * sizeof(liveEntry));
  g_live = t;
  g_live_cap = cap;
  return true;
}

bool live_insert(uintptr_t a, bucket* b) {
  if ((g_live_n + 1) * 2 > g_live_cap && !live_grow()) return false;
  size_t j = live_slot(a, g_live_cap);
  while (g_live[j].addr) j = (j + 1) & (g_live_cap - 1);
  g_live[j] = {a, b};
  g_live_n++;
  return true;
}

// Removes every entry for a, counting each as freed; returns how many.
int live_remove(uintptr_t a) {
  if (!g_live_cap) return 0;
  size_t mask = g_live_cap - 1;
  int n = 0;
  size_t j = live_slot(a, g_live_cap);
  while (g_live[j].addr) {
    if (g_live[j].addr != a) {
      j = (j + 1) & mask;
      continue;
    }
    bucket* b = g_live[j].b;
    b->frees++;
    b->free_bytes += b->size;
    n++;
    g_live_n--;
    // Backward-shift deletion: pull later entries of the cluster into the
    // hole when their home slot allows it.
    size_t hole = j, k = j;
    for (;;) {
      k = (k + 1) & mask;
      if (!g_live[k].addr) break;
      size_t home = live_slot(g_live[k].addr, g_live_cap);
      bool movable = hole <= k ? (home <= hole || home > k) : (home <= hole && home > k);
      if (movable) {
        g_live[hole] = g_live[k];
        hole = k;
      }
    }
    g_live[hole].addr = 0;
    // Slot j now holds a shifted entry (or is empty): look at it again.
  }
  return n;
}

bucket* find_bucket(const uintptr_t* stk, uint32_t n, uint64_t size) {
  uint64_t h = mix(0, size);
  for (uint32_t i = 0; i < n; i++) h = mix(h, stk[i]);
  bucket** head = &g_buckhash[h & (kBuckHash - 1)];
  for (bucket* b = *head; b; b = b->next) {
    if (b->hash == h && b->size == size && b->nstk == n &&
        memcmp(b->stk, stk, n * sizeof(uintptr_t)) == 0)
      return b;
  }
  auto* b = static_cast<bucket*>(arena_alloc(sizeof(bucket) + n * sizeof(uintptr_t)));
  if (!b) return nullptr;
  memset(b, 0, sizeof *b);
  b->hash = h;
  b->size = size;
  b->nstk = n;
  memcpy(b->stk, stk, n * sizeof(uintptr_t));
  b->next = *head;
  *head = b;
  b->allnext = g_buckets;
  g_buckets = b;
  return b;
}

// ---- stack capture ----

struct unwindState {
  uintptr_t* pcs;
  int n, max;
  bool skipping;  // still in gort's own frames
};

_Unwind_Reason_Code unwind_one(struct _Unwind_Context* ctx, void* arg) {
  auto* st = static_cast<unwindState*>(arg);
  uintptr_t ip = _Unwind_GetIP(ctx);
  if (ip == 0) return _URC_END_OF_STACK;
  if (st->skipping) {
    if (ip >= reinterpret_cast<uintptr_t>(__start_gort_text) &&
        ip < reinterpret_cast<uintptr_t>(__stop_gort_text))
      return _URC_NO_REASON;
    st->skipping = false;
  }
  st->pcs[st->n++] = ip;
  return st->n == st->max ? _URC_END_OF_STACK : _URC_NO_REASON;
}

int capture(uintptr_t* pcs, int max) {
  unwindState st{pcs, 0, max, __start_gort_text != nullptr};
  _Unwind_Backtrace(unwind_one, &st);
  return st.n;
}

uint64_t rng_next(uint64_t* s) {
  uint64_t x = *s ? *s : 0x2545f4914f6cdd1dull ^ static_cast<uint64_t>(nanotime());
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  *s = x;
  return x;
}
// Natural log and exp without libm: a C program that links libgort.a with
// cc (no -lm) must still link. Accurate to ~1e-12, plenty for sampling.
constexpr double kLn2 = 0.6931471805599453;
double ln(double x) {  // x > 0, finite
  uint64_t bits;
  memcpy(&bits, &x, sizeof bits);
  int e = static_cast<int>((bits >> 52) & 0x7ff) - 1023;
  bits = (bits & ((uint64_t{1} << 52) - 1)) | (uint64_t{1023} << 52);
  double m;
  memcpy(&m, &bits, sizeof m);  // [1, 2)
  if (m > 1.4142135623730951) {
    m /= 2;
    e++;
  }
  // ln(m) = 2 atanh(z), z = (m-1)/(m+1), |z| <= 0.172
  double z = (m - 1) / (m + 1), z2 = z * z, term = z, sum = 0;
  for (int k = 1; k < 30; k += 2) {
    sum += term / k;
    term *= z2;
  }
  return e * kLn2 + 2 * sum;
}
double expo(double x) {  // x <= 0
  if (x < -700) return 0;
  int k = static_cast<int>(x / kLn2) - (x < 0 ? 1 : 0);
  double r = x - k * kLn2, term = 1, sum = 1;  // r in [0, ln2)
  for (int i = 1; i < 20; i++) {
    term *= r / i;
    sum += term;
  }
  uint64_t bits = static_cast<uint64_t>(k + 1023) << 52;  // 2^k, k >= -1010
  double p2;
  memcpy(&p2, &bits, sizeof p2);
  return sum * p2;
}

// An Exp(1) variate (never 0 or infinite).
double exp1(uint64_t* s) {
  double u = (static_cast<double>(rng_next(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
  return -ln(u);
}

uint64_t g_global_rng = 0;  // for callers without a cache (guarded by g_prof_lock)

}  // namespace

int64_t mprof_set_rate(int64_t rate) {
  if (rate < 0) rate = 0;
  int64_t old = __atomic_exchange_n(&g_prof_rate, rate, __ATOMIC_RELAXED);
  __atomic_fetch_add(&g_prof_epoch, 1, __ATOMIC_RELEASE);
  if (rate > 0 && !__atomic_load_n(&g_prof_ever, __ATOMIC_RELAXED)) {
    window_hide();
    __atomic_store_n(&g_prof_ever, true, __ATOMIC_RELEASE);
  }
  return old;
}

void mprof_ready() {
  __atomic_store_n(&g_prof_ready, true, __ATOMIC_RELEASE);
}

mprofCache* mprof_cache(mcache* c) {
  auto* pc = static_cast<mprofCache*>(c->prof);
  if (!pc) {
    profLock g;
    pc = static_cast<mprofCache*>(arena_alloc(sizeof(mprofCache)));
    if (!pc) return nullptr;
    memset(pc, 0, sizeof *pc);
    pc->rng = rng_next(&g_global_rng) | 1;
    pc->epoch = __atomic_load_n(&g_prof_epoch, __ATOMIC_ACQUIRE) - 1;
    c->prof = pc;
  }
  uint32_t epoch = __atomic_load_n(&g_prof_epoch, __ATOMIC_ACQUIRE);
  if (pc->epoch != epoch) {
    // A new rate: every countdown is drawn again (left 0 means "draw").
    pc->epoch = epoch;
    for (mprofClass& k : pc->cls) k.left = 0;
    pc->large_left = -1;
  }
  return pc;
}

uint32_t mprof_next_pops(mprofCache* pc, uint32_t size) {
  int64_t rate = __atomic_load_n(&g_prof_rate, __ATOMIC_RELAXED);
  if (rate <= 0) return UINT32_MAX;
  if (rate == 1) return 1;  // every allocation, as Go's MemProfileRate=1
  double n = exp1(&pc->rng) * static_cast<double>(rate) / size;
  return n >= 4e9 ? UINT32_MAX : 1 + static_cast<uint32_t>(n);
}

int64_t mprof_next_bytes(uint64_t* rng) {
  int64_t rate = __atomic_load_n(&g_prof_rate, __ATOMIC_RELAXED);
  if (rate <= 0) return INT64_MAX;
  if (rate == 1) return 0;
  double n = exp1(rng) * static_cast<double>(rate);
  return n >= 9e18 ? INT64_MAX : static_cast<int64_t>(n);
}

void mprof_sample(mprofCache* pc, void* p, size_t size) {
  if (!__atomic_load_n(&g_prof_ready, __ATOMIC_ACQUIRE)) return;
  if (pc) {
    if (pc->busy) return;
    pc->busy = 1;
  }
  {
    // The capture runs with no lock held and may be stopped by the
    // collector (it may wait for the loader's lock, which a stopped thread
    // may hold, so it must not defer a stop).
    uintptr_t pcs[kMaxStack];
    int n = capture(pcs, kMaxStack);
    profLock g;
    bucket* b = find_bucket(pcs, static_cast<uint32_t>(n), size);
    if (b && live_insert(reinterpret_cast<uintptr_t>(p), b)) {
      b->allocs++;
      b->alloc_bytes += size;
      if (mspan* s = span_of(p)) {
        uintptr_t a = reinterpret_cast<uintptr_t>(p);
        __atomic_fetch_or(&s->profiled_bits, mprof_filter_bit(s, a), __ATOMIC_RELAXED);
        __atomic_fetch_add(&s->profiled, 1, __ATOMIC_RELAXED);
      }
    } else {
      g_dropped++;
    }
  }
  if (pc) pc->busy = 0;
}

void mprof_large(mcache* c, void* p, size_t size) {
  if (!c || __atomic_load_n(&g_prof_rate, __ATOMIC_RELAXED) <= 0) return;
  mprofCache* pc = mprof_cache(c);
  if (!pc || pc->busy) return;
  if (pc->large_left < 0) pc->large_left = mprof_next_bytes(&pc->rng);
  pc->large_left -= static_cast<int64_t>(size);
  if (pc->large_left >= 0) return;
  pc->large_left = mprof_next_bytes(&pc->rng);
  mprof_sample(pc, p, size);
}

namespace {
// Under g_prof_lock.
void free_locked(mspan* s, uintptr_t p) {
  int n = live_remove(p);
  if (!n) return;
  // The count and the filter go to zero together (the span may be reused for
  // other objects, or other sizes).
  if (__atomic_sub_fetch(&s->profiled, static_cast<uint16_t>(n), __ATOMIC_RELAXED) == 0)
    __atomic_store_n(&s->profiled_bits, 0, __ATOMIC_RELAXED);
}
}  // namespace

void mprof_free(mspan* s, uintptr_t p) {
  profLock g;
  free_locked(s, p);
}

void mprof_free_objects(mspan* s, bool (*freed)(const mspan* s, uint32_t i)) {
  profLock g;
  for (uint32_t i = 0; i < s->nelems && s->profiled; i++) {
    uintptr_t p = s->base + uintptr_t{i} * s->elemsize;
    if ((s->profiled_bits & mprof_filter_bit(s, p)) && freed(s, i)) free_locked(s, p);
  }
}

void mprof_fork_lock() {
  g_prof_lock.lock();
}
void mprof_fork_unlock() {
  g_prof_lock.unlock();
}
void mprof_fork_child() {
  g_prof_lock.reset();
}

// ---- the writer ----

namespace {

// A growable byte buffer in mapped memory.
struct pbuf {
  uint8_t* p = nullptr;
  size_t n = 0, cap = 0;
  bool failed = false;
  ~pbuf() {
    if (p) sys_unmap(p, cap);
  }
  void reserve(size_t more) {
    if (n + more <= cap || failed) return;
    size_t c = cap ? cap : 65536;
    while (c < n + more) c *= 2;
    auto* q = static_cast<uint8_t*>(sys_map(c, 4096));
    if (!q) {
      failed = true;
      return;
    }
    if (p) {
      memcpy(q, p, n);
      sys_unmap(p, cap);
    }
    p = q;
    cap = c;
  }
  void bytes(const void* b, size_t len) {
    if (len == 0) return;  // b may be null then, which memcpy does not allow
    reserve(len);
    if (failed) return;
    memcpy(p + n, b, len);
    n += len;
  }
  void varint(uint64_t v) {
    uint8_t b[10];
    int k = 0;
    do {
      b[k++] = static_cast<uint8_t>((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
      v >>= 7;
    } while (v);
    bytes(b, k);
  }
  // Field helpers (profile.proto uses wire types 0 and 2 only).
  void u64(int field, uint64_t v) {
    varint(static_cast<uint64_t>(field) << 3);
    varint(v);
  }
  void u64_nz(int field, uint64_t v) {
    if (v) u64(field, v);
  }
  void len_field(int field, const void* b, size_t len) {
    varint(static_cast<uint64_t>(field) << 3 | 2);
    varint(len);
    bytes(b, len);
  }
  void msg(int field, const pbuf& m) { len_field(field, m.p, m.n); }
  void clear() { n = 0; }
};

// The string table: every string is appended (pprof does not require them
// distinct); index 0 is "".
struct strtab {
  pbuf out;  // encoded field 6 entries
  int64_t n = 0;
  int64_t add(const char* s) {
    out.len_field(6, s, strlen(s));
    return n++;
  }
};

struct module {
  uintptr_t bias, lo, hi, off;  // executable segment [lo, hi) at file offset off
  char name[512];
  // The symbol table, mapped from the file for the write (null: none).
  const uint8_t* file = nullptr;
  size_t file_size = 0;
  const ElfW(Sym) * syms = nullptr;
  size_t nsyms = 0;
  const char* strs = nullptr;
  size_t strs_size = 0;
};

constexpr int kMaxModules = 512;
struct moduleList {
  module* m;
  int n;
  int objects;  // objects seen: the first is the main program
};

int collect_module(struct dl_phdr_info* info, size_t, void* arg) {
  auto* ml = static_cast<moduleList*>(arg);
  bool main_program = ml->objects++ == 0;
  for (int i = 0; i < info->dlpi_phnum && ml->n < kMaxModules; i++) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_LOAD || !(ph.p_flags & PF_X)) continue;
    module& m = ml->m[ml->n++];
    m = module{};
    m.bias = info->dlpi_addr;
    m.lo = info->dlpi_addr + ph.p_vaddr;
    m.hi = m.lo + ph.p_memsz;
    m.off = ph.p_offset;
    const char* name = info->dlpi_name;
    if (main_program) {
      ssize_t k = readlink("/proc/self/exe", m.name, sizeof m.name - 1);
      m.name[k > 0 ? k : 0] = 0;
    } else if (name) {
      size_t k = strlen(name);
      if (k >= sizeof m.name) k = sizeof m.name - 1;
      memcpy(m.name, name, k);
      m.name[k] = 0;
    }
  }
  return 0;
}

// Maps the module's file and finds .symtab (else .dynsym) and its strings.
void load_symbols(module& m) {
  if (!m.name[0] || m.name[0] == '[') return;
  int fd = open(m.name, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_size < static_cast<off_t>(sizeof(ElfW(Ehdr)))) {
    close(fd);
    return;
  }
  void* f = mmap(nullptr, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (f == MAP_FAILED) return;
  m.file = static_cast<const uint8_t*>(f);
  m.file_size = st.st_size;
  auto* eh = reinterpret_cast<const ElfW(Ehdr)*>(m.file);
  if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_shoff == 0 ||
      eh->e_shoff + eh->e_shnum * sizeof(ElfW(Shdr)) > m.file_size)
    return;
  auto* sh = reinterpret_cast<const ElfW(Shdr)*>(m.file + eh->e_shoff);
  for (int want : {SHT_SYMTAB, SHT_DYNSYM}) {
    for (int i = 0; i < eh->e_shnum; i++) {
      if (sh[i].sh_type != static_cast<uint32_t>(want) || sh[i].sh_link >= eh->e_shnum) continue;
      const ElfW(Shdr)& str = sh[sh[i].sh_link];
      if (sh[i].sh_offset + sh[i].sh_size > m.file_size ||
          str.sh_offset + str.sh_size > m.file_size)
        continue;
      m.syms = reinterpret_cast<const ElfW(Sym)*>(m.file + sh[i].sh_offset);
      m.nsyms = sh[i].sh_size / sizeof(ElfW(Sym));
      m.strs = reinterpret_cast<const char*>(m.file + str.sh_offset);
      m.strs_size = str.sh_size;
      return;
    }
  }
}

// The function containing address a of module m, or null.
const char* symbol_of(const module& m, uintptr_t a) {
  uintptr_t rel = a - m.bias;
  const char* best = nullptr;
  uintptr_t best_value = 0;
  for (size_t i = 0; i < m.nsyms; i++) {
    const ElfW(Sym)& s = m.syms[i];
    if (ELF64_ST_TYPE(s.st_info) != STT_FUNC || s.st_shndx == SHN_UNDEF) continue;
    if (rel < s.st_value || s.st_name >= m.strs_size) continue;
    if (rel < s.st_value + (s.st_size ? s.st_size : 1) && (!best || s.st_value > best_value)) {
      best = m.strs + s.st_name;
      best_value = s.st_value;
    }
  }
  return best;
}

struct snap {
  const bucket* b;
  uint64_t allocs, frees, alloc_bytes, free_bytes;
};

// Go's scaleHeapSample: an average object of size/count bytes was sampled
// with probability 1 - exp(-avg/rate).
void unscale(uint64_t count, uint64_t size, int64_t rate, int64_t* c, int64_t* s) {
  if (count == 0 || size == 0) {
    *c = *s = 0;
    return;
  }
  if (rate <= 1) {
    *c = static_cast<int64_t>(count);
    *s = static_cast<int64_t>(size);
    return;
  }
  double avg = static_cast<double>(size) / count;
  double scale = 1 / (1 - expo(-avg / rate));
  *c = static_cast<int64_t>(count * scale);
  *s = static_cast<int64_t>(size * scale);
}

// Distinct PCs, for one Location each: a small open-addressing map.
struct pcMap {
  uintptr_t* keys = nullptr;
  uint64_t* ids = nullptr;
  size_t cap = 0;
  uint64_t next = 1;
  bool init(size_t want) {
    cap = 1024;
    while (cap < want * 2) cap *= 2;
    keys = static_cast<uintptr_t*>(sys_map(cap * sizeof(uintptr_t), 4096));
    ids = static_cast<uint64_t*>(sys_map(cap * sizeof(uint64_t), 4096));
    return keys && ids;
  }
  ~pcMap() {
    if (keys) sys_unmap(keys, cap * sizeof(uintptr_t));
    if (ids) sys_unmap(ids, cap * sizeof(uint64_t));
  }
  // The id of pc, and whether it is new.
  uint64_t get(uintptr_t pc, bool* fresh) {
    size_t j = live_slot(pc, cap);
    while (keys[j] && keys[j] != pc) j = (j + 1) & (cap - 1);
    *fresh = keys[j] == 0;
    if (*fresh) {
      keys[j] = pc;
      ids[j] = next++;
    }
    return ids[j];
  }
};

int write_profile(int fd) {
  int64_t rate = __atomic_load_n(&g_prof_rate, __ATOMIC_RELAXED);
  // Snapshot the counters.
  pbuf snaps;
  size_t nb = 0, npcs = 0;
  {
    profLock g;
    for (const bucket* b = g_buckets; b; b = b->allnext) nb++;
    snaps.reserve((nb + 1) * sizeof(snap));
    if (snaps.failed) return errno = ENOMEM, -1;
    for (const bucket* b = g_buckets; b; b = b->allnext) {
      snap s{b, b->allocs, b->frees, b->alloc_bytes, b->free_bytes};
      snaps.bytes(&s, sizeof s);
      npcs += b->nstk;
    }
  }
  const snap* sn = reinterpret_cast<const snap*>(snaps.p);

  pbuf mods_mem;
  mods_mem.reserve(kMaxModules * sizeof(module));
  if (mods_mem.failed) return errno = ENOMEM, -1;
  moduleList ml{reinterpret_cast<module*>(mods_mem.p), 0, 0};
  dl_iterate_phdr(collect_module, &ml);
  for (int i = 0; i < ml.n; i++) load_symbols(ml.m[i]);

  pbuf out, m, line;
  strtab st;
  st.add("");
  int64_t s_alloc_objects = st.add("alloc_objects"), s_count = st.add("count"),
          s_alloc_space = st.add("alloc_space"), s_bytes = st.add("bytes"),
          s_inuse_objects = st.add("inuse_objects"), s_inuse_space = st.add("inuse_space"),
          s_space = st.add("space");
  auto value_type = [&](int field, int64_t type, int64_t unit) {
    m.clear();
    m.u64(1, type);
    m.u64(2, unit);
    out.msg(field, m);
  };
  value_type(1, s_alloc_objects, s_count);
  value_type(1, s_alloc_space, s_bytes);
  value_type(1, s_inuse_objects, s_count);
  value_type(1, s_inuse_space, s_bytes);

  // Samples.
  pcMap pcs;
  if (!pcs.init(npcs + 1)) return errno = ENOMEM, -1;
  pbuf locs, funcs;  // Location and Function messages, appended as PCs appear
  pbuf ids, vals, label, f, loc;
  for (size_t i = 0; i < nb; i++) {
    const snap& s = sn[i];
    if (s.allocs == 0) continue;
    m.clear();
    ids.clear();
    for (uint32_t k = 0; k < s.b->nstk; k++) {
      uintptr_t pc = s.b->stk[k];
      bool fresh;
      uint64_t id = pcs.get(pc, &fresh);
      ids.varint(id);
      if (!fresh) continue;
      // A return address: the call is the instruction before it.
      uintptr_t a = pc - 1;
      uint64_t mapping = 0;
      const char* name = nullptr;
      for (int j = 0; j < ml.n; j++) {
        if (a >= ml.m[j].lo && a < ml.m[j].hi) {
          mapping = static_cast<uint64_t>(j) + 1;
          name = symbol_of(ml.m[j], a);
          break;
        }
      }
      Dl_info di;
      if (!name && dladdr(reinterpret_cast<void*>(a), &di) && di.dli_sname) name = di.dli_sname;
      char unknown[40];
      if (!name) {
        snprintf(unknown, sizeof unknown, "0x%lx", static_cast<unsigned long>(a));
        name = unknown;
      }
      int64_t sname = st.add(name);
      f.clear();
      f.u64(1, id);
      f.u64(2, sname);
      f.u64(3, sname);
      funcs.msg(5, f);
      line.clear();
      line.u64(1, id);
      loc.clear();
      loc.u64(1, id);
      loc.u64_nz(2, mapping);
      loc.u64(3, a);
      loc.msg(4, line);
      locs.msg(4, loc);
    }
    m.len_field(1, ids.p, ids.n);
    int64_t v[4];
    unscale(s.allocs, s.alloc_bytes, rate, &v[0], &v[1]);
    unscale(s.allocs - s.frees, s.alloc_bytes - s.free_bytes, rate, &v[2], &v[3]);
    vals.clear();
    for (int64_t x : v) vals.varint(static_cast<uint64_t>(x));
    m.len_field(2, vals.p, vals.n);
    // Go's "bytes" label: the object size.
    label.clear();
    label.u64(1, s_bytes);
    label.u64(3, s.b->size);
    m.msg(3, label);
    out.msg(2, m);
  }
  // Mappings.
  for (int j = 0; j < ml.n; j++) {
    const module& md = ml.m[j];
    m.clear();
    m.u64(1, static_cast<uint64_t>(j) + 1);
    m.u64(2, md.lo);
    m.u64(3, md.hi);
    m.u64(4, md.off);
    m.u64(5, st.add(md.name));
    m.u64(7, 1);  // has_functions
    out.msg(3, m);
  }
  out.bytes(locs.p, locs.n);
  out.bytes(funcs.p, funcs.n);
  out.bytes(st.out.p, st.out.n);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  out.u64(9, static_cast<uint64_t>(ts.tv_sec) * 1000000000u + ts.tv_nsec);
  value_type(11, s_space, s_bytes);
  out.u64(12, static_cast<uint64_t>(rate));
  for (int j = 0; j < ml.n; j++)
    if (ml.m[j].file) munmap(const_cast<uint8_t*>(ml.m[j].file), ml.m[j].file_size);
  if (out.failed || m.failed || locs.failed || funcs.failed || st.out.failed || ids.failed ||
      vals.failed || label.failed || f.failed || loc.failed || line.failed)
    return errno = ENOMEM, -1;
  size_t done = 0;
  while (done < out.n) {
    ssize_t k = write(fd, out.p + done, out.n - done);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return -1;
    done += static_cast<size_t>(k);
  }
  return 0;
}

}  // namespace

int mprof_write(const char* path) {
  if (!path || !*path) return errno = EINVAL, -1;
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return -1;
  int r = write_profile(fd);
  int saved = errno;
  if (close(fd) != 0 && r == 0) return -1;
  errno = saved;
  return r;
}

void mprof_exit() {
  if (!g_options.heapprofile[0]) return;
  // A forked child that exits writes path.PID, not over its parent's file.
  char path[sizeof g_options.heapprofile + 24];
  if (getpid() == g_options.heapprofile_pid)
    snprintf(path, sizeof path, "%s", g_options.heapprofile);
  else
    snprintf(path, sizeof path, "%s.%d", g_options.heapprofile, static_cast<int>(getpid()));
  if (mprof_write(path) != 0)
    print_err("GORT_DEBUG=heapprofile=%s: cannot write the heap profile: %s", path,
              strerror(errno));
}

}  // namespace gort::alloc

// ---- the C API (gort/malloc.h) ----

#define GORT_EXPORT extern "C" __attribute__((visibility("default")))

GORT_EXPORT int gort_heap_profile_write(const char* path) noexcept {
  return gort::alloc::mprof_write(path);
}

GORT_EXPORT size_t gort_heap_profile_rate(size_t bytes) noexcept {
  if (bytes > (size_t{1} << 40)) bytes = size_t{1} << 40;
  return static_cast<size_t>(gort::alloc::mprof_set_rate(static_cast<int64_t>(bytes)));
}
