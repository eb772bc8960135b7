// Helpers shared by the workload programs (bench/workloads/*.cc): the
// GORT_BENCH_SCALE knob, a deterministic PRNG, and the block stamps the
// self-checks use. Each workload is one program built from its own .cc plus
// this header; the harness protocol they print is in bench/run.py.
#pragma once

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <cstddef>
#include <cstdint>

namespace workload {

// GORT_BENCH_SCALE multiplies a workload's work (1 in `make run`, 4 in `make
// bench`); anything but a positive finite number is an error (exit 2).
inline double bench_scale() {
  const char* s = getenv("GORT_BENCH_SCALE");
  if (s == nullptr) return 1.0;
  char* end = nullptr;
  double v = strtod(s, &end);
  if (end == s || *end != '\0' || !(v > 0) || !isfinite(v)) {
    fprintf(stderr, "workload: bad GORT_BENCH_SCALE=%s\n", s);
    exit(2);
  }
  return v;
}

// xorshift64: deterministic, so every allocator sees the same request stream.
struct xorshift {
  uint64_t s;
  explicit xorshift(uint64_t seed) : s(seed * 0x9e3779b97f4a7c15ULL ^ 0x2545f4914f6cdd1dULL) {
    if (s == 0) s = 1;
  }
  uint64_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
  uint64_t below(uint64_t n) { return next() % n; }
};

// The pattern byte at offset i of the block with id `id`. Blocks are stamped
// on their first and last 16 bytes and one byte per 4 KiB page: enough to catch
// a block handed out twice or a bad copy without turning the workload into a
// memset benchmark.
inline unsigned char pat(uint64_t id, size_t i) {
  return static_cast<unsigned char>(((id * 0x9e3779b97f4a7c15ULL) >> 40) + i);
}

inline void stamp(unsigned char* p, size_t n, uint64_t id) {
  size_t head = n < 16 ? n : 16;
  for (size_t i = 0; i < head; i++) p[i] = pat(id, i);
  for (size_t i = n > 32 ? n - 16 : head; i < n; i++) p[i] = pat(id, i);
  for (size_t i = 4096; i < n; i += 4096) p[i] = pat(id, i);
}

inline bool check(const unsigned char* p, size_t n, uint64_t id) {
  bool ok = true;
  size_t head = n < 16 ? n : 16;
  for (size_t i = 0; i < head; i++) ok &= p[i] == pat(id, i);
  for (size_t i = n > 32 ? n - 16 : head; i < n; i++) ok &= p[i] == pat(id, i);
  for (size_t i = 4096; i < n; i += 4096) ok &= p[i] == pat(id, i);
  return ok;
}

// malloc that ends the workload on failure: a benchmark cannot go on without
// its memory, and the harness reports the exit as a failure.
inline unsigned char* xmalloc(size_t n) {
  auto* p = static_cast<unsigned char*>(malloc(n));
  if (p == nullptr) {
    fprintf(stderr, "workload: malloc(%zu) failed\n", n);
    exit(1);
  }
  return p;
}

}  // namespace workload
