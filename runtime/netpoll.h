// The netpoller (netpoll.cc): tasks wait for a socket or a pipe to become
// readable or writable by parking on its pollDesc, and the scheduler finds
// them again through one edge-triggered epoll instance (Go's netpoll.go and
// netpoll_epoll.go). The design and the invariants are in netpoll.cc.
#pragma once

#include <atomic>
#include <cstdint>

#include "alloc/lock.h"

namespace gort::rt {

struct g;

// One per descriptor number the runtime watches, never freed (Go's
// pollDesc cache): a number closed and opened again reuses its pollDesc,
// with seq bumped so that a waiter from before sees EBADF.
struct pollDesc {
  // rg / wg: 0, kPdReady (an edge arrived nobody waited for), kPdWait (a
  // task is parking), or the parked g. Changed only by CAS.
  std::atomic<uintptr_t> rg{0}, wg{0};
  std::atomic<uint32_t> seq{0};      // bumped by every close of the number
  std::atomic<bool> active{false};   // the number is watched now
  std::atomic<bool> closing{false};  // close() under way: waiters get EBADF
  std::atomic<int32_t> nwait{0};     // tasks inside pd_wait on it
  int fd = -1;
  // What the program believes (its own O_NONBLOCK, set with fcntl, SOCK_NONBLOCK
  // or ioctl FIONBIO); the descriptor itself is always non-blocking.
  std::atomic<bool> user_nonblock{false};
  // Sockets are non-blocking in the kernel (the runtime set it, fcntl hides
  // it); pipes keep the program's mode, since raw system calls, libc's own
  // stdio and child processes share them: the runtime reads and writes them
  // with RWF_NOWAIT (or, where the kernel refuses that, waits for readiness
  // first and makes the call as a blocking call; libc.cc np_io).
  std::atomic<bool> kernel_nonblock{true};
  // A pipe in blocking mode on which the kernel refused preadv2/pwritev2 with
  // RWF_NOWAIT (EOPNOTSUPP): libc.cc polls it instead.
  std::atomic<bool> nowait_refused{false};
  std::atomic<int64_t> rcvtimeo{0}, sndtimeo{0};  // SO_RCVTIMEO / SO_SNDTIMEO in ns, 0: none
};

inline constexpr uintptr_t kPdReady = 1, kPdWait = 2;
inline constexpr int kModeRead = 'r', kModeWrite = 'w';

// Tasks parked in pd_wait right now: the scheduler polls only when > 0, and
// the deadlock check does not fire while one may still be woken.
extern std::atomic<int32_t> netpoll_waiters;
// The M blocked in epoll_wait (findrunnable's last M), or null.
extern std::atomic<struct m*> netpoll_sleeper;
// The last time anyone polled (ns); a busy P polls when it is 100 us old,
// sysmon when it is 10 ms old.
extern std::atomic<int64_t> netpoll_last;

bool netpoll_inited();
// Polls once: delay_ns < 0 blocks, 0 does not, > 0 waits at most that long.
// Returns the readied gs as a chain through schedlink (status runnable) and
// their count in *n.
g* netpoll(int64_t delay_ns, int32_t* n);
// Interrupts a blocking netpoll (an eventfd edge).
void netpoll_break();
// Puts a chain from netpoll on the global run queue and starts Ms for idle Ps.
void injectglist(g* list, int32_t n);

// The descriptor table. pd_lookup is the interposed calls' fast path: the
// watched pollDesc of fd, or null.
pollDesc* pd_lookup(int fd);
// Starts watching fd (already non-blocking in the kernel): registers it with
// epoll. Returns null if it cannot be watched (epoll refuses it).
pollDesc* pd_open(int fd, bool user_nonblock, bool kernel_nonblock = true);
// fd is being closed (or replaced by dup2): stop watching it and wake every
// task waiting on it (they return EBADF). Safe on a number not watched.
// registered false: pd_detach already took it out of epoll.
void pd_close(int fd, bool registered = true);
// pd_close for every watched number from first to last (close_range, closefrom).
void pd_close_range(int first, int last);
// dup2/dup3 onto a watched fd, which may fail and leave fd as it was: the
// registration leaves epoll before the call (afterwards the number names
// another file, and the old file's registration could no longer be
// removed), the pollDesc stays watched, and pd_attach puts it back if the
// call failed (the add reports a readiness that came meanwhile).
void pd_detach(int fd);
void pd_attach(int fd);
// Parks the running task until pd is ready for mode (kModeRead or
// kModeWrite), deadline passes (absolute CLOCK_MONOTONIC ns, 0: none) or the
// descriptor is closed. Returns 0 (ready: retry the I/O), ETIMEDOUT (or
// EAGAIN for a socket timeout, the caller decides) or EBADF. seq is pd->seq
// as read when the caller looked the descriptor up: a close since is EBADF.
int pd_wait(pollDesc* pd, int mode, int64_t deadline, uint32_t seq);
// pd_wait for a plain thread (no task to park): poll() on the descriptor
// and on the thread's eventfd, which pd_close and pd_kick write, so a close
// or a kick wakes it too. Same results as pd_wait; 0 may also be a spurious
// wake-up (the caller retries its I/O either way).
int pd_wait_thread(pollDesc* pd, int mode, int64_t deadline, uint32_t seq);
// A run ended: its waiters are abandoned tasks (run.cc).
void netpoll_run_end();
// Wakes the waiters of both modes (a deadline moved earlier: gort::net).
void pd_kick(pollDesc* pd);

}  // namespace gort::rt
