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
// select() with no descriptors, the old idiom for a sleep). Calls on the
// sockets and pipes the netpoller watches park the task on it instead of
// handing off the P (np_io, below: "sockets and pipes"); the hand-off is for
// every other descriptor.
#undef _FORTIFY_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <type_traits>

#include "gort/runtime.h"
#include "runtime/netpoll.h"
#include "runtime/proc.h"
#include "runtime/runq.h"

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

// errno after a call that may have moved the task to another M (in
// exitsyscall or the yield after it): the call's errno is read on the
// thread that made the call and stored on the thread the task returns on,
// looked up again after the switch (cur_errno, proc.h). Never at the
// address from before the call: that thread runs other tasks now, and one
// of them may be between its own call and its look at errno (a keep-alive
// server's read() answered -1 with errno 0 that way;
// blocking/errno_is_never_written_from_another_task). A caller that kept
// errno's address from before the call reads the old thread's
// (docs/runtime.md, "What a task may hold").
template <class F>
auto blocking_call(F f) {
  if (!on_task()) return f();
  int* before = &cur_errno();
  entersyscall();
  auto r = f();
  int e = *before;  // still on the thread that made the call
  exitsyscall();
  preempt_check();
  cur_errno() = e;
  return r;
}

// A task sleeps on a timer; errno is the task's across the switch.
void task_sleep(int64_t ns) {
  int e = cur_errno();
  if (ns > 0) gort::sleep_for(Duration(ns));
  cur_errno() = e;
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
using gort::rt::preempt_check;
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

GORT_BLOCKING(ssize_t, pread, (int fd, void* buf, size_t n, off_t off), (fd, buf, n, off),
              syscall(SYS_pread64, fd, buf, n, off))
GORT_BLOCKING(ssize_t, pwrite, (int fd, const void* buf, size_t n, off_t off), (fd, buf, n, off),
              syscall(SYS_pwrite64, fd, buf, n, off))
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
  // One watched descriptor waited on for reading or for writing, from a
  // task: a look that does not block, then a park on the netpoller.
  gort::rt::pollDesc* pd;
  short ev = n == 1 ? fds[0].events : 0;
  bool rd = ev & (POLLIN | POLLRDHUP | POLLPRI), wr = ev & POLLOUT;
  if (n == 1 && ms != 0 && rd != wr && (pd = gort::rt::pd_lookup(fds[0].fd)) && on_task()) {
    int64_t deadline = ms > 0 ? gort::rt::now_ns() + static_cast<int64_t>(ms) * 1000000 : 0;
    uint32_t seq = pd->seq.load(std::memory_order_acquire);
    for (;;) {
      int r = fn ? fn(fds, 1, 0) : static_cast<int>(syscall(SYS_poll, fds, 1, 0));
      if (r != 0) return r;
      int e = gort::rt::cur_errno();
      int w = gort::rt::pd_wait(pd, rd ? gort::rt::kModeRead : gort::rt::kModeWrite, deadline, seq);
      if (w == ETIMEDOUT) {
        gort::rt::cur_errno() = e;
        return 0;
      }
      if (w == EBADF) {
        fds[0].revents = POLLNVAL;
        return 1;
      }
    }
  }
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

// ---- sockets and pipes: the netpoller (netpoll.h)
//
// A socket or pipe a task makes (socket, socketpair, pipe, pipe2, accept,
// accept4, and dup of one) is watched by the netpoller (pd_open). A socket
// is non-blocking in the kernel from birth; pollDesc::user_nonblock keeps
// what the program asked for (SOCK_NONBLOCK, O_NONBLOCK through fcntl, ioctl
// FIONBIO), and fcntl(F_GETFL) answers with it. A pipe keeps the program's
// own mode in the kernel (raw system calls, stdio's internal reads and child
// processes share it): a task polls it without blocking, parks until it is
// ready, then makes the call as a blocking call. On such a descriptor:
//  - a task whose call would block parks on the netpoller (pd_wait) and
//    retries, so the program sees a blocking call that kept neither the M
//    nor the P; a write on a blocking descriptor goes on until every byte is
//    written, as the kernel's blocking write does; SO_RCVTIMEO / SO_SNDTIMEO
//    become a deadline that ends the call with EAGAIN, as the kernel does;
//  - a thread that runs no task (or code inside gort::blocking) gets the
//    blocking behaviour the same way, with poll() on the descriptor instead
//    of parking: nothing changes for it;
//  - if the program made it non-blocking (or passes MSG_DONTWAIT), every
//    call is one system call and EAGAIN comes back, as without gort;
//  - close(), fclose()/freopen() of a stream over it, close_range()/
//    closefrom() over it, and dup2()/dup3() onto it wake its waiters with
//    EBADF first.
// Descriptors made otherwise (inherited, opened by libc internally, regular
// files) keep the hand-off path above. A descriptor closed behind libc's
// back (a raw close system call, libc's other internal closes) keeps its
// pollDesc until the number is reused by one of the calls here.

namespace gort::rt {
namespace {

using fcntl_fn = int (*)(int, int, ...);
int real_fcntl(int fd, int cmd, long arg) {
  static std::atomic<void*> real{nullptr};
  auto fn = reinterpret_cast<fcntl_fn>(resolve(real, "fcntl"));
  return fn ? fn(fd, cmd, arg) : static_cast<int>(syscall(SYS_fcntl, fd, cmd, arg));
}

// fd was made non-blocking for the runtime; watch it, or if the netpoller
// cannot, give it back the blocking mode the program asked for.
void manage(int fd, bool user_nonblock, const pollDesc* from = nullptr, bool knb = true) {
  if (from) knb = from->kernel_nonblock.load();
  pollDesc* pd = pd_open(fd, user_nonblock, knb);
  if (!pd) {
    if (!user_nonblock && knb) {
      int fl = real_fcntl(fd, F_GETFL, 0);
      if (fl >= 0) real_fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    }
    return;
  }
  if (from) {
    pd->rcvtimeo.store(from->rcvtimeo.load());
    pd->sndtimeo.store(from->sndtimeo.load());
  }
}

// fd was just made by a call that does not watch it (a plain thread's, or
// a dup of an unwatched descriptor): if its number still has a pollDesc, the
// file that had the number was closed behind libc's back (a raw close
// system call), and that pollDesc would make
// this call's file look watched: a task reading it would park on an epoll
// registration that no longer exists, or block its M on a descriptor taken
// for non-blocking. Forget it (its waiters, if any, get EBADF).
void forget_stale(int fd) {
  if (pd_lookup(fd)) pd_close(fd);
}

// Blocking behaviour on a plain thread: poll, then retry. timeo: ns, 0 none.
int thread_wait(int fd, int mode, int64_t deadline) {
  struct pollfd pfd = {fd, static_cast<short>(mode == kModeRead ? POLLIN : POLLOUT), 0};
  int ms = -1;
  if (deadline) {
    int64_t left = deadline - now_ns();
    if (left <= 0) return ETIMEDOUT;
    ms = static_cast<int>((left + 999999) / 1000000);
  }
  int r = static_cast<int>(syscall(SYS_poll, &pfd, 1, ms));
  if (r < 0) return errno;
  if (r == 0) return ETIMEDOUT;
  return 0;
}

// The I/O loop on a watched descriptor. f(done) makes one non-blocking call
// for what is left after done bytes; full: go on until n bytes (blocking
// write, MSG_WAITALL).
// A pipe in blocking mode: is it ready for mode now (a poll that does not
// block)? Hang-up and errors count as ready: the call reports them.
bool ready_now(int fd, int mode) {
  struct pollfd pfd = {fd, static_cast<short>(mode == kModeRead ? POLLIN : POLLOUT), 0};
  return syscall(SYS_poll, &pfd, 1, 0) != 0;
}

// The non-blocking form of a call on a blocking pipe (np_io's nw), for the
// calls that have one: read and write (and their vector forms) through
// preadv2/pwritev2 with RWF_NOWAIT at the current offset, which return EAGAIN
// instead of blocking whatever the descriptor's mode, as Go's reads on its
// non-blocking descriptors do: one system call where readiness first cost a
// poll. Raw system calls: libc's wrappers may be interposed.
#ifndef RWF_NOWAIT
#define RWF_NOWAIT 0x00000008
#endif
struct noNowait {  // the other calls: no such form
  ssize_t operator()(size_t) const { return -1; }
};
inline ssize_t read_nowait(int fd, const struct iovec* iov, int n) {
  return syscall(SYS_preadv2, fd, iov, n, -1L, 0L, RWF_NOWAIT);
}
inline ssize_t write_nowait(int fd, const struct iovec* iov, int n) {
  return syscall(SYS_pwritev2, fd, iov, n, -1L, 0L, RWF_NOWAIT);
}

// end_turn: a completed call ends the task's turn when others wait (proc.h
// io_turn_end); not for accept, see accept4.
template <class F, class N = noNowait>
ssize_t np_io(pollDesc* pd, int fd, int mode, bool nonblock, bool full, size_t n, F f, N nw = N{},
              bool end_turn = true) {
  if (nonblock || pd->user_nonblock.load(std::memory_order_relaxed)) return f(0);
  bool task = on_task();
  bool knb = pd->kernel_nonblock.load(std::memory_order_relaxed);
  if (!knb && !task) return f(0);  // a blocking pipe on a plain thread: as without gort
  int64_t timeo = (mode == kModeRead ? pd->rcvtimeo : pd->sndtimeo).load(std::memory_order_relaxed);
  int64_t deadline = timeo ? now_ns() + timeo : 0;
  int saved = cur_errno();
  uint32_t seq = pd->seq.load(std::memory_order_acquire);
  size_t done = 0;
  ssize_t r;
  int e = 0;
  for (;;) {
    constexpr bool has_nw = !std::is_same_v<N, noNowait>;
    if (!knb && has_nw && !pd->nowait_refused.load(std::memory_order_relaxed)) {
      // A blocking pipe, the call that cannot block (nw above).
      r = nw(done);
      if (r < 0 && cur_errno() == EOPNOTSUPP) {
        pd->nowait_refused.store(true, std::memory_order_relaxed);  // an older kernel: as below
        continue;
      }
    } else if (!knb) {
      // A blocking pipe: wait until ready, then the call as a blocking call
      // (it may still block on a write larger than the room: hand-off).
      if (!ready_now(fd, mode)) {
        r = -1;
        cur_errno() = EAGAIN;
      } else {
        r = blocking_call([&] { return f(done); });
      }
    } else {
      r = f(done);
    }
    if (r >= 0) {
      done += static_cast<size_t>(r);
      if (!full || r == 0 || done >= n) break;
      continue;
    }
    e = cur_errno();
    if (e != EAGAIN && e != EWOULDBLOCK) break;
    int w = task ? pd_wait(pd, mode, deadline, seq) : thread_wait(fd, mode, deadline);
    if (w != 0) {
      e = w == ETIMEDOUT ? EAGAIN : w;
      break;
    }
  }
  if (done > 0) r = static_cast<ssize_t>(done);  // a partial transfer, then an error: the count
  if (task && end_turn) io_turn_end();           // the turn ends when others wait (proc.h)
  if (r < 0) {
    cur_errno() = e;  // on the thread the task is on now, as in blocking_call
  } else {
    cur_errno() = saved;  // the EAGAINs on the way are the runtime's, not the program's
  }
  return r;
}

}  // namespace
}  // namespace gort::rt

using gort::rt::cur_errno;
using gort::rt::forget_stale;
using gort::rt::kModeRead;
using gort::rt::kModeWrite;
using gort::rt::manage;
using gort::rt::noNowait;
using gort::rt::np_io;
using gort::rt::pd_lookup;
using gort::rt::pollDesc;
using gort::rt::read_nowait;
using gort::rt::write_nowait;

#define GORT_REAL(ret, name, params)       \
  static std::atomic<void*> real{nullptr}; \
  auto fn = reinterpret_cast<ret(*) params>(resolve(real, #name))

GORT_EXPORT ssize_t read(int fd, void* buf, size_t n) {
  GORT_REAL(ssize_t, read, (int, void*, size_t));
  auto call = [&](size_t) -> ssize_t {
    return fn ? fn(fd, buf, n) : syscall(SYS_read, fd, buf, n);
  };
  auto nowait = [&](size_t) -> ssize_t {
    struct iovec v = {buf, n};
    return read_nowait(fd, &v, 1);
  };
  if (pollDesc* pd = pd_lookup(fd)) return np_io(pd, fd, kModeRead, false, false, n, call, nowait);
  return blocking_call([&] { return call(0); });
}

GORT_EXPORT ssize_t write(int fd, const void* buf, size_t n) {
  GORT_REAL(ssize_t, write, (int, const void*, size_t));
  auto call = [&](size_t d) -> ssize_t {
    const char* b = static_cast<const char*>(buf) + d;
    return fn ? fn(fd, b, n - d) : syscall(SYS_write, fd, b, n - d);
  };
  auto nowait = [&](size_t d) -> ssize_t {
    struct iovec v = {const_cast<char*>(static_cast<const char*>(buf)) + d, n - d};
    return write_nowait(fd, &v, 1);
  };
  if (pollDesc* pd = pd_lookup(fd)) return np_io(pd, fd, kModeWrite, false, true, n, call, nowait);
  return blocking_call([&] { return call(0); });
}

GORT_EXPORT ssize_t recv(int fd, void* buf, size_t n, int flags) {
  GORT_REAL(ssize_t, recv, (int, void*, size_t, int));
  auto call = [&](size_t d) -> ssize_t {
    char* b = static_cast<char*>(buf) + d;
    return fn ? fn(fd, b, n - d, flags)
              : syscall(SYS_recvfrom, fd, b, n - d, flags, nullptr, nullptr);
  };
  if (pollDesc* pd = pd_lookup(fd))
    return np_io(pd, fd, kModeRead, flags & MSG_DONTWAIT, flags & MSG_WAITALL, n, call);
  return blocking_call([&] { return call(0); });
}

GORT_EXPORT ssize_t recvfrom(int fd, void* buf, size_t n, int flags, struct sockaddr* a,
                             socklen_t* alen) {
  GORT_REAL(ssize_t, recvfrom, (int, void*, size_t, int, struct sockaddr*, socklen_t*));
  auto call = [&](size_t d) -> ssize_t {
    char* b = static_cast<char*>(buf) + d;
    return fn ? fn(fd, b, n - d, flags, a, alen)
              : syscall(SYS_recvfrom, fd, b, n - d, flags, a, alen);
  };
  if (pollDesc* pd = pd_lookup(fd))
    return np_io(pd, fd, kModeRead, flags & MSG_DONTWAIT, flags & MSG_WAITALL, n, call);
  return blocking_call([&] { return call(0); });
}

GORT_EXPORT ssize_t send(int fd, const void* buf, size_t n, int flags) {
  GORT_REAL(ssize_t, send, (int, const void*, size_t, int));
  auto call = [&](size_t d) -> ssize_t {
    const char* b = static_cast<const char*>(buf) + d;
    return fn ? fn(fd, b, n - d, flags) : syscall(SYS_sendto, fd, b, n - d, flags, nullptr, 0);
  };
  if (pollDesc* pd = pd_lookup(fd))
    return np_io(pd, fd, kModeWrite, flags & MSG_DONTWAIT, true, n, call);
  return blocking_call([&] { return call(0); });
}

GORT_EXPORT ssize_t sendto(int fd, const void* buf, size_t n, int flags, const struct sockaddr* a,
                           socklen_t alen) {
  GORT_REAL(ssize_t, sendto, (int, const void*, size_t, int, const struct sockaddr*, socklen_t));
  auto call = [&](size_t d) -> ssize_t {
    const char* b = static_cast<const char*>(buf) + d;
    return fn ? fn(fd, b, n - d, flags, a, alen)
              : syscall(SYS_sendto, fd, b, n - d, flags, a, alen);
  };
  if (pollDesc* pd = pd_lookup(fd))
    return np_io(pd, fd, kModeWrite, flags & MSG_DONTWAIT, a == nullptr, n, call);
  return blocking_call([&] { return call(0); });
}

// Vectored and message calls: one non-blocking call per readiness; a
// partial writev on a blocking descriptor goes on with what is left.
namespace {
size_t iov_total(const struct iovec* iov, int n) {
  size_t t = 0;
  for (int i = 0; i < n; i++) t += iov[i].iov_len;
  return t;
}
// iov advanced by done bytes into out (n entries at most); returns the count.
int iov_skip(const struct iovec* iov, int n, size_t done, struct iovec* out) {
  int k = 0;
  for (int i = 0; i < n; i++) {
    if (done >= iov[i].iov_len) {
      done -= iov[i].iov_len;
      continue;
    }
    out[k].iov_base = static_cast<char*>(iov[i].iov_base) + done;
    out[k].iov_len = iov[i].iov_len - done;
    done = 0;
    k++;
  }
  return k;
}
}  // namespace

GORT_EXPORT ssize_t readv(int fd, const struct iovec* iov, int n) {
  GORT_REAL(ssize_t, readv, (int, const struct iovec*, int));
  auto call = [&](size_t) -> ssize_t {
    return fn ? fn(fd, iov, n) : syscall(SYS_readv, fd, iov, n);
  };
  auto nowait = [&](size_t) -> ssize_t { return read_nowait(fd, iov, n); };
  if (pollDesc* pd = pd_lookup(fd)) return np_io(pd, fd, kModeRead, false, false, 0, call, nowait);
  return blocking_call([&] { return call(0); });
}

GORT_EXPORT ssize_t writev(int fd, const struct iovec* iov, int n) {
  GORT_REAL(ssize_t, writev, (int, const struct iovec*, int));
  pollDesc* pd = pd_lookup(fd);
  if (!pd || n <= 0 || n > 1024)
    return blocking_call(
        [&]() -> ssize_t { return fn ? fn(fd, iov, n) : syscall(SYS_writev, fd, iov, n); });
  struct iovec rest[1024];
  auto call = [&](size_t d) -> ssize_t {
    if (d == 0) return fn ? fn(fd, iov, n) : syscall(SYS_writev, fd, iov, n);
    int k = iov_skip(iov, n, d, rest);
    return fn ? fn(fd, rest, k) : syscall(SYS_writev, fd, rest, k);
  };
  auto nowait = [&](size_t d) -> ssize_t {
    if (d == 0) return write_nowait(fd, iov, n);
    int k = iov_skip(iov, n, d, rest);
    return write_nowait(fd, rest, k);
  };
  return np_io(pd, fd, kModeWrite, false, true, iov_total(iov, n), call, nowait);
}

GORT_EXPORT ssize_t recvmsg(int fd, struct msghdr* msg, int flags) {
  GORT_REAL(ssize_t, recvmsg, (int, struct msghdr*, int));
  auto call = [&](size_t) -> ssize_t {
    return fn ? fn(fd, msg, flags) : syscall(SYS_recvmsg, fd, msg, flags);
  };
  if (pollDesc* pd = pd_lookup(fd))
    return np_io(pd, fd, kModeRead, flags & MSG_DONTWAIT, false, 0, call);
  return blocking_call([&] { return call(0); });
}

GORT_EXPORT ssize_t sendmsg(int fd, const struct msghdr* msg, int flags) {
  GORT_REAL(ssize_t, sendmsg, (int, const struct msghdr*, int));
  auto call = [&](size_t) -> ssize_t {
    return fn ? fn(fd, msg, flags) : syscall(SYS_sendmsg, fd, msg, flags);
  };
  if (pollDesc* pd = pd_lookup(fd))
    return np_io(pd, fd, kModeWrite, flags & MSG_DONTWAIT, false, 0, call);
  return blocking_call([&] { return call(0); });
}

GORT_EXPORT int accept4(int fd, struct sockaddr* a, socklen_t* alen, int flags) {
  GORT_REAL(int, accept4, (int, struct sockaddr*, socklen_t*, int));
  bool task = on_task();
  int f2 = task ? flags | SOCK_NONBLOCK : flags;
  auto call = [&](size_t) -> ssize_t {
    return fn ? fn(fd, a, alen, f2) : syscall(SYS_accept4, fd, a, alen, f2);
  };
  ssize_t r;
  // A completed accept does not end the turn (Go's Accept does not yield
  // either): an accept loop that yielded after each connection took one
  // connection per round of every task it had started, so under a burst of
  // 1,000 connections the last ones waited a second to be accepted (their
  // requests' latency, bench/results/http.md). The new connection's task is
  // on this P's queue; sysmon's preemption still bounds the loop's turn.
  if (pollDesc* pd = pd_lookup(fd))
    r = np_io(pd, fd, kModeRead, false, false, 0, call, noNowait{}, false);
  else
    r = blocking_call([&] { return call(0); });
  if (r >= 0 && task)
    manage(static_cast<int>(r), flags & SOCK_NONBLOCK);
  else if (r >= 0)
    forget_stale(static_cast<int>(r));
  return static_cast<int>(r);
}

GORT_EXPORT int accept(int fd, struct sockaddr* a, socklen_t* alen) {
  return accept4(fd, a, alen, 0);
}

GORT_EXPORT int connect(int fd, const struct sockaddr* a, socklen_t alen) {
  GORT_REAL(int, connect, (int, const struct sockaddr*, socklen_t));
  auto call = [&]() -> int {
    return fn ? fn(fd, a, alen) : static_cast<int>(syscall(SYS_connect, fd, a, alen));
  };
  pollDesc* pd = pd_lookup(fd);
  if (!pd) return blocking_call(call);
  int r = call();
  if (r == 0 || cur_errno() != EINPROGRESS || pd->user_nonblock.load()) return r;
  // In progress: wait until writable, then the outcome is SO_ERROR.
  int64_t timeo = pd->sndtimeo.load();
  int64_t deadline = timeo ? gort::rt::now_ns() + timeo : 0;
  int w;
  if (on_task()) {
    w = gort::rt::pd_wait(pd, kModeWrite, deadline, pd->seq.load());
    gort::rt::io_turn_end();
  } else {
    w = gort::rt::thread_wait(fd, kModeWrite, deadline);
  }
  if (w != 0) {
    cur_errno() = w == ETIMEDOUT ? EINPROGRESS : w;
    return -1;
  }
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return -1;
  if (err != 0) {
    cur_errno() = err;
    return -1;
  }
  return 0;
}

// ---- making, duplicating, closing and configuring descriptors

GORT_EXPORT int socket(int domain, int type, int proto) {
  GORT_REAL(int, socket, (int, int, int));
  bool task = on_task();
  int t2 = task ? type | SOCK_NONBLOCK : type;
  int fd = fn ? fn(domain, t2, proto) : static_cast<int>(syscall(SYS_socket, domain, t2, proto));
  if (fd >= 0) {
    if (task)
      manage(fd, type & SOCK_NONBLOCK);
    else
      forget_stale(fd);
  }
  return fd;
}

GORT_EXPORT int socketpair(int domain, int type, int proto, int sv[2]) {
  GORT_REAL(int, socketpair, (int, int, int, int*));
  bool task = on_task();
  int t2 = task ? type | SOCK_NONBLOCK : type;
  int r = fn ? fn(domain, t2, proto, sv)
             : static_cast<int>(syscall(SYS_socketpair, domain, t2, proto, sv));
  if (r == 0 && task) {
    manage(sv[0], type & SOCK_NONBLOCK);
    manage(sv[1], type & SOCK_NONBLOCK);
  } else if (r == 0) {
    forget_stale(sv[0]);
    forget_stale(sv[1]);
  }
  return r;
}

GORT_EXPORT int pipe2(int fds[2], int flags) {
  GORT_REAL(int, pipe2, (int*, int));
  bool task = on_task();
  int r = fn ? fn(fds, flags) : static_cast<int>(syscall(SYS_pipe2, fds, flags));
  if (r == 0 && task) {  // the program's mode stays in the kernel (see pollDesc::kernel_nonblock)
    manage(fds[0], flags & O_NONBLOCK, nullptr, false);
    manage(fds[1], flags & O_NONBLOCK, nullptr, false);
  } else if (r == 0) {
    forget_stale(fds[0]);
    forget_stale(fds[1]);
  }
  return r;
}

GORT_EXPORT int pipe(int fds[2]) {
  return pipe2(fds, 0);
}

GORT_EXPORT int close(int fd) {
  GORT_REAL(int, close, (int));
  if (pd_lookup(fd)) gort::rt::pd_close(fd);
  return fn ? fn(fd) : static_cast<int>(syscall(SYS_close, fd));
}

// The watch of a stream's descriptor, dropped before libc closes it.
namespace {
void drop_stream_watch(FILE* fp) {
  if (!fp) return;
  int fd = fileno(fp);
  if (fd >= 0 && pd_lookup(fd)) gort::rt::pd_close(fd);
}
}  // namespace

// fclose of a stream over a watched descriptor (fdopen of a socket or a
// pipe): libc closes the descriptor with its internal close, which gort does
// not see, so the pollDesc is dropped here first, as close() does (its
// waiters get EBADF), and the number's next file is not taken for this one.
// libc's fclose is found by dlsym, or else by its other name, _IO_fclose
// (a call made while dlsym runs).
extern "C" int _IO_fclose(FILE* fp) __attribute__((weak));
GORT_EXPORT int fclose(FILE* fp) {
  GORT_REAL(int, fclose, (FILE*));
  if (!fn) fn = _IO_fclose;
  drop_stream_watch(fp);
  if (!fn) {
    errno = ENOSYS;
    return EOF;
  }
  return fn(fp);
}

// freopen closes the stream's descriptor with libc's internal close too (or,
// without a path, replaces the file under its number): the watch goes first.
// freopen64 is the same call under the name large-file builds use.
namespace {
FILE* reopen(std::atomic<void*>& real, const char* name, const char* path, const char* mode,
             FILE* fp) {
  auto fn = reinterpret_cast<FILE* (*)(const char*, const char*, FILE*)>(resolve(real, name));
  drop_stream_watch(fp);
  if (!fn) {
    errno = ENOSYS;
    return nullptr;
  }
  return fn(path, mode, fp);
}
std::atomic<void*> g_real_freopen{nullptr}, g_real_freopen64{nullptr};
}  // namespace

GORT_EXPORT FILE* freopen(const char* path, const char* mode, FILE* fp) {
  return reopen(g_real_freopen, "freopen", path, mode, fp);
}

GORT_EXPORT FILE* freopen64(const char* path, const char* mode, FILE* fp) {
  return reopen(g_real_freopen64, "freopen64", path, mode, fp);
}

// close_range and closefrom close descriptors in the kernel, not through
// close(): the watched ones among them are dropped first, as close() drops
// one (a call that only marks them close-on-exec closes nothing).
#ifndef CLOSE_RANGE_UNSHARE
#define CLOSE_RANGE_UNSHARE (1U << 1)
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
GORT_EXPORT int close_range(unsigned first, unsigned last, int flags) {
  GORT_REAL(int, close_range, (unsigned, unsigned, int));
  unsigned f = static_cast<unsigned>(flags);
  bool closes = first <= last && !(f & CLOSE_RANGE_CLOEXEC) &&
                !(f & ~(CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC));
  if (closes && first <= INT_MAX)
    gort::rt::pd_close_range(static_cast<int>(first),
                             last > INT_MAX ? INT_MAX : static_cast<int>(last));
  return fn ? fn(first, last, flags)
            : static_cast<int>(syscall(SYS_close_range, first, last, flags));
}

GORT_EXPORT void closefrom(int lowfd) {
  GORT_REAL(void, closefrom, (int));
  if (lowfd >= 0) gort::rt::pd_close_range(lowfd, INT_MAX);
  if (fn)
    fn(lowfd);
  else if (lowfd >= 0)
    syscall(SYS_close_range, static_cast<unsigned>(lowfd), ~0U, 0);
}

GORT_EXPORT int dup(int fd) {
  GORT_REAL(int, dup, (int));
  int r = fn ? fn(fd) : static_cast<int>(syscall(SYS_dup, fd));
  if (r >= 0) {
    if (pollDesc* pd = pd_lookup(fd))
      manage(r, pd->user_nonblock.load(), pd);
    else
      forget_stale(r);
  }
  return r;
}

// A watched newfd is closed only if the call succeeds: a failed dup3 (a bad
// oldfd, bad flags) leaves it open, non-blocking in the kernel, so it must
// stay watched (pd_detach, netpoll.h), its waiters still waiting.
GORT_EXPORT int dup3(int oldfd, int newfd, int flags) {
  GORT_REAL(int, dup3, (int, int, int));
  bool watched = oldfd != newfd && pd_lookup(newfd);
  if (watched) gort::rt::pd_detach(newfd);
  int r = fn ? fn(oldfd, newfd, flags) : static_cast<int>(syscall(SYS_dup3, oldfd, newfd, flags));
  if (watched) {
    if (r >= 0) {
      gort::rt::pd_close(newfd, false);
    } else {
      int e = cur_errno();
      gort::rt::pd_attach(newfd);
      cur_errno() = e;
    }
  }
  if (r >= 0 && oldfd != newfd) {
    if (pollDesc* pd = pd_lookup(oldfd))
      manage(r, pd->user_nonblock.load(), pd);
    else if (!watched)
      forget_stale(r);
  }
  return r;
}

GORT_EXPORT int dup2(int oldfd, int newfd) {
  if (oldfd == newfd) {
    GORT_REAL(int, dup2, (int, int));
    return fn ? fn(oldfd, newfd)
              : static_cast<int>(syscall(SYS_fcntl, oldfd, F_GETFD) < 0 ? -1 : newfd);
  }
  return dup3(oldfd, newfd, 0);
}

namespace {
int fcntl_common(int fd, int cmd, long arg) {
  using gort::rt::real_fcntl;
  pollDesc* pd = pd_lookup(fd);
  if (cmd == F_SETLKW || cmd == F_OFD_SETLKW)  // waits for a file lock: a blocking call
    return blocking_call([&] { return real_fcntl(fd, cmd, arg); });
  if (!pd) {
    int r = real_fcntl(fd, cmd, arg);
    if (r >= 0 && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)) forget_stale(r);
    return r;
  }
  switch (cmd) {
    case F_GETFL: {
      int r = real_fcntl(fd, F_GETFL, 0);
      if (!pd->kernel_nonblock.load()) return r;
      if (r >= 0) r = (r & ~O_NONBLOCK) | (pd->user_nonblock.load() ? O_NONBLOCK : 0);
      return r;
    }
    case F_SETFL: {
      int r = real_fcntl(fd, F_SETFL, pd->kernel_nonblock.load() ? arg | O_NONBLOCK : arg);
      if (r == 0) pd->user_nonblock.store(arg & O_NONBLOCK);
      return r;
    }
    case F_DUPFD:
    case F_DUPFD_CLOEXEC: {
      int r = real_fcntl(fd, cmd, arg);
      if (r >= 0) manage(r, pd->user_nonblock.load(), pd);
      return r;
    }
    default:
      return real_fcntl(fd, cmd, arg);
  }
}
}  // namespace

GORT_EXPORT int fcntl(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  long arg = va_arg(ap, long);
  va_end(ap);
  return fcntl_common(fd, cmd, arg);
}

GORT_EXPORT int fcntl64(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  long arg = va_arg(ap, long);
  va_end(ap);
  return fcntl_common(fd, cmd, arg);
}

GORT_EXPORT int ioctl(int fd, unsigned long req, ...) {
  GORT_REAL(int, ioctl, (int, unsigned long, ...));
  va_list ap;
  va_start(ap, req);
  void* arg = va_arg(ap, void*);
  va_end(ap);
  if (req == FIONBIO && arg)
    if (pollDesc* pd = pd_lookup(fd)) {
      pd->user_nonblock.store(*static_cast<int*>(arg) != 0);
      if (pd->kernel_nonblock.load()) return 0;
    }
  return fn ? fn(fd, req, arg) : static_cast<int>(syscall(SYS_ioctl, fd, req, arg));
}

GORT_EXPORT int setsockopt(int fd, int level, int opt, const void* val, socklen_t len) {
  GORT_REAL(int, setsockopt, (int, int, int, const void*, socklen_t));
  int r = fn ? fn(fd, level, opt, val, len)
             : static_cast<int>(syscall(SYS_setsockopt, fd, level, opt, val, len));
  if (r == 0 && level == SOL_SOCKET && (opt == SO_RCVTIMEO || opt == SO_SNDTIMEO) &&
      len >= sizeof(struct timeval))
    if (pollDesc* pd = pd_lookup(fd)) {
      auto* tv = static_cast<const struct timeval*>(val);
      int64_t ns = static_cast<int64_t>(tv->tv_sec) * 1000000000 + tv->tv_usec * 1000LL;
      (opt == SO_RCVTIMEO ? pd->rcvtimeo : pd->sndtimeo).store(ns);
    }
  return r;
}

namespace gort::rt {
// Referred to from run.cc, so that a static link always takes this file.
void libc_linked() {}
}  // namespace gort::rt
