// The netpoller through the interposed libc calls (issue 12): sockets and
// pipes a task makes park the task, not its M, while the program still sees
// blocking calls, its own O_NONBLOCK, its SO_RCVTIMEO, EBADF from a close()
// under a waiter, EOF and resets; plain threads see no change. The Makefile
// runs the suite at GORT_MAXPROCS 1, 2 and 8. Assertions are on bytes,
// counts and errno, never on time.
#include "runtime/netpoll.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <boost/test/unit_test.hpp>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "common.h"
#include "gort/net.h"
#include "gort/runtime.h"

using namespace rt_test;

namespace {

// errno right after the call, on the thread the task is on: looked up
// again, not at an address the compiler kept from before the call (a task
// may come back on another thread; docs/runtime.md).
int* (*volatile errno_loc)() = __errno_location;
__attribute__((noinline)) int read_errno(int fd, ssize_t* r) {
  char c;
  *errno_loc() = 0;
  *r = read(fd, &c, 1);
  return *errno_loc();
}

// f()'s result in *r and the errno it left, read as read_errno does.
template <class F>
__attribute__((noinline)) int call_errno(F f, ssize_t* r) {
  *errno_loc() = 0;
  *r = f();
  return *errno_loc();
}

// Until n tasks of this run are parked on the netpoller: a waiter counts
// once its node is on the wait list (the count goes up under the pollDesc's
// lock, which the park releases), so a close or a write after this is seen
// by a parked task, not one still on its way to the wait.
bool wait_parked(int n) {
  return wait_until([n] { return gort::rt::netpoll_waiters.load() >= n; });
}

int listen_lo(int backlog, uint16_t* port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(fd, backlog) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    close(fd);
    return -1;
  }
  *port = ntohs(a.sin_port);
  return fd;
}

int dial_lo(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

bool full_io(bool rd, int fd, void* buf, size_t n) {
  char* p = static_cast<char*>(buf);
  while (n > 0) {
    ssize_t r = rd ? read(fd, p, n) : write(fd, p, n);
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

long threads_now() {
  FILE* f = fopen("/proc/self/status", "r");
  if (!f) return -1;
  char line[256];
  long n = -1;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "Threads:", 8) == 0) n = strtol(line + 8, nullptr, 10);
  fclose(f);
  return n;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(netpoll)

// 300 client tasks, each with its own connection to an echo server (a task
// per connection), 20 round trips of 64 bytes each with plain libc calls.
BOOST_AUTO_TEST_CASE(echo_hundreds_of_connections_libc) {
  run_checked([] {
    uint16_t port = 0;
    int lfd = listen_lo(1024, &port);
    TCHECK(lfd >= 0);
    const int kConns = 300, kRounds = 20;
    gort::WaitGroup served;
    gort::go([&] {
      for (int i = 0; i < kConns; i++) {
        int c = accept(lfd, nullptr, nullptr);
        TCHECK(c >= 0);
        if (c < 0) return;
        served.add(1);
        gort::go([&, c] {
          char buf[64];
          for (;;) {
            ssize_t n = read(c, buf, sizeof buf);
            if (n <= 0) break;
            if (!full_io(false, c, buf, static_cast<size_t>(n))) break;
          }
          close(c);
          served.done();
        });
      }
    });
    std::atomic<int> ok{0};
    gort::WaitGroup clients;
    for (int i = 0; i < kConns; i++) {
      clients.add(1);
      gort::go([&, i] {
        int fd = dial_lo(port);
        TCHECK(fd >= 0);
        bool good = fd >= 0;
        for (int r = 0; r < kRounds && good; r++) {
          char out[64], in[64];
          memset(out, 'a' + (i + r) % 26, sizeof out);
          good = full_io(false, fd, out, sizeof out) && full_io(true, fd, in, sizeof in) &&
                 memcmp(in, out, sizeof in) == 0;
        }
        TCHECK(good);
        if (good) ok++;
        if (fd >= 0) close(fd);
        clients.done();
      });
    }
    TCHECK(wait_group_within(clients));
    TCHECK(wait_group_within(served));
    TCHECK_EQ(ok.load(), kConns);
    close(lfd);
  });
}

// 200 tasks blocked in read() on pipes at once hold no M each: the process
// keeps a handful of threads (with the hand-off alone it took one per task).
BOOST_AUTO_TEST_CASE(pipe_readers_park_without_threads) {
  run_checked([] {
    const int kPipes = 200;
    std::vector<int> fds(2 * kPipes);
    for (int i = 0; i < kPipes; i++) TCHECK(pipe(&fds[2 * static_cast<size_t>(i)]) == 0);
    std::atomic<int> parked{0}, got{0};
    gort::WaitGroup wg;
    for (int i = 0; i < kPipes; i++) {
      wg.add(1);
      gort::go([&, i] {
        parked++;
        char c = 0;
        TCHECK_EQ(read(fds[2 * static_cast<size_t>(i)], &c, 1), 1);
        TCHECK_EQ(static_cast<int>(c), 'x');
        got++;
        wg.done();
      });
    }
    TCHECK(wait_until([&] { return parked.load() == kPipes; }));
    gort::sleep_for(std::chrono::milliseconds(50));  // sysmon would have retaken by now
    long threads = threads_now();
    TCHECK_MSG(threads < 40, "threads " << threads);
    TCHECK_EQ(got.load(), 0);
    for (int i = 0; i < kPipes; i++) {
      char c = 'x';
      TCHECK_EQ(write(fds[2 * static_cast<size_t>(i) + 1], &c, 1), 1);
    }
    TCHECK(wait_group_within(wg));
    TCHECK_EQ(got.load(), kPipes);
    for (int fd : fds) close(fd);
  });
}

// A pipe between two tasks carries 4 MiB intact: writes larger than the
// pipe's buffer are written whole (the blocking semantics), reads see EOF.
BOOST_AUTO_TEST_CASE(pipe_between_tasks_bulk_and_eof) {
  run_checked([] {
    int p[2];
    TCHECK(pipe(p) == 0);
    const size_t kTotal = 4 << 20;
    gort::go([&] {
      std::vector<unsigned char> buf(256 * 1024);
      size_t sent = 0;
      while (sent < kTotal) {
        for (size_t k = 0; k < buf.size(); k++) buf[k] = static_cast<unsigned char>((sent + k) * 7);
        ssize_t n = write(p[1], buf.data(), buf.size());
        TCHECK_EQ(n, static_cast<ssize_t>(buf.size()));
        if (n <= 0) break;
        sent += static_cast<size_t>(n);
      }
      close(p[1]);
    });
    size_t got = 0;
    bool good = true;
    std::vector<unsigned char> buf(10007);
    for (;;) {
      ssize_t n = read(p[0], buf.data(), buf.size());
      if (n <= 0) {
        TCHECK_EQ(n, 0);
        break;
      }
      for (ssize_t k = 0; k < n; k++)
        if (buf[static_cast<size_t>(k)] !=
            static_cast<unsigned char>((got + static_cast<size_t>(k)) * 7))
          good = false;
      got += static_cast<size_t>(n);
    }
    TCHECK(good);
    TCHECK_EQ(got, kTotal);
    close(p[0]);
  });
}

// SO_RCVTIMEO: a read with nothing to read ends with EAGAIN, as the kernel's.
BOOST_AUTO_TEST_CASE(so_rcvtimeo_fires) {
  run_checked([] {
    int sv[2];
    TCHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    timeval tv{0, 30000};
    TCHECK(setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0);
    ssize_t r;
    int e = read_errno(sv[0], &r);
    TCHECK_EQ(r, -1);
    TCHECK_EQ(e, EAGAIN);
    // And data that comes before the timeout is read.
    gort::go([&] {
      gort::sleep_for(std::chrono::milliseconds(5));
      char c = 'k';
      TCHECK_EQ(write(sv[1], &c, 1), 1);
    });
    tv = {5, 0};
    TCHECK(setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0);
    e = read_errno(sv[0], &r);
    TCHECK_EQ(r, 1);
    close(sv[0]);
    close(sv[1]);
  });
}

// close() while another task waits in read() on the descriptor wakes it with
// EBADF; so does dup2() onto it, on its own (the reader is done before the
// number is closed). The reader is parked before either.
BOOST_AUTO_TEST_CASE(close_and_dup2_wake_waiters) {
  run_checked([] {
    for (int how = 0; how < 2; how++) {
      int sv[2];
      TCHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
      std::atomic<int> err{0};
      std::atomic<ssize_t> res{0};
      gort::WaitGroup wg;
      wg.add(1);
      gort::go([&] {
        ssize_t r;
        err = read_errno(sv[0], &r);
        res = r;
        wg.done();
      });
      TCHECK(wait_parked(1));
      if (how == 0) {
        close(sv[0]);
        TCHECK(wait_group_within(wg));
      } else {
        int other = open("/dev/null", O_RDONLY);
        TCHECK(dup2(other, sv[0]) == sv[0]);
        TCHECK_MSG(wait_group_within(wg), "dup2 did not wake the reader");
        close(other);
        close(sv[0]);
      }
      TCHECK_EQ(res.load(), -1);
      TCHECK_EQ(err.load(), EBADF);
      close(sv[1]);
    }
  });
}

// A dup2 or dup3 that fails leaves newfd open, so it stays watched: a task
// parked in read() on it is not woken and reads the byte written after,
// the program still sees a blocking socket, and a later read waits. (The
// registration used to be dropped before the call: the parked reader got
// EBADF and later reads EAGAIN at once.)
BOOST_AUTO_TEST_CASE(failed_dup2_keeps_the_descriptor_watched) {
  run_checked([] {
    int sv[2];
    TCHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    int gone = open("/dev/null", O_RDONLY);  // a number that is not open
    TCHECK(gone >= 0);
    close(gone);
    std::atomic<int> err{0};
    std::atomic<ssize_t> res{0};
    gort::WaitGroup wg;
    wg.add(1);
    gort::go([&] {
      ssize_t r;
      err = read_errno(sv[0], &r);
      res = r;
      wg.done();
    });
    TCHECK(wait_parked(1));
    ssize_t r;
    int e = call_errno([&]() -> ssize_t { return dup2(gone, sv[0]); }, &r);
    TCHECK_EQ(r, -1);
    TCHECK_EQ(e, EBADF);
    e = call_errno([&]() -> ssize_t { return dup3(sv[1], sv[0], ~O_CLOEXEC); }, &r);
    TCHECK_EQ(r, -1);
    TCHECK_EQ(e, EINVAL);
    TCHECK_EQ(fcntl(sv[0], F_GETFL) & O_NONBLOCK, 0);
    TCHECK_EQ(write(sv[1], "d", 1), 1);
    TCHECK(wait_group_within(wg));
    TCHECK_EQ(res.load(), 1);
    TCHECK_EQ(err.load(), 0);
    gort::go([&] {
      gort::sleep_for(std::chrono::milliseconds(5));
      TCHECK_EQ(write(sv[1], "e", 1), 1);
    });
    e = read_errno(sv[0], &r);
    TCHECK_EQ(r, 1);
    close(sv[0]);
    close(sv[1]);
  });
}

// fork() from a task while another task waits in read(): the child closes
// its copy of the socket (an interposed close) and exits, and the parent's
// reader is still woken by the byte its peer writes. Before the child got
// its own netpoller, the child's close deleted the parent's registration
// from the epoll instance they shared, and the reader waited for good.
BOOST_AUTO_TEST_CASE(fork_child_leaves_the_parent_registrations) {
  run_checked([] {
    int sv[2];
    TCHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    std::atomic<int> got{0};
    gort::WaitGroup wg;
    wg.add(1);
    gort::go([&] {
      char c = 0;
      if (read(sv[0], &c, 1) == 1) got = c;
      wg.done();
    });
    TCHECK(wait_parked(1));
    pid_t pid = fork();
    if (pid == 0) {
      close(sv[0]);
      _exit(0);
    }
    TCHECK(pid > 0);
    int st = -1;
    TCHECK_EQ(waitpid(pid, &st, 0), pid);
    TCHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    TCHECK_EQ(write(sv[1], "f", 1), 1);
    TCHECK_MSG(wait_group_within(wg), "the parent's reader was not woken");
    TCHECK_EQ(got.load(), 'f');
    close(sv[0]);
    close(sv[1]);
  });
}

// A descriptor the program made non-blocking stays so (SOCK_NONBLOCK and
// fcntl), and fcntl(F_GETFL) shows the program's own flag either way.
BOOST_AUTO_TEST_CASE(program_nonblocking_stays_nonblocking) {
  run_checked([] {
    int sv[2];
    TCHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    TCHECK(fcntl(sv[0], F_GETFL) & O_NONBLOCK);
    ssize_t r;
    int e = read_errno(sv[0], &r);
    TCHECK_EQ(r, -1);
    TCHECK_EQ(e, EAGAIN);
    int p[2];
    TCHECK(pipe(p) == 0);
    TCHECK_EQ(fcntl(p[0], F_GETFL) & O_NONBLOCK, 0);  // the runtime's own flag is hidden
    TCHECK(fcntl(p[0], F_SETFL, fcntl(p[0], F_GETFL) | O_NONBLOCK) == 0);
    TCHECK(fcntl(p[0], F_GETFL) & O_NONBLOCK);
    e = read_errno(p[0], &r);
    TCHECK_EQ(r, -1);
    TCHECK_EQ(e, EAGAIN);
    TCHECK(fcntl(p[0], F_SETFL, 0) == 0);  // blocking again: a read waits for the writer
    gort::go([&] {
      gort::sleep_for(std::chrono::milliseconds(5));
      char c = 'z';
      TCHECK_EQ(write(p[1], &c, 1), 1);
    });
    e = read_errno(p[0], &r);
    TCHECK_EQ(r, 1);
    for (int fd : {sv[0], sv[1], p[0], p[1]}) close(fd);
  });
}

// EOF and reset over TCP: the reader sees 0 after an orderly close and
// ECONNRESET after an abortive one (SO_LINGER 0).
BOOST_AUTO_TEST_CASE(eof_and_reset) {
  run_checked([] {
    uint16_t port = 0;
    int lfd = listen_lo(16, &port);
    TCHECK(lfd >= 0);
    for (int abortive = 0; abortive < 2; abortive++) {
      gort::go([&, abortive] {
        int c = accept(lfd, nullptr, nullptr);
        TCHECK(c >= 0);
        gort::sleep_for(std::chrono::milliseconds(10));
        if (abortive) {
          linger lg{1, 0};
          TCHECK(setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0);
        }
        close(c);
      });
      int fd = dial_lo(port);
      TCHECK(fd >= 0);
      ssize_t r;
      int e = read_errno(fd, &r);
      if (abortive) {
        TCHECK_EQ(r, -1);
        TCHECK_EQ(e, ECONNRESET);
      } else {
        TCHECK_EQ(r, 0);
      }
      close(fd);
    }
    close(lfd);
  });
}

// A task reads from a socket whose other end a plain thread writes; and a
// plain thread reads, blocking as without gort, from a socket a task made.
BOOST_AUTO_TEST_CASE(task_and_plain_thread_share_sockets) {
  run_checked([] {
    int sv[2];
    TCHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);  // made by a task: watched
    std::atomic<int> thread_got{0}, thread_err{0};
    std::thread t([&] {
      char buf[5];
      errno = 0;
      // sv[1] is non-blocking in the kernel; the thread must still block.
      ssize_t n = read(sv[1], buf, sizeof buf);
      thread_err = errno;
      thread_got = static_cast<int>(n);
      if (n == 5) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        TCHECK_EQ(write(sv[1], "world", 5), 5);
      }
    });
    gort::sleep_for(std::chrono::milliseconds(10));
    TCHECK_EQ(write(sv[0], "hello", 5), 5);
    char buf[5];
    TCHECK(full_io(true, sv[0], buf, 5));
    TCHECK(memcmp(buf, "world", 5) == 0);
    t.join();
    TCHECK_EQ(thread_got.load(), 5);
    TCHECK_EQ(thread_err.load(), 0);
    close(sv[0]);
    close(sv[1]);
  });
}

// poll() on one watched descriptor parks: a timeout returns 0, data 1.
BOOST_AUTO_TEST_CASE(poll_one_descriptor) {
  run_checked([] {
    int p[2];
    TCHECK(pipe(p) == 0);
    pollfd pf{p[0], POLLIN, 0};
    TCHECK_EQ(poll(&pf, 1, 20), 0);
    gort::go([&] {
      gort::sleep_for(std::chrono::milliseconds(5));
      TCHECK_EQ(write(p[1], "q", 1), 1);
    });
    pf.revents = 0;
    TCHECK_EQ(poll(&pf, 1, 10000), 1);
    TCHECK(pf.revents & POLLIN);
    close(p[0]);
    close(p[1]);
  });
}

// gort::net: 300 connections echoing through Conn, both ends tasks.
BOOST_AUTO_TEST_CASE(net_echo_hundreds_of_connections) {
  run_checked([] {
    std::error_code ec;
    auto ln = gort::net::listen("127.0.0.1:0", ec);
    TCHECK(!ec);
    const int kConns = 300, kRounds = 20;
    gort::WaitGroup served;
    served.add(kConns);
    gort::go([&] {
      for (int i = 0; i < kConns; i++) {
        std::error_code aec;
        gort::net::Conn c = ln.accept(aec);
        TCHECK_MSG(!aec, aec.message());
        if (aec) return;
        gort::go([&, c = std::move(c)]() mutable {
          char buf[128];
          std::error_code e;
          for (;;) {
            size_t n = c.read(buf, sizeof buf, e);
            if (e || n == 0) break;
            if (c.write(buf, n, e) != n || e) break;
          }
          served.done();
        });
      }
    });
    std::atomic<int> ok{0};
    gort::WaitGroup clients;
    for (int i = 0; i < kConns; i++) {
      clients.add(1);
      gort::go([&, i] {
        std::error_code e;
        auto c = gort::net::dial("127.0.0.1:" + std::to_string(ln.port()), e);
        TCHECK_MSG(!e, e.message());
        bool good = !e;
        for (int r = 0; r < kRounds && good; r++) {
          char out[100], in[100];
          memset(out, 'A' + (i + r) % 26, sizeof out);
          good = c.write(out, sizeof out, e) == sizeof out && !e;
          size_t got = 0;
          while (good && got < sizeof in) {
            size_t n = c.read(in + got, sizeof in - got, e);
            if (e || n == 0) good = false;
            got += n;
          }
          good = good && memcmp(in, out, sizeof in) == 0;
        }
        TCHECK(good);
        if (good) ok++;
        c.close();
        clients.done();
      });
    }
    TCHECK(wait_group_within(clients));
    TCHECK(wait_group_within(served));
    TCHECK_EQ(ok.load(), kConns);
  });
}

// Conn deadlines: a read with nobody writing ends with timed_out; a
// deadline moved earlier while a task waits wakes it; close() from another
// task wakes a reader with bad_file_descriptor; a bad address is an error.
BOOST_AUTO_TEST_CASE(net_deadlines_and_close) {
  run_checked([] {
    std::error_code ec;
    auto ln = gort::net::listen("127.0.0.1:0", ec);
    TCHECK(!ec);
    gort::net::Conn server;
    gort::go([&] { server = ln.accept(ec); });
    auto c = gort::net::dial("localhost:" + std::to_string(ln.port()), ec);
    TCHECK(!ec);
    char buf[8];
    c.set_read_deadline(Clock::now() + std::chrono::milliseconds(20));
    std::error_code e;
    TCHECK_EQ(c.read(buf, sizeof buf, e), 0u);
    TCHECK(e == std::errc::timed_out);
    // Moved from none to now while the reader waits.
    c.set_read_deadline({});
    std::atomic<bool> done{false};
    std::error_code e2;
    gort::go([&] {
      c.read(buf, sizeof buf, e2);
      done = true;
    });
    gort::sleep_for(std::chrono::milliseconds(10));
    TCHECK(!done.load());
    c.set_read_deadline(Clock::now());
    TCHECK(wait_until([&] { return done.load(); }));
    TCHECK(e2 == std::errc::timed_out);
    // close() under a waiting reader.
    c.set_read_deadline({});
    done = false;
    gort::go([&] {
      c.read(buf, sizeof buf, e2);
      done = true;
    });
    gort::sleep_for(std::chrono::milliseconds(10));
    TCHECK(!done.load());
    c.close();
    TCHECK(wait_until([&] { return done.load(); }));
    TCHECK(e2 == std::errc::bad_file_descriptor);
    // EOF at the server, then a refused dial and a bad address.
    TCHECK(wait_until([&] { return server.valid(); }));
    TCHECK_EQ(server.read(buf, sizeof buf, e), 0u);
    TCHECK(!e);
    uint16_t port = ln.port();
    ln.close();
    gort::net::dial("127.0.0.1:" + std::to_string(port), e);
    TCHECK(e == std::errc::connection_refused);
    gort::net::listen("not an address", e);
    TCHECK(e == std::errc::invalid_argument);
  });
}

// Every P busy with tasks that yield to each other, so that no run queue
// ever drains, and one task echoing a plain thread's bytes over a socket
// pair. findrunnable polls the network only once the queues are empty, so
// before the scheduler polled on its own (proc.cc, netpoll_due) every
// wake-up of the echo task came from sysmon's poll: this failed every time
// with 1 and 2 Ps (no task readied by a P). Asserted on who readied the
// task, not on how long it took; sysmon may still find some under load.
BOOST_AUTO_TEST_CASE(busy_ps_still_poll_the_network) {
  for (int procs : {1, 2}) {
    constexpr int kRounds = 200;
    int sv[2] = {-1, -1};
    int completed = 0;
    gort::SchedStats before{}, after{};
    std::thread client;
    run_checked(
        [&] {
          TCHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
          std::atomic<bool> stop{false};
          gort::WaitGroup wg;
          for (int i = 0; i < 2 * procs + 2; i++)  // two or more per P: each P switches
            wg.go([&] {
              while (!stop.load(std::memory_order_relaxed)) gort::yield();
            });
          wg.go([&] {
            char c;
            while (read(sv[0], &c, 1) == 1 && write(sv[0], &c, 1) == 1) {
            }
          });
          gort::sleep_for(std::chrono::milliseconds(2));  // the yielders are going
          before = gort::sched_stats();
          gort::Chan<int> done(1);
          client = std::thread([&, done]() mutable {
            int n = 0;
            for (char c = 0; n < kRounds; n++, c++) {
              char back = 0;
              if (write(sv[1], &c, 1) != 1 || read(sv[1], &back, 1) != 1 || back != c) break;
            }
            completed = n;
            done.send(1);
          });
          done.recv();
          after = gort::sched_stats();
          stop = true;
          shutdown(sv[1], SHUT_WR);  // the echo task reads EOF
          wg.wait();
        },
        gort::RunOptions{.maxprocs = procs});
    client.join();
    close(sv[0]);
    close(sv[1]);
    uint64_t readied = after.netpoll_ready - before.netpoll_ready;
    uint64_t by_sysmon = after.netpoll_ready_sysmon - before.netpoll_ready_sysmon;
    BOOST_TEST_MESSAGE(procs << " P: " << readied << " tasks readied by polls, " << by_sysmon
                             << " of them by sysmon's");
    BOOST_TEST(completed == kRounds);
    BOOST_TEST(readied > by_sysmon, procs << " P: every readied task came from sysmon's poll");
  }
}

// One rule for every call that completes without parking (proc.h,
// turn_end_if_waiting): with another task waiting for the P, the caller's
// turn ends and the other runs before the call returns to it. Through the
// interposed read and write, gort::net's Conn read and write, and a
// blocking call that returned (exitsyscall). One P, so the order is
// deterministic; each path failed when its call kept the turn.
BOOST_AUTO_TEST_CASE(completed_io_ends_the_turn_when_others_wait) {
  run_checked(
      [] {
        int sv[2], cv[2];
        TCHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
        TCHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, cv) == 0);
        gort::net::Conn conn(cv[0]);
        const char* names[] = {"read", "write", "Conn::read", "Conn::write", "blocking call"};
        for (int path = 0; path < 5; path++) {
          char c = 'x';
          if (path == 0) TCHECK_EQ(write(sv[1], &c, 1), 1);  // data waiting, before the other task
          if (path == 2) TCHECK_EQ(write(cv[1], &c, 1), 1);
          std::atomic<bool> ran{false};
          gort::go([&] { ran = true; });
          std::error_code ec;
          switch (path) {
            case 0:
              TCHECK_EQ(read(sv[0], &c, 1), 1);
              break;
            case 1:
              TCHECK_EQ(write(sv[0], &c, 1), 1);
              break;
            case 2:
              TCHECK_EQ(conn.read(&c, 1, ec), 1u);
              break;
            case 3:
              TCHECK_EQ(conn.write(&c, 1, ec), 1u);
              break;
            default:
              TCHECK_EQ(pread(-1, &c, 1, 0), -1);  // not watched: entersyscall/exitsyscall
          }
          TCHECK_MSG(ran.load(), names[path] << " kept the turn");
          while (!ran.load()) gort::yield();
          if (path == 1) TCHECK_EQ(read(sv[1], &c, 1), 1);
          if (path == 3) TCHECK_EQ(read(cv[1], &c, 1), 1);
        }
        conn.close();
        close(cv[1]);
        close(sv[0]);
        close(sv[1]);
      },
      gort::RunOptions{.maxprocs = 1});
}

// The converse of the turn rule above: an accept that finds a connection
// waiting does not end the turn, in libc's accept and in Listener::accept
// (Go's Accept does not yield either). An accept loop that yielded after each
// connection, behind every task it had started, left the last of a burst of
// 1,000 connections unaccepted for a second (bench/results/http.md).
BOOST_AUTO_TEST_CASE(accept_drains_waiting_connections_without_yielding) {
  run_checked(
      [] {
        const int kConns = 32;
        uint16_t port = 0;
        int lfd = listen_lo(kConns * 2, &port);
        TCHECK(lfd >= 0);
        std::error_code ec;
        auto ln = gort::net::listen("127.0.0.1:0", ec);
        TCHECK(!ec);
        std::vector<int> clients;
        std::vector<gort::net::Conn> conns;  // dialled and accepted, closed at the end
        for (int i = 0; i < kConns; i++) {
          clients.push_back(dial_lo(port));
          conns.push_back(gort::net::dial("127.0.0.1:" + std::to_string(ln.port()), ec));
          TCHECK(!ec);
        }
        for (int path = 0; path < 2; path++) {
          std::atomic<bool> ran{false};
          gort::go([&] { ran = true; });
          std::vector<int> accepted;
          for (int i = 0; i < kConns; i++) {
            if (path == 0) {
              accepted.push_back(accept(lfd, nullptr, nullptr));
              TCHECK(accepted.back() >= 0);
            } else {
              conns.push_back(ln.accept(ec));
              TCHECK(!ec);
            }
          }
          TCHECK_MSG(!ran.load(), (path ? "Listener::accept" : "accept") << " gave up the turn");
          while (!ran.load()) gort::yield();
          for (int fd : accepted) close(fd);
        }
        for (int fd : clients) close(fd);
        for (auto& c : conns) c.close();
        close(lfd);
        ln.close();
      },
      gort::RunOptions{.maxprocs = 1});
}

// Conn::close from one task while another reads, many times over and
// with the reader at every point of its read (parked, or still starting):
// the read returns bad_file_descriptor, and sockets made right after the
// close, which may take the old number, never give it their bytes (the
// number stays the Conn's until the read has returned: fdRef, net.h).
BOOST_AUTO_TEST_CASE(net_close_under_a_reader) {
  run_checked([] {
    const int kRounds = 200, kConns = 8;
    std::atomic<int> wrong{0};
    for (int round = 0; round < kRounds; round++) {
      std::vector<int> peers;
      std::vector<std::unique_ptr<gort::net::Conn>> conns;
      for (int k = 0; k < kConns; k++) {
        int sv[2];
        TCHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
        conns.push_back(std::make_unique<gort::net::Conn>(sv[0]));
        peers.push_back(sv[1]);
      }
      gort::WaitGroup readers, closers;
      for (int k = 0; k < kConns; k++) {
        gort::net::Conn* c = conns[static_cast<size_t>(k)].get();
        readers.go([&, c] {
          char buf[16];
          std::error_code ec;
          size_t n = c->read(buf, sizeof buf, ec);
          if (n != 0 || ec != std::errc::bad_file_descriptor) wrong++;
        });
      }
      if (round % 2 == 0) TCHECK(wait_parked(kConns));
      std::vector<int> fresh(2 * kConns, -1);
      for (int k = 0; k < kConns; k++) {
        closers.go([&, k] {
          conns[static_cast<size_t>(k)]->close();
          // New sockets right away, with bytes waiting at both ends.
          int* nv = &fresh[2 * static_cast<size_t>(k)];
          TCHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, nv) == 0);
          TCHECK_EQ(write(nv[0], "new", 3), 3);
          TCHECK_EQ(write(nv[1], "new", 3), 3);
        });
      }
      TCHECK(wait_group_within(closers));
      TCHECK(wait_group_within(readers));
      for (auto& c : conns) TCHECK(!c->valid());
      for (int fd : peers) close(fd);
      for (int fd : fresh)
        if (fd >= 0) close(fd);
    }
    TCHECK_EQ(wrong.load(), 0);
  });
}

// The same, where the order is certain: one P, so the reader woken by the
// close cannot run before the closing task makes new sockets. They must not
// get the reader's number while its read has not returned (with the number
// closed at once they did: the lowest free number is the reader's), and do
// get it once the read returned.
BOOST_AUTO_TEST_CASE(net_close_keeps_the_number_until_the_read_returns) {
  run_checked(
      [] {
        int sv[2];
        TCHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
        int old = sv[0];
        gort::net::Conn c(old);
        std::atomic<bool> done{false};
        std::error_code ec;
        gort::WaitGroup wg;
        wg.go([&] {
          char buf[8];
          TCHECK_EQ(c.read(buf, sizeof buf, ec), 0u);
          done = true;
        });
        TCHECK(wait_parked(1));
        c.close();
        TCHECK(!c.valid());
        int nv[2];
        TCHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, nv) == 0);
        TCHECK(!done.load());  // nothing switched: the reader has not run
        TCHECK_MSG(nv[0] != old && nv[1] != old, "number " << old << " reused under the read");
        TCHECK_EQ(write(nv[1], "x", 1), 1);
        TCHECK_EQ(write(nv[0], "x", 1), 1);
        TCHECK(wait_group_within(wg));
        TCHECK(ec == std::errc::bad_file_descriptor);
        int again = open("/dev/null", O_RDONLY);
        TCHECK_EQ(again, old);  // closed by the read's return
        close(again);
        close(nv[0]);
        close(nv[1]);
        close(sv[1]);
      },
      gort::RunOptions{.maxprocs = 1});
}

// One echo round for each family of socket calls, the echo task parked in
// its receive first: recv/send, recvfrom/sendto, recvmsg/sendmsg,
// readv/writev.
BOOST_AUTO_TEST_CASE(socket_call_families_park_and_echo) {
  run_checked([] {
    const char* names[] = {"recv/send", "recvfrom/sendto", "recvmsg/sendmsg", "readv/writev"};
    for (int kind = 0; kind < 4; kind++) {
      auto rx = [kind](int fd, char* buf, size_t n) -> ssize_t {
        iovec iov[2] = {{buf, 2}, {buf + 2, n - 2}};
        msghdr mh{};
        mh.msg_iov = iov;
        mh.msg_iovlen = 2;
        switch (kind) {
          case 0:
            return recv(fd, buf, n, 0);
          case 1:
            return recvfrom(fd, buf, n, 0, nullptr, nullptr);
          case 2:
            return recvmsg(fd, &mh, 0);
          default:
            return readv(fd, iov, 2);
        }
      };
      auto tx = [kind](int fd, const char* buf, size_t n) -> ssize_t {
        iovec iov[2] = {{const_cast<char*>(buf), 2}, {const_cast<char*>(buf) + 2, n - 2}};
        msghdr mh{};
        mh.msg_iov = iov;
        mh.msg_iovlen = 2;
        switch (kind) {
          case 0:
            return send(fd, buf, n, 0);
          case 1:
            return sendto(fd, buf, n, 0, nullptr, 0);
          case 2:
            return sendmsg(fd, &mh, 0);
          default:
            return writev(fd, iov, 2);
        }
      };
      int sv[2];
      TCHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
      gort::WaitGroup wg;
      wg.go([&] {
        char buf[16];
        ssize_t n = rx(sv[1], buf, sizeof buf);
        TCHECK_MSG(n == 5, names[kind] << ": echo got " << n);
        if (n > 0) TCHECK_EQ(tx(sv[1], buf, static_cast<size_t>(n)), n);
      });
      TCHECK(wait_parked(1));
      TCHECK_EQ(tx(sv[0], "hello", 5), 5);
      char back[16] = {};
      TCHECK_MSG(rx(sv[0], back, sizeof back) == 5 && memcmp(back, "hello", 5) == 0, names[kind]);
      TCHECK(wait_group_within(wg));
      close(sv[0]);
      close(sv[1]);
    }
  });
}

// MSG_DONTWAIT on a blocking socket with nothing to read: EAGAIN at once
// from recv, recvfrom and recvmsg; a plain recv afterwards still waits.
BOOST_AUTO_TEST_CASE(msg_dontwait_returns_eagain) {
  run_checked([] {
    int sv[2];
    TCHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    char c;
    iovec iov{&c, 1};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    ssize_t r;
    int e = call_errno([&] { return recv(sv[0], &c, 1, MSG_DONTWAIT); }, &r);
    TCHECK_EQ(r, -1);
    TCHECK_EQ(e, EAGAIN);
    e = call_errno([&] { return recvfrom(sv[0], &c, 1, MSG_DONTWAIT, nullptr, nullptr); }, &r);
    TCHECK_EQ(r, -1);
    TCHECK_EQ(e, EAGAIN);
    e = call_errno([&] { return recvmsg(sv[0], &mh, MSG_DONTWAIT); }, &r);
    TCHECK_EQ(r, -1);
    TCHECK_EQ(e, EAGAIN);
    gort::go([&] {
      gort::sleep_for(std::chrono::milliseconds(5));
      TCHECK_EQ(write(sv[1], "w", 1), 1);
    });
    e = call_errno([&] { return recv(sv[0], &c, 1, 0); }, &r);
    TCHECK_EQ(r, 1);
    close(sv[0]);
    close(sv[1]);
  });
}

// SO_SNDTIMEO: with the send buffer full and nobody reading, a blocking
// send ends with EAGAIN, as the kernel's does.
BOOST_AUTO_TEST_CASE(so_sndtimeo_fires) {
  run_checked([] {
    int sv[2];
    TCHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    int small = 4096;
    TCHECK(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small) == 0);
    std::vector<char> chunk(4096, 's');
    ssize_t r = 0;
    int e = 0;
    for (int i = 0; i < 100000; i++) {
      e = call_errno([&] { return send(sv[0], chunk.data(), chunk.size(), MSG_DONTWAIT); }, &r);
      if (r < 0) break;
    }
    TCHECK_EQ(r, -1);
    TCHECK_EQ(e, EAGAIN);
    timeval tv{0, 30000};
    TCHECK(setsockopt(sv[0], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) == 0);
    e = call_errno([&] { return send(sv[0], chunk.data(), chunk.size(), 0); }, &r);
    TCHECK_EQ(r, -1);
    TCHECK(e == EAGAIN || e == EWOULDBLOCK);
    close(sv[0]);
    close(sv[1]);
  });
}

// gort::net: a write deadline ends a write that waits for room (the peer
// never reads) with timed_out.
BOOST_AUTO_TEST_CASE(net_write_deadline_fires) {
  run_checked([] {
    std::error_code ec;
    auto ln = gort::net::listen("127.0.0.1:0", ec);
    TCHECK(!ec);
    gort::net::Conn server;
    std::atomic<bool> accepted{false};
    gort::go([&] {
      std::error_code aec;
      server = ln.accept(aec);
      TCHECK(!aec);
      accepted = true;
    });
    auto c = gort::net::dial("127.0.0.1:" + std::to_string(ln.port()), ec);
    TCHECK(!ec);
    TCHECK(wait_until([&] { return accepted.load(); }));
    c.set_write_deadline(Clock::now() + std::chrono::milliseconds(30));
    std::vector<char> big(1 << 20, 'w');
    std::error_code e;
    for (int i = 0; i < 256 && !e; i++) c.write(big.data(), big.size(), e);
    TCHECK_MSG(e == std::errc::timed_out, e.message());
  });
}

// gort::net::dial with a timeout, to a listener whose backlog is full (the
// kernel drops the SYNs): timed_out, the other dials succeed.
BOOST_AUTO_TEST_CASE(net_dial_timeout) {
  run_checked([] {
    std::error_code ec;
    auto ln = gort::net::listen("127.0.0.1:0", ec, 0);
    TCHECK(!ec);
    std::vector<gort::net::Conn> held;
    int timeouts = 0;
    for (int i = 0; i < 8 && timeouts == 0; i++) {
      std::error_code e;
      auto c = gort::net::dial("127.0.0.1:" + std::to_string(ln.port()), e,
                               std::chrono::milliseconds(50));
      if (e == std::errc::timed_out) {
        timeouts++;
        TCHECK(!c.valid());
      } else {
        TCHECK_MSG(!e, e.message());
        held.push_back(std::move(c));
      }
    }
    TCHECK_EQ(timeouts, 1);
  });
}

// Listener::close while a task waits in accept: the accept returns
// bad_file_descriptor.
BOOST_AUTO_TEST_CASE(net_listener_close_wakes_accept) {
  run_checked([] {
    std::error_code ec;
    auto ln = gort::net::listen("127.0.0.1:0", ec);
    TCHECK(!ec);
    std::error_code aec;
    std::atomic<bool> valid{true};
    gort::WaitGroup wg;
    wg.go([&] { valid = ln.accept(aec).valid(); });
    TCHECK(wait_parked(1));
    ln.close();
    TCHECK(wait_group_within(wg));
    TCHECK(!valid.load());
    TCHECK_MSG(aec == std::errc::bad_file_descriptor, aec.message());
    TCHECK_EQ(ln.fd(), -1);
  });
}

// ioctl(FIONBIO) from a task makes a watched socket non-blocking for the
// program (a read returns EAGAIN at once, F_GETFL shows it) and back.
BOOST_AUTO_TEST_CASE(ioctl_fionbio) {
  run_checked([] {
    int sv[2];
    TCHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    int on = 1;
    TCHECK_EQ(ioctl(sv[0], FIONBIO, &on), 0);
    TCHECK(fcntl(sv[0], F_GETFL) & O_NONBLOCK);
    ssize_t r;
    int e = read_errno(sv[0], &r);
    TCHECK_EQ(r, -1);
    TCHECK_EQ(e, EAGAIN);
    int off = 0;
    TCHECK_EQ(ioctl(sv[0], FIONBIO, &off), 0);
    TCHECK_EQ(fcntl(sv[0], F_GETFL) & O_NONBLOCK, 0);
    gort::go([&] {
      gort::sleep_for(std::chrono::milliseconds(5));
      TCHECK_EQ(write(sv[1], "i", 1), 1);
    });
    e = read_errno(sv[0], &r);
    TCHECK_EQ(r, 1);
    close(sv[0]);
    close(sv[1]);
  });
}

// A socket pair a plain thread made (not watched: the hand-off path): a task
// reads what the thread writes, waiting for it.
BOOST_AUTO_TEST_CASE(task_reads_a_socket_a_plain_thread_made) {
  run_checked([] {
    int sv[2] = {-1, -1};
    std::atomic<bool> made{false};
    std::thread t([&] {
      if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return;
      made = true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      TCHECK_EQ(write(sv[1], "thread", 6), 6);
    });
    TCHECK(wait_until([&] { return made.load(); }));
    TCHECK(gort::rt::pd_lookup(sv[0]) == nullptr);
    char buf[6] = {};
    TCHECK(made.load() && full_io(true, sv[0], buf, sizeof buf));
    TCHECK(memcmp(buf, "thread", 6) == 0);
    t.join();
    close(sv[0]);
    close(sv[1]);
  });
}

namespace {
// Whether thread tid of this process is blocked in poll(2) (the first field
// of /proc/self/task/TID/syscall is the system call number it sleeps in).
bool blocked_in_poll(pid_t tid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/self/task/%d/syscall", static_cast<int>(tid));
  FILE* f = fopen(path, "r");
  if (!f) return false;
  long nr = -1;
  bool ok = fscanf(f, "%ld", &nr) == 1;
  fclose(f);
  return ok && nr == SYS_poll;
}

// A plain thread (no task) blocked in a gort::net call on a Conn or a
// Listener, and a way to let it go if the call under test never returns.
struct plainCall {
  std::atomic<pid_t> tid{0};
  std::atomic<bool> done{false};
  std::thread t;
  template <class F>
  explicit plainCall(F f) {
    t = std::thread([this, f] {
      tid = static_cast<pid_t>(syscall(SYS_gettid));
      f();
      done = true;
    });
  }
  bool blocked() {
    return wait_until([this] { return tid.load() != 0 && blocked_in_poll(tid.load()); });
  }
};
}  // namespace

// gort::net on a plain thread waits in poll(): a close() of the Conn by
// another thread must wake it with EBADF, as it wakes a parked task (it
// stayed in poll() for good, the descriptor held open by its reference).
BOOST_AUTO_TEST_CASE(net_close_wakes_a_plain_thread_reader) {
  int sv[2];
  BOOST_REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  gort::net::Conn c(sv[0]);
  std::error_code ec;
  size_t n = 99;
  plainCall reader([&] {
    char buf[8];
    n = c.read(buf, sizeof buf, ec);
  });
  BOOST_REQUIRE(reader.blocked());
  c.close();
  bool woke = wait_until([&] { return reader.done.load(); });
  if (!woke) BOOST_CHECK_EQUAL(write(sv[1], "x", 1), 1);  // let it go
  reader.t.join();
  BOOST_CHECK(woke);
  BOOST_CHECK_EQUAL(n, 0u);
  BOOST_CHECK_MESSAGE(ec == std::errc::bad_file_descriptor, ec.message());
  close(sv[1]);
}

// The same for a read deadline moved earlier (it had none), and for a
// Listener's close under a plain thread's accept.
BOOST_AUTO_TEST_CASE(net_deadline_and_listener_close_wake_plain_threads) {
  int sv[2];
  BOOST_REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  gort::net::Conn c(sv[0]);
  std::error_code ec;
  plainCall reader([&] {
    char buf[8];
    c.read(buf, sizeof buf, ec);
  });
  BOOST_REQUIRE(reader.blocked());
  c.set_read_deadline(gort::Clock::now());
  bool woke = wait_until([&] { return reader.done.load(); });
  if (!woke) BOOST_CHECK_EQUAL(write(sv[1], "x", 1), 1);
  reader.t.join();
  BOOST_CHECK(woke);
  BOOST_CHECK_MESSAGE(ec == std::errc::timed_out, ec.message());
  close(sv[1]);

  std::error_code lec;
  auto ln = gort::net::listen("127.0.0.1:0", lec);
  BOOST_REQUIRE(!lec);
  uint16_t port = ln.port();
  std::error_code aec;
  bool valid = true;
  plainCall acceptor([&] { valid = ln.accept(aec).valid(); });
  BOOST_REQUIRE(acceptor.blocked());
  ln.close();
  woke = wait_until([&] { return acceptor.done.load(); });
  if (!woke) {  // let it go
    int fd = dial_lo(port);
    if (fd >= 0) close(fd);
  }
  acceptor.t.join();
  BOOST_CHECK(woke);
  BOOST_CHECK(!valid);
  BOOST_CHECK_MESSAGE(aec == std::errc::bad_file_descriptor, aec.message());
}

// A watched descriptor closed behind libc's back (a raw close system call,
// as fclose of an fdopen'ed socket makes) leaves its pollDesc; a descriptor a
// plain thread then makes under the same number must not inherit it (each
// creating call in turn: a task would take the new file for a watched,
// non-blocking one).
BOOST_AUTO_TEST_CASE(plain_descriptors_drop_a_stale_watch) {
  std::vector<std::pair<const char*, std::function<int(int)>>> makers = {
      {"socketpair",
       [](int) {
         int sv[2];
         if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return -1;
         close(sv[1]);
         return sv[0];
       }},
      {"pipe2",
       [](int) {
         int p[2];
         if (pipe2(p, 0) != 0) return -1;
         close(p[1]);
         return p[0];
       }},
      {"dup", [](int keep) { return dup(keep); }},
      {"fcntl F_DUPFD", [](int keep) { return fcntl(keep, F_DUPFD, 0); }},
      {"accept4",
       [](int) {
         uint16_t port;
         int ln = listen_lo(1, &port);
         if (ln < 0) return -1;
         int d = dial_lo(port);
         // The listener and the dialled socket took the lowest numbers;
         // accept's is the next one, so the stale number must be above them:
         // the caller frees it last.
         int a = accept4(ln, nullptr, nullptr, 0);
         close(ln);
         if (d >= 0) close(d);
         return a;
       }},
  };
  int keep = open("/dev/null", O_RDONLY | O_CLOEXEC);  // something plain to dup
  BOOST_REQUIRE(keep >= 0);
  for (auto& [name, make] : makers) {
    int stale = -1;
    int reserve[2] = {-1, -1};
    if (strcmp(name, "accept4") == 0) {  // keep two lower numbers busy
      reserve[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
      reserve[1] = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    gort::run([&] {
      int sv[2];
      if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return;
      stale = sv[0];
      close(sv[1]);
    });
    BOOST_REQUIRE(stale >= 0);
    BOOST_REQUIRE_MESSAGE(gort::rt::pd_lookup(stale) != nullptr, name);
    syscall(SYS_close, stale);  // behind libc's back
    if (reserve[0] >= 0) {
      close(reserve[0]);
      close(reserve[1]);
    }
    int fd = make(keep);
    BOOST_REQUIRE_MESSAGE(fd == stale, name << ": got " << fd << ", the stale number is " << stale);
    BOOST_CHECK_MESSAGE(gort::rt::pd_lookup(fd) == nullptr, name << " kept a stale pollDesc");
    close(fd);
  }
  close(keep);
}

// fclose of a stream fdopen'ed over a watched socket closes the descriptor
// with libc's internal close: the watch must go with it (gort interposes
// fclose), or the next file made under that number by a call gort does not
// interpose (eventfd here; open, a raw system call) is taken for the old
// socket: fcntl answers with the socket's flags, a task's read of it is made
// as a non-blocking socket's, and a task waiting for it parks on an epoll
// registration that no longer exists.
BOOST_AUTO_TEST_CASE(fclose_of_an_fdopened_socket_drops_its_watch) {
  int num = -1, efd = -1, flags = -1;
  bool watched_before = false, watched_after = true;
  run_checked([&] {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return;
    num = sv[0];
    watched_before = gort::rt::pd_lookup(num) != nullptr;
    FILE* f = fdopen(sv[0], "r+");
    if (!f) return;
    fputs("bye\n", f);  // flushed by fclose through libc's own write
    fclose(f);
    watched_after = gort::rt::pd_lookup(num) != nullptr;
    efd = static_cast<int>(syscall(SYS_eventfd2, 0, O_NONBLOCK | O_CLOEXEC));
    flags = fcntl(efd, F_GETFL);
    char buf[8] = {};
    if (read(sv[1], buf, sizeof buf) != 4 || memcmp(buf, "bye\n", 4) != 0) flags = -2;
    close(sv[1]);
  });
  BOOST_TEST(watched_before);
  BOOST_TEST(!watched_after);
  BOOST_REQUIRE_EQUAL(efd, num);  // the number was reused
  BOOST_TEST(flags != -2);        // fclose flushed the stream's data
  BOOST_TEST((flags >= 0 && (flags & O_NONBLOCK)));
  close(efd);
}

// freopen closes the stream's descriptor with libc's internal close, as
// fclose does: the watch of a pipe fdopen'ed there must go with it.
BOOST_AUTO_TEST_CASE(freopen_of_an_fdopened_pipe_drops_its_watch) {
  int num = -1;
  bool watched_before = false, watched_after = true, reopened = false;
  run_checked([&] {
    int p[2];
    if (pipe(p) != 0) return;
    num = p[0];
    watched_before = gort::rt::pd_lookup(num) != nullptr;
    FILE* f = fdopen(p[0], "r");
    if (!f) return;
    FILE* g = freopen("/dev/null", "r", f);
    reopened = g != nullptr;
    watched_after = gort::rt::pd_lookup(num) != nullptr;
    if (g) fclose(g);
    close(p[1]);
  });
  BOOST_TEST(watched_before);
  BOOST_TEST(reopened);
  BOOST_TEST(!watched_after);
}

// close_range and closefrom close in the kernel, not through close(): the
// watched descriptors in their range must lose their watch too (the same
// failure as fclose's above), and a range that only marks close-on-exec
// closes nothing, so its watches stay. The sockets sit at 900 and 901, above
// everything else the test process holds, for closefrom's sake; the file
// that takes 900 afterwards comes from a raw dup3, which gort does not see.
BOOST_AUTO_TEST_CASE(close_range_and_closefrom_drop_their_watches) {
  constexpr int kLo = 900, kHi = 901;
  for (const char* how : {"close_range", "closefrom"}) {
    int efd = -1, flags = -1;
    bool watched_before = false, watched_after = true, kept_by_cloexec = false;
    run_checked([&] {
      int sv[2];
      if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return;
      if (dup2(sv[0], kLo) != kLo || dup2(sv[1], kHi) != kHi) return;
      close(sv[0]);
      close(sv[1]);
      watched_before = gort::rt::pd_lookup(kLo) && gort::rt::pd_lookup(kHi);
      close_range(kLo, kHi, CLOSE_RANGE_CLOEXEC);
      kept_by_cloexec = gort::rt::pd_lookup(kLo) && gort::rt::pd_lookup(kHi);
      if (strcmp(how, "closefrom") == 0)
        closefrom(kLo);
      else
        close_range(kLo, kHi, 0);
      watched_after = gort::rt::pd_lookup(kLo) || gort::rt::pd_lookup(kHi);
      int e = static_cast<int>(syscall(SYS_eventfd2, 0, O_NONBLOCK | O_CLOEXEC));
      efd = static_cast<int>(syscall(SYS_dup3, e, kLo, O_CLOEXEC));
      syscall(SYS_close, e);
      flags = fcntl(kLo, F_GETFL);
    });
    BOOST_TEST_CONTEXT(how) {
      BOOST_TEST(watched_before);
      BOOST_TEST(kept_by_cloexec);
      BOOST_TEST(!watched_after);
      BOOST_REQUIRE_EQUAL(efd, kLo);
      BOOST_TEST((flags >= 0 && (flags & O_NONBLOCK)));
    }
    close(kLo);
  }
}

BOOST_AUTO_TEST_SUITE_END()
