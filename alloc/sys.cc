// OS memory and diagnostics for the allocator; see sys.h.
#include "alloc/sys.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/membarrier.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>

namespace gort::alloc {

void* sys_map(size_t n, size_t align, bool noreserve) {
  int flags = MAP_PRIVATE | MAP_ANONYMOUS | (noreserve ? MAP_NORESERVE : 0);
  if (n + align < n) return nullptr;
  n = (n + 4095) & ~size_t{4095};
  // Over-map by align and trim both ends: the kernel gives page alignment only.
  size_t span = n + align;
  void* raw = mmap(nullptr, span, PROT_READ | PROT_WRITE, flags, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  uintptr_t start = reinterpret_cast<uintptr_t>(raw);
  uintptr_t aligned = (start + align - 1) & ~(uintptr_t{align} - 1);
  if (aligned > start) munmap(raw, aligned - start);
  uintptr_t end = start + span, want_end = aligned + n;
  if (end > want_end) munmap(reinterpret_cast<void*>(want_end), end - want_end);
  return reinterpret_cast<void*>(aligned);
}

void* sys_reserve(void* hint, size_t n, size_t align) {
  if (n + align < n) return nullptr;
  int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
  if (hint) {
    void* p = mmap(hint, n, PROT_NONE, flags | MAP_FIXED_NOREPLACE, -1, 0);
    if (p == MAP_FAILED) return nullptr;
    if (p != hint) {  // kernels before 4.17 treat the flag as a plain hint
      munmap(p, n);
      return nullptr;
    }
    return p;
  }
  void* raw = mmap(nullptr, n + align, PROT_NONE, flags, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  uintptr_t start = reinterpret_cast<uintptr_t>(raw);
  uintptr_t aligned = (start + align - 1) & ~(uintptr_t{align} - 1);
  if (aligned > start) munmap(raw, aligned - start);
  uintptr_t end = start + n + align, want_end = aligned + n;
  if (end > want_end) munmap(reinterpret_cast<void*>(want_end), end - want_end);
  return reinterpret_cast<void*>(aligned);
}

bool sys_commit(void* p, size_t n) {
  int saved = errno;
  bool ok = mprotect(p, n, PROT_READ | PROT_WRITE) == 0;
  if (ok) errno = saved;
  return ok;
}

size_t sys_as_limit() {
  struct rlimit rl;
  if (getrlimit(RLIMIT_AS, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return SIZE_MAX;
  return static_cast<size_t>(rl.rlim_cur);
}

void sys_unmap(void* p, size_t n) {
  munmap(p, n);
}

void sys_release(void* p, size_t n) {
  int saved = errno;  // free() must not change errno
  madvise(p, n, MADV_DONTNEED);
  errno = saved;
}

void sys_hugepage_advice(void* p, size_t n, bool huge) {
  int saved = errno;  // advice only: a kernel without THP refuses, harmlessly
  madvise(p, n, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
  errno = saved;
}

bool sys_thp_always() {
  int saved = errno;
  char buf[128] = {};
  int fd = open("/sys/kernel/mm/transparent_hugepage/enabled", O_RDONLY | O_CLOEXEC);
  ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
  if (fd >= 0) close(fd);
  errno = saved;
  return n > 0 && strstr(buf, "[always]") != nullptr;
}

void sys_release_inner(void* p, size_t n) {
  uintptr_t lo = (reinterpret_cast<uintptr_t>(p) + 4095) & ~uintptr_t{4095};
  uintptr_t hi = (reinterpret_cast<uintptr_t>(p) + n) & ~uintptr_t{4095};
  if (hi > lo) sys_release(reinterpret_cast<void*>(lo), hi - lo);
}

int64_t nanotime() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

int64_t coarse_nanotime() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

void process_fence() {
  // 1: membarrier registered; -1: none (the fallback page is used).
  static std::atomic<int> mode{0};
  int m = mode.load(std::memory_order_acquire);
  if (m == 0) {
    m = syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0 ? 1 : -1;
    mode.store(m, std::memory_order_release);
  }
  if (m > 0 && syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0) return;
  // The fallback: a written page made read-only flushes every CPU's TLB
  // entry for it, by interrupt. Callers are serialised by their own lock
  // (the collector runs one cycle at a time); the page stays mapped.
  static std::atomic<char*> page{nullptr};
  char* pg = page.load(std::memory_order_acquire);
  if (!pg) {
    void* p = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) fatal("cannot map a page for a process-wide fence: %s", strerror(errno));
    pg = static_cast<char*>(p);
    page.store(pg, std::memory_order_release);
  }
  if (mprotect(pg, 4096, PROT_READ | PROT_WRITE) != 0) fatal("process fence: mprotect failed");
  __atomic_store_n(pg, 1, __ATOMIC_SEQ_CST);  // the page is in this CPU's TLB, dirty
  if (mprotect(pg, 4096, PROT_READ) != 0) fatal("process fence: mprotect failed");
  std::atomic_thread_fence(std::memory_order_seq_cst);
}

void sys_write_all(int fd, const char* buf, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, buf, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    buf += w;
    n -= static_cast<size_t>(w);
  }
}

static void vprint(const char* prefix, const char* fmt, va_list ap) {
  char buf[512];
  int k = snprintf(buf, sizeof buf, "%s", prefix);
  int m = vsnprintf(buf + k, sizeof buf - static_cast<size_t>(k) - 1, fmt, ap);
  size_t len = static_cast<size_t>(k) + (m < 0 ? 0 : static_cast<size_t>(m));
  if (len > sizeof buf - 2) len = sizeof buf - 2;
  buf[len++] = '\n';
  sys_write_all(2, buf, len);
}

void print_err(const char* fmt, ...) {
  int saved = errno;
  va_list ap;
  va_start(ap, fmt);
  vprint("gort: ", fmt, ap);
  va_end(ap);
  errno = saved;
}

void fatal(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vprint("gort: fatal error: ", fmt, ap);
  va_end(ap);
  abort();
}

}  // namespace gort::alloc
