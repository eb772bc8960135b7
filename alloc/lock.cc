// The futex mutex; see lock.h.
#include "alloc/lock.h"

#include <errno.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

namespace gort::alloc {

void (*g_lock_wait_poll)() = nullptr;

namespace {

// Zeroes the stack just under the caller's frame, where the futex system
// call's return address and red zone will lie (see futex_wait).
__attribute__((noinline)) void clear_below() {
  volatile uintptr_t buf[kSleepClearBytes / sizeof(uintptr_t)];
  for (auto& w : buf) w = 0;
  std::atomic_signal_fence(std::memory_order_seq_cst);
}

}  // namespace

void futex_wait(std::atomic<uint32_t>* addr, uint32_t val, int64_t timeout_ns) {
  // A thread asleep here is stopped for the collector with its stack
  // scanned conservatively from the red zone (128 bytes) under its stack
  // pointer up. Whatever earlier, deeper calls left there, or in an unset
  // slot of this frame, would be taken for pointers: the finalizer thread,
  // idle between objects, kept the last object it handled alive that way
  // (and with it whatever was allocated later at its address).
  clear_below();
  int saved = errno;
  struct timespec ts = {0, 0}, *tsp = nullptr;
  if (timeout_ns >= 0) {
    ts.tv_sec = timeout_ns / 1000000000;
    ts.tv_nsec = timeout_ns % 1000000000;
    tsp = &ts;
  }
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(addr), FUTEX_WAIT_PRIVATE, val, tsp, nullptr, 0);
  errno = saved;
}

void futex_wake(std::atomic<uint32_t>* addr, int n) {
  int saved = errno;
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(addr), FUTEX_WAKE_PRIVATE, n, nullptr, nullptr, 0);
  errno = saved;
}

void mutex::lock_slow() {
  // Spin a little: allocator critical sections are short, and a context
  // switch costs far more than a few hundred pause instructions.
  for (int i = 0; i < 100; i++) {
    uint32_t c = state_.load(std::memory_order_relaxed);
    if (c == 0 && state_.compare_exchange_weak(c, 1, std::memory_order_acquire)) return;
    __builtin_ia32_pause();
  }
  uint32_t c = state_.exchange(2, std::memory_order_acquire);
  while (c != 0) {
    futex_wait(&state_, 2, kLockWaitPollNs);
    if (auto poll = __atomic_load_n(&g_lock_wait_poll, __ATOMIC_ACQUIRE)) poll();
    c = state_.exchange(2, std::memory_order_acquire);
  }
}

void mutex::wake() {
  futex_wake(&state_, 1);
}

}  // namespace gort::alloc
