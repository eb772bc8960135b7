// Calls into the allocator before main, from a static constructor, through
// the paths that recurse into malloc from inside libc and the dynamic loader
// (dlopen, dlsym, dlerror, strdup, a C++ iostream). Under LD_PRELOAD gort must
// initialise on the first of these calls without deadlocking. Prints "ok".
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <string>

static int g_early = 0;

struct early {
  early() {
    void* sym = dlsym(RTLD_NEXT, "malloc");
    void* h = dlopen("libm.so.6", RTLD_NOW);
    void* cosp = h ? dlsym(h, "cos") : nullptr;
    dlsym(RTLD_DEFAULT, "no_such_symbol_anywhere");
    const char* err = dlerror();  // dlerror allocates its message
    char* s = strdup("before main");
    std::string t(1000, 'x');
    if (sym && cosp && err && s && t.size() == 1000) g_early = 1;
    free(s);
  }
} g_early_obj;

int main() {
  if (!g_early) return 1;
  puts("ok");
  return 0;
}
