// Shared helpers for the allocator tests: running a program with a given
// environment and capturing its output, reading RSS, locating the build.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace gort_test {

inline std::string build_dir() {
  const char* b = getenv("GORT_BUILD");
  return b ? b : "build";
}
inline std::string libgort_so() {
  char buf[4096];
  std::string rel = build_dir() + "/lib/libgort.so";
  if (realpath(rel.c_str(), buf)) return buf;
  return rel;
}
inline std::string test_prog(const std::string& name) {
  return build_dir() + "/test/" + name;
}

struct result {
  int status = -1;  // exit code, or 128 + signal
  std::string out, err;
  bool timed_out = false;
};

// Runs argv with the current environment plus env (NAME=VALUE strings) and
// the given stdin text; kills it after timeout_s seconds.
inline result run(const std::vector<std::string>& argv, const std::vector<std::string>& env = {},
                  const std::string& input = "", int timeout_s = 120, const char* cwd = nullptr) {
  int in[2], out[2], err[2];
  if (pipe(in) || pipe(out) || pipe(err)) abort();
  pid_t pid = fork();
  if (pid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    dup2(err[1], 2);
    for (int fd : {in[0], in[1], out[0], out[1], err[0], err[1]}) close(fd);
    if (cwd && chdir(cwd) != 0) _exit(126);
    for (const auto& e : env) putenv(strdup(e.c_str()));
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  close(err[1]);
  // Feed stdin from the parent while draining stdout/stderr, so that neither
  // side can fill a pipe and block the other.
  size_t fed = 0;
  if (input.empty()) close(in[1]);
  fcntl(in[1], F_SETFL, O_NONBLOCK);
  result r;
  time_t deadline = time(nullptr) + timeout_s;
  bool out_open = true, err_open = true, in_open = !input.empty();
  char buf[65536];
  while (out_open || err_open) {
    std::vector<pollfd> fds;
    if (out_open) fds.push_back({out[0], POLLIN, 0});
    if (err_open) fds.push_back({err[0], POLLIN, 0});
    if (in_open) fds.push_back({in[1], POLLOUT, 0});
    if (poll(fds.data(), fds.size(), 1000) < 0) break;
    for (auto& f : fds) {
      if (f.fd == in[1] && (f.revents & (POLLOUT | POLLERR | POLLHUP))) {
        ssize_t w = write(in[1], input.data() + fed, input.size() - fed);
        if (w > 0) fed += static_cast<size_t>(w);
        if (w < 0 || fed == input.size()) {
          close(in[1]);
          in_open = false;
        }
      } else if (f.revents & (POLLIN | POLLHUP | POLLERR)) {
        ssize_t n = read(f.fd, buf, sizeof buf);
        if (n <= 0) {
          if (f.fd == out[0]) out_open = false;
          if (f.fd == err[0]) err_open = false;
        } else {
          (f.fd == out[0] ? r.out : r.err).append(buf, static_cast<size_t>(n));
        }
      }
    }
    if (time(nullptr) > deadline) {
      kill(pid, SIGKILL);
      r.timed_out = true;
      break;
    }
  }
  if (in_open) close(in[1]);
  close(out[0]);
  close(err[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

inline std::string preload_env() {
  return "LD_PRELOAD=" + libgort_so();
}

// Resident set size of this process, from /proc/self/statm.
inline size_t rss_bytes() {
  std::ifstream f("/proc/self/statm");
  size_t size = 0, resident = 0;
  f >> size >> resident;
  return resident * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

// A scratch directory under /tmp, removed with everything in it afterwards.
struct tmpdir {
  std::string path;
  tmpdir() {
    char t[] = "/tmp/gort-test-XXXXXX";
    path = mkdtemp(t);
  }
  ~tmpdir() { run({"rm", "-rf", path}); }
  tmpdir(const tmpdir&) = delete;
  tmpdir& operator=(const tmpdir&) = delete;
};

inline bool has_program(const std::string& name) {
  return run({"sh", "-c", "command -v " + name}).status == 0;
}

}  // namespace gort_test
