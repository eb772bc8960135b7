// The futex mutex; see lock.h.
#include "alloc/lock.h"

#include <errno.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

namespace gort::alloc {

void (*g_lock_wait_poll)() = nullptr;

void futex_wait(std::atomic<uint32_t>* addr, uint32_t val, int64_t timeout_ns) {
  int saved = errno;
  struct timespec ts, *tsp = nullptr;
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
