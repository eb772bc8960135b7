// Runs under an address-space limit (RLIMIT_AS) that it sets itself, with
// libgort.so preloaded by the test, and checks that reaching the limit fails
// requests cleanly and loses nothing (SPEC.md: "fail a malloc with ENOMEM,
// never the process"):
//  - large and small mallocs, calloc, aligned_alloc and posix_memalign return
//    NULL (or the error code) with errno ENOMEM once memory runs out;
//  - realloc that cannot grow returns NULL and leaves the old block intact;
//  - operator new throws std::bad_alloc after calling the new_handler, and
//    nothrow new returns nullptr;
//  - every block obtained before the limit still holds its contents, and after
//    freeing them the program allocates again.
// Prints "ok" on success; any failure prints what and exits 1.
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <new>
#include <vector>

static int g_fail = 0;
#define CHECK(c)                                                      \
  do {                                                                \
    if (!(c)) {                                                       \
      printf("FAILED line %d: %s (errno %d)\n", __LINE__, #c, errno); \
      g_fail = 1;                                                     \
    }                                                                 \
  } while (0)

static int g_handler_calls = 0;
static void handler() {
  g_handler_calls++;
  std::set_new_handler(nullptr);  // the next failure throws
}

struct block {
  unsigned char* p;
  size_t n;
};

static void fill(block b) {
  memset(b.p, static_cast<int>(reinterpret_cast<uintptr_t>(b.p) >> 4 & 0xff), b.n);
}
static bool intact(block b) {
  unsigned char want = static_cast<unsigned char>(reinterpret_cast<uintptr_t>(b.p) >> 4 & 0xff);
  for (size_t i = 0; i < b.n; i += 509)
    if (b.p[i] != want) return false;
  return b.p[b.n - 1] == want;
}

// Allocates blocks of size n until malloc fails; returns how many it got.
static size_t exhaust(std::vector<block>& held, size_t n) {
  size_t got = 0;
  for (;;) {
    errno = 0;
    void* p = malloc(n);
    if (!p) {
      CHECK(errno == ENOMEM);
      return got;
    }
    block b{static_cast<unsigned char*>(p), n};
    fill(b);
    held.push_back(b);
    got++;
  }
}

int main(int argc, char** argv) {
  setvbuf(stdout, nullptr, _IONBF, 0);  // no buffer to allocate at the limit
  size_t limit_mib = argc > 1 ? strtoul(argv[1], nullptr, 10) : 512;
  // The vector that records the blocks must not need to grow at the limit.
  std::vector<block> held;
  held.reserve(1 << 20);
  struct rlimit rl = {limit_mib << 20, limit_mib << 20};
  if (setrlimit(RLIMIT_AS, &rl) != 0) {
    perror("setrlimit");
    return 1;
  }

  size_t big = exhaust(held, 1 << 20);  // 1 MiB blocks: large spans
  CHECK(big > 16);
  size_t small = exhaust(held, 48);  // then small ones fill what is left
  (void)small;

  // At the limit: every entry point fails cleanly.
  errno = 0;
  CHECK(malloc(64 << 20) == nullptr && errno == ENOMEM);
  errno = 0;
  CHECK(calloc(1 << 20, 64) == nullptr && errno == ENOMEM);
  errno = 0;
  CHECK(aligned_alloc(1 << 21, 64 << 20) == nullptr && errno == ENOMEM);
  void* pm = reinterpret_cast<void*>(1);
  CHECK(posix_memalign(&pm, 4096, 64 << 20) == ENOMEM);
  CHECK(pm == reinterpret_cast<void*>(1));  // untouched on failure
  block first = held[0];
  errno = 0;
  CHECK(realloc(first.p, 256 << 20) == nullptr && errno == ENOMEM);
  CHECK(intact(first));  // the old block is still there

  std::set_new_handler(handler);
  bool threw = false;
  try {
    char* c = new char[64 << 20];
    c[0] = 1;
    delete[] c;
  } catch (const std::bad_alloc&) {
    threw = true;
  }
  CHECK(threw);
  CHECK(g_handler_calls == 1);
  CHECK(new (std::nothrow) char[64 << 20] == nullptr);

  // Nothing was lost.
  for (block b : held) CHECK(intact(b));

  // Give everything back, and the heap serves again.
  for (block b : held) free(b.p);
  held.clear();
  std::vector<block> again;
  again.reserve(1 << 20);
  for (size_t i = 0; i < big / 2; i++) {
    void* p = malloc(1 << 20);
    CHECK(p != nullptr);
    if (!p) break;
    block b{static_cast<unsigned char*>(p), size_t{1} << 20};
    fill(b);
    again.push_back(b);
  }
  for (block b : again) {
    CHECK(intact(b));
    free(b.p);
  }
  if (g_fail) return 1;
  printf("ok\n");
  return 0;
}
