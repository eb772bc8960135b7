// An HTTP/1.1 keep-alive server on gort for the end-to-end benchmark
// (docs/benchmarking.md, "HTTP"): a task per connection, a small JSON
// response built from per-request heap objects. Written twice, selected by
// the first argument: "net" uses gort::net (Conn::read/write), "libc" plain
// blocking socket calls (accept/read/write, parked by the interposed calls).
// The Go peer is bench/peers/go/httpserver.go. Usage:
//   http_server net|libc PORT      prints "ready PORT" and serves until killed
#include <arpa/inet.h>
#include <gort/gort.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

namespace {

struct Item {
  std::string name;
  long value;
};

// The response body from heap objects made for this request.
std::string make_body(long id) {
  auto items = std::make_unique<std::vector<Item>>();
  for (int i = 0; i < 4; i++) items->push_back(Item{"item" + std::to_string(i), id * 10 + i});
  std::string body = "{\"id\":" + std::to_string(id) + ",\"items\":[";
  for (size_t i = 0; i < items->size(); i++) {
    if (i) body += ',';
    body += "{\"name\":\"" + (*items)[i].name +
            "\",\"value\":" + std::to_string((*items)[i].value) + "}";
  }
  body += "]}";
  return body;
}

std::string make_response(long id) {
  std::string body = make_body(id);
  return "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}

// Serves one connection: read requests (no bodies), answer each.
template <class Read, class Write>
void serve(Read rd, Write wr) {
  std::string buf;
  char tmp[4096];
  long id = 0;
  for (;;) {
    size_t end;
    while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
      long n = rd(tmp, sizeof tmp);
      if (n <= 0) return;
      buf.append(tmp, static_cast<size_t>(n));
    }
    buf.erase(0, end + 4);
    std::string resp = make_response(++id);
    if (!wr(resp.data(), resp.size())) return;
  }
}

void raise_nofile() {
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3 || (strcmp(argv[1], "net") != 0 && strcmp(argv[1], "libc") != 0)) {
    fprintf(stderr, "usage: http_server net|libc PORT\n");
    return 2;
  }
  bool use_net = strcmp(argv[1], "net") == 0;
  int port = atoi(argv[2]);
  raise_nofile();
  return gort::run([&] {
    if (use_net) {
      std::error_code ec;
      auto ln = gort::net::listen("127.0.0.1:" + std::to_string(port), ec);
      if (ec) {
        fprintf(stderr, "listen: %s\n", ec.message().c_str());
        exit(1);
      }
      printf("ready %u\n", ln.port());
      fflush(stdout);
      for (;;) {
        auto c = ln.accept(ec);
        if (ec) continue;
        gort::go([c = std::move(c)]() mutable {
          std::error_code e;
          serve(
              [&](char* b, size_t n) -> long {
                size_t r = c.read(b, n, e);
                return e ? -1 : static_cast<long>(r);
              },
              [&](const char* b, size_t n) { return c.write(b, n, e) == n && !e; });
        });
      }
    }
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    socklen_t len = sizeof a;
    if (bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(lfd, 4096) != 0) {
      perror("bind/listen");
      exit(1);
    }
    getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &len);
    printf("ready %u\n", ntohs(a.sin_port));
    fflush(stdout);
    for (;;) {
      int c = accept(lfd, nullptr, nullptr);
      if (c < 0) continue;
      setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      gort::go([c] {
        serve([&](char* b, size_t n) -> long { return read(c, b, n); },
              [&](const char* b, size_t n) { return write(c, b, n) == static_cast<ssize_t>(n); });
        close(c);
      });
    }
  });
}
