// Go's promise, kept for C and C++ code that was never written for gort: a
// task may block in a system call or spin in a loop and the rest of the
// program still runs (issue 11). Each case here hung for good before sysmon,
// the blocking-call hand-off and preemption; the suite's watchdog turns such
// a hang into a failure. The Makefile runs them at GORT_MAXPROCS 1, 2 and 8,
// always with more tasks (or threads) than the machine has cores, and they
// assert on what happened (bytes, counts), never on how long it took.
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/test/unit_test.hpp>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "common.h"
#include "gort/runtime.h"

using namespace rt_test;

namespace {

// Reads (or writes) exactly n bytes with plain blocking calls: false on EOF
// or error.
bool io_full(bool reading, int fd, void* buf, size_t n) {
  auto* p = static_cast<char*>(buf);
  while (n > 0) {
    ssize_t r = reading ? read(fd, p, n) : write(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}
bool read_full(int fd, void* buf, size_t n) {
  return io_full(true, fd, buf, n);
}
bool write_full(int fd, const void* buf, size_t n) {
  return io_full(false, fd, const_cast<void*>(buf), n);
}

// A listening loopback TCP socket on an ephemeral port.
int listen_loopback(int backlog, uint16_t* port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(fd, backlog) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    close(fd);
    return -1;
  }
  *port = ntohs(a.sin_port);
  return fd;
}

int connect_loopback(uint16_t port) {
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

// errno's address looked up again: the compiler may keep the address of
// errno from before a call in the same function (__errno_location is a
// const function), and a task may come back from the call on another
// thread, whose errno is elsewhere (docs/runtime.md, "What a task may hold").
int* (*volatile errno_loc)() = __errno_location;

// A call on a bad descriptor fails with EBADF, read right after the call
// on the thread the task is on. (Read at an address kept from before the
// call, it is the old thread's errno, which the runtime leaves alone: this
// failed once in a few hundred runs under load.)
__attribute__((noinline)) bool fails_ebadf(bool do_read) {
  char c = 0;
  *errno_loc() = 0;
  ssize_t r = do_read ? read(-1, &c, 1) : write(-1, &c, 1);
  return r == -1 && *errno_loc() == EBADF;
}

// More of them than Ps and than cores, so that every P can be taken.
int busy_tasks() {
  return suite_maxprocs() + 2;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(blocking)

// A task blocked in read() on a pipe; another sleeps 10 ms, then writes to
// the pipe. The sleeper's timer sits on the P whose M is in the kernel.
BOOST_AUTO_TEST_CASE(pipe_read_woken_by_sleeper) {
  run_checked([] {
    const int pairs = busy_tasks();
    std::vector<int> fds(2 * static_cast<size_t>(pairs));
    for (int i = 0; i < pairs; i++) TCHECK(pipe(&fds[2 * static_cast<size_t>(i)]) == 0);
    std::atomic<int> got{0};
    gort::WaitGroup wg;
    for (int i = 0; i < pairs; i++) {
      int rfd = fds[2 * static_cast<size_t>(i)], wfd = fds[2 * static_cast<size_t>(i) + 1];
      wg.add(2);
      gort::go([&, rfd, i] {
        char c = 0;
        ssize_t n = read(rfd, &c, 1);
        TCHECK_EQ(n, 1);
        TCHECK_EQ(static_cast<int>(c), 'a' + i % 26);
        got++;
        wg.done();
      });
      gort::go([&, wfd, i] {
        gort::sleep_for(std::chrono::milliseconds(10));
        char c = static_cast<char>('a' + i % 26);
        TCHECK_EQ(write(wfd, &c, 1), 1);
        wg.done();
      });
    }
    wg.wait();
    TCHECK_EQ(got.load(), pairs);
    for (int fd : fds) close(fd);
  });
}

// A task spinning on an atomic flag (no runtime call in its loop) that a
// sleeping task sets: only preemption lets the sleeper run.
BOOST_AUTO_TEST_CASE(spinner_on_flag_set_by_sleeper) {
  run_checked([] {
    std::atomic<bool> flag{false};
    std::atomic<int> done{0};
    const int spinners = busy_tasks();
    gort::WaitGroup wg;
    wg.add(spinners + 1);
    for (int i = 0; i < spinners; i++)
      gort::go([&] {
        while (!flag.load(std::memory_order_acquire)) {
        }
        done++;
        wg.done();
      });
    gort::go([&] {
      gort::sleep_for(std::chrono::milliseconds(10));
      flag.store(true, std::memory_order_release);
      wg.done();
    });
    wg.wait();
    TCHECK_EQ(done.load(), spinners);
  });
}

// The same with the sleep in libc: usleep() in a task is a timer wait.
BOOST_AUTO_TEST_CASE(spinner_on_flag_set_after_usleep) {
  run_checked([] {
    std::atomic<bool> flag{false};
    const int spinners = busy_tasks();
    gort::WaitGroup wg;
    wg.add(spinners + 1);
    for (int i = 0; i < spinners; i++)
      gort::go([&] {
        while (!flag.load(std::memory_order_acquire)) {
        }
        wg.done();
      });
    gort::go([&] {
      usleep(10000);
      flag.store(true, std::memory_order_release);
      wg.done();
    });
    wg.wait();
  });
}

// 200 client tasks and a server task over loopback TCP, every call a plain
// blocking one: socket, connect, accept, read, write, close.
BOOST_AUTO_TEST_CASE(tcp_200_clients_plain_blocking_calls) {
  run_checked([] {
    constexpr int kClients = 200;
    uint16_t port = 0;
    int lfd = listen_loopback(kClients, &port);
    TCHECK(lfd >= 0);
    if (lfd < 0) return;
    std::atomic<int> served{0}, answered{0};
    gort::WaitGroup wg;
    wg.add(1);
    gort::go([&] {
      for (int i = 0; i < kClients; i++) {
        int c = accept(lfd, nullptr, nullptr);
        TCHECK(c >= 0);
        if (c < 0) break;
        wg.add(1);
        gort::go([&, c] {
          uint32_t v = 0;
          if (read_full(c, &v, sizeof v)) {
            v = v * 2 + 1;
            TCHECK(write_full(c, &v, sizeof v));
            served++;
          }
          close(c);
          wg.done();
        });
      }
      wg.done();
    });
    for (int i = 0; i < kClients; i++) {
      wg.add(1);
      gort::go([&, i] {
        int fd = connect_loopback(port);
        TCHECK(fd >= 0);
        uint32_t v = static_cast<uint32_t>(i), r = 0;
        if (fd >= 0 && write_full(fd, &v, sizeof v) && read_full(fd, &r, sizeof r)) {
          TCHECK_EQ(r, v * 2 + 1);
          answered++;
        }
        if (fd >= 0) close(fd);
        wg.done();
      });
    }
    wg.wait();
    close(lfd);
    TCHECK_EQ(served.load(), kClients);
    TCHECK_EQ(answered.load(), kClients);
  });
}

// A keep-alive server, one task per connection with blocking reads, driven
// by plain client threads: every connection makes progress. The run stops
// when the busiest connection has had kTarget responses; by then each one
// must have had a fair share (Go's net/http gives every one about the same).
BOOST_AUTO_TEST_CASE(keepalive_every_connection_progresses) {
  constexpr int kConns = 50;
  constexpr long kTarget = 400;
  std::atomic<long> count[kConns] = {};
  // Why each client stopped, for the failure message: 0 stop seen, 1 connect
  // failed, 2 first round trip failed, 3 a later one failed; errno beside it.
  std::atomic<int> why[kConns] = {}, err[kConns] = {};
  std::atomic<bool> stop{false};
  std::atomic<int> started{0};
  uint16_t port = 0;
  int lfd = listen_loopback(kConns, &port);
  BOOST_REQUIRE(lfd >= 0);
  gort::WaitGroup clients;
  clients.add(kConns);
  std::vector<std::thread> threads;
  for (int i = 0; i < kConns; i++)
    threads.emplace_back([&, i] {
      int fd = connect_loopback(port);
      if (fd < 0) why[i] = 1, err[i] = errno;
      uint64_t req = static_cast<uint64_t>(i), resp = 0;
      // One round trip each, then all together: the count measures the
      // steady state, not the order in which the server accepted (the
      // accepting task ends its turn after each accept when others wait).
      if (fd < 0 || !write_full(fd, &req, sizeof req) || !read_full(fd, &resp, sizeof resp) ||
          resp != req + 1) {
        if (fd >= 0) why[i] = 2, err[i] = errno, close(fd);
        fd = -1;
      }
      req += 2;
      started++;
      while (started.load() < kConns) std::this_thread::sleep_for(std::chrono::microseconds(100));
      while (fd >= 0 && !stop.load(std::memory_order_relaxed)) {
        if (!write_full(fd, &req, sizeof req) || !read_full(fd, &resp, sizeof resp) ||
            resp != req + 1) {
          why[i] = 3, err[i] = errno;
          break;
        }
        if (count[i].fetch_add(1) + 1 >= kTarget) stop.store(true);
        req += 2;
      }
      if (fd >= 0) close(fd);  // the server's read sees EOF
      clients.done();
    });
  run_checked([&] {
    gort::go([&] {
      for (int i = 0; i < kConns; i++) {
        int c = accept(lfd, nullptr, nullptr);
        if (c < 0) break;
        gort::go([c] {
          uint64_t v;
          while (read_full(c, &v, sizeof v)) {
            v++;
            if (!write_full(c, &v, sizeof v)) break;
          }
          close(c);
        });
      }
    });
    clients.wait();
  });
  for (auto& t : threads) t.join();
  close(lfd);
  std::vector<long> sorted;
  for (auto& c : count) sorted.push_back(c.load());
  for (int i = 0; i < kConns; i++)
    BOOST_TEST(why[i].load() == 0, "client " << i << " stopped at step " << why[i].load()
                                             << " (errno " << err[i].load() << ") after "
                                             << count[i].load() << " responses");
  std::sort(sorted.begin(), sorted.end());
  long lo = sorted.front(), median = sorted[kConns / 2], hi = sorted.back();
  BOOST_TEST_MESSAGE("keep-alive: responses per connection from " << lo << " (median " << median
                                                                  << ") to " << hi);
  BOOST_TEST(hi >= kTarget);
  // What the runtime promises is that no connection starves (the failure was
  // 20,000 responses to 1, and with the network polled only by sysmon every
  // 10 ms, 36 to 400). The median connection is within a factor of 4 of the
  // busiest, the least served within 16: each client is a thread the kernel
  // schedules, which on a loaded 2-core machine (8 Ps, 50 client threads and
  // other processes) it may leave waiting for a while (medians seen there
  // from 128 to 398, least served from 42).
  BOOST_TEST(median * 4 >= hi, "median connection: " << median << " of " << hi);
  BOOST_TEST(lo * 16 >= hi, "least served connection: " << lo << " of " << hi);
}

// Code the runtime cannot see (a condition variable's futex wait) declared
// with gort::blocking: the P goes on without the waiting task's M.
BOOST_AUTO_TEST_CASE(blocking_fn_hands_off_its_p) {
  run_checked([] {
    std::mutex mu;
    std::condition_variable cv;
    bool ready = false;
    const int waiters = busy_tasks();
    std::atomic<int> woke{0};
    gort::WaitGroup wg;
    wg.add(waiters + 1);
    for (int i = 0; i < waiters; i++)
      gort::go([&] {
        gort::blocking([&] {
          std::unique_lock<std::mutex> l(mu);
          cv.wait(l, [&] { return ready; });
        });
        woke++;
        wg.done();
      });
    gort::go([&] {
      gort::sleep_for(std::chrono::milliseconds(10));
      {
        std::lock_guard<std::mutex> l(mu);
        ready = true;
      }
      cv.notify_all();
      wg.done();
    });
    wg.wait();
    TCHECK_EQ(woke.load(), waiters);
  });
}

// The C form, around a blocking pipe read of the runtime's own (a raw system
// call, which no interposition sees); then waitpid() for a child that exits
// only once another task has run: both hand the P on.
BOOST_AUTO_TEST_CASE(blocking_c_api_and_waitpid) {
  run_checked([] {
    int to_child[2], to_task[2];
    TCHECK(pipe(to_child) == 0 && pipe(to_task) == 0);
    std::atomic<bool> other_ran{false};
    gort::WaitGroup wg;
    wg.add(2);
    gort::go([&] {
      char c = 0;
      gort_blocking_enter();
      long n = syscall(SYS_read, to_task[0], &c, 1);
      gort_blocking_exit();
      TCHECK_EQ(n, 1L);
      pid_t pid = fork();
      if (pid == 0) {
        char x;
        _exit(syscall(SYS_read, to_child[0], &x, 1) == 1 ? 7 : 1);
      }
      int st = 0;
      TCHECK_EQ(waitpid(pid, &st, 0), pid);
      TCHECK(WIFEXITED(st) && WEXITSTATUS(st) == 7);
      TCHECK(other_ran.load());
      wg.done();
    });
    gort::go([&] {
      gort::sleep_for(std::chrono::milliseconds(1));
      char c = 'x';
      TCHECK_EQ(syscall(SYS_write, to_task[1], &c, 1), 1L);
      gort::sleep_for(std::chrono::milliseconds(5));
      other_ran.store(true);
      TCHECK_EQ(syscall(SYS_write, to_child[1], &c, 1), 1L);
      wg.done();
    });
    wg.wait();
    for (int fd : {to_child[0], to_child[1], to_task[0], to_task[1]}) close(fd);
  });
}

// errno is the task's across the hand-off, and sleeps are timer waits: 100
// tasks in usleep(), nanosleep(), clock_nanosleep() and poll() at once, each
// sleeping in a loop until all of them were asleep together, which they
// cannot be if every sleep holds an M and a P.
BOOST_AUTO_TEST_CASE(errno_and_sleep_calls_on_tasks) {
  run_checked([] {
    gort::WaitGroup wg;
    std::atomic<int> bad{0}, asleep{0};
    std::atomic<bool> release{false};
    constexpr int kSleepers = 100;
    wg.add(kSleepers);
    for (int i = 0; i < kSleepers; i++)
      gort::go([&, i] {
        if (!fails_ebadf(true)) bad++;
        asleep++;
        while (!release.load()) {
          switch (i % 4) {
            case 0:
              if (usleep(1000) != 0) bad++;
              break;
            case 1: {
              struct timespec ts = {0, 1000 * 1000}, rem = {1, 1};
              if (nanosleep(&ts, &rem) != 0) bad++;
              break;
            }
            case 2: {
              struct timespec ts = {0, 1000 * 1000};
              if (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, nullptr) != 0) bad++;
              break;
            }
            default:
              if (poll(nullptr, 0, 1) != 0) bad++;
          }
        }
        if (!fails_ebadf(false)) bad++;
        wg.done();
      });
    TCHECK(wait_until([&] { return asleep.load() == kSleepers; }));
    release.store(true);
    wg.wait();
    TCHECK_EQ(bad.load(), 0);
  });
}

// A task's errno belongs to it: another task's blocking call that comes
// back on another M never writes the thread it left. Blockers set errno to
// ENOTTY and block in read() on a pipe nobody else has (the hand-off path:
// sysmon takes their P, they come back elsewhere); the others set errno to
// 42, compute for a while without a call and look again. (The runtime wrote
// a migrated call's errno at the old thread's address too, for callers that
// had kept it; the task running there saw its errno change under it: a
// keep-alive server read() answered -1 with errno 0 and dropped the
// connection.)
BOOST_AUTO_TEST_CASE(errno_is_never_written_from_another_task) {
  int p[2];
  BOOST_REQUIRE(pipe(p) == 0);
  std::atomic<bool> stop{false};
  std::thread feeder([&] {
    char c = 'x';
    while (!stop.load()) {
      if (write(p[1], &c, 1) != 1) break;
      std::this_thread::sleep_for(std::chrono::microseconds(300));
    }
  });
  std::atomic<long> wrong{0}, checks{0}, handoffs{0};
  int seen = 0;
  run_checked([&] {
    gort::WaitGroup wg;
    const int blockers = busy_tasks(), others = 2 * busy_tasks();
    wg.add(blockers + others);
    for (int i = 0; i < blockers; i++)
      gort::go([&] {
        for (int k = 0; k < 300 && !stop.load(); k++) {
          char c;
          *errno_loc() = ENOTTY;
          long before = static_cast<long>(syscall(SYS_gettid));
          if (read(p[0], &c, 1) != 1) break;
          if (static_cast<long>(syscall(SYS_gettid)) != before) handoffs++;
        }
        wg.done();
      });
    for (int i = 0; i < others; i++)
      gort::go([&] {
        volatile uint64_t x = 1;
        for (int k = 0; k < 2000 && !stop.load(); k++) {
          *errno_loc() = 42;
          for (int s = 0; s < 2000; s++) x = x * 6364136223846793005u + 1;
          int e = *errno_loc();
          if (e != 42) {
            wrong++;
            seen = e;
          }
          checks++;
          gort::yield();
        }
        wg.done();
      });
    wg.wait();
  });
  stop.store(true);
  feeder.join();
  close(p[0]);
  close(p[1]);
  BOOST_TEST_MESSAGE("errno checks: " << checks.load()
                                      << ", blocking calls back on another M: " << handoffs.load());
  BOOST_TEST(wrong.load() == 0, wrong.load() << " of " << checks.load()
                                             << " checks saw another errno (last " << seen << ")");
}

// On a thread that runs no task, the calls are libc's: errno, EINTR.
BOOST_AUTO_TEST_CASE(plain_threads_see_libc) {
  std::thread t([] {
    char c;
    errno = 0;
    BOOST_TEST(read(-1, &c, 1) == -1);
    BOOST_TEST(errno == EBADF);
    struct timespec ts = {0, 1000}, rem;
    BOOST_TEST(nanosleep(&ts, &rem) == 0);
    ts.tv_nsec = -1;
    errno = 0;
    BOOST_TEST(nanosleep(&ts, &rem) == -1);
    BOOST_TEST(errno == EINVAL);
    BOOST_TEST(usleep(10) == 0);
  });
  t.join();
}

BOOST_AUTO_TEST_SUITE_END()
