// gort::net (include/gort/net.h): listen, accept, dial and a Conn with
// deadlines, straight on the netpoller (netpoll.h) rather than through the
// interposed libc calls: each operation is one non-blocking system call,
// and on EAGAIN the task parks in pd_wait with the Conn's deadline for that
// direction, then retries (Go's internal/poll.FD.Read loop). Deadlines live
// in the Conn, read again after every wake-up; setting one kicks the
// waiters (pd_kick) so that an earlier deadline takes effect at once. On a
// plain thread the wait is poll() on the descriptor instead of a park, which
// close() and a new deadline interrupt as they wake a parked task.
//
// Every socket here is non-blocking in the kernel and watched by the
// netpoller for its whole life. A Conn or Listener may be closed by one
// task while others use it, so the descriptor is held by a reference count
// (detail::fdRef, Go's fdMutex without its read and write locks): each
// operation takes a reference for its duration, close() sets the closed
// bit, so no operation starts after it, and pd_close wakes the waiting ones
// with EBADF (reported as bad_file_descriptor); the descriptor is closed
// when the last reference goes. Its number therefore cannot be reused, and
// another socket's bytes read, while an operation still holds it; an
// operation that loops (EAGAIN, a deadline moved) looks at the closed bit
// again each time.
#include "gort/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>

#include "runtime/netpoll.h"
#include "runtime/proc.h"
#include "runtime/runq.h"

namespace gort::net {

namespace {

using rt::pollDesc;

int64_t to_ns(Clock::time_point t) {
  if (t == Clock::time_point{}) return 0;
  int64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  return ns <= 0 ? 1 : ns;  // a deadline in the past is still a deadline
}

std::error_code sys_error(int e) {
  return std::error_code(e, std::system_category());
}

bool in_task_now() {
  rt::m* mp = rt::getm();
  return mp && mp->curg && mp->curg->status.load(std::memory_order_relaxed) == rt::gstatus::running;
}

// Waits until fd is ready for mode or the deadline (0: none) passes:
// 0, ETIMEDOUT or EBADF. A close or a kick wakes a plain thread too.
int wait_fd(int fd, int mode, int64_t deadline) {
  pollDesc* pd = rt::pd_lookup(fd);
  if (!pd) return EBADF;
  uint32_t seq = pd->seq.load(std::memory_order_acquire);
  if (in_task_now()) return rt::pd_wait(pd, mode, deadline, seq);
  return rt::pd_wait_thread(pd, mode, deadline, seq);
}

bool parse(const std::string& addr, sockaddr_storage* ss, socklen_t* len) {
  size_t colon = addr.rfind(':');
  if (colon == std::string::npos) return false;
  std::string host = addr.substr(0, colon), port = addr.substr(colon + 1);
  char* end = nullptr;
  long p = strtol(port.c_str(), &end, 10);
  if (port.empty() || *end || p < 0 || p > 65535) return false;
  memset(ss, 0, sizeof *ss);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    auto* a6 = reinterpret_cast<sockaddr_in6*>(ss);
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(static_cast<uint16_t>(p));
    if (inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), &a6->sin6_addr) != 1)
      return false;
    *len = sizeof *a6;
    return true;
  }
  auto* a4 = reinterpret_cast<sockaddr_in*>(ss);
  a4->sin_family = AF_INET;
  a4->sin_port = htons(static_cast<uint16_t>(p));
  if (host.empty() || host == "0.0.0.0")
    a4->sin_addr.s_addr = htonl(INADDR_ANY);
  else if (host == "localhost")
    a4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  else if (inet_pton(AF_INET, host.c_str(), &a4->sin_addr) != 1)
    return false;
  *len = sizeof *a4;
  return true;
}

int raw_close(int fd) {
  rt::pd_close(fd);
  return static_cast<int>(syscall(SYS_close, fd));
}

// An operation's reference, dropped however it returns.
class held {
 public:
  explicit held(detail::fdRef& r) : r_(r), fd_(r.acquire()) {}
  ~held() {
    if (fd_ >= 0) r_.release();
  }
  held(const held&) = delete;
  held& operator=(const held&) = delete;
  int fd() const { return fd_; }
  // Closed since the operation began (it still holds the number).
  bool closed() const { return r_.fd() < 0; }

 private:
  detail::fdRef& r_;
  int fd_;
};

std::error_code closed_error() {
  return std::make_error_code(std::errc::bad_file_descriptor);
}

void kick(detail::fdRef& r) {
  held h(r);
  if (h.fd() >= 0)
    if (pollDesc* pd = rt::pd_lookup(h.fd())) rt::pd_kick(pd);
}

// A new non-blocking socket fd watched by the netpoller, or -1 (errno).
int watch(int fd) {
  if (fd < 0) return -1;
  if (!rt::pd_open(fd, false)) {
    int e = errno;
    syscall(SYS_close, fd);
    errno = e ? e : ENOMEM;
    return -1;
  }
  return fd;
}

}  // namespace

// ---- fdRef

namespace detail {

int fdRef::acquire() {
  uint32_t v = state_.load(std::memory_order_acquire);
  do {
    if (v & kClosed) return -1;
  } while (!state_.compare_exchange_weak(v, v + 1, std::memory_order_acq_rel,
                                         std::memory_order_acquire));
  int fd = fd_.load(std::memory_order_relaxed);
  if (fd < 0) release();  // never opened: nothing to hold
  return fd;
}

void fdRef::release() {
  if (state_.fetch_sub(1, std::memory_order_acq_rel) - 1 != kClosed) return;
  int fd = fd_.exchange(-1, std::memory_order_relaxed);
  if (fd >= 0) syscall(SYS_close, fd);
}

bool fdRef::close() {
  // Closed and one reference more, for close itself: the last operation in
  // flight must not close the number (and a new socket take it) while
  // pd_close below still works on it.
  uint32_t v = state_.load(std::memory_order_acquire);
  do {
    if (v & kClosed) return false;
  } while (!state_.compare_exchange_weak(v, (v + 1) | kClosed, std::memory_order_acq_rel,
                                         std::memory_order_acquire));
  int fd = fd_.load(std::memory_order_relaxed);
  if (fd >= 0) rt::pd_close(fd);  // the waiters wake with EBADF
  release();
  return true;
}

}  // namespace detail

// ---- Conn

Conn::Conn(int fd) : fd_(fd) {
  if (fd < 0) return;
  if (!rt::pd_lookup(fd) || !rt::pd_lookup(fd)->kernel_nonblock.load()) {
    int fl = static_cast<int>(syscall(SYS_fcntl, fd, F_GETFL));
    if (fl >= 0) syscall(SYS_fcntl, fd, F_SETFL, fl | O_NONBLOCK);
    rt::pd_open(fd, false);
  }
}

Conn::Conn(Conn&& o) noexcept : fd_(std::move(o.fd_)) {
  rdeadline_.store(o.rdeadline_.load());
  wdeadline_.store(o.wdeadline_.load());
}

Conn& Conn::operator=(Conn&& o) noexcept {
  if (this != &o) {
    close();
    fd_ = std::move(o.fd_);
    rdeadline_.store(o.rdeadline_.load());
    wdeadline_.store(o.wdeadline_.load());
  }
  return *this;
}

Conn::~Conn() {
  close();
}

void Conn::close() {
  fd_.close();
}

void Conn::close_write() {
  held h(fd_);
  if (h.fd() >= 0) syscall(SYS_shutdown, h.fd(), SHUT_WR);
}

void Conn::set_read_deadline(Clock::time_point t) {
  rdeadline_.store(to_ns(t));
  kick(fd_);
}

void Conn::set_write_deadline(Clock::time_point t) {
  wdeadline_.store(to_ns(t));
  kick(fd_);
}

void Conn::set_deadline(Clock::time_point t) {
  rdeadline_.store(to_ns(t));
  wdeadline_.store(to_ns(t));
  kick(fd_);
}

size_t Conn::read(void* buf, size_t n, std::error_code& ec) {
  ec.clear();
  held h(fd_);
  int fd = h.fd();
  for (;;) {
    if (fd < 0 || h.closed()) {
      ec = closed_error();
      return 0;
    }
    int64_t d = rdeadline_.load(std::memory_order_relaxed);
    if (d != 0 && d <= rt::now_ns()) {
      ec = std::make_error_code(std::errc::timed_out);
      return 0;
    }
    long r = syscall(SYS_read, fd, buf, n);
    if (r >= 0) {
      rt::io_turn_end();  // a completed read ends the turn when others wait (proc.h)
      return static_cast<size_t>(r);
    }
    int e = errno;
    if (e == EINTR) continue;
    if (e != EAGAIN) {
      ec = sys_error(e);
      return 0;
    }
    int w = wait_fd(fd, rt::kModeRead, d);
    if (w == EBADF) {
      ec = closed_error();
      return 0;
    }
    // ETIMEDOUT: the check at the top decides (the deadline may have moved).
  }
}

size_t Conn::write(const void* buf, size_t n, std::error_code& ec) {
  ec.clear();
  held h(fd_);
  int fd = h.fd();
  size_t done = 0;
  const char* p = static_cast<const char*>(buf);
  while (done < n) {
    if (fd < 0 || h.closed()) {
      ec = closed_error();
      return done;
    }
    int64_t d = wdeadline_.load(std::memory_order_relaxed);
    if (d != 0 && d <= rt::now_ns()) {
      ec = std::make_error_code(std::errc::timed_out);
      return done;
    }
    long r = syscall(SYS_sendto, fd, p + done, n - done, MSG_NOSIGNAL, nullptr, 0);
    if (r >= 0) {
      done += static_cast<size_t>(r);
      if (done == n) rt::io_turn_end();
      continue;
    }
    int e = errno;
    if (e == EINTR) continue;
    if (e != EAGAIN) {
      ec = sys_error(e);
      return done;
    }
    if (wait_fd(fd, rt::kModeWrite, d) == EBADF) {
      ec = closed_error();
      return done;
    }
  }
  return done;
}

// ---- Listener

Listener::Listener(Listener&& o) noexcept : fd_(std::move(o.fd_)), port_(o.port_) {}

Listener& Listener::operator=(Listener&& o) noexcept {
  if (this != &o) {
    close();
    fd_ = std::move(o.fd_);
    port_ = o.port_;
  }
  return *this;
}

Listener::~Listener() {
  close();
}

void Listener::close() {
  fd_.close();
}

Conn Listener::accept(std::error_code& ec) {
  ec.clear();
  held h(fd_);
  int fd = h.fd();
  for (;;) {
    if (fd < 0 || h.closed()) {
      ec = closed_error();
      return Conn();
    }
    long c = syscall(SYS_accept4, fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c >= 0) {
      int one = 1;
      syscall(SYS_setsockopt, c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      if (watch(static_cast<int>(c)) < 0) {
        ec = sys_error(errno);
        return Conn();
      }
      return Conn(static_cast<int>(c));
    }
    int e = errno;
    if (e == EINTR || e == ECONNABORTED) continue;
    if (e != EAGAIN) {
      ec = sys_error(e);
      return Conn();
    }
    if (wait_fd(fd, rt::kModeRead, 0) == EBADF) {
      ec = closed_error();
      return Conn();
    }
  }
}

Listener listen(const std::string& addr, std::error_code& ec, int backlog) {
  ec.clear();
  Listener ln;
  sockaddr_storage ss;
  socklen_t len;
  if (!parse(addr, &ss, &len)) {
    ec = std::make_error_code(std::errc::invalid_argument);
    return ln;
  }
  int fd = watch(static_cast<int>(
      syscall(SYS_socket, ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)));
  if (fd < 0) {
    ec = sys_error(errno);
    return ln;
  }
  int one = 1;
  syscall(SYS_setsockopt, fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (syscall(SYS_bind, fd, &ss, len) != 0 || syscall(SYS_listen, fd, backlog) != 0 ||
      syscall(SYS_getsockname, fd, &ss, &len) != 0) {
    ec = sys_error(errno);
    raw_close(fd);
    return ln;
  }
  ln.fd_ = detail::fdRef(fd);
  ln.port_ = ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                            : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  return ln;
}

Conn dial(const std::string& addr, std::error_code& ec, Duration timeout) {
  ec.clear();
  sockaddr_storage ss;
  socklen_t len;
  if (!parse(addr, &ss, &len)) {
    ec = std::make_error_code(std::errc::invalid_argument);
    return Conn();
  }
  int fd = watch(static_cast<int>(
      syscall(SYS_socket, ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)));
  if (fd < 0) {
    ec = sys_error(errno);
    return Conn();
  }
  Conn c(fd);
  if (syscall(SYS_connect, fd, &ss, len) != 0) {
    int e = errno;
    if (e != EINPROGRESS) {
      ec = sys_error(e);
      return Conn();
    }
    int64_t deadline = timeout > Duration::zero() ? rt::now_ns() + timeout.count() : 0;
    int w = wait_fd(fd, rt::kModeWrite, deadline);
    if (w != 0) {
      ec = w == ETIMEDOUT ? std::make_error_code(std::errc::timed_out) : sys_error(w);
      return Conn();
    }
    int err = 0;
    socklen_t elen = sizeof err;
    syscall(SYS_getsockopt, fd, SOL_SOCKET, SO_ERROR, &err, &elen);
    if (err != 0) {
      ec = sys_error(err);
      return Conn();
    }
  }
  int one = 1;
  syscall(SYS_setsockopt, fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return c;
}

}  // namespace gort::net
