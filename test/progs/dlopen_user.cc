// A running program that dlopen()s libgort.so (argv[1]) after it has started
// threads, and uses gort_malloc/gort_free from those threads and new ones.
// Exercises the static-TLS budget (jemalloc 937, mimalloc 147): dlopen must
// succeed and every thread must get a working cache. Prints "ok".
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <atomic>
#include <thread>
#include <vector>

using malloc_fn = void* (*)(size_t);
using free_fn = void (*)(void*);
static malloc_fn g_malloc;
static free_fn g_free;
static std::atomic<int> g_ready{0}, g_bad{0};

static void work(int id) {
  std::vector<char*> v;
  for (int i = 0; i < 20000; i++) {
    size_t n = 1 + (static_cast<size_t>(i) * 37 + id) % 5000;
    char* p = static_cast<char*>(g_malloc(n));
    if (!p) {
      g_bad++;
      continue;
    }
    memset(p, id, n);
    v.push_back(p);
    if (v.size() > 100) {
      char* q = v.front();
      if (q[0] != static_cast<char>(id)) g_bad++;
      g_free(q);
      v.erase(v.begin());
    }
  }
  for (char* p : v) g_free(p);
}

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  std::atomic<bool> go{false};
  std::vector<std::thread> early;
  for (int i = 0; i < 3; i++)
    early.emplace_back([&, i] {
      g_ready++;
      while (!go.load()) std::this_thread::yield();
      work(i + 1);
    });
  while (g_ready.load() < 3) std::this_thread::yield();
  void* h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    fprintf(stderr, "dlopen failed: %s\n", dlerror());
    go = true;
    for (auto& t : early) t.join();
    return 1;
  }
  g_malloc = reinterpret_cast<malloc_fn>(dlsym(h, "gort_malloc"));
  g_free = reinterpret_cast<free_fn>(dlsym(h, "gort_free"));
  if (!g_malloc || !g_free) return 3;
  go = true;
  std::vector<std::thread> late;
  for (int i = 0; i < 4; i++) late.emplace_back(work, 10 + i);
  work(0);
  for (auto& t : early) t.join();
  for (auto& t : late) t.join();
  if (g_bad.load()) return 4;
  puts("ok");
  return 0;
}
