// gort::net: TCP on the netpoller (docs/net.md).
//
//   auto ln = gort::net::listen("127.0.0.1:8080", ec);
//   gort::go([&] { for (;;) { auto c = ln.accept(ec); if (ec) break; ... } });
//   auto c = gort::net::dial("127.0.0.1:8080", ec);
//   c.set_read_deadline(gort::Clock::now() + 100ms);
//   size_t n = c.read(buf, sizeof buf, ec);  // ec == std::errc::timed_out at the deadline
//
// Errors are std::error_code out-parameters (no exceptions): the system's
// errno values in std::system_category(), std::errc::timed_out when a
// deadline passed, std::errc::bad_file_descriptor on a closed Conn. A read
// that returns 0 with no error is the peer's end of stream. A task that
// waits parks on the netpoller and keeps no thread; the same calls work on a
// plain thread (they block it). Addresses are numeric "a.b.c.d:port",
// "[v6]:port" or "localhost:port"; port 0 asks for an ephemeral one.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <system_error>

#include "gort/runtime.h"

namespace gort::net {

namespace detail {
// Go's fdMutex, reduced to a reference count: every operation holds the
// descriptor for its duration, close() marks it closed (no operation starts
// after) and wakes the waiting ones, and whoever drops the last reference
// closes the descriptor, so that its number is never reused under an
// operation in flight. One word: the count in the low bits, kClosed high.
class fdRef {
 public:
  static constexpr uint32_t kClosed = 1u << 31;
  fdRef() = default;
  explicit fdRef(int fd) : fd_(fd) {}
  fdRef(fdRef&& o) noexcept { *this = static_cast<fdRef&&>(o); }
  // Not while operations are in flight (moving a Conn in use is a bug).
  fdRef& operator=(fdRef&& o) noexcept {
    fd_.store(o.fd_.exchange(-1, std::memory_order_relaxed), std::memory_order_relaxed);
    state_.store(0, std::memory_order_relaxed);
    o.state_.store(0, std::memory_order_relaxed);
    return *this;
  }
  // The descriptor, held until release(); -1 if closed (or never open).
  int acquire();
  void release();
  // Marks it closed and wakes its waiters; false if it already was.
  bool close();
  int fd() const {
    return state_.load(std::memory_order_acquire) & kClosed ? -1
                                                            : fd_.load(std::memory_order_relaxed);
  }

 private:
  std::atomic<int> fd_{-1};
  std::atomic<uint32_t> state_{0};
};
}  // namespace detail

// One TCP connection. Movable, not copyable; the destructor closes it.
// Deadlines are absolute; Clock::time_point{} (the default) means none. A
// deadline moved while another task waits takes effect at once. read and
// write may run at the same time in two tasks; two readers at once are
// allowed but their bytes interleave. close() may come from any task while
// others read or write: they return bad_file_descriptor.
class Conn {
 public:
  Conn() = default;
  explicit Conn(int fd);  // takes a connected socket (made non-blocking)
  Conn(Conn&& o) noexcept;
  Conn& operator=(Conn&& o) noexcept;
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;
  ~Conn();

  // Up to n bytes (at least 1 unless EOF or error). 0 and no error: EOF.
  size_t read(void* buf, size_t n, std::error_code& ec);
  // All n bytes, or fewer and an error.
  size_t write(const void* buf, size_t n, std::error_code& ec);
  void set_deadline(Clock::time_point t);  // both directions
  void set_read_deadline(Clock::time_point t);
  void set_write_deadline(Clock::time_point t);
  // Closes the socket; tasks waiting in read or write return
  // bad_file_descriptor. Idempotent. The descriptor itself is closed when
  // the last read or write in flight has returned.
  void close();
  // Shuts the write side down (the peer reads EOF); reads go on.
  void close_write();
  int fd() const { return fd_.fd(); }  // -1 once closed
  bool valid() const { return fd() >= 0; }

 private:
  detail::fdRef fd_;
  std::atomic<int64_t> rdeadline_{0}, wdeadline_{0};  // CLOCK_MONOTONIC ns, 0: none
};

// A listening TCP socket.
class Listener {
 public:
  Listener() = default;
  Listener(Listener&& o) noexcept;
  Listener& operator=(Listener&& o) noexcept;
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
  ~Listener();

  // The next connection; waits (parks) until one comes or the listener is
  // closed (bad_file_descriptor).
  Conn accept(std::error_code& ec);
  uint16_t port() const { return port_; }
  int fd() const { return fd_.fd(); }
  void close();  // from any task: a waiting accept returns bad_file_descriptor

 private:
  friend Listener listen(const std::string&, std::error_code&, int);
  detail::fdRef fd_;
  uint16_t port_ = 0;
};

// Listens on addr (SO_REUSEADDR set) with the given backlog.
Listener listen(const std::string& addr, std::error_code& ec, int backlog = 4096);
// Connects to addr; timeout zero means none (the kernel's own limit).
Conn dial(const std::string& addr, std::error_code& ec, Duration timeout = Duration::zero());

}  // namespace gort::net
