/* A C program that links gort (-lgort, shared or static) instead of
 * preloading it, and reads its statistics through <gort/malloc.h>. Prints
 * "ok <objects in use>" when gort served its allocations. */
#include <gort/malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
  void* p[1000];
  for (int i = 0; i < 1000; i++) {
    p[i] = malloc(48);
    memset(p[i], i, 48);
  }
  gort_malloc_stats_t st;
  gort_malloc_stats(&st);
  /* malloc must be gort's: the 48-byte class holds our 1000 objects. */
  int cls = 1;
  while (st.classes[cls].size < 48) cls++;
  if (st.classes[cls].inuse < 1000 || gort_malloc_usable_size(p[0]) != 48) return 1;
  for (int i = 0; i < 1000; i++) free(p[i]);
  printf("ok %llu\n", (unsigned long long)st.classes[cls].inuse);
  return 0;
}
