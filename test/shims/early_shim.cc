// A preload library whose constructor runs inside the dynamic loader's
// initialisation and calls the paths that call back into malloc (dlsym with
// RTLD_NEXT, dlopen, dlerror, calloc). Loaded together with libgort.so, in
// both orders, by the preload tests: gort must initialise from inside these
// calls without deadlocking (jemalloc 329 and 443 hung here).
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

static void* g_real_malloc;

__attribute__((constructor)) static void shim_init() {
  g_real_malloc = dlsym(RTLD_NEXT, "malloc");
  void* h = dlopen("libm.so.6", RTLD_NOW | RTLD_GLOBAL);
  if (h) dlsym(h, "sqrt");
  dlsym(RTLD_DEFAULT, "surely_not_a_symbol");
  (void)dlerror();
  void* p = calloc(10, 100);
  free(p);
  char* s = strdup("shim");
  free(s);
}
