// mutex: the allocator's lock. A futex word with three states (Drepper's
// "Futexes are tricky", mutex 3): 0 unlocked, 1 locked, 2 locked with waiters.
// It spins briefly before sleeping, sleeps at most kLockWaitPollNs at a
// time (a stop of the world may be waiting for the sleeper, see
// g_lock_wait_poll), never allocates, and is valid when
// zero-initialised, so it works before constructors run and can be reset in a
// fork child. Lock ordering across the allocator is written in mheap.h.
#pragma once

#include <atomic>
#include <cstdint>

namespace gort::alloc {

class mutex {
 public:
  void lock() {
    uint32_t c = 0;
    if (state_.compare_exchange_strong(c, 1, std::memory_order_acquire)) return;
    lock_slow();
  }
  // For a thread that must not wait (a stealer, mcache.cc): false if held.
  bool try_lock() {
    uint32_t c = 0;
    return state_.compare_exchange_strong(c, 1, std::memory_order_acquire);
  }
  void unlock() {
    if (state_.exchange(0, std::memory_order_release) == 2) wake();
  }
  // Only for a fork child, where the locking thread no longer exists.
  void reset() { state_.store(0, std::memory_order_relaxed); }

 private:
  void lock_slow();
  void wake();
  std::atomic<uint32_t> state_{0};
};

class lock_guard {
 public:
  explicit lock_guard(mutex& m) : m_(m) { m_.lock(); }
  ~lock_guard() { m_.unlock(); }
  lock_guard(const lock_guard&) = delete;
  lock_guard& operator=(const lock_guard&) = delete;

 private:
  mutex& m_;
};

// Called by a waiter for a mutex each time its sleep ends (woken, or after
// kLockWaitPollNs): the collector's stop request poll (gc/roots.cc). A
// thread that blocks the collector's stop signal stops only where it polls,
// and a lock's holder may be stopped already: a sleep with no end would hold
// the stop up for good. Null until the collector starts.
extern void (*g_lock_wait_poll)();
constexpr int64_t kLockWaitPollNs = 1000000;

// futex(2) wrappers shared by the lock and the scavenger's sleep.
// futex_wait first zeroes kSleepClearBytes of dead stack under its frame:
// a sleeping thread's stack is a root for the collector (lock.cc).
constexpr size_t kSleepClearBytes = 512;
void futex_wait(std::atomic<uint32_t>* addr, uint32_t val, int64_t timeout_ns);
void futex_wake(std::atomic<uint32_t>* addr, int n);

}  // namespace gort::alloc
