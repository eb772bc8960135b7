// Workload: buffers grown by realloc, as string builders, vectors without
// reserve and read-into-buffer loops grow them. 4 threads each repeat a round
// of three kinds of growth, interleaved:
//   - 4 buffers doubled from 16 B to 4 MiB (the large end tests whether the
//     allocator can grow in place or remap instead of copying megabytes);
//   - 8 buffers grown by 1 byte at a time from 1 B to 64 KiB;
//   - 8 buffers grown by 16 bytes at a time from 1 B to 64 KiB.
// All 20 buffers of a round grow together, round-robin, so a buffer's
// neighbour is usually another growing buffer and in-place growth is not free.
// GORT_BENCH_SCALE scales the number of rounds.
//
// Prints (stdout):
//   result time <ms> lower
// Self-check: the whole contents of a buffer are a pattern derived from its id.
// After each realloc the bytes that were there are checked: all of them when
// the block moved (or was doubled), the first and last ones when it grew in
// place, and the whole buffer before it is freed. On a mismatch the program
// reports it on stderr and exits 1.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include "workload.h"

namespace {

using namespace workload;

// ---- the workload ----

constexpr int kThreads = 4;
constexpr int kRounds = 10;  // per thread at scale 1
constexpr int kDoubling = 4;
constexpr size_t kDoublingFrom = 16, kDoublingTo = 4u << 20;
constexpr int kStepping = 8;  // buffers per step size
constexpr size_t kSteppingTo = 64u << 10;
constexpr size_t kDoublingSteps = 19;  // 16 B << 18 = 4 MiB
constexpr size_t kDoublingEvery = kSteppingTo / kDoublingSteps;
static_assert(kDoublingFrom << (kDoublingSteps - 1) == kDoublingTo);

struct buffer {
  unsigned char* p = nullptr;
  size_t n = 0;
  unsigned char base = 0;  // byte i holds base + i (mod 256)
};

// The pattern has period 256, so fill and check run as memcpy/memcmp against
// a table (bytes 0..255 twice) and stay fast next to the reallocs they verify.
struct pattern_table {
  unsigned char t[512];
  pattern_table() {
    for (int i = 0; i < 512; i++) t[i] = static_cast<unsigned char>(i);
  }
};
const pattern_table kTable;

inline const unsigned char* expected(const buffer& b, size_t i) {
  return kTable.t + ((b.base + i) & 255);
}

// Fills [from, to) with the buffer's pattern.
void fill(buffer& b, size_t from, size_t to) {
  for (size_t i = from; i < to; i += 256)
    memcpy(b.p + i, expected(b, i), to - i < 256 ? to - i : 256);
}

bool check(const buffer& b, size_t from, size_t to) {
  for (size_t i = from; i < to; i += 256)
    if (memcmp(b.p + i, expected(b, i), to - i < 256 ? to - i : 256) != 0) return false;
  return true;
}

// Grows b to n bytes, checks what it held and fills the new tail.
bool grow(buffer& b, size_t n) {
  unsigned char* old = b.p;
  auto* p = static_cast<unsigned char*>(realloc(b.p, n));
  if (p == nullptr) {
    fprintf(stderr, "realloc_growth: realloc(%zu) failed\n", n);
    exit(1);
  }
  size_t was = b.n;
  b.p = p;
  b.n = n;
  bool ok;
  if (p != old || was < 64)
    ok = check(b, 0, was);
  else
    ok = check(b, 0, 16) && check(b, was - 16, was);
  fill(b, was, n);
  return ok;
}

long round_of_growth(uint64_t id) {
  long bad = 0;
  buffer dbl[kDoubling], one[kStepping], sixteen[kStepping];
  unsigned char base = static_cast<unsigned char>(id * 37);
  for (buffer& b : dbl) b.base = base++;
  for (buffer& b : one) b.base = base++;
  for (buffer& b : sixteen) b.base = base++;

  // One tick grows every +1 buffer; every 16th tick the +16 buffers, and every
  // kDoublingEvery-th tick the doubling ones, so all three finish together.
  size_t dbl_n = kDoublingFrom;
  for (size_t k = 1; k <= kSteppingTo; k++) {
    for (buffer& b : one) bad += !grow(b, k);
    if ((k - 1) % 16 == 0)
      for (buffer& b : sixteen) bad += !grow(b, k);
    if ((k - 1) % kDoublingEvery == 0 && dbl_n <= kDoublingTo) {
      for (buffer& b : dbl) bad += !grow(b, dbl_n);
      dbl_n *= 2;
    }
  }

  for (buffer* set : {dbl, one, sixteen}) {
    int count = set == dbl ? kDoubling : kStepping;
    for (int i = 0; i < count; i++) {
      bad += !check(set[i], 0, set[i].n);
      free(set[i].p);
    }
  }
  return bad;
}

}  // namespace

int main() {
  const double scale = bench_scale();
  const int rounds = static_cast<int>(fmax(1.0, round(kRounds * scale)));
  std::atomic<long> bad{0};

  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; t++)
    ts.emplace_back([&, t] {
      long nbad = 0;
      for (int r = 0; r < rounds; r++)
        nbad += round_of_growth(static_cast<uint64_t>(t * rounds + r));
      bad += nbad;
    });
  for (auto& th : ts) th.join();
  auto t1 = std::chrono::steady_clock::now();

  if (bad.load() != 0) {
    fprintf(stderr, "realloc_growth: %ld bad checks\n", bad.load());
    return 1;
  }
  double ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
  fprintf(stderr, "realloc_growth: %d threads x %d rounds\n", kThreads, rounds);
  printf("result time %.1f ms lower\n", ms);
  return 0;
}
