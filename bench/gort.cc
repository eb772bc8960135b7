// gort: the command-line tool (build/bin/gort).
//
//   gort run [--stats] -- CMD [ARGS...]   run CMD with libgort.so preloaded;
//                                         --stats prints allocator statistics
//                                         (GORT_DEBUG=mstats=1) when it exits
//   gort bench [OPTIONS]                  compare allocators, and the scheduler
//                                         and the collector with their peers
//                                         (bench/run.py; `gort bench --help`
//                                         lists the options)
//   gort version | help
//
// It lives with the benchmarks because its main job is `gort bench`; `gort
// run` is its small sibling. Paths are found from the binary's own location:
// <bin>/../lib/libgort.so (the build tree and an installed PREFIX alike) and
// the harness: the source tree's bench/run.py next to the build tree, else an
// installed copy, <bin>/../libexec/gort/run.py with the benchmark programs
// beside it (`make install`), else the tree it was built from
// (GORT_SOURCE_DIR). The installed copy needs no source tree.
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <string>
#include <utility>
#include <vector>

#ifndef GORT_SOURCE_DIR
#define GORT_SOURCE_DIR ""
#endif

namespace {

const char kUsage[] =
    "usage: gort run [--stats] -- CMD [ARGS...]\n"
    "       gort bench [--quick] [--runs N] [--workloads a,b] [--allocators a,b]\n"
    "                  [--allocator NAME=/path/lib.so ...] [--add-workload NAME=/path ...]\n"
    "                  [--sched-peers a,b] [--gc-peers a,b] [--maxprocs 1,2] [--out DIR]\n"
    "       gort version\n";

std::string self_dir() {
  char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  buf[n] = 0;
  std::string s(buf);
  return s.substr(0, s.rfind('/'));
}

bool exists(const std::string& p) {
  return access(p.c_str(), F_OK) == 0;
}

int usage_error(const char* why) {
  fprintf(stderr, "gort: %s\n%s", why, kUsage);
  return 2;
}

// Prepends value to a colon- or comma-separated environment variable.
void prepend_env(const char* name, const std::string& value, char sep) {
  const char* old = getenv(name);
  std::string v = value;
  if (old && *old) v += sep + std::string(old);
  setenv(name, v.c_str(), 1);
}

int cmd_run(int argc, char** argv) {
  bool stats = false;
  int i = 0;
  for (; i < argc; i++) {
    if (strcmp(argv[i], "--stats") == 0) {
      stats = true;
    } else if (strcmp(argv[i], "--") == 0) {
      i++;
      break;
    } else {
      return usage_error((std::string("run: unknown option ") + argv[i]).c_str());
    }
  }
  if (i >= argc) return usage_error("run: no command given (gort run [--stats] -- CMD ...)");
  std::string lib = self_dir() + "/../lib/libgort.so";
  char real[PATH_MAX];
  if (!realpath(lib.c_str(), real)) {
    fprintf(stderr, "gort: run: cannot find libgort.so at %s\n", lib.c_str());
    return 2;
  }
  prepend_env("LD_PRELOAD", real, ':');
  // Only this program's settings: GORT_DEBUG keys are comma-separated.
  if (stats) prepend_env("GORT_DEBUG", "mstats=1", ',');
  execvp(argv[i], argv + i);
  fprintf(stderr, "gort: run: %s: %s\n", argv[i], strerror(errno));
  return errno == ENOENT ? 127 : 126;
}

int cmd_bench(int argc, char** argv) {
  // (harness, where its programs are) in order of preference.
  const std::string bin = self_dir();
  std::vector<std::pair<std::string, std::string>> candidates = {
      {bin + "/../../bench/run.py", bin + "/.."},
      {bin + "/../libexec/gort/run.py", bin + "/../libexec/gort"}};
  if (*GORT_SOURCE_DIR)
    candidates.push_back({std::string(GORT_SOURCE_DIR) + "/bench/run.py", bin + "/.."});
  std::string runner, programs, looked;
  for (auto& [c, dir] : candidates) {
    if (exists(c)) {
      runner = c;
      programs = dir;
      break;
    }
    looked += (looked.empty() ? "" : ", ") + c;
  }
  if (runner.empty()) {
    fprintf(stderr,
            "gort: bench: cannot find the harness run.py (looked in %s); run it from a gort "
            "source tree or a `make install`ed copy\n",
            looked.c_str());
    return 2;
  }
  setenv("GORT_BUILD_DIR", programs.c_str(), 1);
  setenv("GORT_LIB_DIR", (bin + "/../lib").c_str(), 1);
  std::vector<char*> args = {const_cast<char*>("/usr/bin/python3"),
                             const_cast<char*>(runner.c_str())};
  for (int i = 0; i < argc; i++) args.push_back(argv[i]);
  args.push_back(nullptr);
  execv(args[0], args.data());
  fprintf(stderr, "gort: bench: cannot run /usr/bin/python3: %s (make deps installs it)\n",
          strerror(errno));
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage_error("no command");
  std::string cmd = argv[1];
  if (cmd == "run") return cmd_run(argc - 2, argv + 2);
  if (cmd == "bench") return cmd_bench(argc - 2, argv + 2);
  if (cmd == "version" || cmd == "--version") {
    printf("gort 0.1.0\n");
    return 0;
  }
  if (cmd == "help" || cmd == "--help" || cmd == "-h") {
    fputs(kUsage, stdout);
    return 0;
  }
  return usage_error(("unknown command " + cmd).c_str());
}
