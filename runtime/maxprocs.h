// How many Ps and how big a task stack: GORT_MAXPROCS and GORT_STACKSIZE,
// and the CPU count the default comes from.
//
// The default GORT_MAXPROCS is what Go 1.25 uses for GOMAXPROCS: the CPUs in
// the process's affinity mask, lowered to the cgroup CPU bandwidth limit
// (cpu.max in cgroup v2, cpu.cfs_quota_us / cpu.cfs_period_us in v1, the
// tightest along the path to the root) rounded up, but not below 2 on
// account of the quota (Go 33803: a runtime that ignores the quota gets
// throttled in containers).
#pragma once

#include <cstddef>

namespace gort::rt {

inline constexpr int kMaxProcsLimit = 1024;

// GORT_MAXPROCS, or the default above. A malformed value is a fatal error
// that names it.
int maxprocs_from_env();
int cpus_available();
// GORT_STACKSIZE in bytes (suffixes k, m), or 256 KiB.
size_t stack_size_from_env();

}  // namespace gort::rt
