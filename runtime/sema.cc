// Semaphores that park tasks, and the sync types built on them: Mutex,
// RWMutex, WaitGroup (Go's sema.go, sync/mutex.go, rwmutex.go,
// waitgroup.go), and Cond (Go's notifyList).
//
// A semaphore is any uint32_t: semacquire waits until it is positive and
// decrements it, semrelease increments it and wakes a waiter. Waiters hang
// off a table of 251 buckets hashed by address (so a Mutex is two words and
// needs no constructor); a bucket keeps one sudog per distinct address, and
// that sudog the FIFO of further waiters on the same address. bucket.nwait
// lets semrelease skip the lock when nobody waits.
//
// Mutex: a state word (locked, woken, starving, waiter count << 3) and a
// semaphore. Normal mode: a woken waiter competes with newcomers, which are
// already running and usually win (good throughput); a waiter that has
// waited over 1 ms switches the Mutex to starvation mode, where unlock hands
// it directly to the first waiter (the handoff semrelease also yields the P
// to it) and newcomers queue at the tail, until the last waiter, or one that
// waited under 1 ms, switches it back.
#include <sched.h>

#include <mutex>

#include "alloc/sys.h"
#include "gort/runtime.h"
#include "runtime/proc.h"
#include "runtime/sudog.h"

namespace gort::rt {

namespace {

struct alignas(64) semaroot {
  alloc::mutex lock;
  std::atomic<uint32_t> nwait{0};
  sudog* heads = nullptr;  // one sudog per address, linked through next
};
constexpr int kSemTabSize = 251;
semaroot g_semtable[kSemTabSize];

semaroot* root_of(const void* addr) {
  return &g_semtable[(reinterpret_cast<uintptr_t>(addr) >> 3) % kSemTabSize];
}

bool cansemacquire(uint32_t* addr) {
  uint32_t v = __atomic_load_n(addr, __ATOMIC_ACQUIRE);
  while (v != 0)
    if (__atomic_compare_exchange_n(addr, &v, v - 1, true, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
      return true;
  return false;
}

// root->lock held.
void sem_queue(semaroot* root, uint32_t* addr, sudog* s, bool lifo) {
  s->addr = addr;
  s->waitlink = s->waittail = nullptr;
  s->next = nullptr;
  sudog** pp = &root->heads;
  while (*pp && (*pp)->addr != addr) pp = &(*pp)->next;
  sudog* head = *pp;
  if (!head) {
    *pp = s;
    return;
  }
  if (lifo) {  // s becomes the head, the old head the first of its waiters
    s->next = head->next;
    s->waitlink = head;
    s->waittail = head->waittail ? head->waittail : head;
    head->waittail = nullptr;
    head->next = nullptr;
    *pp = s;
    return;
  }
  if (head->waittail)
    head->waittail->waitlink = s;
  else
    head->waitlink = s;
  head->waittail = s;
}

sudog* sem_dequeue(semaroot* root, uint32_t* addr) {
  sudog** pp = &root->heads;
  while (*pp && (*pp)->addr != addr) pp = &(*pp)->next;
  sudog* s = *pp;
  if (!s) return nullptr;
  if (sudog* t = s->waitlink) {
    t->next = s->next;
    t->waittail = t == s->waittail ? nullptr : s->waittail;
    *pp = t;
  } else {
    *pp = s->next;
  }
  s->next = s->waitlink = s->waittail = nullptr;
  return s;
}

}  // namespace

void semacquire(uint32_t* addr, bool lifo, const char* reason) {
  if (cansemacquire(addr)) return;
  semaroot* root = root_of(addr);
  sudog s;
  s.gp = getg();
  for (;;) {
    root->lock.lock();
    root->nwait.fetch_add(1, std::memory_order_seq_cst);
    if (cansemacquire(addr)) {
      root->nwait.fetch_sub(1, std::memory_order_relaxed);
      root->lock.unlock();
      return;
    }
    s.ticket = 0;
    sem_queue(root, addr, &s, lifo);
    goparkunlock(&root->lock, reason);
    if (s.ticket != 0 || cansemacquire(addr)) return;
  }
}

void semrelease(uint32_t* addr, bool handoff) {
  semaroot* root = root_of(addr);
  __atomic_fetch_add(addr, 1, __ATOMIC_SEQ_CST);
  if (root->nwait.load(std::memory_order_seq_cst) == 0) return;
  root->lock.lock();
  if (root->nwait.load(std::memory_order_relaxed) == 0) {
    root->lock.unlock();
    return;
  }
  // A waiter abandoned at the end of an earlier run never wakes: skip it.
  sudog* s;
  while ((s = sem_dequeue(root, addr)) != nullptr) {
    root->nwait.fetch_sub(1, std::memory_order_relaxed);
    if (!abandoned(s->gp)) break;
  }
  root->lock.unlock();
  if (!s) return;
  bool handed = handoff && cansemacquire(addr);
  if (handed) s->ticket = 1;
  g* gp = s->gp;  // s is gone once gp runs
  ready(gp);
  if (handed && !gp->is_thread) goyield();
}

}  // namespace gort::rt

namespace gort {

using namespace gort::rt;

namespace {

constexpr int32_t kLocked = 1, kWoken = 2, kStarving = 4, kWaiterShift = 3;
constexpr int64_t kStarvationNs = 1000000;

bool can_spin(int iter) {
  if (iter >= 4) return false;
  int32_t procs = gomaxprocs.load(std::memory_order_relaxed);
  m* mp = getm();
  if (!mp) return true;  // a plain thread: spinning only costs itself
  // Spin only if another P is running (it may be about to unlock) and
  // nothing else waits for this P.
  if (procs <= 1 || procs <= sched.npidle.load(std::memory_order_relaxed) +
                                 sched.nmspinning.load(std::memory_order_relaxed) + 1)
    return false;
  p* pp = mp->pp;
  return pp &&
         pp->runqhead.load(std::memory_order_relaxed) ==
             pp->runqtail.load(std::memory_order_relaxed) &&
         !pp->runnext.load(std::memory_order_relaxed);
}

void spin() {
  for (int i = 0; i < 30; i++) __builtin_ia32_pause();
}

}  // namespace

void Mutex::lock_slow() {
  int64_t wait_start = 0;
  bool starving = false, awoke = false;
  int iter = 0;
  int32_t old = state_.load(std::memory_order_relaxed);
  for (;;) {
    // Spin while it is locked in normal mode: the holder may release soon.
    if ((old & (kLocked | kStarving)) == kLocked && can_spin(iter)) {
      // Setting woken tells unlock not to wake a waiter: we are awake.
      if (!awoke && (old & kWoken) == 0 && (old >> kWaiterShift) != 0 &&
          state_.compare_exchange_weak(old, old | kWoken, std::memory_order_relaxed))
        awoke = true;
      spin();
      iter++;
      old = state_.load(std::memory_order_relaxed);
      continue;
    }
    int32_t next = old;
    if ((old & kStarving) == 0) next |= kLocked;  // starving: newcomers queue
    if (old & (kLocked | kStarving)) next += 1 << kWaiterShift;
    if (starving && (old & kLocked)) next |= kStarving;
    if (awoke) {
      if ((next & kWoken) == 0) alloc::fatal("sync: inconsistent mutex state");
      next &= ~kWoken;
    }
    if (state_.compare_exchange_weak(old, next, std::memory_order_acquire)) {
      if ((old & (kLocked | kStarving)) == 0) return;  // took it
      bool lifo = wait_start != 0;                     // waited before: back to the front
      if (wait_start == 0) wait_start = now_ns();
      semacquire(&sema_, lifo, "sync.Mutex.Lock");
      starving = starving || now_ns() - wait_start > kStarvationNs;
      old = state_.load(std::memory_order_relaxed);
      if (old & kStarving) {
        // Handed to us directly: the state still says unlocked and counts us.
        if ((old & (kLocked | kWoken)) != 0 || (old >> kWaiterShift) == 0)
          alloc::fatal("sync: inconsistent mutex state");
        int32_t delta = kLocked - (1 << kWaiterShift);
        if (!starving || (old >> kWaiterShift) == 1) delta -= kStarving;  // leave starvation
        state_.fetch_add(delta, std::memory_order_acquire);
        return;
      }
      awoke = true;
      iter = 0;
    }
  }
}

void Mutex::unlock_slow(int32_t next) {
  if (((next + kLocked) & kLocked) == 0) alloc::fatal("sync: unlock of unlocked mutex");
  if (next & kStarving) {
    semrelease(&sema_, true);  // hand off to the first waiter and let it run
    return;
  }
  int32_t old = next;
  for (;;) {
    // Nobody to wake, or someone already locked it, woke, or starves.
    if ((old >> kWaiterShift) == 0 || (old & (kLocked | kWoken | kStarving))) return;
    next = (old - (1 << kWaiterShift)) | kWoken;
    if (state_.compare_exchange_weak(old, next, std::memory_order_release)) {
      semrelease(&sema_, false);
      return;
    }
  }
}

bool Mutex::try_lock() {
  int32_t old = state_.load(std::memory_order_relaxed);
  if (old & (kLocked | kStarving)) return false;
  return state_.compare_exchange_strong(old, old | kLocked, std::memory_order_acquire);
}

// ---------------------------------------------------------------- RWMutex

namespace {
constexpr int32_t kMaxReaders = 1 << 30;
}

void RWMutex::lock_shared() {
  if (reader_count_.fetch_add(1, std::memory_order_acquire) + 1 < 0)
    semacquire(&reader_sem_, false, "sync.RWMutex.RLock");  // a writer is pending
}

bool RWMutex::try_lock_shared() {
  int32_t c = reader_count_.load(std::memory_order_relaxed);
  while (c >= 0)
    if (reader_count_.compare_exchange_weak(c, c + 1, std::memory_order_acquire)) return true;
  return false;
}

void RWMutex::unlock_shared() {
  int32_t r = reader_count_.fetch_sub(1, std::memory_order_release) - 1;
  if (r >= 0) return;
  if (r + 1 == 0 || r + 1 == -kMaxReaders) alloc::fatal("sync: RUnlock of unlocked RWMutex");
  // The last reader the pending writer waits for wakes it.
  if (reader_wait_.fetch_sub(1, std::memory_order_acq_rel) - 1 == 0)
    semrelease(&writer_sem_, false);
}

void RWMutex::lock() {
  w_.lock();  // first, win against other writers
  int32_t r = reader_count_.fetch_add(-kMaxReaders, std::memory_order_acq_rel);
  if (r != 0 && reader_wait_.fetch_add(r, std::memory_order_acq_rel) + r != 0)
    semacquire(&writer_sem_, false, "sync.RWMutex.Lock");
}

bool RWMutex::try_lock() {
  if (!w_.try_lock()) return false;
  int32_t zero = 0;
  if (!reader_count_.compare_exchange_strong(zero, -kMaxReaders, std::memory_order_acquire)) {
    w_.unlock();
    return false;
  }
  return true;
}

void RWMutex::unlock() {
  int32_t r = reader_count_.fetch_add(kMaxReaders, std::memory_order_release) + kMaxReaders;
  if (r >= kMaxReaders) alloc::fatal("sync: Unlock of unlocked RWMutex");
  for (int32_t i = 0; i < r; i++) semrelease(&reader_sem_, false);
  w_.unlock();
}

// ---------------------------------------------------------------- WaitGroup

void WaitGroup::add(int64_t delta) {
  uint64_t s = state_.fetch_add(static_cast<uint64_t>(delta) << 32, std::memory_order_acq_rel) +
               (static_cast<uint64_t>(delta) << 32);
  int32_t v = static_cast<int32_t>(s >> 32);
  uint32_t w = static_cast<uint32_t>(s);
  if (v < 0) alloc::fatal("sync: negative WaitGroup counter");
  if (delta > 0 && v == delta && w != 0)
    alloc::fatal("sync: WaitGroup misuse: add called concurrently with wait");
  if (v > 0 || w == 0) return;
  // Counter is zero with waiters: nobody may change the state now but us.
  if (state_.load(std::memory_order_relaxed) != s)
    alloc::fatal("sync: WaitGroup misuse: add called concurrently with wait");
  state_.store(0, std::memory_order_relaxed);
  for (; w != 0; w--) semrelease(&sema_, false);
}

void WaitGroup::wait() {
  uint64_t s = state_.load(std::memory_order_acquire);
  for (;;) {
    if ((s >> 32) == 0) return;
    if (state_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel)) {
      semacquire(&sema_, false, "sync.WaitGroup.Wait");
      if (state_.load(std::memory_order_acquire) != 0)
        alloc::fatal("sync: WaitGroup is reused before a previous wait has returned");
      return;
    }
  }
}

// ---------------------------------------------------------------- Cond

namespace {
static_assert(sizeof(alloc::mutex) == sizeof(std::atomic<uint32_t>));
alloc::mutex& as_mutex(std::atomic<uint32_t>& w) {
  return *reinterpret_cast<alloc::mutex*>(&w);
}
// Tickets wrap; a is before b if it is less than half the space behind.
bool ticket_before(uint32_t a, uint32_t b) {
  return static_cast<int32_t>(a - b) < 0;
}
}  // namespace

void Cond::wait() {
  uint32_t t = wait_ticket_.fetch_add(1, std::memory_order_acq_rel);
  m_.unlock();
  alloc::mutex& l = as_mutex(lock_);
  l.lock();
  if (ticket_before(t, notify_ticket_)) {  // signalled between the two
    l.unlock();
  } else {
    sudog s;
    s.gp = getg();
    s.ticket = t;
    s.next = nullptr;
    if (tail_)
      static_cast<sudog*>(tail_)->next = &s;
    else
      head_ = &s;
    tail_ = &s;
    goparkunlock(&l, "sync.Cond.Wait");
  }
  m_.lock();
}

void Cond::signal() {
  if (wait_ticket_.load(std::memory_order_acquire) ==
      __atomic_load_n(&notify_ticket_, __ATOMIC_ACQUIRE))
    return;
  alloc::mutex& l = as_mutex(lock_);
  l.lock();
  // Notify the next ticket; a waiter abandoned by an earlier run does not
  // count, the signal goes on to the ticket after it.
  while (wait_ticket_.load(std::memory_order_relaxed) != notify_ticket_) {
    uint32_t t = notify_ticket_;
    __atomic_store_n(&notify_ticket_, t + 1, __ATOMIC_RELEASE);
    sudog* prev = nullptr;
    sudog* s = static_cast<sudog*>(head_);
    while (s && s->ticket != t) {
      prev = s;
      s = s->next;
    }
    if (!s) break;  // the waiter holding t has not queued yet; it will see the notify
    if (prev)
      prev->next = s->next;
    else
      head_ = s->next;
    if (tail_ == s) tail_ = prev;
    if (abandoned(s->gp)) continue;
    g* gp = s->gp;
    l.unlock();
    ready(gp);
    return;
  }
  l.unlock();
}

void Cond::broadcast() {
  if (wait_ticket_.load(std::memory_order_acquire) ==
      __atomic_load_n(&notify_ticket_, __ATOMIC_ACQUIRE))
    return;
  alloc::mutex& l = as_mutex(lock_);
  l.lock();
  __atomic_store_n(&notify_ticket_, wait_ticket_.load(std::memory_order_relaxed), __ATOMIC_RELEASE);
  sudog* s = static_cast<sudog*>(head_);
  head_ = tail_ = nullptr;
  l.unlock();
  while (s) {
    sudog* next = s->next;  // read before s's task can run
    ready(s->gp);
    s = next;
  }
}

}  // namespace gort
