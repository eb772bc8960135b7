// GORT_MAXPROCS, GORT_STACKSIZE and the CPU count; see maxprocs.h.
#include "runtime/maxprocs.h"

#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc/sys.h"

namespace gort::rt {

namespace {

bool read_file(const char* path, char* buf, size_t n) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  ssize_t r = read(fd, buf, n - 1);
  close(fd);
  if (r <= 0) return false;
  buf[r] = 0;
  return true;
}

// The CPU limit of one cgroup directory, in CPUs (0: none).
double cgroup_limit(const char* dir, bool v2) {
  char path[4400], buf[128];
  if (v2) {
    snprintf(path, sizeof path, "%s/cpu.max", dir);
    if (!read_file(path, buf, sizeof buf) || strncmp(buf, "max", 3) == 0) return 0;
    double quota = 0, period = 0;
    if (sscanf(buf, "%lf %lf", &quota, &period) != 2 || quota <= 0 || period <= 0) return 0;
    return quota / period;
  }
  snprintf(path, sizeof path, "%s/cpu.cfs_quota_us", dir);
  if (!read_file(path, buf, sizeof buf)) return 0;
  double quota = atof(buf);
  snprintf(path, sizeof path, "%s/cpu.cfs_period_us", dir);
  if (quota <= 0 || !read_file(path, buf, sizeof buf)) return 0;
  double period = atof(buf);
  return period > 0 ? quota / period : 0;
}

// The tightest limit from the process's cgroup up to the mount root.
double cgroup_cpu_limit() {
  char cg[4096];
  if (!read_file("/proc/self/cgroup", cg, sizeof cg)) return 0;
  double best = 0;
  for (char* line = strtok(cg, "\n"); line; line = strtok(nullptr, "\n")) {
    // "0::/path" (v2) or "N:cpu,cpuacct:/path" (v1)
    char* c1 = strchr(line, ':');
    char* c2 = c1 ? strchr(c1 + 1, ':') : nullptr;
    if (!c2) continue;
    bool v2 = c2 == c1 + 1;
    if (!v2 && !strstr(c1, "cpu")) continue;
    const char* root = v2 ? "/sys/fs/cgroup" : "/sys/fs/cgroup/cpu,cpuacct";
    if (!v2 && access(root, F_OK) != 0) root = "/sys/fs/cgroup/cpu";
    char dir[4200];
    snprintf(dir, sizeof dir, "%s%s", root, c2 + 1);
    for (;;) {
      double l = cgroup_limit(dir, v2);
      if (l > 0 && (best == 0 || l < best)) best = l;
      char* slash = strrchr(dir, '/');
      if (!slash || static_cast<size_t>(slash - dir) < strlen(root)) break;
      *slash = 0;
    }
  }
  return best;
}

}  // namespace

int cpus_available() {
  int n = 0;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) n = CPU_COUNT(&set);
  if (n <= 0) n = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  if (n <= 0) n = 1;
  double limit = cgroup_cpu_limit();
  if (limit > 0) {
    int l = static_cast<int>(limit);
    if (l < limit) l++;
    if (l < 2) l = 2;
    if (l < n) n = l;
  }
  return n > kMaxProcsLimit ? kMaxProcsLimit : n;
}

int maxprocs_from_env() {
  const char* v = getenv("GORT_MAXPROCS");
  if (!v || !*v) return cpus_available();
  char* end;
  long n = strtol(v, &end, 10);
  if (*end != 0 || n < 1 || n > kMaxProcsLimit) {
    alloc::print_err("GORT_MAXPROCS=\"%s\" is invalid: want a whole number of Ps from 1 to %d\n", v,
                     kMaxProcsLimit);
    _exit(2);
  }
  return static_cast<int>(n);
}

size_t stack_size_from_env() {
  const char* v = getenv("GORT_STACKSIZE");
  if (!v || !*v) return 256 << 10;
  char* end;
  unsigned long long n = strtoull(v, &end, 10);
  if (*end == 'k' || *end == 'K') {
    n <<= 10;
    end++;
  } else if (*end == 'm' || *end == 'M') {
    n <<= 20;
    end++;
  }
  if (*end != 0 || v[0] == '-' || n < (16 << 10) || n > (size_t{1} << 30)) {
    alloc::print_err(
        "GORT_STACKSIZE=\"%s\" is invalid: want bytes from 16k to 1024m (suffix k or m)\n", v);
    _exit(2);
  }
  return n;
}

}  // namespace gort::rt
