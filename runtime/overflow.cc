// Stack overflow reports: a task that runs into its stack's guard page gets
// a message naming it and the stack size instead of a bare SIGSEGV.
//
// gort::run installs a SIGSEGV handler (SA_ONSTACK) the first time it
// starts, and every M runs with an alternate signal stack, since the
// faulting stack has no room left. The handler only claims faults inside
// the guard page of the task running on this M; any other fault goes to the
// handler that was installed before gort's (or, for the default action, the
// handler is removed and the faulting instruction runs again, so the
// process dies as it would have without gort, with a core if enabled).
#include "runtime/overflow.h"

#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>

#include "alloc/mspan.h"
#include "runtime/proc.h"

namespace gort::rt {

namespace {

struct sigaction g_old_segv;
constexpr size_t kAltStack = 64 << 10;

void on_segv(int sig, siginfo_t* info, void* uctx) {
  m* mp = getm();
  g* gp = mp ? mp->curg : nullptr;
  uintptr_t a = reinterpret_cast<uintptr_t>(info->si_addr);
  if (gp && gp->stk.span && a >= gp->stk.span->base && a < gp->stk.lo) {
    char buf[160];
    int n = snprintf(buf, sizeof buf,
                     "gort: fatal error: task %llu overflowed its stack (%zu KiB; raise "
                     "GORT_STACKSIZE or RunOptions::stack_size)\n",
                     static_cast<unsigned long long>(gp->goid), (gp->stk.hi - gp->stk.lo) >> 10);
    if (n > 0) (void)!write(2, buf, static_cast<size_t>(n));
    _exit(2);
  }
  // Not ours: whatever would have happened without gort.
  if (g_old_segv.sa_flags & SA_SIGINFO) {
    if (g_old_segv.sa_sigaction) return g_old_segv.sa_sigaction(sig, info, uctx);
  } else if (g_old_segv.sa_handler != SIG_DFL && g_old_segv.sa_handler != SIG_IGN) {
    return g_old_segv.sa_handler(sig);
  }
  signal(SIGSEGV, SIG_DFL);  // returning re-runs the fault under the default action
}

}  // namespace

void overflow_install() {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_segv;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGSEGV, &sa, &g_old_segv);
}

void overflow_altstack() {
  stack_t cur;
  if (sigaltstack(nullptr, &cur) == 0 && !(cur.ss_flags & SS_DISABLE)) return;  // has one
  void* p = mmap(nullptr, kAltStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return;  // no report on overflow; nothing else changes
  stack_t ss;
  ss.ss_sp = p;
  ss.ss_size = kAltStack;
  ss.ss_flags = 0;
  if (sigaltstack(&ss, nullptr) != 0) munmap(p, kAltStack);
}

}  // namespace gort::rt
