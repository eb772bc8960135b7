// Registered threads, stopping the world, task stacks, root ranges and
// handles; see roots.h.
#include "gc/roots.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include "alloc/fixalloc.h"
#include "alloc/mcache.h"
#include "alloc/sys.h"
#include "gc/cycle.h"
#include "gort/gc.h"
#include "runtime/gchooks.h"
#include "runtime/trace.h"

#define GORT_EXPORT extern "C" __attribute__((visibility("default")))

namespace gort::gc {

std::atomic<uint32_t> g_scangen{1};

namespace {

int g_stop_signal = SIGPWR;  // set once by roots_init, before any thread registers

constinit alloc::mutex g_reg_lock;
gcThread* g_threads = nullptr;
size_t g_nthreads = 0;
constinit alloc::fixalloc<gcThread, size_t{1} << 28> g_threadalloc;
pthread_key_t g_thread_key;
std::atomic<bool> g_key_made{false};
constinit alloc::mutex g_key_lock;

std::atomic<uint32_t> g_stw_epoch{0};
std::atomic<uint32_t> g_stw_release{0};
std::atomic<uint32_t> g_nacked{0};

void thread_exit(void*) {
  unregister_current_thread();
}

void make_key() {
  if (g_key_made.load(std::memory_order_acquire)) return;
  alloc::lock_guard g(g_key_lock);
  if (g_key_made.load(std::memory_order_relaxed)) return;
  pthread_key_create(&g_thread_key, thread_exit);
  g_key_made.store(true, std::memory_order_release);
}

// The top of the stack that sp is on: the thread's own, or a task's (a
// stack span of the heap); 0 if neither (an alternate signal stack).
uintptr_t stack_top_for(const gcThread* t, uintptr_t sp, bool* on_task) {
  *on_task = false;
  if (sp >= t->stack_lo && sp < t->stack_hi) return t->stack_hi;
  alloc::mspan* s = alloc::span_of(reinterpret_cast<void*>(sp));
  if (s && s->state == alloc::spanState::stack) {
    *on_task = true;
    return s->limit();
  }
  return 0;
}

// x86-64 leaf functions may keep data in the 128 bytes below the stack
// pointer: a signal frame on the same stack skips them, one on another stack
// leaves them where they are.
constexpr uintptr_t kRedZone = 128;

void add_range(gcThread* t, uintptr_t lo, uintptr_t hi) {
  if (lo < hi && t->nranges < gcThread::kMaxRanges) t->ranges[t->nranges++] = {lo, hi};
}

// The lowest word of [lo, hi) that points into [slo, shi): on an alternate
// signal stack, the stack pointer a handler's signal frame saved (older
// values there are stack pointers too, only deeper; any of them is safe to
// scan from). 0 if none.
uintptr_t lowest_pointer_into(uintptr_t lo, uintptr_t hi, uintptr_t slo, uintptr_t shi) {
  uintptr_t best = 0;
  for (uintptr_t a = (lo + 7) & ~uintptr_t{7}; a + 8 <= hi; a += 8) {
    uintptr_t v = *reinterpret_cast<const uintptr_t*>(a);
    if (v >= slo && v < shi && (!best || v < best)) best = v;
  }
  return best;
}

// The stack under a handler running on the alternate stack [alo, ahi): the
// current task's and the thread's own, from the lowest stack pointer into
// each that the alternate stack holds.
void add_under_altstack(gcThread* t, rt::g* cg, uintptr_t alo, uintptr_t ahi) {
  uintptr_t glo, ghi;
  if (cg && rt::gchook::stack_bounds(cg, &glo, &ghi)) {
    uintptr_t v = lowest_pointer_into(alo, ahi, glo, ghi);
    if (v) add_range(t, v - kRedZone < glo ? glo : v - kRedZone, ghi);
  }
  uintptr_t v = lowest_pointer_into(alo, ahi, t->stack_lo, t->stack_hi);
  if (v) add_range(t, v - kRedZone < t->stack_lo ? t->stack_lo : v - kRedZone, t->stack_hi);
}

// Records the roots of a thread stopped with its stack pointer at rsp
// (roots.h): the stack it is on, the native frames under its task, or, on
// an alternate signal stack [alo, ahi), that and the stack under it.
void record_ranges(gcThread* t, uintptr_t rsp, uintptr_t alo, uintptr_t ahi) {
  rt::m* mp = rt::gchook::this_m();
  rt::g* cg = mp ? rt::gchook::m_task(mp) : nullptr;
  t->nranges = 0;
  t->stop_curg = cg;
  bool on_task;
  uintptr_t hi = stack_top_for(t, rsp, &on_task);
  uintptr_t lo = rsp - kRedZone;
  if (hi) {
    add_range(t, lo, hi);
  } else if (alo && rsp >= alo && rsp < ahi) {
    add_range(t, lo < alo ? alo : lo, ahi);
    add_under_altstack(t, cg, rsp, ahi);
    on_task = cg != nullptr;
  }
  // The M's own frames under the task it runs (the caller of gort::run's
  // among them), frozen at g0sp until the scheduler switches back.
  uintptr_t g0 = mp ? rt::gchook::m_g0sp(mp) : 0;
  if (on_task && g0 >= t->stack_lo && g0 < t->stack_hi) add_range(t, g0, t->stack_hi);
  t->owns_curg = false;
  if (cg)
    for (int i = 0; i < t->nranges; i++)
      if (rt::gchook::on_stack(cg, t->ranges[i].lo)) t->owns_curg = true;
}

// Counts the thread stopped and waits for the world to start.
void park_stopped(gcThread* t, uint32_t e) {
  t->acked.store(e, std::memory_order_release);
  g_nacked.fetch_add(1, std::memory_order_acq_rel);
  alloc::futex_wake(&g_nacked, 1);
  // Until the world started again after stop e (or a later one: a signal for
  // the next stop can nest in here before this thread got to run).
  // Most stops are short: spin a little before sleeping, since a futex
  // wake-up costs tens of microseconds here.
  uint32_t r;
  for (int i = 0; i < 2000; i++) {
    if (static_cast<int32_t>(g_stw_release.load(std::memory_order_acquire) - e) >= 0) return;
    __builtin_ia32_pause();
  }
  while (static_cast<int32_t>((r = g_stw_release.load(std::memory_order_acquire)) - e) < 0)
    alloc::futex_wait(&g_stw_release, r, -1);
}

// The interrupted registers, general and vector (a pointer on its way
// through a memcpy may be only in an xmm register), into t->regs.
void save_registers(gcThread* t, const ucontext_t* uc) {
  static_assert(NGREG + 32 <= sizeof t->regs / sizeof t->regs[0]);
  size_t n = 0;
  for (int i = 0; i < NGREG; i++) t->regs[n++] = static_cast<uintptr_t>(uc->uc_mcontext.gregs[i]);
  if (const auto* fp = uc->uc_mcontext.fpregs)
    for (int i = 0; i < 16; i++) {
      memcpy(&t->regs[n], &fp->_xmm[i], 16);
      n += 2;
    }
  while (n < sizeof t->regs / sizeof t->regs[0]) t->regs[n++] = 0;
}

void stop_handler(int, siginfo_t*, void* ucv) {
  gcThread* t = tl_gc.rec;
  if (!t) return;
  uint32_t e = g_stw_epoch.load(std::memory_order_acquire);
  if (t->acked.load(std::memory_order_relaxed) == e) return;  // a repeated signal
  if (tl_gc.busy) {
    __atomic_store_n(&tl_gc.pending, 1, __ATOMIC_RELAXED);  // busy_exit stops the thread
    return;
  }
  auto* uc = static_cast<ucontext_t*>(ucv);
  uintptr_t pc = static_cast<uintptr_t>(uc->uc_mcontext.gregs[REG_RIP]);
  if (rt::gchook::in_switch(pc)) return;  // half way between two stacks: asked again later
  int saved = errno;
  save_registers(t, uc);
  // uc_stack: the alternate stack as it was when the signal came.
  uintptr_t alo = 0, ahi = 0;
  if (!(uc->uc_stack.ss_flags & SS_DISABLE) && uc->uc_stack.ss_sp) {
    alo = reinterpret_cast<uintptr_t>(uc->uc_stack.ss_sp);
    ahi = alo + uc->uc_stack.ss_size;
  }
  record_ranges(t, static_cast<uintptr_t>(uc->uc_mcontext.gregs[REG_RSP]), alo, ahi);
  if (t->polls) t->polls--;
  park_stopped(t, e);
  errno = saved;
}

__attribute__((noinline)) void park_deferred(gcThread* t, uint32_t e) {
  // This frame lies below stop_deferred's, which holds the caller's
  // callee-saved registers (__builtin_unwind_init); no register of the
  // caller is live only in a register here.
  uintptr_t here = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
  memset(t->regs, 0, sizeof t->regs);
  record_ranges(t, here + kRedZone, 0, 0);
  park_stopped(t, e);
}

void tgkill_thread(pid_t tid) {
  syscall(SYS_tgkill, getpid(), tid, g_stop_signal);
}

// ---- tasks ----

// Tasks found running by the worker's pass: looked at again at mark
// termination. Beyond the array's room, mark termination walks every task.
constexpr size_t kSkippedMax = 4096;
rt::g* g_skipped[kSkippedMax];
size_t g_nskipped = 0;
bool g_skipped_overflow = false;

void scan_closure(rt::g* gp, gcWork& w) {
  const void* fn = rt::gchook::closure(gp);
  if (!fn) return;
  size_t n = rt::gchook::closure_on_heap(gp) ? alloc::usable_size(const_cast<void*>(fn))
                                             : rt::gchook::closure_inline_size();
  scan_closure_range(reinterpret_cast<uintptr_t>(fn), reinterpret_cast<uintptr_t>(fn) + n, w);
}

// What a stopped thread holds: its stack ranges and registers.
void scan_thread(const gcThread* t, gcWork& w) {
  for (int i = 0; i < t->nranges; i++) scan_range(t->ranges[i].lo, t->ranges[i].hi, w);
  scan_range(reinterpret_cast<uintptr_t>(t->regs),
             reinterpret_cast<uintptr_t>(t->regs) + sizeof t->regs, w);
}

// Whether gp's stack is one of t's ranges (gp was running on t).
bool thread_holds(const gcThread* t, const rt::g* gp) {
  for (int i = 0; i < t->nranges; i++)
    if (rt::gchook::on_stack(gp, t->ranges[i].lo)) return true;
  return false;
}

// Scans a task that is not running, from its saved context. Claimed.
void scan_parked(rt::g* gp, gcWork& w) {
  uintptr_t sp = rt::gchook::saved_sp(gp), lo, hi;
  if (sp && rt::gchook::stack_bounds(gp, &lo, &hi)) scan_range(sp, hi, w);
  scan_closure(gp, w);
}

enum class claim { done, skipped };

// Claims and scans gp if it is unscanned and not running. With wait, a
// claim held by someone else is waited for (the scheduler must not run a
// task being scanned).
claim try_scan(rt::g* gp, gcWork& w, bool wait) {
  uint32_t gen = g_scangen.load(std::memory_order_acquire);
  for (;;) {
    std::atomic<uint32_t>& word = rt::gchook::scan_word(gp);
    uint32_t cur = word.load(std::memory_order_acquire);
    if (cur == gen) return claim::done;
    if (cur == kScanBusy) {
      if (!wait) return claim::done;  // someone else is scanning it
      __builtin_ia32_pause();
      continue;
    }
    if (!word.compare_exchange_weak(cur, kScanBusy, std::memory_order_acq_rel)) continue;
    if (!rt::gchook::live_task(gp)) {
      word.store(gen, std::memory_order_release);
      return claim::done;
    }
    uintptr_t lo, hi;
    if (!wait && !rt::gchook::saved_sp(gp) && rt::gchook::stack_bounds(gp, &lo, &hi)) {
      word.store(cur, std::memory_order_release);  // running: later
      return claim::skipped;
    }
    scan_parked(gp, w);
    word.store(gen, std::memory_order_release);
    return claim::done;
  }
}

// With the world stopped: a thread's current task (the owner of the stack it
// was stopped on) was scanned with the thread; its curg, if that is another
// task (about to be switched to), is scanned from its saved context.
void mark_thread_tasks(gcThread* t, gcWork& w) {
  uint32_t gen = g_scangen.load(std::memory_order_relaxed);
  rt::g* cg = t->stop_curg;
  if (!cg) return;
  std::atomic<uint32_t>& word = rt::gchook::scan_word(cg);
  if (word.load(std::memory_order_relaxed) == gen) return;
  if (!t->owns_curg)
    scan_parked(cg, w);
  else
    scan_closure(cg, w);
  word.store(gen, std::memory_order_relaxed);
}

// ---- root ranges ----

struct rootRange {
  uintptr_t lo, hi;
};
constinit alloc::mutex g_roots_lock;  // mutators: busy regions only
rootRange* g_roots = nullptr;
size_t g_nroots = 0, g_roots_cap = 0;
rootNode* g_root_nodes = nullptr;  // channel buffers (add_root_node)

// A closure's malloc block is scanned up to this size (a std::function's
// storage or a lambda's captures; more would be a program's own data).
constexpr size_t kClosureBlockMax = 4096;

void scan_node(const rootNode* n, gcWork& w) {
  if (n->closure)
    scan_closure_range(n->lo, n->hi, w);
  else
    scan_range(n->lo, n->hi, w);
}

// ---- handles ----

struct handleChunk {
  static constexpr size_t kN = 4094;
  handleChunk* next;
  size_t used;
  void* slot[kN];
};
constinit alloc::mutex g_handles_lock;  // mutators: busy regions only
handleChunk* g_handle_chunks = nullptr;
void** g_handle_free = nullptr;  // free slots, linked through themselves (tagged)

// A free slot holds the next free slot with the low bit set, so a scan does
// not take it for a pointer to a GC object (objects are 16-byte aligned,
// and find_object rejects the odd address anyway when it is not inside one).
inline bool slot_free(void* v) {
  return reinterpret_cast<uintptr_t>(v) & 1;
}

}  // namespace

void stop_deferred() {
  // With stop_the_world's release store of pending: the epoch read below is
  // the one it asked for.
  std::atomic_thread_fence(std::memory_order_acquire);
  __atomic_store_n(&tl_gc.pending, 0, __ATOMIC_RELAXED);
  gcThread* t = tl_gc.rec;
  if (!t) return;
  uint32_t e = g_stw_epoch.load(std::memory_order_acquire);
  if (t->acked.load(std::memory_order_relaxed) == e) return;
  __builtin_unwind_init();
  int saved = errno;
  t->polls = 2;
  park_deferred(t, e);
  errno = saved;
}

void* stop_deferred_ret(void* p) {
  stop_deferred();
  return p;
}

namespace {

// A stop asked of this thread, taken where it waits inside gort outside a
// busy region (alloc::g_lock_wait_poll, wait_or_stop).
void stop_poll() {
  if (tl_gc.busy || !__atomic_load_n(&tl_gc.pending, __ATOMIC_RELAXED)) return;
  stop_deferred();
}

}  // namespace

void wait_or_stop(std::atomic<uint32_t>* addr, uint32_t val) {
  alloc::futex_wait(addr, val, alloc::kLockWaitPollNs);
  stop_poll();
}

// ---- registration ----

// The registration proper, called by gort_gc_register_spilled below.
extern "C" __attribute__((visibility("hidden"), used)) bool gort_gc_register_slow(
    bool explicit_reg) {
  make_key();
  // A registered thread must take the stop signal. Threads inherit their
  // creator's mask, and programs often block every signal before starting
  // workers (and the collector's own thread blocks them all, so an M started
  // from it, as by spawning the mark workers, would too): unblock it here.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, g_stop_signal);
  pthread_sigmask(SIG_UNBLOCK, &stop, nullptr);
  pthread_attr_t attr;
  if (pthread_getattr_np(pthread_self(), &attr) != 0) return false;
  void* addr = nullptr;
  size_t size = 0;
  pthread_attr_getstack(&attr, &addr, &size);
  pthread_attr_destroy(&attr);
  if (!addr || !size) return false;
  gcThread* t;
  {
    alloc::lock_guard g(g_reg_lock);
    t = g_threadalloc.alloc();
    new (t) gcThread();
    t->tid = static_cast<pid_t>(syscall(SYS_gettid));
    t->stack_lo = reinterpret_cast<uintptr_t>(addr);
    t->stack_hi = t->stack_lo + size;
    t->explicit_reg = explicit_reg;
    t->pending = &tl_gc.pending;
    t->acked.store(g_stw_epoch.load(std::memory_order_relaxed), std::memory_order_relaxed);
    t->next = g_threads;
    g_threads = t;
    g_nthreads++;
    tl_gc.rec = t;
    // Joining while the collector marks: this stack was no root when the
    // cycle began, so it is scanned now (it is black from here on). From
    // this frame up: gort_gc_register_spilled's frame above holds the
    // caller's callee-saved registers, and this one's locals (stale words
    // of whatever used the stack before) stay out.
    if (mark_busy_enter()) {
      uintptr_t here = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
      bool on_task;
      uintptr_t hi = stack_top_for(t, here, &on_task);
      if (hi) scan_range(here, hi, t->work);
      busy_exit();
    }
  }
  pthread_setspecific(g_thread_key, t);
  return true;
}

// gort_gc_register_slow with every callee-saved register of the caller
// pushed above its frame, and nothing else there (the alignment slot is a
// pushed zero, not a stale word): a pointer the caller keeps only in a
// register (a loop's cursor in r15 across the allocation that registers the
// thread) is on the stack that a registration during a mark scans.
// Caller-saved registers hold nothing live across the call.
asm(R"(
  .text
  .p2align 4
  .type gort_gc_register_spilled, @function
gort_gc_register_spilled:
  push %rbp
  push %rbx
  push %r12
  push %r13
  push %r14
  push %r15
  push $0
  call gort_gc_register_slow
  add $8, %rsp
  pop %r15
  pop %r14
  pop %r13
  pop %r12
  pop %rbx
  pop %rbp
  ret
  .size gort_gc_register_spilled, .-gort_gc_register_spilled
)");
extern "C" bool gort_gc_register_spilled(bool explicit_reg);

bool register_current_thread(bool explicit_reg) {
  if (gcThread* t = tl_gc.rec) {
    if (explicit_reg) t->explicit_reg = true;
    return true;
  }
  return gort_gc_register_spilled(explicit_reg);
}

void unregister_current_thread() {
  gcThread* t = tl_gc.rec;
  if (!t) return;
  alloc::lock_guard g(g_reg_lock);
  busy_enter();
  t->work.flush();
  // Its GC cache goes too: stops flush every cache on the assumption that
  // its owner is stopped, and the next GC allocation must take the slow
  // path, which registers the thread again (its stack a root once more).
  if (auto* c = static_cast<gcCache*>(alloc::tl_thread.gccache)) flush_cache(c);
  alloc::tl_thread.gccache = nullptr;
  busy_exit();
  gcThread** pp = &g_threads;
  while (*pp != t) pp = &(*pp)->next;
  *pp = t->next;
  g_nthreads--;
  tl_gc.rec = nullptr;
  tl_gc.ready = 0;
  t->~gcThread();
  g_threadalloc.free(t, alloc::coarse_nanotime());
}

size_t nthreads() {
  return __atomic_load_n(&g_nthreads, __ATOMIC_RELAXED);
}

namespace {

// Signals a program may give the collector: catchable, asynchronous, not
// glibc's own (SIGRTMIN is already past those).
struct sigName {
  const char* name;
  int sig;
};
constexpr sigName kSigNames[] = {
    {"SIGHUP", SIGHUP},   {"SIGINT", SIGINT},     {"SIGQUIT", SIGQUIT},
    {"SIGUSR1", SIGUSR1}, {"SIGUSR2", SIGUSR2},   {"SIGPIPE", SIGPIPE},
    {"SIGALRM", SIGALRM}, {"SIGTERM", SIGTERM},   {"SIGSTKFLT", SIGSTKFLT},
    {"SIGCHLD", SIGCHLD}, {"SIGCONT", SIGCONT},   {"SIGTSTP", SIGTSTP},
    {"SIGTTIN", SIGTTIN}, {"SIGTTOU", SIGTTOU},   {"SIGURG", SIGURG},
    {"SIGXCPU", SIGXCPU}, {"SIGXFSZ", SIGXFSZ},   {"SIGVTALRM", SIGVTALRM},
    {"SIGPROF", SIGPROF}, {"SIGWINCH", SIGWINCH}, {"SIGIO", SIGIO},
    {"SIGPWR", SIGPWR},   {"SIGSYS", SIGSYS},
};

bool usable_signal(int sig) {
  if (sig >= SIGRTMIN && sig <= SIGRTMAX) return true;
  for (const sigName& n : kSigNames)
    if (n.sig == sig) return true;
  return false;
}

// GORT_GC_SIGNAL: a name (SIGXCPU or XCPU), SIGRTMIN+N, SIGRTMAX-N, or a
// number; -1 if it is none of those or not a signal the collector may use.
int parse_signal(const char* v) {
  char* end;
  if (*v >= '0' && *v <= '9') {
    long n = strtol(v, &end, 10);
    return *end == '\0' && n > 0 && n < 1000 && usable_signal(static_cast<int>(n))
               ? static_cast<int>(n)
               : -1;
  }
  const char* name = strncmp(v, "SIG", 3) == 0 ? v + 3 : v;
  for (const char* rt : {"RTMIN", "RTMAX"}) {
    size_t len = strlen(rt);
    if (strncmp(name, rt, len) != 0) continue;
    int base = rt[3] == 'I' ? SIGRTMIN : SIGRTMAX;
    if (name[len] == '\0') return base;
    if (name[len] != (base == SIGRTMIN ? '+' : '-')) return -1;
    long n = strtol(name + len + 1, &end, 10);
    if (*end != '\0' || end == name + len + 1 || n < 0 || n > 64) return -1;
    int sig = base == SIGRTMIN ? base + static_cast<int>(n) : base - static_cast<int>(n);
    return usable_signal(sig) ? sig : -1;
  }
  for (const sigName& n : kSigNames)
    if (strcmp(name, n.name + 3) == 0) return n.sig;
  return -1;
}

}  // namespace

void roots_init() {
  make_key();
  if (const char* v = getenv("GORT_GC_SIGNAL")) {
    int sig = parse_signal(v);
    if (sig < 0)
      alloc::fatal(
          "GORT_GC_SIGNAL=%s: expected a signal the program does not use, as a name (SIGXCPU), "
          "SIGRTMIN+N or a number; not SIGKILL, SIGSTOP or a fault signal (docs/tuning.md)",
          v);
    g_stop_signal = sig;
  }
  // Never replace a handler the program or another runtime installed (Boehm
  // GC and Mono stop their threads with SIGPWR too): both would break.
  struct sigaction old;
  if (sigaction(g_stop_signal, nullptr, &old) == 0 && old.sa_handler != SIG_DFL &&
      old.sa_handler != SIG_IGN && old.sa_sigaction != stop_handler)
    alloc::fatal(
        "gc: signal %d (%s), the collector's stop signal, already has a handler installed by the "
        "program or another runtime (Boehm GC and Mono use SIGPWR); set GORT_GC_SIGNAL to a "
        "signal nothing else uses, e.g. GORT_GC_SIGNAL=SIGRTMIN+6 (docs/tuning.md)",
        g_stop_signal, strsignal(g_stop_signal));
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = stop_handler;
  // SA_ONSTACK: a task near the end of its stack has no room for the
  // kernel's signal frame; every M has an alternate stack.
  sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
  sigfillset(&sa.sa_mask);
  sigaction(g_stop_signal, &sa, nullptr);
  __atomic_store_n(&alloc::g_lock_wait_poll, &stop_poll, __ATOMIC_RELEASE);
}

void roots_fork_reg(int phase) {
  fork_locks(phase, {&g_key_lock, &g_reg_lock});
}

void roots_fork_tables(int phase) {
  fork_locks(phase, {&g_roots_lock, &g_handles_lock});
}

void roots_fork_child() {
  gcThread* self = tl_gc.rec;
  g_threads = self;
  g_nthreads = self ? 1 : 0;
  if (self) {
    self->next = nullptr;
    self->tid = static_cast<pid_t>(syscall(SYS_gettid));
  }
}

// ---- stopping the world ----

// How long a thread that polled last time has to stop itself at a poll
// before the collector signals it (see stop_the_world).
constexpr int64_t kPollGraceNs = 20000;

int64_t stop_the_world() {
  rt::trace::stw_begin();
  int64_t t0 = alloc::nanotime();
  g_reg_lock.lock();
  uint32_t e = g_stw_epoch.load(std::memory_order_relaxed) + 1;
  g_nacked.store(0, std::memory_order_relaxed);
  g_stw_epoch.store(e, std::memory_order_release);
  // Every thread is asked through its pending word, which it polls at
  // every busy_exit (each GC allocation, each barrier's slow half), and by
  // the signal, for a thread that computes, blocks or waits outside gort.
  // A poll costs a cache miss; a signal costs the collector 15-45 us of
  // tgkill per thread on a virtual machine (an IPI) and as much again to
  // arrive. So a thread that stopped itself at a poll last time is given
  // kPollGraceNs to do so again before it is signalled (twice: see
  // gcThread::polls); the others (idle Ms, threads in system calls or long
  // computations) are signalled at once. Whichever request comes second
  // finds the ack for this epoch.
  uint32_t want = 0;
  for (gcThread* t = g_threads; t; t = t->next) {
    __atomic_store_n(t->pending, 1, __ATOMIC_RELEASE);
    want++;
  }
  for (gcThread* t = g_threads; t; t = t->next)
    if (!t->polls) tgkill_thread(t->tid);
  while (g_nacked.load(std::memory_order_acquire) < want && alloc::nanotime() - t0 < kPollGraceNs)
    __builtin_ia32_pause();
  for (gcThread* t = g_threads; t; t = t->next)
    if (t->polls && t->acked.load(std::memory_order_acquire) != e) tgkill_thread(t->tid);
  int64_t last_signal = alloc::nanotime();
  // Spin first: a signalled thread usually answers within microseconds,
  // sooner than a futex wake-up would reach this thread.
  for (int i = 0; i < 20000 && g_nacked.load(std::memory_order_acquire) < want; i++)
    __builtin_ia32_pause();
  for (;;) {
    uint32_t n = g_nacked.load(std::memory_order_acquire);
    if (n >= want) break;
    alloc::futex_wait(&g_nacked, n, 20000);
    int64_t now = alloc::nanotime();
    if (now - last_signal < 20000) continue;
    // Threads that were busy or switching stacks: ask again.
    for (gcThread* t = g_threads; t; t = t->next)
      if (t->acked.load(std::memory_order_acquire) != e) tgkill_thread(t->tid);
    last_signal = now;
    if (now - t0 > 20LL * 1000000000) {
      for (gcThread* t = g_threads; t; t = t->next)
        if (t->acked.load(std::memory_order_acquire) != e)
          alloc::fatal("gc: thread %d did not stop for the collector in 20 s",
                       static_cast<int>(t->tid));
    }
  }
  return alloc::nanotime() - t0;
}

void start_the_world() {
  rt::trace::stw_end();
  g_stw_release.store(g_stw_epoch.load(std::memory_order_relaxed), std::memory_order_release);
  alloc::futex_wake(&g_stw_release, 1 << 30);
  g_reg_lock.unlock();
}

void scan_stopped_threads(gcWork& w) {
  g_nskipped = 0;
  g_skipped_overflow = false;
  for (gcThread* t = g_threads; t; t = t->next) {
    scan_thread(t, w);
    mark_thread_tasks(t, w);
  }
}

void scan_leftover_tasks(gcWork& w) {
  // Tasks on a thread's current stack now: that stack, live part.
  uint32_t gen = g_scangen.load(std::memory_order_relaxed);
  for (gcThread* t = g_threads; t; t = t->next) {
    rt::g* cg = t->stop_curg;
    if (!cg || rt::gchook::scan_word(cg).load(std::memory_order_relaxed) == gen) continue;
    if (t->owns_curg) scan_thread(t, w);
    mark_thread_tasks(t, w);
  }
  auto finish = [&](rt::g* gp) {
    std::atomic<uint32_t>& word = rt::gchook::scan_word(gp);
    if (word.load(std::memory_order_relaxed) == gen) return;
    if (rt::gchook::live_task(gp)) {
      // Not on any stopped thread's stack (those were done above), so its
      // saved context, if any, is complete.
      for (gcThread* t = g_threads; t; t = t->next)
        if (thread_holds(t, gp)) {
          scan_thread(t, w);
          scan_closure(gp, w);
          word.store(gen, std::memory_order_relaxed);
          return;
        }
      scan_parked(gp, w);
    }
    word.store(gen, std::memory_order_relaxed);
  };
  if (g_skipped_overflow) {
    for (rt::g* gp = rt::gchook::first_task(); gp; gp = rt::gchook::next_task(gp)) finish(gp);
  } else {
    for (size_t i = 0; i < g_nskipped; i++) finish(g_skipped[i]);
  }
  g_nskipped = 0;
}

void shade_stopped_registers(gcWork& w) {
  for (gcThread* t = g_threads; t; t = t->next) {
    scan_range(reinterpret_cast<uintptr_t>(t->regs),
               reinterpret_cast<uintptr_t>(t->regs) + sizeof t->regs, w);
    // The interrupted frame too: unoptimised, the barrier keeps its values
    // in its frame (a leaf's red zone), not in registers. ranges[0] starts
    // at the red zone below the stopped stack pointer.
    if (t->nranges > 0) {
      const auto& r = t->ranges[0];
      scan_range(r.lo, r.hi - r.lo > kStoppedFrame ? r.lo + kStoppedFrame : r.hi, w);
    }
  }
}

void flush_thread_work() {
  for (gcThread* t = g_threads; t; t = t->next) t->work.flush();
}

uint64_t take_thread_marked() {
  uint64_t n = 0;
  for (gcThread* t = g_threads; t; t = t->next) {
    n += t->work.bytes_marked;
    t->work.bytes_marked = 0;
  }
  return n;
}

// ---- concurrent roots ----

void scan_tasks(gcWork& w) {
  for (rt::g* gp = rt::gchook::first_task(); gp; gp = rt::gchook::next_task(gp)) {
    if (try_scan(gp, w, false) == claim::skipped) {
      if (g_nskipped < kSkippedMax)
        g_skipped[g_nskipped++] = gp;
      else
        g_skipped_overflow = true;
    }
  }
}

void scan_task_before_run(rt::g* gp) {
  gcThread* t = tl_gc.rec;
  if (!t) {
    // An M that is not registered (cannot happen: Ms register at start)
    // would have nowhere to put grey objects.
    alloc::fatal("gc: an unregistered thread runs tasks");
  }
  busy_enter();
  try_scan(gp, t->work, true);
  busy_exit();
}

void shade_preempted_stack(uintptr_t lo, uintptr_t hi) {
  gcThread* t = tl_gc.rec;
  if (!t || !mark_busy_enter()) return;  // every M is registered
  scan_range(lo, hi, t->work);
  busy_exit();
}

void scan_root_ranges(gcWork& w) {
  // The world may be running: the lock keeps the table still. The collector
  // is not in a busy region but is not stoppable either.
  alloc::lock_guard g(g_roots_lock);
  for (size_t i = 0; i < g_nroots; i++) scan_range(g_roots[i].lo, g_roots[i].hi, w);
  for (rootNode* n = g_root_nodes; n; n = n->next) scan_node(n, w);
}

void scan_closure_range(uintptr_t lo, uintptr_t hi, gcWork& w) {
  scan_range(lo, hi, w);
  for (uintptr_t a = (lo + 7) & ~uintptr_t{7}; a + 8 <= hi; a += 8) {
    auto* p = reinterpret_cast<void*>(
        __atomic_load_n(reinterpret_cast<const uintptr_t*>(a), __ATOMIC_RELAXED));
    // usable_size answers 0 for anything but the start of a malloc block.
    size_t n = alloc::usable_size(p);
    if (n) {
      uintptr_t b = reinterpret_cast<uintptr_t>(p);
      scan_range(b, b + (n < kClosureBlockMax ? n : kClosureBlockMax), w);
    }
  }
}

void shade_moved_slow(const void* src, size_t n) {
  if (!tl_gc.rec && !register_current_thread(false)) return;
  if (!mark_busy_enter()) return;  // the cycle ended since the caller looked
  uintptr_t lo = reinterpret_cast<uintptr_t>(src);
  scan_range(lo, lo + n, tl_gc.rec->work);
  busy_exit();
}

void add_root_node(rootNode* n, const void* lo, size_t len) {
  n->lo = reinterpret_cast<uintptr_t>(lo);
  n->hi = n->lo + len;
  // Added while marking: what it holds now was moved in without a barrier.
  if (g_marking.load(std::memory_order_relaxed) && !tl_gc.rec) register_current_thread(false);
  busy_lock g(g_roots_lock);
  if (g_marking.load(std::memory_order_relaxed) && tl_gc.rec) scan_node(n, tl_gc.rec->work);
  n->prev = nullptr;
  n->next = g_root_nodes;
  if (g_root_nodes) g_root_nodes->prev = n;
  g_root_nodes = n;
  n->linked = true;
}

void remove_root_node(rootNode* n) {
  if (!n->linked) return;
  // Removing a root deletes its pointers: shade them while marking (on
  // whatever thread removes it: registered first, outside the lock).
  if (g_marking.load(std::memory_order_relaxed) && !tl_gc.rec) register_current_thread(false);
  busy_lock g(g_roots_lock);
  if (g_marking.load(std::memory_order_relaxed) && tl_gc.rec) scan_node(n, tl_gc.rec->work);
  if (n->prev)
    n->prev->next = n->next;
  else
    g_root_nodes = n->next;
  if (n->next) n->next->prev = n->prev;
  n->linked = false;
}

void for_each_root_word(void (*fn)(uintptr_t slot, uintptr_t v, void* arg), void* arg) {
  auto range = [&](uintptr_t lo, uintptr_t hi) {
    for (uintptr_t a = (lo + 7) & ~uintptr_t{7}; a + 8 <= hi; a += 8)
      fn(a, __atomic_load_n(reinterpret_cast<const uintptr_t*>(a), __ATOMIC_RELAXED), arg);
  };
  {
    busy_lock g(g_roots_lock);
    for (size_t i = 0; i < g_nroots; i++) range(g_roots[i].lo, g_roots[i].hi);
    for (rootNode* n = g_root_nodes; n; n = n->next) range(n->lo, n->hi);
  }
  busy_lock g(g_handles_lock);
  for (handleChunk* c = g_handle_chunks; c; c = c->next)
    for (size_t i = 0; i < c->used; i++) {
      void* v = __atomic_load_n(&c->slot[i], __ATOMIC_RELAXED);
      if (!slot_free(v))
        fn(reinterpret_cast<uintptr_t>(&c->slot[i]), reinterpret_cast<uintptr_t>(v), arg);
    }
}

void scan_handles(gcWork& w) {
  alloc::lock_guard g(g_handles_lock);
  for (handleChunk* c = g_handle_chunks; c; c = c->next)
    for (size_t i = 0; i < c->used; i++) {
      void* v = __atomic_load_n(&c->slot[i], __ATOMIC_RELAXED);
      if (!slot_free(v)) shade(reinterpret_cast<uintptr_t>(v), w);
    }
}

}  // namespace gort::gc

using namespace gort::gc;
namespace alloc = gort::alloc;

GORT_EXPORT int gort_gc_register_thread(void) {
  ensure_started();
  return register_current_thread(true) ? 0 : -1;
}

GORT_EXPORT void gort_gc_unregister_thread(void) {
  unregister_current_thread();
}

GORT_EXPORT int gort_gc_add_roots(const void* lo, size_t len) {
  uintptr_t a = reinterpret_cast<uintptr_t>(lo);
  if (!lo || a + len < a) {
    errno = EINVAL;
    return -1;
  }
  ensure_started();
  // What the range holds already reached it without a barrier: every scope
  // object it points to escapes (a root outlives any scope).
  for (uintptr_t w = (a + 7) & ~uintptr_t{7}; w + 8 <= a + len; w += 8)
    scope_escape(nullptr, reinterpret_cast<const void*>(__atomic_load_n(
                              reinterpret_cast<const uintptr_t*>(w), __ATOMIC_RELAXED)));
  busy_lock g(g_roots_lock);
  if (g_nroots == g_roots_cap) {
    size_t cap = g_roots_cap ? g_roots_cap * 2 : 256;
    auto* n = static_cast<rootRange*>(alloc::sys_map(cap * sizeof(rootRange), 4096));
    if (!n) {
      errno = ENOMEM;
      return -1;
    }
    if (g_roots) {
      memcpy(n, g_roots, g_nroots * sizeof(rootRange));
      alloc::sys_unmap(g_roots, g_roots_cap * sizeof(rootRange));
    }
    g_roots = n;
    g_roots_cap = cap;
  }
  g_roots[g_nroots++] = rootRange{a, a + len};
  // Added while marking: scanned now (its contents are this thread's).
  if (g_marking.load(std::memory_order_relaxed) && tl_gc.rec)
    scan_range(a, a + len, tl_gc.rec->work);
  return 0;
}

GORT_EXPORT int gort_gc_remove_roots(const void* lo) {
  uintptr_t a = reinterpret_cast<uintptr_t>(lo);
  busy_lock g(g_roots_lock);
  for (size_t i = 0; i < g_nroots; i++) {
    if (g_roots[i].lo == a) {
      // Removing a root deletes its pointers: shade them while marking.
      if (g_marking.load(std::memory_order_relaxed) && tl_gc.rec)
        scan_range(g_roots[i].lo, g_roots[i].hi, tl_gc.rec->work);
      g_roots[i] = g_roots[--g_nroots];
      return 0;
    }
  }
  errno = ENOENT;
  return -1;
}

GORT_EXPORT gort_gc_handle* gort_gc_handle_new(void* obj) {
  ensure_started();
  if (!tl_gc.rec && !register_current_thread(false)) return nullptr;
  void** slot;
  {
    busy_lock g(g_handles_lock);
    if (!g_handle_free) {
      if (!g_handle_chunks || g_handle_chunks->used == handleChunk::kN) {
        auto* c = static_cast<handleChunk*>(alloc::sys_map(sizeof(handleChunk), 4096));
        if (!c) return nullptr;
        c->next = g_handle_chunks;
        c->used = 0;
        g_handle_chunks = c;
      }
      slot = &g_handle_chunks->slot[g_handle_chunks->used];
      *slot = nullptr;
      __atomic_store_n(&g_handle_chunks->used, g_handle_chunks->used + 1, __ATOMIC_RELEASE);
    } else {
      slot = g_handle_free;
      g_handle_free = reinterpret_cast<void**>(reinterpret_cast<uintptr_t>(*slot) & ~uintptr_t{1});
      *slot = nullptr;
    }
    __atomic_store_n(slot, obj, __ATOMIC_RELAXED);
    if (g_marking.load(std::memory_order_relaxed))
      shade(reinterpret_cast<uintptr_t>(obj), tl_gc.rec->work);
  }
  scope_escape(nullptr, obj);  // a handle keeps obj past any scope
  return reinterpret_cast<gort_gc_handle*>(slot);
}

GORT_EXPORT void gort_gc_handle_set(gort_gc_handle* h, void* obj) {
  if (h) gort_gc_write(reinterpret_cast<void**>(h), obj);
}

GORT_EXPORT void* gort_gc_handle_get(const gort_gc_handle* h) {
  return h ? __atomic_load_n(reinterpret_cast<void* const*>(h), __ATOMIC_RELAXED) : nullptr;
}

GORT_EXPORT void gort_gc_handle_free(gort_gc_handle* h) {
  if (!h) return;
  void** slot = reinterpret_cast<void**>(h);
  if (!tl_gc.rec) register_current_thread(false);
  busy_lock g(g_handles_lock);
  void* old = *slot;
  if (slot_free(old))
    alloc::fatal("gort_gc_handle_free(%p): the handle was freed already", static_cast<void*>(h));
  if (g_marking.load(std::memory_order_relaxed) && tl_gc.rec)
    shade(reinterpret_cast<uintptr_t>(old), tl_gc.rec->work);
  __atomic_store_n(slot, reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(g_handle_free) | 1),
                   __ATOMIC_RELAXED);
  g_handle_free = slot;
}
