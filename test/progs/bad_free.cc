// Commits one allocator error named by argv[1], for the tests that check it is
// detected and reported (gort aborts with a message, as glibc does):
//   double        free(p); free(p)
//   double_large  the same for a large (100 KiB) block
//   interior      free(p + 16)
//   foreign       free() of a stack address
//   realloc_foreign  realloc() of a stack address
//   central       a double free that is not back-to-back: the object goes back
//                 to the mcentral when its thread exits, and the second free
//                 reaches the span's allocBits when this thread exits
// The errors are the point: silence the compiler noticing them.
#pragma GCC diagnostic ignored "-Wfree-nonheap-object"
#pragma GCC diagnostic ignored "-Wuse-after-free"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void* g_p;

static void* alloc_free_exit(void*) {
  g_p = malloc(64);
  free(g_p);
  return nullptr;  // the thread's cache goes back to the mcentral
}

static void* free_exit(void*) {
  free(g_p);       // stale: the object is already free in its span
  return nullptr;  // this thread's cache goes back and finds it
}

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  const char* m = argv[1];
  char* volatile p = static_cast<char*>(malloc(64));
  char local[32];
  char* volatile lp = local;
  if (!strcmp(m, "double")) {
    free(p);
    free(p);
  } else if (!strcmp(m, "double_large")) {
    char* volatile q = static_cast<char*>(malloc(100 << 10));
    free(q);
    free(q);
  } else if (!strcmp(m, "interior")) {
    free(p + 16);
  } else if (!strcmp(m, "foreign")) {
    free(lp);
  } else if (!strcmp(m, "realloc_foreign")) {
    p = static_cast<char*>(realloc(lp, 100));
  } else if (!strcmp(m, "central")) {
    // Both frees come from threads that exit right after, so neither object
    // can be handed out again in between (pthread_exit would allocate).
    pthread_t t;
    pthread_create(&t, nullptr, alloc_free_exit, nullptr);
    pthread_join(t, nullptr);
    pthread_create(&t, nullptr, free_exit, nullptr);
    pthread_join(t, nullptr);
  } else {
    return 2;
  }
  puts("not detected");
  return 0;
}
