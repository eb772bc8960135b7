// The HTTP benchmark's own clients (plain C++, one thread, epoll; no gort),
// for what wrk does not show:
//   http_probe fair N SECONDS PORT   N keep-alive connections sending back to
//       back; prints the spread of responses per connection and the worst
//       wait (request sent to response complete): "fair conns=.. total=..
//       min=.. median=.. max=.. starved=.. worst_wait_ms=.."
//   http_probe idle N SECONDS PORT   N keep-alive connections, one request
//       each, then idle for SECONDS: prints "idle ok=N" once all answered.
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

namespace {

double now_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

const char kReq[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";

struct Conn {
  int fd = -1;
  std::string in;
  long count = 0;
  double sent = 0;
};

// A complete response at the front of in: its length, or 0.
size_t complete(const std::string& in) {
  size_t h = in.find("\r\n\r\n");
  if (h == std::string::npos) return 0;
  size_t cl = in.find("Content-Length: ");
  if (cl == std::string::npos || cl > h) cl = in.find("content-length: ");
  if (cl == std::string::npos || cl > h) return h + 4;
  size_t len = strtoul(in.c_str() + cl + 16, nullptr, 10);
  return in.size() >= h + 4 + len ? h + 4 + len : 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: http_probe fair|idle N SECONDS PORT\n");
    return 2;
  }
  bool fair = strcmp(argv[1], "fair") == 0;
  int n = atoi(argv[2]);
  double secs = atof(argv[3]);
  int port = atoi(argv[4]);
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  int ep = epoll_create1(0);
  std::vector<Conn> conns(static_cast<size_t>(n));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  for (int i = 0; i < n; i++) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      fprintf(stderr, "connect %d: %s\n", i, strerror(errno));
      return 1;
    }
    conns[static_cast<size_t>(i)].fd = fd;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = static_cast<uint32_t>(i);
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  }
  double start = now_ms();
  for (auto& c : conns) {
    c.sent = now_ms();
    if (write(c.fd, kReq, sizeof kReq - 1) < 0) return 1;
  }
  double worst = 0, end = start + secs * 1000;
  long answered = 0;
  std::vector<epoll_event> evs(1024);
  char buf[65536];
  bool idle_reported = false;
  while (now_ms() < end) {
    int k = epoll_wait(ep, evs.data(), static_cast<int>(evs.size()), 50);
    for (int j = 0; j < k; j++) {
      Conn& c = conns[evs[static_cast<size_t>(j)].data.u32];
      ssize_t r = read(c.fd, buf, sizeof buf);
      if (r <= 0) {
        fprintf(stderr, "connection closed by the server\n");
        return 1;
      }
      c.in.append(buf, static_cast<size_t>(r));
      size_t len;
      while ((len = complete(c.in)) > 0) {
        c.in.erase(0, len);
        double t = now_ms();
        worst = std::max(worst, t - c.sent);
        c.count++;
        answered++;
        if (fair && t < end) {
          c.sent = t;
          if (write(c.fd, kReq, sizeof kReq - 1) < 0) return 1;
        }
      }
    }
    if (!fair && !idle_reported && answered == n) {
      printf("idle ok=%ld\n", answered);
      fflush(stdout);
      idle_reported = true;
    }
  }
  if (!fair) return idle_reported ? 0 : 1;
  std::vector<long> counts;
  long starved = 0, total = 0;
  for (auto& c : conns) {
    counts.push_back(c.count);
    total += c.count;
    if (c.count == 0) starved++;
    // A request still outstanding at the end has waited this long.
    if (!c.in.empty() || c.count == 0) worst = std::max(worst, end - c.sent);
  }
  std::sort(counts.begin(), counts.end());
  printf("fair conns=%d total=%ld min=%ld median=%ld max=%ld starved=%ld worst_wait_ms=%.1f\n", n,
         total, counts.front(), counts[counts.size() / 2], counts.back(), starved, worst);
  return 0;
}
