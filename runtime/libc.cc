// The blocking libc calls, interposed for tasks (as libco and libgo do):
// read, write, readv, writev, pread, pwrite, recv, recvfrom, recvmsg, send,
// sendto, sendmsg, accept, accept4, connect, poll, ppoll, select, pselect,
// epoll_wait, epoll_pwait, wait, waitpid, wait4, waitid, and the sleeps
// (nanosleep, clock_nanosleep, usleep, sleep).
//
// libgort defines these symbols. In a program linked with libgort.so (or
// LD_PRELOADed) they come before libc's; with libgort.a they are linked
// from the archive (run.cc refers to this file so that it always is). Each
// finds the real function with dlsym(RTLD_NEXT) on its first call and keeps
// it; before dlsym can answer (a call made while dlsym itself runs, or a
// static executable without a dynamic libc) it makes the raw system call.
//
// On a thread that runs no task, on an M's own stack (the scheduler, timer
// callbacks) and inside gort::blocking, a call is exactly libc's: same
// errno, EINTR, cancellation point. In a running task it is bracketed by
// entersyscall/exitsyscall (syscall.cc), so sysmon can give the P to another
// M while the call blocks; errno is read before the task may change M and
// set again on the M it comes back on. Sleeps in a task become timer waits
// that park the task and keep neither the M nor the P (so do poll() and
// select() with no descriptors, the old idiom for a sleep). With the
// netpoller (issue 12), calls on sockets and pipes will park the task on it
// instead: this file is where that plugs in (blocking_call).
#undef _FORTIFY_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>

#include "gort/runtime.h"
#include "runtime/proc.h"

#define GORT_EXPORT extern "C" __attribute__((visibility("default")))

namespace gort::rt {

namespace {

// Threads inside dlsym. No thread_local here: a call made while dlsym runs
// (on any thread) makes the raw system call rather than risk recursing.
std::atomic<int> g_resolving{0};

// The next definition of name after gort's (libc's), or null for now.
void* resolve(std::atomic<void*>& slot, const char* name) {
  void* fn = slot.load(std::memory_order_acquire);
  if (fn || g_resolving.load(std::memory_order_acquire)) return fn;
  g_resolving.fetch_add(1);
  fn = dlsym(RTLD_NEXT, name);
  g_resolving.fetch_sub(1);
  if (fn) slot.store(fn, std::memory_order_release);
  return fn;
}

// A running task (not in a blocking call already): the calls below hand
// off its P around the call.
inline bool on_task() {
  m* mp = getm();
  return mp && mp->curg && mp->curg->status.load(std::memory_order_relaxed) == gstatus::running;
}

// The caller's code may hold the address of errno from before the call (the
// compiler may: __errno_location is a const function) while the task moved
// to another M in exitsyscall or in the yield after it. So the call's errno
// is stored on the thread the task returns on and, if that is another one,
// at the old address too (that thread is in the scheduler or runs a task
// that will set its own errno with its next call; docs/runtime.md).
template <class F>
auto blocking_call(F f) {
  if (!on_task()) return f();
  int* old_errno = &errno;
  entersyscall();
  auto r = f();
  int e = errno;
  exitsyscall();
  preempt_check();
  errno = e;
  if (&errno != old_errno) *old_errno = e;
  return r;
}

// A task sleeps on a timer; errno is the task's across the switch.
void task_sleep(int64_t ns) {
  int e = errno;
  if (ns > 0) gort::sleep_for(Duration(ns));
  errno = e;
}

bool bad_timespec(const struct timespec* ts) {
  return ts->tv_sec < 0 || ts->tv_nsec < 0 || ts->tv_nsec >= 1000000000L;
}

int64_t timespec_ns(const struct timespec* ts) {
  constexpr int64_t kMax = INT64_MAX / 1000000000 - 1;
  if (ts->tv_sec > kMax) return INT64_MAX / 2;
  return static_cast<int64_t>(ts->tv_sec) * 1000000000 + ts->tv_nsec;
}

}  // namespace

}  // namespace gort::rt

using gort::rt::blocking_call;
using gort::rt::on_task;
using gort::rt::resolve;
using gort::rt::task_sleep;

// GORT_BLOCKING(ret, name, (params), (args), raw system call): defines name
// as libc's, bracketed as a blocking call on tasks.
#define GORT_BLOCKING(ret, name, params, args, raw)                           \
  GORT_EXPORT ret name params {                                               \
    static std::atomic<void*> real{nullptr};                                  \
    auto fn = reinterpret_cast<ret(*) params>(resolve(real, #name));          \
    return blocking_call([&]() -> ret { return fn ? fn args : (ret)(raw); }); \
  }

GORT_BLOCKING(ssize_t, read, (int fd, void* buf, size_t n), (fd, buf, n),
              syscall(SYS_read, fd, buf, n))
GORT_BLOCKING(ssize_t, write, (int fd, const void* buf, size_t n), (fd, buf, n),
              syscall(SYS_write, fd, buf, n))
GORT_BLOCKING(ssize_t, readv, (int fd, const struct iovec* iov, int n), (fd, iov, n),
              syscall(SYS_readv, fd, iov, n))
GORT_BLOCKING(ssize_t, writev, (int fd, const struct iovec* iov, int n), (fd, iov, n),
              syscall(SYS_writev, fd, iov, n))
GORT_BLOCKING(ssize_t, pread, (int fd, void* buf, size_t n, off_t off), (fd, buf, n, off),
              syscall(SYS_pread64, fd, buf, n, off))
GORT_BLOCKING(ssize_t, pwrite, (int fd, const void* buf, size_t n, off_t off), (fd, buf, n, off),
              syscall(SYS_pwrite64, fd, buf, n, off))
GORT_BLOCKING(ssize_t, recv, (int fd, void* buf, size_t n, int flags), (fd, buf, n, flags),
              syscall(SYS_recvfrom, fd, buf, n, flags, nullptr, nullptr))
GORT_BLOCKING(ssize_t, recvfrom,
              (int fd, void* buf, size_t n, int flags, struct sockaddr* a, socklen_t* alen),
              (fd, buf, n, flags, a, alen), syscall(SYS_recvfrom, fd, buf, n, flags, a, alen))
GORT_BLOCKING(ssize_t, recvmsg, (int fd, struct msghdr* msg, int flags), (fd, msg, flags),
              syscall(SYS_recvmsg, fd, msg, flags))
GORT_BLOCKING(ssize_t, send, (int fd, const void* buf, size_t n, int flags), (fd, buf, n, flags),
              syscall(SYS_sendto, fd, buf, n, flags, nullptr, 0))
GORT_BLOCKING(ssize_t, sendto,
              (int fd, const void* buf, size_t n, int flags, const struct sockaddr* a,
               socklen_t alen),
              (fd, buf, n, flags, a, alen), syscall(SYS_sendto, fd, buf, n, flags, a, alen))
GORT_BLOCKING(ssize_t, sendmsg, (int fd, const struct msghdr* msg, int flags), (fd, msg, flags),
              syscall(SYS_sendmsg, fd, msg, flags))
GORT_BLOCKING(int, accept, (int fd, struct sockaddr* a, socklen_t* alen), (fd, a, alen),
              syscall(SYS_accept, fd, a, alen))
GORT_BLOCKING(int, accept4, (int fd, struct sockaddr* a, socklen_t* alen, int flags),
              (fd, a, alen, flags), syscall(SYS_accept4, fd, a, alen, flags))
GORT_BLOCKING(int, connect, (int fd, const struct sockaddr* a, socklen_t alen), (fd, a, alen),
              syscall(SYS_connect, fd, a, alen))
GORT_BLOCKING(int, ppoll,
              (struct pollfd * fds, nfds_t n, const struct timespec* ts, const sigset_t* mask),
              (fds, n, ts, mask), syscall(SYS_ppoll, fds, n, ts, mask, _NSIG / 8))
GORT_BLOCKING(int, pselect,
              (int n, fd_set* r, fd_set* w, fd_set* e, const struct timespec* ts,
               const sigset_t* mask),
              (n, r, w, e, ts, mask), (errno = ENOSYS, -1))
GORT_BLOCKING(int, epoll_wait, (int fd, struct epoll_event* ev, int n, int ms), (fd, ev, n, ms),
              syscall(SYS_epoll_wait, fd, ev, n, ms))
GORT_BLOCKING(int, epoll_pwait,
              (int fd, struct epoll_event* ev, int n, int ms, const sigset_t* mask),
              (fd, ev, n, ms, mask), syscall(SYS_epoll_pwait, fd, ev, n, ms, mask, _NSIG / 8))
GORT_BLOCKING(pid_t, wait, (int* status), (status), syscall(SYS_wait4, -1, status, 0, nullptr))
GORT_BLOCKING(pid_t, waitpid, (pid_t pid, int* status, int options), (pid, status, options),
              syscall(SYS_wait4, pid, status, options, nullptr))
GORT_BLOCKING(pid_t, wait4, (pid_t pid, int* status, int options, struct rusage* ru),
              (pid, status, options, ru), syscall(SYS_wait4, pid, status, options, ru))
GORT_BLOCKING(int, waitid, (idtype_t type, id_t id, siginfo_t* info, int options),
              (type, id, info, options), syscall(SYS_waitid, type, id, info, options, nullptr))

// poll and select with no descriptors are sleeps.
GORT_EXPORT int poll(struct pollfd* fds, nfds_t n, int ms) {
  static std::atomic<void*> real{nullptr};
  if (n == 0 && ms > 0 && on_task()) {
    task_sleep(static_cast<int64_t>(ms) * 1000000);
    return 0;
  }
  auto fn = reinterpret_cast<int (*)(struct pollfd*, nfds_t, int)>(resolve(real, "poll"));
  return blocking_call([&]() -> int {
    return fn ? fn(fds, n, ms) : static_cast<int>(syscall(SYS_poll, fds, n, ms));
  });
}

GORT_EXPORT int select(int n, fd_set* r, fd_set* w, fd_set* e, struct timeval* tv) {
  static std::atomic<void*> real{nullptr};
  if (n == 0 && tv && tv->tv_sec >= 0 && tv->tv_usec >= 0 && on_task()) {
    task_sleep(static_cast<int64_t>(tv->tv_sec) * 1000000000 + tv->tv_usec * 1000LL);
    tv->tv_sec = tv->tv_usec = 0;  // as Linux does: the time left
    return 0;
  }
  auto fn = reinterpret_cast<int (*)(int, fd_set*, fd_set*, fd_set*, struct timeval*)>(
      resolve(real, "select"));
  return blocking_call([&]() -> int {
    return fn ? fn(n, r, w, e, tv) : static_cast<int>(syscall(SYS_select, n, r, w, e, tv));
  });
}

// ---- sleeps: timer waits on tasks

GORT_EXPORT int nanosleep(const struct timespec* req, struct timespec* rem) {
  static std::atomic<void*> real{nullptr};
  if (req && !gort::rt::bad_timespec(req) && on_task()) {
    task_sleep(gort::rt::timespec_ns(req));
    return 0;
  }
  auto fn = reinterpret_cast<int (*)(const struct timespec*, struct timespec*)>(
      resolve(real, "nanosleep"));
  return fn ? fn(req, rem) : static_cast<int>(syscall(SYS_nanosleep, req, rem));
}

GORT_EXPORT int clock_nanosleep(clockid_t clk, int flags, const struct timespec* req,
                                struct timespec* rem) {
  static std::atomic<void*> real{nullptr};
  bool timer_clock = clk == CLOCK_MONOTONIC || clk == CLOCK_REALTIME || clk == CLOCK_BOOTTIME;
  if (timer_clock && req && !gort::rt::bad_timespec(req) && on_task()) {
    int64_t ns = gort::rt::timespec_ns(req);
    if (flags & TIMER_ABSTIME) {
      struct timespec now;
      clock_gettime(clk, &now);
      ns -= gort::rt::timespec_ns(&now);
    }
    task_sleep(ns);
    return 0;
  }
  auto fn = reinterpret_cast<int (*)(clockid_t, int, const struct timespec*, struct timespec*)>(
      resolve(real, "clock_nanosleep"));
  if (fn) return fn(clk, flags, req, rem);
  return syscall(SYS_clock_nanosleep, clk, flags, req, rem) == 0 ? 0 : errno;
}

GORT_EXPORT int usleep(useconds_t us) {
  static std::atomic<void*> real{nullptr};
  if (on_task()) {
    task_sleep(static_cast<int64_t>(us) * 1000);
    return 0;
  }
  auto fn = reinterpret_cast<int (*)(useconds_t)>(resolve(real, "usleep"));
  if (fn) return fn(us);
  struct timespec ts = {static_cast<time_t>(us / 1000000), static_cast<long>(us % 1000000) * 1000};
  return static_cast<int>(syscall(SYS_nanosleep, &ts, nullptr));
}

GORT_EXPORT unsigned int sleep(unsigned int s) {
  static std::atomic<void*> real{nullptr};
  if (on_task()) {
    task_sleep(static_cast<int64_t>(s) * 1000000000);
    return 0;
  }
  auto fn = reinterpret_cast<unsigned (*)(unsigned)>(resolve(real, "sleep"));
  if (fn) return fn(s);
  struct timespec ts = {static_cast<time_t>(s), 0};
  return syscall(SYS_nanosleep, &ts, &ts) == 0 ? 0 : static_cast<unsigned>(ts.tv_sec);
}

namespace gort::rt {
// Referred to from run.cc, so that a static link always takes this file.
void libc_linked() {}
}  // namespace gort::rt
