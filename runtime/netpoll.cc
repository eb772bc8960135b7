// The netpoller: a task waiting for a socket or a pipe costs a parked task,
// not an OS thread (Go's netpoll.go and netpoll_epoll.go).
//
// One epoll instance watches every descriptor the runtime manages, each
// registered once, edge-triggered, for reading and writing together
// (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET), with the descriptor's
// pollDesc as the event's data. A descriptor is managed when a task made it
// (socket, socketpair, pipe, pipe2, accept, dup of a managed one: libc.cc)
// or gort::net did. A socket is non-blocking in the kernel from birth and
// the program's own view of O_NONBLOCK lives in pollDesc::user_nonblock; a
// pipe keeps the program's mode (kernel_nonblock false), and a task waits
// for its readiness here before making the call.
//
// Waiting. A task whose I/O returned EAGAIN calls pd_wait: under the
// pollDesc's lock it takes a pending edge (ready[mode]) if one came since it
// last looked, or puts a pollWait node (on its own stack) on the mode's wait
// list and parks; the lock is released by gopark's after-function, once the
// task's context is saved, so an edge or a timeout that takes the lock sees a
// parked task. An edge wakes every waiter of that mode (several tasks may
// accept on one listener or read one pipe; they retry and the losers park
// again) or, with nobody waiting, leaves ready[mode] set, so an edge between
// the EAGAIN and the park is never lost. Go allows one waiter per mode
// (its fdMutex serialises readers); C programs share descriptors freely, so
// here a list.
//
// A plain thread (no task to park: gort::net on a thread outside gort::run)
// waits in pd_wait_thread: poll() on the descriptor and on the thread's own
// eventfd, with a plainWait node on the pollDesc's plain list meanwhile.
// pd_close and pd_kick write the eventfd of every node on the list, so a
// close or a deadline moved earlier wakes a thread as they wake a parked
// task; the node is put on the list under the lock after the seq check, so a
// close cannot fall between the check and the poll unseen. Without an
// eventfd (the descriptor limit) the thread polls in 10 ms slices instead.
//
// Deadlines are per wait (gort::net's Conn deadlines and SO_RCVTIMEO /
// SO_SNDTIMEO both become an absolute deadline for pd_wait): a timer armed
// after the park takes the node off the list and readies the task with
// ETIMEDOUT. close() (pd_close) bumps seq, marks the pollDesc inactive and
// wakes every waiter with EBADF before the number can be reused.
//
// Finding the readied tasks (netpoll): an M looking for work polls without
// blocking (findrunnable) when tasks wait and no M is blocked in epoll; the
// last M to go idle blocks in epoll_wait instead of its futex, bounded by
// the earliest timer, and is woken by an eventfd edge (netpoll_break) when
// notewakeup hands it a P or shutdown comes; a P whose queue never drains
// polls from its M's own stack every 100 us at most (proc.cc, netpoll_due);
// sysmon polls when nobody has for 10 ms (every M busy in long tasks). Readied tasks go to the
// poller's P (the first runs at once) or to the global queue, and idle Ps get Ms.
//
// Invariants: a pollDesc is never freed (the table only grows), so a stale
// epoll event or a late timer only ever touches valid memory; every change
// of ready[] and of the wait lists happens under pollDesc::lock; a task is
// on at most one wait list, and whoever takes its node off the list (an
// edge, its timer, close) readies it, exactly once. netpoll_waiters counts
// parked waiters so the scheduler's polls cost one load when none wait.
//
// fork(): the child gets its own netpoller (fork_child below). An epoll
// instance is a kernel object shared by every process that holds its
// descriptor, and its registrations belong to the open file descriptions of
// the sockets, which parent and child share too: a child that went on using
// the parent's instance would remove the parent's registrations with its
// EPOLL_CTL_DELs (its close() of an inherited socket) and add its own to the
// parent's instance. So the child closes its copy of the instance and of the
// eventfd (that touches nothing of the parent's), forgets every pollDesc
// registration without EPOLL_CTL_DEL, and makes a new instance the first
// time it watches a descriptor (init). The inherited sockets stay
// non-blocking in the kernel (the flag belongs to the shared description:
// the caveat in docs/runtime.md).
//
// Lock order: pollDesc::lock, then a P's timers_lock (arming the deadline),
// then sched.lock (ready); the netpoll init lock is a leaf.
#include "runtime/netpoll.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <new>

#include "alloc/sys.h"
#include "runtime/proc.h"
#include "runtime/runq.h"
#include "runtime/timer.h"

namespace gort::rt {

std::atomic<int32_t> netpoll_waiters{0};
std::atomic<m*> netpoll_sleeper{nullptr};
std::atomic<int64_t> netpoll_last{0};

namespace {

// A task parked on a pollDesc: on its own stack for the wait's duration.
struct pollWait {
  g* gp = nullptr;
  pollWait* next = nullptr;
  int result = 0;  // 0 ready, ETIMEDOUT, EBADF
};

// A plain thread in pd_wait_thread (node on its stack): efd is its eventfd.
struct plainWait {
  int efd = -1;
  plainWait* next = nullptr;
};

// The calling thread's eventfd for pd_wait_thread, made on first use and
// closed when the thread exits; -1 if none can be made.
struct threadEventfd {
  int fd = -2;  // -2: not tried yet
  ~threadEventfd() {
    if (fd >= 0) syscall(SYS_close, fd);
  }
};
thread_local threadEventfd tl_wake;

int thread_eventfd() {
  if (tl_wake.fd == -2) {
    long r = syscall(SYS_eventfd2, 0, EFD_CLOEXEC | EFD_NONBLOCK);
    tl_wake.fd = r >= 0 ? static_cast<int>(r) : -1;
  }
  return tl_wake.fd;
}

// The per-descriptor wait state, beside the public pollDesc fields (kept
// out of the header: only this file touches it).
struct pollState {
  alloc::mutex lock;
  bool ready[2] = {false, false};
  pollWait* waiters[2] = {nullptr, nullptr};
  plainWait* plain = nullptr;  // threads in pd_wait_thread, either mode
};

struct pdFull : pollDesc {
  pollState st;
};

constexpr int kChunkBits = 10, kChunkSize = 1 << kChunkBits, kChunks = 1 << 12;  // 4M fds
std::atomic<std::atomic<pdFull*>*> g_table[kChunks];

std::atomic<int> g_epfd{-1};
int g_breakfd = -1;
alloc::mutex g_init_lock;
std::atomic<uint32_t> g_breaking{0};

inline int idx(int mode) {
  return mode == kModeRead ? 0 : 1;
}

int sys_epoll_ctl(int op, int fd, struct epoll_event* ev) {
  return static_cast<int>(
      syscall(SYS_epoll_ctl, g_epfd.load(std::memory_order_acquire), op, fd, ev));
}

bool init() {
  if (g_epfd.load(std::memory_order_acquire) >= 0) return true;
  alloc::lock_guard l(g_init_lock);
  if (g_epfd.load() >= 0) return true;
  int ep = static_cast<int>(syscall(SYS_epoll_create1, EPOLL_CLOEXEC));
  if (ep < 0) return false;
  int bfd = static_cast<int>(syscall(SYS_eventfd2, 0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (bfd < 0) {
    syscall(SYS_close, ep);
    return false;
  }
  struct epoll_event ev {};
  ev.events = EPOLLIN | EPOLLET;
  ev.data.ptr = nullptr;  // the break descriptor
  if (syscall(SYS_epoll_ctl, ep, EPOLL_CTL_ADD, bfd, &ev) != 0) {
    syscall(SYS_close, ep);
    syscall(SYS_close, bfd);
    return false;
  }
  g_breakfd = bfd;
  netpoll_last.store(now_ns());
  g_epfd.store(ep, std::memory_order_release);
  return true;
}

// f(pd) for every pollDesc ever made (the table only grows).
template <class F>
void for_each_pd(F f) {
  for (int c = 0; c < kChunks; c++) {
    std::atomic<pdFull*>* chunk = g_table[c].load(std::memory_order_acquire);
    if (!chunk) continue;
    for (int k = 0; k < kChunkSize; k++)
      if (pdFull* pd = chunk[k].load(std::memory_order_acquire)) f(pd);
  }
}

pdFull* slot(int fd, bool make) {
  if (fd < 0 || fd >= kChunks * kChunkSize) return nullptr;
  auto& chunk_ref = g_table[fd >> kChunkBits];
  std::atomic<pdFull*>* chunk = chunk_ref.load(std::memory_order_acquire);
  if (!chunk) {
    if (!make) return nullptr;
    auto* fresh = new std::atomic<pdFull*>[kChunkSize]();
    if (!chunk_ref.compare_exchange_strong(chunk, fresh, std::memory_order_acq_rel)) {
      delete[] fresh;
    } else {
      chunk = fresh;
    }
  }
  auto& s = chunk[fd & (kChunkSize - 1)];
  pdFull* pd = s.load(std::memory_order_acquire);
  if (!pd && make) {
    auto* fresh = new pdFull;
    fresh->fd = fd;
    if (!s.compare_exchange_strong(pd, fresh, std::memory_order_acq_rel))
      delete fresh;
    else
      pd = fresh;
  }
  return pd;
}

// Takes every waiter of mode off pd's list with result r; pd's lock held.
// Returns them as a chain through schedlink (still waiting).
g* take_waiters(pdFull* pd, int i, int r, g* chain, int32_t* n) {
  for (pollWait* w = pd->st.waiters[i]; w; w = w->next) {
    w->result = r;
    if (abandoned(w->gp)) continue;
    w->gp->schedlink = chain;
    chain = w->gp;
    (*n)++;
  }
  pd->st.waiters[i] = nullptr;
  return chain;
}

// Under pd's lock: wakes every thread in pd_wait_thread on pd.
void wake_plain(pdFull* pd) {
  uint64_t one = 1;
  for (plainWait* w = pd->st.plain; w; w = w->next) syscall(SYS_write, w->efd, &one, sizeof one);
}

void ready_chain(g* chain) {
  while (chain) {
    g* next = chain->schedlink;
    ready(chain);
    chain = next;
  }
}

// A deadline passed: the node, if still listed, leaves with ETIMEDOUT.
struct waitTimer {
  timer t;
  pdFull* pd;
  pollWait* w;
  int i;
};

void deadline_fire(timer* t, int64_t) {
  auto* wt = static_cast<waitTimer*>(t->arg);
  pdFull* pd = wt->pd;
  g* gp = nullptr;
  {
    alloc::lock_guard l(pd->st.lock);
    for (pollWait** pw = &pd->st.waiters[wt->i]; *pw; pw = &(*pw)->next) {
      if (*pw == wt->w) {
        *pw = wt->w->next;
        wt->w->result = ETIMEDOUT;
        gp = wt->w->gp;
        break;
      }
    }
  }
  if (gp && !abandoned(gp)) ready(gp);
  t->firing.store(0, std::memory_order_release);  // the waiter may now return
}

struct parkArgs {
  pdFull* pd;
  waitTimer* wt;
};

void park_commit(void* arg, g*) {
  auto* a = static_cast<parkArgs*>(arg);
  if (a->wt) timer_add(&a->wt->t, a->wt->t.when);
  a->pd->st.lock.unlock();
}

// Taken across fork so that the child never sees an instance half made.
void fork_prepare() {
  g_init_lock.lock();
}
void fork_parent() {
  g_init_lock.unlock();
}

// The child of fork, alone in its process: no lock is held by anyone alive,
// and the parent's parked tasks are copies that will never run here.
void fork_child() {
  g_init_lock.reset();
  int ep = g_epfd.exchange(-1, std::memory_order_acq_rel);
  if (ep >= 0) syscall(SYS_close, ep);
  if (g_breakfd >= 0) syscall(SYS_close, g_breakfd);
  g_breakfd = -1;
  g_breaking.store(0, std::memory_order_relaxed);
  netpoll_waiters.store(0, std::memory_order_relaxed);
  netpoll_sleeper.store(nullptr, std::memory_order_relaxed);
  for_each_pd([](pdFull* pd) {
    pd->st.lock.reset();
    pd->active.store(false, std::memory_order_relaxed);
    pd->closing.store(false, std::memory_order_relaxed);
    pd->seq.fetch_add(1, std::memory_order_relaxed);
    pd->st.ready[0] = pd->st.ready[1] = false;
    pd->st.waiters[0] = pd->st.waiters[1] = nullptr;
    pd->st.plain = nullptr;
  });
  // The forking thread's eventfd is one object with the parent's: a read
  // here could eat a wake-up meant for the parent's thread.
  if (tl_wake.fd >= 0) syscall(SYS_close, tl_wake.fd);
  tl_wake.fd = -2;
}

// Registered at load time, not in init: a fork while another thread makes
// the instance must find g_init_lock in the set (as gc/cycle.cc's handlers).
__attribute__((constructor(103))) void netpoll_constructor() {
  pthread_atfork(fork_prepare, fork_parent, fork_child);
}

}  // namespace

bool netpoll_inited() {
  return g_epfd.load(std::memory_order_relaxed) >= 0;
}

pollDesc* pd_lookup(int fd) {
  pdFull* pd = slot(fd, false);
  return pd && pd->active.load(std::memory_order_acquire) ? pd : nullptr;
}

pollDesc* pd_open(int fd, bool user_nonblock, bool kernel_nonblock) {
  if (!init()) return nullptr;
  pdFull* pd = slot(fd, true);
  if (!pd) return nullptr;
  {
    alloc::lock_guard l(pd->st.lock);
    pd->st.ready[0] = pd->st.ready[1] = false;
    pd->user_nonblock.store(user_nonblock, std::memory_order_relaxed);
    pd->kernel_nonblock.store(kernel_nonblock, std::memory_order_relaxed);
    pd->nowait_refused.store(false, std::memory_order_relaxed);
    pd->rcvtimeo.store(0, std::memory_order_relaxed);
    pd->sndtimeo.store(0, std::memory_order_relaxed);
    pd->closing.store(false, std::memory_order_relaxed);
  }
  struct epoll_event ev {};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.ptr = pd;
  if (sys_epoll_ctl(EPOLL_CTL_ADD, fd, &ev) != 0) {
    // Already there (a number closed behind libc's back and reused): modify.
    if (errno != EEXIST || sys_epoll_ctl(EPOLL_CTL_MOD, fd, &ev) != 0) return nullptr;
  }
  pd->active.store(true, std::memory_order_release);
  return pd;
}

void pd_detach(int fd) {
  sys_epoll_ctl(EPOLL_CTL_DEL, fd, nullptr);
}

void pd_attach(int fd) {
  pdFull* pd = slot(fd, false);
  if (!pd || !pd->active.load(std::memory_order_acquire)) return;
  struct epoll_event ev {};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.ptr = pd;
  sys_epoll_ctl(EPOLL_CTL_ADD, fd, &ev);
}

void pd_close(int fd, bool registered) {
  pdFull* pd = slot(fd, false);
  if (!pd || !pd->active.load(std::memory_order_acquire)) return;
  int32_t n = 0;
  g* chain = nullptr;
  {
    alloc::lock_guard l(pd->st.lock);
    pd->closing.store(true, std::memory_order_relaxed);
    pd->active.store(false, std::memory_order_release);
    pd->seq.fetch_add(1, std::memory_order_acq_rel);
    pd->st.ready[0] = pd->st.ready[1] = false;
    chain = take_waiters(pd, 0, EBADF, chain, &n);
    chain = take_waiters(pd, 1, EBADF, chain, &n);
    wake_plain(pd);
  }
  if (registered) sys_epoll_ctl(EPOLL_CTL_DEL, fd, nullptr);
  ready_chain(chain);
}

void pd_close_range(int first, int last) {
  if (first < 0) first = 0;
  if (last >= kChunks * kChunkSize) last = kChunks * kChunkSize - 1;
  for (int c = first >> kChunkBits; first <= last && c <= last >> kChunkBits; c++) {
    if (!g_table[c].load(std::memory_order_acquire)) continue;  // no number here was watched
    int lo = c << kChunkBits, hi = lo + kChunkSize - 1;
    for (int fd = lo < first ? first : lo; fd <= (hi < last ? hi : last); fd++)
      if (pd_lookup(fd)) pd_close(fd);
  }
}

void pd_kick(pollDesc* base) {
  auto* pd = static_cast<pdFull*>(base);
  int32_t n = 0;
  g* chain = nullptr;
  {
    alloc::lock_guard l(pd->st.lock);
    chain = take_waiters(pd, 0, 0, chain, &n);
    chain = take_waiters(pd, 1, 0, chain, &n);
    wake_plain(pd);
  }
  ready_chain(chain);
}

int pd_wait_thread(pollDesc* base, int mode, int64_t deadline, uint32_t seq) {
  auto* pd = static_cast<pdFull*>(base);
  plainWait w;
  w.efd = thread_eventfd();
  {
    alloc::lock_guard l(pd->st.lock);
    if (pd->seq.load(std::memory_order_relaxed) != seq || !pd->active.load()) return EBADF;
    if (w.efd >= 0) {
      w.next = pd->st.plain;
      pd->st.plain = &w;
    }
  }
  struct pollfd pfd[2] = {{pd->fd, static_cast<short>(mode == kModeRead ? POLLIN : POLLOUT), 0},
                          {w.efd, POLLIN, 0}};
  int ms = w.efd >= 0 ? -1 : 10;
  bool timed = false;
  if (deadline) {
    int64_t left = deadline - now_ns();
    if (left <= 0) {
      timed = true;
      ms = 0;
    } else if (ms < 0 || left < int64_t{ms} * 1000000) {
      ms = static_cast<int>((left + 999999) / 1000000);
    }
  }
  long r = timed ? 0 : syscall(SYS_poll, pfd, w.efd >= 0 ? 2 : 1, ms);
  if (w.efd >= 0) {
    alloc::lock_guard l(pd->st.lock);
    for (plainWait** pp = &pd->st.plain; *pp; pp = &(*pp)->next)
      if (*pp == &w) {
        *pp = w.next;
        break;
      }
  }
  if (r > 0 && (pfd[1].revents & POLLIN)) {
    uint64_t v;
    syscall(SYS_read, w.efd, &v, sizeof v);
  }
  if (pd->seq.load(std::memory_order_acquire) != seq) return EBADF;
  if (r == 0 && deadline && now_ns() >= deadline) return ETIMEDOUT;
  return 0;
}

int pd_wait(pollDesc* base, int mode, int64_t deadline, uint32_t seq) {
  auto* pd = static_cast<pdFull*>(base);
  int i = idx(mode);
  pd->st.lock.lock();
  if (pd->seq.load(std::memory_order_relaxed) != seq || !pd->active.load()) {
    pd->st.lock.unlock();
    return EBADF;
  }
  if (pd->st.ready[i]) {
    pd->st.ready[i] = false;
    pd->st.lock.unlock();
    return 0;
  }
  if (deadline != 0 && deadline <= now_ns()) {
    pd->st.lock.unlock();
    return ETIMEDOUT;
  }
  pollWait w;
  w.gp = getg();
  w.next = pd->st.waiters[i];
  pd->st.waiters[i] = &w;
  waitTimer wt;
  parkArgs a{pd, nullptr};
  if (deadline != 0) {
    wt.t.when = deadline;
    wt.t.f = deadline_fire;
    wt.t.arg = &wt;
    wt.pd = pd;
    wt.w = &w;
    wt.i = i;
    a.wt = &wt;
  }
  netpoll_waiters.fetch_add(1, std::memory_order_seq_cst);
  gopark(park_commit, &a, mode == kModeRead ? "IO wait (read)" : "IO wait (write)");
  netpoll_waiters.fetch_sub(1, std::memory_order_relaxed);
  if (deadline != 0 && !timer_del(&wt.t)) timer_wait_fired(&wt.t);
  return w.result;
}

g* netpoll(int64_t delay_ns, int32_t* n) {
  *n = 0;
  int ep = g_epfd.load(std::memory_order_acquire);
  if (ep < 0) return nullptr;
  int ms;
  if (delay_ns < 0)
    ms = -1;
  else if (delay_ns == 0)
    ms = 0;
  else if (delay_ns < 1000000)
    ms = 1;
  else if (delay_ns < 1000000000000LL)
    ms = static_cast<int>(delay_ns / 1000000);
  else
    ms = 1000000000;
  struct epoll_event evs[128];
  int r = static_cast<int>(syscall(SYS_epoll_pwait, ep, evs, 128, ms, nullptr, _NSIG / 8));
  netpoll_last.store(now_ns(), std::memory_order_relaxed);
  if (r <= 0) return nullptr;
  g* chain = nullptr;
  for (int k = 0; k < r; k++) {
    auto* pd = static_cast<pdFull*>(evs[k].data.ptr);
    uint32_t e = evs[k].events;
    if (!pd) {  // netpoll_break
      uint64_t v;
      ssize_t rr = ::syscall(SYS_read, g_breakfd, &v, sizeof v);
      (void)rr;
      g_breaking.store(0, std::memory_order_release);
      continue;
    }
    bool rd = e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR);
    bool wr = e & (EPOLLOUT | EPOLLHUP | EPOLLERR);
    alloc::lock_guard l(pd->st.lock);
    if (rd) {
      if (pd->st.waiters[0])
        chain = take_waiters(pd, 0, 0, chain, n);
      else
        pd->st.ready[0] = true;
    }
    if (wr) {
      if (pd->st.waiters[1])
        chain = take_waiters(pd, 1, 0, chain, n);
      else
        pd->st.ready[1] = true;
    }
  }
  for (g* gp = chain; gp; gp = gp->schedlink)
    gp->status.store(gstatus::runnable, std::memory_order_relaxed);
  if (*n) sched.netpoll_ready.fetch_add(static_cast<uint64_t>(*n), std::memory_order_relaxed);
  return chain;
}

void netpoll_run_end() {
  netpoll_waiters.store(0);
  for_each_pd([](pdFull* pd) {
    alloc::lock_guard l(pd->st.lock);
    pd->st.waiters[0] = pd->st.waiters[1] = nullptr;
  });
}

void netpoll_break() {
  if (g_breakfd < 0) return;
  if (g_breaking.exchange(1, std::memory_order_acq_rel) != 0) return;
  uint64_t one = 1;
  ssize_t r = ::syscall(SYS_write, g_breakfd, &one, sizeof one);
  (void)r;
}

void injectglist(g* list, int32_t n) {
  if (!list) return;
  g* tail = list;
  while (tail->schedlink) tail = tail->schedlink;
  globrunqputbatch(list, tail, n);
  // One M per readied task, up to the idle Ps.
  for (int32_t i = 0; i < n && sched.npidle.load(std::memory_order_relaxed) > 0; i++) {
    int32_t before = sched.npidle.load();
    startm(nullptr, false);
    if (sched.npidle.load() == before) break;
  }
}

}  // namespace gort::rt
