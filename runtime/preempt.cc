// Preemption: a task that has run for 10 ms is asked to yield (Go's
// preempt.go and the signal half of signal_unix.go).
//
// sysmon notices a P whose schedtick has not moved for 10 ms and calls
// preemptone: it sets the running task's g::preempt, then (unless
// GORT_DEBUG=asyncpreemptoff=1) sends its M the preemption signal.
//
// Cooperative. preempt_check (proc.h), one relaxed load, runs at the
// runtime's safe points: channel operations and select, leaving a blocking
// call, gort::blocking. A task that sees its flag yields to the global run
// queue (gopreempt), behind the tasks that waited while it ran.
//
// Asynchronous, for a task that makes no runtime call (a loop on an atomic
// flag). The signal is SIGURG, as in Go: the kernel sends it only for
// out-of-band socket data to a process that asked for it with F_SETOWN,
// which few programs do; it is ignored by default, and debuggers pass it
// through. A handler the program installed before the first gort::run is
// kept and called for every SIGURG that is not a preemption request. The
// handler is installed with SA_RESTART, so a system call it interrupts is
// restarted where the kernel allows (read, write, accept...); calls that
// never restart after a handler (poll, epoll_wait, nanosleep, select) return
// EINTR as they would for any signal. It runs on the M's alternate signal
// stack (SA_ONSTACK: a task spinning near the end of its stack must not
// overflow because a signal came) and yields only at a safe point:
//  - the thread is an M running a task (curg) that was asked to yield, holds
//    a P, and is on that task's stack;
//  - the interrupted PC is in the program's own code: the main executable or
//    a library that is not the C or C++ runtime or the dynamic loader (found
//    with dl_iterate_phdr when the first run starts), and not gort's own
//    code, which the build puts in one section, gort_text, in the static
//    library as in the shared one. So a task is never preempted inside
//    gort, libc (malloc's locks, stdio's), libstdc++ or ld.so, whose locks
//    belong to the thread;
//  - not inside a collector busy region (gc/heap.h), nor while the runtime
//    runs the program's code under a runtime lock (g::nopreempt: a channel
//    element's move constructor).
//  - the task's stack has 16 KiB of room below the interrupted stack
//    pointer (a task that deep is preempted at its next runtime call).
// Otherwise the handler returns at once and sysmon asks again 10 ms later.
//
// To yield, the handler copies the kernel's signal frame (registers and
// vector state) from the alternate stack onto the task's stack, below the
// red zone, moves there and switches out; the task resumes, maybe on
// another M, by an rt_sigreturn on that copy, which restores every
// register. (It cannot yield on the alternate stack: that belongs to the
// M, which reuses it for its next signal.) Before the switch it unblocks
// SIGURG on this thread (it goes on running other tasks); after it, it
// writes the current thread's signal mask and alternate signal stack into
// the frame, so the return restores the resuming thread's own, and
// restores errno as the task last saw it. While the copy is on the task's
// stack the collector scans it with the stack, registers included; while
// the collector marks, the handler first shades the copy and the stack
// above it (the task may be inside the program's inline write barrier, its
// stack black already, and mark termination may come before it runs again:
// gc/roots.h, shade_preempted_stack).
//
// What a task may hold when it is preempted or resumes on another M is in
// docs/runtime.md ("What a task may hold"): thread_local addresses and
// std::mutex across a blocking call do not follow it.
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include "alloc/options.h"
#include "alloc/sys.h"
#include "gc/heap.h"
#include "gc/roots.h"
#include "runtime/proc.h"
#include "runtime/runq.h"
#include "runtime/trace.h"

// The bounds of gort's own code (the Makefile renames every object's text
// section to gort_text; the linker defines these).
extern "C" char __start_gort_text[] __attribute__((weak, visibility("hidden")));
extern "C" char __stop_gort_text[] __attribute__((weak, visibility("hidden")));

namespace gort::rt {

namespace {

constexpr int kPreemptSignal = SIGURG;

// Text ranges where a task may be preempted: the program's own.
struct textRange {
  uintptr_t lo, hi;
};
constexpr int kMaxRanges = 64;
textRange g_ranges[kMaxRanges];
int g_nranges = 0;
bool g_async = false;
struct sigaction g_old_action;  // the program's own SIGURG handler, if any

// Libraries whose code is never a safe point.
bool system_object(const char* path) {
  const char* base = strrchr(path, '/');
  base = base ? base + 1 : path;
  static const char* const kDeny[] = {"libc.so",   "libc-",    "ld-linux", "ld-",
                                      "libstdc++", "libgcc_s", "libm.so",  "libpthread",
                                      "libdl.so",  "librt.so", "libgort",  "linux-vdso",
                                      "libasan",   "libtsan",  "libubsan"};
  for (const char* d : kDeny)
    if (strncmp(base, d, strlen(d)) == 0) return true;
  return false;
}

int add_object(struct dl_phdr_info* info, size_t, void*) {
  const char* name = info->dlpi_name ? info->dlpi_name : "";
  bool main_program = name[0] == 0 && g_nranges == 0;
  if (!main_program && (name[0] == 0 || system_object(name))) return 0;
  for (int i = 0; i < info->dlpi_phnum && g_nranges < kMaxRanges; i++) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_LOAD || !(ph.p_flags & PF_X)) continue;
    uintptr_t lo = info->dlpi_addr + ph.p_vaddr;
    g_ranges[g_nranges++] = {lo, lo + ph.p_memsz};
  }
  return 0;
}

bool in_gort(uintptr_t pc) {
  return pc >= reinterpret_cast<uintptr_t>(__start_gort_text) &&
         pc < reinterpret_cast<uintptr_t>(__stop_gort_text);
}

bool safe_pc(uintptr_t pc) {
  if (in_gort(pc)) return false;
  for (int i = 0; i < g_nranges; i++)
    if (pc >= g_ranges[i].lo && pc < g_ranges[i].hi) return true;
  return false;
}

void forward(int sig, siginfo_t* info, void* uc) {
  if (g_old_action.sa_flags & SA_SIGINFO) {
    if (g_old_action.sa_sigaction) g_old_action.sa_sigaction(sig, info, uc);
  } else if (g_old_action.sa_handler != SIG_DFL && g_old_action.sa_handler != SIG_IGN) {
    g_old_action.sa_handler(sig);
  }
}

void preempt_after(void*, g* prev) {
  alloc::lock_guard l(sched.lock);
  globrunqput(prev);
}

// Room a task's stack must have below the interrupted stack pointer for
// the copied signal frame (up to ~3 KiB of vector state on AVX-512
// machines) and the frames of gopreempt and of anything it calls.
constexpr uintptr_t kPreemptRoom = 16 << 10;
constexpr uintptr_t kRedZone = 128;

// The kernel's frame for a handler: [pretcode][ucontext][siginfo]...[fpstate],
// fpstate 64-byte aligned above the rest. Its size, from the frame's start
// (ucv - 8) to the end of fpstate; 0 if it cannot be told.
size_t signal_frame_size(const ucontext_t* uc) {
  auto* fp = reinterpret_cast<const unsigned char*>(uc->uc_mcontext.fpregs);
  if (!fp) return 0;
  size_t fpsize = 512;  // fxsave's area
  uint32_t magic1, extended;
  memcpy(&magic1, fp + 464, 4);  // fxsave's sw_reserved: struct _fpx_sw_bytes
  memcpy(&extended, fp + 468, 4);
  if (magic1 == 0x46505853u && extended >= 512 && extended <= (64u << 10)) fpsize = extended;
  auto lo = reinterpret_cast<uintptr_t>(uc) - 8;
  auto fpend = reinterpret_cast<uintptr_t>(fp) + fpsize;
  if (fpend <= lo || fpend - lo > (64u << 10)) return 0;
  return fpend - lo;
}

// After the switch back to a task preempted in its handler (maybe on
// another M): the frame will restore this thread's signal mask and
// alternate stack, not the interrupted thread's, and errno as the task saw
// it.
void fix_frame_for_this_thread(ucontext_t* uc) {
  pthread_sigmask(SIG_SETMASK, nullptr, &uc->uc_sigmask);
  stack_t ss;
  if (sigaltstack(nullptr, &ss) == 0) {
    ss.ss_flags &= ~SS_ONSTACK;
    uc->uc_stack = ss;
  }
}

void unblock_preempt_signal() {
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, kPreemptSignal);
  pthread_sigmask(SIG_UNBLOCK, &s, nullptr);
}

// Runs on the task's stack, under the frame copied there: yields, then
// returns into the interrupted code through rt_sigreturn on the copy.
[[noreturn]] void preempt_on_task_stack(ucontext_t* uc) {
  int saved = cur_errno();
  m* mp = getm();
  // The frame copy starts 8 bytes below uc (its pretcode word).
  gc::shade_preempted_stack(reinterpret_cast<uintptr_t>(uc) - 8, mp->curg->stk.hi);
  unblock_preempt_signal();
  gopreempt(mp, mp->curg);
  fix_frame_for_this_thread(uc);
  cur_errno() = saved;  // on the thread it resumed on (proc.h)
  // rt_sigreturn reads the frame at rsp - 8 (its pretcode word): rsp is the
  // ucontext.
  asm volatile(
      "mov %0, %%rsp\n\t"
      "mov $15, %%eax\n\t"  // SYS_rt_sigreturn
      "syscall\n\t"
      "ud2"
      :
      : "r"(uc)
      : "memory");
  __builtin_unreachable();
}

// The handler runs on the M's alternate signal stack (SA_ONSTACK), so a
// task close to its stack's end does not overflow when the signal comes.
// It cannot yield there: the task may resume on another M, whose alternate
// stack is not this one, and this M reuses its own for the next signal. So
// at a safe point with room, it copies the kernel's frame onto the task's
// stack below the red zone (fpstate kept 64-byte aligned, as xrstor
// needs), moves to the task's stack under the copy and yields there; the
// kernel then restores every register from the copy (Go injects a call to
// asyncPreempt instead, which saves them by hand). A thread with no
// alternate stack runs the handler on the task's stack and yields in place.
void sigpreempt(int sig, siginfo_t* info, void* ucv) {
  int saved = errno;
  m* mp = getm();
  g* gp = mp ? mp->curg : nullptr;
  if (!gp || !gp->preempt.load(std::memory_order_relaxed)) {
    forward(sig, info, ucv);
    errno = saved;
    return;
  }
  auto* uc = static_cast<ucontext_t*>(ucv);
  uintptr_t pc = static_cast<uintptr_t>(uc->uc_mcontext.gregs[REG_RIP]);
  uintptr_t sp = static_cast<uintptr_t>(uc->uc_mcontext.gregs[REG_RSP]);
  if (!mp->pp || gp->nopreempt || gc::tl_gc.busy ||
      gp->status.load(std::memory_order_relaxed) != gstatus::running ||
      !(gp->stk.span && sp > gp->stk.lo + kPreemptRoom && sp <= gp->stk.hi) || !safe_pc(pc)) {
    errno = saved;
    return;  // not at a safe point: sysmon asks again
  }
  auto here = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
  if (here >= gp->stk.lo && here < gp->stk.hi) {
    // No alternate stack: the frame is already on the task's stack.
    sched.async_preempts.fetch_add(1, std::memory_order_relaxed);
    gc::shade_preempted_stack(reinterpret_cast<uintptr_t>(uc) - 8, gp->stk.hi);
    unblock_preempt_signal();
    gopreempt(mp, gp);
    fix_frame_for_this_thread(uc);
    cur_errno() = saved;
    return;
  }
  size_t len = signal_frame_size(uc);
  if (!len) {
    errno = saved;
    return;
  }
  auto lo = reinterpret_cast<uintptr_t>(uc) - 8;
  uintptr_t fpoff = reinterpret_cast<uintptr_t>(uc->uc_mcontext.fpregs) - lo;
  uintptr_t newfp = (sp - kRedZone - (len - fpoff)) & ~uintptr_t{63};
  uintptr_t newlo = newfp - fpoff;
  if (newlo < gp->stk.lo + kPreemptRoom / 2) {
    errno = saved;
    return;
  }
  sched.async_preempts.fetch_add(1, std::memory_order_relaxed);
  memcpy(reinterpret_cast<void*>(newlo), reinterpret_cast<void*>(lo), len);
  auto* copy = reinterpret_cast<ucontext_t*>(newlo + 8);
  copy->uc_mcontext.fpregs = reinterpret_cast<fpregset_t>(newfp);
  errno = saved;
  // Leave the alternate stack for good: call preempt_on_task_stack(copy)
  // with a 16-byte aligned stack pointer below the copy.
  uintptr_t newsp = (newlo - 64) & ~uintptr_t{15};
  asm volatile(
      "mov %0, %%rsp\n\t"
      "call *%1\n\t"
      "ud2"
      :
      : "r"(newsp), "r"(&preempt_on_task_stack), "D"(copy)
      : "memory");
  __builtin_unreachable();
}

}  // namespace

void gopreempt(m* mp, g* gp) {
  gp->preempt.store(false, std::memory_order_relaxed);
  sched.preempts.fetch_add(1, std::memory_order_relaxed);
  gp->status.store(gstatus::runnable, std::memory_order_relaxed);
  mp->next_after = after{preempt_after, nullptr, gp};
  switch_out(mp, gp, trace::kStopPreempted);
}

void turn_end_if_waiting(m* mp, g* gp) {
  p* pp = mp->pp;
  if (pp && (sched.runqsize.load(std::memory_order_relaxed) > 0 || !runq_empty(pp)))
    gp->preempt.store(true, std::memory_order_relaxed);
}

void io_turn_end() {
  m* mp = getm();
  if (!mp || !mp->curg) return;
  turn_end_if_waiting(mp, mp->curg);
  preempt_check();
}

void preemptone(p* pp) {
  m* mp = pp->mp.load(std::memory_order_acquire);
  if (!mp) return;
  g* gp = __atomic_load_n(&mp->curg, __ATOMIC_ACQUIRE);
  if (!gp) return;
  gp->preempt.store(true, std::memory_order_release);
  if (g_async && mp->procid) syscall(SYS_tgkill, getpid(), mp->procid, kPreemptSignal);
}

void preempt_thread_init() {
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, kPreemptSignal);
  pthread_sigmask(SIG_UNBLOCK, &s, nullptr);
}

void preempt_init() {
  g_async = !alloc::g_options.asyncpreemptoff;
  if (!g_async) return;
  dl_iterate_phdr(add_object, nullptr);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = sigpreempt;
  sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  sigaction(kPreemptSignal, &sa, &g_old_action);
  if (g_old_action.sa_sigaction == sigpreempt) memset(&g_old_action, 0, sizeof g_old_action);
}

}  // namespace gort::rt
