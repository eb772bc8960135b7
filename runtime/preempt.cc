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
// EINTR as they would for any signal. It runs on the interrupted task's
// stack (no SA_ONSTACK) and yields from inside the handler only at a safe
// point:
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
// Otherwise the handler returns at once and sysmon asks again 10 ms later.
//
// Yielding in the handler switches stacks with the kernel's signal frame
// still on the task's stack; the task resumes, maybe on another M, by
// returning from the handler, and rt_sigreturn restores its registers there.
// Before the switch the handler unblocks SIGURG on this thread (it goes on
// running other tasks); after it, it writes the current thread's signal
// mask and alternate signal stack into the frame, so the return restores
// the resuming thread's own, and restores errno as the task last saw it.
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
#include "runtime/proc.h"
#include "runtime/runq.h"

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
      !(gp->stk.span && sp > gp->stk.lo && sp < gp->stk.hi) || !safe_pc(pc)) {
    errno = saved;
    return;  // not at a safe point: sysmon asks again
  }
  sched.async_preempts.fetch_add(1, std::memory_order_relaxed);
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, kPreemptSignal);
  pthread_sigmask(SIG_UNBLOCK, &s, nullptr);
  gopreempt(mp, gp);
  // Back, maybe on another thread: that thread's mask and alternate stack.
  pthread_sigmask(SIG_SETMASK, nullptr, &uc->uc_sigmask);
  stack_t ss;
  if (sigaltstack(nullptr, &ss) == 0) uc->uc_stack = ss;
  errno = saved;
}

}  // namespace

void gopreempt(m* mp, g* gp) {
  gp->preempt.store(false, std::memory_order_relaxed);
  sched.preempts.fetch_add(1, std::memory_order_relaxed);
  gp->status.store(gstatus::runnable, std::memory_order_relaxed);
  mp->next_after = after{preempt_after, nullptr, gp};
  switch_out(mp, gp);
}

void preemptone(p* pp) {
  m* mp = pp->mp.load(std::memory_order_acquire);
  if (!mp) return;
  g* gp = __atomic_load_n(&mp->curg, __ATOMIC_ACQUIRE);
  if (!gp) return;
  gp->preempt.store(true, std::memory_order_release);
  if (g_async && mp->procid) syscall(SYS_tgkill, getpid(), mp->procid, kPreemptSignal);
}

void preempt_init() {
  g_async = !alloc::g_options.asyncpreemptoff;
  if (!g_async) return;
  dl_iterate_phdr(add_object, nullptr);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = sigpreempt;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(kPreemptSignal, &sa, &g_old_action);
  if (g_old_action.sa_sigaction == sigpreempt) memset(&g_old_action, 0, sizeof g_old_action);
}

}  // namespace gort::rt
